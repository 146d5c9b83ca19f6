"""`release-bot manifest`: the Slack app manifest that creates this app in one paste.

`release-bot manifest [--socket-mode] [--url https://HOST] [--command /release]` prints the manifest
as YAML (paste it at https://api.slack.com/apps → Create New App → From an app manifest; see
docs/slack-setup.md). It asks for exactly the bot scopes the bot uses: each Web API method the bot
calls is listed in `WEB_API_METHODS` with the scope Slack requires for it, and `commands` comes with
the slash command. It turns on the App Home tab and subscribes to `app_home_opened` (`BOT_EVENTS`),
neither of which needs a scope. In HTTP mode the slash command, interactivity and events go to
`<url>/slack/events` (a placeholder host without --url); with --socket-mode there are no request URLs
and Socket Mode is on (the app-level token it needs carries `connections:write`, `APP_TOKEN_SCOPES`).

The manifest is checked against `MANIFEST_SCHEMA` before it is printed: a JSON Schema of the parts of
Slack's manifest this app uses, written from Slack's manifest reference
(https://docs.slack.dev/reference/app-manifest) with the limits of Slack's published schema
(https://github.com/slackapi/manifest-schema, schemas/manifest.schema.1.0.0.json), which no package
ships. Unknown keys are refused, as Slack refuses them.

Pure: builds data and YAML; no Slack or HTTP library.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

import jsonschema
import yaml

from bot.errors import ConfigError

APP_NAME = "release-bot"
DEFAULT_COMMAND = "/release"
EVENTS_PATH = "/slack/events"
# What the HTTP request URLs say without --url: unmistakably not a real host, to be replaced.
PLACEHOLDER_URL = "https://REPLACE-WITH-YOUR-RELEASE-BOT-HOST"

# Every Slack Web API method the bot calls with its bot token, and the bot-token scope Slack requires
# for it ("Required scopes" on https://docs.slack.dev/reference/methods/<method>). None: Slack
# requires no scope. Keep in step with the bot's code (tests/unit/test_manifest.py reads its calls).
WEB_API_METHODS: dict[str, str | None] = {
    "auth.test": None,  # at start-up: the token, its scopes and the bot's own user (Bolt uses the answer)
    "chat.postMessage": "chat:write",  # the release card, thread notes, announcements
    "chat.update": "chat:write",  # the live card
    "chat.delete": "chat:write",  # a card posted after its release was aborted
    "chat.postEphemeral": "chat:write",  # private answers
    "chat.getPermalink": None,  # the card's link in status answers and the audit log
    "usergroups.users.list": "usergroups:read",  # permissions granted to user groups
    # Whether a channel takes the bot's messages, before a release starts (private channels would need
    # groups:read; without the scope the release waits for its card instead).
    "conversations.info": "channels:read",
    # Modals and the App Home tab need no scope (https://docs.slack.dev/reference/methods/views.open,
    # .../views.update, .../views.publish: "Required scopes: No scope required").
    "views.open": None,  # `/release` without arguments: the release form
    "views.update": None,  # the form, once the app's running version and strategies are read
    "views.publish": None,  # the App Home tab
}
# Scopes that come with a feature rather than a Web API method.
FEATURE_SCOPES: dict[str, str] = {
    "commands": "the slash command (https://docs.slack.dev/reference/scopes/commands)",
}
BOT_SCOPES: tuple[str, ...] = tuple(
    sorted({scope for scope in WEB_API_METHODS.values() if scope is not None} | set(FEATURE_SCOPES))
)
# The app-level token Socket Mode uses to call apps.connections.open
# (https://docs.slack.dev/reference/methods/apps.connections.open, https://docs.slack.dev/reference/scopes/connections.write).
APP_TOKEN_SCOPES: tuple[str, ...] = ("connections:write",)
# Events API subscriptions: the App Home tab is drawn when someone opens it. app_home_opened needs no
# scope (https://docs.slack.dev/reference/events/app_home_opened).
BOT_EVENTS: tuple[str, ...] = ("app_home_opened",)
# Why the running bot needs each scope, for the start-up check of its token (`needed_scopes`).
SCOPE_REASONS: dict[str, str] = {
    "chat:write": "the release card, its thread and private answers (chat.postMessage, chat.update, "
    "chat.postEphemeral)",
    "commands": "the /release slash command",
    "channels:read": "a release starts before its card is posted once the channel is known to take "
    "the bot's messages (conversations.info); without it, it waits for the card",
    "usergroups:read": "the catalog grants rights to user groups (usergroups.users.list)",
}

DESCRIPTION = "Release to Kubernetes from a channel: rolling, canary and blue-green, with a live card."
USAGE_HINT = "<app> <version> [--canary|--bluegreen|--queue] | promote|rollback|abort|approve|deny|lock|unlock|status|history <app> | help"
BACKGROUND = "#1d3b53"

_HTTPS_URL = {"type": "string", "pattern": r"^https://[^\s/?#]+(/[^\s]*)?$", "maxLength": 3000}
_SCOPE = {"type": "string", "pattern": r"^[a-z][a-z0-9_.]*(:[a-z0-9_.]+)*$", "maxLength": 50}

MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Slack app manifest (the parts release-bot uses)",
    "description": "From https://docs.slack.dev/reference/app-manifest; limits as in Slack's "
    "https://github.com/slackapi/manifest-schema (schemas/manifest.schema.1.0.0.json).",
    "type": "object",
    "additionalProperties": False,
    "required": ["display_information", "features", "oauth_config", "settings"],
    "properties": {
        "_metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"major_version": {"const": 1}, "minor_version": {"type": "integer", "minimum": 0}},
        },
        "display_information": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 35},
                "description": {"type": "string", "minLength": 1, "maxLength": 140},
                "long_description": {"type": "string", "minLength": 175, "maxLength": 4000},
                "background_color": {"type": "string", "pattern": r"^#([0-9a-fA-F]{3}){1,2}$"},
            },
        },
        "features": {
            "type": "object",
            "additionalProperties": False,
            "required": ["bot_user"],
            "properties": {
                "app_home": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "home_tab_enabled": {"type": "boolean"},
                        "messages_tab_enabled": {"type": "boolean"},
                        "messages_tab_read_only_enabled": {"type": "boolean"},
                    },
                },
                "bot_user": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["display_name"],
                    "properties": {
                        "display_name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "always_online": {"type": "boolean"},
                    },
                },
                "slash_commands": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 50,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["command", "description"],
                        "properties": {
                            # a slash, then a lower-case name without spaces, 32 characters in all
                            "command": {"type": "string", "pattern": r"^/[a-z0-9_.-]{1,31}$"},
                            "url": _HTTPS_URL,
                            "description": {"type": "string", "minLength": 1, "maxLength": 2000},
                            "usage_hint": {"type": "string", "minLength": 1, "maxLength": 1000},
                            "should_escape": {"type": "boolean"},
                        },
                    },
                },
            },
        },
        "oauth_config": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scopes"],
            "properties": {
                "redirect_urls": {"type": "array", "items": {"type": "string", "maxLength": 2500}},
                "scopes": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "bot": {"type": "array", "items": _SCOPE, "maxItems": 255, "uniqueItems": True},
                        "user": {"type": "array", "items": _SCOPE, "maxItems": 255, "uniqueItems": True},
                    },
                },
            },
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "event_subscriptions": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "request_url": _HTTPS_URL,
                        "bot_events": {
                            "type": "array",
                            "items": {"type": "string", "maxLength": 50},
                            "maxItems": 100,
                            "uniqueItems": True,
                        },
                    },
                },
                "interactivity": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["is_enabled"],
                    "properties": {"is_enabled": {"type": "boolean"}, "request_url": _HTTPS_URL},
                },
                "org_deploy_enabled": {"type": "boolean"},
                "socket_mode_enabled": {"type": "boolean"},
                "token_rotation_enabled": {"type": "boolean"},
            },
        },
    },
    # Without Socket Mode Slack needs somewhere to send things: each slash command's `url`, the
    # interactivity `request_url` when interactivity is on, the Events API `request_url` when there
    # are events (the manifest reference: "Required if Socket Mode isn't enabled").
    "if": {
        "not": {
            "properties": {"settings": {"properties": {"socket_mode_enabled": {"const": True}}}},
            "required": ["settings"],
        }
    },
    "then": {
        "properties": {
            "features": {
                "properties": {"slash_commands": {"items": {"required": ["command", "description", "url"]}}}
            },
            "settings": {
                "properties": {
                    "interactivity": {
                        "if": {"properties": {"is_enabled": {"const": True}}},
                        "then": {"required": ["is_enabled", "request_url"]},
                    },
                    "event_subscriptions": {
                        "if": {"required": ["bot_events"], "properties": {"bot_events": {"minItems": 1}}},
                        "then": {"required": ["request_url"]},
                    },
                }
            },
        }
    },
}


# Scopes the bot asks for but works without (more slowly): not required by the start-up check.
OPTIONAL_SCOPES = frozenset({"channels:read"})


def needed_scopes(*, usergroups: bool) -> dict[str, str]:
    """The bot scopes a running bot cannot work without, each with why: `usergroups:read` only when
    the catalog names user groups (`usergroups`)."""
    scopes = [s for s in BOT_SCOPES if s not in OPTIONAL_SCOPES and (s != "usergroups:read" or usergroups)]
    return {scope: SCOPE_REASONS[scope] for scope in scopes}


def events_url(url: str | None) -> str:
    """Slack's Request URL for the bot: `<url>/slack/events` (`url` a base like https://HOST or
    https://HOST/prefix, or already ending in /slack/events); the placeholder without `url`."""
    base = (url or PLACEHOLDER_URL).rstrip("/")
    if not base.startswith("https://") or len(base) <= len("https://"):
        raise ConfigError(f"--url must be an https:// URL (Slack calls the bot there), not {url!r}")
    return base if base.endswith(EVENTS_PATH) else base + EVENTS_PATH


