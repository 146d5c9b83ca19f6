"""Benchmarks that print figures (never asserted): ack latency and throughput beside a bare handler,
a rolling release beside kubectl, card lag, Kubernetes API requests, memory.

    .venv/bin/python -m bench.release_bench [--commands 300] [--concurrency 100] [--requests 2000]
                                            [--rounds 10] [--repeats 3]

Starts a real control plane (with the apiserver's audit log on, to count requests by client) with
the guide's hexo app and a twin of it, the Slack simulator (rate limits off) and a real
`release-bot serve` process, then:

1. sends `--commands` signed `/release help` (answered in the ack) and as many `/release status hexo`
   (acked at once, answered after reading the cluster), one at a time, and prints p50/p99/max of the
   HTTP round trip;
2. sends `--requests` signed `/release help`, `--concurrency` at a time, to the bot and to a bare
   aiohttp handler (bench.bare_server, its own process on 127.0.0.1) that reads the request and answers
   200 with the bot's answer, unverified, from a load generator of its own (bench.load, a process
   with nothing else in its event loop), in `--rounds` short rounds, each one burst to either, taking
   turns to go first (so both meet the same load from anything else on the machine): p50/p99 latency
   and requests/s of each, and bot/bare of each round, median (min–max) over the rounds;
3. releases the same rolling change (6 pods, maxSurge 1, maxUnavailable 0, the sandbox's pods ready
   1 s after they start) `--repeats` times, alternating v2.0 and v1.0, both ways: `/release hexo vX`
   through the bot, and `kubectl set image ... && kubectl rollout status ...` (the admin kubeconfig)
   on `hexo-twin`, a Deployment with hexo's spec, its own name and labels, and the rolling
   parameters the bot's catalog sets on hexo. For each: wall time (kubectl: both commands; the bot:
   from sending the command to the card saying "Succeeded"), Kubernetes API requests (from the
   apiserver's audit log, by user and User-Agent: bench.audit; the bot's GET /version readiness
   probe every 2 s is counted apart), by verb and resource too (the bot's first release, which
   opens its shared caches once, is made first and shown apart, as kubectl's discovery cache is
   filled first), and how long after the Deployment
   completed (seen by a watch of the benchmark's own) the card said so, or `kubectl rollout status`
   returned;
4. prints the bot's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.audit import BENCH_UA, AuditLog, kubeconfig_user
from bench.figures import pct, ratios, spread
from bench.load import Burst
from bot.kube.client import Kube, KubeConflict
from bot.releases.health import container_image, progress
from sandbox import hexo
from sandbox.cli import install_hexo
from sandbox.controlplane.launcher import ControlPlane
from sandbox.slack import SlackSimulator
from sandbox.slack.client import SlackPlayer

NS = "devops"
TWIN = "hexo-twin"
CONTAINER = "hexo"
FORM = "application/x-www-form-urlencoded"
SETTLE_S = 2.0  # after the card says "Succeeded": the lease handed back, the audit Event written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def loop_lag(url: str) -> str:
    """The bot's event-loop lag so far, from its /metrics: the worst, and the bucket bound that holds
    99% of the half-second samples."""
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    buckets: list[tuple[float, float]] = []
    worst = 0.0
    for line in text.splitlines():
        if line.startswith("release_bot_event_loop_lag_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("release_bot_event_loop_lag_max_seconds "):
            worst = float(line.rsplit(" ", 1)[1])
    total = buckets[-1][1] if buckets else 0.0
    p99 = next((bound for bound, count in buckets if total and count >= 0.99 * total), float("nan"))
    return f"event-loop lag: worst {worst * 1000:.0f} ms, 99% of {total:.0f} samples under {p99 * 1000:g} ms"


async def metric(url: str, name: str, match: str = "") -> float | None:
    """The sum of the samples of `name` on a /metrics page (those whose line holds `match`)."""
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#") and match in line:
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def clean_env() -> dict[str, str]:
    """This environment without proxies: everything the benchmarks talk to is on 127.0.0.1."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


async def wait_ok(url: str, timeout: float) -> None:
    """Until GET `url` answers 200."""
    async with aiohttp.ClientSession() as s, asyncio.timeout(timeout):
        while True:
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)


