"""Every word the bot shows in Slack, and the Block Kit it is shown in. Pure.

Everything user- or cluster-supplied (versions, names, reasons, messages) goes through `esc` before it
reaches mrkdwn, so `<!channel>` or `<https://evil|ok>` in a tag or a pod message is shown as text.
Limits from Slack's Block Kit reference are applied here (header 150, section text 3000, button 75).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bot.catalog import App
from bot.releases.health import Live, PodHealth, Progress
from bot.releases.health import progress as progress_of
from bot.releases.record import Phase, Record, Request, describe_phase
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
    now = live.now or record.phase_since
    end = record.finished_at or now
    elapsed = (end - record.created_at).total_seconds()
    title = f"Release {record.app} {record.from_version} → {record.to_version}"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_MAX)}},
        {
            "type": "section",
            "fields": [
                _field("App", f"`{esc(record.app)}` in `{esc(record.namespace)}`"),
                _field("Strategy", esc(record.strategy.value)),
                _field("Version", f"`{esc(record.from_version)}` → `{esc(record.to_version)}`"),
                _field("Requested by", mention(record.requester.id)),
            ],
        },
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(_status_line(record, elapsed), SECTION_MAX)},
        },
    ]
    detail = _live_line(record, live, now)
    if detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(detail, SECTION_MAX)}})
    actions = _buttons(record)
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


def _field(label: str, value: str) -> Block:
    return {"type": "mrkdwn", "text": clip(f"*{label}*\n{value}", 2000)}


def _status_line(record: Record, elapsed: float) -> str:
    icon = PHASE_ICON[record.phase]
    reason = f": {esc(record.reason)}" if record.reason else ""
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
            line = f"{icon} *{describe_phase(record.phase).capitalize()}* · {duration(elapsed)}{reason}"
    done = [e for e in record.history if e.actor is not None and not e.action.endswith("requested")]
    if done:
        who = "; ".join(f"{esc(e.action)} by {mention(e.actor.id)}" for e in done[-3:] if e.actor)
        line += f"\n{who}"
    return line


def _live_line(record: Record, live: Live, now: datetime) -> str:
    if record.finished or live.progress is None:
        return ""
    p = live.progress
    line = (
        f"*Progress* updated {p.updated}/{p.desired} · ready {p.ready}/{p.desired} · "
        f"available {p.available}/{p.desired}"
    )
    if p.old:
        line += f" · old pods {p.old}"
    if p.paused:
        line += " · paused"
    if record.phase is Phase.CANARY:
        watched = (now - record.phase_since).total_seconds()
        line = f"*Canary* {p.updated} new / {p.old} old pods · under watch {duration(watched)}\n" + line
    if live.new_pods is not None:
        line += f"\n*Health of {esc(record.to_version)}* {esc(live.new_pods.describe())}"
    if p.deadline_exceeded:
        line += f"\n*Progress deadline exceeded:* {esc(p.deadline_exceeded)}"
    return line


_CONFIRM = {
    Request.PROMOTE: ("Promote?", "Move more traffic to {to}.", "Promote"),
    Request.ROLLBACK: ("Roll back?", "Put {from_} back and remove {to}.", "Roll back"),
    Request.ABORT: ("Abort?", "Stop this release and remove {to}.", "Abort"),
    Request.FINISH: ("Finish?", "Retire {from_} now: instant rollback will no longer be possible.", "Finish"),
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


def button(record: Record, request: Request, label: str, *, style: str | None = None) -> Block:
    title, text, ok = _CONFIRM[request]
    b: Block = {
        "type": "button",
        "action_id": f"{ACTION_PREFIX}{request.value}",
        "text": {"type": "plain_text", "text": clip(label, 75)},
        "value": button_value(record),
        "confirm": {
            "title": {"type": "plain_text", "text": title},
            "text": {
                "type": "mrkdwn",
                "text": clip(
                    text.format(to=f"`{esc(record.to_version)}`", from_=f"`{esc(record.from_version)}`"), 300
                ),
            },
            "confirm": {"type": "plain_text", "text": ok},
            "deny": {"type": "plain_text", "text": "Cancel"},
        },
    }
    if style:
        b["style"] = style
        b["confirm"]["style"] = style
    return b


def _buttons(record: Record) -> list[Block]:
    if record.request is not None:
        return []  # a request is being carried out: no second click
    match record.phase:
        case Phase.CANARY:
            return [
                button(record, Request.PROMOTE, "Promote", style="primary"),
                button(record, Request.ROLLBACK, "Rollback", style="danger"),
            ]
        case Phase.AWAITING_SWITCH:
            return [
                button(record, Request.PROMOTE, "Switch traffic", style="primary"),
                button(record, Request.ABORT, "Abort", style="danger"),
            ]
        case Phase.SWITCHED:
            return [
                button(record, Request.FINISH, "Finish", style="primary"),
                button(record, Request.ROLLBACK, "Rollback", style="danger"),
            ]
        case Phase.ROLLING_OUT:
            return [button(record, Request.ROLLBACK, "Rollback", style="danger")]
        case Phase.FAILED:
            return [button(record, Request.ROLLBACK, "Rollback", style="danger")]
        case _:
            return []


# --- Thread milestones -----------------------------------------------------------------------------


def milestone_started(record: Record, app: App) -> str:
    r = app.rolling
    how = {
        "rolling": f"rolling update (maxSurge {esc(r.max_surge)}, maxUnavailable {esc(r.max_unavailable)})",
        "canary": "canary: the new version on one pod first, then Promote or Rollback",
        "bluegreen": "blue-green: a second Deployment, then a Service switch",
    }[record.strategy.value]
    return (
        f":rocket: {mention(record.requester.id)} started releasing `{esc(record.app)}` "
        f"`{esc(record.from_version)}` → `{esc(record.to_version)}` as a {how}."
    )


def milestone_progress(p: Progress) -> str:
    return (
        f":arrows_counterclockwise: {p.updated}/{p.desired} pods on the new version, {p.available} available."
    )


def milestone_canary(p: Progress, health: PodHealth | None) -> str:
    h = f" Health: {esc(health.describe())}." if health else ""
    return (
        f":hatching_chick: Canary running: {p.updated} new pod(s), {p.old} old. "
        f"Waiting for Promote or Rollback.{h}"
    )


def milestone_succeeded(record: Record, elapsed: float) -> str:
    return f":white_check_mark: `{esc(record.app)}` now runs `{esc(record.to_version)}`: done in {duration(elapsed)}."


def milestone_failed(record: Record, reason: str, *, auto_rollback: bool) -> str:
    then = (
        " Rolling back automatically." if auto_rollback else " Old pods keep serving; use Rollback to undo."
    )
    return f":x: The release of `{esc(record.to_version)}` failed: {esc(reason)}.{then}"


def milestone_rolled_back(record: Record, who: str | None) -> str:
    by = f" by {mention(who)}" if who else " automatically"
    return f":leftwards_arrow_with_hook: Rolled back{by}: `{esc(record.app)}` runs `{esc(record.from_version)}` again."


def milestone_action(action: str, user_id: str | None, detail: str = "") -> str:
    who = mention(user_id) if user_id else "release-bot"
    more = f" {esc(detail)}" if detail else ""
    return f":point_right: {esc(action).capitalize()} by {who}.{more}"


# --- Ephemeral answers -----------------------------------------------------------------------------


def help_text() -> str:
    return "*release-bot* releases apps to Kubernetes from this channel.\n" + USAGE


def usage_error(message: str) -> str:
    return f":warning: {esc(message)}"


def refused(message: str) -> str:
    return f":no_entry: {esc(message)}"


def conflict(message: str) -> str:
    return f":hand: {esc(message)}"


def internal_error(error_id: str) -> str:
    return f":boom: Something went wrong on our side (error id `{esc(error_id)}`). Nothing was changed by this request; ask the bot's operators if it happens again."


def not_yet(kind: str) -> str:
    return f":construction: `/release {esc(kind)}` is not available yet. Type `/release help`."


def accepted(record: Record) -> str:
    return f":rocket: Releasing `{esc(record.app)}` `{esc(record.to_version)}` ({esc(record.strategy.value)}): follow the card in this channel."


def stale_card(record: Record) -> str:
    """Plain text for a Conflict (escaped where it is shown)."""
    last = next((e for e in reversed(record.history) if e.actor is not None), None)
    who = f" ({last.action} by {last.actor.name})" if last and last.actor else ""
    return f"This card was out of date: the release is now {describe_phase(record.phase)}{who}. Nothing was done; look at the card again."


def request_taken(request: Request, app: str) -> str:
    return f":ok_hand: {request.value.capitalize()} of `{esc(app)}` requested: follow the card."


def apps_list(apps: Iterable[App], allowed: Sequence[str]) -> str:
    lines = []
    for app in apps:
        mark = "" if app.name in allowed else " _(view only)_"
        strategies = ", ".join(s.value for s in app.strategies)
        lines.append(f"• `{esc(app.name)}` in `{esc(app.namespace)}`: {strategies}{mark}")
    return "*Apps you can release:*\n" + ("\n".join(lines) if lines else "none")


def status(app: App, deployment: dict[str, Any], record: Record | None, card_link: str) -> str:
    """`/release status <app>`: what runs now, and the current release if any."""
    p = progress_of(deployment)
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    images = ", ".join(f"`{esc(c.get('name'))}`: `{esc(c.get('image'))}`" for c in containers)
    lines = [
        f"*{esc(app.name)}* (Deployment `{esc(app.namespace)}/{esc(app.deployment)}`)",
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
    return "\n".join(lines)
