"""Django's tasks API on quick, with the real packages: the test shop
(tests/django_project) enqueues from a view in ``transaction.on_commit``, and a
``python -m django quick_worker`` process runs the tasks."""

from __future__ import annotations

from tests.extras import require_django

require_django()

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.core.management import call_command
from django.test import Client

import quick
from quick.contrib.django import compat
from quick.inspection import count_finished
from quick.jobs import now_ms
from tests.acceptance.processes import ROOT, kill_worker, stop_worker, wait_until

SETTINGS = "tests.django_project.settings"
#: Django 6's tasks API, else the backport's (TaskResultDoesNotExist lives in either).
api = compat.api


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Django set up on the test shop (its database migrated) and a worker process
    serving its tasks; yields the quick store's URL."""
    base = tmp_path_factory.mktemp("shop")
    url = f"sqlite:///{base / 'quick.db'}"
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "SHOP_DJANGO_DB": str(base / "shop.sqlite3"),
        "SHOP_QUICK_URL": url,
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    django.setup()
    call_command("migrate", run_syncdb=True, verbosity=0)
    argv = [sys.executable, "-m", "django", "quick_worker", "--log-level", "warning"]
    worker = subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE
    )
    try:
        yield url
    finally:
        err = stop_worker(worker)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert worker.returncode == 0, err.decode()[-3000:]


def finished(task: Any, result_id: str) -> Any:
    """The task's result once the worker has finished it."""
    wait_until(lambda: task.get_result(result_id).is_finished, 60, f"result {result_id}")
    return task.get_result(result_id)


def test_django_view_enqueues_on_commit_and_the_worker_returns_its_value(shop: str) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import fulfil

    response = Client().post("/orders", {"total": "12"})
    assert response.status_code == 200
    body = response.json()
    result = finished(fulfil, body["result_id"])
    assert result.status == "SUCCESSFUL"
    assert result.return_value == {"order": body["order"], "total": 12}
    assert (result.attempts, result.errors, result.args) == (1, [], [body["order"]])
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert Order.objects.filter(pk=body["order"]).exists()
    shown = Client().get(f"/results/{body['result_id']}").json()
    assert shown["status"] == "SUCCESSFUL"
    assert shown["return_value"] == {"order": body["order"], "total": 12}


def test_django_failing_task_reports_failed_with_its_error(shop: str) -> None:
    from tests.django_project.shop.tasks import explode

    result = finished(explode, explode.enqueue("the oven caught fire").id)
    assert result.status == "FAILED"
    assert result.attempts == 1
    [error] = result.errors
    assert error.exception_class_path == "builtins.RuntimeError"
    assert error.exception_class is RuntimeError
    assert "RuntimeError: the oven caught fire" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


def test_django_task_enqueued_in_a_rolled_back_transaction_never_runs(shop: str) -> None:
    from tests.django_project.shop.models import Order
    from tests.django_project.shop.tasks import add

    since = now_ms()
    body = Client().post("/orders", {"total": "7", "rollback": "1"}).json()
    assert body["result_id"] is None
    assert not Order.objects.filter(pk=body["order"]).exists()
    # A later task that did run: the rolled-back one would have been enqueued before it.
    assert finished(add, add.enqueue(1, 2).id).return_value == 3
    with quick.open(shop) as db:
        assert count_finished(db, since) == 1
        assert quick.list_jobs(db, "default") == []


def test_django_async_task_and_async_api(shop: str) -> None:
    from tests.django_project.shop.tasks import add, attempt_of

    async def enqueue_then_read() -> tuple[str, str]:
        enqueued = await add.aenqueue(20, b=22)
        read = await add.aget_result(enqueued.id)
        return enqueued.id, read.status

    result_id, status = asyncio.run(enqueue_then_read())
    assert status in ("READY", "RUNNING", "SUCCESSFUL")
    assert finished(add, result_id).return_value == 42
    context = finished(attempt_of, (enqueued := attempt_of.enqueue("ctx")).id)
    assert context.return_value == ["ctx", 1, enqueued.id]


