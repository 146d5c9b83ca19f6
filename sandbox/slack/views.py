"""Modals and the App Home tab, as Slack keeps them: views.open, views.update, views.publish, and
what a person does in a view (typing, choosing, submitting, closing).

Owns the rules (https://docs.slack.dev/surfaces/modals, .../reference/methods/views.open,
.../views.update, .../views.publish, .../reference/interaction-payloads/view-interactions-payload):

- views.open needs a fresh trigger_id (the caller checks it); the view is a `modal` with a title
  (plain_text, 24 characters), `submit` (required when it has input blocks) and `close` (24 each),
  `callback_id` (255), `private_metadata` (3000) and at most 100 blocks, validated as Block Kit;
  it becomes the person's only open modal (a new stack);
- views.update names the view by `view_id` (or `external_id`), refuses a `hash` that is not the
  current one (`hash_conflict`, so an update racing the person's own change loses) and a closed or
  unknown view (`not_found`); what the person typed or chose in an input whose block_id and action_id
  stay is kept, as Slack preserves input entry across updates;
- views.publish draws a person's Home tab (`home`: no title, 100 blocks), with an optional `hash`;
- every view carries `state.values` (block_id -> action_id -> value): the initial values of its
  inputs, then what the person entered (`enter`);
- the app's answer to a submission (`answered`): an empty ack closes the modal, `response_action`
  `errors` keeps it open showing each message under its input block (an error for a block that is
  not an input is refused, as Slack does), `update` replaces it, `push` adds one on top (at most 3),
  `clear` closes them all; no answer or an error keeps it open with Slack's "We had some trouble
  connecting" message.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack.blocks import MAX_VIEW_BLOCKS, BlockErrors, normalize_blocks, validate_blocks
from sandbox.slack.errors import ApiError
from sandbox.slack.ids import slack_id

TITLE_MAX = 24
CALLBACK_MAX = 255
METADATA_MAX = 3000
MAX_STACK = 3
TROUBLE = "We had some trouble connecting. Try again?"  # what Slack shows when the app fails
_VALUE_ELEMENTS = ("plain_text_input", "static_select", "radio_buttons", "checkboxes")


@dataclass
class View:
    """One view as Slack holds it: `data` is what the Web API returns (id, hash, state, ...)."""

    data: dict[str, Any]
    user_id: str
    open: bool = True
    errors: dict[str, str] = field(default_factory=dict)  # block_id -> message, from the app's last answer
    problem: str = ""  # Slack's own message on the modal (the app did not answer properly)

    @property
    def id(self) -> str:
        return str(self.data["id"])


def _elements(block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if block.get("type") == "input" and isinstance(block.get("element"), Mapping):
        return [block["element"]]
    if block.get("type") == "actions" and isinstance(block.get("elements"), list):
        return [e for e in block["elements"] if isinstance(e, Mapping)]
    if isinstance(block.get("accessory"), Mapping):
        return [block["accessory"]]
    return []


def initial_value(element: Mapping[str, Any]) -> dict[str, Any] | None:
    """An element's value before anyone touched it, as `state.values` shows it (None: no value)."""
    kind = element.get("type")
    if kind == "plain_text_input":
        return {"type": kind, "value": element.get("initial_value")}
    if kind in ("static_select", "radio_buttons"):
        return {"type": kind, "selected_option": copy.deepcopy(element.get("initial_option"))}
    if kind == "checkboxes":
        return {"type": kind, "selected_options": copy.deepcopy(element.get("initial_options") or [])}
    return None


