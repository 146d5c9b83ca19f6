"""The release card: its blocks, the live lines, the buttons and their confirm dialogs. Pure."""

from __future__ import annotations

from bot.releases import analysis, events
from bot.releases.health import Live, PodHealth, Progress
from bot.releases.preflight import Preflight
from bot.releases.record import Phase, Record, Request, describe_phase
from bot.slack.mrkdwn import (
    CONTEXT_MAX,
    HEADER_MAX,
    SECTION_MAX,
    Block,
    ago,
    clip,
    clip_mrkdwn,
    cpu_text,
    duration,
    esc,
    memory_text,
    mention,
    plural,
    when,
    who_of,
)
from bot.slack.wire import ACTION_PREFIX, APPROVE_ACTION, DENY_ACTION, button_value

TREND_SHOWN = 5  # a metric's last values on the card

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
    detail = "\n".join(x for x in (_workloads_line(record, live), _live_line(record, live)) if x)
    if detail:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": clip_mrkdwn(detail, SECTION_MAX)}}
        )
    if live.unreachable_since is not None and not record.finished:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": unreachable_line(live)}})
    measured = analysis_lines(record)
    refused = gate_refused_line(record)
    if refused:
        measured = [refused, *measured]
    if measured:
        text = "\n".join(measured)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip_mrkdwn(text, SECTION_MAX)}})
    warned = warning_lines(record.preflight) if record.preflight else []
    if warned:
        text = "\n".join(warned)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip_mrkdwn(text, SECTION_MAX)}})
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


def analysis_lines(record: Record) -> list[str]:
    """The canary analysis of the current step: each check's last reading against its bound (and the
    metric's last values), the good intervals and failures so far, and why it waits if it does."""
    t = record.analysis
    if t is None or (record.active and t.step != record.step):
        return []
    lines = [f"*Analysis* (step {t.step + 1}): {t.good} good in a row, {t.failures} failed"]
    for r in t.readings:
        mark = {True: ":white_check_mark:", False: ":x:", None: ":grey_question:"}[r.ok]
        trend = " → ".join(analysis.number(v) for v in r.trend[-TREND_SHOWN:]) if len(r.trend) > 1 else ""
        lines.append(f"{mark} {esc(analysis.describe(r))}" + (f" · {esc(trend)}" if trend else ""))
    if t.waiting and record.active:
        lines.append(f":hourglass: Waiting: {esc(t.waiting)}. It never promotes meanwhile.")
    return lines


def gate_refused_line(record: Record) -> str:
    """The webhook gate that last said no to going on, while nothing has moved since (the release is
    still where the gate stopped it)."""
    if not record.active:
        return ""
    for event in reversed(record.notes):
        if isinstance(event, events.GateRefused):
            said = f": {esc(event.said)}" if event.said else ""
            return f":no_entry: *Gate `{esc(event.gate)}` said no* to the promotion{said}"
        if isinstance(event, events.Acted | events.CanaryStep | events.Switched):
            return ""
    return ""


def unreachable_line(live: Live) -> str:
    since = live.unreachable_since
    assert since is not None
    return (
        f":warning: *Cluster unreachable since* <!date^{int(since.timestamp())}^{{time_secs}}|"
        f"{since:%H:%M:%S} UTC>: what this card shows may be out of date. Nothing is decided until "
        "the cluster answers again; the release then carries on."
    )


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
        lines.extend(plan_lines(record))
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


WARNING_ICON = {
    "gitops": ":arrows_clockwise:",
    "autoscaler": ":chart_with_upwards_trend:",
    "quota": ":bar_chart:",
    "image": ":label:",
    "paused": ":double_vertical_bar:",
    "budget": ":shield:",
}


def warning_lines(plan: Preflight) -> list[str]:
    """The plan's warnings, one line each."""
    return [f"{WARNING_ICON[w.kind]} *Note:* {esc(w.text)}" for w in plan.warnings]


