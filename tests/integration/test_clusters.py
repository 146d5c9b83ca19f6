"""One bot serving two real clusters (two control planes, each its own etcd and apiserver): staging in
one, prod in the other.

- A promotion across the clusters: a direct release to prod refused for skipping staging, a promotion
  refused for lack of soak (nothing changed in prod), then allowed; prod's record lives in prod's
  cluster only; `/release diff` and `release-bot ctl diff` compare the two clusters.
- One cluster stopped: /readyz stays ready and names it, its app is refused saying which cluster,
  a release on the other cluster runs to its end meanwhile; once the apiserver is back the bot
  notices by itself and the stopped cluster's app releases again.
- A canary waiting for Promote in the cluster that stops: the card says the cluster is unreachable,
  a Promote click meanwhile is refused naming the cluster (nothing changes), and once the apiserver is
  back the same card is promoted to its end.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sandbox import hexo
from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    BotProcess,
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

STAGING_NS = "hexo-staging"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def staging(
    second_control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> ClusterInfo:
    """The staging cluster: the guide's hexo at v2.0 on 2 pods in namespace `hexo-staging`."""
    cluster = second_control_plane.info
    tmp = tmp_path_factory.mktemp("staging")
    kubectl(cluster, "create", "namespace", STAGING_NS)
    for doc in hexo.objects(STAGING_NS, version="v2.0", replicas=2):
        create(cluster, tmp, doc)
    kubectl(cluster, "-n", STAGING_NS, "rollout", "status", "deployment/hexo", "--timeout=90s")
    return cluster


def two_clusters(bots: Bots, staging: ClusterInfo, **prod: Any) -> dict[str, Any]:
    """hexo-staging in the staging cluster, hexo-prod in the session's cluster (the test namespace)."""
    envs = {
        "staging": {"namespace": STAGING_NS, "cluster": "staging"},
        "prod": {"cluster": "prod", **prod},
    }
    data = hexo.catalog(bots.namespace, bots.sim.users, extra={"environments": envs})
    data["clusters"] = {
        "staging": {"kubeconfig": str(staging.admin_kubeconfig)},
        "prod": {"kubeconfig": str(bots.cluster.admin_kubeconfig)},
    }
    return data


async def readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{bot.port}/readyz") as r:
        body: dict[str, Any] = await r.json()
        return r.status, body


async def wait_readyz(bot: BotProcess, cluster: str, ok: bool, timeout: float = 30) -> dict[str, Any]:
    """Poll /readyz (an endpoint: nothing to watch) until `cluster` is, or is not, "ok"."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await readyz(bot)
            if (body.get("clusters", {}).get(cluster) == "ok") is ok:
                assert status == 200, body  # one cluster down never makes the bot unready
                return body
            await asyncio.sleep(0.2)


async def metric_lines(bot: BotProcess, name: str) -> list[str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{bot.port}/metrics") as r:
        return [line for line in (await r.text()).splitlines() if line.startswith(name)]


def resource_version(cluster: ClusterInfo, ns: str) -> str:
    rv: str = kubectl_json(cluster, "-n", ns, "get", "deployment", "hexo")["metadata"]["resourceVersion"]
    return rv


async def test_a_promotion_from_one_cluster_to_another(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, staging: ClusterInfo
) -> None:
    prod = bots.namespace
    catalog = two_clusters(bots, staging, promotion={"from": "staging", "soak_minutes": 0.5})
    bot = await bots.start(catalog=catalog)
    status, body = await readyz(bot)
    assert (status, body) == (200, {"ready": True, "clusters": {"prod": "ok", "staging": "ok"}})
    before = resource_version(control_plane, prod)

    await command(slack_sim, "alice", "diff hexo staging prod")
    diff = await wait_ephemeral(slack_sim, "alice", "hexo-staging")
    assert f"*hexo-staging* (`{STAGING_NS}/hexo`) → *hexo-prod* (`{prod}/hexo`)" in diff
    assert "replicas: 2 → 6" in diff

    await command(slack_sim, "alice", "hexo v2.0 --env prod")
    refused = await wait_ephemeral(slack_sim, "alice", "takes only what comes through")
    assert "`/release promote hexo --from staging --to prod`" in refused
    await command(slack_sim, "alice", "promote hexo --from staging --to prod")
    early = await wait_ephemeral(slack_sim, "alice", "a promotion needs 0.5 min")
    assert "`hexo-staging` has run `registry.sword.org/nginx:v2.0` healthily for" in early
    assert resource_version(control_plane, prod) == before  # neither refusal changed prod

    left = re.search(r"Try again in ([0-9.]+) min", early)
    assert left is not None, early
    await asyncio.sleep((float(left.group(1)) + 0.1) * 60)  # the rest of staging's soak
    await command(slack_sim, "alice", "promote hexo --from staging --to prod")
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "*Promoted from* `hexo-staging`: `registry.sword.org/nginx:v2.0` Ready on 2 pods" in card_text(
        final
    )
    assert pods_by_image(control_plane, prod) == {"v2.0": 6}
    assert pods_by_image(staging, STAGING_NS) == {"v2.0": 2}  # the source is only read
    assert record_of(control_plane, prod, "hexo-prod")["promoted"]["source"] == "hexo-staging"
    # each cluster keeps its own apps' records: none of prod's in staging
    names = kubectl(staging, "-n", STAGING_NS, "get", "configmaps", "-o", "name")
    assert "release-bot.hexo-prod" not in names
    up = await metric_lines(bot, "release_bot_cluster_up")
    assert sorted(up) == [
        'release_bot_cluster_up{cluster="prod"} 1.0',
        'release_bot_cluster_up{cluster="staging"} 1.0',
    ]
    requests = await metric_lines(bot, "release_bot_kube_api_requests_total")
    assert {c for line in requests for c in ("prod", "staging") if f'cluster="{c}"' in line} == {
        "prod",
        "staging",
    }

    code, out, err = await ctl(bots, "diff", "hexo", "staging", "prod", catalog=bots.tmp / "catalog.yaml")
    assert code == 0, (out, err)
    assert "replicas: 2 -> 6" in out and "spec.containers[hexo].image" not in out  # both run v2.0 now

    check = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "catalog", "check", str(bots.tmp / "catalog.yaml"),
        "--kubeconfig", str(control_plane.admin_kubeconfig), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    said = (await check.communicate())[0].decode()
    assert check.returncode == 0, said
    assert "2 app(s) (hexo-prod, hexo-staging) valid and in the cluster" in said  # each in its own


@pytest_asyncio.fixture(loop_scope="session")
async def stopped_staging(second_control_plane: ControlPlane) -> AsyncIterator[ControlPlane]:
    """The staging cluster's apiserver is stopped by the test; started again at the end in any case."""
    try:
        yield second_control_plane
    finally:
        await asyncio.to_thread(second_control_plane.start_component, "kube-apiserver")


