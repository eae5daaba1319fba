"""Testing jobs: a pytest plugin (fixtures ``quick_db``, ``quick_faulty_db``), and helpers
that run queued jobs inline (:func:`drain`) or look at what was enqueued.

Installing quick registers this module as a pytest plugin (the ``pytest11`` entry
point), so a user's tests ask for ``quick_db`` and get a fresh embedded database on a
temp file. ``pytest --quick-db URL`` (or ``$QUICK_TEST_DB``) runs the same tests
against another database, FoundationDB included: each test then gets a fresh
``namespace=`` of its own, cleared when the test ends.

:func:`drain` runs jobs the way a worker does (claim, run the handler as a consumer
lane would, record the outcome with :func:`quick.outcomes.settle_batch`), in this
thread, so a test needs neither a worker process nor trio of its own. Its clock can
jump ahead (``with_scheduled=True``): delays, retry backoff and workflow sleeps are
fast-forwarded, never waited for.

Importing this module imports neither pytest nor trio; the fixtures are registered
when pytest configures the plugin, and async handlers start trio when they run.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import keyspace
from keyspace.faults import FaultRates, FaultyDatabase
from keyspace.layout import POINTER_INDEX
from keyspace.protocol import Database, Transaction
from keyspace.retry import Tries
from quick import pointers
from quick.app import App, JobConfig, Meta
from quick.claim_rounds import claim_round
from quick.claiming import claim
from quick.inspection import list_jobs, list_queues
from quick.jobs import Claim, Job, now_ms
from quick.outcomes import Attempt, Outcome, job_config, run_attempt, settle_batch
from quick.tracecontext import ainvoke

__all__ = [
    "DB_ENV",
    "FAULTS",
    "drain",
    "enqueued",
    "assert_enqueued",
    "url_for_test",
]

#: The environment variable that names the database to test against, like ``--quick-db``.
DB_ENV = "QUICK_TEST_DB"
#: Fault rates of ``quick_faulty_db``: every commit error FoundationDB may raise, often
#: enough that a test of a few dozen transactions meets each kind.
FAULTS = "not_committed:0.1,commit_unknown_result:0.1,transaction_too_old:0.05"
#: The consumer id drain's claims carry (shown on leased jobs while a handler runs).
OWNER = "quick.testing"
#: Jobs one drain round claims: a consumer's batch, small enough to settle in one commit.
BATCH = 50
#: Lease of a drained job: long, since nothing heartbeats it while its handler runs.
LEASE_MS = 600_000
#: Clock jumps one drain may make with nothing to run in between; each jump moves to a
#: later pointer, so this bounds only pathological stores (pointers forever in the future).
MAX_JUMPS = 10_000


# -- running jobs inline -----------------------------------------------------------------


def drain(
    db: Database,
    app: App,
    *,
    queue_id: str | None = None,
    with_scheduled: bool = False,
    max_jobs: int = 10_000,
) -> dict[str, int]:
    """Run every visible job (of ``queue_id``, else of every queue) until none is left.

    Jobs are claimed, run and settled as a worker would: transactional handlers inside
    their completing transaction, async ones under ``asyncio.run`` or ``trio.run``
    (by their ``loop``), handler timeouts
    enforced, failures retried by the handler's policy, workflow steps and hooks by
    their extension. Jobs enqueued by handlers run in the same call.

    Args:
        db: the database.
        app: the handlers.
        queue_id: drain this queue only.
        with_scheduled: fast-forward: when nothing is visible, move the clock to the
            next pointer time, so delayed jobs, retries after backoff and workflow
            sleeps run too; a job that keeps failing ends dead-lettered.
        max_jobs: the most attempts to run; drain stops there (a handler that snoozes
            forever would otherwise never end) and leaves the rest queued.

    Returns:
        Attempt outcomes counted by name, e.g. ``{"completed": 3, "requeued": 1}``.
    """
    counts: Counter[str] = Counter()
    clock = now_ms()
    ran = 0
    jumps = 0
    while ran < max_jobs:
        clock = max(clock, now_ms())
        claims = _claim(db, queue_id, clock, min(BATCH, max_jobs - ran))
        if claims:
            ran += len(claims)
            counts.update(outcome.value for outcome in _run_batch(db, app, claims, clock))
            continue
        if not with_scheduled or jumps >= MAX_JUMPS:
            break
        later = db.transact(_next_pointer, queue_id, clock)
        if later is None:
            break
        clock = later
        jumps += 1
    return dict(counts)


def _claim(db: Database, queue_id: str | None, clock: int, limit: int) -> list[Claim]:
    """Lease up to ``limit`` jobs visible at ``clock``: the consumer's claim round, or
    :func:`quick.claim` on one queue."""
    if queue_id is not None:
        return claim(db, queue_id, OWNER, limit=limit, lease_ms=LEASE_MS, now_ms=clock)
    # ``tries`` made before the retry loop and passed as an argument, as the consumer
    # does, so the loop tells it of an unknown commit result and the retry takes back
    # what a committed try leased.
    found = db.transact(
        lambda tr, tries: claim_round(
            tr, OWNER, clock, limit=limit, lease_ms=LEASE_MS, tries=tries, watch=False
        ),
        Tries(),
    )
    return found.claims


def _next_pointer(tr: Transaction, queue_id: str | None, clock: int) -> int | None:
    """The first pointer time after ``clock`` (of ``queue_id`` alone, if given)."""
    view = tr.snapshot
    if queue_id is not None:
        pointer = pointers.read_pointer(view, queue_id)
        return pointer["v"] if pointer is not None and pointer["v"] > clock else None
    _, end = POINTER_INDEX.range()
    rows = view.get_range(POINTER_INDEX.pack((clock + 1,)), end, limit=1)
    return int(POINTER_INDEX.unpack(rows[0][0])[0]) if rows else None


def _run_batch(db: Database, app: App, claims: list[Claim], clock: int) -> list[Outcome]:
    """Run each claim's handler, then record the attempts in one transaction."""
    outcomes: list[Outcome] = []
    attempts: list[Attempt] = []
    for held in claims:
        config = job_config(app, held)
        in_trio = config is not None and config.runs_in_trio
        done = (
            run_attempt(db, held, config, _run_in_trio)
            if in_trio
            else run_attempt(db, held, config)
        )
        if isinstance(done, Outcome):
            outcomes.append(done)
        else:
            attempts.append(done)
    return outcomes + settle_batch(db, attempts, now_ms=clock)


