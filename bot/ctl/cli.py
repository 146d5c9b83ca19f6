"""`release-bot ctl`: release from a terminal or a CI job.

    release-bot ctl release hexo v2.0 [--canary|--bluegreen|--rolling] [--env E]
    release-bot ctl promote|rollback|abort|finish|status|history|pause|resume hexo

The words are the `/release` language (the same parser, the same answers to bad input). The catalog is
the bot's (`--catalog` or RELEASE_BOT_CATALOG), the cluster and the rights are the caller's kubeconfig:
Kubernetes RBAC decides what the caller may do. Releases go through the same engine, records and
locks as the bot, so a running bot and this command have exactly one winner. With `--slack-channel`
(and SLACK_BOT_TOKEN) the card is posted in Slack too, where people may Promote or Roll back (the bot
checks their rights) while this command follows.

Exit status: 0 succeeded (or waiting for a decision after `--until decision`), 1 failed, 3 rolled back
or aborted, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bot.analysis import Analyst
from bot.catalog import DEFAULT_CLUSTER, Catalog
from bot.ctl.terminal import CLI, TerminalReporter, closing, outcome, plan_text
from bot.errors import ConfigError, UserError
from bot.kube import access
from bot.releases import events
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.gate import Enqueued
from bot.releases.health import Live, revision, running
from bot.releases.history import deployment_diff
from bot.releases.objects import MANAGED_SELECTOR
from bot.releases.ports import Reporter
from bot.releases.record import Actor, Phase, Record, Request, utcnow
from bot.releases.store import decode, is_record, object_name
from commands import intents
from commands.parser import UsageError, parse

WAITING = frozenset({Phase.AWAITING_APPROVAL, Phase.CANARY, Phase.AWAITING_SWITCH, Phase.SWITCHED})
LEASE_SECONDS = 15.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", type=Path, help="the bot's app catalog (env RELEASE_BOT_CATALOG)")
    parser.add_argument("--kubeconfig", type=Path, help="your kubeconfig (env KUBECONFIG)")
    parser.add_argument(
        "--slack-channel",
        metavar="C…",
        help="also post the card in this Slack channel (needs SLACK_BOT_TOKEN)",
    )
    parser.add_argument(
        "--until",
        choices=("end", "decision"),
        default="end",
        help="follow the release to its end (default), or only until it waits for a decision",
    )
    parser.add_argument(
        "words", nargs=argparse.REMAINDER, help="release APP VERSION [flags] | promote APP | ..."
    )


# Builds the reporter that also shows the release in Slack (given by the command's wiring, so this
# front end never imports the Slack one); it is told the engine to report back to.
SlackFactory = Callable[[contextlib.AsyncExitStack], Awaitable[Reporter]]


def run(args: argparse.Namespace, slack: SlackFactory | None = None) -> int:
    catalog_path = args.catalog or Path(os.environ.get("RELEASE_BOT_CATALOG", "catalog.yaml"))
    catalog = Catalog.load(catalog_path)
    words = list(args.words)
    if words and words[0] == "release":
        words = words[1:]
    try:
        # The shell took the quotes off: put them back around words with spaces (a reason).
        intent = parse(
            " ".join(f'"{w}"' if any(c.isspace() for c in w) else w for w in words), apps=catalog.apps.keys()
        )
    except UsageError as e:
        raise ConfigError(str(e).replace("/release", "release-bot ctl")) from e
    if isinstance(intent, (intents.Help, intents.Apps)):
        for app in catalog.apps.values():
            print(f"{app.name}\t{app.namespace}\t{', '.join(s.value for s in app.strategies)}")
        return 0
    kubeconfig = args.kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    try:
        return asyncio.run(_main(args, catalog, intent, kubeconfig, slack))
    except KeyboardInterrupt:
        print("\nstopped following; the release goes on (see `release-bot ctl status`)", file=sys.stderr)
        return 130


def _apps_of(intent: intents.Intent) -> list[str]:
    """The apps a command acts on or reads: their clusters are the ones to connect."""
    names = [str(getattr(intent, "app", "") or "")]
    names += [str(getattr(intent, field, "") or "") for field in ("source", "other")]
    return [n for n in names if n]


def _who(kubeconfig: Path | None) -> Actor:
    """The caller, as the audit trail names them: their kubeconfig user (else their login)."""
    name = getpass.getuser()
    with contextlib.suppress(Exception):
        import yaml

        cfg: Any = yaml.safe_load((kubeconfig or Path.home() / ".kube" / "config").read_text())
        current = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg.get("contexts", []) if c["name"] == current)
        name = str(ctx.get("user") or name)
    return Actor(id=f"kube:{name}", name=name)


async def _main(
    args: argparse.Namespace,
    catalog: Catalog,
    intent: intents.Intent,
    kubeconfig: Path | None,
    slack: SlackFactory | None,
) -> int:
    names = {catalog.apps[a].cluster for a in _apps_of(intent) if a in catalog.apps}
    clusters = await access.connect_clusters(catalog, kubeconfig, sorted(names) or [DEFAULT_CLUSTER])
    async with contextlib.AsyncExitStack() as stack:
        for kube in clusters.values():
            stack.push_async_callback(kube.close)
        tty = sys.stdout.isatty()
        inner = None
        channel = args.slack_channel or ""
        if channel:
            if slack is None:
                raise ConfigError("--slack-channel is not available here")
            inner = await slack(stack)
        reporter = TerminalReporter(sys.stdout, tty=tty, inner=inner)
        gates = aiohttp.ClientSession()
        stack.push_async_callback(gates.close)
        engine = Engine(
            clusters,
            catalog,
            reporter,
            identity=f"ctl:{socket.gethostname()}:{os.getpid()}",
            lease_seconds=LEASE_SECONDS,
            audit=Auditor(next(iter(clusters.values()))),
            analyst=Analyst(gates),
            follow_reads=False,
        )
        stack.push_async_callback(engine.stop, 0)
        actor = _who(kubeconfig)
        code = await _act(engine, reporter, intent, actor, channel, args.until)
    return code


async def _act(
    engine: Engine,
    reporter: TerminalReporter,
    intent: intents.Intent,
    actor: Actor,
    channel: str,
    until: str,
) -> int:
    front_end = "slack" if channel else CLI
    match intent:
        case intents.Release(dry_run=True):
            record, busy, gate = await engine.preview(intent, actor, channel, "", front_end=front_end)
            print(plan_text(record))
            if busy is not None:
                print(f"note: {busy.to_version} is being released now; this would be refused")
            if gate.lock is not None:
                print(f"note: locked by {gate.lock.holder.name}: {gate.lock.reason}")
            return 0
        case intents.Promotion():
            promoted = await engine.begin_promotion(intent, actor, channel, "", front_end=front_end)
            return await _follow(engine, reporter, promoted, until)
        case intents.Release():
            started = await engine.begin(intent, actor, channel, "", front_end=front_end)
            if isinstance(started, Enqueued):
                print(f"{intent.app}: {intent.version} queued at position {started.position}")
                return 0
            return await _follow(engine, reporter, started, until)
        case intents.Promote() | intents.Abort() | intents.Finish():
            record = await engine.request(intent.app, Request(intent.kind), actor)
            return await _follow(engine, reporter, record, "decision", moved=True)
        case intents.Rollback():
            app = engine.app(intent.app)
            _, stored = await engine.status(app)
            if stored is not None and stored.record.active and intent.to_revision is None:
                record = await engine.request(app.name, Request.ROLLBACK, actor)
            else:
                record = await engine.begin_undo(app, intent.to_revision, actor, channel, "", None)
            return await _follow(engine, reporter, record, until, moved=True)
        case intents.Status():
            app = engine.app(intent.app)
            dep, stored = await engine.status(app)
            _print_status(dep, stored.record if stored else None)
            for other in await engine.others(app):
                also = running(other)
                print(
                    f"also {also.name}: {', '.join(image for _, image in also.images)}, ready {also.progress.ready}"
                )
            return 0
        case intents.Diff():
            first, second = engine.app(intent.app), engine.app(intent.other)
            (dep, _), (other, _) = await engine.status(first), await engine.status(second)
            print(
                f"{first.name} ({first.namespace}/{dep['metadata']['name']}) -> {second.name} "
                f"({second.namespace}/{other['metadata']['name']})"
            )
            replicas, changes = deployment_diff(dep, other)
            if replicas is not None:
                changes.insert(0, f"replicas: {replicas[0]} -> {replicas[1]}")
            print("\n".join(changes) or "same pod template and replicas")
            return 0
        case intents.History():
            dep, revisions = await engine.history(engine.app(intent.app))
            for r in revisions:
                mark = " (running)" if r.images and r.number == revision(dep) else ""
                print(f"{r.number}\t{', '.join(r.images)}\t{r.change_cause or '-'}{mark}")
            return 0
        case intents.Pause() | intents.Resume():
            app = engine.app(intent.app)
            await engine.set_paused(app, isinstance(intent, intents.Pause), actor, channel)
            print(f"{app.name}: {'paused' if isinstance(intent, intents.Pause) else 'resumed'}")
            return 0
        case intents.Lock():
            await engine.lock(intent.app, actor, intent.reason, channel)
            print(f"{intent.app}: locked ({intent.reason})")
            return 0
        case intents.Unlock():
            await engine.unlock(intent.app, actor, channel)
            print(f"{intent.app}: unlocked")
            return 0
        case intents.Dequeue():
            gate = await engine.dequeue(intent.app, actor, channel)
            print(f"{intent.app}: taken off the queue; {len(gate.queue)} still wait")
            return 0
    raise UserError(f"`{intent.kind}` is not available from the command line")


def _print_status(dep: dict[str, Any], record: Record | None) -> None:
    now = running(dep)
    p = now.progress
    print(f"{now.namespace}/{now.name}: {', '.join(image for _, image in now.images)}")
    print(f"replicas: desired {p.desired}, updated {p.updated}, ready {p.ready}, available {p.available}")
    if record is not None:
        state = "current" if record.active else "last"
        print(
            f"{state} release: {record.to_version} ({record.strategy.value}) by {record.requester.name}: ",
            end="",
        )
        print(closing(record).split(": ", 1)[1])


async def _follow(
    engine: Engine, reporter: TerminalReporter, record: Record, until: str, moved: bool = False
) -> int:
    """Follow the record through the records cache until it ends (or, with until=decision, waits for
    one); print its events as they come. `moved`: wait for the state to leave the one asked from."""
    first = (record.phase, len(record.history))
    done = asyncio.Event()
    latest = [record]
    informer = engine.site(record.app).caches.configmaps(record.namespace, MANAGED_SELECTOR)

    def on_change(kind: str, obj: dict[str, Any]) -> None:
        if (
            not obj
            or kind == "DELETED"
            or not is_record(obj)
            or obj["metadata"]["name"] != object_name(record.app)
        ):
            return
        current = decode(obj).record
        if current.id != record.id:
            return
        latest[0] = current
        reporter.show(current, Live(now=utcnow()))
        if (not current.active and current.synced) or (
            until == "decision"
            and current.phase in WAITING
            and current.request is None
            and (current.phase is not Phase.CANARY or events.canary_healthy(current.notes, current.step))
            and (not moved or (current.phase, len(current.history)) != first)
        ):
            done.set()

    unsubscribe = informer.subscribe(on_change)
    try:
        await done.wait()
    finally:
        unsubscribe()
    await reporter.flush()
    final = latest[0]
    print(closing(final), file=sys.stderr if outcome(final) else sys.stdout)
    return outcome(final)
