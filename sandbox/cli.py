"""`release-bot sandbox`: the whole product on one machine, no Slack workspace or cluster needed.

Starts a real control plane with the guide's hexo app (Deployment `hexo` in `devops`, 6 replicas,
v1.0, Service `hexo-service`), the Slack simulator with its channel page, and the bot wired to both,
with sandbox users alice (may do everything), bob (may promote and roll back) and mallory (may do
nothing). The same objects run in namespace `prod` as the app `hexo-prod` (`/release hexo v2.0
--env prod`), behind the catalog's gates: two approvals from the user group @sre (bob, carol), alice
may break glass, and a year-end freeze window that is always ahead. Runs until Ctrl-C or SIGTERM,
then stops everything it started, by PID.

A place to break things: the bot runs as its own process (`python -m bot serve`, output on our
stderr) under a supervisor that starts it again when it dies, and the control endpoints
(`sandbox/control.py`, also the channel page's Sandbox panel) script Slack faults, restart the
apiserver, etcd, the kubelet or the bot, and kill the bot. The JSON file (`--json-file`) says where
everything is, including the current pids, and is rewritten when they change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bot.kube.client import KubeConflict, connected
from bot.releases.health import progress
from sandbox import hexo
from sandbox.control import control_app
from sandbox.controlplane.launcher import ControlPlane
from sandbox.prometheus import Prometheus
from sandbox.slack import SlackSimulator
from sandbox.supervisor import BotSupervisor

NAMESPACE = "devops"
PROD_NAMESPACE = hexo.PROD_NAMESPACE
_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("sandbox")


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
    parser.add_argument(
        "--clusters",
        type=int,
        choices=(1, 2),
        default=1,
        help="2: staging and prod as two clusters (each its own apiserver and etcd), one bot serving "
        "both; the apps are then hexo-staging and hexo-prod (default 1)",
    )


def run(args: argparse.Namespace) -> int:
    if not log.handlers:  # our own lines (restarts, the bot's exits) on stderr, next to the bot's log
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("sandbox: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    own_workdir = args.workdir is None  # a temporary one is removed when the sandbox stops
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="release-bot-sandbox-"))
    names = ["staging", "prod"] if args.clusters == 2 else [hexo.DEFAULT_CLUSTER]
    planes = {
        name: ControlPlane(
            workdir / ("cluster" if i == 0 else f"cluster-{name}"), ready_delay=args.ready_delay
        )
        for i, name in enumerate(names)
    }
    try:
        for cp in planes.values():  # one after the other: each start is CPU-bound on these machines
            cp.start()
        asyncio.run(_sandbox(args, planes, workdir))
    finally:
        for cp in planes.values():
            cp.stop()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
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


class Sandbox:
    """The running sandbox as the control endpoints see it: restarts, kills, pids, the JSON file.
    With two clusters, the second's components are named `prod-kube-apiserver`, `prod-etcd`, ..."""

    def __init__(
        self,
        planes: dict[str, ControlPlane],
        sim: SlackSimulator,
        json_file: Path | None,
        prometheus: Prometheus | None = None,
    ) -> None:
        self.planes = planes
        self.prometheus = prometheus
        self.sim = sim
        self.bot: BotSupervisor | None = None  # once the simulator listens (the bot needs its URL)
        self.json_file = json_file
        self.info: dict[str, Any] = {}
        self._written: dict[str, Any] | None = None
        # the launcher is synchronous: restarts run here, one at a time, off the event loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-restart")
        first = next(iter(planes))
        self._prefix = {name: "" if name == first else f"{name}-" for name in planes}

    @property
    def cp(self) -> ControlPlane:
        """The first cluster (the only one unless `--clusters 2`)."""
        return next(iter(self.planes.values()))

    def _components(self) -> dict[str, tuple[ControlPlane, str]]:
        return {self._prefix[name] + c: (cp, c) for name, cp in self.planes.items() for c in cp.components}

    @property
    def restartable(self) -> tuple[str, ...]:
        return (*self._components(), *(("prometheus",) if self.prometheus else ()), "bot")

    @property
    def killable(self) -> tuple[str, ...]:
        return ("bot",)

    def pids(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {"bot": self.bot.pid if self.bot is not None else None}
        for name, cp in self.planes.items():
            found.update({self._prefix[name] + c: pid for c, pid in cp.pids.items()})
        if self.prometheus is not None:
            found["prometheus"] = self.prometheus.pid
        return found

    def _bot(self) -> BotSupervisor:
        if self.bot is None:
            raise RuntimeError("the bot is not started yet")
        return self.bot

    async def restart(self, component: str) -> dict[str, Any]:
        before = self.pids().get(component)
        started = time.monotonic()
        pid: int | None
        if component == "bot":
            pid = await self._bot().restart()
        elif component == "prometheus" and self.prometheus is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.prometheus.stop)
            await loop.run_in_executor(self._executor, self.prometheus.start)
            pid = self.prometheus.pid
        else:
            cp, name = self._components()[component]
            loop = asyncio.get_running_loop()
            pid = await loop.run_in_executor(self._executor, cp.restart, name)
        self.publish()
        took = round(time.monotonic() - started, 2)
        log.info("restarted %s: pid %s -> %s in %.1f s", component, before, pid, took)
        return {"component": component, "pid": pid, "previous_pid": before, "seconds": took}

    async def kill(self, component: str) -> dict[str, Any]:
        pid = await self._bot().kill()
        log.info("killed the bot (pid %s); its supervisor starts a new one", pid)
        return {"component": component, "killed_pid": pid}

    def publish(self) -> None:
        """(Re)write the JSON file when what it says changed (atomically: readers never see half)."""
        if not self.info:
            return
        current = {**self.info, "pids": self.pids()}
        if current == self._written:
            return
        self._written = current
        if self.json_file is not None:
            tmp = self.json_file.with_name(self.json_file.name + ".tmp")
            tmp.write_text(json.dumps(current, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.json_file)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def bot_environment(sim: SlackSimulator, kubeconfig: Path, catalog: Path, port: int) -> dict[str, str]:
    """What `python -m bot serve` needs to run against the simulator and the sandbox cluster."""
    drop = {"SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_API_URL"}
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k not in drop}
    env.update(
        {
            "SLACK_BOT_TOKEN": sim.bot_token,
            "SLACK_SIGNING_SECRET": sim.signing_secret,
            "SLACK_API_URL": sim.api_url,
            "KUBECONFIG": str(kubeconfig),
            "RELEASE_BOT_CATALOG": str(catalog),
            "RELEASE_BOT_HOST": "127.0.0.1",
            "RELEASE_BOT_PORT": str(port),
            "RELEASE_BOT_INSTANCE_ID": "sandbox",  # a restarted bot takes its releases back at once
            "PYTHONPATH": os.pathsep.join([str(_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
    )
    return env


async def _sandbox(args: argparse.Namespace, planes: dict[str, ControlPlane], workdir: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    kubeconfigs = {name: cp.info.admin_kubeconfig for name, cp in planes.items()}
    first = next(iter(kubeconfigs.values()))
    prod_kubeconfig = kubeconfigs.get("prod", first)
    await asyncio.gather(install_hexo(first, NAMESPACE), install_hexo(prod_kubeconfig, PROD_NAMESPACE))
    prometheus = Prometheus(workdir / "prometheus", [cp.info.metrics_url for cp in planes.values()])
    prometheus.start()  # on this (main) thread: its parent-death signal is tied to the thread forking it
    try:
        await _serve_sandbox(args, planes, workdir, kubeconfigs, prometheus, stop)
    finally:
        prometheus.stop()


async def _serve_sandbox(
    args: argparse.Namespace,
    planes: dict[str, ControlPlane],
    workdir: Path,
    kubeconfigs: dict[str, Path],
    prometheus: Prometheus,
    stop: asyncio.Event,
) -> None:
    first = next(iter(kubeconfigs.values()))
    two = len(planes) > 1
    sim = SlackSimulator()
    if two:
        catalog = hexo.clusters_catalog(
            NAMESPACE,
            sim.users,
            sim.usergroups,
            {name: str(path) for name, path in kubeconfigs.items()},
            channel=sim.channels["releases"],
            prometheus_url=prometheus.url,
        )
    else:
        catalog = hexo.sandbox_catalog(
            NAMESPACE,
            sim.users,
            sim.usergroups,
            channel=sim.channels["releases"],
            prometheus_url=prometheus.url,
        )
    catalog_path = workdir / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog), encoding="utf-8")
    bot_port = args.bot_port or _free_port()
    box = Sandbox(planes, sim, args.json_file, prometheus)
    sim.mount_control(control_app(sim, box))
    sim.bot_url = f"http://127.0.0.1:{bot_port}/slack/events"
    await sim.start(args.port)
    bot = box.bot = BotSupervisor(
        [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(bot_port)],
        bot_environment(sim, first, catalog_path, bot_port),
        readyz_url=f"http://127.0.0.1:{bot_port}/readyz",
        on_change=box.publish,
    )
    try:
        await bot.start()
        box.info = {
            "bot_url": sim.bot_url,
            "slack_api_url": sim.api_url,
            "page_url": sim.page_url,
            "control_url": sim.control_url,
            "signing_secret": sim.signing_secret,
            "bot_token": sim.bot_token,
            "channel_id": sim.channels["releases"],
            "users": dict(sim.users),
            "usergroups": dict(sim.usergroups),
            "kubeconfig": str(first),
            "namespace": NAMESPACE,
            "prod_namespace": PROD_NAMESPACE,
            "catalog": str(catalog_path),  # for `release-bot ctl --catalog`
            "prometheus_url": prometheus.url,  # the canary analysis queries it
        }
        if two:  # each cluster's kubeconfig, and where each app runs
            box.info["kubeconfigs"] = {name: str(path) for name, path in kubeconfigs.items()}
            box.info["apps"] = {
                hexo.STAGING_APP: {"cluster": "staging", "namespace": NAMESPACE},
                hexo.PROD_APP: {"cluster": "prod", "namespace": PROD_NAMESPACE},
            }
        box.publish()
        print(_banner(catalog, sim, kubeconfigs), flush=True)
        await stop.wait()
    finally:
        await bot.stop()
        await sim.stop()
        box.close()


def _banner(catalog: dict[str, Any], sim: SlackSimulator, kubeconfigs: dict[str, Path]) -> str:
    freeze = catalog["apps"][hexo.PROD_APP]["freeze"][0]
    control = f"curl -X POST {sim.control_url}/restart/kube-apiserver"
    if len(kubeconfigs) > 1:
        staging, prod = kubeconfigs["staging"], kubeconfigs["prod"]
        return (
            f"release-bot sandbox is up, with two clusters: staging and prod.\n"
            f"  Slack channel page: {sim.page_url}\n"
            f"  Try: /release hexo v2.0 --env staging   (as alice; bob may promote/roll back, mallory "
            f"may do nothing)\n"
            f"  Then, {hexo.SOAK_MINUTES:g} min later: /release promote hexo --from staging --to prod   "
            f"(prod waits for two approvals from @sre: bob and carol)\n"
            f"  Compare: /release diff hexo staging prod\n"
            f"  Watch the pods:   kubectl --kubeconfig {staging} -n {NAMESPACE} get pods -w   "
            f"(prod: kubectl --kubeconfig {prod} -n {PROD_NAMESPACE} get pods -w)\n"
            f"  Break things:     {control}   (prod's: .../restart/prod-kube-apiserver)\n"
            f"Ctrl-C to stop everything."
        )
    kubeconfig = next(iter(kubeconfigs.values()))
    return (
        f"release-bot sandbox is up.\n"
        f"  Slack channel page: {sim.page_url}\n"
        f"  Try: /release hexo v2.0   (as alice; bob may promote/roll back, mallory may do nothing)\n"
        f"  Production: /release hexo v2.0 --env prod   (as alice; waits for two approvals from "
        f"@sre: bob and carol)\n"
        f'    alice may break glass: /release hexo v2.0 --env prod --break-glass "reason"\n'
        f"    freeze {freeze['name']!r}: {freeze['start']} to {freeze['end']} ({freeze['timezone']})\n"
        f"  Watch the pods:   export KUBECONFIG={kubeconfig}; "
        f"kubectl -n {NAMESPACE} get pods -w   (production: -n {PROD_NAMESPACE})\n"
        f"  Break things:     {control}  "
        f"(or use the page's Sandbox panel)\n"
        f"Ctrl-C to stop everything."
    )
