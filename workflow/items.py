"""What a workflow stores on the queue: the extension module name and its built-in topics.

A workflow item's extension data (see :mod:`quick.extensions`) names :data:`MODULE`, so
the queue routes its settlement to :class:`workflow.steps.StepExtension`. The fields:
``ri`` run id, ``sk`` step key, ``w`` workflow name, ``dep`` dependencies' outputs, ``to``
the step's timeout; a hook item has ``xk`` = :data:`HOOK_ITEM` instead.
"""

from __future__ import annotations

__all__ = ["MODULE", "SLEEP_TOPIC", "HOOK_TOPIC", "HOOK_ITEM"]

#: The module name stored in step items' extension data (see :mod:`quick.extensions`).
MODULE = "workflow"
#: The topic of a sleep step's delayed item (handled by the workflow itself).
SLEEP_TOPIC = "workflow.sleep"
#: The topic of a hook item (see :mod:`workflow.hook_jobs`).
HOOK_TOPIC = "workflow.hook"
#: The ``xk`` value that marks a hook item.
HOOK_ITEM = "hook"
