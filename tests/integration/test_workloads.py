"""Apps of several Deployments released as one, and names that tell the truth, on the real control
plane: a canary whose other Deployment follows on Promote; a failing second Deployment that rolls
every Deployment back; a bot SIGKILLed while the second Deployment rolls out; a guide-style
`hexo-v2.0` moved to a colour name, after which rolling releases keep every name and label true."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import hexo
from sandbox.controlplane.launcher import ClusterInfo
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
    record_of,
    thread_with,
    wait_card,
    wait_ephemeral,
)
from tests.integration.test_ctl import ctl

pytestmark = pytest.mark.integration

WORKERS = [{"name": "hexo", "container": "hexo"}, {"name": "hexo-worker", "container": "worker"}]
TWO = {"deployments": WORKERS, "strategies": ["rolling", "canary"], "default_strategy": "rolling"}


def worker(ns: str) -> dict[str, Any]:
    """A second Deployment of the app (its own pods, container `worker`), two replicas of v1.0."""
    doc = copy.deepcopy(hexo.objects(ns)[1])
    labels = {"app": "hexo-worker"}
    doc["metadata"].update({"name": "hexo-worker", "labels": dict(labels)})
    spec = doc["spec"]
    spec["replicas"] = 2
    spec["selector"] = {"matchLabels": dict(labels)}
    spec["template"]["metadata"]["labels"] = dict(labels)
    spec["template"]["spec"]["containers"][0]["name"] = "worker"
    return doc


async def with_worker(control_plane: ClusterInfo, ns: str, tmp_path: Path) -> None:
    create(control_plane, tmp_path, worker(ns))
    kubectl(control_plane, "-n", ns, "rollout", "status", "deployment/hexo-worker", "--timeout=60s")


def images(cluster: ClusterInfo, ns: str, name: str) -> list[str]:
    dep = kubectl_json(cluster, "-n", ns, "get", "deployment", name)
    return [c["image"].rsplit("/", 1)[-1] for c in dep["spec"]["template"]["spec"]["containers"]]


def worker_pods(cluster: ClusterInfo, ns: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in kubectl_json(cluster, "-n", ns, "get", "pods", "-l", "app=hexo-worker")["items"]:
        if not pod["metadata"].get("deletionTimestamp"):
            image = pod["spec"]["containers"][0]["image"].rsplit("/", 1)[-1]
            counts[image] = counts.get(image, 0) + 1
    return counts


async def settled(cluster: ClusterInfo, ns: str, want: dict[str, int], timeout: float = 60) -> None:
    """The worker's pods come to `want` (old pods terminate a moment after a rollout completes)."""
    async with asyncio.timeout(timeout):
        while worker_pods(cluster, ns) != want:
            await asyncio.sleep(0.3)


