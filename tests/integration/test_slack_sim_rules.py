"""Slack's rules in the simulator, each seen through slack_sdk's own clients over loopback HTTP.

Scopes (`x-oauth-scopes` on every answer, `missing_scope` with `needed` and `provided`), ids where
Slack takes only ids, private channels and DMs, channel membership, slash commands from a DM or a
private channel the app is not in, org-wide installs, token revocation, and Socket Mode's `warning`
and `link_disabled` disconnects. Each rule's source is cited where the simulator implements it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.manifest import BOT_SCOPES
from sandbox.slack import SlackPlayer, SlackSimulator
from tests.integration.test_slack_sim import CARD_BLOCKS, serve

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def client(slack_sim: SlackSimulator) -> AsyncIterator[AsyncWebClient]:
    """slack_sdk's client with the bot token, as the bot holds it (the manifest's scopes)."""
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# ---- scopes ----------------------------------------------------------------------------------------


async def test_the_token_has_the_manifest_scopes_and_every_answer_says_so(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    assert slack_sim.scopes == list(BOT_SCOPES)
    me = await client.auth_test()
    assert me.headers["x-oauth-scopes"] == ",".join(BOT_SCOPES)
    posted = await client.chat_postMessage(channel=slack_sim.channels["releases"], text="hi")
    assert posted.headers["x-oauth-scopes"] == ",".join(BOT_SCOPES)
    assert posted.headers["x-accepted-oauth-scopes"] == "chat:write"
    refused = await error_of(client.chat_update(channel=slack_sim.channels["releases"], ts="1.0", text="x"))
    assert refused.response["error"] == "message_not_found"
    assert refused.response.headers["x-oauth-scopes"] == ",".join(BOT_SCOPES)
    stranger = AsyncWebClient(token="xoxb-not-ours", base_url=slack_sim.api_url, session=client.session)
    unknown = await error_of(stranger.auth_test())
    assert unknown.response["error"] == "invalid_auth"
    assert "x-oauth-scopes" not in unknown.response.headers


async def test_a_missing_scope_names_what_is_needed_and_what_the_token_has(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    releases = slack_sim.channels["releases"]
    slack_sim.set_scopes(["commands", "usergroups:read"])
    refused = await error_of(client.chat_postMessage(channel=releases, text="card"))
    assert refused.response.data == {
        "ok": False,
        "error": "missing_scope",
        "needed": "chat:write",
        "provided": "commands,usergroups:read",
    }
    assert slack_sim.history(releases) == []
    # Per kind of conversation: channels:history reads public channels only.
    slack_sim.set_scopes([*BOT_SCOPES, "channels:history"])
    ops = slack_sim.add_private_channel("ops", ["alice"], bot=True)
    assert (await client.conversations_history(channel=releases))["ok"] is True
    refused = await error_of(client.conversations_history(channel=ops))
    assert (refused.response["needed"], refused.response["provided"]) == (
        "groups:history",
        "channels:read,chat:write,commands,usergroups:read,channels:history",
    )
    assert (await error_of(client.users_info(user=slack_sim.users["bob"]))).response["needed"] == "users:read"


async def test_without_commands_no_slash_command_reaches_the_app(
    slack_sim: SlackSimulator, slack_player: SlackPlayer
) -> None:
    arrived: list[bytes] = []

    async def endpoint(request: web.Request) -> web.Response:
        arrived.append(await request.read())
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", endpoint)
    runner, base = await serve(app)
    try:
        slack_sim.bot_url = f"{base}/slack/events"
        assert (await slack_player.command("alice", "help")).status == 200  # with the scope: delivered
        slack_sim.set_scopes(["chat:write", "usergroups:read"])
        response = await slack_player.command("alice", "help")
    finally:
        await runner.cleanup()
    assert response.status == 0
    assert len(arrived) == 1
    (shown,) = slack_sim.ephemerals("releases", "alice")
    assert shown["text"].startswith("/release is not a valid command")


# ---- ids where Slack takes only ids --------------------------------------------------------------


async def test_names_only_where_slack_takes_names(slack_sim: SlackSimulator, client: AsyncWebClient) -> None:
    slack_sim.set_scopes([*BOT_SCOPES, "users:read"])
    alice = slack_sim.users["alice"]
    by_name = await client.chat_postMessage(channel="releases", text="by name")
    assert by_name["channel"] == slack_sim.channels["releases"]
    assert (await client.chat_postMessage(channel="#releases", text="by #name"))["ok"] is True
    assert (await client.chat_postEphemeral(channel="releases", user=alice, text="psst"))["ok"] is True
    for call in (
        client.chat_update(channel="releases", ts=by_name["ts"], text="x"),
        client.chat_delete(channel="releases", ts=by_name["ts"]),
        client.chat_getPermalink(channel="releases", message_ts=by_name["ts"]),
    ):
        assert (await error_of(call)).response["error"] == "channel_not_found"
    assert (await error_of(client.users_info(user="alice"))).response["error"] == "user_not_found"
    refused = await error_of(client.chat_postEphemeral(channel="releases", user="alice", text="x"))
    assert refused.response["error"] == "user_not_found"
    refused = await error_of(client.usergroups_users_list(usergroup="release-managers"))
    assert refused.response["error"] == "no_such_subteam"
    group = slack_sim.usergroups["release-managers"]
    assert (await client.usergroups_users_list(usergroup=group))["users"] == [alice]


# ---- private channels, DMs, membership ---------------------------------------------------------------


async def test_a_private_channel_exists_for_the_bot_only_once_it_is_in_it(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    slack_sim.set_scopes([*BOT_SCOPES, "groups:read"])
    secret = slack_sim.add_private_channel("secret-ops", ["alice", "bob"])
    for call in (
        client.chat_postMessage(channel=secret, text="x"),
        client.chat_postMessage(channel="secret-ops", text="x"),
        client.chat_postEphemeral(channel=secret, user=slack_sim.users["alice"], text="x"),
        client.conversations_info(channel=secret),
    ):
        assert (await error_of(call)).response["error"] == "channel_not_found"
    assert (await client.conversations_list(types="private_channel"))["channels"] == []
    slack_sim.set_bot_membership(secret, True)
    info = (await client.conversations_info(channel=secret))["channel"]
    assert (info["is_private"], info["is_member"]) == (True, True)
    assert (await client.chat_postMessage(channel=secret, text="now"))["ok"] is True
    listed = (await client.conversations_list(types="private_channel"))["channels"]
    assert [c["id"] for c in listed] == [secret]


async def test_dms_between_people_are_invisible_and_the_app_dm_needs_its_messages_tab(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    alice, bob = slack_sim.users["alice"], slack_sim.users["bob"]
    between = slack_sim.open_dm("alice", "bob")
    assert between.startswith("D")
    assert between == slack_sim.open_dm("bob", "alice")
    refused = await error_of(client.chat_postMessage(channel=between, text="x"))
    assert refused.response["error"] == "channel_not_found"
    # A user id as the channel is the app's DM with that user; the manifest turns its Messages tab off.
    refused = await error_of(client.chat_postMessage(channel=alice, text="hello"))
    assert refused.response["error"] == "messages_tab_disabled"
    slack_sim.workspace.messages_tab_enabled = True
    posted = await client.chat_postMessage(channel=alice, text="hello")
    assert posted["channel"] == slack_sim.open_dm("alice")
    assert [m["text"] for m in slack_sim.history(posted["channel"])] == ["hello"]
    refused = await error_of(client.chat_postEphemeral(channel=posted["channel"], user=bob, text="x"))
    assert refused.response["error"] == "user_not_in_channel"


async def test_membership_not_in_channel_chat_write_public_and_user_not_in_channel(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    releases, mallory = slack_sim.channels["releases"], slack_sim.users["mallory"]
    slack_sim.set_member(releases, "mallory", False)
    refused = await error_of(client.chat_postEphemeral(channel=releases, user=mallory, text="x"))
    assert refused.response["error"] == "user_not_in_channel"
    slack_sim.set_bot_membership(releases, False)
    assert (await error_of(client.chat_postMessage(channel=releases, text="x"))).response[
        "error"
    ] == "not_in_channel"
    slack_sim.set_scopes([*BOT_SCOPES, "chat:write.public"])
    assert (await client.chat_postMessage(channel=releases, text="as a public poster"))["ok"] is True


# ---- slash commands from a DM or a private channel --------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def answering_bot(slack_sim: SlackSimulator, client: AsyncWebClient) -> AsyncIterator[list[str]]:
    """A Bolt app that answers /release with an ephemeral, falling back to the response_url where
    Slack refuses it (as the bot does); yields the errors it met."""
    app = AsyncApp(client=client, signing_secret=slack_sim.signing_secret)
    errors: list[str] = []

    @app.command("/release")
    async def release(ack: Any, command: dict[str, Any]) -> None:
        await ack()
        try:
            await client.chat_postEphemeral(channel=command["channel_id"], user=command["user_id"], text="hi")
        except SlackApiError as e:
            errors.append(str(e.response["error"]))
            await AsyncWebhookClient(command["response_url"], session=client.session).send(text="via url")

    runner, base = await serve(app.web_app(path="/slack/events"))
    slack_sim.bot_url = f"{base}/slack/events"
    try:
        yield errors
    finally:
        await runner.cleanup()


async def test_commands_from_a_dm_and_a_private_channel_are_answered_through_the_response_url(
    slack_sim: SlackSimulator, slack_player: SlackPlayer, answering_bot: list[str]
) -> None:
    dm = slack_sim.open_dm("alice", "bob")
    secret = slack_sim.add_private_channel("secret", ["alice"])
    forms = [slack_player.command_form("alice", "help", channel=c) for c in (dm, secret, "releases")]
    assert [f["channel_name"] for f in forms] == ["directmessage", "privategroup", "releases"]
    for channel in (dm, secret):
        assert (await slack_player.command("alice", "status hexo", channel=channel)).status == 200
        await slack_sim.wait_for(lambda c=channel: slack_sim.ephemerals(c, "alice") or None)  # type: ignore[misc]
        assert [m["text"] for m in slack_sim.ephemerals(channel, "alice")] == ["via url"]
    assert answering_bot == ["channel_not_found", "channel_not_found"]
    with pytest.raises(LookupError, match="mallory is not in"):
        slack_player.command_form("mallory", "help", channel=secret)


# ---- org-wide installs ----------------------------------------------------------------------------------


async def test_an_org_wide_install_sends_team_null_and_the_enterprise(
    slack_sim: SlackSimulator, client: AsyncWebClient, slack_player: SlackPlayer
) -> None:
    slack_sim.enterprise_install = True
    ws = slack_sim.workspace
    me = await client.auth_test()
    assert (me["is_enterprise_install"], me["enterprise_id"]) == (True, ws.enterprise_id)
    form = slack_player.command_form("alice", "help")
    assert (form["enterprise_id"], form["enterprise_name"], form["is_enterprise_install"]) == (
        ws.enterprise_id,
        ws.enterprise_name,
        "true",
    )
    assert list(form)[3:5] == ["enterprise_id", "enterprise_name"]
    refused = await error_of(client.chat_postMessage(channel="releases", text="by name"))
    assert refused.response["error"] == "team_not_found"
    posted = await client.chat_postMessage(
        channel=slack_sim.channels["releases"], text="c", blocks=CARD_BLOCKS
    )
    (card,) = slack_sim.history(slack_sim.channels["releases"])
    payload = slack_player.click_payload("bob", card, "promote")
    assert payload["team"] is None
    assert payload["enterprise"] == {"id": ws.enterprise_id, "name": ws.enterprise_name}
    assert (payload["is_enterprise_install"], payload["user"]["team_id"]) == (True, ws.team_id)
    envelope = slack_player.event_envelope({"type": "app_mention", "text": "hi"})
    assert envelope["authorizations"][0]["enterprise_id"] == ws.enterprise_id
    assert envelope["authorizations"][0]["is_enterprise_install"] is True
    assert posted["ok"] is True


async def test_bolt_takes_an_org_wide_click(
    slack_sim: SlackSimulator, client: AsyncWebClient, slack_player: SlackPlayer
) -> None:
    slack_sim.enterprise_install = True
    app = AsyncApp(client=client, signing_secret=slack_sim.signing_secret)
    seen: list[dict[str, Any]] = []

    @app.action("promote")
    async def promote(ack: Any, body: dict[str, Any], context: Any) -> None:
        await ack()
        seen.append(
            {"team": body["team"], "team_id": context.team_id, "enterprise_id": context.enterprise_id}
        )

    runner, base = await serve(app.web_app(path="/slack/events"))
    try:
        slack_sim.bot_url = f"{base}/slack/events"
        await client.chat_postMessage(channel=slack_sim.channels["releases"], text="c", blocks=CARD_BLOCKS)
        (card,) = slack_sim.history(slack_sim.channels["releases"])
        assert await slack_player.click("bob", card, "promote") == 200
    finally:
        await runner.cleanup()
    ws = slack_sim.workspace
    assert seen == [{"team": None, "team_id": ws.team_id, "enterprise_id": ws.enterprise_id}]


# ---- token revocation ---------------------------------------------------------------------------------


async def test_a_revoked_token_is_refused_everywhere_until_restored(
    slack_sim: SlackSimulator, client: AsyncWebClient
) -> None:
    slack_sim.revoke_token()
    for call in (
        client.auth_test(),
        client.chat_postMessage(channel=slack_sim.channels["releases"], text="x"),
        client.usergroups_users_list(usergroup=slack_sim.usergroups["release-managers"]),
    ):
        refused = await error_of(call)
        assert refused.response["error"] == "token_revoked"
        assert "x-oauth-scopes" not in refused.response.headers
    slack_sim.revoke_token(False)
    assert (await client.auth_test())["ok"] is True


# ---- Socket Mode disconnects --------------------------------------------------------------------------


class Socket:
    """slack_sdk's aiohttp SocketModeClient on the simulator, counting the hellos it gets."""

    def __init__(self, sim: SlackSimulator, session: aiohttp.ClientSession) -> None:
        web_client = AsyncWebClient(base_url=sim.api_url, session=session)
        self.client = SocketModeClient(
            app_token=sim.app_token,
            web_client=web_client,
            ping_interval=1,
            logger=logging.getLogger("test.socket_mode"),
        )
        self.messages: list[dict[str, Any]] = []

        async def on_message(_: Any, message: dict[str, Any], __: Any) -> None:
            self.messages.append(message)

        self.client.message_listeners.append(on_message)


