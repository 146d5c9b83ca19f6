"""Promotion between environments: the evidence (pure), the soak gate, the stage gate, and the
parser's words for it; the engine against the in-memory cluster, with staging and prod in two
namespaces."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.releases import promotion
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.health import Live
from bot.releases.record import Phase, Record
from bot.releases.refusals import NotSoaked, NotThroughStage, OtherRepository
from bot.slack import cards
from commands.intents import Promotion, Release, Strategy
from commands.parser import UsageError, parse
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.test_engine import ALICE, NS, USERS, MemoryReporter

STAGING = "stage"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def pod(image: str, ready_at: datetime | None, *, restarts: int = 0, image_id: str = "") -> dict[str, Any]:
    conditions = (
        [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at.isoformat()}] if ready_at else []
    )
    return {
        "metadata": {"name": f"p{id(conditions)}"},
        "spec": {"containers": [{"name": "hexo", "image": image}]},
        "status": {
            "conditions": conditions,
            "containerStatuses": [{"name": "hexo", "restartCount": restarts, "imageID": image_id}],
        },
    }


def deployment(image: str, *, complete: bool = True) -> dict[str, Any]:
    n = 2
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": n, "template": {"spec": {"containers": [{"name": "hexo", "image": image}]}}},
        "status": {
            "observedGeneration": 1,
            "replicas": n,
            "updatedReplicas": n if complete else 1,
            "readyReplicas": n,
            "availableReplicas": n,
        },
    }


IMAGE = "registry.sword.org/nginx:v2.0"
DIGEST = "sha256:" + "ab" * 32


def test_evidence_is_the_last_pod_to_turn_ready_and_the_restarts() -> None:
    pods = [pod(IMAGE, NOW - timedelta(minutes=30), restarts=1), pod(IMAGE, NOW - timedelta(minutes=12))]
    e = promotion.evidence("hexo-staging", deployment(IMAGE), pods, "hexo", 10, NOW)
    assert (e.image, e.pods, e.restarts, e.healthy_since) == (IMAGE, 2, 1, NOW - timedelta(minutes=12))


def test_a_digest_the_pods_report_pins_the_image() -> None:
    image_id = f"docker-pullable://registry.sword.org/nginx@{DIGEST}"
    pods = [pod(IMAGE, NOW - timedelta(hours=1), image_id=image_id) for _ in range(2)]
    e = promotion.evidence("hexo-staging", deployment(IMAGE), pods, "hexo", 0, NOW)
    assert e.image == f"registry.sword.org/nginx@{DIGEST}"
    assert promotion.digest_of([*pods, pod(IMAGE, NOW, image_id="other")], "hexo") is None  # disagree


@pytest.mark.parametrize(
    ("dep", "pods", "words"),
    [
        (deployment(IMAGE, complete=False), [pod(IMAGE, NOW)], "its rollout is not complete"),
        (
            deployment(IMAGE),
            [pod(IMAGE, NOW), pod("registry.sword.org/nginx:v1.0", NOW)],
            "1 of 2 pods run it",
        ),
        (deployment(IMAGE), [pod(IMAGE, NOW), pod(IMAGE, None)], "1 of 2 pods are not Ready"),
    ],
)
def test_an_unhealthy_source_has_nothing_to_promote(dep: dict[str, Any], pods: list[Any], words: str) -> None:
    with pytest.raises(NotSoaked, match=words):
        promotion.evidence("hexo-staging", dep, pods, "hexo", 0, NOW)


def test_a_short_soak_says_how_long_is_left() -> None:
    pods = [pod(IMAGE, NOW - timedelta(minutes=4)) for _ in range(2)]
    with pytest.raises(NotSoaked) as refused:
        promotion.evidence("hexo-staging", deployment(IMAGE), pods, "hexo", 10, NOW)
    assert "healthily for 4.0 min; a promotion needs 10 min. Try again in 6.0 min." in str(refused.value)


def test_the_parser_takes_both_environments() -> None:
    apps = {"hexo-staging", "hexo-prod"}
    assert parse("promote hexo --from staging --to prod --canary", apps=apps) == Promotion(
        app="hexo-prod", source="hexo-staging", strategy=Strategy.CANARY
    )
    for text, words in [
        ("promote hexo --from staging", "names both environments"),
        ("promote hexo --from prod --to prod", "the same environment"),
        ("promote hexo --from qa --to prod", "Unknown app `hexo-qa`"),
        ("hexo-prod v2 --from staging", "`--from` belongs to"),
    ]:
        with pytest.raises(UsageError, match=words):
            parse(text, apps=apps)


def catalog(soak: float = 0, stage: str | None = "staging", **prod: Any) -> Catalog:
    envs = {
        "staging": {"namespace": STAGING},
        "prod": {"promotion": {"soak_minutes": soak, **({"from": stage} if stage else {})}, **prod},
    }
    return Catalog.from_mapping(hexo.catalog(NS, USERS, extra={"environments": envs}))


def test_promotion_from_must_name_another_environment() -> None:
    with pytest.raises(ConfigError, match=r"promotion\.from 'qa' is not another environment"):
        catalog(stage="qa")


@pytest.fixture
def cluster() -> MemoryCluster:
    c = MemoryCluster()
    c.add_app(NS)
    c.add_app(STAGING, image=IMAGE)
    return c


async def finished(cluster: MemoryCluster, name: str) -> Record:
    """The record of `name` once it has finished (the engine drives it in the background)."""
    async with asyncio.timeout(5):
        while True:
            cm = cluster.objects["configmaps"].get((NS, f"release-bot.{name}"))
            if cm is not None:
                record = Record.model_validate(json.loads(cm["data"]["record.json"]))
                if record.finished:
                    return record
            await asyncio.sleep(0.01)


async def engine_of(cluster: MemoryCluster, cat: Catalog) -> Engine:
    engine = Engine(cluster, cat, MemoryReporter(), identity="unit", lease_seconds=15, audit=Auditor(cluster))
    await engine.start(sync_timeout=1)
    return engine


async def test_prod_takes_what_staging_runs_and_keeps_the_evidence(cluster: MemoryCluster) -> None:
    engine = await engine_of(cluster, catalog())
    try:
        with pytest.raises(NotThroughStage, match="takes only what comes through `hexo-staging`"):
            await engine.begin(Release(app="hexo-prod", version="v2.0"), ALICE, "C1", "releases")
        started = await engine.begin_promotion(
            Promotion(app="hexo-prod", source="hexo-staging"), ALICE, "C1", "r"
        )
        assert started.promoted is not None and started.promoted.source == "hexo-staging"
        assert started.to_image == IMAGE and started.to_version == "v2.0"
        done = await finished(cluster, "hexo-prod")
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED
    text = str(cards.card(done, Live(now=datetime.now(UTC)))[1])
    assert "*Promoted from* `hexo-staging`: `registry.sword.org/nginx:v2.0` Ready on 6 pods since" in text


async def test_a_soak_not_yet_over_refuses_before_anything_changes(cluster: MemoryCluster) -> None:
    engine = await engine_of(cluster, catalog(soak=30))
    before = copy.deepcopy(cluster.objects["deployments"][(NS, "hexo")])
    try:
        with pytest.raises(NotSoaked, match="a promotion needs 30 min"):
            await engine.begin_promotion(Promotion(app="hexo-prod", source="hexo-staging"), ALICE, "C1", "r")
    finally:
        await engine.stop(0)
    assert cluster.objects["deployments"][(NS, "hexo")] == before
    assert (NS, "release-bot.hexo-prod") not in cluster.objects["configmaps"]


async def test_another_repository_is_not_promoted(cluster: MemoryCluster) -> None:
    engine = await engine_of(cluster, catalog(stage=None, image="registry.sword.org/other"))
    try:
        with pytest.raises(OtherRepository, match="not an image of `hexo-prod`'s repository"):
            await engine.begin_promotion(Promotion(app="hexo-prod", source="hexo-staging"), ALICE, "C1", "r")
    finally:
        await engine.stop(0)
