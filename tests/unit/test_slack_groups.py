"""User-group lookups (bot.slack.listeners.Groups) against the Slack simulator: a failure is reported
with Slack's error and not cached; a success is cached; concurrent questions about one group share
one call."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.slack.app import web_client
from bot.slack.listeners import Groups
from sandbox.slack import SlackSimulator


async def test_a_failed_lookup_is_reported_and_asked_again(slack_sim: SlackSimulator) -> None:
    group, alice, bob = (
        slack_sim.usergroups["release-managers"],
        slack_sim.users["alice"],
        slack_sim.users["bob"],
    )
    async with aiohttp.ClientSession() as session:
        groups = Groups(web_client(slack_sim.bot_token, session, slack_sim.api_url))
        slack_sim.set_scopes(["chat:write", "commands"])
        failed = await groups.of(alice, [group])
        assert failed.groups == set() and failed.failed == {group: "missing_scope"}
        slack_sim.set_scopes(["chat:write", "commands", "usergroups:read"])
        found = await groups.of(alice, [group])  # not cached: asked again
        assert found.groups == {group} and found.failed == {}
        assert (await groups.of(bob, [group])).groups == set()  # cached: no call
        missing = await groups.of(alice, ["S0NOSUCHGROUP"])
        assert missing.failed == {"S0NOSUCHGROUP": "no_such_subteam"}
    assert [c.error for c in slack_sim.calls_to("usergroups.users.list")] == [
        "missing_scope",
        None,
        "no_such_subteam",
    ]


async def test_concurrent_questions_share_one_call(slack_sim: SlackSimulator) -> None:
    group, alice = slack_sim.usergroups["release-managers"], slack_sim.users["alice"]
    slack_sim.fault("usergroups.users.list", hang_seconds=0.2)  # slow enough for all of them to ask
    async with aiohttp.ClientSession() as session:
        groups = Groups(web_client(slack_sim.bot_token, session, slack_sim.api_url))
        answers = await asyncio.gather(*(groups.of(alice, [group]) for _ in range(10)))
    assert all(a.groups == {group} for a in answers)
    assert len(slack_sim.calls_to("usergroups.users.list")) == 1
