"""The Slack simulator against Slack's own client libraries, over real HTTP on loopback.

slack_sdk's AsyncWebClient (one aiohttp session, `base_url=sim.api_url`) calls the Web API;
slack_sdk's SignatureVerifier and a slack_bolt AsyncApp served by aiohttp receive what the
SlackPlayer sends. If these pass, the bot's own Slack code meets the simulator exactly as it would
meet Slack.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackPlayer, SlackSimulator

pytestmark = pytest.mark.integration

CARD_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "Release"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "canary at 10%"}},
    {
        "type": "actions",
        "block_id": "decide",
        "elements": [
            {
                "type": "button",
                "action_id": "promote",
                "text": {"type": "plain_text", "text": "Promote"},
                "style": "primary",
                "value": "release-1",
            },
            {
                "type": "button",
                "action_id": "rollback",
                "text": {"type": "plain_text", "text": "Rollback"},
                "style": "danger",
                "value": "release-1",
                "confirm": {
                    "title": {"type": "plain_text", "text": "Roll back?"},
                    "text": {"type": "mrkdwn", "text": "This stops the canary."},
                    "confirm": {"type": "plain_text", "text": "Roll back"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                    "style": "danger",
                },
            },
        ],
    },
]


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


# What these tests' client reads besides what the bot's manifest asks for (history, channel and
# user details): the token gets these scopes too.
READER_SCOPES = ("channels:history", "channels:read", "users:read")


@pytest_asyncio.fixture(loop_scope="session")
async def web_client(slack_sim: SlackSimulator) -> AsyncIterator[AsyncWebClient]:
    slack_sim.set_scopes([*slack_sim.scopes, *READER_SCOPES])
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)


def make_bolt_app(sim: SlackSimulator, client: AsyncWebClient) -> AsyncApp:
    """A tiny release bot: /release acks, posts a card and a thread; Promote updates the card."""
    app = AsyncApp(client=client, signing_secret=sim.signing_secret)

    @app.command("/release")
    async def release(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack(f"Starting release {command['text']}")
        card = await client.chat_postMessage(
            channel=command["channel_id"], text="Release", blocks=CARD_BLOCKS
        )
        await client.chat_postMessage(
            channel=command["channel_id"], thread_ts=card["ts"], text="canary started"
        )

    @app.action("promote")
    async def promote(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"promoted by <@{body['user']['id']}>",
            blocks=[
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"promoted by <@{body['user']['id']}>"},
                }
            ],
        )

    @app.action("rollback")
    async def rollback(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text=f"rolled back by <@{body['user']['id']}>",
            blocks=[],
        )

    @app.event("app_mention")
    async def mention(ack: Any) -> None:
        await ack()

    return app


@pytest_asyncio.fixture(loop_scope="session")
async def bolt_bot(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> AsyncIterator[str]:
    """The Bolt app on a loopback port; `slack_sim.bot_url` points at it."""
    app = make_bolt_app(slack_sim, web_client)
    runner, base = await serve(app.web_app(path="/slack/events"))
    slack_sim.bot_url = f"{base}/slack/events"
    try:
        yield slack_sim.bot_url
    finally:
        await runner.cleanup()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A raw HTTP endpoint recording exactly what arrives, answering from a script."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver(slack_sim: SlackSimulator) -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def handle(request: web.Request) -> web.Response:
        rec.requests.append(Received(dict(request.headers), await request.read()))
        rec.arrived.set()
        status = rec.answers.pop(0) if rec.answers else 200
        return web.Response(status=status, text="")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner, base = await serve(app)
    rec.url = f"{base}/hook"
    slack_sim.bot_url = rec.url
    try:
        yield rec
    finally:
        await runner.cleanup()


def raw_url(sim: SlackSimulator, method: str) -> str:
    return sim.api_url + method


# ---- Web API: encodings, auth, shapes --------------------------------------------------------


async def test_auth_test_and_the_encodings_slack_accepts(
    slack_sim: SlackSimulator, web_client: AsyncWebClient
) -> None:
    me = await web_client.auth_test()
    assert me["user_id"] == slack_sim.bot_user_id
    assert me["bot_id"] == slack_sim.bot_id
    channel = slack_sim.channels["releases"]
    async with aiohttp.ClientSession() as s:
        form = {"token": slack_sim.bot_token, "channel": channel, "text": "form body"}
        async with s.post(raw_url(slack_sim, "chat.postMessage"), data=form) as r:
            assert (await r.json())["ok"] is True
        query = {"token": slack_sim.bot_token, "channel": channel}
        async with s.get(raw_url(slack_sim, "conversations.history"), params=query) as r:
            assert [m["text"] for m in (await r.json())["messages"]] == ["form body"]
        async with s.post(raw_url(slack_sim, "auth.test")) as r:
            assert await r.json() == {"ok": False, "error": "not_authed"}
        async with s.post(
            raw_url(slack_sim, "auth.test"), headers={"Authorization": "Bearer xoxb-nope"}
        ) as r:
            assert await r.json() == {"ok": False, "error": "invalid_auth"}
        # Slack ignores a token inside a JSON body: it must come in the Authorization header.
        async with s.post(raw_url(slack_sim, "auth.test"), json={"token": slack_sim.bot_token}) as r:
            assert (await r.json())["error"] == "not_authed"
        async with s.post(raw_url(slack_sim, "chat.fly"), data={"token": slack_sim.bot_token}) as r:
            assert (await r.json())["error"] == "unknown_method"


async def test_thread_read_back_through_conversations_replies(
    slack_sim: SlackSimulator, web_client: AsyncWebClient
) -> None:
    channel = slack_sim.channels["releases"]
    root = await web_client.chat_postMessage(channel=channel, text="card", blocks=CARD_BLOCKS)
    other = await web_client.chat_postMessage(channel=channel, text="another root")
    replies = [
        await web_client.chat_postMessage(channel=channel, thread_ts=root["ts"], text=f"step {i}")
        for i in range(3)
    ]
    thread = await web_client.conversations_replies(channel=channel, ts=root["ts"])
    assert [m["ts"] for m in thread["messages"]] == [root["ts"], *(r["ts"] for r in replies)]
    head = thread["messages"][0]
    assert head["reply_count"] == 3
    assert head["reply_users"] == [slack_sim.bot_user_id]
    assert head["latest_reply"] == replies[-1]["ts"]
    assert all(m["thread_ts"] == root["ts"] for m in thread["messages"])
    history = await web_client.conversations_history(channel=channel)
    assert [m["ts"] for m in history["messages"]] == [other["ts"], root["ts"]]
    assert slack_sim.history(channel) == history["messages"]
    assert slack_sim.replies(channel, root["ts"]) == thread["messages"]
    stamps = [root["ts"], other["ts"], *(r["ts"] for r in replies)]
    assert stamps == sorted(stamps, key=float)
    assert len(set(stamps)) == len(stamps)


async def test_chat_update_seen_in_history(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel = slack_sim.channels["releases"]
    posted = await web_client.chat_postMessage(channel=channel, text="canary 10%", blocks=CARD_BLOCKS)
    updated = await web_client.chat_update(
        channel=channel, ts=posted["ts"], text="canary 50%", blocks=CARD_BLOCKS[:2]
    )
    assert updated["ts"] == posted["ts"]
    (msg,) = (await web_client.conversations_history(channel=channel))["messages"]
    assert msg["text"] == "canary 50%"
    assert len(msg["blocks"]) == 2
    assert msg["edited"]["user"] == slack_sim.bot_user_id
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_update(channel=channel, ts="1700000000.000001", text="x")
    assert info.value.response["error"] == "message_not_found"
    user_msg = slack_sim.post_user_message("releases", "alice", "hi")
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_update(channel=channel, ts=user_msg["ts"], text="x")
    assert info.value.response["error"] == "cant_update_message"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_over_limit_messages_are_rejected(
    slack_sim: SlackSimulator, web_client: AsyncWebClient
) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.rate_limits = False  # rejected calls count too; this test makes many in one second
    cases: list[tuple[dict[str, Any], str]] = [
        ({"text": "x" * 40_001}, "msg_too_long"),
        ({"blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}, "invalid_blocks"),
        (
            {"blocks": [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]},
            "invalid_blocks",
        ),
        ({}, "no_text"),
    ]
    for kwargs, error in cases:
        with pytest.raises(SlackApiError) as info:
            await web_client.chat_postMessage(channel=channel, **kwargs)
        assert info.value.response["error"] == error, kwargs
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=channel, blocks=[{"type": "divider"}] * 51)
    assert "no more than 50 items [json-pointer:/blocks]" in info.value.response["errors"][0]
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel="C0NOPE", text="x")
    assert info.value.response["error"] == "channel_not_found"
    assert slack_sim.history(channel) == []


async def test_ephemerals_are_per_user_and_not_in_history(
    slack_sim: SlackSimulator, web_client: AsyncWebClient
) -> None:
    channel, alice, bob = slack_sim.channels["releases"], slack_sim.users["alice"], slack_sim.users["bob"]
    await web_client.chat_postEphemeral(channel=channel, user=alice, text="only alice")
    assert (await web_client.conversations_history(channel=channel))["messages"] == []
    assert [m["text"] for m in slack_sim.ephemerals(channel, alice)] == ["only alice"]
    assert slack_sim.ephemerals(channel, bob) == []


async def test_directory_methods(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel, alice = slack_sim.channels["releases"], slack_sim.users["alice"]
    assert (await web_client.users_info(user=alice))["user"]["name"] == "alice"
    group = slack_sim.usergroups["release-managers"]
    assert (await web_client.usergroups_users_list(usergroup=group))["users"] == [alice]
    assert (await web_client.conversations_info(channel=channel))["channel"]["name"] == "releases"
    posted = await web_client.chat_postMessage(channel=channel, text="x")
    link = await web_client.chat_getPermalink(channel=channel, message_ts=posted["ts"])
    assert link["permalink"].endswith(f"/archives/{channel}/p{posted['ts'].replace('.', '')}")
    await web_client.chat_delete(channel=channel, ts=posted["ts"])
    assert slack_sim.history(channel) == []


# ---- rate limits and faults ------------------------------------------------------------------


async def test_429_is_retried_by_slack_sdk(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.fault("chat.postMessage", status=429)
    retrying = AsyncWebClient(
        token=slack_sim.bot_token,
        base_url=slack_sim.api_url,
        session=web_client.session,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    posted = await retrying.chat_postMessage(channel=channel, text="eventually")
    assert posted["ok"] is True
    calls = slack_sim.calls_to("chat.postMessage")
    assert [(c.status, c.error) for c in calls] == [(429, "ratelimited"), (200, None)]


async def test_real_rate_limit_per_channel(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.rate_limiter.post_message_per_second = 0.001  # no refill during the test
    for i in range(slack_sim.rate_limiter.post_message_burst):
        await web_client.chat_postMessage(channel=channel, text=f"burst {i}")
    with pytest.raises(SlackApiError) as info:
        await web_client.chat_postMessage(channel=channel, text="one too many")
    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    assert int(info.value.response.headers["Retry-After"]) >= 1
    slack_sim.rate_limits = False
    await web_client.chat_postMessage(channel=channel, text="limits off")


async def test_scripted_faults(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel = slack_sim.channels["releases"]
    slack_sim.fault("chat.update", times=2, error="internal_error")
    slack_sim.fault("conversations.info", status=503)
    posted = await web_client.chat_postMessage(channel=channel, text="x")
    for _ in range(2):
        with pytest.raises(SlackApiError) as info:
            await web_client.chat_update(channel=channel, ts=posted["ts"], text="y")
        assert info.value.response["error"] == "internal_error"
    await web_client.chat_update(channel=channel, ts=posted["ts"], text="y")
    with pytest.raises(SlackApiError) as info:
        await web_client.conversations_info(channel=channel)
    assert info.value.response.status_code == 503
    slack_sim.fault("users.info", hang=True)
    # With a shared session, slack_sdk's `timeout=` is not applied: the session's timeout is.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        impatient = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)
        with pytest.raises(TimeoutError):
            await impatient.users_info(user=slack_sim.users["bob"])
    assert (await web_client.users_info(user=slack_sim.users["bob"]))["ok"] is True


async def test_wait_for_raises_at_the_deadline(slack_sim: SlackSimulator) -> None:
    with pytest.raises(TimeoutError, match="not met within"):
        await slack_sim.wait_for(lambda: None, timeout=0.2)


# ---- the player towards a raw endpoint: exact wire format ----------------------------------


async def test_slash_command_wire_format(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, receiver: Receiver
) -> None:
    response = await slack_player.command("alice", "hexo v2.0 --canary & <b>")
    assert response.status == 200
    (req,) = receiver.requests
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    verifier = SignatureVerifier(slack_sim.signing_secret)
    assert verifier.is_valid_request(req.body, req.headers)
    fields = urllib.parse.parse_qsl(req.body.decode(), strict_parsing=True)
    names = [k for k, _ in fields]
    assert names == [
        "token",
        "team_id",
        "team_domain",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    ]
    form = dict(fields)
    assert form["text"] == "hexo v2.0 --canary &amp; &lt;b&gt;"
    assert form["user_id"] == slack_sim.users["alice"]
    assert form["channel_id"] == slack_sim.channels["releases"]
    assert b"+" in req.body  # spaces are form-encoded as Slack does
    # The response_url is live: answering through it shows alice an ephemeral.
    async with aiohttp.ClientSession() as s, s.post(form["response_url"], json={"text": "later"}) as r:
        assert r.status == 200
    assert [m["text"] for m in slack_sim.ephemerals("releases", "alice")] == ["later"]


async def test_click_response_url_replaces_the_message_and_wears_out(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, receiver: Receiver, web_client: AsyncWebClient
) -> None:
    channel = slack_sim.channels["releases"]
    card = await web_client.chat_postMessage(channel=channel, text="card", blocks=CARD_BLOCKS)
    (shown,) = slack_sim.history(channel)
    assert await slack_player.click("bob", shown, "rollback") == 200
    payload = json.loads(dict(urllib.parse.parse_qsl(receiver.requests[0].body.decode()))["payload"])
    assert payload["type"] == "block_actions"
    assert payload["message"]["ts"] == card["ts"]
    assert payload["user"]["id"] == slack_sim.users["bob"]
    async with aiohttp.ClientSession() as s:
        async with s.post(
            payload["response_url"], json={"replace_original": True, "text": "rolled back"}
        ) as r:
            assert r.status == 200
        assert [m["text"] for m in slack_sim.history(channel)] == ["rolled back"]
        for _ in range(4):
            async with s.post(payload["response_url"], json={"text": "more"}) as r:
                assert r.status == 200
        async with s.post(payload["response_url"], json={"text": "sixth"}) as r:
            assert r.status == 404
            assert (await r.json())["error"] == "used_url"
    assert len(slack_sim.ephemerals(channel, slack_sim.users["bob"])) == 4


async def test_stale_signature_is_detected_by_the_verifier(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, receiver: Receiver
) -> None:
    slack_player.clock = lambda: time.time() - 600
    await slack_player.command("bob", "hexo v1")
    req = receiver.requests[0]
    assert not SignatureVerifier(slack_sim.signing_secret).is_valid_request(req.body, req.headers)
    shifted = SignatureVerifier(slack_sim.signing_secret, clock=_Clock(time.time() - 600))
    assert shifted.is_valid_request(req.body, req.headers)


class _Clock(Clock):
    def __init__(self, fixed: float) -> None:
        self.fixed = fixed

    def now(self) -> float:
        return self.fixed


async def test_events_are_retried_with_slack_headers(slack_player: SlackPlayer, receiver: Receiver) -> None:
    receiver.answers = [500, 500]
    deliveries = await slack_player.event(
        {"type": "app_mention", "text": "hi", "user": "U1", "channel": "C1"}
    )
    assert [d.response.status for d in deliveries] == [500, 500, 200]
    assert [r.headers.get("X-Slack-Retry-Num") for r in receiver.requests] == [None, "1", "2"]
    assert [r.headers.get("X-Slack-Retry-Reason") for r in receiver.requests] == [
        None,
        "http_error",
        "http_error",
    ]
    ids = {json.loads(r.body)["event_id"] for r in receiver.requests}
    assert len(ids) == 1


# ---- the player towards a real Bolt app --------------------------------------------------------


async def test_slash_command_acked_and_answered(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, bolt_bot: str
) -> None:
    channel = slack_sim.channels["releases"]
    response = await slack_player.command("alice", "hexo v2.0 --canary")
    assert response.status == 200
    assert response.text == "Starting release hexo v2.0 --canary"
    (ack,) = slack_sim.ephemerals(channel, slack_sim.users["alice"])
    assert ack["text"] == "Starting release hexo v2.0 --canary"
    assert ack["via"] == "command_response"

    def card_with_thread() -> dict[str, Any] | None:
        roots = slack_sim.history(channel)
        return roots[0] if roots and roots[0].get("reply_count") == 1 else None

    card = await slack_sim.wait_for(card_with_thread, timeout=10)
    assert [m["text"] for m in slack_sim.replies(channel, card["ts"])] == ["Release", "canary started"]
    assert slack_sim.calls_to("auth.test")  # Bolt authorised lazily against the simulator


async def test_click_round_trip(slack_sim: SlackSimulator, slack_player: SlackPlayer, bolt_bot: str) -> None:
    channel = slack_sim.channels["releases"]
    await slack_player.command("alice", "hexo v2.0")
    card = await slack_sim.wait_for(lambda: next(iter(slack_sim.history(channel)), None), timeout=10)
    payload = slack_player.click_payload("bob", card, "promote")
    assert payload["actions"][0]["block_id"] == "decide"
    assert payload["actions"][0]["value"] == "release-1"
    assert payload["container"] == {
        "type": "message",
        "message_ts": card["ts"],
        "channel_id": channel,
        "is_ephemeral": False,
    }
    assert await slack_player.click("bob", card, "promote") == 200
    bob = slack_sim.users["bob"]
    updated = await slack_sim.wait_for(
        lambda: next((m for m in slack_sim.history(channel) if m.get("edited")), None), timeout=10
    )
    assert updated["ts"] == card["ts"]
    assert updated["text"] == f"promoted by <@{bob}>"
    with pytest.raises(LookupError, match="no element with action_id 'nope'"):
        await slack_player.click("bob", card, "nope")


async def test_bad_and_stale_signatures_get_401_from_bolt(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, bolt_bot: str
) -> None:
    slack_player.signing_secret = "not-the-secret"
    assert (await slack_player.command("mallory", "hexo v6.6.6")).status == 401
    slack_player.signing_secret = slack_sim.signing_secret
    slack_player.clock = lambda: time.time() - 600
    assert (await slack_player.command("mallory", "hexo v6.6.6")).status == 401
    errors = [m for m in slack_sim.ephemerals("releases", "mallory") if m["via"] == "slack_error"]
    assert errors[0]["text"] == '/release failed with the error "http_service_error"'
    slack_player.clock = time.time
    verified = await slack_player.url_verification("abc")
    assert verified.json == {"challenge": "abc"}  # Slack accepts the challenge as plain text or JSON
    deliveries = await slack_player.event(
        {"type": "app_mention", "text": "hi", "user": "U1", "channel": "C1"}
    )
    assert [d.response.status for d in deliveries] == [200]


async def test_read_back_json_endpoints(slack_sim: SlackSimulator, web_client: AsyncWebClient) -> None:
    channel = slack_sim.channels["releases"]
    root = await web_client.chat_postMessage(channel=channel, text="root")
    await web_client.chat_postMessage(channel=channel, text="reply", thread_ts=root["ts"])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{slack_sim.base_url}sim/channels/{channel}/history") as r:
            assert (await r.json())["messages"] == slack_sim.history(channel)
        async with s.get(f"{slack_sim.base_url}sim/channels/{channel}/replies/{root['ts']}") as r:
            assert (await r.json())["messages"] == slack_sim.replies(channel, root["ts"])
        async with s.get(f"{slack_sim.base_url}sim/calls") as r:
            methods = [c["method"] for c in (await r.json())["calls"]]
            assert methods == ["chat.postMessage", "chat.postMessage"]


async def test_cli_writes_json_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    info_file = tmp_path / "slack.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.slack.cli",
        "--json-file",
        str(info_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not lines or "Ctrl-C" not in lines[-1]:
                line = (await proc.stdout.readline()).decode()
                assert line, f"slack-sim exited early: {lines}"
                lines.append(line)
        info = json.loads(info_file.read_text())
        assert set(info) == {"api_url", "page_url", "bot_token", "signing_secret", "channels", "users"}
        assert info["api_url"].startswith("http://127.0.0.1:")
        assert info["api_url"].endswith("/api/")
        assert any(info["page_url"] in line for line in lines)
        async with aiohttp.ClientSession() as s:
            client = AsyncWebClient(token=info["bot_token"], base_url=info["api_url"], session=s)
            assert (await client.auth_test())["ok"] is True
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(30):
            code = await proc.wait()
    assert code == 0
