"""The release form (a modal) and the App Home tab: their Block Kit, their state, and reading them back.

Pure (no Slack or Kubernetes library). The listeners decide who may see and do what; this module
only draws what they decided and parses what Slack sends back:

- `release_form`: `/release` without arguments. The app (a select of the apps the person may
  release), the environment (when the app has environments), the version (text, with what runs now
  in its hint) and the strategy (the app's). Changing the app or the environment redraws the form
  (`views.update`); its state travels in `private_metadata` (`FormMeta`: the channel the command was
  typed in and its response_url), so any replica can take the submission.
- `read_form`: a submission's (or a redraw's) values, and `FormMeta.decode` its metadata; both
  refuse anything the form could not have produced.
- `home_view`: every app the person may see, what runs, the current or last release with a link to
  its card, and the last revisions of the Deployment.

Every user- or cluster-supplied string that lands in mrkdwn goes through `mrkdwn.esc`; plain_text
fields are shown by Slack as typed and only clipped to their limits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.catalog import App
from bot.releases.health import container_image, progress, version_of
from bot.releases.history import Revision
from bot.releases.record import Record, describe_phase
from bot.slack.mrkdwn import clip, esc, mention, plain

Block = dict[str, Any]

FORM_CALLBACK = "release:form"
APP_BLOCK, ENV_BLOCK, VERSION_BLOCK, STRATEGY_BLOCK = "form:app", "form:env", "form:version", "form:strategy"
APP_ACTION, ENV_ACTION = "form:app", "form:env"
VERSION_ACTION, STRATEGY_ACTION = "form:version", "form:strategy"
FORM_ACTIONS = (APP_ACTION, ENV_ACTION)  # changing these redraws the form

TITLE_MAX = 24  # modal title, submit and close
OPTION_MAX = 75  # an option's text
OPTIONS_MAX = 100  # a select's options
METADATA_MAX = 3000  # private_metadata
VIEW_BLOCKS_MAX = 100
HOME_APPS_MAX = 20  # 4 blocks each, within a view's 100
HOME_REVISIONS = 5
VERSION_MAX = 255

_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,20}$")
_APP = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


# --- Which apps, in which environments -------------------------------------------------------------


def environments(catalog_file: Path) -> dict[str, tuple[str, str]]:
    """{app name in the catalog: (app, environment)} for every app defined with `environments:` in
    the catalog file (the catalog names them `<app>-<env>`). Empty when the file cannot be read: the
    catalog itself was loaded from it and validated already."""
    try:
        data = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    found: dict[str, tuple[str, str]] = {}
    apps = data.get("apps") if isinstance(data, dict) else None
    for name, body in (apps or {}).items():
        envs = body.get("environments") if isinstance(body, dict) else None
        if isinstance(envs, dict):
            for env in envs:
                found[f"{name}-{env}"] = (str(name), str(env))
    return found


@dataclass(frozen=True)
class Choice:
    """An app as the form offers it: its catalog name, and the app and environment it stands for."""

    name: str
    base: str
    environment: str | None = None


def choices(names: Iterable[str], envs: Mapping[str, tuple[str, str]]) -> list[Choice]:
    """The form's choices for these catalog app names, in catalog order."""
    out = []
    for name in names:
        base, env = envs.get(name, (name, None))
        out.append(Choice(name, base, env))
    return out


