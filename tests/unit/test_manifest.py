"""`release-bot manifest`: a Slack app manifest that validates in both modes and asks for exactly the
scopes of the Web API methods the bot calls."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot import manifest
from bot.__main__ import main
from bot.catalog import Catalog
from bot.cli_serve import uses_usergroups
from bot.errors import ConfigError
from sandbox.slack.workspace import METHOD_SCOPES

BOT = Path(manifest.__file__).parent
# Web API families: `client.<family>_<method>(` in the bot's code is a Web API call.
_CALL = re.compile(
    r"\bclient\.((?:auth|chat|conversations|usergroups|users|views|reactions|apps)_[A-Za-z_]+)\("
)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["manifest", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft7Validator.check_schema(manifest.MANIFEST_SCHEMA)


@pytest.mark.parametrize("socket_mode", [False, True])
def test_the_manifest_validates_in_both_modes(socket_mode: bool) -> None:
    built = manifest.build(socket_mode=socket_mode, url=None if socket_mode else "https://bot.example.com")
    assert manifest.problems(built) == []
    assert built["settings"]["socket_mode_enabled"] is socket_mode
    assert set(built) >= {"display_information", "features", "oauth_config", "settings"}
    assert built["features"]["bot_user"]["display_name"] == "release-bot"
    assert built["features"]["app_home"]["messages_tab_enabled"] is False
    assert built["features"]["app_home"]["home_tab_enabled"] is True
    assert built["settings"]["interactivity"]["is_enabled"] is True
    events = built["settings"]["event_subscriptions"]
    assert events["bot_events"] == ["app_home_opened"]  # the Home tab, drawn when it is opened
    assert ("request_url" in events) is not socket_mode


def test_http_mode_sends_everything_to_slack_events() -> None:
    built = manifest.build(url="https://bot.example.com/")
    (command,) = built["features"]["slash_commands"]
    assert command["url"] == "https://bot.example.com/slack/events"
    assert built["settings"]["interactivity"]["request_url"] == "https://bot.example.com/slack/events"
    assert built["settings"]["event_subscriptions"]["request_url"] == "https://bot.example.com/slack/events"
    assert (
        manifest.events_url("https://h.example/prefix/slack/events")
        == "https://h.example/prefix/slack/events"
    )
    assert manifest.events_url("https://h.example/prefix") == "https://h.example/prefix/slack/events"


def test_without_url_the_placeholder_is_named_and_said(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys)
    assert code == 0
    printed = yaml.safe_load(out)
    url = printed["features"]["slash_commands"][0]["url"]
    assert url == "https://REPLACE-WITH-YOUR-RELEASE-BOT-HOST/slack/events"
    assert printed["settings"]["interactivity"]["request_url"] == url
    assert "replace https://REPLACE-WITH-YOUR-RELEASE-BOT-HOST" in err
    assert manifest.problems(printed) == []


def test_socket_mode_has_no_request_urls(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--socket-mode")
    assert (code, err) == (0, "")
    assert "url" not in out
    printed = yaml.safe_load(out)
    assert printed["settings"]["socket_mode_enabled"] is True
    assert manifest.problems(printed) == []


def test_scopes_are_exactly_those_of_the_methods_the_bot_calls() -> None:
    assert manifest.BOT_SCOPES == ("channels:read", "chat:write", "commands", "usergroups:read")
    called = set()
    for source in BOT.rglob("*.py"):
        called |= {name.replace("_", ".") for name in _CALL.findall(source.read_text(encoding="utf-8"))}
    # the bot calls auth.test itself at start-up (and hands Bolt the answer)
    assert called == set(manifest.WEB_API_METHODS)
    scopes = {scope for scope in manifest.WEB_API_METHODS.values() if scope}
    assert set(manifest.BOT_SCOPES) == scopes | set(manifest.FEATURE_SCOPES)


def test_needed_scopes_follow_the_catalog() -> None:
    assert list(manifest.needed_scopes(usergroups=True)) == ["chat:write", "commands", "usergroups:read"]
    assert list(manifest.needed_scopes(usergroups=False)) == ["chat:write", "commands"]
    assert "channels:read" in manifest.BOT_SCOPES  # asked for, but not needed to start
    assert "usergroups.users.list" in manifest.needed_scopes(usergroups=True)["usergroups:read"]
    # views and the Home tab need no scope of their own
    assert {manifest.WEB_API_METHODS[m] for m in ("views.open", "views.update", "views.publish")} == {None}


def test_events_without_a_request_url_are_refused_in_http_mode() -> None:
    built = manifest.build(url="https://bot.example.com")
    del built["settings"]["event_subscriptions"]["request_url"]
    assert any("request_url" in p for p in manifest.problems(built))


def test_the_simulator_requires_the_same_scope_for_each_method() -> None:
    for method, scope in manifest.WEB_API_METHODS.items():
        rule = METHOD_SCOPES[method]
        # a per-conversation rule: the bot asks for the public channels' scope (in a private channel the
        # call answers missing_scope and the bot does without it)
        assert (rule["public"] if isinstance(rule, dict) else rule) == scope, method


def test_command_changes_the_slash_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--socket-mode", "--command", "/deploy")
    assert code == 0
    (command,) = yaml.safe_load(out)["features"]["slash_commands"]
    assert command["command"] == "/deploy"
    assert "the bot answers /release" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--command", "deploy"), "slash_commands.0.command"),
        (("--command", "/Deploy Now"), "slash_commands.0.command"),
        (("--url", "http://bot.example.com"), "must be an https:// URL"),
        (("--socket-mode", "--url", "https://bot.example.com"), "Socket Mode has no request URLs"),
    ],
)
def test_bad_arguments_are_refused(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert message in err


def test_the_schema_refuses_what_slack_would() -> None:
    good = manifest.build(url="https://bot.example.com")
    no_url = copy.deepcopy(good)
    del no_url["features"]["slash_commands"][0]["url"]
    assert any("'url' is a required property" in p for p in manifest.problems(no_url))
    no_interactivity_url = copy.deepcopy(good)
    del no_interactivity_url["settings"]["interactivity"]["request_url"]
    assert manifest.problems(no_interactivity_url)
    unknown = copy.deepcopy(good)
    unknown["settings"]["socket_mode"] = True
    assert any("socket_mode" in p for p in manifest.problems(unknown))
    long_name = copy.deepcopy(good)
    long_name["display_information"]["name"] = "x" * 36
    assert manifest.problems(long_name)
    bad_scope = copy.deepcopy(good)
    bad_scope["oauth_config"]["scopes"]["bot"].append("Chat Write")
    assert manifest.problems(bad_scope)
    with pytest.raises(ConfigError, match="invalid app manifest"):
        manifest.validate(no_url)


@pytest.mark.parametrize(
    "extra",
    [
        {"permissions": {"release": {"usergroups": ["S0DEV"]}}},
        {"permissions": {"release": {"users": ["U0A"]}, "lock": {"usergroups": ["S0DEV"]}}},
        {"approvals": {"from": {"usergroups": ["S0SRE"]}}},
        {"break_glass": {"usergroups": ["S0SRE"]}},
        {"freeze_override": {"usergroups": ["S0SRE"]}},
    ],
)
def test_a_user_group_named_in_any_rule_needs_usergroups_read(extra: dict[str, object]) -> None:
    app = {"namespace": "apps", "deployment": "hexo", "container": "hexo", "image": "r.example/hexo", **extra}
    assert uses_usergroups(Catalog.from_mapping({"apps": {"hexo": app}}))
    plain = {"namespace": "apps", "deployment": "hexo", "container": "hexo", "image": "r.example/hexo"}
    assert not uses_usergroups(Catalog.from_mapping({"apps": {"hexo": plain}}))
