"""bot.metrics: label helpers, one registry per Metrics object, what each feeding method counts, and
the aiohttp TraceConfig against a loopback server answering 200 and 429."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import REGISTRY

from bot.metrics import (
    Metrics,
    label,
    outcome_of,
    payload_kind,
    release_outcome,
    slack_method,
    watch_loop_lag,
)


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        ("started", "started"),
        ("succeeded in 12.3 s", "succeeded"),
        ("failed: ProgressDeadlineExceeded (2 pods crash-looping)", "failed"),
        ("rolled back to v1.0", "rolled_back"),
        ("refused: mallory may not release hexo", "refused"),
        ("promoted to step 2", "promoted"),
        ("", "unknown"),
        ("<!channel> 💥", "channel"),
    ],
)
def test_outcome_of(result: str, outcome: str) -> None:
    assert outcome_of(result) == outcome


def test_release_outcome_only_for_lifecycle_events() -> None:
    assert release_outcome("release", "started") == "started"
    assert release_outcome("release", "succeeded in 3.0 s") == "succeeded"
    assert release_outcome("release", "failed: x") == "failed"
    assert release_outcome("rollback", "rolled back to v1.0") == "rolled_back"
    assert release_outcome("promote", "promoted to step 1") is None
    assert release_outcome("refused release", "refused: no") is None
    assert release_outcome("release", "weird") is None


def test_label_is_bounded_and_safe() -> None:
    assert label("Refused Release") == "refused_release"
    assert label("rolling") == "rolling"
    assert label("blue-green") == "blue_green"
    assert label('x"} 1\nevil{') == "x_evil"
    assert len(label("a" * 500)) == 40
    assert label("123", default="none") == "none"


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/chat.postMessage", "chat.postMessage"),
        ("/slack/api/chat.update", "chat.update"),
        ("/hooks/response/abc", "other"),
        ("/api/", "other"),
        ("/api/../../etc", "other"),
    ],
)
def test_slack_method(path: str, method: str) -> None:
    assert slack_method(path) == method


def test_payload_kind_names_socket_mode_envelope_types() -> None:
    assert payload_kind({"command": "/release", "text": "help"}) == "slash_commands"
    assert payload_kind({"type": "block_actions", "actions": []}) == "interactive"
    assert payload_kind({"type": "view_submission"}) == "interactive"
    assert payload_kind({"type": "event_callback", "event": {}}) == "events_api"
    assert payload_kind({"type": "url_verification"}) == "events_api"
    assert payload_kind({}) == "unknown"


def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.audited("release", "started", strategy="rolling")
    assert a.value("release_bot_releases_total", {"strategy": "rolling", "outcome": "started"}) == 1
    assert b.value("release_bot_releases_total", {"strategy": "rolling", "outcome": "started"}) is None
    assert (
        REGISTRY.get_sample_value("release_bot_releases_total", {"strategy": "rolling", "outcome": "started"})
        is None
    )


def test_audited_counts_outcomes_strategies_and_durations() -> None:
    m = Metrics()
    m.audited("release", "started", strategy="canary")
    m.audited("promote", "promoted to step 1", strategy=None)
    m.audited("release", "succeeded in 42.0 s", strategy="canary", duration=42.0)
    m.audited("refused release", "refused: nope", strategy=None)
    m.audited("rollback", "rolled back to v1.0", strategy=None, duration=7.0)

    def releases(strategy: str, outcome: str) -> float | None:
        return m.value("release_bot_releases_total", {"strategy": strategy, "outcome": outcome})

    assert releases("canary", "started") == 1
    assert releases("canary", "succeeded") == 1
    assert releases("unknown", "rolled_back") == 1
    labels = {"strategy": "canary", "outcome": "succeeded"}
    assert m.value("release_bot_release_duration_seconds_count", labels) == 1
    assert m.value("release_bot_release_duration_seconds_sum", labels) == 42.0
    assert m.value("release_bot_release_duration_seconds_bucket", {**labels, "le": "60.0"}) == 1
    assert m.value("release_bot_release_duration_seconds_bucket", {**labels, "le": "30.0"}) == 0
    assert m.value("release_bot_audit_events_total", {"action": "refused_release", "outcome": "refused"}) == 1
    assert m.value("release_bot_audit_events_total", {"action": "promote", "outcome": "promoted"}) == 1
    started = {"strategy": "canary", "outcome": "started"}
    assert m.value("release_bot_release_duration_seconds_count", started) is None


def test_kube_errors_and_acks() -> None:
    m = Metrics()
    m.kube_error("configmap devops/release-bot.hexo", 404)
    m.kube_error("configmap devops/release-bot.hexo", 409)
    m.kube_error("deployment devops/hexo", None, "prod")
    here = {"cluster": "default"}
    assert (
        m.value("release_bot_kube_api_errors_total", {"resource": "configmap", "status": "404", **here}) == 1
    )
    assert (
        m.value("release_bot_kube_api_errors_total", {"resource": "configmap", "status": "409", **here}) == 1
    )
    unreachable = {"resource": "deployment", "status": "unreachable", "cluster": "prod"}
    assert m.value("release_bot_kube_api_errors_total", unreachable) == 1
    m.ack("http", "slash_commands", 0.02)
    m.ack("socket", "interactive", 0.2)
    assert m.value("release_bot_ack_seconds_count", {"mode": "http", "kind": "slash_commands"}) == 1
    assert (
        m.value("release_bot_ack_seconds_bucket", {"mode": "socket", "kind": "interactive", "le": "0.25"})
        == 1
    )
    text = m.render().decode()
    assert "# TYPE release_bot_ack_seconds histogram" in text
    assert (
        'release_bot_kube_api_errors_total{cluster="default",resource="configmap",status="404"} 1.0' in text
    )


@pytest_asyncio.fixture(loop_scope="session")
async def fake_slack() -> AsyncIterator[str]:
    async def api(request: web.Request) -> web.Response:
        if request.match_info["method"] == "chat.update":
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/{method}", api)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/"
    finally:
        await runner.cleanup()


async def test_trace_config_counts_calls_and_429s(fake_slack: str) -> None:
    m = Metrics()
    async with aiohttp.ClientSession(trace_configs=[m.slack_trace_config()]) as session:
        for method in ("auth.test", "chat.update", "chat.update"):
            async with session.post(fake_slack + method) as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientError):
            async with session.post("http://127.0.0.1:1/api/chat.postMessage"):
                pass
    assert m.value("release_bot_slack_api_calls_total", {"method": "auth.test", "status": "200"}) == 1
    assert m.value("release_bot_slack_api_calls_total", {"method": "chat.update", "status": "429"}) == 2
    assert m.value("release_bot_slack_api_ratelimited_total", {"method": "chat.update"}) == 2
    assert (
        m.value("release_bot_slack_api_calls_total", {"method": "chat.postMessage", "status": "error"}) == 1
    )


def test_slack_results_are_labelled_by_slacks_code() -> None:
    m = Metrics()
    m.slack_result("chat.postMessage", "ok")
    m.slack_result("chat.postMessage", "not_in_channel")
    m.slack_result("chat.postMessage", "not_in_channel")
    m.slack_result("response_url", "used_url")
    m.slack_result("chat.update", "http_503")
    m.slack_result("chat.update", "<b>Not Slack</b>")  # an answer that is no Slack code
    m.slack_result("../../etc", "ok")
    value = m.value
    assert value("release_bot_slack_api_results_total", {"method": "chat.postMessage", "error": "ok"}) == 1
    assert (
        value(
            "release_bot_slack_api_results_total", {"method": "chat.postMessage", "error": "not_in_channel"}
        )
        == 2
    )
    assert value("release_bot_slack_api_results_total", {"method": "response_url", "error": "used_url"}) == 1
    assert value("release_bot_slack_api_results_total", {"method": "chat.update", "error": "http_503"}) == 1
    assert value("release_bot_slack_api_results_total", {"method": "chat.update", "error": "other"}) == 1
    assert value("release_bot_slack_api_results_total", {"method": "other", "error": "ok"}) == 1


async def test_event_loop_lag_is_sampled_and_its_worst_kept() -> None:
    metrics = Metrics()
    sampler = asyncio.create_task(watch_loop_lag(metrics, period=0.01))
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.1)  # the loop blocked: the next sample is about 0.1 s late
        await asyncio.sleep(0.03)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    worst = metrics.registry.get_sample_value("release_bot_event_loop_lag_max_seconds")
    count = metrics.registry.get_sample_value("release_bot_event_loop_lag_seconds_count")
    assert worst is not None and worst >= 0.08
    assert count is not None and count >= 3
