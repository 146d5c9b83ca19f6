"""Shared watch caches: one list+watch per (kind, namespace), fed to everyone who needs it; or, with
the cluster-wide scope (`RELEASE_BOT_WATCH_SCOPE=cluster`, where the chart grants list and watch
cluster-wide), one list+watch per kind for the whole cluster, fanned out into the same per-namespace
views (`Fanout`), keeping only the catalog's namespaces.

A release never opens watches of its own: its snapshot is read from these caches, so the number of
watches grows with the namespaces in use (or not at all, cluster-wide), not with the releases running. Each cache follows
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
    ) -> AsyncIterator[tuple[str, Obj]]:
        """`namespace` "" is every namespace (a cluster-wide list and watch)."""
        ...


NAMESPACED, CLUSTER = "namespace", "cluster"  # the watch scopes


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


class View(Informer):
    """One namespace's objects of a cluster-wide watch (`Fanout`): an Informer to its readers, fed by
    the fan-out's one task instead of a watch of its own."""

    def __init__(self, what: str, fanout: Fanout) -> None:
        super().__init__(what, fanout.events)
        self._fanout = fanout

    def _ensure_running(self) -> None:
        self._fanout.start()

    async def stop(self) -> None:
        await self._fanout.stop()


class Fanout:
    """One list+watch of a kind across the cluster, routed to a `View` per namespace. It keeps the
    objects of `namespaces` (the catalog's, known at start-up) and drops the others as they come, so
    memory follows the catalog, not the cluster; a view made later starts from what it kept."""

    def __init__(
        self, what: str, events: Callable[[], AsyncIterator[tuple[str, Obj]]], namespaces: set[str]
    ) -> None:
        self.what = what
        self.events = events
        self.namespaces = namespaces
        self.views: dict[str, View] = {}
        self.kept: dict[str, dict[str, Obj]] = {ns: {} for ns in namespaces}
        self.synced = False
        self.down_since: datetime | None = None
        self._router = Informer(what, events)  # its task, its retries and restarts; `_route` applies
        self._router._apply = self._route  # type: ignore[method-assign]

    def view(self, namespace: str, what: str) -> View:
        found = self.views.get(namespace)
        if found is not None:
            return found
        view = self.views[namespace] = View(what, self)
        known = namespace in self.namespaces
        if not known:  # not kept so far: list again to learn its objects
            self.namespaces.add(namespace)
            self.kept[namespace] = {}
            if self.synced:
                asyncio.get_running_loop().create_task(self._relist(), name=f"relist:{self.what}")
        view.objects = dict(self.kept[namespace])
        view.down_since = self.down_since
        if self.synced and known:
            view.synced.set()
        return view

    async def _relist(self) -> None:
        await self._router.stop()
        self._router._apply("DOWN", {"error": "a new namespace to follow"})
        self._router._ensure_running()

    def start(self) -> None:
        self._router._ensure_running()

    async def stop(self) -> None:
        await self._router.stop()

    def _route(self, kind: str, obj: Obj) -> None:
        if kind in ("DOWN", "UP"):
            if kind == "DOWN" and self.down_since is None:
                self.down_since = datetime.now(UTC)
                log.info("the watch behind %s is down: %s", self.what, obj.get("error", ""))
            elif kind == "UP":
                self.down_since = None
            for view in self.views.values():
                view._apply(kind, obj)
            return
        if kind == "SYNCED":
            kept: dict[str, dict[str, Obj]] = {ns: {} for ns in self.namespaces}
            for item in obj.get("items", []):
                meta = item["metadata"]
                if meta.get("namespace") in kept:
                    kept[meta["namespace"]][meta["name"]] = item
            self.kept, self.synced, self.down_since = kept, True, None
            for namespace, view in self.views.items():
                view._apply("SYNCED", {"items": list(kept.get(namespace, {}).values())})
            return
        meta = obj.get("metadata", {})
        objects = self.kept.get(meta.get("namespace", ""))
        if objects is None:
            return  # a namespace the catalog does not release into
        if kind == "DELETED":
            objects.pop(meta["name"], None)
        else:
            objects[meta["name"]] = obj
        follower = self.views.get(meta["namespace"])
        if follower is not None:
            follower._apply(kind, obj)


class Caches:
    """Every shared cache of one cluster connection, created on first use. `scope` CLUSTER: one
    cluster-wide watch per kind (and label selector), for the `namespaces` given and any asked for
    later."""

    def __init__(self, cluster: Cluster, scope: str = NAMESPACED, namespaces: set[str] | None = None) -> None:
        self.cluster = cluster
        self.scope = scope
        self.namespaces = set(namespaces or ())
        self._informers: dict[tuple[str, str, str | None], Informer] = {}
        self._fanouts: dict[tuple[str, str | None], Fanout] = {}

    def _get(self, kind: str, namespace: str, label_selector: str | None = None) -> Informer:
        key = (kind, namespace, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            what = f"{kind} in {namespace}" + (f" ({label_selector})" if label_selector else "")
            cluster = self.cluster
            if self.scope == CLUSTER:
                informer = self._fanout(kind, label_selector).view(namespace, what)
            else:
                informer = Informer(what, lambda: cluster.stream_of(kind, namespace, label_selector))
            self._informers[key] = informer
        return informer

    def _fanout(self, kind: str, label_selector: str | None) -> Fanout:
        fanout = self._fanouts.get((kind, label_selector))
        if fanout is None:
            what = f"{kind} in every namespace" + (f" ({label_selector})" if label_selector else "")
            cluster = self.cluster
            fanout = Fanout(what, lambda: cluster.stream_of(kind, "", label_selector), set(self.namespaces))
            self._fanouts[(kind, label_selector)] = fanout
        return fanout

    def deployments(self, namespace: str) -> Informer:
        return self._get("deployments", namespace)

    def pods(self, namespace: str) -> Informer:
        return self._get("pods", namespace)

    def configmaps(self, namespace: str, label_selector: str) -> Informer:
        return self._get("configmaps", namespace, label_selector)

    @property
    def watches(self) -> int:
        """How many list+watch streams these caches hold open (or would, once asked)."""
        return len(self._fanouts) if self.scope == CLUSTER else len(self._informers)

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()
