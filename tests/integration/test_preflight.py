"""The pre-flight plan on the real control plane: `--dry-run` shows the plan privately and changes
nothing; a dry-run the API server refuses (a quota) refuses the release before any write; a GitOps
managed Deployment is refused unless the catalog allows it, and then the card warns; every write
carries the bot's field manager."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_of,
    card_text,
    click,
    command,
    create,
    kubectl,
    kubectl_json,
    pods_by_image,
    thread_with,
    wait_card,
    wait_ephemeral,
)

pytestmark = pytest.mark.integration


def versions(cluster: ClusterInfo, ns: str) -> dict[str, str]:
    """resourceVersion of every object the bot could write in the namespace, by kind and name."""
    out = {}
    for kind in ("deployments", "services", "configmaps", "leases.coordination.k8s.io", "events"):
        for item in kubectl_json(cluster, "-n", ns, "get", kind)["items"]:
            out[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return out


def written(cluster: ClusterInfo, ns: str) -> dict[str, str]:
    """`versions` without Events (a refusal is audited as an Event on the Deployment)."""
    return {k: v for k, v in versions(cluster, ns).items() if not k.startswith("events/")}


def autoscaler(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "hexo", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hexo"},
            "minReplicas": 6,
            "maxReplicas": 10,
            "targetCPUUtilizationPercentage": 80,
        },
    }


async def test_dry_run_shows_the_plan_privately_and_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    create(control_plane, tmp_path, autoscaler(ns))
    # A budget that all six pods must stay up for (policy/v1beta1: this API server predates v1).
    pdb = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "hexo-pdb", "namespace": ns},
        "spec": {"minAvailable": 6, "selector": {"matchLabels": {"app": "hexo-server"}}},
    }
    create(control_plane, tmp_path, pdb)
    async with asyncio.timeout(60):  # the disruption controller counts it
        while "disruptionsAllowed" not in kubectl_json(control_plane, "-n", ns, "get", "pdb", "hexo-pdb").get(
            "status", {}
        ):
            await asyncio.sleep(0.3)
    await bots.start()
    before = versions(control_plane, ns)

    await command(slack_sim, "alice", "hexo v2.0 --canary --dry-run")
    text = await wait_ephemeral(slack_sim, "alice", "Dry run")
    assert "nothing was changed" in text
    assert "v1.0" in text and "v2.0" in text and "containers[hexo].image" in text
    assert "new pods at each pause: 1 → 6 of 6" in text
    assert "at most 7 pods at once" in text  # six old plus the canary
    assert "HorizontalPodAutoscaler hexo scales it (6 to 10 pods" in text
    assert "PodDisruptionBudget hexo-pdb allows no eviction now (6 of 6 healthy pods needed)" in text
    assert "Release it: `/release hexo v2.0 --canary`" in text

    await command(slack_sim, "alice", "hexo v2.0 --bluegreen --dry-run")
    text = await wait_ephemeral(slack_sim, "alice", "(bluegreen)")
    assert "at most 12 pods at once" in text and "metadata.labels.version" in text

    assert versions(control_plane, ns) == before  # no write, not even an audit Event
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}


async def test_a_quota_the_green_deployment_would_exceed_refuses_before_any_write(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-deployment", "namespace": ns},
        "spec": {"hard": {"count/deployments.apps": "1"}},
    }
    create(control_plane, tmp_path, quota)
    await bots.start()
    # Admission judges against the usage the quota controller counted: wait until it has.
    async with asyncio.timeout(60):
        while "count/deployments.apps" not in (
            kubectl_json(control_plane, "-n", ns, "get", "resourcequota", "one-deployment")
            .get("status", {})
            .get("used", {})
        ):
            await asyncio.sleep(0.5)
    before = written(control_plane, ns)
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    text = await wait_ephemeral(slack_sim, "alice", "The API server would refuse this release")
    assert "create deployment hexo-green" in text and "exceeded quota" in text and "one-deployment" in text
    assert "Nothing was changed" in text
    assert written(control_plane, ns) == before  # no green, no record, no lease
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None
    # A rolling release writes no new Deployment: the same quota lets it through.
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=120)
    dep = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.0"
    assert dep["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.0"
    # The guide's `version` label is in the immutable selector: status says it is stale.
    await command(slack_sim, "alice", "status hexo")
    status = await wait_ephemeral(slack_sim, "alice", "Selector label")
    assert "Selector label `version=v1.0`, running `v2.0`" in status


async def test_gitops_managed_is_refused_unless_allowed_then_the_card_warns(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    kubectl(control_plane, "-n", ns, "label", "deployment", "hexo", "argocd.argoproj.io/instance=shop")
    bot = await bots.start()
    before = written(control_plane, ns)
    await command(slack_sim, "alice", "hexo v2.0")
    text = await wait_ephemeral(slack_sim, "alice", "is managed by Argo CD application shop")
    assert "gitops: allow" in text and "drift" in text
    assert written(control_plane, ns) == before
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}
    await bot.stop()

    allowed = await bots.start(extra={"gitops": "allow"})
    await command(slack_sim, "alice", "hexo v2.0", bot_url=allowed.url)
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "managed by Argo CD application shop: it may set the image back" in card_text(card)
    dep = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo", "--show-managed-fields")
    managers = {f["manager"] for f in dep["metadata"].get("managedFields") or []}
    assert "release-bot" in managers


def hpa_spec(cluster: ClusterInfo, ns: str) -> tuple[int, int, str]:
    spec = kubectl_json(cluster, "-n", ns, "get", "hpa", "hexo")["spec"]
    return spec["minReplicas"], spec["maxReplicas"], spec["scaleTargetRef"]["name"]


async def test_a_canary_holds_the_autoscaler_and_blue_green_moves_it_to_green(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    """A real HorizontalPodAutoscaler under the real controller-manager. Nothing serves metrics here,
    so the controller only enforces the bounds: the test shows what the bot does to them (held at the
    Deployment's size while a release runs, given back after, on the Deployment that runs) and that
    the Deployment never grows past what the plan said."""
    ns = bots.namespace
    doc = autoscaler(ns)
    doc["spec"]["minReplicas"] = 2
    create(control_plane, tmp_path, doc)
    await bots.start(extra={"bluegreen": {"grace_seconds": 1}})

    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Promote", timeout=90)
    assert hpa_spec(control_plane, ns) == (6, 6, "hexo")
    dep = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    assert dep["spec"]["replicas"] == 6
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    await thread_with(slack_sim, card, "has its own bounds back (2 to 10 pods)", timeout=30)
    assert hpa_spec(control_plane, ns) == (2, 10, "hexo")
    assert "held at 6 pods" in await thread_with(slack_sim, card, "held at")

    await command(slack_sim, "alice", "hexo v3.0 --bluegreen")
    card = await wait_card(slack_sim, "Switch traffic", timeout=90)
    assert hpa_spec(control_plane, ns) == (6, 6, "hexo")
    green = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-green")
    assert green["spec"]["replicas"] == 6  # green starts at the size the autoscaler keeps now
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded", timeout=120)
    async with asyncio.timeout(30):
        while hpa_spec(control_plane, ns) != (2, 10, "hexo-green"):
            await asyncio.sleep(0.5)


async def test_a_bot_killed_while_it_holds_the_autoscaler_gives_it_back_after_its_restart(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    doc = autoscaler(ns)
    doc["spec"]["minReplicas"] = 2
    create(control_plane, tmp_path, doc)
    bot = await bots.start()
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Promote", timeout=90)
    assert hpa_spec(control_plane, ns) == (6, 6, "hexo")
    await bot.stop(signal.SIGKILL)
    await bots.restart(bot)
    assert await click(slack_sim, "alice", card, "release:rollback") == 200
    await wait_card(slack_sim, "Rolled back", timeout=120)
    async with asyncio.timeout(30):
        while hpa_spec(control_plane, ns) != (2, 10, "hexo"):
            await asyncio.sleep(0.5)
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}


async def test_an_apiserver_restart_while_the_autoscaler_is_held_still_ends_with_its_bounds_back(
    bots: Bots,
    slack_sim: SlackSimulator,
    control_plane: ClusterInfo,
    control_plane_process: ControlPlane,
    tmp_path: Path,
) -> None:
    ns = bots.namespace
    doc = autoscaler(ns)
    doc["spec"]["minReplicas"] = 2
    create(control_plane, tmp_path, doc)
    await bots.start(env={"RELEASE_BOT_LEASE_SECONDS": "30"})
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Promote", timeout=90)
    assert hpa_spec(control_plane, ns) == (6, 6, "hexo")
    await asyncio.to_thread(control_plane_process.restart, "kube-apiserver", 2.0)
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    await thread_with(slack_sim, card, "has its own bounds back (2 to 10 pods)", timeout=60)
    assert hpa_spec(control_plane, ns) == (2, 10, "hexo")
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}
    assert "Failed" not in card_text(card) and "Rolled back" not in card_text(card)


async def test_a_dry_run_answer_slack_fails_to_take_comes_through_response_url_and_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    before = versions(control_plane, ns)
    slack_sim.fault("chat.postEphemeral", 1, status=500)
    await command(slack_sim, "alice", "hexo v2.0 --dry-run")
    text = await wait_ephemeral(slack_sim, "alice", "Dry run", timeout=30)
    assert "nothing was changed" in text
    assert [c.ok for c in slack_sim.calls if c.method == "chat.postEphemeral"] == [False]
    assert versions(control_plane, ns) == before
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}
