"""The HTTP face of the bot: /slack/events (Slack's Request URL), /healthz, /readyz and /metrics.

/slack/events is an edge that answers every malformed request itself, with 400, 401 or 413 and a short
plain-text reason, before anything that could throw parses it: the body is read as raw bytes under a
cap (`bot.slack.edge.MAX_BODY_BYTES`; a declared Content-Length over it is refused before reading),
then `bot.slack.edge.check` verifies the signature on those bytes and only then decodes and parses
them. A refusal is counted (`release_bot_slack_rejected_total{reason}`) and logged as one WARNING line
with the reason, the size and the peer, never the body. Only accepted requests reach Bolt, which
checks the signature again on the same bytes and works on the body exactly as the edge parsed it.

/readyz tells the truth: 200 `{"ready": true}` only while the bot serves and every check of its
`Readiness` passes (the API server answers, Slack takes the bot token, the Socket Mode connection is
up), else 503 with each failing check's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp

from bot.metrics import CONTENT_TYPE, Metrics, payload_kind
from bot.slack import edge
from bot.slack.app import bolt_request

log = logging.getLogger(__name__)

METRICS = web.AppKey("metrics", Metrics)

# A readiness check: why the bot cannot serve now, or None when it can.
Check = Callable[[], Awaitable[str | None]]


class Readiness:
    """What /readyz answers: ready once `serving` and while every check passes; each failing check
    gives its reason (`{"ready": false, "reasons": {"kubernetes": "...", ...}}`)."""

    def __init__(self) -> None:
        self.phase = "starting"  # starting, serving, stopping
        self.checks: dict[str, Check] = {}
        self.details: dict[str, Callable[[], dict[str, str]]] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def detail(self, name: str, what: Callable[[], dict[str, str]]) -> None:
        """Facts shown in every answer, ready or not (each cluster's state)."""
        self.details[name] = what

    async def reasons(self) -> dict[str, str]:
        if self.phase == "starting":
            return {"starting": "release-bot is starting"}
        if self.phase == "stopping":
            return {"stopping": "release-bot is shutting down"}
        found: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                reason = await check()
            except Exception as e:  # a check that fails says so; it never fails the endpoint
                reason = f"cannot tell ({type(e).__name__})"
            if reason:
                found[name] = reason
        return found


READINESS = web.AppKey("readiness", Readiness)

READ_CHUNK = 64 * 1024


class QuietFramingErrors(logging.Filter):
    """aiohttp answers a request it cannot even frame (a bad Content-Length, bad chunking, an
    over-long header line, a body that does not decompress) with 400 itself, or drops the connection,
    and logs it as an ERROR with a traceback that quotes the offending bytes. This filter, on
    aiohttp's server logger, turns that into one WARNING line naming the error's kind, with neither
    traceback nor request bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = framing_error(record.exc_info[1] if record.exc_info else None)
        if exc is not None:
            record.msg = "refused a malformed HTTP request: %s (HTTP %s)"
            record.args = (type(exc).__name__, exc.code)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_QUIET_FRAMING_ERRORS = QuietFramingErrors()


def framing_error(exc: BaseException | None) -> HttpProcessingError | None:
    """The aiohttp parsing error `exc` is or was raised from (a body that fails to decompress
    surfaces as a RequestPayloadError caused by one), if any."""
    for _ in range(10):
        if exc is None or isinstance(exc, HttpProcessingError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def build_web_app(
    bolt: AsyncApp,
    metrics: Metrics | None = None,
    *,
    slack_events: bool = True,
    signing_secret: str | None = None,
) -> web.Application:
    """The aiohttp app. `slack_events=False` (Socket Mode without a signing secret) leaves
    /slack/events out: without a secret no HTTP request from Slack could be verified.
    `signing_secret` defaults to the one the Bolt app was built with."""
    app = web.Application(client_max_size=edge.MAX_BODY_BYTES)
    server_log = logging.getLogger("aiohttp.server")
    if _QUIET_FRAMING_ERRORS not in server_log.filters:
        server_log.addFilter(_QUIET_FRAMING_ERRORS)
    app[READINESS] = Readiness()
    app[METRICS] = metrics if metrics is not None else Metrics()
    secret = signing_secret if signing_secret is not None else str(getattr(bolt, "_signing_secret", "") or "")
    if slack_events and not secret:
        raise ValueError("/slack/events needs the signing secret to verify requests")

    def refuse(
        request: web.Request, refusal: edge.Refusal, size: int | None, detail: str = ""
    ) -> web.Response:
        """Answer `refusal` and log it: one line with the reason, the size and the peer, never the body."""
        app[METRICS].rejected(refusal.reason)
        log.warning(
            "refused a request to /slack/events: %s%s (HTTP %d, %s bytes, from %s)",
            refusal.reason,
            f" ({detail})" if detail else "",
            refusal.status,
            size if size is not None else "unknown",
            request.remote,
            extra={
                "reason": refusal.reason,
                "status": refusal.status,
                "bytes": size,
                "remote": request.remote,
            },
        )
        resp = web.Response(status=refusal.status, text=refusal.message + "\n", content_type="text/plain")
        if refusal.status == 413:
            resp.force_close()  # the rest of the body is not wanted on this connection
        return resp

    async def events(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        early = edge.preflight(request.content_length, request.headers.items())
        if early is edge.TOO_LARGE:
            return refuse(request, early, request.content_length)
        try:
            raw = await read_capped(request, edge.MAX_BODY_BYTES)
        except (HttpProcessingError, RequestPayloadError, ConnectionError):  # truncated, bad chunking
            return refuse(request, early or edge.INCOMPLETE, request.content_length)
        if raw is None:
            return refuse(request, edge.TOO_LARGE, request.content_length)
        if early is not None:  # read (as aiohttp decompressed it) only so the connection stays usable
            return refuse(request, early, len(raw))
        verdict = edge.check(raw, request.headers.items(), secret=secret, now=time.time())
        if isinstance(verdict, edge.Refusal):
            return refuse(request, verdict, len(raw))
        headers: dict[str, str | Sequence[str]] = {k.lower(): v for k, v in request.headers.items()}
        headers["content-type"] = verdict.content_type  # the bare media type the edge parsed by
        try:
            bolt_req = bolt_request(verdict.text, request.query_string, headers, body=verdict.body)
        except Exception as e:  # a shape the edge let through that Bolt cannot read: the sender's fault
            return refuse(request, edge.UNREADABLE, len(raw), f"Bolt: {type(e).__name__}")
        resp = await to_aiohttp_response(await bolt.async_dispatch(bolt_req))
        elapsed = time.perf_counter() - started
        app[METRICS].ack("http", payload_kind(bolt_req.body), elapsed)
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        readiness = app[READINESS]
        reasons = await readiness.reasons()
        details = {name: what() for name, what in readiness.details.items()}
        if reasons:
            return web.json_response({"ready": False, "reasons": reasons, **details}, status=503)
        return web.json_response({"ready": True, **details})

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})

    if slack_events:
        app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def read_capped(request: web.Request, limit: int) -> bytes | None:
    """The request body as received, or None as soon as it grows past `limit` bytes (a chunked body
    declares no length)."""
    body = bytearray()
    while chunk := await request.content.read(READ_CHUNK):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
