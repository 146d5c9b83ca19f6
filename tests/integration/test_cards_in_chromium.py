"""Release cards as people read them: the real bot and control plane behind the simulator's channel
page, in a real (headless) Chromium. Every check is on the text the page rendered (innerText of the
card or of the confirm dialog), and each test saves screenshots of what it read under its tmp_path.

The page renders Slack's dates (`<!date^unix^{ago}|fallback>` and the other tokens) like Slack does,
in the reader's time zone, and keeps `{ago}` moving by itself; the last test checks that on a fixed
clock, with a message posted through the simulator's Web API.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import Bots, command, kubectl_json, pods_by_image, record_of

pytestmark = pytest.mark.integration
WAIT_MS = 60_000
STARTED_AGO = re.compile(r"started (?:a few seconds|a minute|\d+ minutes) ago")


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 1000}, timezone_id="UTC")
    tab = await context.new_page()
    try:
        yield tab
    finally:
        await context.close()


async def open_channel(page: Page, sim: SlackSimulator) -> None:
    await page.goto(sim.page_url)
    await page.wait_for_selector("body[data-ready='1']", timeout=WAIT_MS)


def card_on(page: Page) -> Locator:
    """The release card's own blocks (its thread excluded)."""
    return page.locator("#messages > .message:not(.ephemeral)").first.locator(":scope > .body")


async def shot(target: Page | Locator, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    await target.screenshot(path=str(path))
    assert path.stat().st_size > 0
    return path


async def test_a_canary_card_reads_at_a_glance(
    bots: Bots, slack_sim: SlackSimulator, page: Page, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    await bots.start()
    await open_channel(page, slack_sim)
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = card_on(page)
    await expect(card).to_contain_text("Canary healthy, waiting for Promote", timeout=WAIT_MS)
    await shot(card, tmp_path, "canary-healthy")
    text = await card.inner_text()
    assert "Canary 1 new (ready) + 6 old pods" in text
    assert STARTED_AGO.search(text), text
    assert re.search(r"under watch since it became ready (?:a few seconds|a minute|\d+ minutes) ago", text)
    assert "7 pods for 6 wanted (1 extra while the canary runs)" in text
    assert "7/6" not in text and "{ago}" not in text and "!date" not in text
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}
    thread = page.locator("#messages > .message:not(.ephemeral) .thread")
    await expect(thread).to_contain_text("Canary healthy: 1 new pod ready beside 6 old.", timeout=WAIT_MS)

    # Promote says how far it goes, in the dialog the page opens.
    await page.select_option("#user", slack_sim.users["bob"])
    await card.locator("button[data-action-id='release:promote']").click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog.locator("#confirm-title")).to_have_text("Promote to all pods?")
    await shot(page, tmp_path, "canary-promote-confirm")
    assert (await dialog.locator("#confirm-text").inner_text()).startswith(
        "Run v2.0 on all 6 pods: the rollout resumes and replaces the v1.0 pods"
    )
    await dialog.locator("#confirm-ok").click()

    await expect(card).to_contain_text("Succeeded in", timeout=WAIT_MS)
    await shot(card, tmp_path, "canary-succeeded")
    text = await card.inner_text()
    assert re.search(r"Succeeded in (?:\d+ min )?\d+ s", text), text
    assert "started" in text and " ago" not in text  # the exact duration, not a moving time
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_the_blue_green_buttons_say_what_they_do(
    bots: Bots, slack_sim: SlackSimulator, page: Page, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    ns = bots.namespace
    await bots.start()
    await open_channel(page, slack_sim)
    await command(slack_sim, "alice", "hexo v2.0 --bluegreen")
    card = card_on(page)
    switch = card.locator("button[data-action-id='release:promote']")
    await expect(switch).to_have_text("Switch traffic", timeout=WAIT_MS)
    await shot(card, tmp_path, "bluegreen-ready")
    assert STARTED_AGO.search(await card.inner_text())

    await page.select_option("#user", slack_sim.users["bob"])
    await switch.click()
    dialog = page.locator("dialog#confirm")
    await expect(dialog.locator("#confirm-title")).to_have_text("Switch traffic?")
    await shot(page, tmp_path, "bluegreen-switch-confirm")
    assert await dialog.locator("#confirm-text").inner_text() == (
        "Send all traffic of Service hexo-service to green hexo-green (v2.0); blue hexo (v1.0) keeps "
        "running for an instant rollback."
    )
    await expect(dialog.locator("#confirm-ok")).to_have_text("Switch traffic")
    await dialog.locator("#confirm-deny").click()
    await expect(dialog).to_be_hidden()
    # Cancel sent nothing: traffic is still on blue.
    service = kubectl_json(control_plane, "-n", ns, "get", "service", "hexo-service")
    assert service["spec"]["selector"]["version"] == "v1.0"
    assert record_of(control_plane, ns)["phase"] == "awaiting-switch"

    await switch.click()
    await dialog.locator("#confirm-ok").click()
    finish = card.locator("button[data-action-id='release:finish']")
    await expect(finish).to_be_visible(timeout=WAIT_MS)
    text = await card.inner_text()
    assert re.search(r"traffic on green, switched (?:a few seconds|a minute) ago", text), text
    await page.select_option("#user", slack_sim.users["alice"])
    await finish.click()
    await expect(dialog.locator("#confirm-title")).to_have_text("Finish now?")
    assert (await dialog.locator("#confirm-text").inner_text()).startswith(
        "Retire blue hexo (v1.0) now (scaled to 0), not at the end of the grace period"
    )
    await dialog.locator("#confirm-ok").click()
    await expect(card).to_contain_text("Succeeded in", timeout=WAIT_MS)
    await shot(card, tmp_path, "bluegreen-succeeded")
    assert kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")["spec"]["replicas"] == 0


NOW = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)  # a Wednesday