# --- The form's metadata ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FormMeta:
    """What the form carries from the slash command to the submission: the channel it was typed in
    (permissions and the card go there) and the command's response_url (private answers)."""

    channel_id: str
    channel_name: str = ""
    reply_to: str = ""

    def encode(self) -> str:
        data = {"c": self.channel_id, "n": self.channel_name[:80], "r": self.reply_to}
        text = json.dumps(data, separators=(",", ":"))
        if len(text) > METADATA_MAX:  # an unusually long response_url: private answers then go by API
            text = json.dumps({"c": self.channel_id, "n": self.channel_name[:80]}, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, text: object) -> FormMeta:
        """The metadata of a form of ours; ValueError for anything else."""
        if not isinstance(text, str) or not text or len(text) > METADATA_MAX:
            raise ValueError("form metadata missing or too long")
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("form metadata is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("form metadata is not an object")
        channel, name, reply = data.get("c"), data.get("n", ""), data.get("r", "")
        if not isinstance(channel, str) or not _CHANNEL.fullmatch(channel):
            raise ValueError("form metadata names no channel")
        if not isinstance(name, str) or not isinstance(reply, str):
            raise ValueError("form metadata has the wrong types")
        if reply and not reply.startswith(("https://", "http://")):
            raise ValueError("form metadata has a bad response_url")
        return cls(channel, name, reply)


# --- Drawing the form -----------------------------------------------------------------------------


def _plain(text: str, limit: int = OPTION_MAX) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": False}


def _option(text: str, value: str, description: str = "") -> dict[str, Any]:
    option: dict[str, Any] = {"text": _plain(text), "value": value}
    if description:
        option["description"] = _plain(description)
    return option


@dataclass(frozen=True)
class Running:
    """What runs now for the app the form shows: its version, or why that is not known."""

    version: str | None = None
    problem: str = ""
    replicas: str = ""


def release_form(
    offered: Sequence[Choice],
    selected: Choice,
    app: App,
    meta: FormMeta,
    running: Running | None = None,
) -> dict[str, Any]:
    """The release form for `selected` among `offered` (at least one). `running` None: not read yet."""
    bases: list[str] = []
    for c in offered:
        if c.base not in bases:
            bases.append(c.base)
    blocks: list[Block] = [
        {
            "type": "input",
            "block_id": APP_BLOCK,
            "dispatch_action": True,
            "label": _plain("App", 2000),
            "element": {
                "type": "static_select",
                "action_id": APP_ACTION,
                "placeholder": _plain("Choose an app", 150),
                "options": [_option(b, b) for b in bases[:OPTIONS_MAX]],
                "initial_option": _option(selected.base, selected.base),
            },
        }
    ]
    envs = [c for c in offered if c.base == selected.base and c.environment is not None]
    if selected.environment is not None and envs:
        env_options = [_option(c.environment or "", c.name) for c in envs[:OPTIONS_MAX]]
        blocks.append(
            {
                "type": "input",
                # a block of its own per app: Slack keeps an input's value across updates while its
                # block_id stays, and another app's environments are other options
                "block_id": f"{ENV_BLOCK}:{selected.base}",
                "dispatch_action": True,
                "label": _plain("Environment", 2000),
                "element": {
                    "type": "static_select",
                    "action_id": ENV_ACTION,
                    "options": env_options,
                    "initial_option": _option(selected.environment, selected.name),
                },
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _running_line(app, running)}]})
    hint = "An image tag such as v2.0, or a digest sha256:…"
    if app.allow_image_override:
        hint += ", or a full image reference"
    if running is not None and running.version:
        hint = f"Runs {running.version} now. " + hint
    blocks.append(
        {
            "type": "input",
            "block_id": VERSION_BLOCK,
            "label": _plain("Version", 2000),
            "hint": _plain(hint, 2000),
            "element": {
                "type": "plain_text_input",
                "action_id": VERSION_ACTION,
                "placeholder": _plain("v2.0", 150),
                "max_length": VERSION_MAX,
            },
        }
    )
    strategies = [s.value for s in app.strategies]
    default = app.default_strategy.value
    blocks.append(
        {
            "type": "input",
            "block_id": f"{STRATEGY_BLOCK}:{selected.name}",
            "label": _plain("Strategy", 2000),
            "element": {
                "type": "static_select",
                "action_id": STRATEGY_ACTION,
                "options": [_option(s, s, STRATEGY_WORDS.get(s, "")) for s in strategies],
                "initial_option": _option(default, default, STRATEGY_WORDS.get(default, "")),
            },
        }
    )
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "title": _plain("Release", TITLE_MAX),
        "submit": _plain("Release", TITLE_MAX),
        "close": _plain("Cancel", TITLE_MAX),
        "private_metadata": meta.encode(),
        "blocks": blocks,
    }


STRATEGY_WORDS = {
    "rolling": "replace pods a few at a time",
    "canary": "one pod first, then Promote or Rollback",
    "bluegreen": "a second Deployment, then switch traffic",
}


def _running_line(app: App, running: Running | None) -> str:
    where = f"`{esc(app.name)}` (Deployment `{esc(app.namespace)}/{esc(app.deployment)}`)"
    if running is None:
        return f"{where}: reading what runs now…"
    if running.version is None:
        return f"{where}: what runs now is not known ({esc(running.problem or 'unknown')})"
    line = f"{where} runs `{esc(running.version)}` now"
    if running.replicas:
        line += f" · {esc(running.replicas)}"
    return line


def running_of(app: App, deployment: Mapping[str, Any]) -> Running:
    """What runs now, from the app's live Deployment."""
    image = container_image(dict(deployment), app.container)
    p = progress(dict(deployment))
    replicas = f"{p.ready}/{p.desired} ready"
    if image is None:
        return Running(None, f"no container {app.container}", replicas)
    return Running(version_of(image), "", replicas)


# --- Reading it back --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormValues:
    """What a person chose in the form (as Slack sent it; every field may be missing)."""

    base: str = ""
    environment_app: str = ""  # the chosen environment, as the catalog's app name
    version: str = ""
    strategy: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def chosen(self) -> str:
        """The catalog app name chosen: the environment's, or the app's when it has none."""
        return self.environment_app or self.base


