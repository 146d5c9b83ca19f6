"""The simulator's channel page in a real Chromium: commands, replies, threads, buttons, escaping.

The page talks only to the simulator; the simulator sends real signed requests to a real Bolt app
over loopback, and the Bolt app answers through the simulator's Web API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import SlackSimulator
from tests.integration.test_slack_sim import make_bolt_app, serve

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
