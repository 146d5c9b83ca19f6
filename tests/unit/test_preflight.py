"""The pre-flight plan: GitOps owners, warnings from autoscalers and quotas, and the engine's dry-run
that plans on the cluster without changing it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.catalog import App
from bot.releases import events, health, preflight, refusals
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.health import Live
from bot.releases.record import Phase, Request
from bot.slack import answers, cards
from commands.intents import Release, Strategy
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.test_engine import NS, until
from tests.unit.test_governance import ALICE, world_of

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "hexo", "namespace": NS, "labels": {"app": "hexo"}},
    "spec": {
        "replicas": 6,
        "template": {
            "metadata": {"labels": {"app": "hexo"}},
            "spec": {
                "containers": [
                    {
                        "name": "hexo",
                        "image": "registry.example/hexo:v1.0",
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                    }
                ]
            },
        },
    },
}


def labelled(labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    dep = copy.deepcopy(DEPLOYMENT)
    dep["metadata"]["labels"].update(labels or {})
    dep["metadata"].update(meta)
    return dep


@pytest.mark.parametrize(
    ("dep", "owner"),
    [
        (
            labelled(annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:ns/hexo"}),
            "Argo CD application shop",
        ),
        (labelled({"argocd.argoproj.io/instance": "shop"}), "Argo CD application shop"),
        (labelled({"app.kubernetes.io/instance": "shop"}), "Argo CD application shop"),
        (
            labelled(
                {
                    "kustomize.toolkit.fluxcd.io/name": "apps",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                }
            ),
            "Flux Kustomization flux-system/apps",
        ),
        (labelled({"helm.toolkit.fluxcd.io/name": "hexo"}), "Flux HelmRelease hexo"),
        (
            labelled(
                managedFields=[
                    {
                        "manager": "gitops-applier",
                        "operation": "Apply",
                        "fieldsV1": {
                            "f:spec": {
                                "f:template": {
                                    "f:spec": {"f:containers": {'k:{"name":"hexo"}': {"f:image": {}}}}
                                }
                            }
                        },
                    }
                ]
            ),
            "field manager gitops-applier (server-side apply)",
        ),
    ],
)
def test_gitops_owners_are_found_by_their_marks(dep: dict[str, Any], owner: str) -> None:
    assert preflight.gitops_owner(dep) == owner


def test_what_is_not_gitops_is_not_flagged() -> None:
    helm = labelled({"app.kubernetes.io/instance": "hexo", "app.kubernetes.io/managed-by": "Helm"})
    kubectl = labelled(
        managedFields=[
            {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:spec": {}}},
            {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "release-bot", "operation": "Update", "fieldsV1": {}},
        ]
    )
    assert preflight.gitops_owner(DEPLOYMENT) is None
    assert preflight.gitops_owner(helm) is None
    assert preflight.gitops_owner(kubectl) is None


def budget(allowed: int, *, labels: dict[str, str] | None = None, **status: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "hexo-pdb"},
        "spec": {"selector": {"matchLabels": labels or {"app": "hexo"}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 6, "desiredHealthy": 6, **status},
    }


def test_disruption_budgets_that_a_release_would_break_are_warned_about() -> None:
    def warned(budgets: list[dict[str, Any]], unavailable: int) -> list[str]:
        plan = preflight.build(
            live=labelled(),
            after=DEPLOYMENT["spec"]["template"],
            steps=(6,),
            peak_pods=7,
            catalog_image="registry.example/hexo",
            from_image="registry.example/hexo:v1.0",
            gitops=None,
            autoscalers=[],
            quotas=[],
            budgets=budgets,
            unavailable=unavailable,
        )
        return [w.text for w in plan.warnings if w.kind == "budget"]

    (none,) = warned([budget(0)], 0)
    assert "PodDisruptionBudget hexo-pdb allows no eviction now (6 of 6 healthy pods needed)" in none
    (more,) = warned([budget(1)], 2)
    assert "up to 2 pods down at once, more than PodDisruptionBudget hexo-pdb allows (1)" in more
    assert warned([budget(2)], 2) == []
    assert warned([budget(0, labels={"app": "other"})], 0) == []  # not the app's pods
    uncounted = budget(0)
    del uncounted["status"]["disruptionsAllowed"]
    assert warned([uncounted], 3) == []  # the disruption controller has not counted it yet


def test_the_plan_names_changes_footprint_and_every_warning() -> None:
    after = copy.deepcopy(DEPLOYMENT["spec"]["template"])
    after["spec"]["containers"][0]["image"] = "registry.example/hexo:v2.0"
    hpa = {
        "metadata": {"name": "hexo-hpa"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "hexo"},
            "minReplicas": 2,
            "maxReplicas": 9,
        },
        "status": {"currentReplicas": 6},
    }
    quota = {
        "metadata": {"name": "team"},
        "status": {"hard": {"pods": "6", "requests.cpu": "1"}, "used": {"pods": "6", "requests.cpu": "600m"}},
    }
    paused = labelled()
    paused["spec"]["paused"] = True
    plan = preflight.build(
        live=paused,
        after=after,
        steps=(1, 6),
        peak_pods=7,
        catalog_image="registry.example/other",
        from_image="registry.example/hexo:v1.0",
        gitops="Argo CD application shop",
        autoscalers=[
            hpa,
            {"metadata": {"name": "x"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "y"}}},
        ],
        quotas=[quota],
    )
    assert plan.changes == (
        "spec.containers[hexo].image: 'registry.example/hexo:v1.0' -> 'registry.example/hexo:v2.0'",
    )
    assert (plan.peak_pods, plan.peak_cpu_millis, plan.peak_memory_bytes) == (7, 700, 7 * 64 * 2**20)
    kinds = [w.kind for w in plan.warnings]
    assert kinds == ["gitops", "autoscaler", "quota", "image", "paused"]
    texts = " | ".join(w.text for w in plan.warnings)
    assert "HorizontalPodAutoscaler hexo-hpa scales it (2 to 9 pods, 6 now)" in texts
    assert "quota team: pods 6 of 6 used; the release needs 1 more" in texts
    assert "CPU" not in texts  # 600m + 100m fits in 1 CPU
    assert "not an image of the catalog's registry.example/other" in texts


async def test_a_dry_run_plans_on_the_cluster_and_writes_nothing() -> None:
    cluster, engine, _ = await world_of({})
    try:
        writes = list(cluster.writes)
        record, running, gate = await engine.preview(
            Release(app="hexo", version="v2.0", strategy=Strategy.CANARY, dry_run=True),
            ALICE,
            "C1",
            "releases",
        )
        assert cluster.writes == writes
        assert (NS, "release-bot.hexo") not in cluster.objects["configmaps"]
        assert record.preflight is not None and record.preflight.steps == (1, 6)
        assert any("image" in c and "v2.0" in c for c in record.preflight.changes)
        assert running is None
        text = answers.dry_run(record, running, gate)
        assert "Dry run" in text and "1 → 6 of 6" in text
        _, blocks = cards.card(record, Live())
        assert "Changes to the pod template" not in str(blocks)  # the card shows warnings only
    finally:
        await engine.stop(0)


async def test_a_gitops_managed_deployment_is_refused_before_anything_is_written() -> None:
    cluster, engine, _ = await world_of({})
    try:
        meta = cluster.objects["deployments"][(NS, "hexo")]["metadata"]
        meta.setdefault("labels", {})["argocd.argoproj.io/instance"] = "shop"
        with pytest.raises(refusals.GitOpsManaged) as refused:
            await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
        assert "Argo CD application shop" in str(refused.value) and "gitops: allow" in str(refused.value)
        assert cluster.writes == []
    finally:
        await engine.stop(0)


def add_autoscaler(cluster: MemoryCluster, target: str = "hexo") -> None:
    cluster.objects["horizontalpodautoscalers"][(NS, "hexo")] = {
        "metadata": {"name": "hexo", "namespace": NS, "resourceVersion": "1"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": target},
            "minReplicas": 2,
            "maxReplicas": 10,
        },
    }


def bounds(cluster: MemoryCluster) -> tuple[int, int, str]:
    spec = cluster.objects["horizontalpodautoscalers"][(NS, "hexo")]["spec"]
    return spec["minReplicas"], spec["maxReplicas"], spec["scaleTargetRef"]["name"]


async def test_a_canary_holds_the_autoscaler_at_its_size_and_gives_it_back() -> None:
    cluster, engine, _ = await world_of({})
    add_autoscaler(cluster)
    try:
        await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "r")
        waiting = await until(cluster, lambda r: r.phase is Phase.CANARY)
        assert bounds(cluster) == (6, 6, "hexo")  # the stable set cannot be resized under the canary
        assert waiting.autoscaler is not None and not waiting.autoscaler.restored
        await engine.request("hexo", Request.PROMOTE, ALICE)
        done = await until(cluster, lambda r: r.autoscaler is not None and r.autoscaler.restored)
        assert done.phase is Phase.SUCCEEDED
        assert bounds(cluster) == (2, 10, "hexo")
        kinds = [type(e) for e in done.notes]
        assert events.AutoscalerHeld in kinds and events.AutoscalerRestored in kinds
    finally:
        await engine.stop(0)


async def test_a_rolled_back_canary_gives_the_autoscaler_back_too() -> None:
    cluster, engine, _ = await world_of({})
    add_autoscaler(cluster)
    try:
        await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.CANARY)
        await engine.request("hexo", Request.ROLLBACK, ALICE)
        done = await until(cluster, lambda r: r.autoscaler is not None and r.autoscaler.restored)
        assert done.phase is Phase.ROLLED_BACK and bounds(cluster) == (2, 10, "hexo")
    finally:
        await engine.stop(0)


async def test_blue_green_moves_the_autoscaler_to_green_at_the_switch() -> None:
    cluster, engine, _ = await world_of({"bluegreen": {"grace_seconds": 0}})
    add_autoscaler(cluster)
    try:
        await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.BLUEGREEN), ALICE, "C1", "r")
        ready = await until(cluster, lambda r: r.phase is Phase.AWAITING_SWITCH)
        assert bounds(cluster) == (6, 6, "hexo")
        await engine.request("hexo", Request.PROMOTE, ALICE)
        done = await until(cluster, lambda r: r.autoscaler is not None and r.autoscaler.restored)
        assert done.phase is Phase.SUCCEEDED and bounds(cluster) == (2, 10, ready.green)
    finally:
        await engine.stop(0)


async def test_a_driver_restarted_mid_canary_still_gives_the_autoscaler_back() -> None:
    cluster, first, reporter = await world_of({})
    add_autoscaler(cluster)
    await first.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "r")
    await until(cluster, lambda r: r.phase is Phase.CANARY)
    assert bounds(cluster) == (6, 6, "hexo")
    await first.stop(0)  # the process goes away with the autoscaler held
    second = Engine(
        cluster, first.catalog, reporter, identity="unit-2", lease_seconds=15, audit=Auditor(cluster)
    )
    await second.start(sync_timeout=1)
    try:
        await second.request("hexo", Request.ABORT, ALICE)
        done = await until(cluster, lambda r: r.autoscaler is not None and r.autoscaler.restored)
        assert done.phase in (Phase.ABORTED, Phase.ROLLED_BACK) and bounds(cluster) == (2, 10, "hexo")
    finally:
        await second.stop(0)


def test_a_selector_label_that_no_longer_names_the_running_version_is_said() -> None:
    dep = labelled()
    dep["spec"]["selector"] = {"matchLabels": {"app": "hexo", "version": "v1.0"}}
    assert health.stale_selector_label(dep, "hexo") is None  # it runs v1.0
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/hexo:v2.1"
    assert health.stale_selector_label(dep, "hexo") == ("v1.0", "v2.1")
    assert health.stale_selector_label(DEPLOYMENT, "hexo") is None  # no version in the selector
    app = App(namespace=NS, deployment="hexo", container="hexo", image="registry.example/hexo", name="hexo")
    text = answers.status(app, dep, None, "")
    assert "Selector label `version=v1.0`, running `v2.1`" in text


def version_labels(cluster: MemoryCluster) -> tuple[str | None, str | None]:
    dep = cluster.objects["deployments"][(NS, "hexo")]
    own = (dep["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
    pods = (dep["spec"]["template"]["metadata"].get("labels") or {}).get("app.kubernetes.io/version")
    return own, pods


async def test_the_version_labels_name_what_runs_after_a_release_and_a_rollback() -> None:
    cluster, engine, _ = await world_of({})
    try:
        await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        assert version_labels(cluster) == ("v2.0", "v2.0")
        await engine.begin(Release(app="hexo", version="v3.0", strategy=Strategy.CANARY), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.CANARY)
        assert version_labels(cluster) == ("v3.0", "v3.0")
        await engine.request("hexo", Request.ROLLBACK, ALICE)
        await until(cluster, lambda r: r.phase is Phase.ROLLED_BACK)
        assert version_labels(cluster) == ("v2.0", "v2.0")  # v2.0's own template came back
    finally:
        await engine.stop(0)
