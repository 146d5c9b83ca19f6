"""`/release hexo v2.0 --bluegreen` (guide §1): a second Deployment, a Service switch checked on the
Endpoints at every step, instant rollback, abort, a broken green, leftovers and name clashes, a restart in
the middle, and two releases in a row (the second starting from the first one's green)."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_text,
    click,
    command,
    kubectl,
    kubectl_json,
    pods_by_image,
    wait_card,
    wait_ephemeral,
)

pytestmark = pytest.mark.integration

Msg = dict[str, Any]
SHORT = {"bluegreen": {"grace_seconds": 2}}


async def start_bluegreen(bots: Bots, sim: SlackSimulator, version: str = "v2.0", **catalog: Any) -> Msg:
    await bots.start(**catalog)
    await command(sim, "alice", f"hexo {version} --bluegreen")
    return await wait_card(sim, "Switch traffic")


def pod_ips(cluster: ClusterInfo, ns: str, version: str) -> set[str]:
    """IPs of the live (not terminating) hexo pods labelled `version`."""
    pods = kubectl_json(cluster, "-n", ns, "get", "pods", "-l", f"app=hexo-server,version={version}")
    return {
        p["status"]["podIP"]
        for p in pods["items"]
        if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")
    }


def served(cluster: ClusterInfo, ns: str) -> set[str]:
    """Every address the Service's Endpoints list (ready or not)."""
    ep = kubectl_json(cluster, "-n", ns, "get", "endpoints", "hexo-service")
    return {
        a["ip"]
        for s in ep.get("subsets") or []
        for a in [*(s.get("addresses") or []), *(s.get("notReadyAddresses") or [])]
    }


def selector(cluster: ClusterInfo, ns: str) -> dict[str, str]:
    sel: dict[str, str] = kubectl_json(cluster, "-n", ns, "get", "service", "hexo-service")["spec"][
        "selector"
    ]
    return sel


def deployments(cluster: ClusterInfo, ns: str) -> dict[str, Any]:
    return {d["metadata"]["name"]: d for d in kubectl_json(cluster, "-n", ns, "get", "deployments")["items"]}


def record(cluster: ClusterInfo, ns: str) -> dict[str, Any]:
    cm = kubectl_json(cluster, "-n", ns, "get", "configmap", "release-bot.hexo")
    data: dict[str, Any] = json.loads(cm["data"]["record.json"])
    return data


def thread(sim: SlackSimulator, card: Msg) -> list[str]:
    return [m.get("text", "") for m in sim.replies(sim.channels["releases"], card["ts"])[1:]]


def in_order(texts: list[str], *words: str) -> bool:
    """Each of `words` appears in the thread, in this order (notes that queued up for the same thread
    may share one message)."""
    i = 0
    for text in texts:
        at = 0
        while i < len(words) and (found := text.find(words[i], at)) >= 0:
            at = found + len(words[i])
            i += 1
    return i == len(words)


async def wait_thread(sim: SlackSimulator, card: Msg, *words: str) -> list[str]:
    """Wait until the card's thread tells `words` in this order (milestones follow the card's update)."""

    def told() -> list[str] | None:
        texts = thread(sim, card)
        return texts if in_order(texts, *words) else None

    return await sim.wait_for(told, timeout=30)


async def test_bluegreen_switch_then_finish(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    card = await start_bluegreen(bots, slack_sim)
    blue, green = pod_ips(control_plane, ns, "v1.0"), pod_ips(control_plane, ns, "v2.0")
    assert len(blue) == 6 and len(green) == 6 and not blue & green
    assert served(control_plane, ns) == blue  # green is ready but serves nothing yet

    dep = deployments(control_plane, ns)["hexo-green"]
    rec = record(control_plane, ns)
    meta = dep["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "release-bot"
    assert meta["labels"]["version"] == "v2.0"
    assert meta["annotations"]["release-bot.io/release-id"] == rec["id"]
    assert "(bluegreen)" in meta["annotations"]["kubernetes.io/change-cause"]
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "hexo-server", "version": "v2.0"}
    assert dep["spec"]["template"]["metadata"]["labels"]["version"] == "v2.0"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("nginx:v2.0")
    assert dep["spec"]["replicas"] == 6 and dep["status"]["readyReplicas"] == 6
    text = card_text(card)
    assert "12 pods (6 blue + 6 green) requesting 1.2 CPU and 768 MB" in text  # 2 × 6 × (100m, 64M)

    await click(slack_sim, "bob", card, "release:promote")
    switched = await wait_card(slack_sim, "Finish")
    assert "traffic on *green*" in card_text(switched)
    assert served(control_plane, ns) == green
    assert selector(control_plane, ns) == {"app": "hexo-server", "version": "v2.0"}
    assert pods_by_image(control_plane, ns) == {"v1.0": 6, "v2.0": 6}  # blue kept for rollback

    await click(slack_sim, "alice", switched, "release:finish")
    final = await wait_card(slack_sim, "Succeeded")
    assert "actions" not in [b["type"] for b in final["blocks"]]
    hexo = deployments(control_plane, ns)["hexo"]
    assert hexo["spec"]["replicas"] == 0  # retire: scale-down (the default)
    assert hexo["metadata"]["annotations"]["release-bot.io/replicas-before-retire"] == "6"
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}
    assert served(control_plane, ns) == green
    await wait_thread(
        slack_sim,
        card,
        "started releasing",
        "Created green `hexo-green`",
        "is ready",
        "Switch traffic by",
        "Traffic switched to green",
        "Finish by",
        "now runs `v2.0` on `hexo-green`; blue `hexo` scaled to 0",
    )