async def test_one_cluster_stopped_while_the_other_carries_on_then_recovered(
    bots: Bots,
    slack_sim: SlackSimulator,
    control_plane: ClusterInfo,
    staging: ClusterInfo,
    stopped_staging: ControlPlane,
) -> None:
    prod = bots.namespace
    bot = await bots.start(catalog=two_clusters(bots, staging))
    await asyncio.to_thread(stopped_staging.stop_component, "kube-apiserver")
    body = await wait_readyz(bot, "staging", ok=False)
    assert body["ready"] is True and body["clusters"]["prod"] == "ok"
    assert body["clusters"]["staging"].startswith("the Kubernetes API server has not answered since")
    assert 'release_bot_cluster_up{cluster="staging"} 0.0' in await metric_lines(
        bot, "release_bot_cluster_up"
    )

    await command(slack_sim, "alice", "hexo v3.0 --env staging")
    refused = await wait_ephemeral(slack_sim, "alice", "is unavailable")
    assert "`hexo-staging` is unavailable: cluster `staging` has not answered since" in refused
    assert "Apps on the other clusters are not affected." in refused

    await command(slack_sim, "alice", "hexo v2.1 --env prod")  # prod's cluster answers: released
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "hexo-prod" in card_text(final)
    assert pods_by_image(control_plane, prod) == {"v2.1": 6}

    await asyncio.to_thread(stopped_staging.start_component, "kube-apiserver")
    await wait_readyz(bot, "staging", ok=True)  # noticed by the bot's own probe
    assert pods_by_image(staging, STAGING_NS) == {"v2.0": 2}  # nothing was asked of it while down
    await command(slack_sim, "alice", "hexo v3.0 --env staging")
    await wait_card(slack_sim, "hexo-staging", timeout=60)  # its own card, after prod's
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "hexo-staging" in card_text(final) and "v3.0" in card_text(final)
    assert pods_by_image(staging, STAGING_NS) == {"v3.0": 2}
    assert pods_by_image(control_plane, prod) == {"v2.1": 6}


async def test_a_canary_waiting_in_a_cluster_that_stops_tells_the_truth_and_finishes_once_it_is_back(
    bots: Bots, slack_sim: SlackSimulator, staging: ClusterInfo, stopped_staging: ControlPlane
) -> None:
    bot = await bots.start(catalog=two_clusters(bots, staging))
    await command(slack_sim, "alice", "hexo v3.1 --env staging --canary")
    card = await wait_card(slack_sim, "Promote", timeout=60)
    await thread_with(slack_sim, card, "Canary healthy", timeout=60)

    await asyncio.to_thread(stopped_staging.stop_component, "kube-apiserver")
    await wait_readyz(bot, "staging", ok=False)
    down = await wait_card(slack_sim, "Cluster unreachable since", timeout=60)  # the card says so
    assert await click(slack_sim, "bob", down, "release:promote") == 200
    refused = await wait_ephemeral(slack_sim, "bob", "is unavailable")
    assert "`hexo-staging` is unavailable: cluster `staging` has not answered since" in refused

    await asyncio.to_thread(stopped_staging.start_component, "kube-apiserver")
    await wait_readyz(bot, "staging", ok=True)

    def healed() -> dict[str, Any] | None:
        c = card_of(slack_sim, slack_sim.channels["releases"])
        return c if c is not None and "Cluster unreachable" not in card_text(c) else None

    back = await slack_sim.wait_for(healed, timeout=60)
    assert await click(slack_sim, "bob", back, "release:promote") == 200
    final = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "hexo-staging" in card_text(final)
    assert pods_by_image(staging, STAGING_NS) == {"v3.1": 2}
    assert len(slack_sim.history(slack_sim.channels["releases"])) == 1  # one card, updated in place
