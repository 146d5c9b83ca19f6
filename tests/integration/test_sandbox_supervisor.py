"""The sandbox's bot supervisor (sandbox/supervisor.py) with a tiny stand-in server as the process.

The stand-in answers /readyz like the bot; it can be told to exit a moment after it is up, to crash
loop. Real processes, real signals, real HTTP on loopback; the bot itself: test_sandbox.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from sandbox.supervisor import BotSupervisor
from tests.fixtures.bot import free_port

pytestmark = pytest.mark.integration

STAND_IN = """
import http.server, os, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404); self.end_headers()
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
server.allow_reuse_address = True
if os.environ.get("CRASH_AFTER"):
    threading.Timer(float(os.environ["CRASH_AFTER"]), lambda: os._exit(3)).start()
server.serve_forever()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def supervisor(port: int, **env: str) -> BotSupervisor:
    return BotSupervisor(
        [sys.executable, "-c", STAND_IN, str(port)],
        {**os.environ, **env},
        readyz_url=f"http://127.0.0.1:{port}/readyz",
        output=os.open(os.devnull, os.O_WRONLY),
    )


@pytest_asyncio.fixture(loop_scope="session")
async def running() -> AsyncIterator[BotSupervisor]:
    sup = supervisor(free_port())
    await sup.start()
    try:
        yield sup
    finally:
        await sup.stop()


async def ready(sup: BotSupervisor) -> int:
    async with aiohttp.ClientSession() as s, s.get(sup.readyz_url) as r:
        return r.status


async def test_a_killed_process_is_started_again(running: BotSupervisor) -> None:
    changes: list[int | None] = []
    running.on_change = lambda: changes.append(running.pid)
    old = running.pid
    assert old is not None
    assert await running.kill() == old
    new = await running.wait_restarted(old, timeout=10)
    assert new != old
    assert not alive(old)
    assert await ready(running) == 200
    assert changes[0] is None and changes[-1] == new  # down, then the new pid
    assert running.starts == 2


async def test_restart_replaces_the_process_at_once(running: BotSupervisor) -> None:
    old = running.pid
    new = await running.restart(timeout=10)
    assert new not in (None, old)
    assert running.pid == new
    assert await ready(running) == 200
    assert old is not None and not alive(old)


async def test_stop_stops_the_process_and_supervision() -> None:
    sup = supervisor(free_port())
    pid = await sup.start()
    await sup.stop()
    assert not alive(pid)
    assert sup.pid is None
    assert sup.starts == 1


async def test_a_crash_loop_backs_off_more_each_time() -> None:
    sup = supervisor(free_port(), CRASH_AFTER="0.1")
    loop = asyncio.get_running_loop()
    starts: list[float] = []
    sup.on_change = lambda: starts.append(loop.time()) if sup.pid is not None else None
    await sup.start()
    try:
        async with asyncio.timeout(20):
            while len(starts) < 4:  # the first start, then three restarts after 0.5, 1 and 2 s
                await asyncio.sleep(0.05)
    finally:
        await sup.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)][:3]
    # each gap is the process's short life plus the backoff: 0.5 s, 1 s, 2 s
    assert [g >= backoff for g, backoff in zip(gaps, (0.5, 1.0, 2.0), strict=True)] == [True] * 3
    assert gaps[0] < gaps[1] < gaps[2]
