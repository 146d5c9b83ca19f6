"""`release-bot serve`: the bot itself, in HTTP mode or Socket Mode (`--socket-mode`), until
SIGTERM/SIGINT (then it drains). Either way the HTTP server answers /healthz, /readyz and /metrics.

Before it serves anything it checks what it was given, and stops with a ConfigError (exit status 2)
that says what to fix: the kubeconfig (`bot.kube.access.connect`), the bot token and its scopes
(`bot.slack.health.verify`: auth.test and `x-oauth-scopes`, against `bot.manifest.needed_scopes`),
and the bot's rights in every namespace of the catalog, cluster by cluster (`bot.kube.fleet`). While
it serves, /readyz is false, with a reason, while the API server does not answer (with several
clusters: while none does; each one's state is in the answer's `clusters`), while Slack refuses the
bot token, and while Socket Mode is disconnected."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

import aiohttp
from aiohttp import web
from pydantic import ValidationError
from slack_sdk.web.async_client import AsyncWebClient

from bot.analysis import Analyst
from bot.catalog import Action, Catalog
from bot.errors import ConfigError
from bot.kube.fleet import Fleet
from bot.logs import configure as configure_logging
from bot.manifest import needed_scopes
from bot.metrics import Metrics, watch_loop_lag
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.store import object_name
from bot.settings import Settings
from bot.slack.app import build_app, web_client
from bot.slack.forms import environments
from bot.slack.health import Identity, Observer, SlackHealth, verify
from bot.slack.reporter import SlackReporter
from bot.slack.socket_mode import SocketMode
from bot.tasks import Tasks
from bot.web import READINESS, build_web_app

log = logging.getLogger("release_bot")
SLACK_TIMEOUT_S = 30.0


_WHAT = {  # for the settings whose model field carries no description of its own
    "catalog": "the app catalog YAML",
    "host": "address to listen on",
    "port": "HTTP port",
    "instance_id": "this process's name in driver leases (default: the hostname)",
    "audit_log": "also append the JSON audit lines to this file",
}


def environment_help() -> str:
    """The environment `serve` reads, from the settings model itself (so the help cannot fall behind)."""
    lines = ["environment:"]
    for name, info in Settings.model_fields.items():
        var = info.alias or name.upper()
        default = None if info.is_required() or info.default_factory else info.default
        shown = f" (default {default})" if default is not None else ""
        what = info.description or _WHAT.get(name, "")
        lines.append(f"  {var:<28} {what}{shown}".rstrip())
    lines.append(f"  {'LOG_FORMAT':<28} json or text (default: text on a terminal, else json)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = environment_help()
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
    Socket Mode: once Slack said hello on its connection).

    Before anything is served: the kubeconfig is loaded, Slack's auth.test checks the bot token and
    its scopes, and rules and access reviews check the bot's rights in every namespace of the catalog.
    Any of them failing is a ConfigError (exit status 2) that says what to fix."""
    metrics = metrics if metrics is not None else Metrics()
    health = SlackHealth()
    token = settings.slack_bot_token.get_secret_value()
    # slack_sdk ignores its own timeout when given a session: the session's timeout is the one that counts.
    # The trace config counts every HTTP attempt on this session; the observer every answer's Slack code.
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_S), trace_configs=[metrics.slack_trace_config()]
    ) as session:
        observer = Observer(metrics, health, token)
        client = web_client(token, session, settings.slack_api_url, observer=observer)
        fleet = await Fleet.connect(catalog, settings.kubeconfig, object_name, settings.watch_scope)
        try:
            for kube in fleet.kubes.values():
                kube.metrics = metrics
            identity = await verify(client, needed_scopes(usergroups=uses_usergroups(catalog)))
            await fleet.check_rights()
            await _serve(
                settings,
                catalog,
                stop,
                started,
                socket_mode=socket_mode,
                metrics=metrics,
                health=health,
                client=client,
                fleet=fleet,
                identity=identity,
                observer=observer,
            )
        finally:
            await fleet.close()


def uses_usergroups(catalog: Catalog) -> bool:
    """Whether any rule of the catalog (permissions, approvals, break-glass, freeze override) names a
    user group: the bot then needs usergroups:read."""
    return any(app.rule(action).usergroups for app in catalog.apps.values() for action in Action)


async def _serve(
    settings: Settings,
    catalog: Catalog,
    stop: asyncio.Event,
    started: asyncio.Event | None,
    *,
    socket_mode: bool,
    metrics: Metrics,
    health: SlackHealth,
    client: AsyncWebClient,
    fleet: Fleet,
    identity: Identity,
    observer: Observer,
) -> None:
    reporter = SlackReporter(client, settings.card_interval)
    first = next(iter(fleet.kubes.values()))
    gates = aiohttp.ClientSession()  # the webhook gates' own client (Prometheus has its own)
    engine = Engine(
        fleet.kubes,
        catalog,
        reporter,
        identity=settings.instance_id,
        lease_seconds=settings.lease_seconds,
        audit=Auditor(first, settings.audit_log, metrics=metrics),
        analyst=Analyst(gates),
        watch_scope=settings.watch_scope,
    )
    secret = settings.slack_signing_secret
    bolt, handlers = build_app(
        client,
        secret.get_secret_value() if secret else "",
        engine,
        catalog,
        identity=identity,
        environments=environments(settings.catalog),
        observer=observer,
    )
    web_app = build_web_app(bolt, metrics, slack_events=secret is not None)
    socket = SocketMode(bolt, app_token(settings), client, metrics) if socket_mode else None
    readiness = web_app[READINESS]
    readiness.add("kubernetes", fleet.readiness)
    if fleet.several:
        readiness.detail("clusters", fleet.states)
    readiness.add("slack", lambda: _now(health.reason()))
    if socket is not None:
        readiness.add("socket_mode", socket.not_ready)
    background = Tasks("serve")
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    try:
        background.spawn("probe-kubernetes", fleet.follow())
        background.spawn("loop-lag", watch_loop_lag(metrics))
        await engine.start()
        if socket is not None:
            await socket.start()
        readiness.phase = "serving"
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
        readiness.phase = "stopping"
        if socket is not None:
            await socket.stop()  # no new envelopes come here; Slack sends them to other replicas
    finally:
        readiness.phase = "stopping"
        if socket is not None:
            await socket.stop()
        await background.stop()
        await handlers.drain(settings.drain_seconds)
        await engine.stop(settings.drain_seconds)
        await reporter.close()
        await gates.close()
        await runner.cleanup()


async def _now(value: str | None) -> str | None:
    return value
