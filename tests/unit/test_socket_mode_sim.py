"""The simulator's Socket Mode: apps.connections.open, the envelope protocol (hello, envelopes, acks,
refresh, the 10-connection limit, one connection per payload), and the SlackPlayer over it.

Driven by raw aiohttp WebSockets (to see the protocol itself) and by the bot's own `SocketMode` on
slack_sdk's SocketModeClient with a small Bolt app (to see that Slack's client library accepts it).
Loopback only, no cluster: marked integration because it runs the simulator.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.slack.socket_mode import SocketMode
from sandbox.slack import SlackSimulator

T = TypeVar("T")

pytestmark = pytest.mark.integration


async def open_url(sim: SlackSimulator, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(sim.api_url + "apps.connections.open", headers=headers) as resp,
    ):
        body: dict[str, Any] = await resp.json()
        return body


class RawClient:
    """A bare WebSocket client of the simulator: what it received, and acks on demand."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name="test:raw-socket-reader")

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self.messages.put(json.loads(msg.data))

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            return await self.messages.get()

    async def ack(self, envelope_id: str, payload: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"envelope_id": envelope_id}
        if payload is not None:
            body["payload"] = payload
        await self.ws.send_str(json.dumps(body))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@asynccontextmanager
async def raw_clients(sim: SlackSimulator, n: int) -> AsyncIterator[list[RawClient]]:
    async with aiohttp.ClientSession() as http:
        clients: list[RawClient] = []
        try:
            for _ in range(n):
                url = (await open_url(sim, sim.app_token))["url"]
                clients.append(RawClient(await http.ws_connect(url)))
                hello = await clients[-1].next()
                assert hello["type"] == "hello"
            yield clients
        finally:
            for c in clients:
                await c.close()


async def answer_commands(client: RawClient, text: str) -> None:
    """Ack every slash command envelope with `text` as the ephemeral answer."""
    while True:
        env = await client.messages.get()
        if env.get("type") == "slash_commands":
            await client.ack(env["envelope_id"], {"text": f"{text}: {env['payload']['text']}"})


# ---- apps.connections.open -------------------------------------------------------------------------


async def test_connections_open_takes_only_the_app_token(slack_sim: SlackSimulator) -> None:
    assert slack_sim.app_token.startswith("xapp-1-" + slack_sim.app_id)
    ok = await open_url(slack_sim, slack_sim.app_token)
    assert ok["ok"] is True
    assert ok["url"].startswith(slack_sim.base_url.replace("http://", "ws://") + "link/?ticket=")
    assert (await open_url(slack_sim, slack_sim.bot_token))["error"] == "not_allowed_token_type"
    assert (await open_url(slack_sim, "xapp-1-A0-nope"))["error"] == "invalid_auth"
    assert (await open_url(slack_sim, None))["error"] == "not_authed"


async def test_app_token_cannot_call_bot_methods(slack_sim: SlackSimulator) -> None:
    client = AsyncWebClient(token=slack_sim.app_token, base_url=slack_sim.api_url)
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="releases", text="hi")
    assert e.value.response["error"] == "not_allowed_token_type"
    opened = await client.apps_connections_open(app_token=slack_sim.app_token)
    assert opened["ok"]
    assert "token" not in json.dumps(slack_sim.calls_to("apps.connections.open")[-1].params)


