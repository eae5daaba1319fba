"""The simulation's keyed limits: operations that set and clear them, the limit keys new
jobs name, and the invariant "limits never exceeded".

:class:`KeyLimitsSim` is driven by :mod:`sim_ops` (jobs name keys from :data:`KEYS`;
claims are reported to :meth:`KeyLimitsSim.took`) and checked by :mod:`simulate` after
every step against the store's snapshot (:mod:`sim_store`):

* **Counted exactly.** Each key's running counter (``("krun", key)``, absent = 0)
  equals the job records naming the key that are leased, whatever happened to them:
  claims, settlements, put-backs, crashes, expired leases promoted, dead letters.
* **Caps hold.** After a step that leased a job naming a key with ``max_running``, no
  more than that many job records naming the key are leased.
* **Rates hold.** Since the key's limits were last set, the starts of jobs naming it in
  any window from a start ``t0`` to now number at most ``burst + rate * (now - t0)``,
  the token bucket's own bound (``burst``: :data:`~quick.limit_values.BURST_SECONDS`
  worth, at least one).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable

import quick
from keyspace.protocol import Database
from quick.jobs import Job, JobState
from quick.limit_values import BURST_SECONDS

__all__ = ["KEYS", "KeyLimitsSim"]

KEYS = ("k0", "k1")


class KeyLimitsSim:
    """The keyed limits of one seed: what the simulator set, and the starts it saw."""

    def __init__(self, db: Database, rng: random.Random, clock: Callable[[], int]) -> None:
        self.db = db
        self.rng = rng
        self.clock = clock
        self.limits: dict[str, tuple[int | None, float | None]] = {}
        self.starts: dict[str, list[int]] = defaultdict(list)
        self.keys_of: dict[str, list[str]] = {}
        self.claimed: set[str] = set()
        self.problems: list[str] = []

    def pick(self, job_id: str) -> list[str] | None:
        """The limit keys a new job names (most name none)."""
        keys = self.rng.choice((None, None, None, ["k0"], ["k1"], ["k0", "k1"]))
        if keys:
            self.keys_of[job_id] = keys
        return keys

    def set_limits(self) -> str:
        """``quick.set_key_limits`` of a key with random limits, or ``clear_key_limits``."""
        key = self.rng.choice(KEYS)
        running = self.rng.choice((None, 1, 2, 3))
        rate = self.rng.choice((None, 0.5, 2.0, 10.0))
        self.starts[key] = []
        if running is None and rate is None:
            quick.clear_key_limits(self.db, key)
            self.limits.pop(key, None)
            return f"{key} cleared"
        quick.set_key_limits(self.db, key, max_running=running, max_per_second=rate)
        self.limits[key] = (running, rate)
        return f"{key} max_running={running} max_per_second={rate}"

    def took(self, job_ids: list[str]) -> None:
        """Claims were handed out now: record their keys' starts and check the rates."""
        now = self.clock()
        for job_id in job_ids:
            for key in self.keys_of.get(job_id, ()):
                self.claimed.add(key)
                self.starts[key].append(now)
        for key in self.claimed:
            rate = self.limits.get(key, (None, None))[1]
            if rate is None:
                continue
            burst = max(1.0, rate * BURST_SECONDS)
            starts = sorted(self.starts[key])
            for i, t0 in enumerate(starts):
                allowed = burst + rate * (now - t0) / 1000
                if len(starts) - i > allowed + 1e-9:
                    self.problems.append(
                        f"key {key}: {len(starts) - i} starts since {t0}, more than its "
                        f"rate {rate}/s allows ({allowed:.2f})"
                    )
                    break

    def check(self, jobs: dict[str, Job], running: dict[str, int]) -> list[str]:
        """Counters exact and caps held, on one snapshot of the store."""
        out, self.problems = self.problems, []
        leased = Counter(
            key for job in jobs.values() if job.state is JobState.LEASED for key in job.limit_keys
        )
        for key in set(leased) | set(running):
            if running.get(key, 0) != leased[key]:
                out.append(
                    f"key {key}: running counter {running.get(key, 0)}, "
                    f"but {leased[key]} leased jobs name it"
                )
        for key in sorted(self.claimed):
            cap = self.limits.get(key, (None, None))[0]
            if cap is not None and leased[key] > cap:
                out.append(
                    f"key {key}: {leased[key]} jobs naming it leased, over max_running {cap}"
                )
        self.claimed.clear()
        return out
