"""The real bot (`release-bot serve`, a process of its own) against the simulator's stricter rules:
slash commands from a DM and from a private channel the bot is not in, a token installed without a
scope it needs, and an org-wide install. Real control plane, the guide's hexo app, loopback only."""

from __future__ import annotations

from typing import Any

import pytest

from bot.manifest import BOT_SCOPES
from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, command, kubectl_json, wait_card, wait_record

pytestmark = pytest.mark.integration

V1 = "registry.sword.org/nginx:v1.0"


async def told(sim: SlackSimulator, channel: str, user: str, words: str, timeout: float = 30) -> str:
    """What `user` was shown privately in `channel` containing `words`."""

    def seen() -> str | None:
        return next((m["text"] for m in sim.ephemerals(channel, user) if words in m.get("text", "")), None)

    return await sim.wait_for(seen, timeout=timeout)


async def run_in(sim: SlackSimulator, user: str, text: str, channel: str) -> None:
    player = sim.player()
    try:
        assert (await player.command(user, text, channel=channel)).status == 200
    finally:
        await player.close()


async def test_a_release_asked_from_a_dm_or_a_private_channel_ends_untouched_and_says_why(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    before = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    await bots.start()
    for channel in (slack_sim.open_dm("alice", "bob"), slack_sim.add_private_channel("ops", ["alice"])):
        await run_in(slack_sim, "alice", "hexo v2.0", channel)
        text = await told(slack_sim, channel, "alice", "channel_not_found")
        assert "nothing was changed" in text

        def aborted_here(r: dict[str, Any], c: str = channel) -> bool:
            return bool(r["phase"] == "aborted" and r["channel_id"] == c)

        await wait_record(control_plane, ns, aborted_here)
        # A private answer cannot be posted there either: it came through the response_url.
        (shown,) = [m for m in slack_sim.ephemerals(channel, "alice") if "channel_not_found" in m["text"]]
        assert shown["via"] == "response_url"
    refused = [c for c in slack_sim.calls_to("chat.postMessage") if c.error == "channel_not_found"]
    assert len(refused) == 2
    after = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == V1


async def test_a_token_without_chat_write_ends_the_release_untouched(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    slack_sim.set_scopes([s for s in BOT_SCOPES if s != "chat:write"])
    await command(slack_sim, "alice", "hexo v2.0")
    releases = slack_sim.channels["releases"]
    text = await told(slack_sim, releases, "alice", "missing_scope")
    assert "nothing was changed" in text
    record = await wait_record(control_plane, ns, lambda r: r["phase"] == "aborted")
    assert "missing_scope" in record["reason"]
    (post, *_) = slack_sim.calls_to("chat.postMessage")
    assert post.error == "missing_scope"


async def test_an_org_wide_install_releases_like_any_other(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    slack_sim.enterprise_install = True
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=120)
    assert [c.ok for c in slack_sim.calls_to("auth.test")] == [True]
    assert all(c.error != "team_not_found" for c in slack_sim.calls)
