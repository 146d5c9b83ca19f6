"""Many releases at once in one channel, with Slack's rate limits on or off: figures, never assertions.

    .venv/bin/python -m bench.concurrency_bench [--limits on|off] [--releases N ...] [--repeats 1]

For each N (default 1 20 50 with `--limits on`, 20 50 with `--limits off`): a fresh namespace with N
small Deployments (2 pods), one catalog app each, one real `release-bot serve` process, N signed
`/release appK v2.0` sent at once. Prints:

- how many cards and threads end correct, the wall time (from sending the commands to the last card
  and thread correct), the 429s Slack answered, Slack calls and Kubernetes API requests per release
  (the bot's /metrics; by verb and resource from the apiserver's audit log, bench.audit), the bot's
  memory;
- the two parts of the wall time: when the last Deployment completed (the benchmark's own watch),
  and the least time the Slack calls made take at the pace the bot keeps by itself
  (bot.slack.outbox: about one post a second per channel, whether or not Slack answers 429);
- whether every driver lease was renewed on time. The benchmark watches the namespace's Leases: the
  longest a lease went unrenewed while held (against its duration), and every change of holder,
  told apart as a re-take after the bot's own hand-back (holder none, then the bot again) or a
  takeover (straight from one holder to another: a lost lease). After the run it reads
  `leaseTransitions` with `kubectl get lease`, which counts both kinds, as Kubernetes does.

With both 20 and 50 it prints the wall-time ratio 50/20; with `--repeats` above 1, medians (min–max).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.audit import AuditLog, kubeconfig_user
from bench.figures import ratios, spread
from bench.release_bench import bench_client, clean_env, loop_lag, metric, rss_mib, start_bot, stop_process
from bot.kube.client import Kube, KubeConflict, connected
from bot.releases.health import container_image, progress
from bot.slack import outbox
from sandbox import hexo
from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
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


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class LeaseWatch:
    """Every change of the namespace's Leases as the benchmark's watch saw it: the longest a lease
    went without renewal while it was held (renewal to renewal, and last renewal to hand-back), the
    re-takes after a hand-back (holder none, then a holder again: Kubernetes counts those as
    transitions too) and the takeovers (one holder straight to another: a lost lease)."""

    longest_s: float = 0.0
    late: int = 0  # gaps longer than the lease's duration: it had run out
    duration_s: float = 0.0
    retakes: int = 0
    takeovers: int = 0
    _held: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # name -> (holder, renewed)
    _handed_back: set[str] = field(default_factory=set)

    def seen(self, lease: dict[str, Any]) -> None:
        name, spec = lease["metadata"]["name"], lease.get("spec") or {}
        holder, renewed = spec.get("holderIdentity"), _time(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or 0)
        self.duration_s = max(self.duration_s, duration)
        held = self._held.pop(name, None)
        if held is not None and holder == held[0] and renewed is not None:
            self._gap((renewed - held[1]).total_seconds(), duration)
        elif held is not None and not holder:  # handed back: unrenewed since the last renewal
            self._gap((datetime.now(UTC) - held[1]).total_seconds(), duration)
            self._handed_back.add(name)
        elif held is not None and holder:
            self.takeovers += 1
        if holder and renewed is not None:
            if held is None and name in self._handed_back:
                self.retakes += 1
                self._handed_back.discard(name)
            self._held[name] = (holder, renewed)

    def _gap(self, seconds: float, duration: float) -> None:
        self.longest_s = max(self.longest_s, seconds)
        if duration and seconds > duration:
            self.late += 1


async def follow_leases(kube: Kube, ns: str, watch: LeaseWatch, listening: asyncio.Event) -> None:
    async for kind, obj in kube.stream(
        f"leases in {ns}", lambda **kw: kube.coordination.list_namespaced_lease(ns, **kw)
    ):
        if kind == "SYNCED":
            listening.set()
        elif kind in ("ADDED", "MODIFIED"):
            watch.seen(obj)


async def follow_rollouts(kube: Kube, ns: str, image: str, done: dict[str, float]) -> None:
    """When each Deployment of `ns` completed its rollout to `image` (perf_counter), as the
    benchmark's own watch saw it: the cluster's part of the wall time."""
    async for kind, obj in kube.stream_of("deployments", ns):
        name = obj.get("metadata", {}).get("name")
        if kind not in ("ADDED", "MODIFIED") or name in done:
            continue
        if container_image(obj, "web") == image and progress(obj).complete:
            done[name] = time.perf_counter()


async def lease_transitions(kubeconfig: Path, ns: str) -> dict[str, int]:
    """`kubectl get lease -o json`: each Lease's spec.leaseTransitions (absent means 0)."""
    proc = await asyncio.create_subprocess_exec(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        "get",
        "lease",
        "-n",
        ns,
        "-o",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl get lease failed: {err.decode(errors='replace').strip()}")
    return {
        item["metadata"]["name"]: int(item.get("spec", {}).get("leaseTransitions") or 0)
        for item in json.loads(out)["items"]
    }


def slack_floor(posts: int, updates: int) -> float:
    """The seconds the outbox's own budgets need for that many posts (one channel) and updates."""
    post_s = max(0, posts - outbox.POST_BURST) / outbox.POSTS_PER_SECOND
    update_s = max(0, updates - outbox.UPDATE_BURST) / outbox.UPDATES_PER_SECOND
    return max(post_s, update_s)


@dataclass
class Outcome:
    wall_s: float
    correct: int


async def run_one(
    cluster: ClusterInfo, audit: AuditLog, work: Path, n: int, *, limits: bool, tag: str
) -> Outcome:
    ns = f"bench-{tag}-{n}"
    names = [f"app-{i:02d}" for i in range(n)]
    await prepare(cluster.admin_kubeconfig, ns, names)
    sim = SlackSimulator(rate_limits=limits)
    await sim.start()
    catalog = work / f"catalog-{ns}.yaml"
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
    kube = await bench_client(cluster.admin_kubeconfig)
    leases = LeaseWatch()
    listening = asyncio.Event()
    rolled_out: dict[str, float] = {}
    followers = [
        asyncio.create_task(follow_leases(kube, ns, leases, listening)),
        asyncio.create_task(follow_rollouts(kube, ns, f"{hexo.IMAGE_REPO}:v2.0", rolled_out)),
    ]
    bot, port = await start_bot(sim, cluster.admin_kubeconfig, catalog, work / f"bot-{ns}.log")
    try:
        async with asyncio.timeout(30):
            await listening.wait()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        before = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
        mark = audit.mark()
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
        done = correct()
        after = await metric(metrics_url, "release_bot_kube_api_requests_total") or 0.0
        calls = [c for c in sim.calls if c.method.startswith("chat.")]
        limited = sum(1 for c in sim.calls if c.error == "ratelimited")
        print(
            f"{n:3d} at once, Slack limits {'on' if limits else 'off'}: {done}/{n} cards and threads "
            f"correct in {wall:.1f} s; {limited} answered 429; {len(calls) / n:.1f} Slack calls and "
            f"{(after - before) / n:.1f} Kubernetes requests per release; bot RSS {rss_mib(bot.pid):.0f} MiB"
        )
        print(f"     {await loop_lag(metrics_url)}")
        if rolled_out:
            last = max(rolled_out.values()) - started
            print(
                f"     the cluster's part: {len(rolled_out)}/{n} Deployments rolled out, the last "
                f"{last:.1f} s after the commands were sent; the last card correct {wall - last:.1f} s later"
            )
        post_calls = sim.calls_to("chat.postMessage")
        posts, updates = len(post_calls), len(sim.calls_to("chat.update"))
        span = post_calls[-1].time - post_calls[0].time if post_calls else 0.0
        print(
            f"     Slack's part: {posts} chat.postMessage in the one channel (over {span:.1f} s, first "
            f"to last) and {updates} chat.update; at the pace the bot keeps by itself "
            f"({outbox.POSTS_PER_SECOND:.0f}/s per channel, bursts of {outbox.POST_BURST}; "
            f"{outbox.UPDATES_PER_SECOND * 60:.0f}/min, bursts of {outbox.UPDATE_BURST}) they take at "
            f"least {slack_floor(posts, updates):.0f} s"
        )
        await asyncio.sleep(1.0)  # the last hand-backs reach the watch
        kinds = audit.since(mark).kinds("bot")
        top = ", ".join(f"{what} {count / n:.1f}" for what, count in kinds.most_common(5))
        print(
            f"     Kubernetes requests per release by kind (apiserver audit log): "
            f"{sum(kinds.values()) / n:.1f} in all; {top}"
        )
        transitions = await lease_transitions(cluster.admin_kubeconfig, ns)
        zero = sum(1 for t in transitions.values() if t == 0)
        on_time = leases.late == 0 and leases.takeovers == 0 and len(transitions) == n
        print(
            f"     leases: leaseTransitions 0 for {zero}/{n} (kubectl get lease), "
            f"{sum(transitions.values())} in all; seen by the watch: re-takes after the bot's own "
            f"hand-back {leases.retakes}, takeovers {leases.takeovers}; longest unrenewed while held "
            f"{leases.longest_s:.1f} s of {leases.duration_s:.0f} s; every lease renewed on time: "
            f"{'yes' if on_time else 'no'}"
        )
        return Outcome(wall, done)
    finally:
        for follower in followers:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        await kube.close()
        stop_process(bot)
        await sim.stop()


async def main(sizes: list[int], limits: bool, repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="release-bot-bench-"))
    cp = ControlPlane(work / "cluster", ready_delay=1.0, audit_log=True)
    cluster = cp.start()
    assert cp.audit_log_path is not None
    audit = AuditLog(cp.audit_log_path, kubeconfig_user(cluster.admin_kubeconfig))
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    try:
        for r in range(repeats):
            for n in sizes:
                tag = f"{'limited' if limits else 'unlimited'}-r{r}"
                walls[n].append((await run_one(cluster, audit, work, n, limits=limits, tag=tag)).wall_s)
    finally:
        cp.stop()
    if repeats > 1:
        for n in sizes:
            print(f"{n:3d} at once: wall time {spread(walls[n], unit=' s')} over {repeats}")
    if 20 in walls and 50 in walls:
        print(
            f"wall time 50 at once / 20 at once (Slack limits {'on' if limits else 'off'}): "
            f"{spread(ratios(walls[50], walls[20]), '.2f', '×')}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", choices=["on", "off"], default="on", help="Slack's rate limits")
    parser.add_argument("--releases", type=int, nargs="+", help="default 1 20 50 (limits on), 20 50 (off)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    on = args.limits == "on"
    asyncio.run(main(args.releases or ([1, 20, 50] if on else [20, 50]), on, args.repeats))
