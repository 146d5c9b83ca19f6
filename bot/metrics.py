"""The bot's Prometheus metrics: what `/metrics` shows, and the small helpers that feed it.

Owns one `CollectorRegistry` per `Metrics` object (never prometheus_client's global registry), so a
test or the sandbox can run several bots in one process without their numbers mixing, and the names,
labels and buckets of every series in one place:

- `release_bot_releases_total{strategy,outcome}`: release lifecycle events (started, succeeded,
  failed, rolled_back, aborted, ...), counted from the audit trail;
- `release_bot_release_duration_seconds{strategy,outcome}`: from the record's creation to its end,
  observed once per finished release;
- `release_bot_audit_events_total{action,outcome}`: every audited action, refusals included;
- `release_bot_slack_api_results_total{method,error}`: every answer of the Slack Web API (and of
  response_url) by Slack's own code: `ok`, or the `error` Slack answered (`ratelimited`,
  `not_in_channel`, `token_revoked`, ...), `http_<status>` for an answer that is not Slack's JSON
  and `unreachable` for none. Slack answers its errors with HTTP 200, so this is the series that
  tells a refusal from a success; it is fed by `bot.slack.health.Observer`;
- `release_bot_slack_api_calls_total{method,status}` and `release_bot_slack_api_ratelimited_total{method}`:
  every HTTP attempt on the bot's Slack session by HTTP status (retries after a 429 count again), via
  an aiohttp TraceConfig, so nothing in slack_sdk has to be patched;
- `release_bot_kube_api_requests_total{kind,cluster}` and
  `release_bot_kube_api_errors_total{resource,status,cluster}`: Kubernetes API requests, and the failed
  ones (404 and 409 are part of normal operation: a missing record, a lost compare-and-set), by the
  cluster's name in the catalog (`default` for the process's own);
- `release_bot_cluster_up{cluster}`: 1 while the cluster's API server answers, 0 while it does not;
- `release_bot_ack_seconds{mode,kind}`: from receiving a Slack request (HTTP) or envelope (Socket Mode)
  to the ack, the number Slack's 3-second limit is about;
- `release_bot_slack_rejected_total{reason}`: requests to /slack/events refused before Bolt saw them
  (bad signature, malformed body, too large, ...; the reasons are `bot.slack.edge`'s fixed labels);
- `release_bot_event_loop_lag_seconds` and `release_bot_event_loop_lag_max_seconds`: how late the
  event loop runs a half-second timer (`watch_loop_lag`), the delay everything in the process shares.

Label values are bounded (sanitised, truncated words) so no user input can grow the series count.
This module imports no Slack or Kubernetes library (checked by import-linter).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds. Slack gives an ack 3 s; the interesting part is well below that.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
# Seconds. A rolling release of a few pods takes tens of seconds; a canary can wait hours for Promote.
RELEASE_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

# Seconds. A loop that answers acks in milliseconds lags well under 10 ms; above 100 ms it is busy.
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_LAG_PERIOD_S = 0.5

TERMINAL_OUTCOMES = frozenset({"succeeded", "failed", "rolled_back", "aborted", "finished"})
RELEASE_ACTIONS = frozenset({"release", "rollback", "abort", "finish"})

_WORD = re.compile(r"[a-z][a-z_]*")
_API_METHOD = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,63}$")
_LABEL_MAX = 40
_SLACK_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # Slack's error codes: not_in_channel, http_503, ...


def label(value: str, default: str = "unknown") -> str:
    """A bounded label value: lower-case letters and underscores, at most 40 characters."""
    words = _WORD.findall(value.lower().replace(" ", "_").replace("-", "_"))
    text = "_".join(w.strip("_") for w in words if w.strip("_"))
    return text[:_LABEL_MAX] or default


def outcome_of(result: str) -> str:
    """The outcome an audit `result` string reports: "succeeded in 12.3 s" -> "succeeded",
    "failed: ProgressDeadlineExceeded" -> "failed", "rolled back to v1.0" -> "rolled_back",
    "refused: not allowed" -> "refused"."""
    text = result.strip().lower()
    if text.startswith("rolled back"):
        return "rolled_back"
    head = re.split(r"[\s:;,(]", text, maxsplit=1)[0]
    return label(head)


def release_outcome(action: str, result: str) -> str | None:
    """The release lifecycle event an audit entry is, or None when it is not one (promote, refusals)."""
    if action not in RELEASE_ACTIONS:
        return None
    outcome = outcome_of(result)
    if action == "release" and outcome in ("started", "succeeded", "failed"):
        return outcome
    if action == "rollback" and outcome == "rolled_back":
        return outcome
    if action in ("abort", "finish") and outcome in ("aborted", "finished"):
        return outcome
    return None


def slack_method(url_path: str) -> str:
    """The Web API method named by a request path ("/api/chat.update" -> "chat.update"), or "other"
    (response_url hooks, anything unexpected)."""
    _, sep, method = url_path.rpartition("/api/")
    return method if sep and _API_METHOD.match(method) else "other"


def payload_kind(body: Mapping[str, Any]) -> str:
    """What Slack sent, named as Socket Mode envelope types name it: slash_commands, interactive
    (block_actions, view_submission, shortcuts, ...) or events_api."""
    if "command" in body:
        return "slash_commands"
    kind = body.get("type")
    if kind in ("event_callback", "url_verification", "app_rate_limited"):
        return "events_api"
    if isinstance(kind, str) and kind:
        return "interactive"
    return "unknown"


class Metrics:
    """Every series the bot exports, registered in this object's own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.loop_lag = Histogram(
            "release_bot_event_loop_lag_seconds",
            "How late the event loop ran a timer (sampled every half second): time no request, watch "
            "event or release step could be served.",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "release_bot_event_loop_lag_max_seconds",
            "The longest event-loop lag seen since start.",
            registry=r,
        )
        self.releases = Counter(
            "release_bot_releases",
            "Release lifecycle events by strategy and outcome (from the audit trail).",
            ["strategy", "outcome"],
            registry=r,
        )
        self.release_duration = Histogram(
            "release_bot_release_duration_seconds",
            "Seconds from a release's start to its end, by strategy and outcome.",
            ["strategy", "outcome"],
            buckets=RELEASE_BUCKETS,
            registry=r,
        )
        self.audit_events = Counter(
            "release_bot_audit_events",
            "Every audited action (releases, promotes, rollbacks, refusals) by action and outcome.",
            ["action", "outcome"],
            registry=r,
        )
        self.slack_results = Counter(
            "release_bot_slack_api_results",
            "Slack Web API answers by method and Slack's code (ok, or the error Slack answered; "
            "http_<status>: not Slack's JSON; unreachable: no answer).",
            ["method", "error"],
            registry=r,
        )
        self.slack_calls = Counter(
            "release_bot_slack_api_calls",
            "HTTP requests to the Slack Web API by method and HTTP status (error: no answer).",
            ["method", "status"],
            registry=r,
        )
        self.slack_ratelimited = Counter(
            "release_bot_slack_api_ratelimited",
            "Slack Web API answers with HTTP 429 (rate limited), by method.",
            ["method"],
            registry=r,
        )
        self.kube_requests = Counter(
            "release_bot_kube_api_requests",
            "Kubernetes API requests by kind (call: one request/response; watch: one watch opened) and "
            "cluster.",
            ["kind", "cluster"],
            registry=r,
        )
        self.kube_errors = Counter(
            "release_bot_kube_api_errors",
            "Failed Kubernetes API calls by resource, HTTP status (unreachable: no answer) and cluster.",
            ["resource", "status", "cluster"],
            registry=r,
        )
        self.cluster_up = Gauge(
            "release_bot_cluster_up",
            "1 while the cluster's API server answers the bot, 0 while it does not, by cluster.",
            ["cluster"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "release_bot_ack_seconds",
            "Seconds from receiving a Slack request or envelope to acknowledging it.",
            ["mode", "kind"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.slack_rejected = Counter(
            "release_bot_slack_rejected",
            "Requests to /slack/events refused before reaching Bolt, by reason.",
            ["reason"],
            registry=r,
        )

    # --- feeding -----------------------------------------------------------------------------------

    def audited(
        self, action: str, result: str, *, strategy: str | None, duration: float | None = None
    ) -> None:
        """Count one audit entry; a release lifecycle event also counts by strategy, and a finished
        release observes its `duration` (seconds) when known."""
        self.audit_events.labels(label(action), outcome_of(result)).inc()
        outcome = release_outcome(action, result)
        if outcome is None:
            return
        strat = label(strategy or "")
        self.releases.labels(strat, outcome).inc()
        if duration is not None and outcome in TERMINAL_OUTCOMES:
            self.release_duration.labels(strat, outcome).observe(max(0.0, duration))

    def kube_error(self, what: str, status: int | None, cluster: str = "default") -> None:
        """Count a failed Kubernetes call; `what` is Kube.call's description ("deployment ns/name")."""
        resource = label(what.split(" ", 1)[0])
        code = str(status) if status is not None else "unreachable"
        self.kube_errors.labels(resource, code, label(cluster)).inc()

    def slack_call(self, url_path: str, status: int | None) -> None:
        method = slack_method(url_path)
        self.slack_calls.labels(method, str(status) if status is not None else "error").inc()
        if status == 429:
            self.slack_ratelimited.labels(method).inc()

    def slack_result(self, method: str, error: str) -> None:
        """Count one Slack answer: `method` a Web API method (or "response_url"), `error` "ok" or
        Slack's error code."""
        name = method if method == "response_url" or _API_METHOD.match(method) else "other"
        self.slack_results.labels(name, error if _SLACK_CODE.match(error) else "other").inc()

    def ack(self, mode: str, kind: str, seconds: float) -> None:
        self.ack_seconds.labels(label(mode), label(kind)).observe(max(0.0, seconds))

    def rejected(self, reason: str) -> None:
        """Count one request to /slack/events refused at the edge."""
        self.slack_rejected.labels(label(reason)).inc()

    def slack_trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp TraceConfig counting every request on the session it is given to."""
        trace = aiohttp.TraceConfig()

        async def on_end(
            _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            self.slack_call(params.url.path, params.response.status)

        async def on_exception(
            _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
        ) -> None:
            self.slack_call(params.url.path, None)

        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_exception)
        return trace

    # --- reading -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (`CONTENT_TYPE`) of every series."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """One sample's current value (e.g. "release_bot_releases_total"), None when absent."""
        return self.registry.get_sample_value(name, dict(labels or {}))


async def watch_loop_lag(metrics: Metrics, period: float = LOOP_LAG_PERIOD_S) -> None:
    """Sample the event loop's lag for ever: how much later than asked a timer fires."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while True:
        asked = loop.time() + period
        await asyncio.sleep(period)
        lag = max(0.0, loop.time() - asked)
        metrics.loop_lag.observe(lag)
        if lag > worst:
            worst = lag
            metrics.loop_lag_max.set(lag)
