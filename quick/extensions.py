"""Job extensions: how a layer above the queue (workflows) rides on ordinary jobs.

A job may carry extension data (``Job.extension``, a mapping whose ``"mod"`` names the
module that owns it). The queue stays ignorant of what the data means; at the points
where a job's life changes it asks the owning module's :class:`JobExtension`, inside
the same transaction:

* when a claim leases the job (``on_claimed``),
* when an attempt succeeds (``on_succeeded``, with the handler's return value),
* when an attempt fails (``on_failed``, with the retry time, or None when final).

The consumer also asks it which handler runs the job and with what ``meta.context``.
A module registers its extension with :func:`register` when imported (the workflow
package does; ``quick worker`` imports it at start). Only registered extensions are
used: stored data is never trusted to name code to import, so a job naming an
unregistered module gets a :class:`Refused` extension: no handler runs it (it is named
by its key in the log), and it is dead-lettered when it settles (:mod:`quick.settlement`).
Layers depend downward only: ``quick`` never imports the modules above it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from keyspace.layout import describe, queue_keys
from keyspace.protocol import Transaction
from quick.app import JobConfig
from quick.errors import InvalidArgument
from quick.jobs import Claim

__all__ = ["JobExtension", "Refused", "register", "resolve", "prefetch", "MODULE_FIELD"]

log = logging.getLogger("quick.store")

#: The field of ``Job.extension`` naming the module that owns the job.
MODULE_FIELD = "mod"


class JobExtension(Protocol):
    """The hooks a layer above the queue provides for its jobs. Transactional hooks
    run inside the queue's own transaction and may run more than once (retries)."""

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        """The handler and policy to run ``claim`` with (``registered`` is the app's)."""
        ...

    def context(self, claim: Claim) -> Any:
        """What the handler sees as ``meta.context``."""
        ...

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        """Inside the claim transaction that leased the job."""
        ...

    # Optional: ``prefetch(tr, claims, *, settling)``, called (see :func:`prefetch`)
    # before the hooks of a batch of claims, to read in one or two round trips, as
    # snapshot reads adding no conflicts, what those hooks will read one claim at a time.

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        """Inside the transaction that completes the job."""
        ...

    def on_failed(
        self,
        tr: Transaction,
        claim: Claim,
        error: str,
        retry_at_ms: int | None,
        now: int,
        max_attempts: int,
    ) -> None:
        """Inside the transaction that reschedules (``retry_at_ms``) or finishes the job;
        ``max_attempts`` is the job's effective attempt limit."""
        ...


_registry: dict[str, JobExtension] = {}
_lock = threading.Lock()


def register(module: str, extension: JobExtension) -> None:
    """Make ``extension`` handle jobs whose extension data names ``module``."""
    with _lock:
        _registry[module] = extension


@dataclass(frozen=True, slots=True)
class Refused:
    """The extension of a job whose data names no registered extension: no handler runs
    it, its hooks do nothing, and it is dead-lettered with ``error`` when it settles."""

    error: InvalidArgument

    def job_config(self, claim: Claim, registered: JobConfig | None) -> JobConfig | None:
        """None: no handler runs the job (named here by its key in the log)."""
        key = describe(queue_keys(claim.queue_id).job(claim.job_id))
        log.warning("%s: %s; dead-lettered without running a handler", key, self.error.problem)
        return None

    def context(self, claim: Claim) -> Any:
        return None

    def on_claimed(self, tr: Transaction, claim: Claim, now: int) -> None:
        pass

    def on_succeeded(self, tr: Transaction, claim: Claim, output: Any, now: int) -> None:
        pass

    def on_failed(
        self,
        tr: Transaction,
        claim: Claim,
        error: str,
        retry_at_ms: int | None,
        now: int,
        max_attempts: int,
    ) -> None:
        pass


def prefetch(tr: Transaction, claims: Sequence[Claim], *, settling: bool) -> None:
    """Let each extension of ``claims`` read at once what its hooks for them will read:
    ``on_claimed`` (``settling`` False), or the settlement's (True). Extensions without a
    ``prefetch`` method are skipped; each read is then made by the hook, as before."""
    groups: dict[int, tuple[Any, list[Claim]]] = {}
    for claim in claims:
        if claim.extension is None:
            continue
        extension = resolve(claim.extension)
        if getattr(extension, "prefetch", None) is not None:
            groups.setdefault(id(extension), (extension, []))[1].append(claim)
    for extension, group in groups.values():
        extension.prefetch(tr, group, settling=settling)


def resolve(data: dict[str, Any] | None) -> JobExtension | None:
    """The extension owning a job with extension ``data``: None for a plain job, and a
    :class:`Refused` one when the data names no module, or one that registered no
    extension in this process (nothing is imported on a stored job's say-so)."""
    if data is None:
        return None
    module = data.get(MODULE_FIELD) if isinstance(data, dict) else None
    if not isinstance(module, str):
        return Refused(
            InvalidArgument("extension", f"job extension data names no module: {data!r}")
        )
    found = _registry.get(module)
    if found is None:
        return Refused(
            InvalidArgument(
                "extension",
                f"no job extension {module!r} is registered in this process "
                "(import the layer that registers it, e.g. workflow)",
            )
        )
    return found