async def test_ticket_is_single_use(slack_sim: SlackSimulator) -> None:
    url = (await open_url(slack_sim, slack_sim.app_token))["url"]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        assert (await ws.receive_json())["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await http.ws_connect(url)
        assert e.value.status == 401
        await ws.close()


# ---- envelopes and acks ----------------------------------------------------------------------------


async def test_slash_command_envelope_and_ack_payload_shown_as_ephemeral(slack_sim: SlackSimulator) -> None:
    player = slack_sim.player(transport="socket")
    async with raw_clients(slack_sim, 1) as (client,):
        sent = asyncio.create_task(player.command("alice", "status hexo <now> & then"))
        env = await client.next()
        assert env["type"] == "slash_commands"
        assert env["accepts_response_payload"] is True
        assert env["payload"]["command"] == "/release"
        assert env["payload"]["text"] == "status hexo &lt;now&gt; &amp; then"  # escaped as over HTTP
        assert env["payload"]["user_id"] == slack_sim.users["alice"]
        await client.ack(env["envelope_id"], {"text": "hexo runs v1.0"})
        response = await sent
    assert response.status == 200 and response.json == {"text": "hexo runs v1.0"}
    shown = slack_sim.ephemerals(slack_sim.channels["releases"], slack_sim.users["alice"])
    assert [(m["text"], m["via"]) for m in shown] == [("hexo runs v1.0", "command_response")]
    delivery = slack_sim.socket_mode.deliveries[-1]
    assert delivery.acked and delivery.connection == delivery.acked_on
    await player.close()


async def test_empty_ack_shows_nothing_and_no_ack_is_operation_timeout(slack_sim: SlackSimulator) -> None:
    player = slack_sim.player(transport="socket")
    player.ack_timeout = 0.3  # Slack waits 3 s; the test need not
    channel, alice = slack_sim.channels["releases"], slack_sim.users["alice"]
    async with raw_clients(slack_sim, 1) as (client,):
        sent = asyncio.create_task(player.command("alice", "help"))
        await client.ack((await client.next())["envelope_id"])
        assert (await sent).status == 200
        assert slack_sim.ephemerals(channel, alice) == []
        ignored = await player.command("alice", "help")
        assert ignored.timed_out
    assert (
        slack_sim.ephemerals(channel, alice)[-1]["text"]
        == '/release failed with the error "operation_timeout"'
    )
    await player.close()


async def test_no_connection_is_dispatch_failed(slack_sim: SlackSimulator) -> None:
    player = slack_sim.player(transport="socket")
    response = await player.command("alice", "help")
    assert response.status == 0 and not response.timed_out
    shown = slack_sim.ephemerals(slack_sim.channels["releases"], slack_sim.users["alice"])
    assert shown[-1]["text"] == '/release failed with the error "dispatch_failed"'
    await player.close()


async def test_click_and_event_envelopes(slack_sim: SlackSimulator) -> None:
    channel = slack_sim.channels["releases"]
    msg = slack_sim.workspace.add_message(
        slack_sim.workspace.channel(channel),
        {
            "user": slack_sim.bot_user_id,
            "text": "card",
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "b1",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "promote",
                            "text": {"type": "plain_text", "text": "Promote"},
                            "value": "hexo",
                        }
                    ],
                }
            ],
        },
    )
    player = slack_sim.player(transport="socket")
    player.ack_timeout = 0.3
    async with raw_clients(slack_sim, 1) as (client,):
        clicked = asyncio.create_task(player.click("bob", slack_sim.history(channel)[0], "promote"))
        env = await client.next()
        assert env["type"] == "interactive" and env["accepts_response_payload"] is False
        assert env["payload"]["type"] == "block_actions"
        assert env["payload"]["actions"][0]["action_id"] == "promote"
        assert env["payload"]["message"]["ts"] == msg["ts"]
        await client.ack(env["envelope_id"])
        assert await clicked == 200

        # Events API: not acked in time -> retried with retry_attempt/retry_reason
        event = {"type": "app_mention", "user": slack_sim.users["alice"], "text": "hi", "channel": channel}
        delivered = asyncio.create_task(player.event(event))
        first = await client.next()
        assert first["type"] == "events_api" and first["retry_attempt"] == 0
        assert first["payload"]["type"] == "event_callback"
        second = await client.next()
        assert second["retry_attempt"] == 1 and second["retry_reason"] == "http_timeout"
        assert second["payload"]["event_id"] == first["payload"]["event_id"]
        await client.ack(second["envelope_id"])
        attempts = await delivered
    assert [a.response.status for a in attempts] == [0, 200]
    await player.close()


# ---- several connections, refresh, the limit ------------------------------------------------------


async def test_each_payload_goes_to_exactly_one_connection_round_robin(slack_sim: SlackSimulator) -> None:
    player = slack_sim.player(transport="socket")
    async with raw_clients(slack_sim, 2) as clients:
        answering = [
            asyncio.create_task(answer_commands(c, f"conn{i}"), name=f"test:answer{i}")
            for i, c in enumerate(clients)
        ]
        try:
            answers = [(await player.command("alice", f"status {n}")).json["text"] for n in range(6)]
        finally:
            for t in answering:
                t.cancel()
            await asyncio.gather(*answering, return_exceptions=True)
    assert answers == [f"conn{n % 2}: status {n}" for n in range(6)]
    deliveries = slack_sim.socket_mode.deliveries[-6:]
    assert all(d.acked and d.acked_on == d.connection for d in deliveries)
    assert len({d.connection for d in deliveries}) == 2
    ids = [d.envelope_id for d in deliveries]
    assert len(set(ids)) == 6
    await player.close()


async def test_refresh_sends_disconnect_and_stops_deliveries_to_that_connection(
    slack_sim: SlackSimulator,
) -> None:
    player = slack_sim.player(transport="socket")
    async with raw_clients(slack_sim, 2) as (a, b):
        first, second = slack_sim.socket_mode.connections
        asked = await slack_sim.socket_mode.refresh(first.id)
        assert asked == [first.id]
        assert (await a.next()) == {
            "type": "disconnect",
            "reason": "refresh_requested",
            "debug_info": {"host": "applink-sim"},
        }
        assert [c.id for c in slack_sim.socket_mode.connections] == [second.id]
        answering = asyncio.create_task(answer_commands(b, "b"))
        try:
            for n in range(3):
                assert (await player.command("alice", f"s{n}")).json["text"] == f"b: s{n}"
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
    await player.close()


