"""Every word the bot shows in Slack, and the Block Kit it is shown in. Pure.

Everything user- or cluster-supplied (versions, names, reasons, messages) goes through `esc` before it
reaches mrkdwn, so `<!channel>` or `<https://evil|ok>` in a tag or a pod message is shown as text.
Limits from Slack's Block Kit reference are applied here (header 150, section text 3000, button 75).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bot.catalog import App, Rule
from bot.releases import events, refusals
from bot.releases.gate import Enqueued, Gate, Queued
from bot.releases.health import Live, PodHealth, Progress
from bot.releases.health import progress as progress_of
from bot.releases.health import revision as revision_of
from bot.releases.history import Revision, template_diff
from bot.releases.record import Phase, Record, Request, describe_phase
from bot.releases.refusals import selector_text
from commands.parser import USAGE

Block = dict[str, Any]

SECTION_MAX = 3000
HEADER_MAX = 150
CONTEXT_MAX = 2000

ACTION_PREFIX = "release:"


def esc(text: object) -> str:
    """Escape for mrkdwn: Slack's three control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_mrkdwn(text: str, limit: int) -> str:
    """`clip` for mrkdwn already escaped: never cuts an entity (`&amp;`) or a control sequence
    (`<!date^…>`) in half."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut + "…"


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if user_id.isalnum() else esc(user_id)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    return f"{minutes // 60} h {minutes % 60} min"


PHASE_ICON = {
    Phase.AWAITING_APPROVAL: ":raised_hand:",
    Phase.PENDING: ":hourglass_flowing_sand:",
    Phase.ROLLING_OUT: ":arrows_counterclockwise:",
    Phase.CANARY: ":hatching_chick:",
    Phase.AWAITING_SWITCH: ":large_green_circle:",
    Phase.SWITCHED: ":twisted_rightwards_arrows:",
    Phase.ROLLING_BACK: ":rewind:",
    Phase.SUCCEEDED: ":white_check_mark:",
    Phase.FAILED: ":x:",
    Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:",
    Phase.ABORTED: ":no_entry_sign:",
}


# --- The release card ------------------------------------------------------------------------------


def card(record: Record, live: Live) -> tuple[str, list[Block]]:
    """The release card: (fallback text, blocks)."""
    end = record.finished_at or live.now or record.phase_since
    elapsed = (end - record.created_at).total_seconds()  # shown once the release has finished
    if record.undo_to is not None:
        title = (
            f"Rollback {record.app} {record.from_version} → {record.to_version} (revision {record.undo_to})"
        )
    else:
        title = f"Release {record.app} {record.from_version} → {record.to_version}"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_MAX)}},
        {
            "type": "section",
            "fields": [
                _field("App", f"`{esc(record.app)}` in `{esc(record.namespace)}`"),
                _field(
                    "Strategy",
                    "rollout undo" if record.undo_to is not None else esc(record.strategy.value),
                ),
                _field("Version", f"`{esc(record.from_version)}` → `{esc(record.to_version)}`"),
                _field("Requested by", mention(record.requester.id)),
            ],
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip_mrkdwn(_status_line(record, elapsed, live), SECTION_MAX)},
        },
    ]
    detail = _live_line(record, live)
    if detail:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": clip_mrkdwn(detail, SECTION_MAX)}}
        )
    if live.unreachable_since is not None and not record.finished:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": unreachable_line(live)}})
    gates = _gate_lines(record, live)
    if gates:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(gates, SECTION_MAX)}})
    actions = _buttons(record, live)
    if actions:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"actions:{record.id}:{record.phase.value}:{record.step}",
                "elements": actions,
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": clip(
                        f"release `{esc(record.id)}` · image `{esc(record.to_image)}` · "
                        f"started <!date^{int(record.created_at.timestamp())}^{{date_short_pretty}} {{time_secs}}|"
                        f"{record.created_at:%Y-%m-%d %H:%M:%S} UTC>",
                        CONTEXT_MAX,
                    ),
                }
            ],
        }
    )
    text = f"{esc(title)}: {describe_phase(record.phase)}"
    return text, blocks


def unreachable_line(live: Live) -> str:
    since = live.unreachable_since
    assert since is not None
    return (
        f":warning: *Cluster unreachable since* <!date^{int(since.timestamp())}^{{time_secs}}|"
        f"{since:%H:%M:%S} UTC>: what this card shows may be out of date. Nothing is decided until "
        "the cluster answers again; the release then carries on."
    )


def when(t: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A time Slack shows in the reader's own time zone (the fallback says UTC)."""
    return f"<!date^{int(t.timestamp())}^{fmt}|{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


def ago(t: datetime) -> str:
    """How long ago `t` was, as Slack shows it ("3 minutes ago", moving by itself in Slack's clients);
    the fallback says the time in UTC."""
    return f"<!date^{int(t.timestamp())}^{{ago}}|{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC>"


def who_of(ids: Iterable[str]) -> str:
    """User ids and user-group ids as Slack mentions."""
    out = [f"<!subteam^{esc(i)}>" if i.startswith("S") else mention(i) for i in ids]
    return ", ".join(out) if out else "nobody"


