"""The outbox's pacing: a token bucket that lets bursts through and then spaces calls at its rate."""

from __future__ import annotations

from bot.slack.outbox import Budget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_calls_are_spaced_by_the_rate() -> None:
    clock = Clock()
    budget = Budget(rate=1.0, burst=3, clock=clock)
    assert [budget.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.reserve() == 1.0  # the fourth waits a second
    assert budget.reserve() == 2.0  # and the fifth queues behind it
    clock.now += 10  # a quiet spell refills the burst, never more
    assert [budget.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.reserve() == 1.0


def test_a_429_spends_what_is_left() -> None:
    clock = Clock()
    budget = Budget(rate=0.5, burst=5, clock=clock)
    budget.drain()
    assert budget.reserve() == 2.0