async def test_a_canary_with_a_second_deployment_that_follows_on_promote(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    await with_worker(control_plane, ns, tmp_path)
    await bots.start(extra=TWO)
    await command(slack_sim, "alice", "hexo v2.0 --canary --dry-run")
    plan = await wait_ephemeral(slack_sim, "alice", "Dry run")
    assert "`hexo-worker` (after the last Promote); if any fails, all are rolled back" in plan

    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Promote", timeout=90)
    assert "*Deployments* `hexo` → `hexo-worker`, all or nothing" in card_text(card)
    assert images(control_plane, ns, "hexo-worker") == ["nginx:v1.0"]  # untouched during the canary
    assert await click(slack_sim, "bob", card, "release:promote") == 200
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert images(control_plane, ns, "hexo") == images(control_plane, ns, "hexo-worker") == ["nginx:v2.0"]
    await settled(control_plane, ns, {"nginx:v2.0": 2})
    dep = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-worker", "--show-managed-fields")
    assert dep["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.0"
    assert "release-bot" in {f["manager"] for f in dep["metadata"]["managedFields"]}
    await command(slack_sim, "alice", "status hexo")
    status = await wait_ephemeral(slack_sim, "alice", "Also Deployment")
    assert "Also Deployment `hexo-worker`: `worker`: `registry.sword.org/nginx:v2.0`" in status
    thread = await thread_with(slack_sim, final, "`hexo-worker` runs `v2.0`")
    assert thread.index("`hexo-worker` runs `v2.0`") < thread.index("now runs `v2.0`")


async def test_a_failing_second_deployment_rolls_every_deployment_back(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    await with_worker(control_plane, ns, tmp_path)
    broken = [WORKERS[0], {**WORKERS[1], "image": "registry.sword.org/worker-broken"}]
    await bots.start(extra={**TWO, "deployments": broken})
    await command(slack_sim, "alice", "hexo v2.0")
    final = await wait_card(slack_sim, "Rolled back", timeout=180)
    text = card_text(final)
    assert "`hexo-worker`" in text and "CrashLoopBackOff" in text
    # hexo had rolled out v2.0 in full before its worker failed: it is back on v1.0 too.
    rec = record_of(control_plane, ns)
    assert "started" in [e["action"] for e in rec["history"]]
    assert images(control_plane, ns, "hexo") == ["nginx:v1.0"]
    assert images(control_plane, ns, "hexo-worker") == ["nginx:v1.0"]
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}
    await settled(control_plane, ns, {"nginx:v1.0": 2})
    await thread_with(slack_sim, final, "Rolled back automatically", timeout=30)


async def test_a_bot_killed_while_the_second_deployment_rolls_out_finishes_both(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    await with_worker(control_plane, ns, tmp_path)
    bot = await bots.start(extra=TWO)
    await command(slack_sim, "alice", "hexo v2.0")
    async with asyncio.timeout(120):
        while images(control_plane, ns, "hexo-worker") != ["nginx:v2.0"]:
            await asyncio.sleep(0.05)
    assert record_of(control_plane, ns)["phase"] == "rolling-out"
    await bot.stop(signal.SIGKILL)
    await bots.restart(bot)
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert images(control_plane, ns, "hexo") == images(control_plane, ns, "hexo-worker") == ["nginx:v2.0"]
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}
    await settled(control_plane, ns, {"nginx:v2.0": 2})
    thread = await thread_with(slack_sim, final, "now runs `v2.0`", timeout=30)
    assert thread.count("`hexo-worker` runs `v2.0`") == 1


async def test_a_guide_style_colour_moves_to_a_colour_name_and_names_stay_true(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    # The guide's own blue-green (§1.2-1.4): hexo-v2.0 created beside hexo, the Service switched to it.
    guide = copy.deepcopy(hexo.objects(ns, version="v2.0")[1])
    guide["metadata"]["name"] = "hexo-v2.0"
    create(control_plane, tmp_path, guide)
    kubectl(control_plane, "-n", ns, "rollout", "status", "deployment/hexo-v2.0", "--timeout=60s")
    patch = json.dumps({"spec": {"selector": {"app": "hexo-server", "version": "v2.0"}}})
    kubectl(control_plane, "-n", ns, "patch", "service", "hexo-service", "-p", patch)
    await bots.start(extra={"bluegreen": {"grace_seconds": 1}})

    before = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-v2.0")["metadata"]
    await command(slack_sim, "alice", "hexo v2.1")
    refused = await wait_ephemeral(slack_sim, "alice", "its name says")
    assert "`/release hexo v2.1 --bluegreen` creates `hexo-green`" in refused
    after = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-v2.0")["metadata"]
    assert after["resourceVersion"] == before["resourceVersion"]  # nothing changed

    await command(slack_sim, "alice", "hexo v2.1 --bluegreen")
    card = await wait_card(slack_sim, "Switch traffic", timeout=90)
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded", timeout=120)  # the 1 s grace period retires hexo-v2.0
    names = {
        d["metadata"]["name"]: d for d in kubectl_json(control_plane, "-n", ns, "get", "deployments")["items"]
    }
    assert names["hexo-v2.0"]["spec"]["replicas"] == 0  # not release-bot's: scaled down, kept

    await command(slack_sim, "alice", "hexo v2.2")
    await wait_card(slack_sim, "v2.1 → v2.2", timeout=30)
    done = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert record_of(control_plane, ns)["deployment"] == "hexo-green"
    green = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-green")
    assert green["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.2"
    assert green["metadata"]["labels"]["version"] == "v2.2"  # its own label follows the release
    assert green["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "v2.2"
    assert "*Selector label* `version=v2.1`, running `v2.2`" in card_text(done)
    await command(slack_sim, "alice", "status hexo")
    status = await wait_ephemeral(slack_sim, "alice", "Selector label")
    assert "Selector label `version=v2.1`, running `v2.2`" in status

    await command(slack_sim, "alice", "hexo v3.0 --bluegreen")
    await wait_card(slack_sim, "v2.2 → v3.0", timeout=30)
    card = await wait_card(slack_sim, "Switch traffic", timeout=90)
    assert record_of(control_plane, ns)["green"] == "hexo-blue"
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded", timeout=120)
    serving = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo-blue")
    assert serving["metadata"]["labels"]["app.kubernetes.io/version"] == "v3.0"
    replicas = {
        d["metadata"]["name"]: d["spec"]["replicas"]
        for d in kubectl_json(control_plane, "-n", ns, "get", "deployments")["items"]
    }
    # hexo-green retired; hexo-v2.0 still at 0; `hexo`, which the guide's own steps left running, untouched
    assert replicas == {"hexo": 6, "hexo-v2.0": 0, "hexo-green": 0, "hexo-blue": 6}


@contextlib.asynccontextmanager
async def staging_with(
    cluster: ClusterInfo, tmp_path: Path, prod: str, *, replicas: int
) -> AsyncIterator[str]:
    """A staging namespace beside `prod` running the guide's hexo at v2.0; deleted afterwards."""
    staging = f"{prod}-staging"
    kubectl(cluster, "create", "namespace", staging)
    try:
        for doc in hexo.objects(staging, version="v2.0", replicas=replicas):
            create(cluster, tmp_path, doc)
        kubectl(cluster, "-n", staging, "rollout", "status", "deployment/hexo", "--timeout=60s")
        yield staging
    finally:
        kubectl(cluster, "delete", "namespace", staging, "--wait=false")


async def test_diff_between_two_environments_is_private_and_checks_both(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    prod = bots.namespace
    async with staging_with(control_plane, tmp_path, prod, replicas=3) as staging:
        alice = slack_sim.users["alice"]
        view = {"users": [alice]}
        envs = {"staging": {"namespace": staging, "permissions": {"view": view}}, "prod": {}}
        await bots.start(extra={"environments": envs})
        await command(slack_sim, "alice", "diff hexo staging prod")
        text = await wait_ephemeral(slack_sim, "alice", "hexo-staging")
        assert f"*hexo-staging* (`{staging}/hexo`) → *hexo-prod* (`{prod}/hexo`)" in text
        assert "replicas: 3 → 6" in text
        assert (
            "spec.containers[hexo].image: 'registry.sword.org/nginx:v2.0' -&gt; 'registry.sword.org/nginx:v1.0'"
            in text
        )
        # bob may view prod (he may promote there) but not staging: refused, with nothing shown
        await command(slack_sim, "bob", "diff hexo staging prod")
        refused = await wait_ephemeral(slack_sim, "bob", "hexo-staging")
        assert "replicas" not in refused and "nginx" not in refused
        assert card_of(slack_sim, slack_sim.channels["releases"]) is None
        code, out, err = await ctl(bots, "diff", "hexo", "staging", "prod", catalog=bots.tmp / "catalog.yaml")
        assert code == 0, (out, err)
        assert "replicas: 3 -> 6" in out
        assert (
            "spec.containers[hexo].image: 'registry.sword.org/nginx:v2.0' -> 'registry.sword.org/nginx:v1.0'"
            in out
        )


async def test_a_promotion_refused_for_its_soak_then_allowed_and_a_skipped_stage_refused(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    prod = bots.namespace
    async with staging_with(control_plane, tmp_path, prod, replicas=2) as staging:
        envs = {
            "staging": {"namespace": staging},
            "prod": {"promotion": {"from": "staging", "soak_minutes": 0.25}},
        }
        await bots.start(extra={"environments": envs})
        before = kubectl_json(control_plane, "-n", prod, "get", "deployment", "hexo")["metadata"][
            "resourceVersion"
        ]

        await command(slack_sim, "alice", "hexo v2.0 --env prod")
        refused = await wait_ephemeral(slack_sim, "alice", "takes only what comes through")
        assert "`/release promote hexo --from staging --to prod`" in refused

        # staging's pods turned Ready moments ago: 15 s of soak are not over yet
        await command(slack_sim, "alice", "promote hexo --from staging --to prod")
        early = await wait_ephemeral(slack_sim, "alice", "a promotion needs 0.25 min")
        assert "`hexo-staging` has run `registry.sword.org/nginx:v2.0` healthily for" in early
        after = kubectl_json(control_plane, "-n", prod, "get", "deployment", "hexo")["metadata"][
            "resourceVersion"
        ]
        assert after == before  # neither refusal changed anything
        assert card_of(slack_sim, slack_sim.channels["releases"]) is None

        await asyncio.sleep(16)
        await command(slack_sim, "alice", "promote hexo --from staging --to prod")
        final = await wait_card(slack_sim, "Succeeded", timeout=120)
        assert "*Promoted from* `hexo-staging`: `registry.sword.org/nginx:v2.0` Ready on 2 pods" in card_text(
            final
        )
        assert pods_by_image(control_plane, prod) == {"v2.0": 6}
        assert record_of(control_plane, prod, "hexo-prod")["promoted"]["source"] == "hexo-staging"


async def test_a_bot_killed_during_a_promotion_finishes_it_with_the_evidence(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    prod = bots.namespace
    async with staging_with(control_plane, tmp_path, prod, replicas=2) as staging:
        envs = {"staging": {"namespace": staging}, "prod": {"promotion": {"from": "staging"}}}
        bot = await bots.start(extra={"environments": envs})
        await command(slack_sim, "alice", "promote hexo --from staging --to prod")
        await wait_card(slack_sim, "*Promoted from* `hexo-staging`", timeout=60)
        async with asyncio.timeout(30):  # killed once the record knows its card
            while not record_of(control_plane, prod, "hexo-prod").get("card_ref"):
                await asyncio.sleep(0.05)
        await bot.stop(signal.SIGKILL)
        await bots.restart(bot)
        final = await wait_card(slack_sim, "Succeeded", timeout=120)
        assert "*Promoted from* `hexo-staging`: `registry.sword.org/nginx:v2.0` Ready on 2 pods" in card_text(
            final
        )
        assert pods_by_image(control_plane, prod) == {"v2.0": 6}
        assert record_of(control_plane, prod, "hexo-prod")["promoted"]["source"] == "hexo-staging"
        assert len(slack_sim.history(slack_sim.channels["releases"])) == 1  # one card, updated in place
