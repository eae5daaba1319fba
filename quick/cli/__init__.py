"""The ``quick`` command line: a thin click group over the library, one module per family.

=====================  ==================================================================
module                 commands
=====================  ==================================================================
``common``             shared: ``--db``, the store, exit codes, ids, payload parsing
``main``               the ``quick`` group (the console entry point is :func:`main`)
``inspect``            ``check``, ``inspect keyspace``
``queue``              ``enqueue``, ``queues``, ``jobs``
``worker``             ``worker`` (``supervisor`` runs ``--processes P``)
``dlq``                ``dlq list``, ``dlq requeue``, ``dlq purge``
``cron``               ``cron list``, ``cron add``, ``cron remove``
``demo``               ``demo``
``runs``               ``runs ...``, ``signal`` (workflow runs)
``limits``             ``limits list``, ``limits set``, ``limits clear``
``migrate``            ``migrate``
``dashboard``          ``dashboard``
``supervisor``         (no command) runs ``worker --processes P``
=====================  ==================================================================

The CLI is the edge: the only code that may reach every layer. ``import quick`` never
imports it. Every command takes ``--db`` before or after its name (or ``$QUICK_DB``;
default ``sqlite:///./quick.db``); exit codes are listed in :mod:`quick.cli.common`.
"""

from quick.cli.main import cli, main

__all__ = ["cli", "main"]
