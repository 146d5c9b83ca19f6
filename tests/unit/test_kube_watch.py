"""Watches that never decide on stale facts: deadlines counted only while a watch is up, Retry-After
honoured, and a shared cache whose stream fails started again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from bot.kube import cache
from bot.kube.client import (
    RETRY_AFTER_MAX_S,
    KubeUnavailable,
    _api_error,
    _translate,
    first_while_up,
    retry_delay,
)

Obj = dict[str, object]


async def _script(*steps: tuple[str, Obj] | float) -> AsyncGenerator[tuple[str, Obj], None]:
    for step in steps:
        if isinstance(step, float):
            await asyncio.sleep(step)
        else:
            yield step
    await asyncio.sleep(3600)


def _named(name: str) -> Obj:
    return {"metadata": {"name": name}}


async def test_time_while_the_watch_is_down_does_not_count_against_the_deadline() -> None:
    events = _script(("SYNCED", {}), ("DOWN", {}), 0.3, ("UP", {}), ("MODIFIED", _named("ready")))
    found = await first_while_up(events, lambda o: o["metadata"] or None, timeout=0.2)
    assert found == {"name": "ready"}


async def test_the_deadline_passes_while_the_watch_is_up() -> None:
    events = _script(("SYNCED", {}), 0.3, ("MODIFIED", _named("late")))
    with pytest.raises(TimeoutError):
        await first_while_up(events, lambda o: o, timeout=0.1)


def test_retry_after_from_a_429_is_honoured_and_capped() -> None:
    e = _translate(_api_error(429, "too many requests", {"Retry-After": "7"}), "deployment a/b")
    assert isinstance(e, KubeUnavailable) and e.retry_after == 7.0
    assert retry_delay(e, 0) == 7.0
    huge = _translate(_api_error(429, "", {"Retry-After": "600"}), "x")
    assert retry_delay(huge, 0) == RETRY_AFTER_MAX_S
    unsaid = _translate(_api_error(503, "", {"Retry-After": "soon"}), "x")
    assert isinstance(unsaid, KubeUnavailable) and unsaid.retry_after is None
    assert retry_delay(unsaid, 0) <= 0.2 + 1e-9
    assert retry_delay(OSError("reset"), 10) <= 5.0


async def test_a_cache_whose_stream_fails_is_down_then_lists_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "RESTART_MIN_S", 0.01)
    calls = 0

    async def events() -> AsyncIterator[tuple[str, Obj]]:
        nonlocal calls
        calls += 1
        if calls == 1:
            yield "ADDED", _named("a")
            yield "SYNCED", {"items": [_named("a")]}
            raise KeyError("object")  # not a transport error: stream() does not retry it
        yield "ADDED", _named("b")
        yield "SYNCED", {"items": [_named("b")]}
        await asyncio.sleep(3600)

    seen: list[str] = []
    informer = cache.Informer("pods in ns", events)
    informer.subscribe(lambda kind, obj: seen.append(kind))
    try:
        async with asyncio.timeout(5):
            while calls < 2 or informer.stale:
                await asyncio.sleep(0.01)
    finally:
        await informer.stop()
    assert seen.index("DOWN") < len(seen) - seen[::-1].index("SYNCED") - 1
    assert set(informer.objects) == {"b"}  # the object gone while the stream was down is gone here
    assert "DELETED" in seen