def _gate_lines(record: Record, live: Live) -> str:
    """What gates the release: approvals it waits for, a freeze on now, a lock, the queue after it."""
    lines = []
    if record.break_glass:
        lines.append(
            f":rotating_light: *Break-glass* by {mention(record.requester.id)}: {esc(record.break_glass)}"
        )
    if record.override:
        lines.append(
            f":snowflake: *Freeze overridden* by {mention(record.requester.id)}: {esc(record.override)}"
        )
    if record.phase is Phase.AWAITING_APPROVAL:
        got = ", ".join(mention(a.id) for a in record.approved_by) or "none yet"
        until = f" · expires {when(record.approve_until)}" if record.approve_until else ""
        self_note = "" if record.approve_self else " (not the requester)"
        lines.append(
            f"*Approvals* {len(record.approved_by)} of {record.approvals_required}: {got}{until}\n"
            f"*Who may approve* {who_of(record.approvers)}{self_note}\n"
            f"*Plan* {_plan(record)}"
        )
    if live.freeze is not None and not record.finished:
        step = {
            Phase.CANARY: "Promote",
            Phase.AWAITING_SWITCH: "Switch traffic",
            Phase.AWAITING_APPROVAL: "Starting",
        }.get(record.phase)
        needs = f" {step} needs an override with a reason." if step else ""
        lines.append(
            f":snowflake: *Freeze {esc(live.freeze.name)}* until {when(live.freeze.ends)}: this release "
            f"goes on.{needs}"
        )
    if live.locked and not record.finished:
        lines.append(f":lock: *Locked* by {esc(live.locked)}: no new release starts until it is unlocked.")
    if live.queue and not record.finished:
        shown = ", ".join(f"`{esc(q)}`" for q in live.queue[:5])
        more = f" and {len(live.queue) - 5} more" if len(live.queue) > 5 else ""
        lines.append(f":busts_in_silhouette: *Queued next* {shown}{more}")
    return "\n".join(lines)


def _plan(record: Record) -> str:
    """What the release will change, in words, from what it recorded when it was asked for."""
    how = {
        "rolling": "a rolling update",
        "canary": "a canary (one pod first, then Promote)",
        "bluegreen": f"blue-green: a second Deployment `{esc(record.green or '')}`, then a Service switch",
    }[record.strategy.value]
    return (
        f"Deployment `{esc(record.namespace)}/{esc(record.deployment)}`: image `{esc(record.from_image)}` → "
        f"`{esc(record.to_image)}`, by {how}. Nothing changes before the approvals are in."
    )


