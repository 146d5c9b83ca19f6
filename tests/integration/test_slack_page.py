"""The simulator's channel page in a real Chromium: commands, replies, threads, buttons, escaping.

The page talks only to the simulator; the simulator sends real signed requests to a real Bolt app
over loopback, and the Bolt app answers through the simulator's Web API. The sandbox's control panel
is tested on a simulator with the real control routes mounted (sandbox/control.py), acting on a
recording stand-in for the sandbox's processes (the real restarts: test_sandbox.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect
from slack_sdk.web.async_client import AsyncWebClient

from bot.releases.health import Live
from bot.releases.record import Phase
from bot.slack import cards
from sandbox.control import control_app
from sandbox.slack import SlackSimulator
from tests.integration.test_slack_sim import make_bolt_app, serve
from tests.integration.test_slack_sim_views import make_form_app
from tests.unit.records import T0, record

pytestmark = pytest.mark.integration

WAIT_MS = 10_000


@pytest_asyncio.fixture(loop_scope="session")
async def page_bot(slack_sim: SlackSimulator) -> AsyncIterator[AsyncWebClient]:
    """A Bolt app behind `slack_sim.bot_url`; yields its Web API client."""
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)
        runner, base = await serve(make_bolt_app(slack_sim, client).web_app(path="/slack/events"))
        slack_sim.bot_url = f"{base}/slack/events"
        try:
            yield client
        finally:
            await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, slack_sim: SlackSimulator) -> AsyncIterator[Page]:
    context = await browser.new_context()
    tab = await context.new_page()
    await tab.goto(slack_sim.page_url)
    await tab.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
    try:
        yield tab
    finally:
        await context.close()


async def test_command_reply_thread_and_click(
    slack_sim: SlackSimulator, page_bot: AsyncWebClient, page: Page
) -> None:
    bob = slack_sim.users["bob"]
    await page.select_option("#user", bob)
    await page.fill("#command", "/release hexo v2.0 <b>now</b>")
    await page.press("#command", "Enter")

    ephemeral = page.locator(".message.ephemeral")
    await expect(ephemeral).to_contain_text("Starting release hexo v2.0 <b>now</b>", timeout=WAIT_MS)
    await expect(ephemeral).to_contain_text("Only visible to you")
    assert await page.locator("#messages b").count() == 0  # shown as text, never as markup

    card = page.locator("#messages > .message:not(.ephemeral)")
    await expect(card.locator(".block-header")).to_have_text("Release", timeout=WAIT_MS)
    await expect(card.locator(".thread .message")).to_contain_text("canary started", timeout=WAIT_MS)
    promote = card.locator("button[data-action-id='promote']")
    await expect(promote).to_have_class("btn primary")
    await expect(card.locator("button[data-action-id='rollback']")).to_have_class("btn danger")

    await promote.click()
    await expect(card).to_contain_text("promoted by @bob", timeout=WAIT_MS)
    await expect(card.locator(".edited")).to_have_text("(edited)")
    assert (await slack_sim.wait_for(lambda: slack_sim.history("releases")[0].get("edited"), timeout=1))[
        "user"
    ]

    # Ephemerals belong to one user: alice does not see bob's.
    await page.select_option("#user", slack_sim.users["alice"])
    await expect(page.locator(".message.ephemeral")).to_have_count(0, timeout=WAIT_MS)


async def test_confirm_dialog_guards_a_danger_button(
    slack_sim: SlackSimulator, page_bot: AsyncWebClient, page: Page
) -> None:
    await page.fill("#command", "/release hexo v2.1 --canary")
    await page.press("#command", "Enter")
    rollback = page.locator("button[data-action-id='rollback']")
    await expect(rollback).to_be_visible(timeout=WAIT_MS)

    await rollback.click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#confirm-title")).to_have_text("Roll back?")
    await dialog.locator("#confirm-deny").click()
    await expect(dialog).to_be_hidden()
    assert not [c for c in slack_sim.calls if c.method == "chat.update"]

    await rollback.click()
    await expect(dialog.locator("#confirm-ok")).to_have_text("Roll back")
    await dialog.locator("#confirm-ok").click()
    alice = slack_sim.users["alice"]
    await expect(page.locator("#messages")).to_contain_text("rolled back by @alice", timeout=WAIT_MS)
    assert slack_sim.history("releases")[0]["text"] == f"rolled back by <@{alice}>"


async def test_message_text_is_never_html(
    slack_sim: SlackSimulator, page_bot: AsyncWebClient, page: Page
) -> None:
    hostile = (
        '<img src=x onerror="window.pwned=1"> &lt;script&gt;window.pwned=2&lt;/script&gt; '
        "<javascript:window.pwned=3|click me> <https://example.com/?a=1&amp;b=2|a link> *bold* `code`"
    )
    await page_bot.chat_postMessage(channel=slack_sim.channels["releases"], text=hostile)
    body = page.locator("#messages .message .body").last
    await expect(body).to_contain_text("<script>window.pwned=2</script>", timeout=WAIT_MS)
    assert await page.locator("#messages img, #messages script").count() == 0
    assert await page.locator("#messages a[href^='javascript']").count() == 0
    assert await body.locator("a").get_attribute("href") == "https://example.com/?a=1&b=2"
    await expect(body.locator("b")).to_have_text("bold")
    await expect(body.locator("code")).to_have_text("code")
    assert await page.evaluate("window.pwned") is None


# ---- mrkdwn as Slack renders it ----------------------------------------------------------------------


async def test_mrkdwn_formatting_emoji_links_and_mentions(
    slack_sim: SlackSimulator, page_bot: AsyncWebClient, page: Page
) -> None:
    alice = slack_sim.users["alice"]
    text = (
        ":white_check_mark: *Released* _hexo_ ~v1.0~ `v2_0_rc` for <@" + alice + "> <!here> "
        "<https://example.com/a_b_c|the_log> keep_snake_case and 2*3*4 :no_such_emoji: "
        "*:rocket: bold with emoji* :+1::skin-tone-3:\n```a *not bold* :x:```"
    )
    await page_bot.chat_postMessage(
        channel=slack_sim.channels["releases"],
        text="fallback",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    )
    body = page.locator("#messages .message .body").last
    await expect(body).to_contain_text(
        "✅ Released hexo v1.0 v2_0_rc for @alice @here the_log", timeout=WAIT_MS
    )
    await expect(body.locator("b").first).to_have_text("Released")
    await expect(body.locator("i")).to_have_text(["hexo"])  # snake_case and emoji names stay as typed
    await expect(body.locator("s")).to_have_text("v1.0")
    await expect(body.locator("code")).to_have_text("v2_0_rc")
    await expect(body.locator(".mention")).to_have_text(["@alice", "@here"])
    link = body.locator("a")
    await expect(link).to_have_text("the_log")
    assert await link.get_attribute("href") == "https://example.com/a_b_c"
    await expect(body.locator("b").nth(1)).to_have_text("🚀 bold with emoji")
    await expect(body.locator("pre")).to_have_text("a *not bold* :x:")  # code blocks stay literal
    shown = await body.inner_text()
    assert "keep_snake_case and 2*3*4 :no_such_emoji:" in shown
    assert "👍🏼" in shown
    assert ":white" not in shown and "check" not in shown


async def test_a_release_card_shows_its_emoji_and_bold_status(
    slack_sim: SlackSimulator, page_bot: AsyncWebClient, page: Page
) -> None:
    done = record(phase=Phase.SUCCEEDED, requester=cards_actor(slack_sim), finished_at=T0, phase_since=T0)
    text, blocks = cards.card(done, Live(now=T0))
    await page_bot.chat_postMessage(channel=slack_sim.channels["releases"], text=text, blocks=blocks)
    card = page.locator("#messages > .message:not(.ephemeral)").last
    status = card.locator(".block-section").nth(1)
    await expect(status).to_contain_text("✅", timeout=WAIT_MS)
    await expect(status.locator("b")).to_have_text("Succeeded")
    assert ":white_check_mark:" not in await status.inner_text()
    await expect(card.locator(".fields b").first).to_have_text("App")
    await expect(card.locator(".fields")).to_contain_text("@alice")


def cards_actor(sim: SlackSimulator) -> Any:
    from bot.releases.record import Actor

    return Actor(id=sim.users["alice"], name="alice")


# ---- the sandbox's control panel ------------------------------------------------------------------


class RecordedControls:
    """What the control routes act on, recording each action (no processes behind it)."""

    restartable = ("kube-apiserver", "etcd", "kubelet", "bot")
    killable = ("bot",)

    def __init__(self) -> None:
        self.restarted: list[str] = []
        self.killed: list[str] = []
        self.apiserver_pid = 4100

    def pids(self) -> Mapping[str, int | None]:
        return {"bot": 4000, "kube-apiserver": self.apiserver_pid}

    async def restart(self, component: str) -> Mapping[str, Any]:
        self.restarted.append(component)
        before, self.apiserver_pid = self.apiserver_pid, self.apiserver_pid + 1
        return {"component": component, "pid": self.apiserver_pid, "previous_pid": before, "seconds": 0.1}

    async def kill(self, component: str) -> Mapping[str, Any]:
        self.killed.append(component)
        return {"component": component, "killed_pid": 4000}


@pytest_asyncio.fixture(loop_scope="session")
async def controlled() -> AsyncIterator[tuple[SlackSimulator, RecordedControls]]:
    """A simulator with the control routes mounted, as `release-bot sandbox` runs it."""
    sim, controls = SlackSimulator(), RecordedControls()
    sim.mount_control(control_app(sim, controls))
    await sim.start()
    try:
        yield sim, controls
    finally:
        await sim.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def control_page(
    browser: Browser, controlled: tuple[SlackSimulator, RecordedControls]
) -> AsyncIterator[Page]:
    context = await browser.new_context()
    tab = await context.new_page()
    await tab.goto(controlled[0].page_url)
    await tab.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
    try:
        yield tab
    finally:
        await context.close()


async def test_panel_is_shown_only_when_the_simulator_has_control_routes(
    slack_sim: SlackSimulator, page: Page
) -> None:
    await expect(page.locator("#control")).to_be_hidden()


async def test_panel_button_posts_a_fault_the_simulator_applies(
    controlled: tuple[SlackSimulator, RecordedControls], control_page: Page
) -> None:
    sim, _ = controlled
    panel = control_page.locator("#control")
    await expect(panel).to_be_visible()
    await expect(panel.locator("#control-pids")).to_contain_text("kube-apiserver 4100", timeout=WAIT_MS)
    await control_page.fill("#fault-method", "chat.postMessage")
    await control_page.select_option("#fault-kind", "500")
    await control_page.fill("#fault-count", "2")
    await control_page.click("#fault-add")
    await expect(panel.locator("#control-status")).to_contain_text(
        "fault added: the next 2 chat.postMessage call(s)", timeout=WAIT_MS
    )
    assert sim.pending_faults() == {"chat.postMessage": [{"remaining": 2, "status": 500}]}

    # the simulator answers the next two real calls with the fault, then normally
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(
                sim.api_url + "chat.postMessage",
                json={"channel": sim.channels["releases"], "text": "hello"},
                headers={"Authorization": f"Bearer {sim.bot_token}"},
            ) as resp:
                statuses.append(resp.status)
    assert statuses == [500, 500, 200]


async def test_panel_bad_fault_is_reported_not_applied(
    controlled: tuple[SlackSimulator, RecordedControls], control_page: Page
) -> None:
    sim, _ = controlled
    await control_page.fill("#fault-method", "not a method")
    await control_page.click("#fault-add")
    await expect(control_page.locator("#control-status")).to_contain_text(
        "fault not added: 'method' must be a Web API method", timeout=WAIT_MS
    )
    assert sim.pending_faults() == {}


async def test_panel_restart_button_restarts_that_component(
    controlled: tuple[SlackSimulator, RecordedControls], control_page: Page
) -> None:
    _, controls = controlled
    await control_page.click("#control button[data-restart='kube-apiserver']")
    status = control_page.locator("#control-status")
    await expect(status).to_contain_text("kube-apiserver restarted: pid 4100 → 4101", timeout=WAIT_MS)
    await expect(control_page.locator("#control-pids")).to_contain_text(
        "kube-apiserver 4101", timeout=WAIT_MS
    )
    await control_page.click("#control button[data-kill='bot']")
    await expect(status).to_contain_text("killed the bot (pid 4000)", timeout=WAIT_MS)
    assert (controls.restarted, controls.killed) == (["kube-apiserver"], ["bot"])


# ---- modals and the Home tab ------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def form_page_bot(slack_sim: SlackSimulator) -> AsyncIterator[list[dict[str, Any]]]:
    """The form app of test_slack_sim_views behind `slack_sim.bot_url`; yields its Home tab events."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)
        runner, base = await serve(make_form_app(slack_sim, client, events).web_app(path="/slack/events"))
        slack_sim.bot_url = f"{base}/slack/events"
        try:
            yield events
        finally:
            await runner.cleanup()


