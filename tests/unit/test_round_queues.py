"""How many queues a consumer's next claim round visits: fewer after a conflict, more
after rounds that commit at once."""

from __future__ import annotations

from consumer.sizing import round_queues


def test_round_queues_halves_after_a_conflict_down_to_one() -> None:
    assert round_queues(256, conflicted=True, most=256) == 128
    assert round_queues(1, conflicted=True, most=256) == 1


def test_round_queues_grows_after_a_clean_round_up_to_most() -> None:
    assert round_queues(1, conflicted=False, most=256) == 2  # at least one more
    assert round_queues(100, conflicted=False, most=256) == 105
    assert round_queues(250, conflicted=False, most=256) == 256
    assert round_queues(256, conflicted=False, most=256) == 256


def test_round_queues_recover_after_a_burst_of_conflicts() -> None:
    current = 256
    for _ in range(8):
        current = round_queues(current, conflicted=True, most=256)
    assert current == 1
    rounds = 0
    while current < 256:
        current = round_queues(current, conflicted=False, most=256)
        rounds += 1
    assert rounds < 150
