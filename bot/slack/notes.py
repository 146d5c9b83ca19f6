"""Release events as thread milestones, one line of mrkdwn each. Pure."""

from __future__ import annotations

from bot.releases import events
from bot.releases.record import Record
from bot.releases.refusals import selector_text
from bot.slack.cards import bluegreen_footprint
from bot.slack.mrkdwn import duration, esc, mention, plural, who_of


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
        case events.AutoscalerHeld():
            return (
                f":pushpin: Autoscaler `{esc(event.name)}` is held at {plural(event.replicas, 'pod')} while "
                "the release runs, so it does not resize the old version behind it."
            )
        case events.AutoscalerRestored():
            return (
                f":pushpin: Autoscaler `{esc(event.name)}` has its own bounds back ({event.min_replicas} to "
                f"{event.max_replicas} pods), scaling `{esc(event.target)}`."
            )
        case events.FollowerRolledOut():
            h = f" ({esc(event.health)})" if event.health else ""
            return f":white_check_mark: `{esc(event.name)}` runs `{esc(record.to_version)}`{h}."
        case events.Analysed(outcome="failed"):
            return (
                f":chart_with_downwards_trend: Analysis: {esc(event.detail)}: failure {event.failures} of "
                f"{event.limit} allowed."
            )
        case events.Analysed(outcome="waiting"):
            return f":hourglass: Analysis cannot judge the canary ({esc(event.detail)}): it waits, and never promotes meanwhile."
        case events.Analysed():
            return ":chart_with_upwards_trend: Analysis can judge the canary again."
        case events.GateRefused():
            said = f": {esc(event.said)}" if event.said else ""
            what = "the release" if event.phase == "pre-rollout" else "the promotion"
            return f":no_entry: Gate `{esc(event.gate)}` said no to {what}{said}."
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
