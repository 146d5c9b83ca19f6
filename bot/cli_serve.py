"""`release-bot serve`: the bot itself, in HTTP mode, until SIGTERM/SIGINT (then it drains)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.kube.client import Kube
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.settings import Settings
from bot.slack.app import build_app, web_client
from bot.slack.reporter import SlackReporter
from bot.web import READY, build_web_app

log = logging.getLogger("release_bot")
SLACK_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, help="app catalog YAML (env RELEASE_BOT_CATALOG)")
    parser.add_argument("--port", type=int, help="HTTP port on --host (env RELEASE_BOT_PORT, default 3000)")
    parser.add_argument("--host", help="address to listen on (env RELEASE_BOT_HOST, default 127.0.0.1)")


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
    catalog = Catalog.load(settings.catalog)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    asyncio.run(serve_until_signalled(settings, catalog))
    return 0


async def serve_until_signalled(settings: Settings, catalog: Catalog) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, catalog, stop)


async def serve(
    settings: Settings, catalog: Catalog, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Run the bot until `stop` is set, then drain. `started` is set once it answers requests."""
    # slack_sdk ignores its own timeout when given a session: the session's timeout is the one that counts.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S)) as session:
        kube = await Kube.connect(settings.kubeconfig)
        client = web_client(settings.slack_bot_token.get_secret_value(), session, settings.slack_api_url)
        reporter = SlackReporter(client, settings.card_interval)
        engine = Engine(
            kube,
            catalog,
            reporter,
            identity=settings.instance_id,
            lease_seconds=settings.lease_seconds,
            audit=Auditor(kube, settings.audit_log),
        )
        bolt = build_app(client, settings.slack_signing_secret.get_secret_value(), engine, catalog)
        web_app = build_web_app(bolt)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        try:
            await engine.start()
            web_app[READY][0] = True
            if started is not None:
                started.set()
            log.info("release-bot listening on http://%s:%d/slack/events", settings.host, settings.port)
            await stop.wait()
            log.info("stopping: draining %d release task(s)", engine.busy)
            web_app[READY][0] = False
        finally:
            await engine.stop(settings.drain_seconds)
            await reporter.close()
            await runner.cleanup()
            await kube.close()
