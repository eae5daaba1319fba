"""Map steps: one instance per item of a predecessor's list output, on every engine.

Each instance gets its item as payload and the run's input in ``meta.context``; the
step after the map receives the outputs in item order. Instances retry, fail, pause,
resume, cancel and re-run (``retry_run``) one by one; they are scheduled in pages of
:data:`workflow.mapping.PAGE`, the rest by pager items, so no transaction writes more.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import trio

import quick
import workflow
from keyspace.protocol import Database, Transaction
from keyspace.subspace import Subspace
from quick.testing import drain
from tests.integration.workflows.driving import check_run, pending
from workflow import (
    MAP_LIMIT,
    MapOutputs,
    Workflow,
    cancel_run,
    explain_run,
    inspect_instances,
    inspect_run,
    pause_run,
    result,
    resume_run,
    retry_run,
    start_run,
)
from workflow.mapping import INLINE_BYTES, PAGE


class MapApp:
    """``emit`` outputs ``input["items"]``; ``each`` returns ``[item, input["k"]]`` (raising
    for items in ``failing``) and counts its calls; ``gather`` returns its results."""

    def __init__(self, space: Subspace, db: Database) -> None:
        self.app = quick.App()
        self.failing: set[Any] = set()
        self.space = space
        self.gathered: list[Any] = []

        @self.app.job("emit")
        def emit(payload: Any, meta: quick.Meta) -> Any:
            return payload["items"]

        @self.app.job("each", backoff=lambda attempt: 0)
        def each(tr: Transaction, item: Any, meta: quick.Meta) -> Any:
            context = meta.context
            assert isinstance(context, workflow.StepContext)
            if item in self.failing:
                raise RuntimeError(f"bad item {item}")
            tr.add(space.pack(("calls", context.run_id, context.index)), struct.pack("<q", 1))
            return [item, context.input["k"], "x" * context.input.get("pad", 0)]

        @self.app.job("gather")
        def gather(payload: Any, meta: quick.Meta) -> Any:
            found = meta.context.results["m"]
            if isinstance(found, MapOutputs):
                self.gathered = found.read(db)
                return {"read": len(found)}
            return [row[0] for row in found]

    def calls(self, db: Database, run_id: str) -> dict[int, int]:
        rows = db.transact(lambda tr: tr.get_range(*self.space.range(("calls", run_id))))
        return {self.space.unpack(k)[2]: struct.unpack("<q", v)[0] for k, v in rows}


@pytest.fixture
def maps(space: Subspace, db: Database) -> MapApp:
    return MapApp(space, db)


def mapper(tag: str, **options: Any) -> Workflow:
    return (
        Workflow(f"map-{tag}")
        .step("s", topic="emit")
        .map("m", topic="each", over="s", **options)
        .step("t", topic="gather", after="m")
    )


def test_workflow_map_runs_an_instance_per_item_and_passes_outputs_in_order(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    items = [5, 3, 9, 1, 7]
    run_id = start_run(db, mapper(tag), {"items": items, "k": "in"}, queue_id=queue)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["m"].output == [[i, "in", ""] for i in items]
    assert result(db, run_id) == items
    assert view.steps["m"].instances == {"succeeded": 5}
    assert maps.calls(db, run_id) == dict.fromkeys(range(5), 1)
    assert [row.output[0] for row in inspect_instances(db, run_id, "m")] == items
    assert pending(db, queue) == 0


def test_workflow_map_over_an_empty_list_succeeds_at_once(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    run_id = start_run(db, mapper(tag), {"items": [], "k": 0}, queue_id=queue)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["m"].output == []
    assert result(db, run_id) == []


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ({"a": 1}, "map over step 's': its output is a dict, not a list"),
        (
            list(range(MAP_LIMIT + 1)),
            f"map over step 's': {MAP_LIMIT + 1} items; a map runs at most",
        ),
    ],
    ids=["not-a-list", "too-long"],
)
def test_workflow_map_over_a_bad_output_fails_the_step_naming_why(
    db: Database, maps: MapApp, queue: str, tag: str, items: Any, reason: str
) -> None:
    run_id = start_run(db, mapper(tag), {"items": items, "k": 0}, queue_id=queue)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert view.steps["m"].error is not None
    assert view.steps["m"].error.startswith(reason)
    assert view.steps["t"].status == "skipped"
    assert maps.calls(db, run_id) == {}
    assert pending(db, queue) == 0
    with pytest.raises(workflow.RunFailed) as caught:
        result(db, run_id)
    assert caught.value.step == "m"


def test_workflow_map_schedules_in_pages(db: Database, maps: MapApp, queue: str, tag: str) -> None:
    n = 2 * PAGE + 17
    run_id = start_run(db, mapper(tag), {"items": list(range(n)), "k": 0}, queue_id=queue)
    # The step before the map, alone: its completion schedules one page and a pager.
    (claim,) = quick.claim(db, queue, "t", limit=1)
    quick.outcomes.run_claim(db, maps.app, claim)
    counts = inspect_run(db, run_id).steps["m"].instances
    assert counts == {"scheduled": PAGE, "waiting": n - PAGE}
    assert quick.queue_counts(db, queue)["ready"] == PAGE + 1  # the pager
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["t"].output == list(range(n))
    assert maps.calls(db, run_id) == dict.fromkeys(range(n), 1)


def test_workflow_map_outputs_too_large_to_inline_are_read_in_pages(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    n, pad = 40, 2 * INLINE_BYTES // 40
    run_id = start_run(
        db, mapper(tag), {"items": list(range(n)), "k": 1, "pad": pad}, queue_id=queue
    )
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["t"].output == {"read": n}
    assert [row[0] for row in maps.gathered] == list(range(n))
    out = workflow.map_outputs(db, run_id, "m", start=10, limit=5)
    assert [row[0] for row in out] == [10, 11, 12, 13, 14]


def test_workflow_map_instances_retry_alone_and_retry_run_reruns_only_the_failed(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    maps.failing.add(2)
    run_id = start_run(
        db, mapper(tag, max_attempts=2), {"items": [0, 1, 2, 3], "k": 0}, queue_id=queue
    )
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert view.steps["m"].error == "instance 2 failed: RuntimeError: bad item 2"
    (two,) = inspect_instances(db, run_id, "m", start=2, limit=1)
    assert (two.status, two.attempts) == ("failed", 2)
    assert "step 'm' failed" in str(explain_run(db, run_id))
    maps.failing.clear()
    before = maps.calls(db, run_id)
    retry_run(db, run_id)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["t"].output == [0, 1, 2, 3]
    after = maps.calls(db, run_id)
    assert after[2] == 1
    assert {i: n for i, n in after.items() if i != 2} == before  # the others ran once


def test_workflow_map_pause_holds_instances_and_resume_finishes_them(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    run_id = start_run(db, mapper(tag), {"items": list(range(30)), "k": 0}, queue_id=queue)
    (claim,) = quick.claim(db, queue, "t", limit=1)
    quick.outcomes.run_claim(db, maps.app, claim)
    pause_run(db, run_id)
    drain(db, maps.app, queue_id=queue)  # runs only the pager, which holds the instances
    assert inspect_run(db, run_id).steps["m"].instances == {"waiting": 30}
    assert maps.calls(db, run_id) == {}
    assert pending(db, queue) == 0
    held = "map step 'm': 0 of 30 instances succeeded (30 waiting)"
    assert held in str(explain_run(db, run_id))
    resume_run(db, run_id)
    assert "(30 scheduled)" in str(explain_run(db, run_id))
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert maps.calls(db, run_id) == dict.fromkeys(range(30), 1)


def test_workflow_map_cancel_withdraws_every_queued_instance(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    n = PAGE + 50
    run_id = start_run(db, mapper(tag), {"items": list(range(n)), "k": 0}, queue_id=queue)
    (claim,) = quick.claim(db, queue, "t", limit=1)
    quick.outcomes.run_claim(db, maps.app, claim)
    cancel_run(db, run_id)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "cancelled"
    assert view.steps["m"].status == "cancelled"
    assert maps.calls(db, run_id) == {}
    assert pending(db, queue) == 0


def test_workflow_map_instance_out_when_the_run_failed_runs_again_after_retry_run(
    db: Database, maps: MapApp, queue: str, tag: str
) -> None:
    maps.failing.add(1)
    run_id = start_run(db, mapper(tag, max_attempts=1), {"items": [0, 1], "k": 0}, queue_id=queue)
    (first,) = quick.claim(db, queue, "t", limit=1)
    quick.outcomes.run_claim(db, maps.app, first)
    claims = {claim.payload: claim for claim in quick.claim(db, queue, "t", limit=2)}
    quick.outcomes.run_claim(db, maps.app, claims[1])  # fails the map and the run
    assert inspect_run(db, run_id).status == "failed"
    quick.outcomes.run_claim(db, maps.app, claims[0])  # finishes after the run ended
    maps.failing.clear()
    retry_run(db, run_id)
    drain(db, maps.app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "succeeded"
    assert view.steps["t"].output == [0, 1]


@pytest.mark.slow
def test_workflow_map_of_the_most_instances_runs_in_pages(tmp_path: Any, tag: str) -> None:
    """MAP_LIMIT instances: every transaction stays within the engine's limits (the
    sqlite engine enforces FoundationDB's sizes), and the outputs arrive by reference."""
    with quick.open(f"sqlite:///{tmp_path / 'big.db'}") as db:
        maps = MapApp(Subspace(("app", tag)), db)
        run_id = start_run(
            db, mapper(tag), {"items": list(range(MAP_LIMIT)), "k": 0}, queue_id="big"
        )
        drain(db, maps.app, queue_id="big", max_jobs=2 * MAP_LIMIT)
        view = inspect_run(db, run_id)
        assert view.status == "succeeded"
        assert view.steps["m"].instances == {"succeeded": MAP_LIMIT}
        assert view.steps["t"].output == {"read": MAP_LIMIT}
        assert [row[0] for row in maps.gathered] == list(range(MAP_LIMIT))


def test_workflow_map_instance_timeout_applies_to_each_instance(
    db: Database, queue: str, tag: str
) -> None:
    app = quick.App()

    @app.job("emit")
    def emit(payload: Any, meta: quick.Meta) -> Any:
        return [0, 1, 2]

    @app.job("slow", backoff=lambda attempt: 0)
    async def slow(item: Any, meta: quick.Meta) -> Any:
        if item == 1:
            await trio.sleep(5)
        return item

    wf = Workflow(f"timeout-{tag}").step("s", topic="emit")
    wf = wf.map("m", topic="slow", over="s", timeout=0.1, max_attempts=2)
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, app, queue_id=queue)
    view = check_run(db, run_id)
    assert view.status == "failed"
    assert view.steps["m"].error is not None
    assert view.steps["m"].error.startswith("instance 1 failed")
    (one,) = inspect_instances(db, run_id, "m", start=1, limit=1)
    assert one.attempts == 2
