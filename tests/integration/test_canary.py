"""`/release hexo v2.0 --canary` (guide §3): canary shape, Promote, Rollback, steps, the health gate,
and clicks that are unauthorized, doubled, racing, sent to another replica or after a restart.

The card says the canary waits for Promote only once its pods are Ready ("Canary healthy, waiting for
Promote"); `start_canary` waits for that."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
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
    thread_with,
    wait_card,
    wait_ephemeral,
)

HEALTHY = "Canary healthy, waiting for Promote"

pytestmark = pytest.mark.integration


async def start_canary(bots: Bots, sim: SlackSimulator, version: str = "v2.0", **catalog: Any) -> dict:  # type: ignore[type-arg]
    await bots.start(**catalog)
    await command(sim, "alice", f"hexo {version} --canary")
    return await wait_card(sim, HEALTHY)


def ready_since(cluster: ClusterInfo, namespace: str, version: str) -> list[datetime]:
    """When each live pod of `version` turned Ready, as the kubelet reported it."""
    out = []
    for pod in kubectl_json(cluster, "-n", namespace, "get", "pods", "-l", "app=hexo-server")["items"]:
        if pod["metadata"].get("deletionTimestamp") or not pod["spec"]["containers"][0]["image"].endswith(
            f":{version}"
        ):
            continue
        for cond in pod["status"].get("conditions") or []:
            if cond["type"] == "Ready" and cond["status"] == "True":
                out.append(datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00")))
    return out


async def test_canary_shape_then_promote(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(bots, slack_sim)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert dep["spec"]["paused"] is True
    text = card_text(card)
    assert "*Canary* 1 new (ready) + 6 old pods" in text
    assert "started <!date^" in text and "^{ago}|" in text  # moves by itself in Slack
    assert "7/6" not in text
    # Healthy was said once the canary pod was Ready, not before: the step's clock starts then.
    record = json.loads(
        kubectl_json(control_plane, "-n", bots.namespace, "get", "configmap", "release-bot.hexo")["data"][
            "record.json"
        ]
    )
    kinds = [n["kind"] for n in record["notes"]]
    assert kinds.index("canary-step") < kinds.index("canary-healthy")
    (ready,) = ready_since(control_plane, bots.namespace, "v2.0")
    assert ready.replace(microsecond=0) <= datetime.fromisoformat(record["phase_since"])
    thread = await thread_with(slack_sim, card, "Canary healthy")
    assert thread.index("Canary started: 1 new pod of `v2.0`") < thread.index(
        "Canary healthy: 1 new pod ready beside 6 old. Waiting for Promote or Rollback."
    )

    assert await click(slack_sim, "bob", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded")
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert not dep["spec"].get("paused")


async def test_canary_rollback_restores_old_version(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(bots, slack_sim)
    assert await click(slack_sim, "bob", card, "release:rollback") == 200
    final = await wait_card(slack_sim, "Rolled back")
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.0")
    assert not dep["spec"].get("paused")
    history = kubectl(control_plane, "-n", bots.namespace, "rollout", "history", "deployment/hexo")
    assert "2 " in history and "3 " in history  # v1.0 came back as a new revision, as with rollout undo
    assert slack_sim.users["bob"] in card_text(final)
    assert "actions" not in [b["type"] for b in final["blocks"]]  # no buttons left on a finished card


async def test_multi_step_promotion(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(bots, slack_sim, extra={"canary": {"steps": [1, "50%"]}})
    assert pods_by_image(control_plane, bots.namespace)["v2.0"] == 1
    assert await click(slack_sim, "alice", card, "release:promote") == 200

    def at_second_step() -> dict | None:  # type: ignore[type-arg]
        c = slack_sim.history(slack_sim.channels["releases"])[0]
        blocks = [b.get("block_id", "") for b in c.get("blocks") or []]
        return c if any(b.endswith(":canary:1") for b in blocks) else None  # paused at step 2

    card = await slack_sim.wait_for(at_second_step, timeout=60)
    # Steps after the first are reached by resume-watch-pause: at least 3 new pods (the controller may
    # have started one more before the pause landed), and never fewer than 6 serving pods.
    counts = pods_by_image(control_plane, bots.namespace)
    assert counts["v2.0"] >= 3
    assert sum(counts.values()) >= 6
    reported = f"Canary* {counts['v2.0']} new"  # the card reports what really runs
    await slack_sim.wait_for(
        lambda: reported in card_text(slack_sim.history(slack_sim.channels["releases"])[0])
    )
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded")
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_broken_canary_is_rolled_back_automatically(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0-broken --canary")
    final = await wait_card(slack_sim, "Rolled back", timeout=90)
    assert "CrashLoopBackOff" in card_text(final)
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}
    # Never called healthy, in any version of the card or in the thread.
    sent = [json.dumps(c.params) for c in slack_sim.calls if c.method in ("chat.postMessage", "chat.update")]
    assert sent and not [s for s in sent if "waiting for Promote" in s or "Canary healthy" in s]


async def test_unauthorized_click_is_refused_and_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(bots, slack_sim)
    assert await click(slack_sim, "mallory", card, "release:promote") == 200
    text = await wait_ephemeral(slack_sim, "mallory", "not allowed")
    assert "promote" in text
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}
    events = kubectl(
        control_plane, "-n", bots.namespace, "get", "events", "--field-selector", "involvedObject.name=hexo"
    )
    assert "refused" in events


async def test_double_click_and_racing_clicks_have_one_effect(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(bots, slack_sim)
    results = await asyncio.gather(
        click(slack_sim, "alice", card, "release:promote"),
        click(slack_sim, "alice", card, "release:promote"),
        click(slack_sim, "bob", card, "release:rollback"),
    )
    assert list(results) == [200, 200, 200]
    final = (
        await wait_card(slack_sim, "Succeeded", timeout=60)
        if await _promoted(slack_sim)
        else await wait_card(slack_sim, "Rolled back", timeout=60)
    )
    record = kubectl_json(control_plane, "-n", bots.namespace, "get", "configmap", "release-bot.hexo")
    history = json.loads(record["data"]["record.json"])["history"]
    decisions = [e["action"] for e in history if e["action"] in ("promote", "rollback")]
    assert len(decisions) == 1
    losers = [
        m
        for user in ("alice", "bob")
        for m in slack_sim.ephemerals(slack_sim.channels["releases"], slack_sim.users[user])
        if "out of date" in m.get("text", "") or "already asked" in m.get("text", "")
    ]
    assert len(losers) == 2
    assert final is not None


async def _promoted(sim: SlackSimulator) -> bool:
    def decided() -> str | None:
        text = " ".join(card_text(m) for m in sim.history(sim.channels["releases"])[:1])
        if "Promote by" in text or "promote by" in text:
            return "promote"
        if "rollback by" in text or "Rolling back" in text or "Rolled back" in text:
            return "rollback"
        return None

    return await sim.wait_for(decided, timeout=30) == "promote"


async def test_click_on_another_replica_and_after_restart(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    first = await bots.start(instance="bot-a")
    second = await bots.start(instance="bot-b")
    card = await start_canary_on(bots, slack_sim, first.url)
    # bot-a drives the release; kill it without warning, restart it, and click on bot-b.
    await bots.restart(first, signal.SIGKILL)
    assert await click(slack_sim, "bob", card, "release:promote", bot_url=second.url) == 200
    await wait_card(slack_sim, "Succeeded", timeout=60)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def start_canary_on(bots: Bots, sim: SlackSimulator, url: str) -> dict:  # type: ignore[type-arg]
    await command(sim, "alice", "hexo v2.0 --canary", bot_url=url)
    return await wait_card(sim, "Promote")


async def test_analysis_window_refuses_an_early_promote_then_promotes_by_itself(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    card = await start_canary(
        bots, slack_sim, extra={"canary": {"analysis_minutes": 0.1, "auto_promote": True}}
    )
    assert await click(slack_sim, "bob", card, "release:promote") == 200
    refused = await wait_ephemeral(slack_sim, "bob", "must stay healthy")
    assert "0.1 min" in refused
    final = await wait_card(slack_sim, "Succeeded", timeout=60)
    thread = slack_sim.replies(slack_sim.channels["releases"], final["ts"])
    assert any("Auto-promote" in m.get("text", "") for m in thread)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
