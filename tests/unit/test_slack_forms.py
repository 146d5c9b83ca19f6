"""bot.slack.forms with plain calls: the release form and the Home tab are Block Kit that Slack (the
simulator's rules) takes, what they show is escaped, and what comes back is read strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.catalog import App, Rule
from bot.releases.history import Revision
from bot.releases.record import Actor, Phase
from bot.slack import answers, forms
from sandbox.slack.views import Views
from tests.unit.records import record
from tests.unit.test_cards import HOSTILE, only_ours, texts


def app(name: str = "hexo", **changes: Any) -> App:
    fields: dict[str, Any] = {
        "name": name,
        "namespace": "devops",
        "deployment": "hexo",
        "container": "hexo",
        "image": "registry.sword.org/nginx",
        "service": "hexo-service",
        "strategies": ["rolling", "canary", "bluegreen"],
        "default_strategy": "canary",
    }
    fields.update(changes)
    return App.model_validate(fields)


def slack_takes(view: dict[str, Any]) -> None:
    """The simulator's Slack rules for a view (views.open/update/publish would refuse it otherwise)."""
    checker = Views(team_id="T1", app_id="A1", bot_id="B1", clock=lambda: 0.0, on_change=lambda: None)
    try:
        checker.check(view, view["type"])
    except Exception as e:  # ApiError carries Slack's messages
        extra = getattr(e, "extra", {})
        raise AssertionError(extra.get("response_metadata", e)) from e


META = forms.FormMeta("C0RELEASES", "releases", "https://hooks.slack.com/commands/T1/2/abc")


def deployment(image: str = "registry.sword.org/nginx:v1.0") -> dict[str, Any]:
    return {
        "metadata": {"name": "hexo", "namespace": "devops"},
        "spec": {"replicas": 6, "template": {"spec": {"containers": [{"name": "hexo", "image": image}]}}},
        "status": {"replicas": 6, "readyReplicas": 5, "updatedReplicas": 6, "availableReplicas": 5},
    }


def test_the_form_is_what_slack_takes_and_offers_the_apps_given() -> None:
    offered = forms.choices(["hexo", "blog"], {})
    view = forms.release_form(offered, offered[0], app(), META)
    slack_takes(view)
    assert view["callback_id"] == forms.FORM_CALLBACK
    assert forms.FormMeta.decode(view["private_metadata"]) == META
    by_id = {b.get("block_id"): b for b in view["blocks"]}
    select = by_id[forms.APP_BLOCK]
    assert select["dispatch_action"] is True
    assert [o["value"] for o in select["element"]["options"]] == ["hexo", "blog"]
    assert select["element"]["initial_option"]["value"] == "hexo"
    strategy = by_id["form:strategy:hexo"]["element"]
    assert [o["value"] for o in strategy["options"]] == ["rolling", "canary", "bluegreen"]
    assert strategy["initial_option"]["value"] == "canary"  # the app's default
    assert forms.ENV_BLOCK + ":hexo" not in by_id  # no environments
    assert "reading what runs now" in json.dumps(view)


def test_the_form_shows_what_runs_and_the_environments() -> None:
    envs = {"hexo-prod": ("hexo", "prod"), "hexo-staging": ("hexo", "staging")}
    offered = forms.choices(["hexo-prod", "hexo-staging", "blog"], envs)
    selected = offered[1]
    running = forms.running_of(app("hexo-staging"), deployment())
    assert running == forms.Running("v1.0", "", "5/6 ready")
    view = forms.release_form(offered, selected, app("hexo-staging"), META, running)
    slack_takes(view)
    by_id = {b.get("block_id"): b for b in view["blocks"]}
    assert [o["value"] for o in by_id[forms.APP_BLOCK]["element"]["options"]] == ["hexo", "blog"]
    env = by_id["form:env:hexo"]
    assert [(o["text"]["text"], o["value"]) for o in env["element"]["options"]] == [
        ("prod", "hexo-prod"),
        ("staging", "hexo-staging"),
    ]
    assert env["element"]["initial_option"]["value"] == "hexo-staging"
    assert by_id[forms.VERSION_BLOCK]["hint"]["text"].startswith("Runs v1.0 now.")
    line = next(t for t in texts(view["blocks"], "mrkdwn"))
    assert line == "`hexo-staging` (Deployment `devops/hexo`) runs `v1.0` now · 5/6 ready"
    unknown = forms.release_form(
        offered, selected, app("hexo-staging"), META, forms.Running(None, "<!channel> down")
    )
    assert "what runs now is not known (&lt;!channel&gt; down)" in json.dumps(unknown)


def test_the_form_stays_within_slacks_limits_for_many_long_names() -> None:
    names = [f"app-{i:03d}-" + "x" * 55 for i in range(120)]
    offered = forms.choices(names, {})
    long = app(names[0], image="registry.example.org/" + "y" * 200, allow_image_override=True)
    view = forms.release_form(offered, offered[0], long, META, forms.Running("v" * 128))
    slack_takes(view)
    select = next(b for b in view["blocks"] if b.get("block_id") == forms.APP_BLOCK)
    assert len(select["element"]["options"]) == 100
    assert len(forms.FormMeta("C1", "n" * 500, "https://x/" + "r" * 4000).encode()) <= 3000


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        '{"c": "not-a-channel"}',
        '{"c": "C1", "r": "javascript:alert(1)"}',
        '{"c": "C1", "n": 5}',
        "x" * 3001,
    ],
)
def test_metadata_that_is_not_ours_is_refused(text: str | None) -> None:
    with pytest.raises(ValueError, match="form metadata"):
        forms.FormMeta.decode(text)


