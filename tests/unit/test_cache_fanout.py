"""The cluster-wide watch scope of the shared caches: one stream per kind for every namespace, fanned
out into per-namespace views that behave as the namespaced caches do (objects, SYNCED, DOWN/UP), and
that keep only the catalog's namespaces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from bot.kube.cache import CLUSTER, NAMESPACED, Caches

Obj = dict[str, Any]


def cm(ns: str, name: str) -> Obj:
    return {"metadata": {"namespace": ns, "name": name}}


class Streams:
    """A cluster whose streams are fed by the test; remembers which streams were opened."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str]] = []
        self.queues: dict[tuple[str, str], asyncio.Queue[tuple[str, Obj]]] = {}

    def stream_of(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        self.opened.append((kind, namespace))
        queue = self.queues.setdefault((kind, namespace), asyncio.Queue())

        async def events() -> AsyncIterator[tuple[str, Obj]]:
            while True:
                yield await queue.get()

        return events()

    def send(self, kind: str, namespace: str, *events: tuple[str, Obj]) -> None:
        """As `Kube.stream` does: a listing's objects come as ADDED, then SYNCED."""
        for event in events:
            if event[0] == "SYNCED":
                for item in event[1]["items"]:
                    self.queues[(kind, namespace)].put_nowait(("ADDED", item))
            self.queues[(kind, namespace)].put_nowait(event)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_one_cluster_wide_stream_feeds_each_namespace_s_view() -> None:
    cluster = Streams()
    caches = Caches(cluster, CLUSTER, {"a", "b"})
    a, b = caches.configmaps("a", "sel"), caches.configmaps("b", "sel")
    seen: list[tuple[str, str]] = []
    a.subscribe(lambda kind, obj: seen.append((kind, obj.get("metadata", {}).get("name", ""))))
    b.subscribe(lambda kind, obj: None)
    await settle()
    assert cluster.opened == [("configmaps", "")] and caches.watches == 1
    listing = {"items": [cm("a", "r1"), cm("b", "r2"), cm("elsewhere", "x")]}
    cluster.send("configmaps", "", ("SYNCED", listing))
    await settle()
    await asyncio.sleep(0.01)
    assert a.synced.is_set() and b.synced.is_set() and not a.stale
    assert set(a.objects) == {"r1"} and set(b.objects) == {"r2"}
    cluster.send("configmaps", "", ("MODIFIED", cm("a", "r3")), ("ADDED", cm("elsewhere", "y")), ("DOWN", {}))
    await settle()
    assert set(a.objects) == {"r1", "r3"} and a.stale and b.stale  # down for everyone
    assert ("MODIFIED", "r3") in seen
    cluster.send("configmaps", "", ("UP", {}))
    await settle()
    assert not a.stale and not b.stale
    late = caches.configmaps("a", "sel")  # the same view again
    assert late is a
    await caches.stop()


async def test_a_view_made_after_the_listing_starts_from_what_was_kept() -> None:
    cluster = Streams()
    caches = Caches(cluster, CLUSTER, {"a", "b"})
    caches.pods("a").subscribe(lambda kind, obj: None)
    await settle()
    cluster.send("pods", "", ("SYNCED", {"items": [cm("a", "p1"), cm("b", "p2")]}), ("ADDED", cm("b", "p3")))
    await settle()
    b = caches.pods("b")
    assert b.synced.is_set() and set(b.objects) == {"p2", "p3"}
    assert cluster.opened == [("pods", "")]
    await caches.stop()


async def test_the_namespaced_scope_opens_one_stream_per_namespace() -> None:
    cluster = Streams()
    caches = Caches(cluster, NAMESPACED, {"a", "b"})
    for ns in ("a", "b"):
        caches.deployments(ns).subscribe(lambda kind, obj: None)
    await settle()
    assert sorted(cluster.opened) == [("deployments", "a"), ("deployments", "b")] and caches.watches == 2
    await caches.stop()
