"""Every Slack error has a clear outcome, with the real bot process, the simulator and the real
control plane: a private answer the bot cannot post is delivered through the command's response_url
saying how to invite the bot; a user-group lookup that fails is said ("cannot check membership of
S…") instead of passing for a denial, and asked again next time; /metrics counts Slack's answers by
Slack's own code."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import BotProcess, Bots, card_of, command, kubectl, wait_card, wait_ephemeral

pytestmark = pytest.mark.integration


async def metrics_text(bot: BotProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{bot.port}/metrics") as resp:
        return await resp.text()


async def metrics_with(bot: BotProcess, line: str, timeout: float = 10.0) -> str:
    """/metrics once it shows `line`: the bot counts an answer just after the simulator sent it, and
    /metrics has nothing to wait on but asking again (as Prometheus does)."""
    async with asyncio.timeout(timeout):
        while line not in (text := await metrics_text(bot)):
            await asyncio.sleep(0.1)
    return text


async def test_an_answer_where_the_bot_is_not_says_to_invite_it(
    bots: Bots, slack_sim: SlackSimulator
) -> None:
    bot = await bots.start()
    channel = slack_sim.channels["releases"]
    slack_sim.set_bot_membership(channel, False)
    await command(slack_sim, "alice", "status hexo")
    text = await wait_ephemeral(slack_sim, "alice", "Deployment")
    shown = next(m for m in slack_sim.ephemerals(channel, slack_sim.users["alice"]) if m["text"] == text)
    assert shown["via"] == "response_url"  # chat.postEphemeral was refused: not_in_channel
    assert f"invite <@{slack_sim.bot_user_id}> to <#{channel}>" in text
    assert "/invite @release-bot" in text
    assert slack_sim.calls_to("chat.postEphemeral")[-1].error == "not_in_channel"

    # from a private channel the bot was never added to: it cannot even see it
    private = slack_sim.add_private_channel("secret", ["alice"])
    player = slack_sim.player()
    try:
        assert (await player.command("alice", "status hexo", channel=private)).status == 200
    finally:
        await player.close()

    def told() -> str | None:
        for m in slack_sim.ephemerals(private, slack_sim.users["alice"]):
            if "cannot see this conversation" in m.get("text", ""):
                return str(m["text"])
        return None

    assert f"invite <@{slack_sim.bot_user_id}> to <#{private}>" in await slack_sim.wait_for(told, timeout=20)

    text = await metrics_with(
        bot, 'release_bot_slack_api_results_total{error="ok",method="response_url"} 2.0'
    )
    assert (
        'release_bot_slack_api_results_total{error="not_in_channel",method="chat.postEphemeral"} 1.0' in text
    )
    assert (
        'release_bot_slack_api_results_total{error="channel_not_found",method="chat.postEphemeral"} 1.0'
        in text
    )
    assert 'release_bot_slack_api_results_total{error="ok",method="auth.test"}' in text


async def test_a_failed_group_lookup_is_said_and_not_cached(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    group = slack_sim.usergroups["release-managers"]  # alice is a member
    bot = await bots.start(extra={"permissions": {"release": {"usergroups": [group]}}})
    slack_sim.fault("usergroups.users.list", error="internal_error")
    await command(slack_sim, "alice", "hexo v2.0")
    text = await wait_ephemeral(slack_sim, "alice", "cannot check membership")
    assert f"cannot check membership of {group}: internal_error" in text
    assert "not allowed" not in text  # not a silent denial
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None
    events = kubectl(
        control_plane, "-n", bots.namespace, "get", "events", "--field-selector", "involvedObject.name=hexo"
    )
    assert "cannot check membership" in events  # the refusal is in the audit trail too

    # the failure was not cached: the next command asks Slack again, and alice may release
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=90)
    lookups = slack_sim.calls_to("usergroups.users.list")
    assert [c.error for c in lookups] == ["internal_error", None]
    text = await metrics_text(bot)
    assert (
        'release_bot_slack_api_results_total{error="internal_error",method="usergroups.users.list"} 1.0'
        in text
    )


async def test_slack_answers_are_counted_by_slacks_code(bots: Bots, slack_sim: SlackSimulator) -> None:
    bot = await bots.start()
    slack_sim.fault("chat.update", status=429)  # retried after its Retry-After
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=90)
    text = await metrics_text(bot)
    assert 'release_bot_slack_api_results_total{error="ratelimited",method="chat.update"} 1.0' in text
    assert 'release_bot_slack_api_results_total{error="ok",method="chat.update"}' in text
    assert 'release_bot_slack_api_results_total{error="ok",method="chat.postMessage"}' in text
    # the HTTP view of the same calls stays: one 429, the rest 200
    assert 'release_bot_slack_api_calls_total{method="chat.update",status="429"} 1.0' in text