def test_django_run_after_priority_and_queue_map_onto_the_job(shop: str) -> None:
    from tests.django_project.shop.tasks import add, fulfil

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    result = fulfil.using(run_after=later, priority=-30).enqueue(1)
    with quick.open(shop) as db:
        job = quick.get_job(db, result.id)
        assert job is not None
        assert (job.queue, job.priority, job.max_attempts) == ("default", 130, 1)
        assert job.vis_ms == int(later.timestamp() * 1000)
        assert quick.job_state(db, result.id) is quick.JobState.SCHEDULED
        assert fulfil.get_result(result.id).status == "READY"
        urgent = quick.get_job(db, add.using(priority=100, run_after=later).enqueue(1, 1).id)
        assert urgent is not None
        assert (urgent.queue, urgent.priority) == ("slow", 0)
        assert quick.cancel(db, result.id)
    with pytest.raises(api.TaskResultDoesNotExist, match="cancelled"):
        fulfil.get_result(result.id)


def test_django_task_arguments_that_do_not_serialise_are_refused_before_writing(
    shop: str,
) -> None:
    from tests.django_project.shop.tasks import add

    with quick.open(shop) as db:
        before = quick.queue_counts(db, "slow")
        with pytest.raises(quick.InvalidPayload, match=r"args\[1\].*object"):
            add.enqueue(1, object())
        with pytest.raises(quick.InvalidPayload, match=r"kwargs\['b'\].*datetime"):
            add.enqueue(1, b=dt.datetime.now(dt.UTC))
        assert quick.queue_counts(db, "slow") == before


def test_django_job_naming_an_unregistered_task_is_never_imported(shop: str) -> None:
    """A job whose topic names code that is no registered task (here ``os.system``)
    finds no handler: the worker dead-letters it and imports nothing."""
    from tests.django_project.shop.tasks import add

    payload = {"a": ["touch /tmp/never"], "k": {}, "b": "default", "e": now_ms()}
    with quick.open(shop) as db:
        job_id = quick.enqueue(db, "default", "django:os.system", payload, max_attempts=1)
        wait_until(lambda: quick.job_state(db, job_id) is quick.JobState.DEAD, 60, "dead")
        [dead] = [d for d in quick.list_dead(db, "default") if d.job_id == job_id]
        assert "no handler is registered" in dead.error
    with pytest.raises(api.TaskResultDoesNotExist, match="not a task registered"):
        add.get_backend().get_result(job_id)


def test_django_get_result_of_unknown_and_malformed_ids(shop: str) -> None:
    from tests.django_project.shop.tasks import add

    backend = add.get_backend()
    with pytest.raises(api.TaskResultDoesNotExist, match="no such job"):
        backend.get_result("0" * 32)
    with pytest.raises(quick.InvalidArgument, match="result_id"):
        backend.get_result("")


