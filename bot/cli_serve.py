"""`release-bot serve`: the bot itself, in HTTP mode or Socket Mode (`--socket-mode`), until
SIGTERM/SIGINT (then it drains). Either way the HTTP server answers /healthz, /readyz and /metrics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.kube.client import Kube
from bot.logs import configure as configure_logging
from bot.metrics import Metrics
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.settings import Settings
from bot.slack.app import build_app, web_client
from bot.slack.reporter import SlackReporter
from bot.slack.socket_mode import SocketMode
from bot.web import READY, build_web_app

log = logging.getLogger("release_bot")
SLACK_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, help="app catalog YAML (env RELEASE_BOT_CATALOG)")
    parser.add_argument("--port", type=int, help="HTTP port on --host (env RELEASE_BOT_PORT, default 3000)")
    parser.add_argument("--host", help="address to listen on (env RELEASE_BOT_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="receive Slack's payloads over Socket Mode (needs SLACK_APP_TOKEN, xapp-) instead of on "
        "/slack/events; the HTTP server still serves /healthz, /readyz and /metrics",
    )


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "RELEASE_BOT_CATALOG": args.catalog,
            "RELEASE_BOT_PORT": args.port,
            "RELEASE_BOT_HOST": args.host,
        }.items()
        if v is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as e:
        missing = [str(err["loc"][0]).upper() for err in e.errors() if err["type"] == "missing"]
        if missing:
            raise ConfigError(f"set {', '.join(missing)} in the environment") from e
        raise ConfigError(f"invalid settings: {e}") from e


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    socket_mode = bool(getattr(args, "socket_mode", False))
    if socket_mode:
        app_token(settings)
    elif settings.slack_signing_secret is None:
        raise ConfigError(
            "set SLACK_SIGNING_SECRET in the environment (HTTP mode verifies every request with it)"
        )
    catalog = Catalog.load(settings.catalog)
    try:
        configure_logging()
    except ValueError as e:
        raise ConfigError(str(e)) from e
    asyncio.run(serve_until_signalled(settings, catalog, socket_mode=socket_mode))
    return 0


def app_token(settings: Settings) -> str:
    """The app-level token Socket Mode needs, or ConfigError saying what to set."""
    token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else ""
    if not token:
        raise ConfigError("set SLACK_APP_TOKEN (an app-level token, xapp-...) for --socket-mode")
    if not token.startswith("xapp-"):
        raise ConfigError("SLACK_APP_TOKEN must be an app-level token starting with xapp-")
    return token


async def serve_until_signalled(settings: Settings, catalog: Catalog, *, socket_mode: bool = False) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, catalog, stop, socket_mode=socket_mode)


async def serve(
    settings: Settings,
    catalog: Catalog,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    *,
    socket_mode: bool = False,
    metrics: Metrics | None = None,
) -> None:
    """Run the bot until `stop` is set, then drain. `started` is set once it answers requests (in
    Socket Mode: once Slack said hello on its connection)."""
    metrics = metrics if metrics is not None else Metrics()
    # slack_sdk ignores its own timeout when given a session: the session's timeout is the one that counts.
    # The trace config counts every Slack Web API call (and 429) made through this session.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S), trace_configs=[metrics.slack_trace_config()]
    ) as session:
        kube = await Kube.connect(settings.kubeconfig)
        kube.metrics = metrics
        client = web_client(settings.slack_bot_token.get_secret_value(), session, settings.slack_api_url)
        reporter = SlackReporter(client, settings.card_interval)
        engine = Engine(
            kube,
            catalog,
            reporter,
            identity=settings.instance_id,
            lease_seconds=settings.lease_seconds,
            audit=Auditor(kube, settings.audit_log, metrics=metrics),
        )
        secret = settings.slack_signing_secret
        bolt, handlers = build_app(client, secret.get_secret_value() if secret else "", engine, catalog)
        web_app = build_web_app(bolt, metrics, slack_events=secret is not None)
        socket = SocketMode(bolt, app_token(settings), client, metrics) if socket_mode else None
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        try:
            await engine.start()
            if socket is not None:
                await socket.start()
            web_app[READY][0] = True
            if started is not None:
                started.set()
            if socket is not None:
                log.info(
                    "release-bot connected over Socket Mode; health on http://%s:%d/healthz",
                    settings.host,
                    settings.port,
                )
            else:
                log.info("release-bot listening on http://%s:%d/slack/events", settings.host, settings.port)
            await stop.wait()
            log.info("stopping: draining %d release task(s)", engine.busy)
            web_app[READY][0] = False
            if socket is not None:
                await socket.stop()  # no new envelopes come here; Slack sends them to other replicas
        finally:
            if socket is not None:
                await socket.stop()
            await handlers.drain(settings.drain_seconds)
            await engine.stop(settings.drain_seconds)
            await reporter.close()
            await runner.cleanup()
            await kube.close()
