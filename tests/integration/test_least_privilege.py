"""The bot under the Helm chart's least-privilege RBAC: the real bot process authenticates with the
chart's ServiceAccount token (not admin) and runs a canary and a blue-green release; every call it
makes must be allowed by the chart's Role, and a verb outside the Role is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, pods_by_image, wait_card
from tests.fixtures.cluster import api_client_for
from tests.fixtures.helm import install_rbac, service_account_kubeconfig

pytestmark = pytest.mark.integration


async def test_canary_and_bluegreen_with_the_charts_role_only(
    bots: Bots,
    slack_sim: SlackSimulator,
    kube_admin: client.ApiClient,
    control_plane: ClusterInfo,
    tmp_path: Path,
) -> None:
    ns = bots.namespace
    rbac = await install_rbac(kube_admin, bot_namespace=ns, namespaces=[ns])
    bots.kubeconfig = await service_account_kubeconfig(
        control_plane.admin_kubeconfig, control_plane.api_url, rbac.token, tmp_path / "bot.kubeconfig"
    )
    bot = await bots.start(extra={"bluegreen": {"grace_seconds": 1}})
    player = slack_sim.player()
    try:
        await player.command("alice", "hexo v2.0 --canary")
        card = await wait_card(slack_sim, "Promote")
        assert pods_by_image(control_plane, ns) == {"v2.0": 1, "v1.0": 6}
        assert await player.click("bob", card, "release:promote") == 200
        await wait_card(slack_sim, "Succeeded")

        await player.command("alice", "hexo v3.0 --bluegreen")
        card = await wait_card(slack_sim, "Switch traffic", timeout=90)
        assert await player.click("bob", card, "release:promote") == 200
        await wait_card(slack_sim, "Succeeded", timeout=90)
    finally:
        await player.close()

    log = bot.log_path.read_text(errors="replace")
    assert "Forbidden" not in log
    assert "(403)" not in log

    # The same identity may not do what the Role does not grant.
    api = await api_client_for(bots.kubeconfig)
    try:
        with pytest.raises(ApiException) as refused:
            await client.CoreV1Api(api).delete_collection_namespaced_pod(ns)
        assert refused.value.status == 403
        with pytest.raises(ApiException) as secrets:
            await client.CoreV1Api(api).list_namespaced_secret(ns)
        assert secrets.value.status == 403
    finally:
        await api.close()