def date(t: datetime, tokens: str, link: str = "") -> str:
    return f"<!date^{int(t.timestamp())}^{tokens}{'^' + link if link else ''}|fallback {t:%H:%M}>"


async def test_the_page_renders_slack_dates_and_keeps_ago_moving(
    slack_sim: SlackSimulator, page: Page, tmp_path: Path
) -> None:
    await page.clock.set_fixed_time(NOW)
    await open_channel(page, slack_sim)
    then = NOW - timedelta(seconds=30)
    text = " | ".join(
        [
            date(then, "{date_num}"),
            date(then, "{date}"),
            date(then, "{date_short}"),
            date(then, "{date_long}"),
            date(then, "{date_pretty} at {time}"),
            date(then - timedelta(days=1), "{date_short_pretty} {time_secs}"),
            date(then, "started {ago}"),
            date(then + timedelta(hours=2), "{ago}"),
            date(then, "{nope}"),
            "<!date^soon^{date}|the fallback>",
        ]
    )
    async with aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=slack_sim.bot_token, base_url=slack_sim.api_url, session=session)
        posted = await client.chat_postMessage(channel=slack_sim.channels["releases"], text=text)
        await client.chat_postMessage(
            channel=slack_sim.channels["releases"],
            text="linked " + date(then, "{date_num}", "https://example.com/release"),
        )
    assert posted["ok"]
    body = page.locator("#messages > .message .body").first
    await expect(body).to_have_text(
        "2024-05-01 | May 1st, 2024 | May 1, 2024 | Wednesday, May 1st, 2024 | today at 12:00 PM | "
        "yesterday 12:00:00 PM | started a few seconds ago | in 2 hours | {nope} | the fallback",
        timeout=WAIT_MS,
    )
    link = page.locator("#messages > .message .body a.date")
    await expect(link).to_have_text("2024-05-01")
    await expect(link).to_have_attribute("href", "https://example.com/release")
    await shot(page, tmp_path, "dates")

    # Time passes: `{ago}` moves by itself, without a new message or a reload.
    await page.clock.set_fixed_time(NOW + timedelta(minutes=2, seconds=30))
    await expect(body).to_contain_text("started 3 minutes ago | in 2 hours", timeout=WAIT_MS)
    await shot(page, tmp_path, "dates-later")
