"""The simulator's modals and Home tab with a real Bolt app over loopback: views.open from a slash
command's trigger_id, block_actions from a select in the modal answered with views.update,
view_submission answered with field errors or a close, app_home_opened answered with views.publish,
and what Slack itself refuses (a used trigger, a stale hash)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackSimulator
from tests.integration.test_slack_sim import serve

pytestmark = pytest.mark.integration


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def option(value: str) -> dict[str, Any]:
    return {"text": plain(value), "value": value}


def form(app: str, note: str = "") -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": "app",
            "dispatch_action": True,
            "label": plain("App"),
            "element": {
                "type": "static_select",
                "action_id": "app",
                "options": [option("hexo"), option("blog")],
                "initial_option": option(app),
            },
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"`{app}` runs v1.0{note}"}]},
        {
            "type": "input",
            "block_id": "version",
            "label": plain("Version"),
            "hint": plain(f"{app} runs v1.0 now"),
            "element": {"type": "plain_text_input", "action_id": "version", "placeholder": plain("v2.0")},
        },
    ]
    return {
        "type": "modal",
        "callback_id": "form",
        "title": plain("Release"),
        "submit": plain("Release"),
        "close": plain("Cancel"),
        "private_metadata": app,
        "blocks": blocks,
    }


def make_form_app(sim: SlackSimulator, client: AsyncWebClient, seen: list[dict[str, Any]]) -> AsyncApp:
    """A tiny app with a form: `/release` opens it, choosing an app redraws it, submitting checks the
    version, opening the Home tab draws it (each app_home_opened event is kept in `seen`)."""
    app = AsyncApp(client=client, signing_secret=sim.signing_secret)

    @app.command("/release")
    async def release(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.views_open(trigger_id=command["trigger_id"], view=form("hexo"))

    @app.action("app")
    async def changed(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        chosen = body["actions"][0]["selected_option"]["value"]
        await client.views_update(view_id=body["view"]["id"], hash=body["view"]["hash"], view=form(chosen))

    @app.view("form")
    async def submitted(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        values = body["view"]["state"]["values"]
        version = values["version"]["version"]["value"] or ""
        chosen = values["app"]["app"]["selected_option"]["value"]
        if not version.startswith("v"):
            await ack(response_action="errors", errors={"version": f"{version!r} is not a version"})
            return
        await ack()
        await client.chat_postMessage(channel="releases", text=f"releasing {chosen} {version}")

    @app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        seen.append(event)
        text = f"Hello <@{event['user']}>: *hexo* runs `v1.0` <https://example.com/card|card>"
        await client.views_publish(
            user_id=event["user"],
            view={"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]},
        )

    return app


@pytest.fixture
def home_events() -> list[dict[str, Any]]:
    return []


@pytest_asyncio.fixture(loop_scope="session")
async def form_app(
    slack_sim: SlackSimulator, home_events: list[dict[str, Any]]
) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)
        app = make_form_app(slack_sim, client, home_events)
        runner, base = await serve(app.web_app(path="/slack/events"))
        slack_sim.bot_url = f"{base}/slack/events"
        try:
            yield client
        finally:
            await runner.cleanup()


async def test_a_form_from_open_to_submission(slack_sim: SlackSimulator, form_app: AsyncWebClient) -> None:
    alice = slack_sim.users["alice"]
    player = slack_sim.player()
    try:
        assert (await player.command("alice", "")).status == 200
        modal = await slack_sim.wait_for(lambda: slack_sim.workspace.views.modal_of(alice))
        assert modal.data["title"]["text"] == "Release" and modal.data["private_metadata"] == "hexo"

        # choosing another app: block_actions with the view, answered by views.update
        assert (await player.view_action("alice", "app", "blog", values={"version": "v2"})).status == 200
        modal = await slack_sim.wait_for(
            lambda: (
                m
                if (m := slack_sim.workspace.views.modal_of(alice)) and m.data["private_metadata"] == "blog"
                else None
            )
        )
        assert [c.ok for c in slack_sim.calls_to("views.update")] == [True]
        values = modal.data["state"]["values"]
        assert values["version"]["version"]["value"] == "v2"  # kept across the update, as Slack does
        assert values["app"]["app"]["selected_option"]["value"] == "blog"

        bad = await player.submit_view("alice", {"version": "2.0"})
        assert bad.json == {"response_action": "errors", "errors": {"version": "'2.0' is not a version"}}
        refused = slack_sim.workspace.views.modal_of(alice)
        assert refused is not None and refused.errors == {"version": "'2.0' is not a version"}

        good = await player.submit_view("alice", {"version": "v2.0"})
        assert good.status == 200
        assert slack_sim.workspace.views.modal_of(alice) is None
        await slack_sim.wait_for(
            lambda: any(m["text"] == "releasing blog v2.0" for m in slack_sim.history("releases")) or None
        )
    finally:
        await player.close()


async def test_slack_refuses_a_used_trigger_and_a_stale_hash(
    slack_sim: SlackSimulator, form_app: AsyncWebClient
) -> None:
    player = slack_sim.player()
    try:
        form_fields = player.command_form("alice", "")
        trigger = form_fields["trigger_id"]
        opened = await form_app.views_open(trigger_id=trigger, view=form("hexo"))
        with pytest.raises(SlackApiError) as used:
            await form_app.views_open(trigger_id=trigger, view=form("hexo"))
        assert used.value.response["error"] == "invalid_trigger_id"
        view = opened["view"]
        await form_app.views_update(view_id=view["id"], hash=view["hash"], view=form("blog"))
        with pytest.raises(SlackApiError) as stale:
            await form_app.views_update(view_id=view["id"], hash=view["hash"], view=form("hexo"))
        assert stale.value.response["error"] == "hash_conflict"
        with pytest.raises(SlackApiError) as bad:
            await form_app.views_update(view_id=view["id"], view={**form("hexo"), "title": plain("x" * 30)})
        assert bad.value.response["error"] == "invalid_arguments"
        assert "/view/title/text" in str(bad.value.response["response_metadata"])
    finally:
        await player.close()


async def test_opening_the_home_tab_draws_it(
    slack_sim: SlackSimulator, form_app: AsyncWebClient, home_events: list[dict[str, Any]]
) -> None:
    bob = slack_sim.users["bob"]
    player = slack_sim.player()
    try:
        (delivery,) = await player.open_home("bob")
        assert delivery.response.status == 200
        home = await slack_sim.wait_for(lambda: slack_sim.workspace.views.home_of(bob))
        assert "*hexo* runs `v1.0`" in home.data["blocks"][0]["text"]["text"]
        first = home_events[0]
        assert (first["user"], first["tab"], first["channel"]) == (bob, "home", slack_sim.open_dm("bob"))
        assert "view" not in first  # nothing was published for bob yet
        # the next opening carries the view published last, as Slack's event does
        await player.open_home("bob")
        await slack_sim.wait_for(lambda: len(home_events) == 2)
        assert home_events[1]["view"]["id"] == home.id
    finally:
        await player.close()
