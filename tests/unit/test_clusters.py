"""Several clusters from one bot: the catalog's `clusters:` and each app's `cluster`, the engine's one
site per cluster (against two in-memory clusters, each with its own `devops` namespace), the refusal
while a cluster does not answer, and what /readyz says about each."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from bot.catalog import Catalog, ClusterRef
from bot.errors import ConfigError
from bot.kube.client import Kube
from bot.kube.fleet import Fleet
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.record import Phase, Record
from bot.releases.refusals import ClusterDown, NotThroughStage
from bot.releases.store import object_name
from bot.slack import answers
from commands.intents import Promotion, Release
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.test_engine import ALICE, NS, USERS, MemoryReporter

IMAGE = "registry.sword.org/nginx:v2.0"


def catalog(**clusters: Any) -> Catalog:
    envs = {
        "staging": {"cluster": "staging"},
        "prod": {"cluster": "prod", "promotion": {"from": "staging"}},
    }
    data = hexo.catalog(NS, USERS, extra={"environments": envs})
    data["clusters"] = clusters or {"staging": {"context": "staging"}, "prod": {"kubeconfig": "/k/prod"}}
    return Catalog.from_mapping(data)


def test_apps_name_their_cluster_and_the_catalog_knows_them() -> None:
    cat = catalog()
    assert cat.apps["hexo-staging"].cluster == "staging" and cat.apps["hexo-prod"].cluster == "prod"
    assert cat.cluster_names() == ["prod", "staging"]
    assert cat.namespaces("prod") == {NS} and cat.namespaces("default") == set()
    assert [a.name for a in cat.apps_in("staging")] == ["hexo-staging"]
    assert cat.clusters["prod"].describe() == "kubeconfig /k/prod"
    assert cat.clusters["staging"].describe() == "the default kubeconfig, context staging"
    alone = Catalog.from_mapping(hexo.catalog(NS, USERS))
    assert alone.cluster_names() == ["default"] and alone.clusters == {}


@pytest.mark.parametrize(
    ("clusters", "words"),
    [
        (
            {"staging": {"context": "s"}},
            r"cluster 'prod' is not in `clusters:` \(known: `default`, `staging`\)",
        ),
        (
            {"staging": {}, "prod": {"context": "p"}},
            "give `kubeconfig` and/or `context`, or `in_cluster: true`",
        ),
        (
            {"staging": {"in_cluster": True, "context": "x"}, "prod": {"context": "p"}},
            "takes no `kubeconfig`",
        ),
        ({"Staging": {"context": "s"}}, "needs a lower-case name"),
        ({"staging": {"context": "s", "server": "x"}, "prod": {"context": "p"}}, "server"),
    ],
)
def test_catalog_mistakes_about_clusters(clusters: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        catalog(**clusters)


def test_in_cluster_is_a_way_to_reach_one() -> None:
    assert ClusterRef(in_cluster=True).describe() == "in-cluster config"


@pytest.fixture
def staging() -> MemoryCluster:
    c = MemoryCluster()
    c.add_app(NS, image=IMAGE)
    return c


@pytest.fixture
def prod() -> MemoryCluster:
    c = MemoryCluster()
    c.add_app(NS)  # the same namespace name as staging's, in another cluster
    return c


async def engine_of(staging: MemoryCluster, prod: MemoryCluster) -> Engine:
    engine = Engine(
        {"staging": staging, "prod": prod},
        catalog(),
        MemoryReporter(),
        identity="unit",
        lease_seconds=15,
        audit=Auditor(staging),
    )
    await engine.start(sync_timeout=1)
    return engine


async def finished(cluster: MemoryCluster, app: str) -> Record:
    async with asyncio.timeout(5):
        while True:
            cm = cluster.objects["configmaps"].get((NS, object_name(app)))
            if cm is not None:
                record = Record.model_validate(json.loads(cm["data"]["record.json"]))
                if record.finished:
                    return record
            await asyncio.sleep(0.01)


def image_of(cluster: MemoryCluster) -> str:
    image: str = cluster.objects["deployments"][(NS, "hexo")]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    return image


async def test_a_promotion_reads_one_cluster_and_releases_in_the_other(
    staging: MemoryCluster, prod: MemoryCluster
) -> None:
    engine = await engine_of(staging, prod)
    try:
        with pytest.raises(NotThroughStage):
            await engine.begin(Release(app="hexo-prod", version="v2.0"), ALICE, "C1", "releases")
        await engine.begin_promotion(Promotion(app="hexo-prod", source="hexo-staging"), ALICE, "C1", "r")
        done = await finished(prod, "hexo-prod")
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED and done.promoted is not None
    assert image_of(prod) == IMAGE
    # the record, the lease and the audit Events of prod's release live in prod only
    assert (NS, object_name("hexo-prod")) not in staging.objects["configmaps"]
    assert [k for k in prod.objects["leases"] if "hexo-prod" in k[1]] and not staging.objects["leases"]
    assert any("RELEASE" in str(e).upper() for e in prod.events) and not staging.events


async def test_a_cluster_that_does_not_answer_stops_only_its_own_apps(
    staging: MemoryCluster, prod: MemoryCluster
) -> None:
    engine = await engine_of(staging, prod)
    since = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    prod.unreachable_since = since
    try:
        with pytest.raises(ClusterDown) as refused:
            await engine.begin_promotion(Promotion(app="hexo-prod", source="hexo-staging"), ALICE, "C1", "r")
        assert str(refused.value) == (
            "`hexo-prod` is unavailable: cluster `prod` has not answered since 2026-12-02 09:30 UTC; nothing "
            "was changed. Apps on the other clusters are not affected. Try again once it is back "
            "(`/release status hexo-prod` says when)."
        )
        await engine.begin(Release(app="hexo-staging", version="v3.0"), ALICE, "C1", "releases")
        done = await finished(staging, "hexo-staging")
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED and image_of(staging) == "registry.sword.org/nginx:v3.0"
    assert image_of(prod) == "registry.sword.org/nginx:v1.0"
    assert (NS, object_name("hexo-prod")) not in prod.objects["configmaps"]


def test_an_app_of_a_cluster_not_connected_is_refused_clearly(staging: MemoryCluster) -> None:
    engine = Engine(
        {"staging": staging},
        catalog(),
        MemoryReporter(),
        identity="u",
        lease_seconds=15,
        audit=Auditor(staging),
    )
    with pytest.raises(ConfigError, match="`hexo-prod` runs in cluster `prod`, which is not connected here"):
        engine.site("hexo-prod")


class _Down:
    def __init__(self, since: datetime | None) -> None:
        self.unreachable_since = since


async def test_readiness_needs_one_cluster_and_names_each() -> None:
    since = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    kubes = cast(dict[str, Kube], {"staging": _Down(None), "prod": _Down(since)})
    fleet = Fleet(kubes, catalog(), object_name)
    assert await fleet.readiness() is None
    assert fleet.states() == {
        "staging": "ok",
        "prod": "the Kubernetes API server has not answered since 2026-12-02T09:30:00Z",
    }
    fleet.unchecked.add("staging")
    assert fleet.states()["staging"] == "its rights are not checked yet"
    reason = await fleet.readiness()
    assert reason is not None and reason.startswith("no cluster can serve: staging: its rights")
    alone = Fleet(cast(dict[str, Kube], {"default": _Down(since)}), catalog(), object_name)
    assert await alone.readiness() == "the Kubernetes API server has not answered since 2026-12-02T09:30:00Z"


def test_an_answer_cut_short_names_the_cluster() -> None:
    text = answers.unreachable("prod", "deployment devops/hexo: cannot reach the API server (timeout)")
    assert text.startswith(":electric_plug: The cluster `prod` did not answer (deployment devops/hexo: ")
    assert text.endswith("Apps on other clusters are not affected.")
    assert "Apps on other" not in answers.unreachable("", "x")