@pytest_asyncio.fixture(loop_scope="session")
async def socket(slack_sim: SlackSimulator) -> AsyncIterator[Socket]:
    async with aiohttp.ClientSession() as session:
        sock = Socket(slack_sim, session)
        await sock.client.connect()  # type: ignore[no-untyped-call]
        await slack_sim.wait_for(lambda: len(slack_sim.socket_mode.connections) == 1)
        try:
            yield sock
        finally:
            await sock.client.close()  # type: ignore[no-untyped-call]


async def test_warning_the_client_reconnects_and_the_old_connection_is_closed(
    slack_sim: SlackSimulator, socket: Socket
) -> None:
    server = slack_sim.socket_mode
    (before,) = server.connections
    assert await server.disconnect("warning", close_after=0.5) == [before.id]
    assert before in server.connections  # a warning: it still carries envelopes for now
    await slack_sim.wait_for(lambda: [c for c in server.connections if c.id != before.id] or None)
    await slack_sim.wait_for(lambda: before not in server.all_connections)
    (after,) = server.connections
    delivery = await server.deliver("events_api", {"type": "event_callback", "event": {"type": "x"}})
    assert delivery.connection == after.id


async def test_link_disabled_closes_every_connection_and_delivers_nothing_until_enabled(
    slack_sim: SlackSimulator, socket: Socket
) -> None:
    server = slack_sim.socket_mode
    await server.disconnect("link_disabled")
    assert server.enabled is False
    await slack_sim.wait_for(lambda: not server.all_connections)
    delivery = await server.deliver("events_api", {"type": "event_callback", "event": {"type": "x"}})
    assert (delivery.connection, delivery.response().status) == (None, 0)  # dispatch_failed
    async with aiohttp.ClientSession() as http:
        opened = await (
            await http.post(
                slack_sim.api_url + "apps.connections.open",
                headers={"Authorization": f"Bearer {slack_sim.app_token}"},
            )
        ).json()
        async with http.get(opened["url"].replace("ws://", "http://", 1)) as refused:
            assert refused.status == 403
    server.enable()
    await slack_sim.wait_for(lambda: server.connections or None, timeout=15)  # slack_sdk retries


async def test_disconnect_reasons_are_slacks(slack_sim: SlackSimulator) -> None:
    with pytest.raises(ValueError, match="reason must be one of"):
        await slack_sim.socket_mode.disconnect("because")
    with pytest.raises(ValueError, match="every connection"):
        await slack_sim.socket_mode.disconnect("link_disabled", "conn-1")


# ---- the raw wire: the scope headers on a form-encoded call --------------------------------------------


async def test_scope_headers_on_a_raw_form_call(slack_sim: SlackSimulator) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            slack_sim.api_url + "chat.postMessage",
            data={"token": slack_sim.bot_token, "channel": slack_sim.channels["releases"], "text": "x"},
        ) as resp,
    ):
        assert (await resp.json())["ok"] is True
        assert resp.headers["x-oauth-scopes"].split(",") == list(BOT_SCOPES)