def _field(label: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", 2000)}


def _status_line(record: Record, elapsed: float, live: Live) -> str:
    """What the release is doing, since when and by whom (the time moving in Slack), or how it ended
    and its exact duration; then who did what."""
    done = [e for e in record.history if e.actor is not None and not e.action.endswith("requested")]
    reason = f": {esc(record.reason)}" if record.reason else ""
    icon = PHASE_ICON[record.phase]
    match record.phase:
        case Phase.SUCCEEDED:
            line = f"{icon} *Succeeded* in {duration(elapsed)}"
        case Phase.FAILED:
            line = f"{icon} *Failed* after {duration(elapsed)}{reason}"
        case Phase.ROLLED_BACK:
            line = f"{icon} *Rolled back* to `{esc(record.from_version)}` after {duration(elapsed)}{reason}"
        case Phase.ABORTED:
            line = f"{icon} *Aborted* after {duration(elapsed)}{reason}"
        case _:
            if record.phase is Phase.CANARY and canary_ready(record, live):
                icon = ":hatched_chick:"
            doing = _doing(record, live)
            line = f"{icon} *{doing[:1].upper()}{doing[1:]}*{reason} · started {ago(record.created_at)}"
            if done and done[0].action == "started" and done[0].actor is not None:
                line += f" by {mention(done[0].actor.id)}"  # said here: not again below
                done = done[1:]
    if done:
        who = "; ".join(f"{esc(e.action)} by {mention(e.actor.id)}" for e in done[-3:] if e.actor)
        line += f"\n{who}"
    return line


def _doing(record: Record, live: Live) -> str:
    """An unfinished release's phase in words; a canary says whether its pods are Ready."""
    if record.phase is not Phase.CANARY:
        return describe_phase(record.phase)
    match canary_ready(record, live):
        case True:
            return "canary healthy, waiting for Promote"
        case False:
            return "canary no longer Ready, watching it"
    stopped = events.canary_step(record.notes, record.step)
    many = stopped is not None and stopped.updated > 1
    return "starting the canary pods" if many else "starting the canary pod"


def canary_ready(record: Record, live: Live) -> bool | None:
    """At a canary step: None while its new pods start (the bot has not found them all Ready yet),
    True once they were and still are, False when one is no longer Ready."""
    if events.canary_healthy(record.notes, record.step) is None:
        return None
    new = live.new_pods
    return new is None or (new.pods > 0 and new.ready == new.pods)


def plural(n: int, word: str) -> str:
    """`1 pod`, `6 pods`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _of(word: str, n: int, total: int) -> str:
    """`ready 6/6`, but never a count above its total: `7 ready`."""
    return f"{word} {n}/{total}" if n <= total else f"{n} {word}"


def progress_words(p: Progress, extra: str = "during the update") -> str:
    """A rollout's pod counts, none of them above its total: `updated 3/6 · ready 6/6 · available 6/6`,
    or `7 pods for 6 wanted (1 extra during the update): 7 ready, 6 available` while it surges; then
    the old pods left, and whether it is paused."""
    parts = [_of("updated", p.updated, p.desired)]
    if p.total > p.desired:
        parts.append(
            f"{p.total} pods for {p.desired} wanted ({p.total - p.desired} extra {extra}): "
            f"{p.ready} ready, {p.available} available"
        )
    else:
        parts += [f"ready {p.ready}/{p.desired}", f"available {p.available}/{p.desired}"]
    if p.old:
        parts.append(f"{plural(p.old, 'old pod')} left")
    if p.paused:
        parts.append("paused")
    return " · ".join(parts)


def _new_pods_state(new: PodHealth | None) -> str:
    """How the new version's pods are doing, in a word or two: ready, starting, 1 ready, 2 starting."""
    if new is None or not new.pods:
        return "starting"
    if new.ready == new.pods:
        return "ready"
    if new.fatal:
        return esc(new.fatal)
    if not new.ready:
        return "starting"
    return f"{new.ready} ready, {new.pods - new.ready} starting"


def canary_words(record: Record, live: Live) -> str:
    """What runs during a canary step, in words: `*Canary* 1 new (ready) + 6 old pods`, then since when
    it is watched (moving in Slack)."""
    p = live.progress
    new = live.new_pods
    count = new.pods if new is not None else (p.updated if p is not None else 0)
    old = p.old if p is not None else 0
    if events.canary_healthy(record.notes, record.step) is not None:
        watched = f"under watch since it became ready {ago(record.phase_since)}"
    else:
        watched = f"step reached {ago(record.phase_since)}, waiting until Ready"
    return f"*Canary* {count} new ({_new_pods_state(new)}) + {plural(old, 'old pod')} · {watched}"


def _live_line(record: Record, live: Live) -> str:
    if record.strategy.value == "bluegreen":
        return _bluegreen_live(record, live)
    if record.finished or live.progress is None:
        return ""
    p = live.progress
    if record.phase is Phase.CANARY:
        rollout = ["paused at this step" if p.paused else "not paused"]
        if p.total > p.desired:
            rollout.append(
                f"{p.total} pods for {p.desired} wanted ({p.total - p.desired} extra while the canary runs)"
            )
        line = canary_words(record, live) + "\n*Rollout* " + " · ".join(rollout)
    else:
        line = "*Progress* " + progress_words(p)
    if live.new_pods is not None:
        line += f"\n*Health of {esc(record.to_version)}* {esc(live.new_pods.describe())}"
    if p.deadline_exceeded:
        line += f"\n*Progress deadline exceeded:* {esc(p.deadline_exceeded)}"
    return line


APPROVE_ACTION = "release-gate:approve"
DENY_ACTION = "release-gate:deny"

_CONFIRM = {
    Request.PROMOTE: (
        "Promote?",
        "Move {to} on to the next canary step (all pods after the last one).",
        "Promote",
    ),
    Request.ROLLBACK: ("Roll back?", "Put {from_} back on all pods and remove {to}.", "Roll back"),
    Request.ABORT: ("Abort?", "Stop this release: {from_} stays, {to} is removed.", "Abort"),
    Request.FINISH: (
        "Finish now?",
        "Retire {from_} now: instant rollback will no longer be possible.",
        "Finish",
    ),
}


def button_value(record: Record) -> str:
    """What a button carries: the release and the state the person saw when clicking."""
    return f"{record.id}:{record.phase.value}:{record.step}"


def parse_button_value(value: str) -> tuple[str, str, str | None, int | None]:
    """(app, release id, phase seen, step seen) from a button value."""
    release_id, _, rest = value.partition(":")
    phase, _, step = rest.partition(":")
    return (
        release_id.rsplit("-", 3)[0],
        release_id,
        phase or None,
        int(step) if step.isascii() and step.isdigit() else None,
    )


def button(
    record: Record,
    request: Request,
    label: str,
    *,
    style: str | None = None,
    confirm: tuple[str, str, str] | None = None,
) -> Block:
    """A button asking for `request`, with a confirm dialog saying what it does: `confirm` (title,
    mrkdwn text, confirm label; escaped by the caller), else the request's general wording."""
    if confirm is None:
        title, text, ok = _CONFIRM[request]
        text = text.format(to=f"`{esc(record.to_version)}`", from_=f"`{esc(record.from_version)}`")
    else:
        title, text, ok = confirm
    b: Block = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{request.value}",
        "text": {"type": "plain_text", "text": clip(label, 75)},
        "value": button_value(record),
        "confirm": {
            "title": {"type": "plain_text", "text": clip(title, 100)},
            "text": {"type": "mrkdwn", "text": clip_mrkdwn(text, 300)},
            "confirm": {"type": "plain_text", "text": clip(ok, 30)},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    }
    if style:
        b["style"] = style
        b["confirm"]["style"] = style
    return b


def gate_button(record: Record, approve: bool) -> Block:
    verb = "Approve" if approve else "Deny"
    text = (
        f"Approve releasing {{to}} of `{esc(record.app)}`: it starts once "
        f"{record.approvals_required} approver(s) agree."
        if approve
        else f"Deny releasing {{to}} of `{esc(record.app)}`: the release ends and nothing changes."
    )
    return {
        "type": "button",
        "action_id": APPROVE_ACTION if approve else DENY_ACTION,
        "text": {"type": "plain_text", "text": verb},
        "value": button_value(record),
        "style": "primary" if approve else "danger",
        "confirm": {
            "title": {"type": "plain_text", "text": f"{verb}?"},
            "text": {"type": "mrkdwn", "text": clip(text.format(to=f"`{esc(record.to_version)}`"), 300)},
            "confirm": {"type": "plain_text", "text": verb},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "primary" if approve else "danger",
        },
    }


def _buttons(record: Record, live: Live) -> list[Block]:
    if record.request is not None:
        return []  # a request is being carried out: no second click
    match record.phase:
        case Phase.AWAITING_APPROVAL:
            return [gate_button(record, True), gate_button(record, False)]
        case Phase.CANARY:
            return [
                button(
                    record, Request.PROMOTE, "Promote", style="primary", confirm=promote_confirm(record, live)
                ),
                button(
                    record,
                    Request.ROLLBACK,
                    "Rollback",
                    style="danger",
                    confirm=rollback_confirm(record, live),
                ),
            ]
        case Phase.AWAITING_SWITCH:
            return [
                button(
                    record, Request.PROMOTE, "Switch traffic", style="primary", confirm=switch_confirm(record)
                ),
                button(record, Request.ABORT, "Abort", style="danger", confirm=abort_confirm(record)),
            ]
        case Phase.SWITCHED:
            return [
                button(record, Request.FINISH, "Finish", style="primary", confirm=finish_confirm(record)),
                button(
                    record,
                    Request.ROLLBACK,
                    "Rollback",
                    style="danger",
                    confirm=rollback_confirm(record, live),
                ),
            ]
        case Phase.ROLLING_OUT | Phase.FAILED:
            return [
                button(
                    record,
                    Request.ROLLBACK,
                    "Rollback",
                    style="danger",
                    confirm=rollback_confirm(record, live),
                )
            ]
        case _:
            return []


def _colours(record: Record) -> tuple[str, str]:
    """Blue and green of a blue-green release, for mrkdwn: "blue `hexo` (`v1.0`)", "green ..."."""
    blue = f"blue `{esc(record.deployment)}` (`{esc(record.from_version)}`)"
    green = f"green `{esc(record.green or '')}` (`{esc(record.to_version)}`)"
    return blue, green


def promote_confirm(record: Record, live: Live) -> tuple[str, str, str]:
    """Promote at a canary step: how far it goes (the next step, or all pods), and a warning while the
    canary is not Ready yet."""
    to, from_ = f"`{esc(record.to_version)}`", f"`{esc(record.from_version)}`"
    step = events.canary_healthy(record.notes, record.step) or events.canary_step(record.notes, record.step)
    nxt, desired = (step.next, step.desired) if step is not None else (0, 0)
    if desired and nxt >= desired:
        title = "Promote to all pods?"
        text = (
            f"Run {to} on all {desired} pods: the rollout resumes and replaces the {from_} pods; the "
            "release is done when they are all Ready."
        )
    elif desired and nxt:
        title = f"Promote to {nxt} pods?"
        text = (
            f"Run {to} on {nxt} of {desired} pods (the others keep {from_}), then stop again and wait "
            "until they are Ready."
        )
    else:
        title, text, _ = _CONFIRM[Request.PROMOTE]
        text = text.format(to=to)
    ready = canary_ready(record, live)
    if not ready:
        health = f" ({esc(live.new_pods.describe())})" if live.new_pods is not None else ""
        now = "not Ready yet" if ready is None else "no longer Ready"
        text = f"The canary is {now}{health}. {text}"
    return title, text, "Promote"


def rollback_confirm(record: Record, live: Live) -> tuple[str, str, str]:
    """What Rollback does in each strategy and phase."""
    to, from_ = f"`{esc(record.to_version)}`", f"`{esc(record.from_version)}`"
    if record.strategy.value == "bluegreen":
        blue, green = _colours(record)
        if record.phase is Phase.SWITCHED:
            text = f"Send all traffic back to {blue} at once; {green} is then deleted."
        else:
            text = f"Traffic stays on {blue}; {green} is deleted."
    elif record.phase is Phase.CANARY:
        new = live.new_pods.pods if live.new_pods is not None else 0
        pods = f"the {plural(new, 'canary pod')}" if new else "the canary pods"
        text = f"Remove {pods} of {to} and put {from_} back on all pods; the rollout is resumed."
    else:
        text = f"Stop the rollout and put {from_} back on all pods (like `kubectl rollout undo`); {to} is removed."
    return "Roll back?", text, "Roll back"


def switch_confirm(record: Record) -> tuple[str, str, str]:
    """Switch traffic: which Service, to which Deployment, and that blue stays for a rollback."""
    blue, green = _colours(record)
    ready = next((e for e in reversed(record.notes) if isinstance(e, events.GreenReady)), None)
    service = (
        f"Service `{esc(ready.service)}`" if ready is not None and ready.service else "the app's Service"
    )
    text = f"Send all traffic of {service} to {green}; {blue} keeps running for an instant rollback."
    return "Switch traffic?", text, "Switch traffic"


def abort_confirm(record: Record) -> tuple[str, str, str]:
    if record.strategy.value != "bluegreen":
        title, text, ok = _CONFIRM[Request.ABORT]
        return title, text.format(to=f"`{esc(record.to_version)}`", from_=f"`{esc(record.from_version)}`"), ok
    blue, green = _colours(record)
    return (
        "Abort?",
        f"End this release without a switch: traffic stays on {blue}; {green} is deleted.",
        "Abort",
    )


def finish_confirm(record: Record) -> tuple[str, str, str]:
    """Finish after a switch: blue is retired now instead of at the end of the grace period."""
    blue, _ = _colours(record)
    switched = next((e for e in reversed(record.notes) if isinstance(e, events.Switched)), None)
    how = {"scale-down": " (scaled to 0)", "delete": " (deleted, if release-bot created it)"}.get(
        switched.retire if switched is not None else "", ""
    )
    text = (
        f"Retire {blue} now{how}, not at the end of the grace period: instant rollback is no longer possible."
    )
    return "Finish now?", text, "Finish"


# --- Thread milestones -----------------------------------------------------------------------------


def note(record: Record, event: events.Event) -> str:
    """A release event as a thread milestone."""
    match event:
        case events.Started():
            return _started(record, event)
        case events.CanaryStep():
            h = f" ({esc(event.health)})" if event.health else ""
            what = "Canary started" if event.step == 0 else "Canary step reached"
            until = "it is" if event.updated == 1 else "they are"
            return (
                f":hatching_chick: {what}: {plural(event.updated, 'new pod')} of `{esc(record.to_version)}`"
                f"{h} beside {event.old} old. Watching until {until} Ready."
            )
        case events.CanaryHealthy():
            to = f"`{esc(record.to_version)}`"
            if event.desired and event.next >= event.desired:
                then = f" Promote runs {to} on all {event.desired} pods."
            elif event.desired and event.next:
                then = f" Promote runs {to} on {event.next} of {event.desired} pods."
            else:
                then = ""
            return (
                f":hatched_chick: Canary healthy: {plural(event.ready, 'new pod')} ready beside "
                f"{event.old} old. Waiting for Promote or Rollback.{then}"
            )
        case events.Acted():
            who = mention(event.by) if event.by else "release-bot"
            more = f" {esc(event.detail)}" if event.detail else ""
            return f":point_right: {esc(event.action).capitalize()} by {who}.{more}"
        case events.Succeeded():
            return (
                f":white_check_mark: `{esc(record.app)}` now runs `{esc(record.to_version)}`: "
                f"done in {duration(event.seconds)}."
            )
        case events.Failed():
            then = (
                " Rolling back automatically."
                if event.auto_rollback
                else " Old pods keep serving; use Rollback to undo."
            )
            return f":x: The release of `{esc(record.to_version)}` failed: {esc(event.reason)}.{then}"
        case events.RolledBack():
            by = f" by {mention(event.by)}" if event.by else " automatically"
            return (
                f":leftwards_arrow_with_hook: Rolled back{by}: `{esc(record.app)}` runs "
                f"`{esc(record.from_version)}` again."
            )
        case events.ApprovalAsked():
            return (
                f":raised_hand: {mention(record.requester.id)} asks to release `{esc(record.app)}` "
                f"`{esc(record.from_version)}` → `{esc(record.to_version)}`. It needs {event.required} "
                f"approval(s) from {who_of(record.approvers)} within {event.minutes:g} min; nothing "
                "changes before."
            )
        case events.Approved():
            return f":white_check_mark: Approved by {mention(event.by)} ({event.count} of {event.required})."
        case events.Denied():
            why = f": {esc(event.reason)}" if event.reason else ""
            return f":no_entry_sign: Denied by {mention(event.by)}{why}. Nothing was changed."
        case events.ApprovalExpired():
            return (
                f":hourglass: Not approved within {event.minutes:g} min ({event.count} of {event.required}): "
                "the release ended. Nothing was changed."
            )
        case events.BrokeGlass():
            return (
                f":rotating_light: *Break-glass*: {mention(event.by)} releases `{esc(record.app)}` "
                f"`{esc(record.to_version)}` past approvals and freezes. Reason: {esc(event.reason)}"
            )
        case events.Overridden():
            return (
                f":snowflake: {mention(event.by)} overrode the freeze {esc(event.window)} to "
                f"{esc(event.action)}. Reason: {esc(event.reason)}"
            )
        case events.QueuePaused():
            return (
                f":double_vertical_bar: This release did not succeed, so the queue of `{esc(record.app)}` "
                f"({event.waiting} waiting) is paused. It moves again after a release succeeds, or "
                f"`/release unlock {esc(record.app)}`."
            )
        case _:
            return _bluegreen_note(record, event)


def _started(record: Record, event: events.Started) -> str:
    how = {
        "rolling": (
            f"rolling update (maxSurge {esc(event.max_surge)}, maxUnavailable {esc(event.max_unavailable)})"
        ),
        "canary": "canary: the new version on one pod first, then Promote or Rollback",
        "bluegreen": "blue-green: a second Deployment, then a Service switch",
    }[record.strategy.value]
    return (
        f":rocket: {mention(record.requester.id)} started releasing `{esc(record.app)}` "
        f"`{esc(record.from_version)}` → `{esc(record.to_version)}` as a {how}."
    )


# --- Ephemeral answers -----------------------------------------------------------------------------


def invite(channel_id: str, bot_user_id: str = "") -> str:
    """What to do when the bot is not in a channel: "invite @release-bot to #channel"."""
    bot = mention(bot_user_id) if bot_user_id else "@release-bot"
    return f"invite {bot} to {channel_link(channel_id)} (type `/invite @release-bot` there)"


def channel_link(channel_id: str) -> str:
    """A channel as Slack shows it (#name) when `channel_id` is a channel id; escaped text otherwise."""
    return f"<#{channel_id}>" if channel_id.isalnum() else esc(channel_id)


def cannot_post_here(error: str, channel_id: str, bot_user_id: str = "") -> str:
    """Why an answer came through the command's response_url instead of from the bot, and what to do."""
    match error:
        case "not_in_channel":
            fix = f"release-bot is not in this channel: {invite(channel_id, bot_user_id)} so it can post here"
        case "channel_not_found":
            fix = (
                "release-bot cannot see this conversation (a private channel or a DM it is not in): "
                f"{invite(channel_id, bot_user_id)}, or use `/release` in a channel it is in"
            )
        case "is_archived":
            fix = "this channel is archived: use `/release` in an active channel"
        case _:
            fix = f"release-bot cannot post here ({esc(error)})"
    return f":information_source: {fix}."


def card_refused_reason(error: str, channel_id: str) -> str:
    """Why a release could not start because Slack refused its card, and what to do."""
    fix = {
        "not_in_channel": f"{invite(channel_id)} and ask again",
        "channel_not_found": "run `/release` in a channel the bot is in (it cannot post here)",
        "is_archived": "this channel is archived: ask again from an active channel",
        "token_revoked": "the bot's Slack token was revoked: reinstall the app",
        "invalid_auth": "the bot's Slack token is invalid: check SLACK_BOT_TOKEN",
        "account_inactive": "the bot's Slack account is inactive: reinstall the app",
    }.get(error, "check the bot's Slack setup and ask again")
    return f"Slack refused the release card ({esc(error)}), so nothing was changed: {fix}."


def help_text() -> str:
    """The help: the command language's usage, escaped (`<app>` would otherwise be parsed as a link)."""
    return (
        "*release-bot* releases apps to Kubernetes from this channel.\n"
        + esc(USAGE)
        + "\n`/release` alone opens a form."
    )


def membership_unknown(failed: dict[str, str]) -> str:
    """User groups whose membership could not be checked, and why ("cannot check membership of
    S0RELEASE: missing_scope")."""
    parts = [f"{esc(group)}: {esc(error)}" for group, error in sorted(failed.items())]
    return "cannot check membership of " + "; ".join(parts)


def nothing_to_release(failed: dict[str, str]) -> str:
    """`/release` alone, from someone who may release nothing here."""
    text = ":no_entry: You may not release any app from this channel, so there is no form to show."
    if failed:
        text += f" ({membership_unknown(failed)})"
    return text + " Type `/release apps` to see the apps and `/release help` for the commands."


def form_failed(error: str) -> str:
    return (
        f":warning: Slack did not open the release form ({esc(error)}). Type "
        "`/release &lt;app&gt; &lt;version&gt;` instead, or `/release` again."
    )


def usage_error(message: str) -> str:
    return f":warning: {esc(message)}"


def refused(message: str) -> str:
    return f":no_entry: {esc(message)}"


def refused_with_who(message: str, user_id: str, rule: Rule) -> str:
    """A permission refusal that shows the person their own id and who may act (people, user
    groups, and the channels it may come from), so they know whom to ask or what to add."""
    who = [mention(u) for u in rule.users] + [f"<!subteam^{esc(g)}>" for g in rule.usergroups]
    may = ", ".join(who) if who else "nobody (the catalog names no one)"
    where = f" from {', '.join(f'<#{esc(c)}>' for c in rule.channels)}" if rule.channels else ""
    return f"{refused(message)}\nYou are {mention(user_id)} (`{esc(user_id)}`). Who may: {may}{where}."


def conflict(message: str) -> str:
    return f":hand: {esc(message)}"


def internal_error(error_id: str) -> str:
    return f":boom: Something went wrong on our side (error id `{esc(error_id)}`). Nothing was changed by this request; ask the bot's operators if it happens again."


def not_yet(kind: str) -> str:
    return f":construction: `/release {esc(kind)}` is not available yet. Type `/release help`."


def accepted(started: Record | Enqueued) -> str:
    if isinstance(started, Enqueued):
        q = started.entry
        running = started.running
        after = f" after `{esc(running.to_version)}` by {mention(running.requester.id)}" if running else ""
        return (
            f":busts_in_silhouette: Queued `{esc(q.intent.app)}` `{esc(q.intent.version)}` at position "
            f"{started.position}{after}. It starts when the app is free; `/release dequeue "
            f"{esc(q.intent.app)}` takes it off."
        )
    record = started
    if record.phase is Phase.AWAITING_APPROVAL:
        return (
            f":raised_hand: `{esc(record.app)}` `{esc(record.to_version)}` waits for "
            f"{record.approvals_required} approval(s) from {who_of(record.approvers)}: follow the card."
        )
    return f":rocket: Releasing `{esc(record.app)}` `{esc(record.to_version)}` ({esc(record.strategy.value)}): follow the card in this channel."


def queued_refused(entry: Queued, app: str, refusal: Exception) -> str:
    return (
        f":warning: {mention(entry.requester.id)}, your queued release of `{esc(app)}` "
        f"`{esc(entry.intent.version)}` could not start: {esc(refusal)}. It was taken off the queue."
    )


def refusal(error: Exception) -> str:
    """A refusal as a private answer; times in the reader's own time zone."""
    match error:
        case refusals.Frozen():
            how = (
                f' You may override it: type `{esc(error.command)} --reason "why"`.'
                if error.can_override
                else " Only the people of its `freeze_override` may go ahead, with a reason."
            )
            return (
                f":snowflake: `{esc(error.app)}` is frozen (*{esc(error.window)}*) until {when(error.ends)}: "
                f"you cannot {esc(error.action)} it now.{how}"
            )
        case refusals.Locked():
            return (
                f":lock: `{esc(error.app)}` is locked by {esc(error.holder)} since {when(error.since)}: "
                f"{esc(error.reason)}. Nothing is released until it is unlocked "
                f"(`/release unlock {esc(error.app)}`)."
            )
    return conflict(str(error))


def gate_changed(app: str, actor_id: str, what: str, reason: str = "") -> str:
    """A lock, an unlock or a queue change, said in the channel."""
    why = f": {esc(reason)}" if reason else ""
    icon = {"locked": ":lock:", "unlocked": ":unlock:"}.get(what, ":busts_in_silhouette:")
    return f"{icon} {mention(actor_id)} {what} `{esc(app)}`{why}"


def request_taken(request: Request, app: str) -> str:
    return f":ok_hand: {request.value.capitalize()} of `{esc(app)}` requested: follow the card."


def apps_list(apps: Iterable[App], allowed: Sequence[str], gates: Mapping[str, Gate] | None = None) -> str:
    lines = []
    for app in apps:
        mark = "" if app.name in allowed else " _(view only)_"
        strategies = ", ".join(s.value for s in app.strategies)
        gate = (gates or {}).get(app.name)
        lines.append(f"• `{esc(app.name)}` in `{esc(app.namespace)}`: {strategies}{mark}{_gate_word(gate)}")
    return "*Apps you can release:*\n" + ("\n".join(lines) if lines else "none")


def _gate_word(gate: Gate | None) -> str:
    if gate is None:
        return ""
    out = ""
    if gate.lock is not None:
        out += f" · :lock: locked by {esc(gate.lock.holder.name)}: {esc(gate.lock.reason)}"
    if gate.queue:
        paused = " (paused)" if gate.paused else ""
        out += f" · {len(gate.queue)} queued{paused}"
    return out


def gate_text(gate: Gate) -> list[str]:
    """The lock and the queue of an app, for its status."""
    lines = []
    if gate.lock is not None:
        lock = gate.lock
        lines.append(
            f":lock: *Locked* by {mention(lock.holder.id)} since {when(lock.since)}: {esc(lock.reason)}"
        )
    if gate.queue:
        state = " (paused: a release did not succeed)" if gate.paused else ""
        lines.append(f"*Queue*{state}:")
        for i, q in enumerate(gate.queue, 1):
            lines.append(
                f"{i}. `{esc(q.intent.version)}` by {mention(q.requester.id)}, queued {when(q.at, '{time}')}"
            )
    elif gate.paused:
        lines.append("*Queue* paused: a release did not succeed.")
    return lines


def approval_taken(record: Record) -> str:
    if record.phase is Phase.AWAITING_APPROVAL:
        return (
            f":white_check_mark: Approval counted: {len(record.approved_by)} of "
            f"{record.approvals_required} for `{esc(record.app)}` `{esc(record.to_version)}`."
        )
    return f":ok_hand: `{esc(record.app)}` `{esc(record.to_version)}`: {describe_phase(record.phase)}."


def dequeued(app: str, gate: Gate) -> str:
    return f":ok_hand: Taken off the queue of `{esc(app)}`; {len(gate.queue)} release(s) still wait."


def status(
    app: App, deployment: dict[str, Any], record: Record | None, card_link: str, gate: Gate | None = None
) -> str:
    """`/release status <app>`: what runs now, and the current release if any."""
    p = progress_of(deployment)
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    images = ", ".join(f"`{esc(c.get('name'))}`: `{esc(c.get('image'))}`" for c in containers)
    lines = [
        f"*{esc(app.name)}* (Deployment `{esc(app.namespace)}/{esc(deployment.get('metadata', {}).get('name', app.deployment))}`)",
        f"Images: {images}",
        f"Replicas: desired {p.desired} · updated {p.updated} · ready {p.ready} · available {p.available}"
        + (" · *paused*" if p.paused else ""),
    ]
    for cond in deployment.get("status", {}).get("conditions") or []:
        lines.append(
            f"Condition {esc(cond.get('type'))}={esc(cond.get('status'))} ({esc(cond.get('reason', ''))})"
        )
    if record is not None:
        link = f" <{esc(card_link)}|card>" if card_link.startswith("http") else ""
        state = "current" if record.active else "last"
        lines.append(
            f"{state.capitalize()} release: `{esc(record.to_version)}` ({esc(record.strategy.value)}) by "
            f"{mention(record.requester.id)}, {describe_phase(record.phase)}{link}"
        )
    if gate is not None:
        lines.extend(gate_text(gate))
    return "\n".join(lines)


# --- History, rollback to a revision, pause/resume -------------------------------------------------

UNDO_ACTION = "undo:rollback"


def _who(revision: Revision) -> str:
    user = revision.slack_user
    return f" · by {mention(user)}" if user else ""


def history_text(
    app: App, deployment: dict[str, Any], revisions: Sequence[Revision], detail: int | None
) -> str:
    """`/release history <app> [--revision N]`: like `kubectl rollout history`, newest first."""
    current = revision_of(deployment)
    if detail is not None:
        found = next((r for r in revisions if r.number == detail), None)
        if found is None:
            known = ", ".join(str(r.number) for r in revisions) or "none"
            return usage_error(f"Revision {detail} of {app.name} not found; known revisions: {known}.")
        running = deployment.get("spec", {}).get("template", {})
        diff = template_diff(running, found.template)
        lines = [
            f"*{esc(app.name)} revision {found.number}*" + (" (running)" if found.number == current else ""),
            f"Images: {', '.join(f'`{esc(i)}`' for i in found.images)}",
            f"Change-cause: {esc(found.change_cause) or '_none_'}",
            f"Created: {esc(found.created)}{_who(found)}",
        ]
        if diff:
            lines.append("*Differs from the running template:*")
            lines += [f"• `{esc(clip(d, 300))}`" for d in diff[:20]]
        else:
            lines.append("Same template as the running one.")
        return clip("\n".join(lines), SECTION_MAX)
    lines = [f"*Revisions of {esc(app.name)}* (newest first)"]
    for r in revisions[:20]:
        mark = " ← running" if r.number == current else ""
        lines.append(
            f"`{r.number}` {', '.join(f'`{esc(i)}`' for i in r.images)} · {esc(r.change_cause) or '_no change-cause_'}"
            f" · {esc(r.created)}{_who(r)}{mark}"
        )
    if len(lines) == 1:
        lines.append("_no revisions yet_")
    return clip("\n".join(lines), SECTION_MAX)


def undo_offer(
    app: App, current: int, target: Revision, current_version: str, paused: bool
) -> tuple[str, list[Block]]:
    """The confirmation for `/release rollback`: a button with a confirm dialog."""
    images = ", ".join(f"`{esc(i)}`" for i in target.images)
    resume = " The Deployment is paused: it will be resumed." if paused else ""
    text = (
        f"Roll `{esc(app.name)}` back from `{esc(current_version)}` (revision {current}) to revision "
        f"{target.number} ({images})?{resume}"
    )
    return text, [
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}},
        {
            "type": "actions",
            "block_id": f"undo:{app.name}:{current}:{target.number}",
            "elements": [
                {
                    "type": "button",
                    "action_id": UNDO_ACTION,
                    "style": "danger",
                    "text": {
                        "type": "plain_text",
                        "text": clip(f"Roll back to revision {target.number}", 75),
                    },
                    "value": f"{app.name}:{target.number}:{current}",
                    "confirm": {
                        "title": {"type": "plain_text", "text": "Roll back?"},
                        "text": {"type": "mrkdwn", "text": clip(text, 300)},
                        "confirm": {"type": "plain_text", "text": "Roll back"},
                        "deny": {"type": "plain_text", "text": "Cancel"},
                        "style": "danger",
                    },
                }
            ],
        },
    ]


