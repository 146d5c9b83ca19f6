"""The outbox's pacing (a token bucket that lets bursts through and then spaces calls at its rate) and
its order of messages in a channel."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.outbox import Budget, Outbox, Post


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


async def test_a_new_card_goes_before_waiting_notes_but_after_waiting_channel_messages() -> None:
    # Nothing is sent: the sender's task only starts once this test yields, and is stopped first.
    outbox = Outbox(AsyncWebClient(token="xoxb-unit", base_url="http://127.0.0.1:9/api/"), interval=1.0)
    sender = outbox.sender("C1")
    sender.posts.extend([Post("paused"), Post("note 1", release_id="r1"), Post("note 2", release_id="r1")])
    sender.post_card(Post("card", done=asyncio.get_running_loop().create_future()))
    sender.post_card(Post("second card", done=asyncio.get_running_loop().create_future()))
    assert [p.text for p in sender.posts] == ["paused", "card", "second card", "note 1", "note 2"]
    await outbox.tasks.stop()
