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
import copy
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.releases.ports import Reader

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

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Follow the watch from now on (subscribing does it too)."""
        self._ensure_running()

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

    @property
    def running(self) -> bool:
        return self._fanout.running

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

    @property
    def running(self) -> bool:
        return self._router.running

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

    def __init__(
        self,
        cluster: Cluster,
        scope: str = NAMESPACED,
        namespaces: set[str] | None = None,
        *,
        follow_reads: bool = True,
    ) -> None:
        self.cluster = cluster
        self.scope = scope
        # Whether `Reads` may start a cache of its own (a long-lived process), or uses only those that
        # run already (a one-shot `release-bot ctl`, which reads each thing once).
        self.follow_reads = follow_reads
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

    def of(self, kind: str, namespace: str) -> Informer:
        """Any kind `stream_of` follows, in `namespace`."""
        return self._get(kind, namespace)

    @property
    def watches(self) -> int:
        """How many list+watch streams these caches hold open (or would, once asked)."""
        return len(self._fanouts) if self.scope == CLUSTER else len(self._informers)

    async def stop(self) -> None:
        for informer in self._informers.values():
            await informer.stop()


class Behind(Exception):
    """A cache served an object older than the API server's: whatever was planned on it is redone."""


class Reads:
    """A release's planning reads (ports.Reader), answered by the shared caches while their watch is
    up: as current as the watch, which is what every controller acts on. A cache that is down, has
    not listed yet, or does not run (`Caches.follow_reads` off) sends the read to the API server, and
    so does a named object the cache does not hold (it may be newer than the cache).

    `served` remembers the resourceVersion of each object answered from a cache: a write's
    server-side dry-run answers with the version the API server holds, and a different one means
    the cache was behind (`check` raises Behind), so the plan is made again from the API server."""

    def __init__(self, source: Reader, caches: Caches) -> None:
        self.source = source
        self.caches = caches
        self.served: dict[tuple[str, str, str], str] = {}  # (kind, namespace, name) -> resourceVersion

    def _current(self, kind: str, namespace: str) -> dict[str, Obj] | None:
        informer = self.caches.of(kind, namespace)
        if not self.caches.follow_reads and not informer.running:
            return None
        informer.start()
        return None if informer.stale else informer.objects

    def _all(self, kind: str, namespace: str) -> list[Obj] | None:
        objects = self._current(kind, namespace)
        if objects is None:
            return None
        return [self._served(kind, namespace, o) for o in objects.values()]

    def _one(self, kind: str, namespace: str, name: str) -> Obj | None:
        found = (self._current(kind, namespace) or {}).get(name)
        return None if found is None else self._served(kind, namespace, found)

    def _served(self, kind: str, namespace: str, obj: Obj) -> Obj:
        meta = obj.get("metadata", {})
        self.served[(kind, namespace, meta.get("name", ""))] = meta.get("resourceVersion", "")
        return copy.deepcopy(obj)  # the cache's own copy is shared: callers may change theirs

    def check(self, kind: str, namespace: str, name: str, resource_version: str) -> None:
        """Behind, when `kind`/`name` was served from a cache at another version than
        `resource_version`, the API server's."""
        seen = self.served.get((kind, namespace, name))
        if seen is not None and seen != resource_version:
            raise Behind(
                f"the cache of {kind} in {namespace} had {name} at {seen}, the API server at {resource_version}"
            )

    async def deployment(self, ns: str, name: str) -> Obj:
        return self._one("deployments", ns, name) or await self.source.deployment(ns, name)

    async def deployments(self, ns: str) -> list[Obj]:
        found = self._all("deployments", ns)
        return found if found is not None else await self.source.deployments(ns)

    async def service(self, ns: str, name: str) -> Obj:
        return self._one("services", ns, name) or await self.source.service(ns, name)

    async def autoscalers(self, ns: str) -> list[Obj]:
        found = self._all("horizontalpodautoscalers", ns)
        return found if found is not None else await self.source.autoscalers(ns)

    async def quotas(self, ns: str) -> list[Obj]:
        found = self._all("resourcequotas", ns)
        return found if found is not None else await self.source.quotas(ns)

    async def disruption_budgets(self, ns: str) -> list[Obj]:
        found = self._all("poddisruptionbudgets", ns)
        return found if found is not None else await self.source.disruption_budgets(ns)