def build(
    *, socket_mode: bool = False, url: str | None = None, command: str = DEFAULT_COMMAND
) -> dict[str, Any]:
    """The manifest as data: HTTP mode (request URLs at `url`) or Socket Mode (none)."""
    slash: dict[str, Any] = {"command": command}
    settings: dict[str, Any] = {}
    if socket_mode:
        settings["interactivity"] = {"is_enabled": True}
    else:
        request_url = events_url(url)
        slash["url"] = request_url
        settings["interactivity"] = {"is_enabled": True, "request_url": request_url}
        if BOT_EVENTS:
            settings["event_subscriptions"] = {"request_url": request_url, "bot_events": list(BOT_EVENTS)}
    if socket_mode and BOT_EVENTS:
        settings["event_subscriptions"] = {"bot_events": list(BOT_EVENTS)}
    slash.update(
        {
            "description": "Release an app to Kubernetes: rolling, canary or blue-green",
            "usage_hint": USAGE_HINT,
            "should_escape": False,
        }
    )
    settings.update(
        {"org_deploy_enabled": False, "socket_mode_enabled": socket_mode, "token_rotation_enabled": False}
    )
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {"name": APP_NAME, "description": DESCRIPTION, "background_color": BACKGROUND},
        "features": {
            # The Home tab shows the apps a person may see; no Messages tab: the bot works in
            # channels and needs no DM with anyone.
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": False,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": APP_NAME, "always_online": True},
            "slash_commands": [slash],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": settings,
    }


