"""Reads from the shared caches instead of the API server: a release's plan (`Reads`), its driver's
record and Deployment, and the store's own writes while the records cache has not shown them yet. In
each case a cache that may be behind is caught: by a dry-run's resourceVersion, by confirming a
refusal on the API server, or by the version a write replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.catalog import Catalog
from bot.kube.cache import Behind, Caches, Reads
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.record import Phase, Record
from bot.releases.store import NOT_KNOWN, Store, object_name
from commands.intents import Release
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster, Obj
from tests.unit.records import record
from tests.unit.test_engine import ALICE, NS, USERS, MemoryReporter, until

PLANNED = ("deployments", "services", "horizontalpodautoscalers", "resourcequotas", "poddisruptionbudgets")


@pytest.fixture
async def warm() -> AsyncIterator[tuple[MemoryCluster, Engine]]:
    """An engine that has released hexo once, so every cache of the namespace follows it."""
    cluster = MemoryCluster()
    cluster.add_app(NS)
    catalog = Catalog.from_mapping(hexo.catalog(NS, USERS))
    engine = Engine(
        cluster, catalog, MemoryReporter(), identity="unit", lease_seconds=15, audit=Auditor(cluster)
    )
    await engine.start(sync_timeout=1)
    try:
        await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
        await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        caches = engine.site("hexo").caches
        for kind in PLANNED:
            assert await caches.of(kind, NS).wait_synced(1)
        await settle()
        cluster.reads.clear()
        yield cluster, engine
    finally:
        await engine.stop(0)


async def settle() -> None:
    """Let the caches' tasks take every event sent so far."""
    for _ in range(20):
        await asyncio.sleep(0)


def set_image(dep: Obj, tag: str) -> None:
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = f"{hexo.IMAGE_REPO}:{tag}"


async def test_a_release_reads_nothing_the_caches_hold(warm: tuple[MemoryCluster, Engine]) -> None:
    cluster, engine = warm
    await engine.begin(Release(app="hexo", version="v3.0"), ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED and r.to_version == "v3.0")
    await settle()
    assert done.from_version == "v2.0"
    # the plan, its warnings, the driver's record and Deployment: all from the caches and its own writes
    assert cluster.reads == []


async def test_a_plan_on_a_cache_behind_the_api_server_is_made_again_from_it(
    warm: tuple[MemoryCluster, Engine],
) -> None:
    cluster, engine = warm
    # Someone changed the Deployment and the watch has not said so yet: the API server alone knows.
    dep = cluster.objects["deployments"][(NS, "hexo")]
    set_image(dep, "v2.5")
    cluster._stamp(dep)
    started = await engine.begin(Release(app="hexo", version="v3.0"), ALICE, "C1", "releases")
    assert (
        isinstance(started, Record) and started.from_version == "v2.5"
    )  # the dry-run's resourceVersion showed the cache was behind
    assert "deployments" in cluster.reads  # planned again from the API server


async def test_a_refusal_on_what_a_cache_says_is_confirmed_on_the_api_server(
    warm: tuple[MemoryCluster, Engine],
) -> None:
    cluster, engine = warm
    # The cache still shows v3.0, which the API server no longer runs (rolled back a moment ago).
    cached = engine.site("hexo").caches.of("deployments", NS).objects["hexo"]
    set_image(cached, "v3.0")
    started = await engine.begin(Release(app="hexo", version="v3.0"), ALICE, "C1", "releases")
    assert (
        isinstance(started, Record) and started.from_version == "v2.0" and started.to_version == "v3.0"
    )  # not "v3.0 already runs"
    assert "deployments" in cluster.reads


async def test_reads_use_a_cache_only_while_its_watch_is_up() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    caches = Caches(cluster)
    reads = Reads(cluster, caches)
    try:
        assert (await reads.deployment(NS, "hexo"))["metadata"]["name"] == "hexo"
        assert cluster.reads == ["deployment hexo"]  # the cache has only just started
        assert await caches.of("deployments", NS).wait_synced(1)
        cluster.reads.clear()
        served = await reads.deployment(NS, "hexo")
        served["spec"]["replicas"] = 99  # the caller's copy: the cache's own is untouched
        assert caches.of("deployments", NS).objects["hexo"]["spec"]["replicas"] != 99
        assert [d["metadata"]["name"] for d in await reads.deployments(NS)] == ["hexo"]
        assert cluster.reads == []
        with pytest.raises(Behind, match="hexo"):
            reads.check("deployments", NS, "hexo", "not-the-cached-version")
        reads.check("deployments", NS, "hexo", served["metadata"]["resourceVersion"])
        cluster.drop_watches()
        await settle()
        await reads.deployment(NS, "hexo")
        assert cluster.reads == ["deployment hexo"]  # the watch is down: the API server answers
    finally:
        await caches.stop()


async def test_a_one_shot_process_starts_no_cache_for_its_reads() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    caches = Caches(cluster, follow_reads=False)
    reads = Reads(cluster, caches)
    try:
        await reads.deployments(NS)
        await reads.quotas(NS)
        assert cluster.reads == ["deployments", "quotas"]
        assert not caches.of("deployments", NS).running and not caches.of("resourcequotas", NS).running
    finally:
        await caches.stop()


async def test_the_store_reads_its_own_write_until_the_records_cache_shows_it() -> None:
    cluster = MemoryCluster()
    cache: dict[str, object] = {}  # what a records cache that lags says
    store = Store(cluster, lambda ns, name: cache.get(name))
    name = object_name("hexo")
    first = await store.start(record(namespace=NS))
    assert (await store.get(NS, "hexo")) == first  # the cache shows no ConfigMap yet: one write behind
    assert cluster.reads == []
    cache[name] = cluster.objects["configmaps"][(NS, name)]
    second = await store.update(NS, "hexo", lambda r: r.entry("started", None), known=first)
    assert (await store.get(NS, "hexo")) == second  # still at `first`: behind by this write
    assert cluster.reads == []
    cache[name] = cluster.objects["configmaps"][(NS, name)]  # it has caught up
    assert (await store.get(NS, "hexo")) == second and cluster.reads == []
    # Another process wrote since, and this cache shows a version that is neither: it is believed.
    third = await store.update(NS, "hexo", lambda r: r.entry("promote", None), known=second)
    other = dict(cluster.objects["configmaps"][(NS, name)])
    other["metadata"] = {**other["metadata"], "resourceVersion": "elsewhere"}
    cache[name] = other
    assert (await store.get(NS, "hexo")) is not None
    assert cluster.reads == [f"configmap {name}"]  # neither the replaced version nor ours: asked
    assert (await store.get(NS, "hexo", fresh=True)) == third


async def test_a_stale_records_cache_is_never_asked() -> None:
    cluster = MemoryCluster()
    store = Store(cluster, lambda ns, name: NOT_KNOWN)
    first = await store.start(record(namespace=NS))
    assert (await store.get(NS, "hexo")) == first
    assert cluster.reads == [f"configmap {object_name('hexo')}"] * 2  # the start's read, and this one
