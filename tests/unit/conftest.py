"""Unit tests leave nothing running: a test that ends with asyncio tasks still pending fails, naming
them (the engine, the caches and the outbox own every task they start and stop them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def no_tasks_left_behind() -> AsyncIterator[None]:
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)  # let tasks that were just cancelled finish
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]
    for task in left:
        task.cancel()
    if left:
        pytest.fail(f"tasks left pending: {sorted(t.get_name() for t in left)}", pytrace=False)