def test_django_backend_options(shop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from quick.contrib.django import QuickBackend

    monkeypatch.setenv("QUICK_DB", "sqlite:///./from-env.db")
    assert QuickBackend("a", {"OPTIONS": {}}).url == "sqlite:///./from-env.db"
    monkeypatch.delenv("QUICK_DB")
    assert QuickBackend("a", {}).url == "sqlite:///./quick.db"
    assert QuickBackend("a", {"OPTIONS": {"url": "sqlite:///x.db"}}).url == "sqlite:///x.db"
    with pytest.raises(ImproperlyConfigured, match="unknown option"):
        QuickBackend("a", {"OPTIONS": {"uri": "sqlite:///x.db"}})
    with pytest.raises(ImproperlyConfigured, match="max_attempts"):
        QuickBackend("a", {"OPTIONS": {"max_attempts": 0}})


def test_django_quick_worker_refuses_a_backend_that_is_not_quick(shop: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django", "quick_worker", "--backend", "nope"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "TASKS has no backend 'nope'" in result.stderr


def test_django_corrupt_result_record_is_named_not_trusted(shop: str) -> None:
    """A finished task whose stored result does not decode reads as no result, naming
    the record's key; the backend keeps serving the others."""
    from keyspace.layout import RESULTS
    from tests.django_project.shop.tasks import add

    spoiled, kept = add.enqueue(1, 1).id, add.enqueue(2, 2).id
    finished(add, spoiled)
    with quick.open(shop) as db:
        db.transact(lambda tr: tr.set(RESULTS.pack((spoiled,)), b"\xc1"))
    named = f"corrupt .job result  job_id='{spoiled}'"
    with pytest.raises(api.TaskResultDoesNotExist, match=named):
        add.get_result(spoiled)
    assert finished(add, kept).return_value == 4


def test_django_return_value_that_is_not_json_fails_the_task(shop: str) -> None:
    from tests.django_project.shop.tasks import shapeless

    result = finished(shapeless, shapeless.enqueue().id)
    assert result.status == "FAILED"
    [error] = result.errors
    assert error.exception_class_path == "quick.errors.InvalidPayload"
    assert "return value: must be a JSON value" in error.traceback


def test_django_running_task_reports_running_with_its_worker(
    shop: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.django_project.shop.tasks import hold

    release = tmp_path_factory.mktemp("hold") / "release"
    result_id = hold.enqueue(str(release)).id
    wait_until(lambda: hold.get_result(result_id).status == "RUNNING", 60, "running")
    running = hold.get_result(result_id)
    assert running.attempts == 1
    assert running.worker_ids[0].startswith("consumer-")
    with pytest.raises(ValueError, match="not finished"):
        running.return_value  # noqa: B018
    release.touch()
    done = finished(hold, result_id)
    assert (done.return_value, done.worker_ids) == (str(release), running.worker_ids)


def test_django_task_of_a_killed_worker_runs_again_elsewhere(
    shop: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """kill -9 mid-task: once the lease runs out, another worker runs the task again
    (at least once), and the result counts both attempts."""
    from quick.contrib.django import QuickBackend
    from tests.django_project.shop.tasks import hold

    base = tmp_path_factory.mktemp("killed")
    url, release = f"sqlite:///{base / 'quick.db'}", base / "release"
    backend = QuickBackend("default", {"QUEUES": ["default"], "OPTIONS": {"url": url}})
    argv = [sys.executable, "-m", "django", "quick_worker", "--lease-seconds", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHOP_QUICK_URL": url}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*argv, "--log-level", "warning"], cwd=ROOT, env=env)

    result_id = backend.enqueue(hold, [str(release)], {}).id
    doomed = start()
    wait_until(lambda: backend.get_result(result_id).status == "RUNNING", 60, "running")
    first_worker = backend.get_result(result_id).worker_ids
    kill_worker(doomed)
    release.touch()
    survivor = start()
    try:
        wait_until(lambda: backend.get_result(result_id).is_finished, 60, "finished")
    finally:
        stop_worker(survivor)
    done = backend.get_result(result_id)
    assert (done.status, done.return_value, done.attempts) == ("SUCCESSFUL", str(release), 2)
    assert done.worker_ids[1] != first_worker[0]


def test_django_max_attempts_option_retries_a_failing_task(shop: str) -> None:
    from quick.contrib.django import QuickBackend
    from tests.django_project.shop.tasks import explode

    options = {"url": shop, "max_attempts": 2}
    backend = QuickBackend("default", {"QUEUES": ["default"], "OPTIONS": options})
    result_id = backend.enqueue(explode, ["twice"], {}).id
    wait_until(lambda: backend.get_result(result_id).is_finished, 60, "finished")
    result = backend.get_result(result_id)
    assert (result.status, result.attempts) == ("FAILED", 2)
    assert [e.exception_class_path for e in result.errors] == ["builtins.RuntimeError"]
    assert result.worker_ids[-1].startswith("consumer-")