def parse_undo_value(value: str) -> tuple[str, int, int]:
    """(app, target revision, revision running when offered) from an undo button's value."""
    app, target, seen = ([*value.split(":"), "", ""])[:3]
    if not (target.isascii() and target.isdigit() and seen.isascii() and seen.isdigit()):
        raise ValueError(value)
    return app, int(target), int(seen)


def paused_announcement(app: App, user_id: str, paused: bool) -> str:
    if paused:
        return f":double_vertical_bar: {mention(user_id)} paused the rollout of `{esc(app.name)}`."
    return f":arrow_forward: {mention(user_id)} resumed the rollout of `{esc(app.name)}`."


# --- Blue-green ------------------------------------------------------------------------------------


def cpu_text(millis: int) -> str:
    return f"{millis}m CPU" if millis < 1000 else f"{millis / 1000:g} CPU"


def memory_text(n: int) -> str:
    binary = n >= 1 << 20 and n % (1 << 20) == 0
    units = [("GiB", 1 << 30), ("MiB", 1 << 20)] if binary else [("GB", 10**9), ("MB", 10**6), ("kB", 10**3)]
    for unit, size in units:
        if n >= size:
            return f"{round(n / size, 1):g} {unit}"
    return f"{n} B"


def _requests_text(cpu_millis: int, memory_bytes: int) -> str:
    parts = [cpu_text(cpu_millis)] if cpu_millis else []
    parts += [memory_text(memory_bytes)] if memory_bytes else []
    return " and ".join(parts) if parts else "no declared requests"


