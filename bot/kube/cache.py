"""Shared watch caches: one list+watch per (kind, namespace), fed to everyone who needs it.

A release never opens watches of its own: its snapshot is read from these caches, so the number of
watches grows with the namespaces in use, not with the releases running. Each cache follows
`Kube.stream`, which survives any transport error; while its watch is down the cache says since when
(`down_since`), so nobody takes a decision on facts that may be stale. Subscribers are plain callbacks,
called on every change (and when the cache goes down or comes back) from the cache's own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

Obj = dict[str, Any]


class Cluster(Protocol):
    def stream_of(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]: ...


log = logging.getLogger(__name__)

# A watch stream that fails in a way it does not retry by itself is started again after this long:
# doubling from the first, capped.
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0


def restart_delay(attempt: int) -> float:
    return float(min(RESTART_MAX_S, RESTART_MIN_S * 2**attempt))


# kind, the object (or {} for "DOWN"/"UP"/"SYNCED")
Listener = Callable[[str, Obj], None]


class Informer:
    """The objects of one kind in one namespace (optionally label-selected), kept current by a watch."""

    def __init__(self, what: str, events: Callable[[], AsyncIterator[tuple[str, Obj]]]) -> None:
        self.what = what
        self._events = events
        self.objects: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.down_since: datetime | None = None  # since when the watch is down
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def stale(self) -> bool:
        """True while the watch is down (or has not listed yet): the objects may be out of date."""
        return self.down_since is not None or not self.synced.is_set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change from now on; returns the function that unsubscribes."""
        self._listeners.add(listener)
        self._ensure_running()

        def unsubscribe() -> None:
            self._listeners.discard(listener)

        return unsubscribe

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"informer:{self.what}")

    async def wait_synced(self, timeout: float) -> bool:
        self._ensure_running()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.synced.wait()
        return self.synced.is_set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async for kind, obj in self._events():
                    self._apply(kind, obj)
                    attempt = 0
                log.error("the watch behind %s ended; listing again", self.what)
            except asyncio.CancelledError:
                raise
            except Exception:  # never expected: stream() retries everything; keep the cache honest
                log.exception("the watch behind %s failed; listing again", self.what)
            # Down until the new listing (SYNCED) says what is there: nobody decides meanwhile.
            self._apply("DOWN", {})
            await asyncio.sleep(restart_delay(attempt))
            attempt += 1

    def _apply(self, kind: str, obj: Obj) -> None:
        if kind == "DOWN":
            if self.down_since is None:
                self.down_since = datetime.now(UTC)
                log.info("the watch behind %s is down: %s", self.what, obj.get("error", ""))
            self._emit("DOWN", {})  # a state change, like UP and SYNCED: listeners re-read the cache
            return
        if kind == "UP":
            self.down_since = None
            self._emit("UP", obj)
            return
        if kind == "SYNCED":
            names = {o["metadata"]["name"] for o in obj.get("items", [])}
            for gone in [n for n in self.objects if n not in names]:
                self._emit("DELETED", self.objects.pop(gone))
            self.down_since = None
            self.synced.set()
            self._emit("SYNCED", {})
            return
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        self._emit(kind, obj)

    def _emit(self, kind: str, obj: Obj) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, obj)
            except Exception:
                log.exception("a listener of %s failed", self.what)


class Caches:
    """Every shared cache of one cluster connection, created on first use."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._informers: dict[tuple[str, str, str | None], Informer] = {}

    def _get(self, kind: str, namespace: str, label_selector: str | None = None) -> Informer:
        key = (kind, namespace, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            what = f"{kind} in {namespace}" + (f" ({label_selector})" if label_selector else "")
            cluster = self.cluster
            informer = Informer(what, lambda: cluster.stream_of(kind, namespace, label_selector))
            self._informers[key] = informer
        return informer

    def deployments(self, namespace: str) -> Informer:
        return self._get("deployments", namespace)

    def pods(self, namespace: str) -> Informer:
        return self._get("pods", namespace)

    def configmaps(self, namespace: str, label_selector: str) -> Informer:
        return self._get("configmaps", namespace, label_selector)

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()
