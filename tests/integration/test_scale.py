"""Many releases at once in one channel, with Slack's rate limits on: every card and every thread ends
correct. (How long it takes is the benchmark's business, not an assertion here.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from kubernetes_asyncio import client

from sandbox import hexo as hexo_app
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, card_text, command, kubectl_json
from tests.fixtures.cluster import apply, rollout_complete, wait_for_deployment

pytestmark = pytest.mark.integration

N = 20


def app_objects(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name, "version": "v1.0"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": f"{hexo_app.IMAGE_REPO}:v1.0"}]},
            },
        },
    }


def catalog(namespace: str, names: list[str], alice: str) -> dict[str, Any]:
    return {
        "apps": {
            name: {
                "namespace": namespace,
                "deployment": name,
                "container": "web",
                "image": hexo_app.IMAGE_REPO,
                "strategies": ["rolling"],
                "permissions": {"release": {"users": [alice]}},
            }
            for name in names
        }
    }


@pytest.mark.timeout(900)  # a deadline for a slow machine, not a speed goal
async def test_twenty_releases_at_once_in_one_channel_all_end_correct(
    bots: Bots, slack_sim: SlackSimulator, kube_admin: client.ApiClient
) -> None:
    assert slack_sim.rate_limits  # Slack's limits are on: 429s are part of the test
    ns = bots.namespace
    names = [f"app-{i:02d}" for i in range(N)]
    await apply(kube_admin, [app_objects(ns, n) for n in names])
    await asyncio.gather(
        *(wait_for_deployment(kube_admin, ns, n, rollout_complete, timeout=120) for n in names)
    )
    await bots.start(catalog=catalog(ns, names, slack_sim.users["alice"]))

    answers = await asyncio.gather(*(command(slack_sim, "alice", f"{n} v2.0") for n in names))
    assert all(a.status == 200 for a in answers)
    channel = slack_sim.channels["releases"]

    def cards() -> dict[str, dict[str, Any]]:
        out = {}
        for msg in slack_sim.history(channel):
            header = next((b for b in msg.get("blocks") or [] if b.get("type") == "header"), None)
            if header:
                out[header["text"]["text"].split()[1]] = msg
        return out

    def thread(card: dict[str, Any]) -> str:
        return "\n".join(m.get("text", "") for m in slack_sim.replies(channel, card["ts"])[1:])

    def all_done() -> dict[str, dict[str, Any]] | None:
        found = cards()
        done = {n: c for n, c in found.items() if "Succeeded" in card_text(c) and "now runs" in thread(c)}
        return found if len(done) == N else None

    final = await slack_sim.wait_for(all_done, timeout=600)
    assert sorted(final) == names  # one card per release, no more
    for name, card in final.items():
        told = thread(card)
        assert told.count("started releasing") == 1, (name, told)
        assert told.count("now runs") == 1, (name, told)
        assert told.index("started releasing") < told.index("now runs"), (name, told)
    for name in names:
        dep = kubectl_json(bots.cluster, "-n", ns, "get", "deployment", name)
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2.0")
        cm = kubectl_json(bots.cluster, "-n", ns, "get", "configmap", f"release-bot.{name}")
        record = json.loads(cm["data"]["record.json"])
        assert record["phase"] == "succeeded"
    limited = sum(1 for c in slack_sim.calls if c.error == "ratelimited")
    print(f"\n{N} releases: {len(slack_sim.calls)} Slack calls, {limited} answered 429")
