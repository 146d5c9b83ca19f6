"""Kubernetes API requests of an idle bot, by catalog size: figures, never assertions.

    .venv/bin/python -m bench.idle_bench [--apps 1 50 200] [--seconds 290] [--watch-scope namespace|cluster]

For the largest size, that many namespaces are made, each with one Deployment at 0 replicas (no
pods); a catalog of the first N apps (each in its own namespace) is written for each size, and one real
`release-bot serve` process per size is started (the bot checks its rights in every namespace with
a SelfSubjectRulesReview each, then lists and watches the release records of each). Once every bot is
ready, with nothing released, the bots' own /metrics counter (`release_bot_kube_api_requests_total`
by kind: `call`, one request and answer; `watch`, one watch opened) is sampled over the same window
for all of them. The default window is one watch period (the bot re-opens each watch every 290 s),
so every watch's re-open falls in it exactly once and the figures are the steady state; start-up
requests are before the window. Prints requests/min per size and the ratio largest/smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.figures import ratio
from bench.release_bench import metric, rss_mib, start_bot, stop_process
from bot.kube.client import WATCH_SECONDS, Kube, KubeConflict, connected
from sandbox import hexo
from sandbox.controlplane.launcher import ControlPlane
from sandbox.slack import SlackSimulator

SETTLE_S = 5.0  # after the last bot is ready, before the window opens
METRIC = "release_bot_kube_api_requests_total"


def namespace(i: int) -> str:
    return f"idle-{i:03d}"


def deployment(ns: str) -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": f"{hexo.IMAGE_REPO}:v1.0"}]},
            },
        },
    }


async def prepare(kube: Kube, count: int) -> None:
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        ns = namespace(i)
        async with gate:
            with contextlib.suppress(KubeConflict):
                await kube.call("namespace", kube.core.create_namespace, {"metadata": {"name": ns}})
            with contextlib.suppress(KubeConflict):
                await kube.create_deployment(ns, deployment(ns))

    await asyncio.gather(*(one(i) for i in range(count)))


def catalog(n: int, alice: str) -> dict[str, Any]:
    apps = {
        f"app-{i:03d}": {
            "namespace": namespace(i),
            "deployment": "web",
            "container": "web",
            "image": hexo.IMAGE_REPO,
            "strategies": ["rolling"],
            "permissions": {"release": {"users": [alice]}},
        }
        for i in range(n)
    }
    return {"apps": apps}


async def counters(port: int) -> tuple[float, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    calls = await metric(url, METRIC, 'kind="call"') or 0.0
    watches = await metric(url, METRIC, 'kind="watch"') or 0.0
    return calls, watches


async def main(sizes: list[int], seconds: float, scope: str = "namespace") -> None:
    work = Path(tempfile.mkdtemp(prefix="release-bot-bench-"))
    cp = ControlPlane(work / "cluster", ready_delay=1.0)
    cluster = cp.start()
    sim = SlackSimulator(rate_limits=False)
    bots: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        t0 = time.perf_counter()
        async with connected(cluster.admin_kubeconfig) as kube:
            await prepare(kube, max(sizes))
        print(
            f"{max(sizes)} namespaces, one Deployment (0 replicas) each, in {time.perf_counter() - t0:.0f} s"
        )
        await sim.start()
        for n in sizes:
            path = work / f"catalog-{n}.yaml"
            path.write_text(yaml.safe_dump(catalog(n, sim.users["alice"])))
            t0 = time.perf_counter()
            bots[n] = await start_bot(
                sim,
                cluster.admin_kubeconfig,
                path,
                work / f"bot-{n}.log",
                ready_timeout=300,
                env={"RELEASE_BOT_WATCH_SCOPE": scope},
            )
            start_requests = sum(await counters(bots[n][1]))
            print(
                f"{n:4d} apps: ready in {time.perf_counter() - t0:.1f} s after {start_requests:.0f} "
                "start-up requests (rights check, record lists and watches)"
            )
        await asyncio.sleep(SETTLE_S)
        before = {n: await counters(port) for n, (_, port) in bots.items()}
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        minutes = (time.perf_counter() - started) / 60
        after = {n: await counters(port) for n, (_, port) in bots.items()}
        print(
            f"idle, every bot sampled over the same {seconds:.0f} s (watch period {WATCH_SECONDS} s, "
            f"watch scope {scope}):"
        )
        per_min: dict[int, float] = {}
        for n in sizes:
            calls = (after[n][0] - before[n][0]) / minutes
            watches = (after[n][1] - before[n][1]) / minutes
            per_min[n] = calls + watches
            print(
                f"  {n:4d} apps in {n} namespaces: {per_min[n]:.1f} requests/min "
                f"({calls:.1f} calls, {watches:.1f} watches opened); bot RSS {rss_mib(bots[n][0].pid):.0f} MiB"
            )
        small, large = min(sizes), max(sizes)
        print(f"  ratio {large} apps / {small}: {ratio(per_min[large], per_min[small]):.2f}×")
    finally:
        for bot, _ in bots.values():
            stop_process(bot)
        await sim.stop()
        cp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, nargs="+", default=[1, 50, 200], help="catalog sizes")
    parser.add_argument(
        "--watch-scope",
        choices=("namespace", "cluster"),
        default="namespace",
        help="the bots' RELEASE_BOT_WATCH_SCOPE (default namespace)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(WATCH_SECONDS),
        help="sampling window (default: one watch period)",
    )
    args = parser.parse_args()
    asyncio.run(main(sorted(set(args.apps)), args.seconds, args.watch_scope))