async def test_a_modal_is_drawn_redrawn_refused_on_a_field_and_submitted(
    slack_sim: SlackSimulator, form_page_bot: list[dict[str, Any]], page: Page
) -> None:
    await page.fill("#command", "/release")
    await page.press("#command", "Enter")
    modal = page.locator("dialog#modal")
    await expect(modal).to_be_visible(timeout=WAIT_MS)
    await expect(modal.locator("#modal-title")).to_have_text("Release")
    await expect(modal.locator("#modal-submit")).to_have_text("Release")
    await expect(modal.locator("#modal-close")).to_have_text("Cancel")
    await expect(modal).to_contain_text("hexo runs v1.0 now")
    version = modal.locator("input[data-action-id='version']")
    await expect(version).to_have_attribute("placeholder", "v2.0")

    # choosing an app tells the app at once, and its redraw keeps what was typed
    await version.fill("v3")
    await modal.locator("select[data-action-id='app']").select_option("blog")
    await expect(modal).to_contain_text("blog runs v1.0 now", timeout=WAIT_MS)
    await expect(modal.locator("input[data-action-id='version']")).to_have_value("v3")
    await expect(modal.locator("code")).to_have_text("blog")  # the context line's mrkdwn

    await modal.locator("input[data-action-id='version']").fill("3.0")
    await modal.locator("#modal-submit").click()
    error = modal.locator(".block-input.has-error .field-error")
    await expect(error).to_have_text("'3.0' is not a version", timeout=WAIT_MS)
    await expect(modal).to_be_visible()

    await modal.locator("input[data-action-id='version']").fill("v3.0")
    await modal.locator("#modal-submit").click()
    await expect(modal).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#messages")).to_contain_text("releasing blog v3.0", timeout=WAIT_MS)