def problems(manifest: Mapping[str, Any]) -> list[str]:
    """What makes `manifest` invalid against `MANIFEST_SCHEMA`, one line each (empty: valid)."""
    validator = jsonschema.Draft7Validator(MANIFEST_SCHEMA)
    found = []
    for error in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(top)"
        found.append(f"{where}: {error.message}")
    return found


def validate(manifest: Mapping[str, Any]) -> None:
    """ConfigError naming every problem, unless `manifest` matches `MANIFEST_SCHEMA`."""
    found = problems(manifest)
    if found:
        raise ConfigError("invalid app manifest: " + "; ".join(found))


def render(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML, keys in the order Slack's editor shows them."""
    return yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True, width=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket-mode",
        action="store_true",
        help="Socket Mode: no request URLs (run the bot with `serve --socket-mode` and an app-level token)",
    )
    parser.add_argument(
        "--url",
        metavar="https://HOST",
        help=f"where Slack reaches the bot (HTTP mode): requests go to <url>{EVENTS_PATH}",
    )
    parser.add_argument(
        "--command",
        default=DEFAULT_COMMAND,
        help=f"the slash command (default {DEFAULT_COMMAND})",
    )


def run(args: argparse.Namespace) -> int:
    socket_mode = bool(args.socket_mode)
    if socket_mode and args.url:
        raise ConfigError("--url is for HTTP mode: Socket Mode has no request URLs")
    manifest = build(socket_mode=socket_mode, url=args.url, command=args.command)
    validate(manifest)
    if not socket_mode and not args.url:
        print(
            f"release-bot: no --url: replace {PLACEHOLDER_URL} with the bot's public https address "
            "before pasting (or use --socket-mode)",
            file=sys.stderr,
        )
    if args.command != DEFAULT_COMMAND:
        print(
            f"release-bot: the bot answers {DEFAULT_COMMAND}: a manifest with {args.command} "
            f"makes Slack send {args.command}, which it does not handle",
            file=sys.stderr,
        )
    sys.stdout.write(render(manifest))
    return 0