def plan_lines(record: Record) -> list[str]:
    """The pre-flight plan in words: the template changes, the steps, the footprint."""
    plan = record.preflight
    if plan is None:
        return []
    shown = [f"• `{esc(clip(c, 200))}`" for c in plan.changes[:8]]
    if len(plan.changes) > 8:
        shown.append(f"• and {len(plan.changes) - 8} more")
    lines = ["*Changes to the pod template*", *(shown or ["• none"])]
    total = plan.steps[-1] if plan.steps else record.replicas
    if record.strategy.value == "canary" and len(plan.steps) > 0:
        path = " → ".join(str(n) for n in plan.steps)
        lines.append(f"*Steps* new pods at each pause: {path} of {total}, each after Promote")
    elif record.strategy.value == "bluegreen":
        lines.append(f"*Steps* green with {plural(total, 'pod')}, then Switch traffic, then blue retired")
    else:
        lines.append(f"*Steps* one rolling update of {plural(total, 'pod')}")
    if record.followers:
        others = ", ".join(f"`{esc(f.name)}`" for f in record.followers)
        when = "after the last Promote" if record.strategy.value == "canary" else "then"
        lines.append(f"*Then* {others} ({when}); if any fails, all are rolled back")
    requests = _requests_text(plan.peak_cpu_millis, plan.peak_memory_bytes)
    lines.append(f"*Footprint* at most {plural(plan.peak_pods, 'pod')} at once, requesting {requests}")
    return lines


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


def _workloads_line(record: Record, live: Live) -> str:
    """The app's Deployments when it has several, and the selector label that no longer says what runs."""
    lines = []
    if record.promoted is not None:
        e = record.promoted
        lines.append(
            f"*Promoted from* `{esc(e.source)}`: `{esc(e.image)}` Ready on {plural(e.pods, 'pod')} since "
            f"{when(e.healthy_since)}, {plural(e.restarts, 'restart')}"
        )
    if record.followers:
        names = " → ".join(f"`{esc(n)}`" for n in (record.deployment, *(f.name for f in record.followers)))
        lines.append(f"*Deployments* {names}, all or nothing")
    label = record.stale_selector if record.finished else live.selector_label
    if label is not None:
        selected, running = label
        lines.append(
            f"*Selector label* `version={esc(selected)}`, running `{esc(running)}` (a selector cannot change)"
        )
    return "\n".join(lines)


def _live_line(record: Record, live: Live) -> str:
    if record.strategy.value == "bluegreen":
        return _bluegreen_live(record, live)
    if record.finished or live.progress is None:
        return ""
    p = live.progress
    if record.followers and live.deployment:
        return f"*Progress of `{esc(live.deployment)}`* " + progress_words(p) + _health(record, live, p)
    if record.phase is Phase.CANARY:
        rollout = ["paused at this step" if p.paused else "not paused"]
        if p.total > p.desired:
            rollout.append(
                f"{p.total} pods for {p.desired} wanted ({p.total - p.desired} extra while the canary runs)"
            )
        line = canary_words(record, live) + "\n*Rollout* " + " · ".join(rollout)
    else:
        line = "*Progress* " + progress_words(p)
    return line + _health(record, live, p)


def _health(record: Record, live: Live, p: Progress) -> str:
    line = ""
    if live.new_pods is not None:
        line += f"\n*Health of {esc(record.to_version)}* {esc(live.new_pods.describe())}"
    if p.deadline_exceeded:
        line += f"\n*Progress deadline exceeded:* {esc(p.deadline_exceeded)}"
    return line


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

    def rollback() -> Block:
        return button(
            record, Request.ROLLBACK, "Rollback", style="danger", confirm=rollback_confirm(record, live)
        )

    match record.phase:
        case Phase.AWAITING_APPROVAL:
            return [gate_button(record, True), gate_button(record, False)]
        case Phase.CANARY:
            return [
                button(
                    record, Request.PROMOTE, "Promote", style="primary", confirm=promote_confirm(record, live)
                ),
                rollback(),
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
                rollback(),
            ]
        case Phase.ROLLING_OUT | Phase.FAILED:
            return [rollback()]
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