async def test_a_modal_closed_with_cancel_is_gone(
    slack_sim: SlackSimulator, form_page_bot: list[dict[str, Any]], page: Page
) -> None:
    await page.fill("#command", "/release")
    await page.press("#command", "Enter")
    modal = page.locator("dialog#modal")
    await expect(modal).to_be_visible(timeout=WAIT_MS)
    await modal.locator("#modal-close").click()
    await expect(modal).to_be_hidden(timeout=WAIT_MS)
    assert slack_sim.workspace.views.modal_of(slack_sim.users["alice"]) is None


async def test_the_home_tab_is_drawn_when_opened(
    slack_sim: SlackSimulator, form_page_bot: list[dict[str, Any]], page: Page
) -> None:
    await page.select_option("#user", slack_sim.users["bob"])
    await page.locator("#home-link").click()
    home = page.locator("#home")
    await expect(home).to_be_visible()
    await expect(page.locator("#composer")).to_be_hidden()
    await expect(home).to_contain_text("Hello @bob: hexo runs v1.0 card", timeout=WAIT_MS)
    await expect(home.locator("b")).to_have_text("hexo")
    await expect(home.locator("a")).to_have_attribute("href", "https://example.com/card")
    assert form_page_bot[0]["user"] == slack_sim.users["bob"]
    # back to the channel
    await page.locator("#channels a").first.click()
    await expect(page.locator("#messages")).to_be_visible()
    await expect(home).to_be_hidden()