async def start_bot(
    sim: SlackSimulator,
    kubeconfig: Path,
    catalog: Path,
    log_path: Path,
    *,
    ready_timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int]:
    """A real `release-bot serve` process wired to `sim` and the cluster, once /readyz says so
    (`env`: more settings)."""
    port = free_port()
    settings = {
        **clean_env(),
        "SLACK_BOT_TOKEN": sim.bot_token,
        "SLACK_SIGNING_SECRET": sim.signing_secret,
        "SLACK_API_URL": sim.api_url,
        "KUBECONFIG": str(kubeconfig),
        "RELEASE_BOT_CATALOG": str(catalog),
        "RELEASE_BOT_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    with log_path.open("wb") as log:
        bot = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
            [sys.executable, "-m", "bot", "serve"], env=settings, stdout=log, stderr=subprocess.STDOUT
        )
    sim.bot_url = f"http://127.0.0.1:{port}/slack/events"
    try:
        await wait_ok(f"http://127.0.0.1:{port}/readyz", ready_timeout)
    except BaseException:
        stop_process(bot)
        raise
    return bot, port


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process we started (by its PID), SIGKILL if it has not exited in 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def bench_client(kubeconfig: Path) -> Kube:
    """A client for the benchmark's own requests, told apart from the bot's in the audit log."""
    kube = await Kube.connect(kubeconfig)
    kube.api.user_agent = BENCH_UA
    return kube


# --- 1. acks, one at a time -------------------------------------------------------------------------


async def sequential_acks(player: SlackPlayer, n: int) -> None:
    for text in ("help", "status hexo"):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            answer = await player.command("alice", text)
            times.append((time.perf_counter() - start) * 1000)
            assert answer.status == 200
        print(
            f"ack `/release {text}` one at a time, over {n}: p50 {pct(times, 0.5):.1f} ms, "
            f"p99 {pct(times, 0.99):.1f} ms, max {max(times):.1f} ms, mean {statistics.fmean(times):.1f} ms"
        )


# --- 2. acks, many at once, beside a bare handler ---------------------------------------------------


def signed_help(player: SlackPlayer, n: int) -> list[dict[str, object]]:
    """`n` signed `/release help` requests, made before the clock starts, as bench.load reads them."""
    requests: list[dict[str, object]] = []
    for _ in range(n):
        body = urllib.parse.urlencode(player.command_form("alice", "help")).encode()
        requests.append({"body": body.decode(), "headers": player.signed_headers(body, FORM)})
    return requests


async def load(url: str, requests: list[dict[str, object]], concurrency: int, work: Path) -> Burst:
    """One burst from bench.load, a process of its own (nothing else in its event loop)."""
    path = work / "requests.json"
    path.write_text(json.dumps(requests))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.load",
        f"--url={url}",
        f"--requests={path}",
        f"--concurrency={concurrency}",
        stdout=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.load exited with status {proc.returncode}")
    return Burst(**json.loads(out))


