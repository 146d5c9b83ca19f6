"""Start-up and readiness that tell the truth, with the real `release-bot serve` process, the Slack
simulator and the real control plane:

- a bot token Slack refuses, a token without a scope the catalog needs, a kubeconfig whose identity
  lacks the chart's rights, and a kubeconfig that is missing or not YAML: each stops the bot at once
  with exit status 2 and a message that says what to fix (no traceback);
- the same identity with the Helm chart's Role starts;
- /readyz answers 503 with a JSON reason while the API server is stopped, while Slack refuses the
  bot token, and while Socket Mode is disabled for the app, and 200 again once each recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import BotProcess, Bots, card_text, command, pods_by_image, wait_card, wait_ephemeral
from tests.fixtures.helm import install_rbac, service_account_kubeconfig

pytestmark = pytest.mark.integration

EXIT_TIMEOUT_S = 60.0


async def exits(bots: Bots, **options: Any) -> tuple[int | None, str]:
    """Start a bot that must not become ready: its exit status and everything it printed."""
    with pytest.raises(AssertionError, match="the bot exited with"):
        await bots.start(**options)
    bot = bots.started[-1]
    assert bot.proc is not None
    return bot.proc.returncode, bot.log_path.read_text(errors="replace")


def one_error_line(output: str) -> str:
    """The output of a bot refused at start-up: its error, and no traceback."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("release-bot: error: ")]
    assert len(errors) == 1, output
    return errors[0]


async def readyz(bot: BotProcess) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{bot.port}/readyz") as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def until(
    probe: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
    done: Callable[[int, dict[str, Any]], bool],
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Ask /readyz until `done(status, body)`; readiness is read, as Kubernetes reads it, by asking.
    Returns the last body."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await probe()
            if done(status, body):
                return body
            await asyncio.sleep(0.1)


async def test_a_revoked_token_stops_the_bot_at_start(bots: Bots, slack_sim: SlackSimulator) -> None:
    slack_sim.revoke_token()
    code, output = await exits(bots)
    assert code == 2
    line = one_error_line(output)
    assert "Slack refused SLACK_BOT_TOKEN (token_revoked)" in line
    assert "install the app again" in line
    assert slack_sim.calls_to("auth.test")[-1].error == "token_revoked"
    assert slack_sim.bot_token not in output


async def test_a_missing_scope_stops_the_bot_naming_it(bots: Bots, slack_sim: SlackSimulator) -> None:
    group = slack_sim.usergroups["release-managers"]
    slack_sim.set_scopes(["chat:write", "commands"])  # installed without usergroups:read
    code, output = await exits(bots, extra={"permissions": {"release": {"usergroups": [group]}}})
    assert code == 2
    line = one_error_line(output)
    assert "SLACK_BOT_TOKEN lacks the scope usergroups:read" in line
    assert "user groups" in line and "reinstall the app" in line
    # a catalog that names no user group does not need it
    bot = await bots.start()
    assert (await readyz(bot))[0] == 200


async def test_a_kubeconfig_without_rights_stops_the_bot_listing_them(
    bots: Bots,
    slack_sim: SlackSimulator,
    control_plane: ClusterInfo,
    kube_admin: client.ApiClient,
    tmp_path: Path,
) -> None:
    ns = bots.namespace
    bots.kubeconfig = control_plane.restricted_kubeconfig  # no RBAC in this namespace
    code, output = await exits(bots)
    assert code == 2
    assert "Traceback" not in output
    assert "lacks 31 right(s) release-bot needs" in output, output
    listed = next(line for line in output.splitlines() if line.startswith(f"  namespace {ns}: "))
    for right in (
        "list deployments.apps",
        "get deployments.apps",  # hexo releases blue-green: any Deployment of the namespace
        "create deployments.apps",
        "list replicasets.apps",
        "watch pods",
        "patch services/hexo-service",
        "watch endpoints/hexo-service",
        "update configmaps/release-bot.hexo",
        "create leases.coordination.k8s.io",
        "update leases.coordination.k8s.io/release-bot.hexo",
        "create events",
        "list horizontalpodautoscalers.autoscaling",
        "patch horizontalpodautoscalers.autoscaling",
        "list resourcequotas",
        "list poddisruptionbudgets.policy",
        # the shared caches a release's plan reads
        "list services",
        "watch services",
        "watch horizontalpodautoscalers.autoscaling",
        "watch resourcequotas",
        "watch poddisruptionbudgets.policy",
    ):
        assert right in listed, (right, listed)
    assert "docs/deploy.md" in output

    # The Helm chart's Role grants exactly what is needed: with it, the bot starts.
    rbac = await install_rbac(kube_admin, bot_namespace=ns, namespaces=[ns])
    bots.kubeconfig = await service_account_kubeconfig(
        control_plane.admin_kubeconfig, control_plane.api_url, rbac.token, tmp_path / "bot.kubeconfig"
    )
    bot = await bots.start()
    assert (await readyz(bot))[0] == 200


