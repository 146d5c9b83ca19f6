"""`release-bot serve --socket-mode`: the same commands and clicks as over HTTP, delivered as Socket
Mode envelopes by the simulator to real bot processes, on the real control plane.

Covers: a slash command answered through the ack, a rolling release to success, a Promote click, a
`refresh_requested` disconnect followed by a reconnect and another command, and two replicas (two
connections) with each payload handled by exactly one of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackPlayer, SlackSimulator
from tests.fixtures.bot import (
    BotProcess,
    Bots,
    card_text,
    kubectl_json,
    pods_by_image,
    thread_with,
    wait_card,
)

pytestmark = pytest.mark.integration


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a bot's log (the bot logs JSON when its stderr is not a terminal)."""
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def envelopes_seen(bot: BotProcess) -> list[str]:
    return [
        ln["envelope_id"] for ln in log_lines(bot.log_path) if ln.get("message") == "socket mode envelope"
    ]


async def command(sim: SlackSimulator, user: str, text: str) -> dict[str, Any]:
    player = sim.player(transport="socket")
    try:
        answer = await player.command(user, text)
    finally:
        await player.close()
    assert answer.status == 200, answer
    return answer.json or {}


async def test_slash_command_is_answered_through_the_ack(bots: Bots, slack_sim: SlackSimulator) -> None:
    bot = await bots.start(socket_mode=True)
    assert slack_sim.bot_url is None  # nothing is posted over HTTP in this test

    answer = await command(slack_sim, "alice", "help")
    assert "/release" in answer["text"]
    shown = slack_sim.ephemerals(slack_sim.channels["releases"], slack_sim.users["alice"])
    assert shown[-1]["via"] == "command_response" and "/release" in shown[-1]["text"]
    (delivery,) = slack_sim.socket_mode.deliveries
    assert delivery.type == "slash_commands" and delivery.acked
    assert envelopes_seen(bot) == [delivery.envelope_id]

    # the HTTP side still serves health, readiness and metrics
    async with aiohttp.ClientSession() as http:
        for path in ("healthz", "readyz"):
            async with http.get(f"http://127.0.0.1:{bot.port}/{path}") as resp:
                assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{bot.port}/metrics") as resp:
            text = await resp.text()
    assert 'release_bot_ack_seconds_count{kind="slash_commands",mode="socket"} 1.0' in text
    # no signing secret in Socket Mode: nothing could verify an HTTP request, so none is accepted
    player = slack_sim.player(f"http://127.0.0.1:{bot.port}/slack/events")
    try:
        forged = await player.command("alice", "hexo v2.0")
    finally:
        await player.close()
    assert forged.status == 404

    log = bot.log_path.read_text()
    for secret in (slack_sim.app_token, slack_sim.bot_token, slack_sim.signing_secret):
        assert secret not in log


async def test_rolling_release_to_success_over_socket_mode(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start(socket_mode=True)
    await command(slack_sim, "alice", "hexo v2.0 --rolling")

    card = await wait_card(slack_sim, "Succeeded")
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.sword.org/nginx:v2.0"
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    text = card_text(card)
    assert "v1.0" in text and "v2.0" in text and "rolling" in text
    words = await thread_with(slack_sim, card, "now runs")
    assert "started releasing" in words


async def test_promote_click_over_socket_mode(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start(socket_mode=True)
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Promote")
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}

    player = slack_sim.player(transport="socket")
    try:
        assert await player.click("bob", card, "release:promote") == 200
    finally:
        await player.close()
    click = slack_sim.socket_mode.deliveries[-1]
    assert click.type == "interactive" and click.acked
    assert click.payload["actions"][0]["action_id"] == "release:promote"

    await wait_card(slack_sim, "Succeeded")
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_refresh_requested_then_the_bot_reconnects_and_answers(
    bots: Bots, slack_sim: SlackSimulator
) -> None:
    bot = await bots.start(socket_mode=True)
    assert "/release" in (await command(slack_sim, "alice", "help"))["text"]
    (before,) = slack_sim.socket_mode.connections

    assert await slack_sim.socket_mode.refresh() == [before.id]
    after = await slack_sim.wait_for(
        lambda: [c for c in slack_sim.socket_mode.connections if c.id != before.id] or None, timeout=30
    )
    assert len(after) == 1
    await slack_sim.wait_for(lambda: len(slack_sim.socket_mode.all_connections) == 1, timeout=30)
    assert len(slack_sim.calls_to("apps.connections.open")) == 2

    answer = await command(slack_sim, "bob", "help")
    assert "/release" in answer["text"]
    assert slack_sim.socket_mode.deliveries[-1].connection == after[0].id
    assert len(envelopes_seen(bot)) == 2


async def test_two_replicas_each_payload_is_handled_by_exactly_one(
    bots: Bots, slack_sim: SlackSimulator
) -> None:
    first = await bots.start(socket_mode=True)
    second = await bots.start(socket_mode=True)
    assert len(slack_sim.socket_mode.connections) == 2

    player: SlackPlayer = slack_sim.player(transport="socket")
    try:
        for n in range(6):
            answer = await player.command("alice", "help" if n % 2 else "apps")
            assert answer.status == 200
    finally:
        await player.close()

    deliveries = slack_sim.socket_mode.deliveries
    assert len(deliveries) == 6 and all(d.acked for d in deliveries)
    assert len({d.connection for d in deliveries}) == 2  # round robin used both connections
    seen_first, seen_second = envelopes_seen(first), envelopes_seen(second)
    assert sorted(seen_first + seen_second) == sorted(d.envelope_id for d in deliveries)
    assert not set(seen_first) & set(seen_second)
    assert len(seen_first) == len(seen_second) == 3
    channel, alice = slack_sim.channels["releases"], slack_sim.users["alice"]

    def answered(via: str) -> int:
        return len([m for m in slack_sim.ephemerals(channel, alice) if m["via"] == via])

    assert answered("command_response") == 3  # `help`: answered in the ack
    await slack_sim.wait_for(lambda: answered("chat.postEphemeral") >= 3)  # `apps`: answered after it
    assert answered("chat.postEphemeral") == 3

    # one replica goes away: every payload now reaches the other
    await first.stop()
    await slack_sim.wait_for(lambda: len(slack_sim.socket_mode.all_connections) == 1, timeout=30)
    assert "/release" in (await command(slack_sim, "bob", "help"))["text"]
    assert envelopes_seen(second)[-1] == slack_sim.socket_mode.deliveries[-1].envelope_id