async def test_bluegreen_instant_rollback_after_switch(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    card = await start_bluegreen(bots, slack_sim)
    blue, green = pod_ips(control_plane, ns, "v1.0"), pod_ips(control_plane, ns, "v2.0")
    await click(slack_sim, "alice", card, "release:promote")
    switched = await wait_card(slack_sim, "Finish")
    assert served(control_plane, ns) == green

    await click(slack_sim, "bob", switched, "release:rollback")
    final = await wait_card(slack_sim, "Rolled back")
    assert served(control_plane, ns) == blue  # the same blue pods: nothing was restarted
    assert selector(control_plane, ns) == {"app": "hexo-server", "version": "v1.0"}
    assert "hexo-green" not in deployments(control_plane, ns)
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}
    assert slack_sim.users["bob"] in card_text(final)
    await wait_thread(
        slack_sim, card, "Traffic switched", "Rollback by", "Traffic back on blue", "Rolled back by"
    )


async def test_bluegreen_abort_before_switch(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    card = await start_bluegreen(bots, slack_sim)
    blue = pod_ips(control_plane, ns, "v1.0")
    await click(slack_sim, "bob", card, "release:abort")
    await wait_card(slack_sim, "Aborted")
    assert "hexo-green" not in deployments(control_plane, ns)
    assert served(control_plane, ns) == blue
    assert selector(control_plane, ns) == {"app": "hexo-server", "version": "v1.0"}
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}
    assert record(control_plane, ns)["phase"] == "aborted"
    await wait_thread(slack_sim, card, "Abort by", "Aborted by")


