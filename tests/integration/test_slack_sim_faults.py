"""The simulator's scripted faults with a delay (`fault(..., hang_seconds=...)`), over real HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from sandbox.slack import SlackSimulator

pytestmark = pytest.mark.integration


async def call(sim: SlackSimulator, method: str, **params: Any) -> tuple[int, dict[str, Any], float]:
    """POST one Web API call with the bot token; its HTTP status, JSON answer and duration."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {sim.bot_token}"}
    async with aiohttp.ClientSession() as s, s.post(sim.api_url + method, json=params, headers=headers) as r:
        body: dict[str, Any] = await r.json()
        return r.status, body, time.monotonic() - started


async def test_hang_seconds_alone_answers_normally_after_the_delay(slack_sim: SlackSimulator) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.fault("chat.postMessage", 1, hang_seconds=0.6)
    assert slack_sim.pending_faults() == {"chat.postMessage": [{"remaining": 1, "hang_seconds": 0.6}]}
    status, body, took = await call(slack_sim, "chat.postMessage", channel=channel, text="late")
    assert (status, body["ok"]) == (200, True)
    assert took >= 0.6
    assert slack_sim.history(channel)[0]["text"] == "late"
    assert slack_sim.pending_faults() == {}
    status, body, _ = await call(slack_sim, "chat.postMessage", channel=channel, text="on time")
    assert body["ok"] is True


async def test_hang_seconds_with_an_error_answers_that_error_late(slack_sim: SlackSimulator) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.fault("chat.update", 2, hang_seconds=0.3, error="ratelimited")
    slack_sim.fault("chat.update", 1, hang_seconds=0.3, status=500)
    for expected in [(200, "ratelimited"), (200, "ratelimited"), (500, "internal_error")]:
        status, body, took = await call(slack_sim, "chat.update", channel=channel, ts="1.0", text="x")
        assert (status, body["error"]) == expected
        assert took >= 0.3
    status, body, _ = await call(slack_sim, "chat.update", channel=channel, ts="1.0", text="x")
    assert body["error"] == "message_not_found"  # the faults are used up: the real answer again
    assert [c.error for c in slack_sim.calls_to("chat.update")] == [
        "ratelimited",
        "ratelimited",
        "internal_error",
        "message_not_found",
    ]


async def test_a_delayed_call_is_answered_503_when_the_simulator_stops() -> None:
    sim = SlackSimulator()
    await sim.start()
    try:
        sim.fault("api.test", 1, hang_seconds=600)
        pending = asyncio.create_task(call(sim, "api.test"))
        await sim.wait_for(lambda: sim.pending_faults() == {}, timeout=5)  # the call is waiting
    finally:
        await sim.stop()
    status, body, took = await pending
    assert (status, body["error"]) == (503, "service_unavailable")
    assert took < 60


def test_hang_seconds_must_be_a_finite_non_negative_number(slack_sim: SlackSimulator) -> None:
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="hang_seconds"):
            slack_sim.fault("chat.update", 1, hang_seconds=bad)
    with pytest.raises(ValueError, match="times"):
        slack_sim.fault("chat.update", 0, error="x")
