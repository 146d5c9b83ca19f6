"""The cluster-wide watch scope (`RELEASE_BOT_WATCH_SCOPE=cluster`, the chart's `bot.watchScope`) on
the real control plane: two apps in two namespaces are released by a bot that opened one watch per
kind for the whole cluster (one per kind the shared caches follow), instead of one per kind and namespace; then the apiserver
is restarted mid-release and the release still ends correct, its card fresh again."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from bot.kube.access import WATCHED
from sandbox import hexo
from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_text,
    command,
    create_hexo,
    kubectl,
    pods_by_image,
    wait_card,
    watches_opened,
)

pytestmark = pytest.mark.integration


async def test_one_watch_per_kind_for_every_namespace(
    bots: Bots,
    slack_sim: SlackSimulator,
    control_plane: ClusterInfo,
    control_plane_process: ControlPlane,
    kube_admin: client.ApiClient,
) -> None:
    other = f"{bots.namespace}-b"
    kubectl(control_plane, "create", "namespace", other)
    try:
        await create_hexo(kube_admin, other)
        data = hexo.catalog(bots.namespace, slack_sim.users)
        data["apps"]["hexo-b"] = {**data["apps"]["hexo"], "namespace": other}
        bot = await bots.start(
            catalog=data, env={"RELEASE_BOT_WATCH_SCOPE": "cluster", "RELEASE_BOT_LEASE_SECONDS": "30"}
        )

        await command(slack_sim, "alice", "hexo v2.0")
        await wait_card(slack_sim, "Succeeded", timeout=120)
        await command(slack_sim, "alice", "hexo-b v2.0")
        await wait_card(slack_sim, "Rolling out", timeout=60)
        # both namespaces followed: records, Deployments, pods, Services and the pre-flight kinds,
        # one watch each for the whole cluster (the namespaced scope opens one per kind and namespace)
        assert await watches_opened(bot.port) == len(WATCHED)
        await asyncio.to_thread(control_plane_process.restart, "kube-apiserver", 2.0)
        final = await wait_card(slack_sim, "Succeeded", timeout=120)
        assert "hexo-b" in card_text(final)
        assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
        assert pods_by_image(control_plane, other) == {"v2.0": 6}
    finally:
        kubectl(control_plane, "delete", "namespace", other, "--wait=false")
