"""What a person does in the sandbox: on the channel page, in a real Chromium, type
`/release hexo v2.0 --canary` as alice, watch the card, confirm Promote as bob, see it succeed; and
mallory's click is refused privately. Or type `/release` alone, fill in the release form (a bad
version is refused under its field), submit it, and see the release on the app's Home tab. The real
bot process and control plane are behind the page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, pods_by_image

pytestmark = pytest.mark.integration
WAIT_MS = 60_000


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser, slack_sim: SlackSimulator) -> AsyncIterator[Page]:
    context = await browser.new_context()
    tab = await context.new_page()
    try:
        yield tab
    finally:
        await context.close()


async def test_canary_from_the_channel_page(
    bots: Bots, slack_sim: SlackSimulator, page: Page, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await page.goto(slack_sim.page_url)
    await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)

    await page.select_option("#user", slack_sim.users["alice"])
    await page.fill("#command", "/release hexo v2.0 --canary")
    await page.press("#command", "Enter")
    card = page.locator("#messages > .message:not(.ephemeral)").first
    await expect(card.locator(".block-header")).to_contain_text("Release hexo v1.0 → v2.0", timeout=WAIT_MS)
    promote = card.locator("button[data-action-id='release:promote']")
    await expect(promote).to_be_visible(timeout=WAIT_MS)
    await expect(card).to_contain_text("1 new (ready) + 6 old", timeout=WAIT_MS)
    await expect(card.locator("button[data-action-id='release:rollback']")).to_have_class("btn danger")

    # mallory may not promote: a private refusal, nothing changes
    await page.select_option("#user", slack_sim.users["mallory"])
    await promote.click()
    await page.locator("dialog#confirm #confirm-ok").click()
    await expect(page.locator(".message.ephemeral")).to_contain_text("not allowed", timeout=WAIT_MS)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}

    await page.select_option("#user", slack_sim.users["bob"])
    await promote.click()
    await page.locator("dialog#confirm #confirm-ok").click()
    await expect(card).to_contain_text("Succeeded", timeout=WAIT_MS)
    await expect(card.locator("button")).to_have_count(0)
    await expect(card.locator(".thread .message").last).to_contain_text("now runs", timeout=WAIT_MS)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_release_form_and_home_tab_from_the_page(
    bots: Bots, slack_sim: SlackSimulator, page: Page, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await page.goto(slack_sim.page_url)
    await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)
    await page.select_option("#user", slack_sim.users["alice"])

    await page.fill("#command", "/release")
    await page.press("#command", "Enter")
    modal = page.locator("dialog#modal")
    await expect(modal).to_be_visible(timeout=WAIT_MS)
    await expect(modal).to_contain_text("runs v1.0 now", timeout=WAIT_MS)  # filled in after it opened
    await expect(modal.locator("select[data-action-id='form:app']")).to_have_value("hexo")
    strategy = modal.locator("select[data-action-id='form:strategy']")
    await expect(strategy).to_have_value("rolling")

    await modal.locator("input[data-action-id='form:version']").fill("v2.0 --canary")
    await modal.locator("#modal-submit").click()
    await expect(modal.locator(".field-error")).to_contain_text("is not a valid version", timeout=WAIT_MS)
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}

    await modal.locator("input[data-action-id='form:version']").fill("v2.0")
    await strategy.select_option("canary")
    await modal.locator("#modal-submit").click()
    await expect(modal).to_be_hidden(timeout=WAIT_MS)
    card = page.locator("#messages > .message:not(.ephemeral)").first
    await expect(card.locator(".block-header")).to_contain_text("Release hexo v1.0 → v2.0", timeout=WAIT_MS)
    await expect(card.locator("button[data-action-id='release:promote']")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator(".message.ephemeral")).to_contain_text("follow the card", timeout=WAIT_MS)

    await page.locator("#home-link").click()
    home = page.locator("#home")
    await expect(home).to_contain_text("Your apps", timeout=WAIT_MS)
    await expect(home).to_contain_text("Releasing now: v1.0 → v2.0 (canary) by @alice", timeout=WAIT_MS)
    await expect(home.locator("a", has_text="card")).to_have_attribute("href", re.compile(r"^https://"))