def options_of(element: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every option of a select (its option groups flattened)."""
    options = [o for o in element.get("options") or [] if isinstance(o, dict)]
    for group in element.get("option_groups") or []:
        if isinstance(group, dict):
            options.extend(o for o in group.get("options") or [] if isinstance(o, dict))
    return options


class Views:
    """Every view of the workspace's app: modals (per person, a stack of up to 3) and Home tabs."""

    def __init__(
        self,
        *,
        team_id: str,
        app_id: str,
        bot_id: str,
        clock: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self.team_id, self.app_id, self.bot_id = team_id, app_id, bot_id
        self.clock = clock
        self.on_change = on_change
        self.by_id: dict[str, View] = {}
        self.stacks: dict[str, list[str]] = {}  # user id -> open modal ids, bottom first
        self.homes: dict[str, str] = {}  # user id -> Home tab view id
        self.opened: list[dict[str, Any]] = []  # every modal ever opened, as views.open returned it

    # ---- reading -------------------------------------------------------------------------------

    def get(self, view_id: str) -> View:
        view = self.by_id.get(view_id)
        if view is None:
            raise ApiError("not_found")
        return view

    def modal_of(self, user_id: str) -> View | None:
        """The modal `user_id` sees (the top of their stack), or None."""
        stack = self.stacks.get(user_id) or []
        return self.by_id[stack[-1]] if stack else None

    def home_of(self, user_id: str) -> View | None:
        view_id = self.homes.get(user_id)
        return self.by_id[view_id] if view_id else None

    # ---- checking ------------------------------------------------------------------------------

    def _parse(self, value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ApiError(
                    "invalid_arguments", response_metadata={"messages": ["[ERROR] view is not JSON"]}
                ) from None
        if not isinstance(value, dict):
            raise ApiError("invalid_arguments", response_metadata={"messages": ["[ERROR] view is required"]})
        return value

    def check(self, view: Mapping[str, Any], kind: str) -> None:
        """Slack's rules for a view of `kind` ("modal" or "home"); ApiError("invalid_arguments") with
        Slack-style messages for anything it would refuse."""
        problems: list[str] = []

        def text(obj: Any, path: str, limit: int, *, required: bool) -> None:
            if obj is None:
                if required:
                    problems.append(f"must provide an object [json-pointer:{path}]")
                return
            if not isinstance(obj, Mapping) or obj.get("type") != "plain_text":
                problems.append(f"must be a plain_text object [json-pointer:{path}]")
                return
            value = obj.get("text")
            if not isinstance(value, str) or not value:
                problems.append(f"must be more than 0 characters [json-pointer:{path}/text]")
            elif len(value) > limit:
                problems.append(f"must be less than {limit + 1} characters [json-pointer:{path}/text]")

        if view.get("type") != kind:
            problems.append(f"must be {kind} [json-pointer:/view/type]")
        blocks = view.get("blocks", [])
        if kind == "modal":
            text(view.get("title"), "/view/title", TITLE_MAX, required=True)
            has_inputs = isinstance(blocks, list) and any(
                isinstance(b, Mapping) and b.get("type") == "input" for b in blocks
            )
            text(view.get("submit"), "/view/submit", TITLE_MAX, required=has_inputs)
            text(view.get("close"), "/view/close", TITLE_MAX, required=False)
        for key, limit in (
            ("callback_id", CALLBACK_MAX),
            ("private_metadata", METADATA_MAX),
            ("external_id", 255),
        ):
            value = view.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                problems.append(f"must be a string of at most {limit} characters [json-pointer:/view/{key}]")
        try:
            validate_blocks(blocks, max_blocks=MAX_VIEW_BLOCKS, path="/view/blocks")
        except BlockErrors as e:
            problems.extend(e.errors)
        if problems:
            raise ApiError(
                "invalid_arguments", response_metadata={"messages": [f"[ERROR] {p}" for p in problems]}
            )

    # ---- the Web API ---------------------------------------------------------------------------

    def _stored(self, view: dict[str, Any], view_id: str, user_id: str, old: View | None) -> View:
        blocks = normalize_blocks(view.get("blocks", []), salt=view_id)
        state: dict[str, dict[str, Any]] = {}
        kept = old.data.get("state", {}).get("values", {}) if old is not None else {}
        for block in blocks:
            block_id = str(block.get("block_id"))
            for element in _elements(block):
                action_id = str(element.get("action_id"))
                value = initial_value(element)
                if value is None:
                    continue
                previous = kept.get(block_id, {}).get(action_id)
                if isinstance(previous, dict) and previous.get("type") == value["type"]:
                    value = copy.deepcopy(previous)  # Slack keeps what the person entered
                state.setdefault(block_id, {})[action_id] = value
        root = old.data.get("root_view_id") if old is not None else view_id
        data = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "blocks": blocks,
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": state},
            "hash": f"{int(self.clock())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "previous_view_id": old.data.get("previous_view_id") if old is not None else None,
            "root_view_id": root,
            "app_id": self.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        for key in ("title", "submit", "close"):
            if key in view:
                data[key] = copy.deepcopy(view[key])
        stored = View(data, user_id)
        self.by_id[view_id] = stored
        return stored

    def open(self, user_id: str, raw_view: Any, *, salt: str) -> dict[str, Any]:
        """views.open for `user_id` (whose trigger the caller took): a new modal stack."""
        view = self._parse(raw_view)
        self.check(view, "modal")
        for old_id in self.stacks.get(user_id, []):
            self.by_id[old_id].open = False
        view_id = slack_id("V", f"{salt}:{secrets.token_hex(4)}")
        stored = self._stored(view, view_id, user_id, None)
        self.stacks[user_id] = [view_id]
        self.opened.append(copy.deepcopy(stored.data))
        self.on_change()
        return copy.deepcopy(stored.data)

    def _find(self, params: Mapping[str, Any]) -> View:
        view_id, external = params.get("view_id"), params.get("external_id")
        if view_id:
            found = self.by_id.get(str(view_id))
        elif external:
            found = next((v for v in self.by_id.values() if v.data.get("external_id") == external), None)
        else:
            raise ApiError(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] view_id or external_id is required"]},
            )
        if found is None or not found.open:
            raise ApiError("not_found")
        return found

    def update(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """views.update: replace an open view, unless `hash` is not its current one."""
        current = self._find(params)
        view = self._parse(params.get("view"))
        kind = current.data["type"]
        self.check(view, kind)
        wanted = params.get("hash")
        if wanted and wanted != current.data["hash"]:
            raise ApiError("hash_conflict")
        stored = self._stored(view, current.id, current.user_id, current)
        self.on_change()
        return copy.deepcopy(stored.data)

    def publish(self, user_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """views.publish: `user_id`'s Home tab."""
        view = self._parse(params.get("view"))
        self.check(view, "home")
        current = self.home_of(user_id)
        wanted = params.get("hash")
        if current is not None and wanted and wanted != current.data["hash"]:
            raise ApiError("hash_conflict")
        view_id = current.id if current is not None else slack_id("V", f"home:{user_id}")
        stored = self._stored(view, view_id, user_id, current)
        self.homes[user_id] = view_id
        self.on_change()
        return copy.deepcopy(stored.data)

    # ---- what a person does --------------------------------------------------------------------

    def enter(self, view_id: str, values: Mapping[str, Any]) -> View:
        """The person typed or chose in `view_id`: `values` maps action_id to text (a text input)
        or an option's value (a select, radio buttons); KeyError for an unknown action_id or option."""
        view = self.get(view_id)
        state = view.data["state"]["values"]
        for action_id, given in values.items():
            block_id, element = self.element(view, action_id)
            kind = element.get("type")
            if kind == "plain_text_input":
                value: dict[str, Any] = {
                    "type": kind,
                    "value": str(given) if given not in (None, "") else None,
                }
            elif kind in ("static_select", "radio_buttons"):
                option = next((o for o in options_of(element) if o.get("value") == given), None)
                if option is None:
                    raise KeyError(f"no option {given!r} in {action_id}")
                value = {"type": kind, "selected_option": copy.deepcopy(option)}
            else:
                raise KeyError(f"{action_id} is a {kind}, not something to type or choose in")
            state.setdefault(block_id, {})[action_id] = value
        self.on_change()
        return view

    def element(self, view: View, action_id: str) -> tuple[str, Mapping[str, Any]]:
        """The (block_id, element) with `action_id` in `view`; KeyError when there is none."""
        for block in view.data.get("blocks", []):
            for element in _elements(block):
                if element.get("action_id") == action_id:
                    return str(block.get("block_id")), element
        raise KeyError(f"no element {action_id!r} in view {view.id}")

    def close(self, view_id: str) -> None:
        """The person closed the modal (Cancel): it and those under it are gone."""
        view = self.get(view_id)
        stack = self.stacks.get(view.user_id, [])
        for vid in stack:
            self.by_id[vid].open = False
        self.stacks[view.user_id] = []
        self.on_change()

    def answered(self, view_id: str, status: int, body: Any) -> str:
        """Apply the app's answer to a submission of `view_id` (`status` 0: no answer in time);
        returns what happened: closed, errors, updated, pushed, cleared or trouble."""
        view = self.get(view_id)
        stack = self.stacks.setdefault(view.user_id, [])
        view.errors, view.problem = {}, ""
        if status != 200:
            view.problem = TROUBLE
            self.on_change()
            return "trouble"
        action = body.get("response_action") if isinstance(body, dict) else None
        try:
            if action is None:
                self._pop(stack)
                return "closed"
            if action == "errors":
                errors = body.get("errors")
                inputs = {str(b.get("block_id")) for b in view.data["blocks"] if b.get("type") == "input"}
                if not isinstance(errors, dict) or not errors or not set(errors) <= inputs:
                    view.problem = TROUBLE  # Slack cannot show an error for a block that is not an input
                    return "trouble"
                view.errors = {str(k): str(v) for k, v in errors.items()}
                return "errors"
            if action == "clear":
                while stack:
                    self._pop(stack)
                return "cleared"
            if action in ("update", "push"):
                new = self._parse(body.get("view"))
                self.check(new, "modal")
                if action == "update":
                    self._stored(new, view.id, view.user_id, view)
                    return "updated"
                if len(stack) >= MAX_STACK:
                    view.problem = TROUBLE
                    return "trouble"
                pushed_id = slack_id("V", f"push:{view.id}:{secrets.token_hex(4)}")
                pushed = self._stored(new, pushed_id, view.user_id, None)
                pushed.data["previous_view_id"] = view.id
                pushed.data["root_view_id"] = view.data["root_view_id"]
                stack.append(pushed_id)
                return "pushed"
            view.problem = TROUBLE
            return "trouble"
        except ApiError:
            view.problem = TROUBLE
            return "trouble"
        finally:
            self.on_change()

    def _pop(self, stack: list[str]) -> None:
        if stack:
            self.by_id[stack.pop()].open = False
