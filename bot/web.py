"""The HTTP face of the bot: /slack/events (Slack's Request URL), /healthz, /readyz and /metrics.

The raw body is handed to Bolt untouched (the signature covers the exact bytes).
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp

from bot.metrics import CONTENT_TYPE, Metrics, payload_kind
from bot.slack.app import bolt_request

log = logging.getLogger(__name__)

READY = web.AppKey("ready", list[bool])
METRICS = web.AppKey("metrics", Metrics)


def build_web_app(
    bolt: AsyncApp, metrics: Metrics | None = None, *, slack_events: bool = True
) -> web.Application:
    """The aiohttp app. `slack_events=False` (Socket Mode without a signing secret) leaves
    /slack/events out: without a secret no HTTP request from Slack could be verified."""
    app = web.Application(client_max_size=1 << 20)
    app[READY] = [False]
    app[METRICS] = metrics if metrics is not None else Metrics()

    async def events(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        raw = await request.text()
        bolt_req = bolt_request(raw, request.query_string, {k: v for k, v in request.headers.items()})
        resp = await to_aiohttp_response(await bolt.async_dispatch(bolt_req))
        elapsed = time.perf_counter() - started
        app[METRICS].ack("http", payload_kind(bolt_req.body), elapsed)
        return resp

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(_: web.Request) -> web.Response:
        ready = app[READY][0]
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})

    if slack_events:
        app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    return app
