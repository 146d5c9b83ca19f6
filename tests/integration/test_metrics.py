"""/metrics of a real `release-bot serve` after real work: a rolling release to success (with one
Slack 429 on the way), a refusal, read back in Prometheus' text format with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sandbox.slack import SlackSimulator
from tests.fixtures.bot import BotProcess, Bots, wait_card, wait_ephemeral

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(bot: BotProcess) -> tuple[str, Samples]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{bot.port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(
    bot: BotProcess, ready: Callable[[Samples], bool], timeout: float = 30
) -> tuple[str, Samples]:
    """Scrape until `ready(samples)`: the audit entry of a release's end is written just after the card
    shows it, and /metrics has nothing to wait on but polling (as Prometheus itself does)."""
    async with asyncio.timeout(timeout):
        while True:
            text, samples = await scrape(bot)
            if ready(samples):
                return text, samples
            await asyncio.sleep(0.1)


async def test_metrics_after_a_rolling_release(bots: Bots, slack_sim: SlackSimulator) -> None:
    bot = await bots.start()
    slack_sim.fault("chat.update", status=429)  # the first card update is rate limited, then retried
    player = slack_sim.player()
    try:
        assert (await player.command("alice", "hexo v2.0 --rolling")).status == 200
        await wait_card(slack_sim, "Succeeded")
        await slack_sim.wait_for(lambda: any(c.status == 429 for c in slack_sim.calls_to("chat.update")))
        assert (await player.command("mallory", "hexo v3.0")).status == 200
        await wait_ephemeral(slack_sim, "mallory", "Sorry")
    finally:
        await player.close()

    text, samples = await scrape_until(
        bot, lambda s: value(s, "release_bot_releases_total", strategy="rolling", outcome="succeeded") == 1
    )

    assert value(samples, "release_bot_releases_total", strategy="rolling", outcome="started") == 1
    assert value(samples, "release_bot_releases_total", strategy="rolling", outcome="succeeded") == 1
    assert value(samples, "release_bot_releases_total", strategy="rolling", outcome="failed") is None
    duration = dict(strategy="rolling", outcome="succeeded")
    assert value(samples, "release_bot_release_duration_seconds_count", **duration) == 1
    assert (value(samples, "release_bot_release_duration_seconds_sum", **duration) or 0) > 0
    assert value(samples, "release_bot_audit_events_total", action="release", outcome="succeeded") == 1
    refused = [
        v
        for (name, labels), v in samples.items()
        if name == "release_bot_audit_events_total" and ("outcome", "refused") in labels
    ]
    assert refused == [1.0]

    assert (
        value(samples, "release_bot_slack_api_calls_total", method="chat.postMessage", status="200") or 0
    ) > 0
    assert (value(samples, "release_bot_slack_api_calls_total", method="chat.update", status="200") or 0) > 0
    assert value(samples, "release_bot_slack_api_calls_total", method="chat.update", status="429") == 1
    assert value(samples, "release_bot_slack_api_ratelimited_total", method="chat.update") == 1
    # the same calls by Slack's own code: the 429 is `ratelimited`, mallory's refusal was answered `ok`
    assert (
        value(samples, "release_bot_slack_api_results_total", method="chat.update", error="ratelimited") == 1
    )
    assert (
        value(samples, "release_bot_slack_api_results_total", method="chat.postEphemeral", error="ok") or 0
    ) >= 1
    assert value(samples, "release_bot_slack_api_results_total", method="auth.test", error="ok") == 1

    # the first release of the app finds no lease yet: an expected 404, counted
    lease_404 = value(
        samples, "release_bot_kube_api_errors_total", resource="lease", status="404", cluster="default"
    )
    assert (lease_404 or 0) > 0
    assert value(samples, "release_bot_cluster_up", cluster="default") == 1
    assert all(
        dict(labels)["status"].isdigit() or dict(labels)["status"] == "unreachable"
        for (name, labels) in samples
        if name == "release_bot_kube_api_errors_total"
    )

    acks = value(samples, "release_bot_ack_seconds_count", mode="http", kind="slash_commands")
    assert acks == 2
    assert (value(samples, "release_bot_ack_seconds_sum", mode="http", kind="slash_commands") or 0) > 0
    for secret in (slack_sim.bot_token, slack_sim.signing_secret):
        assert secret not in text
