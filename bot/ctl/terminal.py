"""How `release-bot ctl` shows a release: plain lines, and on a terminal a live progress bar. Pure I/O on
a text stream; every word the CLI prints about a release is here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TextIO

from bot.releases import events
from bot.releases.gate import Queued
from bot.releases.health import Live
from bot.releases.ports import Reporter, Shown
from bot.releases.record import Phase, Record, describe_phase

CLI = "cli"  # the front-end name of releases this front end alone shows
BAR = 24  # characters in the progress bar


def line(record: Record, event: events.Event) -> str:
    """A release event as one line of text."""
    match event:
        case events.Started():
            how = record.strategy.value
            if how == "rolling":
                how += f" (maxSurge {event.max_surge}, maxUnavailable {event.max_unavailable})"
            return f"{record.requester.name} started releasing {record.app} {record.from_version} -> {record.to_version}: {how}"
        case events.CanaryStep():
            health = f" ({event.health})" if event.health else ""
            return f"canary: {event.updated} new pod(s) beside {event.old} old{health}; waiting until Ready"
        case events.CanaryHealthy():
            return (
                f"canary healthy: {event.ready} new pod(s) ready beside {event.old} old; "
                "waiting for promote or rollback"
            )
        case events.Acted():
            who = event.by or "release-bot"
            return f"{event.action} by {who}" + (f": {event.detail}" if event.detail else "")
        case events.Succeeded():
            return f"{record.app} now runs {record.to_version} (done in {event.seconds:.1f} s)"
        case events.Failed():
            then = "rolling back automatically" if event.auto_rollback else "old pods keep serving"
            return f"FAILED: {event.reason}; {then}"
        case events.RolledBack():
            return f"rolled back: {record.app} runs {record.from_version} again"
        case events.GreenCreated():
            return f"green {record.green} created beside blue {record.deployment}"
        case events.LeftOver():
            return f"{event.name} left over by an earlier release: replaced"
        case events.GreenReady():
            return (
                f"green {record.green} is ready; traffic still on blue {record.deployment}: switch or abort"
            )
        case events.Switched():
            return f"traffic switched to green {record.green} in {event.seconds:.1f} s ({event.pods} pods)"
        case events.SwitchedBack():
            return f"traffic back on blue {record.deployment} in {event.seconds:.1f} s"
        case events.GreenFailed():
            return f"FAILED: green {record.green}: {event.reason}; green will be deleted"
        case events.ServiceChanged():
            return f"service {event.service} selects neither colour now; left as it is"
        case events.LeftAlone():
            return f"{event.name} was not created by this release; not deleted"
        case events.BlueGreenEnded():
            what = "aborted" if event.aborted else "rolled back"
            return f"{what}: {record.app} runs {record.from_version} on {record.deployment}"
        case events.Retired():
            return f"{record.app} now runs {record.to_version} on {record.green}; blue {event.how} ({event.seconds:.1f} s)"
        case events.ApprovalAsked():
            return f"waiting for {event.required} approval(s), for up to {event.minutes:g} min"
        case events.Approved():
            return f"approved by {event.by} ({event.count} of {event.required})"
        case events.Denied():
            return f"denied by {event.by}" + (f": {event.reason}" if event.reason else "")
        case events.ApprovalExpired():
            return f"not approved within {event.minutes:g} min ({event.count} of {event.required}): ended"
        case events.BrokeGlass():
            return f"BREAK-GLASS by {event.by}: {event.reason} (approvals and freezes skipped)"
        case events.Overridden():
            return f"freeze {event.window} overridden by {event.by} to {event.action}: {event.reason}"
        case events.QueuePaused():
            return f"queue paused: {event.waiting} release(s) wait until a release of {record.app} succeeds"
        case events.AutoscalerHeld():
            return f"autoscaler {event.name} held at {event.replicas} pod(s) while the release runs"
        case events.AutoscalerRestored():
            return (
                f"autoscaler {event.name} back to {event.min_replicas}..{event.max_replicas} pods, "
                f"scaling {event.target}"
            )
        case events.FollowerRolledOut():
            return f"{event.name} runs {record.to_version}" + (f" ({event.health})" if event.health else "")
        case events.Analysed(outcome="failed"):
            return f"analysis: {event.detail}: failure {event.failures} of {event.limit} allowed"
        case events.Analysed(outcome="waiting"):
            return f"analysis cannot judge the canary ({event.detail}); waiting"
        case events.Analysed():
            return "analysis can judge the canary again"
        case events.GateRefused():
            what = "the release" if event.phase == "pre-rollout" else "the promotion"
            return f"gate {event.gate} said no to {what}" + (f": {event.said}" if event.said else "")
    raise AssertionError(f"no wording for {event!r}")


def bar(record: Record, live: Live) -> str:
    p = live.progress
    status = describe_phase(record.phase)
    if live.unreachable_since is not None:
        status += f" - cluster unreachable since {live.unreachable_since:%H:%M:%S} UTC"
    if p is None or not p.desired:
        return f"[{'.' * BAR}] {status}"
    done = min(BAR, round(BAR * p.updated / p.desired))
    return f"[{'#' * done}{'.' * (BAR - done)}] {p.updated}/{p.desired} updated, {p.ready} ready - {status}"


class TerminalReporter:
    """Prints a release's events as lines (and a progress bar on a terminal). With `inner` (the Slack
    reporter, for `--slack-channel`) the release is shown there too, and that card is its card."""

    def __init__(self, out: TextIO, *, tty: bool, inner: Reporter | None = None) -> None:
        self.out = out
        self.tty = tty
        self.inner = inner
        self.listener: Shown | None = None
        self._printed: dict[str, int] = {}
        self._bar = ""
        self._pending: set[asyncio.Future[None]] = set()

    def _write(self, text: str) -> None:
        if self.tty and self._bar:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        if self.tty and self._bar:
            self.out.write(self._bar)
        self.out.flush()

    def _show_bar(self, text: str) -> None:
        if text == self._bar:
            return
        self._bar = text
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        else:
            self.out.write(text + "\n")
            self.out.flush()

    # --- the Reporter protocol -----------------------------------------------------------------------

    def attach(self, listener: Shown) -> None:
        self.listener = listener
        if self.inner is not None:
            self.inner.attach(listener)

    async def ready(self, record: Record) -> bool:
        if self.inner is not None and record.front_end != CLI:
            return await self.inner.ready(record)
        return True

    async def open(self, record: Record, live: Live) -> str:
        if self.inner is not None and record.front_end != CLI:
            return await self.inner.open(record, live)
        return f"{CLI}:{record.id}"

    def show(self, record: Record, live: Live, *, final: bool = False) -> None:
        if self.inner is not None:
            self.inner.show(record, live, final=final)
        start = self._printed.get(record.id, 0)
        for event in record.notes[start:]:
            self._write(line(record, event))
        self._printed[record.id] = len(record.notes)
        if not record.finished:
            self._show_bar(bar(record, live))
        elif self.tty and self._bar:
            self.out.write("\r\033[K")
            self.out.flush()
            self._bar = ""
        if final and record.front_end == CLI and not record.active and not record.synced and self.listener:
            self._spawn(self.listener.shown(record, len(record.notes)))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=10)

    def delivered(self, release_id: str) -> int | None:
        return self.inner.delivered(release_id) if self.inner is not None else None

    async def card_refused(self, record: Record, error: str) -> None:
        self._write(f"the Slack card could not be posted ({error}); nothing was changed")
        if self.inner is not None:
            await self.inner.card_refused(record, error)

    async def permalink(self, record: Record) -> str:
        return await self.inner.permalink(record) if self.inner is not None else ""

    async def announce(self, channel: str, text: str) -> None:
        if self.inner is not None:
            await self.inner.announce(channel, text)

    async def broadcast(self, channel: str, record: Record, event: events.Event) -> None:
        if record.front_end == CLI:
            self._write(line(record, event))
        if self.inner is not None:
            await self.inner.broadcast(channel, record, event)

    async def queued_refused(self, entry: Queued, app: str, refusal: Exception) -> None:
        if entry.front_end == CLI:
            self._write(f"the queued release of {app} {entry.intent.version} could not start: {refusal}")
        if self.inner is not None:
            await self.inner.queued_refused(entry, app, refusal)


def outcome(record: Record) -> int:
    """The exit status for how a release ended: 0 succeeded, 1 failed, 3 rolled back or aborted."""
    if record.phase is Phase.SUCCEEDED:
        return 0
    if record.phase in (Phase.ROLLED_BACK, Phase.ABORTED):
        return 3
    if record.phase is Phase.FAILED:
        return 1
    return 0  # waiting for a decision (a canary step, green ready, switched)


def closing(record: Record) -> str:
    why = f": {record.reason}" if record.reason else ""
    return f"{record.app}: {describe_phase(record.phase)}{why}"


def plan_text(record: Record) -> str:
    """`ctl release ... --dry-run`: the pre-flight plan as plain lines."""
    plan = record.preflight
    out = [
        f"dry run: {record.app} {record.from_version} -> {record.to_version} ({record.strategy.value}) "
        f"on {record.namespace}/{record.deployment}; nothing was changed"
    ]
    if plan is not None:
        out += [f"  change {c}" for c in plan.changes] or ["  no change to the pod template"]
        out.append(f"  steps: new pods at each pause {', '.join(str(n) for n in plan.steps)}")
        out.append(
            f"  peak: {plan.peak_pods} pods, {plan.peak_cpu_millis}m CPU, {plan.peak_memory_bytes} bytes requested"
        )
        out += [f"  warning: {w.text}" for w in plan.warnings]
    if record.phase is Phase.AWAITING_APPROVAL:
        out.append(f"  waits for {record.approvals_required} approval(s)")
    return "\n".join(out)