async def concurrent_acks(
    player: SlackPlayer, bot_url: str, work: Path, *, concurrency: int, requests: int, rounds: int
) -> None:
    body = urllib.parse.urlencode(player.command_form("alice", "help")).encode()
    async with (
        aiohttp.ClientSession() as s,
        s.post(bot_url, data=body, headers=player.signed_headers(body, FORM)) as r,
    ):
        answer, content_type, charset = await r.read(), r.content_type, r.charset
    body_file = work / "help-answer.bin"
    body_file.write_bytes(answer)
    port = free_port()
    argv = [sys.executable, "-m", "bench.bare_server", f"--port={port}", f"--body-file={body_file}"]
    argv += [f"--content-type={content_type}", *([f"--charset={charset}"] if charset else [])]
    with (work / "bare-server.log").open("wb") as log:
        bare = subprocess.Popen(argv, env=clean_env(), stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        await wait_ok(f"http://127.0.0.1:{port}/healthz", 30)
        urls = {"bot": bot_url, "bare": f"http://127.0.0.1:{port}/slack/events"}
        runs: dict[str, list[Burst]] = {"bot": [], "bare": []}
        for i in range(rounds):
            for target in ("bot", "bare") if i % 2 == 0 else ("bare", "bot"):
                signed = signed_help(player, requests + concurrency)
                runs[target].append(await load(urls[target], signed, concurrency, work))
    finally:
        stop_process(bare)

    def p50(b: Burst) -> float:
        return pct(b.latencies_ms, 0.5)

    def p99(b: Burst) -> float:
        return pct(b.latencies_ms, 0.99)

    def rate(b: Burst) -> float:
        return b.per_second

    print(
        f"ack `/release help`, {concurrency} at a time, {requests} requests a round, median (min–max) "
        f"over {rounds} rounds; bare = aiohttp answering the same {len(answer)}-byte body unverified:"
    )
    for name, fn, fmt, unit in (
        ("p50", p50, ".1f", " ms"),
        ("p99", p99, ".1f", " ms"),
        ("rate", rate, ".0f", "/s"),
    ):
        bot_v, bare_v = [fn(b) for b in runs["bot"]], [fn(b) for b in runs["bare"]]
        print(
            f"  {name:4s}  bot {spread(bot_v, fmt, unit)}, bare {spread(bare_v, fmt, unit)}, "
            f"bot/bare {spread(ratios(bot_v, bare_v), '.2f', '×')}"
        )
    failed = {k: sum(b.failed for b in v) for k, v in runs.items()}
    if any(failed.values()):
        print(f"  not answered 200: bot {failed['bot']}, bare {failed['bare']}")


# --- 3. a rolling release, through the bot and with kubectl -----------------------------------------


def twin_deployment(catalog: dict[str, Any]) -> dict[str, Any]:
    """hexo's Deployment under another name and labels, with the rolling parameters and deadline the
    bot sets on hexo with every release (from the catalog), so both roll out the same way."""
    dep = copy.deepcopy(next(o for o in hexo.objects(NS) if o["kind"] == "Deployment"))
    app = catalog["apps"]["hexo"]
    labels = {"app": f"{TWIN}-server", "version": "v1.0"}
    dep["metadata"].update(name=TWIN, labels=dict(labels))
    spec = dep["spec"]
    spec["selector"] = {"matchLabels": dict(labels)}
    spec["template"]["metadata"]["labels"] = dict(labels)
    spec["progressDeadlineSeconds"] = app["progress_deadline_seconds"]
    rolling = app["rolling"]
    spec["strategy"] = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": rolling["max_surge"], "maxUnavailable": rolling["max_unavailable"]},
    }
    return dep


async def install_twin(kube: Kube, catalog: dict[str, Any]) -> None:
    with contextlib.suppress(KubeConflict):  # there already
        await kube.create_deployment(NS, twin_deployment(catalog))
    await kube.watch_deployment(NS, TWIN, lambda d: True if progress(d).complete else None, timeout=120)


def rolled_out(deployment: dict[str, Any], image: str) -> bool:
    return container_image(deployment, CONTAINER) == image and progress(deployment).complete


async def completed(kube: Kube, name: str, image: str, listening: asyncio.Event) -> float:
    """When Deployment `name` completed its rollout to `image` (perf_counter); `listening` is set
    once the watch has listed, so nothing after that can be missed."""
    events = kube.deployment_events(NS, name)
    try:
        async for kind, obj in events:
            if kind == "SYNCED":
                listening.set()
            elif kind in ("ADDED", "MODIFIED") and rolled_out(obj, image):
                return time.perf_counter()
    finally:
        await aclose(events)
    raise AssertionError("unreachable: the stream only ends by cancellation")


async def aclose(events: AsyncIterator[Any]) -> None:
    """Close a watch stream now (its connection with it), not whenever it is collected."""
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


async def watch_completion(kube: Kube, name: str, image: str) -> asyncio.Task[float]:
    listening = asyncio.Event()
    task = asyncio.create_task(completed(kube, name, image, listening))
    try:
        async with asyncio.timeout(30):
            await listening.wait()
    except BaseException:
        task.cancel()
        raise
    return task


@dataclass
class Release:
    wall_s: float
    lag_s: float  # from the Deployment completing to the card saying so, or kubectl returning
    requests: int  # without GET /version
    probes: int  # GET /version
    kinds: Counter[str]  # by verb and resource, probes included
    self_counted: float = 0.0  # the bot's own counter (probes included)
    slack_calls: int = 0
    trace: tuple[str, ...] = ()  # the bot's requests in order: verb and path


