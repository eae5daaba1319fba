"""How many queues a consumer's next claim round visits: fewer after a conflict, more
after rounds that commit at once (doubling until the first conflict)."""

from __future__ import annotations

from consumer.sizing import round_queues


def test_round_queues_halves_after_a_conflict_down_to_one() -> None:
    assert round_queues(256, conflicted=True, calm=False, most=256) == 128
    assert round_queues(1, conflicted=True, calm=True, most=256) == 1


def test_round_queues_doubles_while_calm_up_to_most() -> None:
    current, rounds = 1, 0
    while current < 256:
        current = round_queues(current, conflicted=False, calm=True, most=256)
        rounds += 1
    assert (current, rounds) == (256, 8)
    assert round_queues(200, conflicted=False, calm=True, most=256) == 256


def test_round_queues_grow_slowly_after_a_conflict() -> None:
    assert round_queues(1, conflicted=False, calm=False, most=256) == 2  # at least one more
    assert round_queues(100, conflicted=False, calm=False, most=256) == 105
    assert round_queues(256, conflicted=False, calm=False, most=256) == 256
    current, rounds = 1, 0
    while current < 256:
        current = round_queues(current, conflicted=False, calm=False, most=256)
        rounds += 1
    assert 60 < rounds < 120