def bluegreen_footprint(record: Record) -> str:
    """The guide's trade-off made visible: both colours run at once, so twice the usual resources."""
    n = record.replicas
    if not n:
        return ""
    during = _requests_text(2 * record.cpu_millis, 2 * record.memory_bytes)
    usual = _requests_text(record.cpu_millis, record.memory_bytes)
    return (
        f"*While both colours run:* {2 * n} pods ({n} blue + {n} green) requesting {during}, "
        f"twice the usual {n} pods with {usual}"
    )


def _bluegreen_live(record: Record, live: Live) -> str:
    """The card's live lines for a blue-green release (called from `_live_line`)."""
    if record.finished:
        return ""
    on = {Phase.SWITCHED: "*green*", Phase.ROLLING_BACK: "*blue* (moving back)"}.get(record.phase, "*blue*")
    lines = [
        f"*Blue* `{esc(record.deployment)}` (`{esc(record.from_version)}`) · "
        f"*Green* `{esc(record.green or '')}` (`{esc(record.to_version)}`) · traffic on {on}"
    ]
    if record.phase is Phase.SWITCHED:
        lines[0] += f", switched {ago(record.phase_since)}"
    p = live.progress
    if p is not None and record.phase in (Phase.ROLLING_OUT, Phase.AWAITING_SWITCH, Phase.SWITCHED):
        lines.append("*Green* " + progress_words(p, "while it starts"))
        if p.deadline_exceeded:
            lines.append(f"*Progress deadline exceeded:* {esc(p.deadline_exceeded)}")
    if live.new_pods is not None:
        lines.append(f"*Health of {esc(record.to_version)}* {esc(live.new_pods.describe())}")
    footprint = bluegreen_footprint(record)
    if footprint:
        lines.append(footprint)
    return "\n".join(lines)


