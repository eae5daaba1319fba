"""The thread lanes on their own (:class:`consumer.lanes.Lanes`): they run the sync claims
waiting, record them and report each once, asking the sizing policy how many lanes the
backlog wants, and end once the consumer stops with nothing waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

import quick
from consumer.keeper import Held
from consumer.lanes import Finished, Flags, Lanes
from quick.outcomes import Outcome, job_config
from tests.waiting import until


def test_lanes_run_record_and_report_every_waiting_claim(tmp_path: Path) -> None:
    app = quick.App()

    @app.job("work")
    def work(payload: Any, meta: quick.Meta) -> None:
        """A no-op job."""

    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        jobs = [quick.enqueue(db, "q", "work", i) for i in range(20)]
        claims = quick.claim(db, "q", "lanes-test", limit=20)
        reported: list[Finished] = []
        asked: list[tuple[int, int]] = []

        def wanted(backlog: int, stalled: int) -> int:
            asked.append((backlog, stalled))
            return 1  # one lane clears any backlog

        async def main() -> None:
            flags = Flags()
            lanes = Lanes(db, trio.CapacityLimiter(4), flags, reported.extend, wanted)
            async with trio.open_nursery() as nursery:
                lanes.start(nursery, 4)
                lanes.queue.extend(Held(claim, job_config(app, claim)) for claim in claims)
                lanes.wake()
                await until(lambda: len(reported) == len(claims), 20.0)
                assert len(lanes.clocks) == 4
                flags.stopping = True
                lanes.wake_all()  # the lanes return: the nursery closes

        trio.run(main)
    assert sorted(done.held.claim.job_id for done in reported) == sorted(jobs)
    assert {done.outcome for done in reported} == {Outcome.COMPLETED}
    assert asked[0] == (20, 0)
    with quick.open(f"sqlite:///{tmp_path / 'q.db'}") as db:
        assert {quick.job_state(db, job) for job in jobs} == {quick.JobState.COMPLETED}
