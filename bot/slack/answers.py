"""Private answers and channel announcements: refusals, help, status, history, rollback offers. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.catalog import App, Rule
from bot.releases import refusals
from bot.releases.gate import Enqueued, Gate, Queued
from bot.releases.health import revision as revision_of
from bot.releases.health import running, stale_selector_label
from bot.releases.history import Revision, deployment_diff, template_diff
from bot.releases.record import Phase, Record, Request, describe_phase
from bot.slack.cards import plan_lines, warning_lines
from bot.slack.mrkdwn import SECTION_MAX, Block, channel_link, clip, clip_mrkdwn, esc, mention, when, who_of
from bot.slack.wire import UNDO_ACTION, undo_value
from commands.parser import USAGE


def invite(channel_id: str, bot_user_id: str = "") -> str:
    """What to do when the bot is not in a channel: "invite @release-bot to #channel"."""
    bot = mention(bot_user_id) if bot_user_id else "@release-bot"
    return f"invite {bot} to {channel_link(channel_id)} (type `/invite @release-bot` there)"


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


def membership_refusal(unknown: str, action: str, app: str) -> str:
    """A refusal because user-group membership could not be checked (`unknown`: from
    `membership_unknown`, already mrkdwn)."""
    return f":no_entry: Sorry, {unknown}: you may not {esc(action)} `{esc(app)}` until it can be."


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


def unreachable(cluster: str, detail: str) -> str:
    """The cluster (named when the bot serves several) did not answer in the middle of a request."""
    where = f"The cluster `{esc(cluster)}`" if cluster else "The Kubernetes cluster"
    others = " Apps on other clusters are not affected." if cluster else ""
    return (
        f":electric_plug: {where} did not answer ({esc(detail)}). What you asked may not have been done: "
        f"`/release status` shows it once the cluster is back.{others}"
    )


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


def dry_run(record: Record, running: Record | None, gate: Gate) -> str:
    """`--dry-run`: what the release would do, and what would hold it back now. Nothing changed."""
    lines = [
        f":mag: *Dry run* of `{esc(record.app)}` `{esc(record.from_version)}` → `{esc(record.to_version)}` "
        f"({esc(record.strategy.value)}) on Deployment `{esc(record.namespace)}/{esc(record.deployment)}`: "
        "checked by the API server, nothing was changed.",
        *plan_lines(record),
    ]
    if record.preflight is not None:
        lines += warning_lines(record.preflight)
    if record.phase is Phase.AWAITING_APPROVAL:
        lines.append(
            f":raised_hand: It would wait for {record.approvals_required} approval(s) from "
            f"{who_of(record.approvers)}."
        )
    if record.override:
        lines.append(":snowflake: It would go ahead past a freeze, with your reason.")
    if running is not None:
        lines.append(
            f":hourglass_flowing_sand: `{esc(running.to_version)}` is being released now: it would be "
            f"refused (add `--queue` to wait for your turn)."
        )
    lines += gate_text(gate)
    lines.append(
        f"Release it: `/release {esc(record.app)} {esc(record.to_version)} --{esc(record.strategy.value)}`"
    )
    return clip_mrkdwn("\n".join(lines), SECTION_MAX)


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
    app: App,
    deployment: dict[str, Any],
    record: Record | None,
    card_link: str,
    gate: Gate | None = None,
    others: Sequence[dict[str, Any]] = (),
) -> str:
    """`/release status <app>`: what runs now (on each of the app's Deployments), and the current
    release if any."""
    now = running(deployment)
    p = now.progress
    images = ", ".join(f"`{esc(c)}`: `{esc(i)}`" for c, i in now.images)
    lines = [
        f"*{esc(app.name)}* (Deployment `{esc(app.namespace)}/{esc(now.name or app.deployment)}`)",
        f"Images: {images}",
        f"Replicas: desired {p.desired} · updated {p.updated} · ready {p.ready} · available {p.available}"
        + (" · *paused*" if p.paused else ""),
    ]
    lines += [f"Condition {esc(t)}={esc(st)} ({esc(reason)})" for t, st, reason in now.conditions]
    for other in others:
        also = running(other)
        shown = ", ".join(f"`{esc(c)}`: `{esc(i)}`" for c, i in also.images)
        q = also.progress
        lines.append(f"Also Deployment `{esc(also.name)}`: {shown} · ready {q.ready} of {q.desired}")
    stale = stale_selector_label(deployment, app.container)
    if stale is not None:
        lines.append(
            f":label: Selector label `version={esc(stale[0])}`, running `{esc(stale[1])}`: a Deployment's "
            "selector cannot change, so its `version` label keeps the version it was created with."
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


def diff_text(app: App, deployment: dict[str, Any], other: App, other_deployment: dict[str, Any]) -> str:
    """`/release diff`: how the second app's live pod template (and replicas) differs from the first's."""
    lines = [
        f"*{esc(app.name)}* (`{esc(app.namespace)}/{esc(deployment['metadata']['name'])}`) → "
        f"*{esc(other.name)}* (`{esc(other.namespace)}/{esc(other_deployment['metadata']['name'])}`)"
    ]
    replicas, diff = deployment_diff(deployment, other_deployment)
    if replicas is not None:
        lines.append(f"• replicas: {replicas[0]} → {replicas[1]}")
    lines += [f"• `{esc(clip(d, 300))}`" for d in diff[:25]]
    if len(diff) > 25:
        lines.append(f"• and {len(diff) - 25} more")
    if len(lines) == 1:
        lines.append("Same pod template and replicas.")
    return clip("\n".join(lines), SECTION_MAX)


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
                    "value": undo_value(app.name, target.number, current),
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


def paused_announcement(app: App, user_id: str, paused: bool) -> str:
    if paused:
        return f":double_vertical_bar: {mention(user_id)} paused the rollout of `{esc(app.name)}`."
    return f":arrow_forward: {mention(user_id)} resumed the rollout of `{esc(app.name)}`."