def _bluegreen_note(record: Record, event: events.Event) -> str:
    green, blue = f"`{esc(record.green or '')}`", f"`{esc(record.deployment)}`"
    match event:
        case events.GreenCreated():
            fp = bluegreen_footprint(record).replace("*", "")
            return (
                f":large_blue_circle: Blue {blue} (`{esc(record.from_version)}`) keeps serving. Created "
                f"green {green} with `{esc(record.to_image)}`; waiting until all {record.replicas} pods "
                "are Ready." + (f" {fp}." if fp else "")
            )
        case events.LeftOver():
            return (
                f":broom: `{esc(event.name)}` was left over by an earlier release "
                f"(`{esc(event.release_id or 'unknown')}`) and serves no traffic: deleting it and creating "
                "it again."
            )
        case events.GreenReady():
            h = f" ({esc(event.health)})" if event.health else ""
            return (
                f":large_green_circle: Green {green} is ready{h}. Traffic is still on blue {blue}. "
                "*Switch traffic* or *Abort*."
            )
        case events.Switched():
            return (
                f":twisted_rightwards_arrows: Traffic switched to green {green} (`{esc(record.to_version)}`) "
                f"in {event.seconds:.1f} s: Service `{esc(event.service)}` lists only its {event.pods} "
                f"pod(s). Blue {blue} stays up {duration(event.grace_seconds)} for an instant *Rollback*, "
                f"then it is retired ({esc(event.retire)}); *Finish* retires it now."
            )
        case events.SwitchedBack():
            return (
                f":leftwards_arrow_with_hook: Traffic back on blue {blue} (`{esc(record.from_version)}`) "
                f"in {event.seconds:.1f} s: Service `{esc(event.service)}` lists only its {event.pods} pod(s)."
            )
        case events.GreenFailed():
            then = (
                f"Switching traffic back to blue {blue}"
                if event.switched
                else f"Traffic never left blue {blue}"
            )
            return (
                f":x: Green {green} (`{esc(record.to_version)}`) failed: {esc(event.reason)}. "
                f"{then}; green will be deleted."
            )
        case events.ServiceChanged():
            return (
                f":warning: Service `{esc(event.service)}` now selects `{esc(selector_text(event.selector))}`, "
                "which is neither colour: someone changed it, so release-bot leaves it as it is."
            )
        case events.LeftAlone():
            return (
                f":warning: Deployment `{esc(event.name)}` was not created by this release, so release-bot "
                "does not delete it."
            )
        case events.BlueGreenEnded():
            gone = f" Green {green} deleted." if event.green_deleted else ""
            runs = f"`{esc(record.app)}` runs `{esc(record.from_version)}` on blue {blue}"
            if event.aborted:
                by = f" by {mention(event.by)}" if event.by else ""
                return f":no_entry_sign: Aborted{by}: {runs} as before.{gone}"
            by = f" by {mention(event.by)}" if event.by else " automatically"
            return f":leftwards_arrow_with_hook: Rolled back{by}: {runs} again.{gone}"
        case events.Retired():
            what = {
                "deleted": f"blue {blue} deleted",
                "scaled-down": f"blue {blue} scaled to 0",
                "kept": f"blue {blue} scaled to 0, not deleted: release-bot did not create it",
                "gone": f"blue {blue} was already gone",
            }[event.how]
            return (
                f":white_check_mark: `{esc(record.app)}` now runs `{esc(record.to_version)}` on {green}; "
                f"{what}. Done in {duration(event.seconds)}."
            )
    raise AssertionError(f"no wording for {event!r}")