async def test_at_most_ten_connections(slack_sim: SlackSimulator) -> None:
    async with raw_clients(slack_sim, 10), aiohttp.ClientSession() as http:
        url = (await open_url(slack_sim, slack_sim.app_token))["url"]
        ws = await http.ws_connect(url)
        refused = await ws.receive_json()
        assert refused["type"] == "disconnect" and refused["reason"] == "too_many_websockets"
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert len(slack_sim.socket_mode.all_connections) == 10


# ---- the bot's SocketMode (slack_sdk's client) against it ------------------------------------------


def tiny_app(client: AsyncWebClient) -> AsyncApp:
    app = AsyncApp(client=client, signing_secret="unused-in-socket-mode", process_before_response=False)

    async def on_release(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack(text=f"got {body['text']}")

    app.command("/release")(on_release)
    return app


async def test_bot_socket_mode_answers_reconnects_after_refresh_and_counts_acks(
    slack_sim: SlackSimulator,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=http)
        metrics = Metrics()
        socket = SocketMode(tiny_app(client), slack_sim.app_token, client, metrics)
        player = slack_sim.player(transport="socket")
        try:
            assert await socket.not_ready() == "the Socket Mode connection is closed"
            await socket.start()
            assert await socket.not_ready() is None
            assert (await player.command("alice", "hexo v2")).json == {"text": "got hexo v2"}
            (before,) = slack_sim.socket_mode.connections
            await slack_sim.socket_mode.refresh()
            after = await slack_sim.wait_for(
                lambda: [c for c in slack_sim.socket_mode.connections if c.id != before.id] or None
            )
            assert len(after) == 1
            assert (await player.command("alice", "again")).json == {"text": "got again"}
            assert len(slack_sim.calls_to("apps.connections.open")) == 2
            acks = metrics.value(
                "release_bot_ack_seconds_count", {"mode": "socket", "kind": "slash_commands"}
            )
            assert acks == 2
        finally:
            await socket.stop()
            await player.close()
    await slack_sim.wait_for(lambda: not slack_sim.socket_mode.all_connections)


async def test_bot_socket_mode_is_not_ready_after_link_disabled_until_enabled_again(
    slack_sim: SlackSimulator,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=http)
        socket = SocketMode(tiny_app(client), slack_sim.app_token, client, Metrics())
        player = slack_sim.player(transport="socket")
        try:
            await socket.start()
            assert await socket.not_ready() is None
            await slack_sim.socket_mode.disconnect("link_disabled")
            await slack_sim.wait_for(lambda: not slack_sim.socket_mode.all_connections)

            async def reason() -> str | None:
                return await socket.not_ready()

            # slack_sdk reconnects by itself; until Slack says hello again the bot is not ready
            down = await wait_async(reason, lambda r: r is not None and "link_disabled" in r)
            assert down is not None and "Socket Mode" in down
            assert (await player.command("alice", "lost")).status == 0  # no connection: dispatch_failed
            slack_sim.socket_mode.enable()
            await wait_async(reason, lambda r: r is None, timeout=30)  # slack_sdk retries every 10 s
            assert (await player.command("alice", "back")).json == {"text": "got back"}
        finally:
            await socket.stop()
            await player.close()


async def wait_async(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 10.0
) -> T:
    """`probe()` until `done` holds: the bot's connection state has no change notification, so it
    is read again every 50 ms until the deadline."""
    async with asyncio.timeout(timeout):
        while True:
            value = await probe()
            if done(value):
                return value
            await asyncio.sleep(0.05)


async def test_bot_socket_mode_refuses_a_bad_app_token(slack_sim: SlackSimulator) -> None:
    async with aiohttp.ClientSession() as http:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=http)
        socket = SocketMode(tiny_app(client), "xapp-1-A000-wrong", client, Metrics())
        with pytest.raises(ConfigError, match="invalid_auth"):
            await socket.start()


async def test_page_commands_go_over_socket_mode_when_there_is_no_bot_url(slack_sim: SlackSimulator) -> None:
    assert slack_sim.bot_url is None
    async with raw_clients(slack_sim, 1) as (client,), aiohttp.ClientSession() as http:
        answering = asyncio.create_task(answer_commands(client, "page"))
        try:
            body = {"user": "alice", "channel": "releases", "text": "help"}
            async with http.post(slack_sim.base_url + "sim/command", json=body) as resp:
                assert resp.status == 200
                assert (await resp.json())["text"] == '{"text": "page: help"}'
        finally:
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)
    await slack_sim.wait_for(lambda: not slack_sim.socket_mode.all_connections)
    async with (
        aiohttp.ClientSession() as http,
        http.post(slack_sim.base_url + "sim/command", json=body) as resp,
    ):
        assert resp.status == 409  # neither a bot_url nor a connection
