"""Run the bot as its own process and start it again when it dies, as a kubelet restarts a crashed
container.

:class:`BotSupervisor` owns one ``python -m bot serve`` process at a time, in its own process group
(stopped by its PID, never by name), with its output on the sandbox's stderr. When the process
exits unasked it is started again after a backoff that doubles with each quick crash (0.5 s, 1 s,
2 s, ... at most 10 s) and starts over once a process has run for a while. :meth:`restart` stops it
gracefully (SIGTERM, SIGKILL after a grace period) and starts a new one at once; :meth:`kill`
sends SIGKILL and lets the supervisor notice, like a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

import aiohttp

from bot.errors import UserError
from sandbox.controlplane.launcher import set_pdeathsig

log = logging.getLogger("sandbox.supervisor")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
RESET_AFTER_S = 30.0  # a process that ran this long was not crash-looping: backoff starts over
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0


class BotStartError(UserError):
    """The bot process exited (or never became ready) when it was expected to come up; its own
    output, just above on stderr, says why."""


def crash_backoff(crashes: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> float:
    """Seconds to wait before starting again after ``crashes`` quick crashes in a row (1 or more)."""
    if crashes < 1:
        raise ValueError("crashes must be at least 1")
    return float(min(cap, first * 2 ** min(crashes - 1, 30)))


class BotSupervisor:
    """Keeps one bot process running.

    ``argv``/``env`` start the process; ``readyz_url`` tells when it is usable; ``on_change`` is
    called (on the event loop) whenever :attr:`pid` changes; ``output`` is the file descriptor the
    process writes its stdout and stderr to (default: our stderr).
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        readyz_url: str,
        on_change: Callable[[], None] = lambda: None,
        output: int | None = None,
        backoff_first: float = BACKOFF_FIRST_S,
        backoff_max: float = BACKOFF_MAX_S,
        stop_grace: float = STOP_GRACE_S,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.readyz_url = readyz_url
        self.on_change = on_change
        self.output = sys.stderr.fileno() if output is None else output
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.stop_grace = stop_grace
        self.starts = 0  # processes started so far
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._replace = False  # the next exit is a restart we asked for: no backoff
        self._spawned = asyncio.Event()  # replaced on every spawn
        self._lock = asyncio.Lock()  # one restart/kill/stop at a time

    @property
    def pid(self) -> int | None:
        """The running process's PID, or None between a death and the next start."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self, timeout: float = READY_TIMEOUT_S) -> int:
        """Start the first process and wait until it is ready; then keep it running."""
        if self._task is not None:
            raise RuntimeError("already started")
        proc = await self._spawn()
        await self._wait_ready(proc, timeout)
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="sandbox:bot-supervisor")
        return proc.pid

    async def restart(self, timeout: float = READY_TIMEOUT_S) -> int:
        """Stop the process gracefully, start a new one at once, and wait until it is ready."""
        async with self._lock:
            spawned = self._spawned
            proc = self._proc
            if proc is not None and proc.returncode is None:
                self._replace = True
                await self._terminate(proc)
            new = await self._next_process(spawned, timeout)
            await self._wait_ready(new, timeout)
            return new.pid

    async def kill(self) -> int | None:
        """SIGKILL the process group (a crash, as far as the supervisor knows); return the PID killed."""
        async with self._lock:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                return None
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            return proc.pid

    async def wait_restarted(self, old_pid: int | None, timeout: float = READY_TIMEOUT_S) -> int:
        """Wait until a process other than ``old_pid`` runs and is ready; return its PID."""
        async with asyncio.timeout(timeout):
            while True:
                spawned = self._spawned
                proc = self._proc
                if proc is not None and proc.returncode is None and proc.pid != old_pid:
                    await self._wait_ready(proc, timeout)
                    return proc.pid
                await spawned.wait()

    async def stop(self) -> None:
        """Stop supervising and stop the process (SIGTERM, SIGKILL after the grace period)."""
        self._stopping = True
        self._spawned.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            await self._terminate(proc)
        self.on_change()

    # -- internals ---------------------------------------------------------------------------

    async def _spawn(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            start_new_session=True,
            preexec_fn=set_pdeathsig,  # the sandbox dying hard takes the bot along
        )
        self._proc = proc
        self.starts += 1
        spawned, self._spawned = self._spawned, asyncio.Event()
        spawned.set()
        log.info("bot started (pid %d)", proc.pid)
        self.on_change()
        return proc

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        crashes = 0
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            started = loop.time()
            code = await proc.wait()
            self.on_change()
            if self._stopping:
                return
            if self._replace:
                self._replace = False
                delay = 0.0
                log.info("bot (pid %d) stopped for a restart (status %s)", proc.pid, code)
            else:
                crashes = 1 if loop.time() - started >= RESET_AFTER_S else crashes + 1
                delay = crash_backoff(crashes, self.backoff_first, self.backoff_max)
                log.warning(
                    "bot (pid %d) exited with status %s; starting it again in %.1f s", proc.pid, code, delay
                )
            await asyncio.sleep(delay)
            while not self._stopping:
                try:
                    await self._spawn()
                    break
                except OSError as e:
                    crashes += 1
                    delay = crash_backoff(crashes, self.backoff_first, self.backoff_max)
                    log.warning("cannot start the bot (%s); trying again in %.1f s", e, delay)
                    await asyncio.sleep(delay)

    async def _next_process(self, spawned: asyncio.Event, timeout: float) -> asyncio.subprocess.Process:
        async with asyncio.timeout(timeout):
            await spawned.wait()
        proc = self._proc
        if self._stopping or proc is None:
            raise BotStartError("the sandbox is stopping")
        return proc

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        _killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(self.stop_grace):
                await proc.wait()
        except TimeoutError:
            log.warning("bot (pid %d) did not stop within %.0f s: SIGKILL", proc.pid, self.stop_grace)
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _wait_ready(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        """Poll /readyz until 200 (the process is starting: there is nothing to watch yet)."""
        try:
            async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
                while True:
                    if proc.returncode is not None:
                        raise BotStartError(f"the bot (pid {proc.pid}) exited with status {proc.returncode}")
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(self.readyz_url) as resp:
                            if resp.status == 200:
                                return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise BotStartError(f"the bot (pid {proc.pid}) was not ready within {timeout:.0f} s") from None


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
