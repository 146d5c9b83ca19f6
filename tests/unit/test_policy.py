"""Who may do what: deny by default, users, user groups, channels."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from bot import policy
from bot.catalog import Action, App
from commands import intents

CHANNEL = "CREL1"
ELSEWHERE = "COTHER1"


def app(**permissions: Any) -> App:
    return App.model_validate(
        {
            "name": "hexo",
            "namespace": "devops",
            "deployment": "hexo",
            "container": "hexo",
            "image": "registry.sword.org/nginx",
            "permissions": permissions,
        }
    )


def allowed(a: App, action: Action, user: str, groups: tuple[str, ...] = (), channel: str = CHANNEL) -> bool:
    return policy.decide(a, action, user, groups, channel).allowed


@pytest.mark.parametrize("action", list(Action))
def test_deny_by_default(action: Action) -> None:
    decision = policy.decide(app(), action, "UALICE1", ("SOPS",), CHANNEL)
    verb = {
        Action.APPROVE: "approve releases of",
        Action.BREAK_GLASS: "break glass for",
        Action.OVERRIDE: "override a freeze of",
    }.get(action, action.value)
    assert decision == policy.Decision(False, action, f"you are not allowed to {verb} `hexo`")


def test_user_match_is_per_action() -> None:
    a = app(release={"users": ["UALICE1"]}, promote={"users": ["UBOB1"]})
    assert allowed(a, Action.RELEASE, "UALICE1")
    assert not allowed(a, Action.RELEASE, "UBOB1")
    assert allowed(a, Action.PROMOTE, "UBOB1")
    assert not allowed(a, Action.PROMOTE, "UALICE1")
    assert not allowed(a, Action.ROLLBACK, "UALICE1")


def test_allowed_decision_has_no_reason() -> None:
    a = app(release={"users": ["UALICE1"]})
    assert policy.decide(a, Action.RELEASE, "UALICE1", (), CHANNEL) == policy.Decision(
        True, Action.RELEASE, ""
    )


def test_usergroup_match() -> None:
    a = app(rollback={"usergroups": ["SOPS1"]})
    assert allowed(a, Action.ROLLBACK, "UANY1", ("SDEV1", "SOPS1"))
    assert not allowed(a, Action.ROLLBACK, "UANY1", ("SDEV1",))
    assert not allowed(a, Action.ROLLBACK, "UANY1")
    # A group name is not a user id and vice versa.
    assert not allowed(a, Action.ROLLBACK, "SOPS1")


@pytest.mark.parametrize(
    ("action", "past"),
    [
        (Action.RELEASE, "released"),
        (Action.PROMOTE, "promoted"),
        (Action.ROLLBACK, "rolled back"),
        (Action.VIEW, "viewed"),
    ],
)
def test_channel_restriction(action: Action, past: str) -> None:
    rule = {"users": ["UALICE1"], "channels": [CHANNEL]}
    a = app(release=rule, promote=rule, rollback=rule, view=rule)
    assert allowed(a, action, "UALICE1", channel=CHANNEL)
    refused = policy.decide(a, action, "UALICE1", (), ELSEWHERE)
    assert not refused.allowed
    assert refused.reason == f"`hexo` may only be {past} from its release channels"


def test_channel_restriction_does_not_admit_strangers() -> None:
    a = app(release={"users": ["UALICE1"], "channels": [CHANNEL]})
    refused = policy.decide(a, Action.RELEASE, "UMALLORY1", (), CHANNEL)
    assert refused.reason == "you are not allowed to release `hexo`"


def test_view_defaults_to_anyone_allowed_another_action() -> None:
    a = app(release={"users": ["UALICE1"]}, rollback={"usergroups": ["SOPS1"]})
    assert allowed(a, Action.VIEW, "UALICE1")
    assert allowed(a, Action.VIEW, "UBOB1", ("SOPS1",))
    assert not allowed(a, Action.VIEW, "UMALLORY1")


def test_explicit_view_rule_replaces_the_default() -> None:
    a = app(release={"users": ["UALICE1"]}, view={"users": ["UVIEWER1"]})
    assert allowed(a, Action.VIEW, "UVIEWER1")
    assert not allowed(a, Action.VIEW, "UALICE1")


def _kinds() -> list[str]:
    kinds = []
    for model in typing.get_args(intents.AppIntent):
        kinds.append(model.model_fields["kind"].default)
    return kinds


def test_action_of_covers_every_app_intent() -> None:
    assert sorted(policy.ACTION_OF) == sorted(_kinds())


@pytest.mark.parametrize(
    ("intent", "action"),
    [
        (intents.Release(app="hexo", version="v2"), Action.RELEASE),
        (intents.Pause(app="hexo"), Action.RELEASE),
        (intents.Resume(app="hexo"), Action.RELEASE),
        (intents.Promote(app="hexo"), Action.PROMOTE),
        (intents.Finish(app="hexo"), Action.PROMOTE),
        (intents.Rollback(app="hexo", to_revision=2), Action.ROLLBACK),
        (intents.Abort(app="hexo"), Action.ROLLBACK),
        (intents.Status(app="hexo"), Action.VIEW),
        (intents.History(app="hexo"), Action.VIEW),
    ],
)
def test_action_for(intent: intents.AppIntent, action: Action) -> None:
    assert policy.action_for(intent) is action


def test_groups_needed() -> None:
    a = app(
        release={"users": ["UALICE1"], "usergroups": ["SREL1"]},
        promote={"usergroups": ["SPRO1", "SREL1"]},
        rollback={"users": ["UBOB1"]},
    )
    assert policy.groups_needed(a, Action.RELEASE) == ("SREL1",)
    assert policy.groups_needed(a, Action.PROMOTE) == ("SPRO1", "SREL1")
    assert policy.groups_needed(a, Action.ROLLBACK) == ()
    assert sorted(policy.groups_needed(a, Action.VIEW)) == ["SPRO1", "SREL1"]
    assert policy.groups_needed(app(), Action.RELEASE) == ()
