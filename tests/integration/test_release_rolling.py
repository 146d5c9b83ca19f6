"""`/release hexo v2.0`: a rolling release end to end, through signed Slack requests to the real bot
process, on the real control plane, read back from the simulator's channel history and from kubectl."""

from __future__ import annotations

import json

from kubernetes_asyncio import client

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, card_text, kubectl, thread_with, wait_card

pytestmark = __import__("pytest").mark.integration


async def test_rolling_release_end_to_end(
    bots: Bots, slack_sim: SlackSimulator, kube_admin: client.ApiClient, control_plane: ClusterInfo
) -> None:
    await bots.start()
    player = slack_sim.player()
    try:
        answer = await player.command("alice", "hexo v2.0 --rolling")
    finally:
        await player.close()
    assert answer.status == 200

    card = await wait_card(slack_sim, "Succeeded")
    ns = bots.namespace
    dep = json.loads(kubectl(control_plane, "-n", ns, "get", "deployment", "hexo", "-o", "json"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.sword.org/nginx:v2.0"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    cause = dep["metadata"]["annotations"]["kubernetes.io/change-cause"]
    assert "alice" in cause and slack_sim.channels["releases"] in cause and "v2.0" in cause

    rs = json.loads(kubectl(control_plane, "-n", ns, "get", "replicasets", "-o", "json"))["items"]
    by_image = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r for r in rs}
    assert by_image["registry.sword.org/nginx:v2.0"]["status"]["readyReplicas"] == 6
    assert by_image["registry.sword.org/nginx:v1.0"]["spec"]["replicas"] == 0

    history = kubectl(control_plane, "-n", ns, "rollout", "history", "deployment/hexo")
    assert "release-bot: alice" in history

    text = card_text(card)
    assert "v1.0" in text and "v2.0" in text and "rolling" in text
    assert slack_sim.users["alice"] in text

    words = await thread_with(slack_sim, card, "now runs")
    assert "started releasing" in words
