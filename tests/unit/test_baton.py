"""The wake baton: one holder per lock file, handed on when given up, freed by a death."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from consumer.baton import Baton, baton_path


def test_baton_one_holder_until_given_up(tmp_path: Path) -> None:
    path = str(tmp_path / "wake.lock")
    first, second = Baton(path), Baton(path)
    try:
        assert first.take(0.1)
        assert not second.take(0.1)  # still wished for: taken as soon as it is free
        first.give_up()
        deadline = time.monotonic() + 5
        while not second.held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert second.held
        assert second.take(0)
        assert not first.take(0.05)
    finally:
        first.close()
        second.close()


def test_baton_close_ends_a_blocked_take(tmp_path: Path) -> None:
    path = str(tmp_path / "wake.lock")
    holder, waiter = Baton(path), Baton(path)
    try:
        assert holder.take(0.1)
        started = time.monotonic()
        threading.Timer(0.1, waiter.close).start()
        assert not waiter.take(10)
        assert time.monotonic() - started < 5
    finally:
        holder.close()
        waiter.close()


def test_baton_of_a_killed_holder_passes_on(tmp_path: Path) -> None:
    path = str(tmp_path / "wake.lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from consumer.baton import Baton; "
            f"assert Baton({path!r}).take(5); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    waiter = Baton(path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        assert not waiter.take(0.1)
        holder.kill()
        started = time.monotonic()
        assert waiter.take(10)
        assert time.monotonic() - started < 5
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
        waiter.close()


def test_baton_without_a_file_always_held() -> None:
    none = Baton(None)
    assert none.take(0)
    assert none.held
    none.close()
    assert not none.take(0)


def test_baton_path_names_no_file_from_the_identity() -> None:
    path = baton_path("../../etc/passwd")
    assert Path(path).name.startswith("quick-wake-")
    assert "passwd" not in path