def _selected(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    option = value.get("selected_option")
    if not isinstance(option, dict):
        return ""
    chosen = option.get("value")
    return chosen if isinstance(chosen, str) else ""


def read_form(view: Mapping[str, Any]) -> FormValues:
    """The values of a form view (`view.state.values`: block_id -> action_id -> value)."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        return FormValues()
    base = env = version = strategy = ""
    for block_id, actions in values.items():
        if not isinstance(block_id, str) or not isinstance(actions, dict):
            continue
        if block_id == APP_BLOCK:
            base = _selected(actions.get(APP_ACTION))
        elif block_id.startswith(ENV_BLOCK + ":"):
            env = _selected(actions.get(ENV_ACTION))
        elif block_id == VERSION_BLOCK:
            typed = actions.get(VERSION_ACTION)
            raw = typed.get("value") if isinstance(typed, dict) else None
            version = raw.strip() if isinstance(raw, str) else ""
        elif block_id.startswith(STRATEGY_BLOCK + ":"):
            strategy = _selected(actions.get(STRATEGY_ACTION))
    return FormValues(
        base if _APP.fullmatch(base) else "", env if _APP.fullmatch(env) else "", version, strategy
    )


def strategy_block(view: Mapping[str, Any]) -> str:
    """The strategy input's block_id in `view` (it names the app the form was drawn for)."""
    for block in view.get("blocks") or []:
        if isinstance(block, dict) and str(block.get("block_id", "")).startswith(STRATEGY_BLOCK + ":"):
            return str(block["block_id"])
    return STRATEGY_BLOCK


def field_error(message: str) -> str:
    """A message for a field error: Slack shows it as plain text, under the field."""
    return clip(plain(message).replace("`", ""), 2000)


def not_allowed_form(reason: str) -> str:
    return f":no_entry: {esc(reason)} Type `/release apps` to see what you may release here."


# --- App Home ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HomeApp:
    """One app on the Home tab, as read from the cluster (or why it could not be)."""

    app: App
    deployment: dict[str, Any] | None = None
    record: Record | None = None
    card_link: str = ""
    revisions: tuple[Revision, ...] = ()
    problem: str = ""


def home_view(user_id: str, apps: Sequence[HomeApp], hidden: int = 0) -> dict[str, Any]:
    """The Home tab for `user_id`: the apps they may see (`hidden`: how many more were left out)."""
    blocks: list[Block] = [
        {"type": "header", "text": _plain("Your apps", 150)},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": (
                        f"What {mention(user_id)} may see, as the cluster shows it now. Release from a "
                        "channel with `/release &lt;app&gt; &lt;version&gt;`, or `/release` for the form."
                    ),
                }
            ],
        },
    ]
    if not apps:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "_No app of the catalog lets you see it._"},
            }
        )
    for entry in apps[:HOME_APPS_MAX]:
        blocks.extend(_home_app(entry))
    left = hidden + max(0, len(apps) - HOME_APPS_MAX)
    if left:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"…and {left} more: type `/release apps` in a channel."}
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": (
                        "release-bot keeps one record per app: its current or last release. Earlier "
                        "releases are the Deployment's revisions (`/release history &lt;app&gt;`)."
                    ),
                }
            ],
        }
    )
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS_MAX]}


def _home_app(entry: HomeApp) -> list[Block]:
    app = entry.app
    head = f"*{esc(app.name)}* · Deployment `{esc(app.namespace)}/{esc(app.deployment)}`"
    lines = [head]
    if entry.problem:
        lines.append(f":warning: Cannot read it now: {esc(entry.problem)}")
    elif entry.deployment is not None:
        running = running_of(app, entry.deployment)
        version = f"`{esc(running.version)}`" if running.version else f"unknown ({esc(running.problem)})"
        paused = " · *paused*" if entry.deployment.get("spec", {}).get("paused") else ""
        lines.append(f"Runs {version} · {esc(running.replicas)}{paused}")
    record = entry.record
    if record is not None:
        link = f" · <{esc(entry.card_link)}|card>" if entry.card_link.startswith("https://") else ""
        state = "Releasing now" if record.active else "Last release"
        lines.append(
            f"{state}: `{esc(record.from_version)}` → `{esc(record.to_version)}` ({esc(record.strategy.value)}) "
            f"by {mention(record.requester.id)}, {esc(describe_phase(record.phase))}{link}"
        )
    else:
        lines.append("_No release by release-bot yet._")
    blocks: list[Block] = [
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines), 3000)}},
    ]
    if entry.revisions:
        shown = []
        for r in entry.revisions[:HOME_REVISIONS]:
            images = ", ".join(f"`{esc(version_of(i))}`" for i in r.images)
            who = f" by {mention(r.slack_user)}" if r.slack_user else ""
            shown.append(
                f"`{r.number}` {images}{who} · {esc(clip(r.change_cause or 'no change-cause', 120))}"
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": clip(
                            f"Last {len(shown)} revision(s), newest first: " + " | ".join(shown), 3000
                        ),
                    }
                ],
            }
        )
    return blocks