def _run_in_trio(config: JobConfig, payload: Any, meta: Meta) -> Any:
    """An async handler (or one with a timeout) under ``trio.run`` (an asyncio one under
    ``asyncio.run``), timed out as a consumer would: a ``TimeoutError`` after
    ``config.timeout`` seconds."""
    if config.on_asyncio:
        import asyncio  # only where an asyncio handler runs: importing quick loads none

        return asyncio.run(_on_asyncio(config, payload, meta))
    import trio

    from quick.trio_handlers import call_handler, within_timeout

    async def main() -> Any:
        return await within_timeout(config, lambda: call_handler(config, payload, meta))

    return trio.run(main)


async def _on_asyncio(config: JobConfig, payload: Any, meta: Meta) -> Any:
    if not config.timeout:
        return await ainvoke(config.handler, meta, payload, meta)
    import asyncio

    try:
        async with asyncio.timeout(config.timeout):
            return await ainvoke(config.handler, meta, payload, meta)
    except TimeoutError:
        raise TimeoutError(f"timed out after {config.timeout} s") from None


# -- looking at what was enqueued -----------------------------------------------------------


def enqueued(db: Database, *, queue_id: str | None = None, topic: str | None = None) -> list[Job]:
    """Jobs waiting or running (of ``queue_id``, else of every queue; of ``topic`` if
    given), ready ones best first, then by visibility time."""
    queues = [queue_id] if queue_id is not None else [q["queue"] for q in list_queues(db)]
    jobs = [job for queue in queues for job in _all_jobs(db, queue)]
    return [job for job in jobs if topic is None or job.topic == topic]


