"""bot.slack.health against the Slack simulator (a real HTTP server on loopback): auth.test at
start-up refuses a bad token or a missing scope with a message that says what to do; the observer
counts every answer by Slack's code and tells readiness when Slack refuses the token, and when it
takes it again."""

from __future__ import annotations

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.response import HttpResponse

from bot.errors import ConfigError
from bot.manifest import needed_scopes
from bot.metrics import Metrics
from bot.slack.app import web_client
from bot.slack.health import Observer, SlackHealth, answer_code, verify
from sandbox.slack import SlackSimulator


def response(status: int, body: object = None, data: bytes | None = None) -> HttpResponse:
    return HttpResponse(status_code=status, headers={}, body=body, data=data)  # type: ignore[arg-type]


def test_answer_codes() -> None:
    assert answer_code(response(200, {"ok": True}), None) == "ok"
    assert answer_code(response(200, {"ok": False, "error": "not_in_channel"}), None) == "not_in_channel"
    assert answer_code(response(429, {"ok": False, "error": "ratelimited"}), None) == "ratelimited"
    assert answer_code(response(429), None) == "ratelimited"
    assert answer_code(response(503, data=b"<html>down</html>"), None) == "http_503"
    assert answer_code(response(200, data=b"ok"), None) == "ok"  # response_url's plain answer
    assert answer_code(response(404, data=b"used_url"), None) == "used_url"
    assert answer_code(response(200, data=b'{"ok": false, "error": "expired_url"}'), None) == "expired_url"
    assert answer_code(None, TimeoutError()) == "unreachable"


def test_health_follows_token_errors_and_recovers_on_the_next_good_answer() -> None:
    health = SlackHealth()
    assert health.reason() is None
    health.answered("ok")
    health.answered("token_revoked")
    reason = health.reason()
    assert reason is not None and "Slack refuses the bot token (token_revoked) since" in reason
    health.answered("ratelimited")  # says nothing about the token
    health.answered("unreachable")
    health.answered("http_502")
    assert health.reason() is not None
    health.answered("not_in_channel")  # Slack took the token to answer that
    assert health.reason() is None


async def test_verify_refuses_a_revoked_token(slack_sim: SlackSimulator) -> None:
    slack_sim.revoke_token()
    async with aiohttp.ClientSession() as session:
        client = web_client(slack_sim.bot_token, session, slack_sim.api_url)
        with pytest.raises(ConfigError) as refused:
            await verify(client, needed_scopes(usergroups=False))
    assert str(refused.value).startswith(
        "Slack refused SLACK_BOT_TOKEN (token_revoked): the token was revoked"
    )


async def test_verify_refuses_an_invalid_token(slack_sim: SlackSimulator) -> None:
    async with aiohttp.ClientSession() as session:
        client = web_client("xoxb-not-the-token", session, slack_sim.api_url)
        with pytest.raises(ConfigError, match=r"\(invalid_auth\): the token is not valid"):
            await verify(client, needed_scopes(usergroups=False))


async def test_verify_names_a_missing_scope_and_says_what_the_token_has(slack_sim: SlackSimulator) -> None:
    slack_sim.set_scopes(["commands", "usergroups:read"])
    async with aiohttp.ClientSession() as session:
        client = web_client(slack_sim.bot_token, session, slack_sim.api_url)
        with pytest.raises(ConfigError) as refused:
            await verify(client, needed_scopes(usergroups=True))
        message = str(refused.value)
        assert message.startswith("SLACK_BOT_TOKEN lacks the scope chat:write (chat:write: the release card")
        assert message.endswith("the token has: commands, usergroups:read")
        slack_sim.set_scopes(["chat:write", "commands"])
        with pytest.raises(ConfigError, match="lacks the scope usergroups:read"):
            await verify(client, needed_scopes(usergroups=True))
        identity = await verify(client, needed_scopes(usergroups=False))
    assert identity.user_id == slack_sim.bot_user_id
    assert identity.scopes == ("chat:write", "commands")


async def test_the_observer_counts_by_slacks_code_and_feeds_health(slack_sim: SlackSimulator) -> None:
    metrics, health = Metrics(), SlackHealth()
    async with aiohttp.ClientSession() as session:
        client = web_client(
            slack_sim.bot_token,
            session,
            slack_sim.api_url,
            observer=Observer(metrics, health, slack_sim.bot_token),
        )
        channel = slack_sim.channels["releases"]
        await client.chat_postMessage(channel=channel, text="hello")
        slack_sim.set_bot_membership(channel, False)
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel=channel, text="hello")
        slack_sim.fault("chat.postMessage", status=429)  # retried after Retry-After, then taken
        slack_sim.set_bot_membership(channel, True)
        await client.chat_postMessage(channel=channel, text="hello")
        slack_sim.revoke_token()
        with pytest.raises(SlackApiError):
            await client.chat_postMessage(channel=channel, text="hello")
        reason = health.reason()
        assert reason is not None and "token_revoked" in reason
        slack_sim.revoke_token(False)
        await client.auth_test()
        assert health.reason() is None

    def count(error: str, method: str = "chat.postMessage") -> float | None:
        return metrics.value("release_bot_slack_api_results_total", {"method": method, "error": error})

    assert count("ok") == 2
    assert count("not_in_channel") == 1
    assert count("ratelimited") == 1
    assert count("token_revoked") == 1
    assert count("ok", "auth.test") == 1


async def test_the_observer_ignores_answers_to_other_tokens(slack_sim: SlackSimulator) -> None:
    health = SlackHealth()
    async with aiohttp.ClientSession() as session:
        client = web_client(
            "xoxb-someone-else",
            session,
            slack_sim.api_url,
            observer=Observer(Metrics(), health, slack_sim.bot_token),
        )
        with pytest.raises(SlackApiError):
            await client.auth_test()
    assert health.reason() is None  # not the bot's token: its standing is unchanged
