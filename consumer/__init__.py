"""The trio consumer: drains queues with an app's handlers.

:class:`consumer.runtime.Consumer` (configured by :class:`consumer.config.ConsumerConfig`)
is one nursery holding the claimer, the thread lanes (:mod:`consumer.lanes`), the async
runners and group committer (:mod:`consumer.runners`), the lease keeper
(:mod:`consumer.keeper`) and the chores.
Blocking transactions meet trio in :mod:`consumer.bridge`; every task waits out a store
that does not answer through :mod:`consumer.resilience`; :mod:`consumer.serve` runs one
consumer process until a signal (``quick worker``); :mod:`consumer.metrics` and
:mod:`consumer.logs` export what it does.
"""