def _all_jobs(db: Database, queue: str) -> list[Job]:
    limit = 1000
    while True:
        jobs = list_jobs(db, queue, limit=limit)
        if len(jobs) < limit:
            return jobs
        limit *= 10


_ANY = object()


def assert_enqueued(
    db: Database,
    *,
    queue_id: str | None = None,
    topic: str | None = None,
    payload: Any = _ANY,
) -> Job:
    """Assert that a job (of ``queue_id``, ``topic``, with ``payload``, as far as given)
    is waiting or running; the first match is returned.

    Raises:
        AssertionError: none matches; the message lists every job enqueued instead.
    """
    jobs = enqueued(db, queue_id=queue_id)
    for job in jobs:
        if (topic is None or job.topic == topic) and (payload is _ANY or job.payload == payload):
            return job
    wanted = ", ".join(
        f"{name}={value!r}"
        for name, value in (("queue_id", queue_id), ("topic", topic), ("payload", payload))
        if value is not None and value is not _ANY
    )
    found = "\n".join(f"  {job.queue} {job.topic} {job.payload!r}" for job in jobs) or "  (none)"
    raise AssertionError(f"no job enqueued with {wanted or 'any fields'}; enqueued:\n{found}")


# -- the pytest plugin ---------------------------------------------------------------------


def url_for_test(base: str | None, tmp_dir: str, test_id: str) -> str:
    """The database URL of one test: ``base`` in a namespace of its own, or a fresh
    sqlite file in ``tmp_dir`` when no base URL is given."""
    if not base:
        return f"sqlite:///{os.path.join(tmp_dir, 'quick.db')}"
    digest = hashlib.sha1(test_id.encode()).hexdigest()[:8]
    namespace = f"quick-test-{digest}-{uuid.uuid4().hex[:12]}"
    path, _, query = base.partition("?")
    params = [(k, v) for k, v in parse_qsl(query) if k != "namespace"]
    prefix = dict(parse_qsl(query)).get("namespace")
    params.append(("namespace", f"{prefix}.{namespace}" if prefix else namespace))
    return f"{path}?{urlencode(params, safe=':,/')}"


def pytest_addoption(parser: Any) -> None:
    """``--quick-db URL``: run the tests' ``quick_db`` on another database."""
    group = parser.getgroup("quick")
    group.addoption(
        "--quick-db",
        default=None,
        metavar="URL",
        help=f"database URL for the quick_db fixture (default ${DB_ENV}, else a temp sqlite "
        "file); each test gets a fresh namespace of it",
    )


def pytest_configure(config: Any) -> None:
    """Register the fixtures (built here, so importing this module needs no pytest)."""
    config.pluginmanager.register(_fixtures(), "quick-testing-fixtures")


def _fixtures() -> object:
    import pytest

    class Fixtures:
        @pytest.fixture
        def quick_db_url(self, request: pytest.FixtureRequest, tmp_path: Any) -> str:
            """The URL ``quick_db`` opens (for worker subprocesses of a test)."""
            base = request.config.getoption("--quick-db") or os.environ.get(DB_ENV)
            return url_for_test(base, str(tmp_path), request.node.nodeid)

        @pytest.fixture
        def quick_db(self, quick_db_url: str) -> Iterator[Database]:
            """A fresh quick database for one test (see the module docstring)."""
            db = keyspace.open(quick_db_url)
            try:
                yield db
            finally:
                try:
                    if "namespace=" in quick_db_url:
                        db.transact(lambda tr: tr.clear_range(b"", b"\xff"))  # the namespace
                finally:
                    db.close()

        @pytest.fixture
        def quick_faulty_db(
            self, request: pytest.FixtureRequest, quick_db: Database
        ) -> FaultyDatabase:
            """``quick_db`` behind the fault injector: commits fail as FoundationDB's may
            (seeded from the test's id, so a failure replays)."""
            seed = int(hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8], 16)
            return FaultyDatabase(quick_db, FaultRates.parse(FAULTS), seed=seed)

    return Fixtures()
