"""Background work with an owner: every task named, guarded, and stopped in one place.

`Tasks.spawn` starts a named task and keeps a reference (asyncio keeps only weak ones); an exception
that ends a task is logged with its name instead of vanishing. `Tasks.later` runs a coroutine after a
delay (a timer that `stop` cancels too). `Tasks.stop(drain)` lets running tasks finish for up to
`drain` seconds, then cancels the rest and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Tasks:
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("task %s ended with an error: %r", task.get_name(), exc, exc_info=exc)

    def later(self, key: str, delay: float, start: Callable[[], None]) -> None:
        """Call `start()` after `delay` seconds (replacing an earlier timer with the same key)."""
        if self.stopping:
            return
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            if not self.stopping:
                start()

        self._timers[key] = asyncio.get_running_loop().call_later(max(0.0, delay), fire)

    async def stop(self, drain: float = 0.0) -> None:
        self.stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        pending = set(self._tasks)
        if pending and drain > 0:
            _, pending = await asyncio.wait(pending, timeout=drain)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