def state(**values: Any) -> dict[str, Any]:
    return {"state": {"values": values}}


def selected(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def test_reading_the_form_back() -> None:
    view = state(
        **{
            forms.APP_BLOCK: {forms.APP_ACTION: selected("hexo")},
            "form:env:hexo": {forms.ENV_ACTION: selected("hexo-prod")},
            forms.VERSION_BLOCK: {forms.VERSION_ACTION: {"type": "plain_text_input", "value": "  v2.0 "}},
            "form:strategy:hexo-prod": {forms.STRATEGY_ACTION: selected("canary")},
        }
    )
    values = forms.read_form(view)
    assert (values.base, values.environment_app, values.version, values.strategy) == (
        "hexo",
        "hexo-prod",
        "v2.0",
        "canary",
    )
    assert values.chosen() == "hexo-prod"
    assert (
        forms.read_form(state(**{forms.APP_BLOCK: {forms.APP_ACTION: selected("hexo")}})).chosen() == "hexo"
    )
    # what the form could not have produced reads as nothing chosen
    odd = forms.read_form(
        state(
            **{
                forms.APP_BLOCK: {forms.APP_ACTION: selected("../../etc")},
                forms.VERSION_BLOCK: {forms.VERSION_ACTION: {"value": 5}},
                "form:strategy:x": {forms.STRATEGY_ACTION: "canary"},
            }
        )
    )
    assert (odd.base, odd.version, odd.strategy) == ("", "", "")
    assert forms.read_form({}) == forms.FormValues()
    assert forms.read_form({"state": {"values": "x"}}) == forms.FormValues()


def test_field_errors_are_plain_text() -> None:
    assert forms.field_error("`v2!` is not a valid version") == "v2! is not a valid version"
    assert len(forms.field_error("x" * 5000)) == 2000


def revision(number: int, image: str, cause: str) -> Revision:
    return Revision(
        number=number,
        images=(image,),
        change_cause=cause,
        created="2026-01-01T00:00:00Z",
        replicas=6,
        template={},
    )


def test_the_home_tab_is_escaped_within_limits_and_says_what_it_keeps() -> None:
    evil = "<!channel> <https://evil|x> &"
    rec = record(
        phase=Phase.SUCCEEDED,
        from_version=f"v1{evil}",
        to_version=f"v2{evil}",
        requester=Actor(id="U0ALICE", name=evil),
    )
    entries = [
        forms.HomeApp(
            app(),
            deployment(f"registry.sword.org/nginx:{evil}"),
            rec,
            "https://example.slack.com/archives/C1/p1",
            tuple(revision(n, f"reg/x:v{n}{evil}", f"release {evil}") for n in range(8, 0, -1)),
        ),
        forms.HomeApp(app("blog"), problem=f"cannot reach {evil}"),
        forms.HomeApp(app("quiet"), deployment()),
    ]
    view = forms.home_view("U0ALICE", entries)
    slack_takes(view)
    mrkdwn = list(texts(view["blocks"], "mrkdwn"))
    for text in mrkdwn:
        only_ours(text)
        for bad in HOSTILE:
            assert bad not in text
    shown = "\n".join(mrkdwn)
    assert (
        "Last release: `v1&lt;!channel&gt;" in shown
        and "<https://example.slack.com/archives/C1/p1|card>" in shown
    )
    assert "Last 5 revision(s), newest first: `8`" in shown and "| `4` " in shown and "`3` " not in shown
    assert "Cannot read it now: cannot reach &lt;!channel&gt;" in shown
    assert "_No release by release-bot yet._" in shown
    assert "current or last release" in shown
    many = forms.home_view("U1", [forms.HomeApp(app(f"a{i}"), deployment()) for i in range(30)], hidden=5)
    slack_takes(many)
    assert len(many["blocks"]) <= 100
    assert "and 15 more" in json.dumps(many)
    empty = forms.home_view("U1", [])
    slack_takes(empty)
    assert "No app of the catalog lets you see it" in json.dumps(empty)


def test_environments_from_the_catalog_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "apps:\n"
        "  hexo:\n    image: r/x\n    environments: {staging: {namespace: s}, prod: {namespace: p}}\n"
        "  blog: {namespace: web}\n"
    )
    assert forms.environments(path) == {"hexo-staging": ("hexo", "staging"), "hexo-prod": ("hexo", "prod")}
    assert forms.environments(tmp_path / "missing.yaml") == {}


def test_a_refusal_shown_on_a_field_reads_as_plain_text() -> None:
    rule = Rule(users=("U034BOB",), usergroups=("S0SRE",))
    refusal = answers.refused_with_who("Sorry, not you.", "U012ALICE", rule)
    shown = forms.field_error(refusal.removeprefix(":no_entry: "))
    assert shown == "Sorry, not you.\nYou are @U012ALICE (U012ALICE). Who may: @U034BOB, @S0SRE."
    assert forms.field_error(
        "<!date^1700000000^{time}|22:13 UTC> &lt;b&gt; <https://x.example|the card>"
    ) == ("22:13 UTC <b> the card")
    text = answers.membership_refusal(answers.membership_unknown({"S0OPS": "a<b"}), "release", "hexo")
    assert "a&lt;b" in text and "&amp;" not in text
