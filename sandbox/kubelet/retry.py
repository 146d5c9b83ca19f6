"""When and how soon the simulated kubelet tries again: transient errors and capped jittered backoff.

A real kubelet outlives its apiserver: every loop (the pod watch, lease renewal, status patches,
bindings, deletions) keeps going through refused or reset connections, truncated responses,
timeouts and the apiserver's 5xx and 429 answers. This module decides which errors those are and
how long to wait before the next attempt. Pure apart from the random source, which can be passed in.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """True for errors that go away by themselves: the apiserver restarting, overloaded or slow.

    Transport errors (refused/reset connections, incomplete payloads, disconnects, timeouts) and
    answers 429, 5xx and status 0 (no answer at all). Not 4xx: those mean the request is wrong.
    """
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return status in (0, 429) or status >= 500
    return isinstance(exc, aiohttp.ClientError | OSError | TimeoutError)


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): "equal jitter" on a doubling
    delay capped at ``cap``, so it is never below half the capped delay and never above it."""
    if attempt < 0:
        raise ValueError("attempt must not be negative")
    ceiling = min(cap, base * float(2 ** min(attempt, 30)))
    return ceiling / 2 + rand() * ceiling / 2


@dataclass
class Backoff:
    """The retry state of one loop: :meth:`next` gives the next delay, :meth:`reset` after a success."""

    base: float = BACKOFF_BASE_S
    cap: float = BACKOFF_CAP_S
    rand: Callable[[], float] = random.random
    attempt: int = field(default=0, init=False)

    def next(self) -> float:
        delay = backoff_delay(self.attempt, base=self.base, cap=self.cap, rand=self.rand)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0

    async def sleep(self) -> None:
        await asyncio.sleep(self.next())
