"""The simulator's modals and Home tabs (sandbox/slack/views.py) through the workspace's Web API
methods: Slack's rules for views.open, views.update and views.publish, what a person enters, and
how an app's answer to a submission acts on the modal."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.slack.views import TROUBLE
from sandbox.slack.workspace import ApiError, Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ws() -> Workspace:
    return Workspace(users=("alice", "bob"), channels=("releases",), usergroups={}, clock=Clock())


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def option(value: str) -> dict[str, Any]:
    return {"text": plain(value), "value": value}


def form(apps: tuple[str, ...] = ("hexo", "blog"), *, strategy_block: str = "strategy") -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "release:form",
        "title": plain("Release"),
        "submit": plain("Release"),
        "private_metadata": '{"c":"C1"}',
        "blocks": [
            {
                "type": "input",
                "block_id": "app",
                "dispatch_action": True,
                "label": plain("App"),
                "element": {
                    "type": "static_select",
                    "action_id": "app",
                    "options": [option(a) for a in apps],
                    "initial_option": option(apps[0]),
                },
            },
            {
                "type": "input",
                "block_id": "version",
                "label": plain("Version"),
                "element": {"type": "plain_text_input", "action_id": "version"},
            },
            {
                "type": "input",
                "block_id": strategy_block,
                "label": plain("Strategy"),
                "element": {
                    "type": "static_select",
                    "action_id": "strategy",
                    "options": [option("rolling"), option("canary")],
                    "initial_option": option("rolling"),
                },
            },
        ],
    }


def open_form(ws: Workspace, user: str = "alice", view: dict[str, Any] | None = None) -> dict[str, Any]:
    trigger = ws.issue_trigger_id(ws.user(user).id)
    opened: dict[str, Any] = ws.views_open({"trigger_id": trigger, "view": view or form()})["view"]
    return opened


def test_open_gives_the_view_with_its_initial_state(ws: Workspace) -> None:
    view = open_form(ws)
    assert view["id"].startswith("V") and view["hash"]
    assert view["callback_id"] == "release:form" and view["private_metadata"] == '{"c":"C1"}'
    values = view["state"]["values"]
    assert values["app"]["app"]["selected_option"]["value"] == "hexo"
    assert values["version"]["version"] == {"type": "plain_text_input", "value": None}
    modal = ws.views.modal_of(ws.user("alice").id)
    assert modal is not None and modal.id == view["id"]
    assert ws.views.modal_of(ws.user("bob").id) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda v: v.update(title=plain("x" * 25)), "/view/title/text"),
        (lambda v: v.pop("title"), "/view/title"),
        (lambda v: v.pop("submit"), "/view/submit"),  # input blocks need a submit button
        (lambda v: v.update(private_metadata="x" * 3001), "/view/private_metadata"),
        (lambda v: v.update(type="home"), "/view/type"),
        (lambda v: v["blocks"][0]["element"].update(initial_option=option("nope")), "initial_option"),
        (lambda v: v["blocks"][0]["element"].update(options=[]), "/options"),
        (lambda v: v["blocks"][1].update(element={"type": "button", "text": plain("x")}), "element/type"),
        (lambda v: v.update(blocks=[{"type": "divider"}] * 101), "/view/blocks"),
    ],
)
def test_open_refuses_what_slack_refuses(ws: Workspace, change: Any, message: str) -> None:
    view = form()
    change(view)
    with pytest.raises(ApiError) as refused:
        open_form(ws, view=view)
    assert refused.value.error == "invalid_arguments"
    assert any(message in m for m in refused.value.extra["response_metadata"]["messages"])


def test_update_keeps_what_was_entered_and_refuses_a_stale_hash(ws: Workspace) -> None:
    view = open_form(ws)
    ws.views.enter(view["id"], {"version": "v2.0", "app": "blog"})
    stale = view["hash"]
    updated = ws.views_update({"view_id": view["id"], "view": form(strategy_block="strategy:blog")})["view"]
    values = updated["state"]["values"]
    assert values["version"]["version"]["value"] == "v2.0"  # same block and action: kept
    assert values["app"]["app"]["selected_option"]["value"] == "blog"
    assert values["strategy:blog"]["strategy"]["selected_option"]["value"] == "rolling"  # a new block
    assert updated["hash"] != stale
    with pytest.raises(ApiError, match="hash_conflict"):
        ws.views_update({"view_id": view["id"], "hash": stale, "view": form()})
    with pytest.raises(ApiError, match="not_found"):
        ws.views_update({"view_id": "VNOPE", "view": form()})
    with pytest.raises(KeyError):
        ws.views.enter(view["id"], {"app": "not-an-option"})


def test_a_new_modal_replaces_the_stack_and_a_closed_one_cannot_be_updated(ws: Workspace) -> None:
    first = open_form(ws)
    second = open_form(ws)
    with pytest.raises(ApiError, match="not_found"):
        ws.views_update({"view_id": first["id"], "view": form()})
    ws.views.close(second["id"])
    assert ws.views.modal_of(ws.user("alice").id) is None
    with pytest.raises(ApiError, match="not_found"):
        ws.views_update({"view_id": second["id"], "view": form()})


def test_answers_to_a_submission(ws: Workspace) -> None:
    view = open_form(ws)
    alice = ws.user("alice").id
    assert (
        ws.views.answered(view["id"], 200, {"response_action": "errors", "errors": {"version": "bad"}})
        == "errors"
    )
    modal = ws.views.modal_of(alice)
    assert modal is not None and modal.errors == {"version": "bad"} and modal.open
    # an error for a block that is not an input cannot be shown: Slack's own message instead
    assert (
        ws.views.answered(view["id"], 200, {"response_action": "errors", "errors": {"nope": "x"}})
        == "trouble"
    )
    assert modal.problem == TROUBLE and modal.errors == {}
    assert ws.views.answered(view["id"], 0, None) == "trouble"  # no answer within 3 s
    assert ws.views.answered(view["id"], 200, {"response_action": "push", "view": form()}) == "pushed"
    top = ws.views.modal_of(alice)
    assert top is not None and top.id != view["id"] and top.data["previous_view_id"] == view["id"]
    assert ws.views.answered(top.id, 200, None) == "closed"  # an empty ack closes the top one
    below = ws.views.modal_of(alice)
    assert below is not None and below.id == view["id"]
    assert ws.views.answered(view["id"], 200, {"response_action": "clear"}) == "cleared"
    assert ws.views.modal_of(alice) is None


def test_publish_draws_one_home_tab_per_person(ws: Workspace) -> None:
    alice = ws.user("alice").id
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]}
    first = ws.views_publish({"user_id": alice, "view": home})["view"]
    again = ws.views_publish({"user_id": alice, "view": home, "hash": first["hash"]})["view"]
    assert again["id"] == first["id"] and again["hash"] != first["hash"]
    with pytest.raises(ApiError, match="hash_conflict"):
        ws.views_publish({"user_id": alice, "view": home, "hash": first["hash"]})
    with pytest.raises(ApiError, match="invalid_arguments"):
        ws.views_publish({"user_id": alice, "view": {**home, "type": "modal"}})
    with pytest.raises(ApiError, match="user_not_found"):
        ws.views_publish({"user_id": ws.bot.id, "view": home})
    assert ws.views.home_of(alice) is not None and ws.views.home_of(ws.user("bob").id) is None