async def kubectl(kubeconfig: Path, cache: Path, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        f"--cache-dir={cache}",
        "-n",
        NS,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {err.decode(errors='replace').strip()}")


async def kubectl_release(
    kube: Kube, audit: AuditLog, kubeconfig: Path, cache: Path, version: str
) -> Release:
    image = f"{hexo.IMAGE_REPO}:{version}"
    done = await watch_completion(kube, TWIN, image)
    mark = audit.mark()
    started = time.perf_counter()
    await kubectl(kubeconfig, cache, "set", "image", f"deployment/{TWIN}", f"{CONTAINER}={image}")
    await kubectl(kubeconfig, cache, "rollout", "status", f"deployment/{TWIN}", "--timeout=300s")
    ended = time.perf_counter()
    async with asyncio.timeout(30):
        t_complete = await done
    window = audit.since(mark)  # kubectl has exited: every request it made is in the log
    return Release(
        ended - started,
        ended - t_complete,
        window.count("kubectl", probes=False),
        window.probes("kubectl"),
        window.kinds("kubectl"),
    )


async def bot_release(
    sim: SlackSimulator, player: SlackPlayer, kube: Kube, audit: AuditLog, metrics_url: str, version: str
) -> Release:
    image = f"{hexo.IMAGE_REPO}:{version}"
    channel = sim.channels["releases"]
    seen = {m["ts"] for m in sim.history(channel)}
    done = await watch_completion(kube, "hexo", image)
    before = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
    calls = len(sim.calls)
    mark = audit.mark()
    started = time.perf_counter()
    answer = await player.command("alice", f"hexo {version}")
    assert answer.status == 200

    def card_succeeded() -> float | None:
        for m in sim.history(channel):
            if m["ts"] not in seen and "Succeeded" in json.dumps(m.get("blocks") or []):
                return time.perf_counter()
        return None

    t_card = await sim.wait_for(card_succeeded, timeout=300)
    async with asyncio.timeout(30):
        t_complete = await done
    await asyncio.sleep(SETTLE_S)
    window = audit.since(mark)
    after = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
    slack = sum(1 for c in sim.calls[calls:] if c.method.startswith("chat."))
    return Release(
        t_card - started,
        t_card - t_complete,
        window.count("bot", probes=False),
        window.probes("bot"),
        window.kinds("bot"),
        after - before,
        slack,
        window.trace("bot"),
    )


async def rolling_vs_kubectl(
    sim: SlackSimulator,
    player: SlackPlayer,
    kubeconfig: Path,
    catalog: dict[str, Any],
    audit: AuditLog,
    metrics_url: str,
    work: Path,
    repeats: int,
    trace: bool,
) -> None:
    cache = work / "kubectl-cache"
    kube = await bench_client(kubeconfig)
    try:
        await install_twin(kube, catalog)
        mark = audit.mark()
        await kubectl(kubeconfig, cache, "get", "deployment", TWIN)  # fills kubectl's discovery cache
        warm_up = audit.since(mark).count("kubectl")
        # The bot's first release of the namespace opens the shared caches it plans and follows on
        # (one list and one watch per kind, once per process): shown apart, like kubectl's discovery.
        first = await bot_release(sim, player, kube, audit, metrics_url, "v1.1")
        runs: dict[str, list[Release]] = {"kubectl": [], "bot": []}
        versions = ["v1.0", "v2.0"]  # both start at v1.0 (hexo at v1.1 after the first release)
        for i in range(repeats):
            old, new = versions[i % 2], versions[(i + 1) % 2]
            for way in ("kubectl", "bot") if i % 2 == 0 else ("bot", "kubectl"):
                if way == "kubectl":
                    runs[way].append(await kubectl_release(kube, audit, kubeconfig, cache, new))
                else:
                    runs[way].append(await bot_release(sim, player, kube, audit, metrics_url, new))
            k, b = runs["kubectl"][-1], runs["bot"][-1]
            print(
                f"  {old} -> {new}: kubectl {k.wall_s:.1f} s, {k.requests}+{k.probes} requests; "
                f"bot {b.wall_s:.1f} s, {b.requests}+{b.probes} requests; card {b.lag_s * 1000:.0f} ms "
                f"and kubectl {k.lag_s * 1000:.0f} ms after the Deployment completed"
            )
    finally:
        await kube.close()
    k_runs, b_runs = runs["kubectl"], runs["bot"]
    k_wall, b_wall = [r.wall_s for r in k_runs], [r.wall_s for r in b_runs]
    k_req, b_req = [float(r.requests + r.probes) for r in k_runs], [float(r.requests) for r in b_runs]
    print(
        f"rolling release of 6 pods (maxSurge 1, maxUnavailable 0), median (min–max) over {repeats}; "
        "kubectl = `kubectl set image && kubectl rollout status`:"
    )
    print(
        f"  wall time: kubectl {spread(k_wall, unit=' s')}, bot {spread(b_wall, unit=' s')} "
        f"(command sent -> card says Succeeded), bot/kubectl {spread(ratios(b_wall, k_wall), '.2f', '×')}"
    )
    print(
        f"  Kubernetes API requests (apiserver audit log): kubectl {spread(k_req, '.0f')} "
        f"(incl. {spread([float(r.probes) for r in k_runs], '.0f')} GET /version by the kubectl "
        f"dispatcher), bot {spread(b_req, '.0f')} (without its GET /version readiness probe every 2 s: "
        f"{spread([float(r.probes) for r in b_runs], '.0f')} more), "
        f"bot/kubectl {spread(ratios(b_req, k_req), '.1f', '×')}"
    )
    for way, done in runs.items():
        kinds: Counter[str] = sum((r.kinds for r in done), Counter())
        shown = ", ".join(f"{what} {count / len(done):.1f}" for what, count in kinds.most_common(8))
        print(f"  {way}'s requests by kind, per release: {shown}")
    print(
        f"  the bot's own counter for the same window: {spread([r.self_counted for r in b_runs], '.0f')} "
        f"(probes included); kubectl's discovery cache was filled first ({warm_up} requests when cold)"
    )
    print(
        f"  the bot's first release after its start, before these (its shared caches list and open "
        f"their watches, once per process): {first.requests} requests"
    )
    print(
        f"  Deployment complete -> card says so: {spread([r.lag_s * 1000 for r in b_runs], '.0f', ' ms')}; "
        f"-> `kubectl rollout status` returns: {spread([r.lag_s * 1000 for r in k_runs], '.0f', ' ms')}"
    )
    print(f"  Slack chat.* calls per release: {spread([float(r.slack_calls) for r in b_runs], '.0f')}")
    if trace:
        for n, run in enumerate(b_runs, 1):
            print(f"  the bot's requests of its release {n}, in order:")
            for line in run.trace:
                print(f"    {line}")


async def main(args: argparse.Namespace) -> None:
    print(f"load average before starting: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    work = Path(tempfile.mkdtemp(prefix="release-bot-bench-"))
    cp = ControlPlane(work / "cluster", ready_delay=1.0, audit_log=True)
    t0 = time.perf_counter()
    cluster = cp.start()
    print(f"control plane usable in {time.perf_counter() - t0:.1f} s")
    assert cp.audit_log_path is not None
    audit = AuditLog(cp.audit_log_path, kubeconfig_user(cluster.admin_kubeconfig))
    bot: subprocess.Popen[bytes] | None = None
    sim = SlackSimulator(rate_limits=False)
    try:
        await install_hexo(cluster.admin_kubeconfig, NS)
        await sim.start()
        catalog_doc = hexo.catalog(NS, sim.users)
        catalog = work / "catalog.yaml"
        catalog.write_text(yaml.safe_dump(catalog_doc))
        bot, port = await start_bot(sim, cluster.admin_kubeconfig, catalog, work / "bot.log")
        print(f"bot RSS after start: {rss_mib(bot.pid):.0f} MiB")
        player = sim.player()
        try:
            await sequential_acks(player, args.commands)
            await concurrent_acks(
                player,
                f"http://127.0.0.1:{port}/slack/events",
                work,
                concurrency=args.concurrency,
                requests=args.requests,
                rounds=args.rounds,
            )
            print(f"bot RSS after the acks: {rss_mib(bot.pid):.0f} MiB")
            print(await loop_lag(f"http://127.0.0.1:{port}/metrics"))
            await rolling_vs_kubectl(
                sim,
                player,
                cluster.admin_kubeconfig,
                catalog_doc,
                audit,
                f"http://127.0.0.1:{port}/metrics",
                work,
                args.repeats,
                args.trace,
            )
            print(f"bot RSS after the releases: {rss_mib(bot.pid):.0f} MiB")
            print(await loop_lag(f"http://127.0.0.1:{port}/metrics"))
        finally:
            await player.close()
    finally:
        if bot is not None:
            stop_process(bot)
        await sim.stop()
        cp.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300, help="sequential acks of each command")
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight at once")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round, to each")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of the concurrent acks")
    parser.add_argument("--repeats", type=int, default=3, help="releases each way")
    parser.add_argument("--trace", action="store_true", help="list the bot's requests of each release")
    asyncio.run(main(parser.parse_args()))
