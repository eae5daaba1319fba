"""``workflow.result`` and ``workflow.aio.result``: a run's output, awaited on a watch.

The result is the output of the run's final step, or a dict by step key when several
are final; a failed run raises naming the failed step and its error, a cancelled one
says so, and a run still going past the timeout raises ResultTimeout. Waiting is a
watch, not polling: the run is looked at once per change of its record.
"""

from __future__ import annotations

import threading

import pytest

import workflow
import workflow.aio
import workflow.results
from keyspace.protocol import Database
from quick.errors import InvalidArgument
from quick.testing import drain
from tests.integration.workflows.driving import Steps
from workflow import ResultTimeout, RunFailed, Workflow, cancel_run, result, start_run


def test_workflow_result_is_the_final_steps_output(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"one-{tag}").step("a", topic="work").step("b", topic="work", after="a")
    run_id = start_run(db, wf, 7, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    out = result(db, run_id)
    assert out["step"] == "b"
    assert out["input"] == 7
    assert out["results"]["a"]["step"] == "a"


def test_workflow_result_of_several_final_steps_is_a_dict_by_key(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    wf = Workflow(f"two-{tag}").step("a", topic="work").step("b", topic="work")
    run_id = start_run(db, wf, 1, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    out = result(db, run_id)
    assert sorted(out) == ["a", "b"]
    assert out["a"]["step"] == "a"


def test_workflow_result_raises_naming_the_failed_step_and_its_error(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    steps.failing.add("b")
    wf = (
        Workflow(f"fail-{tag}")
        .step("a", topic="work")
        .step("b", topic="work", after="a", max_attempts=1)
    )
    run_id = start_run(db, wf, None, queue_id=queue)
    drain(db, steps.app, queue_id=queue)
    with pytest.raises(RunFailed) as caught:
        result(db, run_id)
    assert (caught.value.step, caught.value.error) == ("b", "RuntimeError: boom b")
    assert "step 'b'" in str(caught.value)


def test_workflow_result_of_a_cancelled_run_says_so(
    db: Database, steps: Steps, queue: str, tag: str
) -> None:
    run_id = start_run(db, Workflow(f"c-{tag}").external("gate"), None, queue_id=queue)
    cancel_run(db, run_id)
    with pytest.raises(RunFailed) as caught:
        result(db, run_id)
    assert caught.value.status == "was cancelled"
    assert caught.value.step is None


def test_workflow_result_times_out_on_a_run_still_going(db: Database, queue: str, tag: str) -> None:
    run_id = start_run(db, Workflow(f"t-{tag}").external("gate"), None, queue_id=queue)
    with pytest.raises(ResultTimeout) as caught:
        result(db, run_id, timeout=0.05)
    assert caught.value.status == "running"
    with pytest.raises(InvalidArgument):
        result(db, run_id, timeout=-1)


def test_workflow_result_waits_on_a_watch_not_by_polling(
    db: Database, queue: str, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start_run(db, Workflow(f"w-{tag}").external("gate"), None, queue_id=queue)
    looks: list[str] = []
    real = workflow.results.look

    def counted(tr, run_id, watch=True):  # type: ignore[no-untyped-def]
        looks.append(run_id)
        return real(tr, run_id, watch)

    monkeypatch.setattr(workflow.results, "look", counted)
    timer = threading.Timer(0.5, lambda: workflow.signal(db, run_id, "gate", {"ok": 1}))
    timer.start()
    assert result(db, run_id, timeout=20) == {"ok": 1}
    timer.join()
    # one look before the signal, one after it (a retried transaction may look again)
    assert 2 <= len(looks) <= 4, looks


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_workflow_aio_result_awaits_the_run(
    db: Database, queue: str, tag: str, anyio_backend: str
) -> None:
    run_id = start_run(db, Workflow(f"aio-{tag}").external("gate"), None, queue_id=queue)
    with pytest.raises(ResultTimeout):
        await workflow.aio.result(db, run_id, timeout=0.05)
    timer = threading.Timer(0.2, lambda: workflow.signal(db, run_id, "gate", [1, 2]))
    timer.start()
    assert await workflow.aio.result(db, run_id, timeout=20) == [1, 2]
    timer.join()
    other = start_run(db, Workflow(f"aio2-{tag}").external("gate"), None, queue_id=queue)
    cancel_run(db, other)
    with pytest.raises(RunFailed):
        await workflow.aio.result(db, other)
