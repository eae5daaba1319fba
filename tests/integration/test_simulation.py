"""The deterministic simulation (``scripts/simulate.py``): it passes, it replays, and it can fail.

300 seeds of the real queue under random producers, consumers, crashes, operators, cron,
workflow runs and injected faults must show no violation; every deliberate break of the protocol
must be caught within 200 seeds. Fewer steps per seed than the script's default keep
the suite fast; ``docs/simulation.md`` has the full-size figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import simulate
from sim_breaks import BREAKS

STEPS = 60


def test_simulation_300_seeds_show_no_violation() -> None:
    summary = simulate.run_seeds(list(range(300)), STEPS)
    assert summary.failure is None, str(summary.failure)
    assert summary.seeds == 300
    assert summary.steps == 300 * STEPS
    assert sum(summary.faults.values()) > 0, "no fault was injected"
    kinds = ("claim", "claim_round", "settle_batch", "crash", "requeue_dead", "activate_cron")
    groups = ("batch", "batch_more", "depend", "debounce", "throttle")
    for op in (*kinds, "wf_start", "wf_work", "wf_steer", *groups):
        assert summary.ops[op] > 0, f"no {op} ran"


def test_simulation_replays_a_seed_exactly(tmp_path: Path) -> None:
    first = simulate.simulate_seed(7, STEPS, tmp_path)
    again = simulate.simulate_seed(7, STEPS, tmp_path)
    assert (first.ops, first.faults) == (again.ops, again.faults)


def test_simulation_reports_the_seed_and_step_of_a_violation() -> None:
    summary = simulate.run_seeds([0, 1, 2], STEPS, breakage="enqueue-skips-pointer")
    failure = summary.failure
    assert failure is not None
    assert failure.step >= 1
    assert "no pointer" in " ".join(failure.problems)
    assert f"seed {failure.seed} step {failure.step}" in str(failure)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BREAKS))
def test_simulation_catches_break_within_200_seeds(name: str) -> None:
    summary = simulate.run_seeds(list(range(200)), STEPS, breakage=name)
    assert summary.failure is not None, f"break {name} survived 200 seeds"
