"""The shared chat.update budget that keeps progress within Slack's limits."""

from __future__ import annotations

from bots.slack.placeholder import UpdateBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_update_budget_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    budget = UpdateBudget(per_minute=60, burst=3, clock=clock)
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 2.0  # one token a second
    assert [budget.take() for _ in range(3)] == [True, True, False]
    clock.now += 60.0  # never more than the burst
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
