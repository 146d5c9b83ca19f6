"""Who may do what to which app. Pure and deny-by-default.

The Slack layer resolves the user's groups (usergroups.users.list) and passes them in, so this module
decides with plain data and is tested with plain function calls.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from bot.catalog import Action, App
from commands import intents

ACTION_OF: dict[str, Action] = {
    "release": Action.RELEASE,
    "promotion": Action.RELEASE,
    "pause": Action.RELEASE,
    "resume": Action.RELEASE,
    "promote": Action.PROMOTE,
    "finish": Action.PROMOTE,
    "rollback": Action.ROLLBACK,
    "abort": Action.ROLLBACK,
    "status": Action.VIEW,
    "history": Action.VIEW,
    "diff": Action.VIEW,
    "approve": Action.APPROVE,
    "deny": Action.APPROVE,
    "lock": Action.LOCK,
    "unlock": Action.LOCK,
    "dequeue": Action.RELEASE,
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: Action
    reason: str  # why not, for the refusal message and the audit log; empty when allowed


def action_for(intent: intents.AppIntent) -> Action:
    return ACTION_OF[intent.kind]


def decide(app: App, action: Action, user_id: str, groups: Collection[str], channel_id: str) -> Decision:
    rule = app.rule(action)
    in_rule = user_id in rule.users or any(g in rule.usergroups for g in groups)
    if not in_rule:
        return Decision(False, action, f"you are not allowed to {_verb(action)} `{app.name}`")
    if rule.channels and channel_id not in rule.channels:
        return Decision(False, action, f"`{app.name}` may only be {_past(action)} from its release channels")
    return Decision(True, action, "")


def _verb(action: Action) -> str:
    return {
        Action.APPROVE: "approve releases of",
        Action.BREAK_GLASS: "break glass for",
        Action.OVERRIDE: "override a freeze of",
    }.get(action, action.value)


def _past(action: Action) -> str:
    return {
        Action.VIEW: "viewed",
        Action.RELEASE: "released",
        Action.PROMOTE: "promoted",
        Action.ROLLBACK: "rolled back",
        Action.LOCK: "locked or unlocked",
        Action.APPROVE: "approved",
        Action.BREAK_GLASS: "released past its gates",
        Action.OVERRIDE: "released during a freeze",
    }[action]


def groups_needed(app: App, action: Action) -> tuple[str, ...]:
    """The user groups whose membership decides this action (the Slack layer looks these up)."""
    return app.rule(action).usergroups
