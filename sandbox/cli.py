"""`release-bot sandbox`: the whole product on one machine, no Slack workspace or cluster needed.

Starts a real control plane with the guide's hexo app (Deployment `hexo` in `devops`, 6 replicas,
v1.0, Service `hexo-service`), the Slack simulator with its channel page, and the bot wired to both,
with sandbox users alice (may do everything), bob (may promote and roll back) and mallory (may do
nothing). Runs until Ctrl-C or SIGTERM, then stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from bot.catalog import Catalog
from bot.cli_serve import serve
from bot.kube.client import KubeConflict, connected
from bot.releases.health import progress
from bot.settings import Settings
from sandbox import hexo
from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator

NAMESPACE = "devops"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="Slack simulator page port (default: a free one)")
    parser.add_argument("--bot-port", type=int, default=0, help="the bot's port (default: a free one)")
    parser.add_argument("--json-file", type=Path, help="write URLs, credentials and ids here for scripts")
    parser.add_argument(
        "--workdir", type=Path, help="where the control plane keeps its files (default: a temp dir)"
    )
    parser.add_argument(
        "--ready-delay", type=float, default=1.0, help="seconds before a new pod is Ready (default 1.0)"
    )


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="release-bot-sandbox-"))
    cp = ControlPlane(workdir / "cluster", ready_delay=args.ready_delay)
    cluster = cp.start()
    try:
        asyncio.run(_sandbox(args, cluster, workdir))
    finally:
        cp.stop()
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def install_hexo(kubeconfig: Path, namespace: str = NAMESPACE) -> None:
    """Create the namespace and the guide's objects, and wait (by watch) until all pods are available."""
    async with connected(kubeconfig) as kube:
        core, apps = kube.core, kube.apps
        with contextlib.suppress(KubeConflict):  # already there (a reused work dir)
            await kube.call("namespace", core.create_namespace, {"metadata": {"name": namespace}})
        await kube.watch_until(
            "serviceaccount default",
            lambda **kw: core.list_namespaced_service_account(namespace, **kw),
            "metadata.name=default",
            lambda sa: True if sa.get("secrets") else None,  # pods need its token first
            timeout=60,
        )
        create: dict[str, Callable[..., Awaitable[Any]]] = {
            "ConfigMap": core.create_namespaced_config_map,
            "Deployment": apps.create_namespaced_deployment,
            "Service": core.create_namespaced_service,
        }
        for body in hexo.objects(namespace):
            with contextlib.suppress(KubeConflict):
                await kube.call(body["kind"], create[body["kind"]], namespace, body)
        await kube.watch_deployment(
            namespace, "hexo", lambda d: True if progress(d).complete else None, timeout=120
        )


async def _sandbox(args: argparse.Namespace, cluster: ClusterInfo, workdir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await install_hexo(cluster.admin_kubeconfig)
    sim = SlackSimulator()
    await sim.start(args.port)
    try:
        catalog_path = workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(hexo.catalog(NAMESPACE, sim.users)), encoding="utf-8")
        bot_port = args.bot_port or _free_port()
        settings = Settings(
            slack_bot_token=SecretStr(sim.bot_token),
            slack_signing_secret=SecretStr(sim.signing_secret),
            slack_api_url=sim.api_url,
            kubeconfig=cluster.admin_kubeconfig,
            RELEASE_BOT_CATALOG=catalog_path,
            RELEASE_BOT_HOST="127.0.0.1",
            RELEASE_BOT_PORT=bot_port,
            RELEASE_BOT_INSTANCE_ID="sandbox",
        )
        sim.bot_url = f"http://127.0.0.1:{bot_port}/slack/events"
        started = asyncio.Event()
        bot = asyncio.create_task(
            serve(settings, Catalog.load(catalog_path), stop, started), name="sandbox:bot"
        )
        await asyncio.wait([bot, asyncio.create_task(started.wait())], return_when=asyncio.FIRST_COMPLETED)
        if bot.done():
            await bot  # raises what stopped it
        info = {
            "bot_url": sim.bot_url,
            "slack_api_url": sim.api_url,
            "page_url": sim.page_url,
            "signing_secret": sim.signing_secret,
            "bot_token": sim.bot_token,
            "channel_id": sim.channels["releases"],
            "users": dict(sim.users),
            "kubeconfig": str(cluster.admin_kubeconfig),
            "namespace": NAMESPACE,
        }
        if args.json_file:
            tmp = args.json_file.with_name(args.json_file.name + ".tmp")
            tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, args.json_file)
        print(
            f"release-bot sandbox is up.\n"
            f"  Slack channel page: {sim.page_url}\n"
            f"  Try: /release hexo v2.0   (as alice; bob may promote/roll back, mallory may do nothing)\n"
            f"  Watch the pods:   export KUBECONFIG={cluster.admin_kubeconfig}; "
            f"kubectl -n {NAMESPACE} get pods -w\n"
            f"Ctrl-C to stop everything.",
            flush=True,
        )
        await bot
    finally:
        stop.set()
        await sim.stop()