@pytest.mark.parametrize("problem", ["missing", "not-yaml", "no-context"])
async def test_a_bad_kubeconfig_is_one_line(bots: Bots, tmp_path: Path, problem: str) -> None:
    path = tmp_path / "kubeconfig"
    if problem == "not-yaml":
        path.write_text("apiVersion: v1\nclusters: [\n")
    elif problem == "no-context":
        path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    bots.kubeconfig = path
    code, output = await exits(bots)
    assert code == 2
    assert output.strip() == one_error_line(output), output  # nothing else printed
    line = one_error_line(output)
    assert f"kubeconfig {path}" in line
    expected = {"missing": "no such file", "not-yaml": "not valid YAML", "no-context": "current-context"}
    assert expected[problem] in line


async def test_a_bot_started_while_the_api_server_is_down_checks_its_rights_once_it_is_back_and_releases(
    bots: Bots, control_plane: ClusterInfo, control_plane_process: ControlPlane, slack_sim: SlackSimulator
) -> None:
    """Start-up's rights check (rules reviews, then access reviews) waits out an API server that does
    not answer yet instead of failing, then the bot serves and releases as usual."""
    await asyncio.to_thread(control_plane_process.stop_component, "kube-apiserver")
    try:
        starting = asyncio.create_task(bots.start())
        await asyncio.sleep(3)  # the bot is up and asking a server that does not answer
        assert not starting.done()
    finally:
        await asyncio.to_thread(control_plane_process.start_component, "kube-apiserver")
    bot = await starting
    assert await readyz(bot) == (200, {"ready": True})
    await command(slack_sim, "alice", "hexo v2.0")
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    assert "v1.0 → v2.0" in card_text(card)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_readyz_follows_the_api_server(
    bots: Bots, control_plane_process: ControlPlane, slack_sim: SlackSimulator
) -> None:
    bot = await bots.start()
    assert await readyz(bot) == (200, {"ready": True})
    await asyncio.to_thread(control_plane_process.stop_component, "kube-apiserver")
    try:
        body = await until(lambda: readyz(bot), lambda status, _: status == 503)
        assert body["ready"] is False
        assert "Kubernetes API server has not answered since" in body["reasons"]["kubernetes"]
        assert set(body["reasons"]) == {"kubernetes"}
        assert (await readyz(bot))[0] == 503  # still, while it is down
    finally:
        await asyncio.to_thread(control_plane_process.start_component, "kube-apiserver")
    assert await until(lambda: readyz(bot), lambda status, _: status == 200) == {"ready": True}


async def test_readyz_follows_a_revoked_token_without_polling_slack(
    bots: Bots, slack_sim: SlackSimulator
) -> None:
    bot = await bots.start()
    await command(slack_sim, "alice", "status hexo")
    await wait_ephemeral(slack_sim, "alice", "Deployment")
    calls = len(slack_sim.calls)
    slack_sim.revoke_token()
    await command(slack_sim, "alice", "status hexo")  # its answer is refused: token_revoked
    body = await until(lambda: readyz(bot), lambda status, _: status == 503)
    assert "Slack refuses the bot token (token_revoked)" in body["reasons"]["slack"]
    slack_sim.revoke_token(False)
    assert (await readyz(bot))[0] == 503  # nothing told the bot yet: it does not ask Slack by itself
    assert all(c.method != "auth.test" for c in slack_sim.calls[calls:])
    await command(slack_sim, "alice", "status hexo")
    await wait_ephemeral(slack_sim, "alice", "Deployment")
    assert await until(lambda: readyz(bot), lambda status, _: status == 200) == {"ready": True}


async def test_readyz_follows_socket_mode_link_disabled(bots: Bots, slack_sim: SlackSimulator) -> None:
    bot = await bots.start(socket_mode=True)
    assert (await readyz(bot))[0] == 200
    await slack_sim.socket_mode.disconnect("link_disabled")
    body = await until(lambda: readyz(bot), lambda status, _: status == 503)
    assert "link_disabled" in body["reasons"]["socket_mode"]
    slack_sim.socket_mode.enable()
    # slack_sdk tries to connect again every ping interval (10 s)
    assert await until(lambda: readyz(bot), lambda status, _: status == 200, timeout=45) == {"ready": True}
    assert len(slack_sim.socket_mode.connections) == 1
