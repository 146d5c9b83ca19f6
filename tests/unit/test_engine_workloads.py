"""Apps of several Deployments (`deployments:`) and several containers (`containers:`), and names that
never claim a version they do not run, against the in-memory cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.releases import events, objects
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.record import Phase, Request
from bot.releases.refusals import NameClaimsVersion
from bot.slack import answers
from commands.intents import Release, Strategy
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.test_engine import ALICE, BOB, NS, USERS, MemoryReporter, until

REPO = "registry.sword.org/nginx"
WORKER = {"app": "hexo-worker"}


def image_of(cluster: MemoryCluster, name: str, container: str = "hexo") -> str:
    spec = cluster.objects["deployments"][(NS, name)]["spec"]["template"]["spec"]
    image: str = next(c["image"] for c in spec["containers"] if c["name"] == container)
    return image


def pod_images(cluster: MemoryCluster, app_label: str) -> set[str]:
    return {
        p["spec"]["containers"][0]["image"]
        for (n, _), p in cluster.objects["pods"].items()
        if n == NS and p["metadata"]["labels"].get("app") == app_label
    }


async def engine_for(cluster: MemoryCluster, extra: dict[str, Any]) -> Engine:
    catalog = Catalog.from_mapping(hexo.catalog(NS, USERS, extra=extra))
    engine = Engine(
        cluster, catalog, MemoryReporter(), identity="unit", lease_seconds=15, audit=Auditor(cluster)
    )
    await engine.start(sync_timeout=1)
    return engine


@pytest.fixture
async def two() -> AsyncIterator[tuple[MemoryCluster, Engine]]:
    """hexo (the web part) and hexo-worker, released as one app."""
    cluster = MemoryCluster()
    cluster.add_app(NS)
    cluster.add_app(NS, "hexo-worker", replicas=2, labels=WORKER, container="worker")
    deployments = [{"name": "hexo", "container": "hexo"}, {"name": "hexo-worker", "container": "worker"}]
    engine = await engine_for(cluster, {"deployments": deployments, "strategies": ["rolling", "canary"]})
    try:
        yield cluster, engine
    finally:
        await engine.stop(0)


async def test_a_rolling_release_puts_the_version_on_every_deployment_in_order(
    two: tuple[MemoryCluster, Engine],
) -> None:
    cluster, engine = two
    await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.finished)
    assert done.phase is Phase.SUCCEEDED
    assert [f.name for f in done.followers] == ["hexo-worker"]
    assert image_of(cluster, "hexo") == image_of(cluster, "hexo-worker", "worker") == f"{REPO}:v2.0"
    assert pod_images(cluster, "hexo-worker") == {f"{REPO}:v2.0"}
    kinds = [type(n) for n in done.notes]
    assert kinds.index(events.FollowerRolledOut) < kinds.index(events.Succeeded)
    app = engine.app("hexo")
    dep, _ = await engine.status(app)
    status = answers.status(app, dep, done, "", None, await engine.others(app))
    assert "Also Deployment `hexo-worker`: `worker`: `registry.sword.org/nginx:v2.0` · ready 2 of 2" in status
    patched = [w for w in cluster.writes if w[0] == "patch" and w[1].startswith("deployment")]
    assert patched.index(("patch", "deployment hexo")) < patched.index(("patch", "deployment hexo-worker"))
    labels = cluster.objects["deployments"][(NS, "hexo-worker")]["metadata"]["labels"]
    assert labels[objects.APP_VERSION_LABEL] == "v2.0"


async def test_a_failing_follower_rolls_back_every_deployment() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    cluster.add_app(NS, "hexo-worker", replicas=2, labels=WORKER, container="worker")
    worker = {"name": "hexo-worker", "container": "worker", "image": "registry.sword.org/worker-broken"}
    engine = await engine_for(cluster, {"deployments": [{"name": "hexo"}, worker], "strategies": ["rolling"]})
    try:
        await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.ROLLED_BACK
    assert "`hexo-worker`" in done.reason and "CrashLoopBackOff" in done.reason
    assert image_of(cluster, "hexo") == f"{REPO}:v1.0"  # it had succeeded: rolled back too
    assert image_of(cluster, "hexo-worker", "worker") == f"{REPO}:v1.0"
    assert pod_images(cluster, "hexo-server") == {f"{REPO}:v1.0"}
    assert pod_images(cluster, "hexo-worker") == {f"{REPO}:v1.0"}
    assert done.followers[0].to_image == "registry.sword.org/worker-broken:v2.0"


async def test_a_canary_leaves_the_other_deployments_alone_until_the_last_promote(
    two: tuple[MemoryCluster, Engine],
) -> None:
    cluster, engine = two
    await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
    await until(cluster, lambda r: r.phase is Phase.CANARY and events.canary_healthy(r.notes, 0) is not None)
    assert image_of(cluster, "hexo-worker", "worker") == f"{REPO}:v1.0"
    await engine.request("hexo", Request.PROMOTE, BOB)
    done = await until(cluster, lambda r: r.finished)
    assert done.phase is Phase.SUCCEEDED
    assert image_of(cluster, "hexo-worker", "worker") == f"{REPO}:v2.0"


async def test_parallel_order_starts_every_deployment_at_once() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    cluster.add_app(NS, "hexo-worker", replicas=2, labels=WORKER, container="worker")
    deployments = [{"name": "hexo"}, {"name": "hexo-worker", "container": "worker"}]
    engine = await engine_for(
        cluster, {"deployments": deployments, "order": "parallel", "strategies": ["rolling"]}
    )
    try:
        await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
        started = await until(cluster, lambda r: r.phase is not Phase.PENDING)
        # Both were patched before the record said the rollout started.
        assert ("patch", "deployment hexo-worker") in cluster.writes
        assert started.phase in (Phase.ROLLING_OUT, Phase.SUCCEEDED)
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED
    assert image_of(cluster, "hexo-worker", "worker") == f"{REPO}:v2.0"


async def test_several_containers_of_one_deployment_all_get_the_version() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    dep = cluster.objects["deployments"][(NS, "hexo")]
    dep["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": f"{REPO}:v1.0"})
    engine = await engine_for(cluster, {"containers": ["hexo", "sidecar"]})
    try:
        await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED
    assert image_of(cluster, "hexo") == image_of(cluster, "hexo", "sidecar") == f"{REPO}:v2.0"


async def test_a_missing_follower_refuses_the_release_before_any_write() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    engine = await engine_for(
        cluster, {"deployments": [{"name": "hexo"}, {"name": "hexo-worker"}], "strategies": ["rolling"]}
    )
    try:
        with pytest.raises(Exception, match="hexo-worker"):
            await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
    finally:
        await engine.stop(0)
    assert not [w for w in cluster.writes if w[0] == "patch"]


async def test_a_guide_style_colour_is_moved_by_blue_green_before_rolling_releases() -> None:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    guide = await engine_for(
        cluster, {"bluegreen": {"name_template": "{deployment}-{version}", "grace_seconds": 0}}
    )
    try:
        await guide.begin(Release(app="hexo", version="v2.0", strategy=Strategy.BLUEGREEN), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.AWAITING_SWITCH)
        await guide.request("hexo", Request.PROMOTE, BOB)
        await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
    finally:
        await guide.stop(0)
    assert (NS, "hexo-v2.0") in cluster.objects["deployments"]  # what the guide's own steps leave

    engine = await engine_for(cluster, {"bluegreen": {"grace_seconds": 0}})
    try:
        with pytest.raises(NameClaimsVersion) as refused:
            await engine.begin(Release(app="hexo", version="v2.1"), ALICE, "C1", "releases")
        assert refused.value.moves_to == "hexo-green"
        assert "/release hexo v2.1 --bluegreen" in str(refused.value)
        await engine.begin(Release(app="hexo", version="v2.1", strategy=Strategy.BLUEGREEN), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.AWAITING_SWITCH and r.to_version == "v2.1")
        await engine.request("hexo", Request.PROMOTE, BOB)
        await until(cluster, lambda r: r.phase is Phase.SUCCEEDED and r.to_version == "v2.1")
        await engine.begin(Release(app="hexo", version="v2.2"), ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished and r.to_version == "v2.2")
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED and done.deployment == "hexo-green"
    assert done.stale_selector == ("v2.1", "v2.2")  # the card says so after the end
    meta = cluster.objects["deployments"][(NS, "hexo-green")]["metadata"]
    assert meta["labels"][objects.APP_VERSION_LABEL] == "v2.2"
    assert meta["labels"][objects.VERSION_LABEL] == "v2.2"  # its own label follows; its selector cannot
    assert cluster.objects["deployments"][(NS, "hexo-v2.0")]["spec"]["replicas"] == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"deployments": [{"name": "hexo"}, {"name": "hexo"}], "strategies": ["rolling"]}, "twice"),
        (
            {"deployments": [{"name": "other"}, {"name": "w"}], "strategies": ["rolling"]},
            "must be `deployment`",
        ),
        (
            {"deployments": [{"name": "hexo"}, {"name": "w"}], "strategies": ["bluegreen"]},
            "blue-green releases one",
        ),
        ({"containers": ["sidecar"]}, "must include `container`"),
        (
            {"deployments": [{"name": "hexo"}, {"name": "w", "image": "r/w:v1"}], "strategies": ["rolling"]},
            "without tag or digest",
        ),
        ({"order": "random"}, "order"),
    ],
)
def test_catalog_mistakes_in_several_deployments_are_named(fields: dict[str, Any], words: str) -> None:
    data = hexo.catalog(NS, USERS, extra=fields)
    if fields.get("strategies") == ["bluegreen"]:
        data["apps"]["hexo"]["default_strategy"] = "bluegreen"
    with pytest.raises(ConfigError, match=words):
        Catalog.from_mapping(data)


def test_deployments_alone_name_the_apps_own_deployment_and_container() -> None:
    data = hexo.catalog(NS, USERS)
    app = data["apps"]["hexo"]
    del app["deployment"], app["container"]
    app["deployments"] = [
        {"name": "hexo", "containers": ["hexo", "sidecar"]},
        {"name": "w", "container": "c"},
    ]
    app["strategies"], app["default_strategy"] = ["rolling"], "rolling"
    parsed = Catalog.from_mapping(data).apps["hexo"]
    assert (parsed.deployment, parsed.container, parsed.own_containers) == (
        "hexo",
        "hexo",
        ("hexo", "sidecar"),
    )
    assert [(w.name, w.names(parsed.container)) for w in parsed.followers] == [("w", ("c",))]


def test_a_name_claims_a_version_only_in_the_guides_style() -> None:
    app = Catalog.from_mapping(hexo.catalog(NS, USERS)).apps["hexo"]
    assert objects.claimed_version(app, "hexo-v2.0") == "v2.0"
    assert objects.claimed_version(app, "hexo-2.1.0") == "2.1.0"
    assert objects.claimed_version(app, "hexo") is None
    assert objects.claimed_version(app, "hexo-green") is None
    assert objects.claimed_version(app, "hexo-blue") is None
    assert objects.claimed_version(app, "other-v2.0") is None


def test_own_labels_follow_the_version_only_where_the_deployment_has_them() -> None:
    with_version = {"metadata": {"labels": {"app": "x", "version": "v1.0"}}}
    assert objects.own_labels(with_version, "v2.0") == {objects.APP_VERSION_LABEL: "v2.0", "version": "v2.0"}
    assert objects.own_labels({"metadata": {}}, "v2.0") == {objects.APP_VERSION_LABEL: "v2.0"}
    ops = objects.version_label_ops(with_version, "v1.0")
    assert {op["path"] for op in ops} == {
        "/metadata/labels/app.kubernetes.io~1version",
        "/metadata/labels/version",
    }
    assert objects.version_label_ops({"metadata": {}}, "v1.0") == [
        {"op": "add", "path": "/metadata/labels", "value": {objects.APP_VERSION_LABEL: "v1.0"}}
    ]


def test_diff_says_what_differs_between_two_environments() -> None:
    data = hexo.catalog(NS, USERS, extra={"environments": {"staging": {"namespace": "stage"}, "prod": {}}})
    catalog = Catalog.from_mapping(data)
    staging, prod = catalog.apps["hexo-staging"], catalog.apps["hexo-prod"]
    dep = hexo.objects(NS)[1]
    other = hexo.objects(NS, version="v2.0", replicas=3)[1]
    text = answers.diff_text(staging, dep, prod, other)
    assert text.startswith("*hexo-staging* (`stage/hexo`) → *hexo-prod* (`devops/hexo`)")
    assert "• replicas: 6 → 3" in text
    assert (
        "spec.containers[hexo].image: 'registry.sword.org/nginx:v1.0' -&gt; 'registry.sword.org/nginx:v2.0'"
        in text
    )
    assert "metadata.labels.version: 'v1.0' -&gt; 'v2.0'" in text
    assert answers.diff_text(staging, dep, prod, dep).endswith("Same pod template and replicas.")
