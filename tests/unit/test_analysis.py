"""Canary analysis: the catalog's `analysis`, the pure judging and tallying, the kubelet's simulated
traffic, the card's lines; and the engine against the in-memory cluster with a scripted Analyst (a
unit-test stand-in for Prometheus and the gates): good intervals auto-promote, a bad value rolls back
naming the metric, an unreachable Prometheus waits and never promotes, a promote gate that says no
keeps the canary where it is, and a pre-rollout gate that says no stops the release before any change."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.catalog import Analysis, Catalog, Metric, seconds
from bot.errors import ConfigError
from bot.releases import analysis, events
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.record import Phase, Record, Request
from bot.slack import cards
from commands.intents import Release, Strategy
from sandbox import hexo
from sandbox.kubelet import traffic
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.records import record
from tests.unit.test_engine import ALICE, BOB, NS, USERS, MemoryReporter, images, record_of, until

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
QUERY = {"address": "http://127.0.0.1:9090", "query": 'errors{version="{{ version }}"}'}
ERRORS: dict[str, Any] = {"name": "error-rate", "prometheus": QUERY, "max": 0.05}


def metric(**fields: Any) -> Metric:
    return Metric.model_validate({**ERRORS, **fields})


# --- the catalog ------------------------------------------------------------------------------------


def test_durations_and_the_analysis_catalog() -> None:
    assert [seconds(v) for v in ("30s", "2m", "1h", "500ms", 7, "1.5s")] == [30, 120, 3600, 0.5, 7, 1.5]
    a = Analysis.model_validate(
        {
            "interval": "2s",
            "auto_promote_after": 3,
            "metrics": [ERRORS],
            "webhooks": [
                {"name": "smoke", "url": "http://127.0.0.1:1/x", "phase": "promote", "timeout": "3s"}
            ],
        }
    )
    assert (a.interval, a.failure_limit, a.gates("promote")[0].timeout, a.checks_each_step) == (2, 1, 3, True)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"metrics": []}, "needs `metrics` or `webhooks`"),
        ({"metrics": [{**ERRORS, "max": None}]}, "give `max` or `min`"),
        ({"metrics": [{**ERRORS, "prometheus": {**QUERY, "query": "x{{ pod }}"}}]}, "unknown template"),
        ({"metrics": [ERRORS], "interval": "soon"}, "is not a duration"),
        ({"metrics": [ERRORS, ERRORS]}, "used twice"),
        ({"webhooks": [{"name": "w", "url": "ftp://x", "phase": "step"}]}, "url"),
        ({"webhooks": [{"name": "w", "url": "http://x", "phase": "later"}]}, "phase"),
    ],
)
def test_analysis_mistakes_are_named(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Catalog.from_mapping(hexo.catalog(NS, USERS, extra={"analysis": fields}))


# --- judging -----------------------------------------------------------------------------------------


def test_a_query_is_rendered_with_the_canary_s_facts() -> None:
    values = {"version": "v2.0", "namespace": "devops", "selector": analysis.selector("devops", ["b", "a"])}
    rendered = analysis.render('rate(x{ {{selector}}, version="{{ version }}"}[1m])', values)
    assert rendered == 'rate(x{ namespace="devops",pod=~"a|b", version="v2.0"}[1m])'
    assert analysis.selector("ns", []) == 'namespace="ns",pod=~"^$"'  # no pods: matches none


def test_readings_against_their_bounds() -> None:
    assert analysis.judge(metric(), 0.01).ok is True
    bad = analysis.judge(metric(), 0.2, trend=(0.0, 0.1))
    assert (bad.ok, bad.trend, analysis.describe(bad)) == (
        False,
        (0.0, 0.1, 0.2),
        "error-rate 0.2 (max 0.05)",
    )
    nodata = analysis.judge(metric(), math.nan)
    assert (nodata.ok, analysis.describe(nodata)) == (
        None,
        "error-rate: the query's value is NaN (no traffic?) (max 0.05)",
    )
    latency = metric(name="p99", max=0.5, min=0.1)
    assert analysis.judge(latency, 0.05).ok is False and analysis.judge(latency, 0.3).ok is True
    assert analysis.worst([0.1, 0.3, math.nan], metric()) == 0.3
    assert analysis.worst([math.nan], metric()) is None
    said_no = analysis.gate("smoke", False, "p95 too high")
    assert analysis.describe(said_no) == "gate smoke said no: p95 too high"


def test_the_tally_counts_good_intervals_in_a_row_and_failures() -> None:
    a = Analysis.model_validate({"metrics": [ERRORS], "failure_limit": 2, "auto_promote_after": 2})
    good, bad, unknown = (
        analysis.judge(metric(), 0.0),
        analysis.judge(metric(), 0.3),
        analysis.judge(metric(), None, "down"),
    )
    t = analysis.tally(None, 0, [good], NOW)
    assert (t.good, t.failures, analysis.verdict(t, a)) == (1, 0, None)
    t = analysis.tally(t, 0, [unknown], NOW + timedelta(seconds=1))
    assert (t.good, t.waiting, t.judged_at) == (0, "error-rate: down", NOW)  # never counts as good
    t = analysis.tally(t, 0, [good], NOW + timedelta(seconds=2))
    t = analysis.tally(t, 0, [good], NOW + timedelta(seconds=3))
    assert analysis.verdict(t, a) == "promote"
    t = analysis.tally(t, 0, [bad], NOW + timedelta(seconds=4))
    t = analysis.tally(t, 0, [bad], NOW + timedelta(seconds=5))
    assert (t.failures, analysis.verdict(t, a)) == (2, "fail")
    assert (
        analysis.failure_reason(t, a)
        == "analysis failed (2 of 2 allowed failures): error-rate 0.3 (max 0.05)"
    )
    assert analysis.tally(t, 1, [good], NOW).failures == 0  # a new step starts over


def test_the_card_shows_each_reading_and_why_it_waits() -> None:
    record = record_at_canary()
    t = analysis.tally(
        None,
        0,
        [
            analysis.judge(metric(), 0.2, trend=(0.01, 0.1)),
            analysis.judge(metric(name="p99"), None, "Prometheus at x is unreachable"),
        ],
        NOW,
    )
    text = "\n".join(cards.analysis_lines(record.model_copy(update={"analysis": t})))
    assert "*Analysis* (step 1): 0 good in a row, 1 failed" in text
    assert ":x: error-rate 0.2 (max 0.05) · 0.01 → 0.1 → 0.2" in text
    assert ":grey_question: p99: Prometheus at x is unreachable (max 0.05)" in text
    assert cards.analysis_lines(record) == []


def record_at_canary() -> Record:
    return record(phase=Phase.CANARY, strategy=Strategy.CANARY)


# --- the kubelet's traffic ------------------------------------------------------------------------------


def test_the_simulated_traffic_by_image_tag() -> None:
    start = NOW - timedelta(seconds=10)
    pods = [
        traffic.Serving("devops", "good", "hexo-server", "r/nginx:v2.0", start),
        traffic.Serving("devops", "bad", "hexo-server", "r/nginx:v2.0-errors", start),
        traffic.Serving("devops", "slow", "hexo-server", "r/nginx:v2.0-slow", start),
        traffic.Serving("devops", "dead", "hexo-server", "r/nginx:v2.0-broken", start),
        traffic.Serving("devops", "later", "hexo-server", "r/nginx:v2.0", NOW + timedelta(seconds=5)),
    ]
    text = traffic.exposition(pods, NOW)
    assert (
        'sandbox_http_requests_total{namespace="devops",pod="good",app="hexo-server",version="v2.0",code="200"} 100'
        in text
    )
    assert 'pod="bad",app="hexo-server",version="v2.0-errors",code="500"} 20' in text
    assert 'pod="bad",app="hexo-server",version="v2.0-errors",code="200"} 80' in text
    assert (
        'sandbox_http_request_duration_seconds_bucket{namespace="devops",pod="slow",app="hexo-server",version="v2.0-slow",le="0.5"} 0'
        in text
    )
    assert 'pod="slow",app="hexo-server",version="v2.0-slow",le="1.0"} 100' in text
    assert 'pod="good",app="hexo-server",version="v2.0",le="0.1"} 100' in text
    assert 'pod="dead"' not in text and 'pod="later",app="hexo-server",version="v2.0",code="200"} 0' in text


# --- the engine, with a scripted analyst ---------------------------------------------------------------


class Scripted:
    """Answers queries with the next of `values` (a str: Prometheus could not be asked, with why) and
    gates by name with `gates` (default yes)."""

    def __init__(self, values: list[float | str], gates: dict[str, tuple[bool, str]] | None = None) -> None:
        self.values = values
        self.gates = gates or {}
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.queries: list[str] = []

    async def query(self, address: str, promql: str, timeout: float) -> tuple[list[float], str]:
        self.queries.append(promql)
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        return ([], value) if isinstance(value, str) else ([value], "")

    async def ask(self, url: str, payload: dict[str, Any], timeout: float) -> tuple[bool, str]:
        name = url.rsplit("/", 1)[1]
        self.asked.append((name, payload))
        return self.gates.get(name, (True, ""))


def catalog(**fields: Any) -> Catalog:
    a = {"interval": 0.1, "metrics": [ERRORS], **fields}
    return Catalog.from_mapping(hexo.catalog(NS, USERS, extra={"analysis": a, "canary": {"steps": [1]}}))


@pytest.fixture
def cluster() -> MemoryCluster:
    c = MemoryCluster()
    c.add_app(NS)
    return c


async def engine_of(cluster: MemoryCluster, cat: Catalog, analyst: Scripted) -> Engine:
    engine = Engine(
        cluster,
        cat,
        MemoryReporter(),
        identity="unit",
        lease_seconds=15,
        audit=Auditor(cluster),
        analyst=analyst,
    )
    await engine.start(sync_timeout=1)
    return engine


CANARY = Release(app="hexo", version="v2.0", strategy=Strategy.CANARY)


async def test_good_intervals_promote_by_themselves(cluster: MemoryCluster) -> None:
    analyst = Scripted([0.0])
    engine = await engine_of(cluster, catalog(auto_promote_after=3), analyst)
    try:
        await engine.begin(CANARY, ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED and images(cluster) == {"v2.0": 6}
    assert any(
        isinstance(e, events.Acted) and e.action == "auto-promote" and "3 good analyses" in e.detail
        for e in done.notes
    )
    assert analyst.queries[0] == 'errors{version="v2.0"}'


async def test_a_bad_value_rolls_back_naming_the_metric(cluster: MemoryCluster) -> None:
    engine = await engine_of(cluster, catalog(auto_promote_after=3), Scripted([0.0, 0.3]))
    try:
        await engine.begin(CANARY, ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.ROLLED_BACK and images(cluster) == {"v1.0": 6}
    assert "error-rate 0.3 (max 0.05)" in (done.reason or "")
    failed = [e for e in done.notes if isinstance(e, events.Analysed) and e.outcome == "failed"]
    assert failed and failed[0].detail == "error-rate 0.3 (max 0.05)"


async def test_an_unreachable_prometheus_waits_and_never_promotes(cluster: MemoryCluster) -> None:
    down = "Prometheus at http://127.0.0.1:9090 is unreachable"
    analyst = Scripted([down] * 8 + [0.0])
    engine = await engine_of(cluster, catalog(auto_promote_after=2), analyst)
    try:
        await engine.begin(CANARY, ALICE, "C1", "releases")
        waiting = await until(cluster, lambda r: r.analysis is not None and r.analysis.intervals >= 5)
        assert waiting.phase is Phase.CANARY and waiting.analysis is not None and waiting.analysis.good == 0
        assert waiting.analysis.waiting == f"error-rate: {down}"
        text = "\n".join(cards.analysis_lines(waiting))
        assert f":hourglass: Waiting: error-rate: {down}. It never promotes meanwhile." in text
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED
    said = [e.outcome for e in done.notes if isinstance(e, events.Analysed)]
    assert said == ["waiting", "resumed"]


async def test_a_promote_gate_that_says_no_keeps_the_canary(cluster: MemoryCluster) -> None:
    gates = {"confirm": (False, "the on-call says wait")}
    hook = [{"name": "confirm", "url": "http://127.0.0.1:1/confirm", "phase": "promote"}]
    analyst = Scripted([0.0], gates)
    engine = await engine_of(cluster, catalog(webhooks=hook), analyst)
    try:
        await engine.begin(CANARY, ALICE, "C1", "releases")
        at = await until(cluster, lambda r: events.canary_healthy(r.notes, 0) is not None)
        await engine.request("hexo", Request.PROMOTE, BOB)
        refused = await until(cluster, lambda r: any(isinstance(e, events.GateRefused) for e in r.notes))
        assert refused.phase is Phase.CANARY and refused.step == at.step and refused.request is None
        note = next(e for e in refused.notes if isinstance(e, events.GateRefused))
        assert (note.gate, note.phase, note.said) == ("confirm", "promote", "the on-call says wait")
        said = cards.gate_refused_line(refused)
        assert said == ":no_entry: *Gate `confirm` said no* to the promotion: the on-call says wait"
        assert analyst.asked[0][1]["phase"] == "promote" and analyst.asked[0][1]["to_version"] == "v2.0"
        analyst.gates["confirm"] = (True, "")
        await engine.request("hexo", Request.PROMOTE, BOB)
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.SUCCEEDED
    assert cards.gate_refused_line(done) == ""  # promoted since: the card no longer says it


async def test_a_pre_rollout_gate_that_says_no_changes_nothing(cluster: MemoryCluster) -> None:
    hook = [{"name": "freeze-check", "url": "http://127.0.0.1:1/freeze-check", "phase": "pre-rollout"}]
    before = cluster.objects["deployments"][(NS, "hexo")]["metadata"].get("resourceVersion")
    engine = await engine_of(cluster, catalog(webhooks=hook), Scripted([0.0], {"freeze-check": (False, "")}))
    try:
        await engine.begin(CANARY, ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    assert done.phase is Phase.ABORTED and done.reason == "not started: gate freeze-check said no"
    assert cluster.objects["deployments"][(NS, "hexo")]["metadata"].get("resourceVersion") == before
    assert images(cluster) == {"v1.0": 6}
    assert record_of(cluster).id == done.id


async def test_green_is_judged_before_the_switch(cluster: MemoryCluster) -> None:
    analyst = Scripted(["Prometheus at x is unreachable", 0.3])
    engine = await engine_of(cluster, catalog(), analyst)
    try:
        await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.BLUEGREEN), ALICE, "C1", "r")
        await until(cluster, lambda r: r.phase is Phase.AWAITING_SWITCH)
        await engine.request("hexo", Request.PROMOTE, BOB)
        done = await until(cluster, lambda r: r.finished)
    finally:
        await engine.stop(0)
    # one interval could not be judged (no switch), the next failed: green goes, traffic never moved
    assert done.phase is not Phase.SUCCEEDED and "error-rate 0.3 (max 0.05)" in (done.reason or "")
    assert cluster.objects["services"][(NS, "hexo-service")]["spec"]["selector"]["version"] == "v1.0"
    assert done.analysis is not None and done.analysis.intervals == 2
