"""Benchmarks that print figures (never asserted): ack latency, card lag, API requests, memory.

    .venv/bin/python -m bench.release_bench [--commands 300]

Starts a real control plane with the guide's hexo app, the Slack simulator (rate limits off) and a
real `release-bot serve` process, then:
1. sends N signed `/release help` (answered in the ack) and N `/release status hexo` (acked at once,
   answered after reading the cluster) and prints p50/p99/max of the HTTP round trip;
2. runs `/release hexo v2.0` and prints the time from the Deployment completing (seen by a watch) to
   the card saying so, the whole release time, and the Kubernetes API requests the bot made
   (from its /metrics);
3. prints the bot's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from bot.kube.client import connected
from bot.releases.health import container_image, progress
from sandbox import hexo
from sandbox.cli import install_hexo
from sandbox.controlplane.launcher import ControlPlane
from sandbox.slack import SlackSimulator

NS = "devops"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def metric(url: str, name: str) -> float | None:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


async def start_bot(
    sim: SlackSimulator, kubeconfig: Path, catalog: Path, log_path: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """A real `release-bot serve` process wired to `sim` and the cluster, once /readyz says so."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "SLACK_BOT_TOKEN": sim.bot_token,
        "SLACK_SIGNING_SECRET": sim.signing_secret,
        "SLACK_API_URL": sim.api_url,
        "KUBECONFIG": str(kubeconfig),
        "RELEASE_BOT_CATALOG": str(catalog),
        "RELEASE_BOT_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    with log_path.open("wb") as log:
        bot = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
            [sys.executable, "-m", "bot", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    sim.bot_url = f"http://127.0.0.1:{port}/slack/events"
    async with aiohttp.ClientSession() as s, asyncio.timeout(30):
        while True:
            try:
                async with s.get(f"http://127.0.0.1:{port}/readyz") as r:
                    if r.status == 200:
                        return bot, port
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def main(n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="release-bot-bench-"))
    cp = ControlPlane(work / "cluster", ready_delay=1.0)
    t0 = time.perf_counter()
    cluster = cp.start()
    print(f"control plane usable in {time.perf_counter() - t0:.1f} s")
    bot: subprocess.Popen[bytes] | None = None
    sim = SlackSimulator(rate_limits=False)
    try:
        await install_hexo(cluster.admin_kubeconfig, NS)
        await sim.start()
        catalog = work / "catalog.yaml"
        catalog.write_text(yaml.safe_dump(hexo.catalog(NS, sim.users)))
        bot, port = await start_bot(sim, cluster.admin_kubeconfig, catalog, work / "bot.log")
        print(f"bot RSS after start: {rss_mib(bot.pid):.0f} MiB")

        player = sim.player()
        for text in ("help", "status hexo"):
            times = []
            for _ in range(n):
                start = time.perf_counter()
                answer = await player.command("alice", text)
                times.append((time.perf_counter() - start) * 1000)
                assert answer.status == 200
            print(
                f"ack `/release {text}` over {n}: p50 {pct(times, 0.5):.1f} ms, p99 {pct(times, 0.99):.1f} ms, "
                f"max {max(times):.1f} ms, mean {statistics.fmean(times):.1f} ms"
            )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        before = await metric(metrics_url, "release_bot_kube_api_requests_total")

        channel = sim.channels["releases"]
        async with connected(cluster.admin_kubeconfig) as kube:
            image = f"{hexo.IMAGE_REPO}:v2.0"

            def complete(dep: dict[str, object]) -> float | None:
                d: dict = dep  # type: ignore[type-arg]
                done = container_image(d, "hexo") == image and progress(d).complete
                return time.perf_counter() if done else None

            watcher = asyncio.create_task(kube.watch_deployment(NS, "hexo", complete, timeout=120))
            started = time.perf_counter()
            await player.command("alice", "hexo v2.0")
            t_complete = await watcher
            await sim.wait_for(
                lambda: any("Succeeded" in str(m.get("blocks")) for m in sim.history(channel)), timeout=60
            )
            t_card = time.perf_counter()
        print(
            f"rolling release hexo v1.0 -> v2.0 (6 pods, ready delay 1 s): {t_card - started:.1f} s end to end"
        )
        print(f"deployment complete -> card says so: {(t_card - t_complete) * 1000:.0f} ms")
        after = await metric(metrics_url, "release_bot_kube_api_requests_total")
        if before is not None and after is not None:
            print(f"Kubernetes API requests for the release (incl. watches): {after - before:.0f}")
        updates = len(sim.calls_to("chat.update"))
        posts = len(sim.calls_to("chat.postMessage"))
        print(f"Slack calls for the release: {posts} chat.postMessage, {updates} chat.update")
        print(f"bot RSS after the release: {rss_mib(bot.pid):.0f} MiB")
        await player.close()
    finally:
        if bot is not None:
            bot.terminate()
            bot.wait(30)
        await sim.stop()
        cp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300)
    asyncio.run(main(parser.parse_args().commands))
