"""Many releases at once in one channel, with Slack's rate limits on: figures, never assertions.

    .venv/bin/python -m bench.concurrency_bench [--releases 1 20 50]

For each N: a fresh namespace with N small Deployments (2 pods), one catalog app each, one real
`release-bot serve` process, N signed `/release appK v2.0` sent at once. Prints how many cards and
threads end correct, the wall time, the 429s Slack answered, Slack calls per release, Kubernetes API
requests per release (from the bot's /metrics), and the bot's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.release_bench import metric, rss_mib, start_bot
from bot.kube.client import KubeConflict, connected
from bot.releases.health import progress
from sandbox import hexo
from sandbox.controlplane.launcher import ControlPlane
from sandbox.slack import SlackSimulator


def deployment(ns: str, name: str) -> dict[str, Any]:
    labels = {"app": name, "version": "v1.0"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": f"{hexo.IMAGE_REPO}:v1.0"}]},
            },
        },
    }


async def prepare(kubeconfig: Path, ns: str, names: list[str]) -> None:
    async with connected(kubeconfig) as kube:
        with contextlib.suppress(KubeConflict):  # there already
            await kube.call("namespace", kube.core.create_namespace, {"metadata": {"name": ns}})
        await kube.watch_until(
            "serviceaccount default",
            lambda **kw: kube.core.list_namespaced_service_account(ns, **kw),
            "metadata.name=default",
            lambda sa: True if sa.get("secrets") else None,
            timeout=60,
        )
        for name in names:
            await kube.create_deployment(ns, deployment(ns, name))
        for name in names:
            await kube.watch_deployment(
                ns, name, lambda d: True if progress(d).complete else None, timeout=120
            )


async def run_one(cluster: Any, work: Path, n: int) -> None:
    ns = f"bench-{n}"
    names = [f"app-{i:02d}" for i in range(n)]
    await prepare(cluster.admin_kubeconfig, ns, names)
    sim = SlackSimulator(rate_limits=True)
    await sim.start()
    catalog = work / f"catalog-{n}.yaml"
    apps = {
        name: {
            "namespace": ns,
            "deployment": name,
            "container": "web",
            "image": hexo.IMAGE_REPO,
            "strategies": ["rolling"],
            "permissions": {"release": {"users": [sim.users["alice"]]}},
        }
        for name in names
    }
    catalog.write_text(yaml.safe_dump({"apps": apps}))
    bot, port = await start_bot(sim, cluster.admin_kubeconfig, catalog, work / f"bot-{n}.log")
    try:
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        before = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
        channel = sim.channels["releases"]
        players = [sim.player() for _ in names]
        started = time.perf_counter()
        await asyncio.gather(
            *(p.command("alice", f"{name} v2.0") for p, name in zip(players, names, strict=True))
        )
        for p in players:
            await p.close()

        def correct() -> int:
            ok = 0
            for msg in sim.history(channel):
                if "Succeeded" not in json.dumps(msg.get("blocks") or []):
                    continue
                thread = "\n".join(m.get("text", "") for m in sim.replies(channel, msg["ts"])[1:])
                ok += thread.count("now runs") == 1 and thread.count("started releasing") == 1
            return ok

        with contextlib.suppress(TimeoutError):  # then the figures say how many made it
            await sim.wait_for(lambda: correct() == n, timeout=900)
        wall = time.perf_counter() - started
        after = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
        calls = [c for c in sim.calls if c.method.startswith("chat.")]
        limited = sum(1 for c in sim.calls if c.error == "ratelimited")
        print(
            f"{n:3d} at once: {correct()}/{n} cards and threads correct in {wall:.0f} s; "
            f"{limited} answered 429; {len(calls) / n:.1f} Slack calls and "
            f"{(after - before) / n:.1f} Kubernetes requests per release; bot RSS {rss_mib(bot.pid):.0f} MiB"
        )
    finally:
        bot.terminate()
        bot.wait(30)
        await sim.stop()


async def main(sizes: list[int]) -> None:
    work = Path(tempfile.mkdtemp(prefix="release-bot-bench-"))
    cp = ControlPlane(work / "cluster", ready_delay=1.0)
    cluster = cp.start()
    try:
        for n in sizes:
            await run_one(cluster, work, n)
    finally:
        cp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, nargs="+", default=[1, 20, 50])
    asyncio.run(main(parser.parse_args().releases))