async def test_broken_green_is_never_switched_to_and_is_deleted(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    blue = pod_ips(control_plane, ns, "v1.0")
    await command(slack_sim, "alice", "hexo v2.0-broken --bluegreen")
    final = await wait_card(slack_sim, "Rolled back", timeout=90)
    assert "CrashLoopBackOff" in card_text(final)
    assert "hexo-green" not in deployments(control_plane, ns)
    assert served(control_plane, ns) == blue
    assert selector(control_plane, ns) == {"app": "hexo-server", "version": "v1.0"}
    actions = [e["action"] for e in record(control_plane, ns)["history"]]
    assert "switch" not in actions and "cleanup" in actions
    await wait_thread(slack_sim, final, "Traffic never left blue", "Rolled back automatically")


async def test_leftover_green_of_an_earlier_release_is_replaced(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Any
) -> None:
    ns = bots.namespace
    leftover = _deployment("hexo-green", "v2.0-broken", ours=True)
    path = tmp_path / "leftover.json"
    path.write_text(json.dumps(leftover))
    kubectl(control_plane, "-n", ns, "create", "-f", str(path))
    old_uid = deployments(control_plane, ns)["hexo-green"]["metadata"]["uid"]

    card = await start_bluegreen(bots, slack_sim)
    dep = deployments(control_plane, ns)["hexo-green"]
    assert dep["metadata"]["uid"] != old_uid
    assert dep["metadata"]["annotations"]["release-bot.io/release-id"] == record(control_plane, ns)["id"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.0")
    assert pods_by_image(control_plane, ns) == {"v1.0": 6, "v2.0": 6}
    assert served(control_plane, ns) == pod_ips(control_plane, ns, "v1.0")
    await wait_thread(slack_sim, card, "left over by an earlier release", "Created green")


async def test_green_name_taken_by_someone_else_is_refused(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Any
) -> None:
    ns = bots.namespace
    path = tmp_path / "theirs.json"
    path.write_text(json.dumps(_deployment("hexo-green", "v2.0", ours=False)))
    kubectl(control_plane, "-n", ns, "create", "-f", str(path))
    uid = deployments(control_plane, ns)["hexo-green"]["metadata"]["uid"]
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    text = await wait_ephemeral(slack_sim, "alice", "not created by release-bot")
    assert "hexo-green" in text
    assert deployments(control_plane, ns)["hexo-green"]["metadata"]["uid"] == uid  # untouched
    assert selector(control_plane, ns)["version"] == "v1.0"


async def test_refused_up_front_when_too_big_or_the_selector_matches_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start(extra={"bluegreen": {"max_replicas": 10}})
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    text = await wait_ephemeral(slack_sim, "alice", "max_replicas")
    assert "12 pods (6 blue + 6 green)" in text and "10" in text

    patch = json.dumps({"spec": {"selector": {"version": "v9"}}})
    kubectl(control_plane, "-n", ns, "patch", "service", "hexo-service", "-p", patch)
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    text = await wait_ephemeral(slack_sim, "alice", "no Deployment")
    assert "app=hexo-server,version=v9" in text and "version=v1.0" in text
    assert set(deployments(control_plane, ns)) == {"hexo"}
    assert not kubectl(control_plane, "-n", ns, "get", "configmap", "--ignore-not-found", "release-bot.hexo")


async def test_restart_while_awaiting_switch_then_click_the_same_card(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    bot = await bots.start()
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    card = await wait_card(slack_sim, "Switch traffic")
    uid = deployments(control_plane, ns)["hexo-green"]["metadata"]["uid"]

    await bots.restart(bot, signal.SIGKILL)
    await click(slack_sim, "bob", card, "release:promote")
    await wait_card(slack_sim, "Finish")
    assert deployments(control_plane, ns)["hexo-green"]["metadata"]["uid"] == uid  # resumed, not recreated
    assert served(control_plane, ns) == pod_ips(control_plane, ns, "v2.0")

    await command(slack_sim, "alice", "finish hexo")
    await wait_card(slack_sim, "Succeeded")
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}
    assert len(slack_sim.history(slack_sim.channels["releases"])) == 1  # one card, updated in place


async def test_two_releases_in_a_row_start_from_the_live_colour(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start(extra={"bluegreen": {"grace_seconds": 2, "retire": "delete"}})
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    first = await wait_card(slack_sim, "Switch traffic")
    await click(slack_sim, "alice", first, "release:promote")
    await wait_card(slack_sim, "Succeeded")  # nobody clicked Finish: the grace period retired blue
    hexo = deployments(control_plane, ns)["hexo"]
    assert hexo["spec"]["replicas"] == 0  # retire: delete, but release-bot did not create `hexo`
    await wait_thread(
        slack_sim, first, "grace period of 2 s is over", "not deleted: release-bot did not create it"
    )

    await command(slack_sim, "alice", "hexo v3.0 --bluegreen")
    second = await wait_card(slack_sim, "Switch traffic")
    assert second["ts"] != first["ts"]
    assert "*Blue* `hexo-green` (`v2.0`)" in card_text(second)
    v2, v3 = pod_ips(control_plane, ns, "v2.0"), pod_ips(control_plane, ns, "v3.0")
    assert served(control_plane, ns) == v2 and len(v3) == 6
    await click(slack_sim, "bob", second, "release:promote")
    await wait_card(slack_sim, "Succeeded")
    assert served(control_plane, ns) == v3
    assert selector(control_plane, ns) == {"app": "hexo-server", "version": "v3.0"}
    assert set(deployments(control_plane, ns)) == {"hexo", "hexo-blue"}  # hexo-green was ours: deleted
    assert pods_by_image(control_plane, ns) == {"v3.0": 6}
    rec = record(control_plane, ns)
    assert (rec["deployment"], rec["green"], rec["from_version"]) == ("hexo-green", "hexo-blue", "v2.0")


def _deployment(name: str, version: str, *, ours: bool) -> dict[str, Any]:
    labels = {"app": "hexo-server", "version": version.split("-")[0]}
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if ours:
        meta["labels"]["app.kubernetes.io/managed-by"] = "release-bot"
        meta["annotations"] = {
            "release-bot.io/app": "hexo",
            "release-bot.io/release-id": "hexo-20000101-000000-dead",
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "hexo", "image": f"registry.sword.org/nginx:{version}"}]},
            },
        },
    }
