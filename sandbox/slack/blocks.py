"""Block Kit validation and normalisation, with Slack's limits and Slack's error shape.

Owns the rules a real Slack applies before it accepts `blocks` (chat.postMessage, chat.update,
chat.postEphemeral, response_url posts, views.open), so a message that Slack would reject with
`invalid_blocks` is rejected here too instead of passing silently in tests. Errors read like
Slack's: `"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"`.

Also owns what Slack adds when it stores blocks: a generated `block_id` for blocks without one, a
generated `action_id` for interactive elements without one, and `emoji: true` on plain_text objects.

Pure: no I/O, no Slack libraries.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000

_TEXT_TYPES = ("plain_text", "mrkdwn")
_INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "timepicker",
        "email_text_input",
        "number_input",
        "url_text_input",
        "plain_text_input",
        "multi_static_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "multi_external_select",
        "static_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "external_select",
        "overflow",
        "radio_buttons",
        "rich_text_input",
        "workflow_button",
    }
)
# Interactive elements an input block cannot hold (https://docs.slack.dev/reference/block-kit/blocks/input-block).
_NOT_INPUT_ELEMENTS = frozenset({"button", "overflow", "workflow_button"})
_PASSTHROUGH_BLOCKS = frozenset({"rich_text", "file", "video", "markdown", "context_actions", "table"})


class BlockErrors(Exception):
    """Raised by `validate_blocks` with Slack-style error strings in `errors`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Validator:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, message: str, path: str) -> None:
        self.errors.append(f"{message} [json-pointer:{path}]")

    def max_len(self, value: Any, limit: int, path: str, *, minimum: int = 1) -> None:
        if not isinstance(value, str):
            self.err("must be a string", path)
        elif len(value) > limit:
            self.err(f"must be less than {limit + 1} characters", path)
        elif len(value) < minimum:
            self.err(f"must be more than {minimum - 1} characters", path)

    def text(self, obj: Any, path: str, limit: int, *, plain_only: bool = False) -> None:
        if not isinstance(obj, Mapping):
            self.err("must be an object", path)
            return
        kind = obj.get("type")
        allowed = ("plain_text",) if plain_only else _TEXT_TYPES
        if kind not in allowed:
            self.err(f"must be one of: {', '.join(allowed)}", f"{path}/type")
            return
        self.max_len(obj.get("text"), limit, f"{path}/text")
        if kind == "plain_text" and "verbatim" in obj:
            self.err("verbatim is not allowed on plain_text", f"{path}/verbatim")
        if kind == "mrkdwn" and "emoji" in obj:
            self.err("emoji is not allowed on mrkdwn", f"{path}/emoji")

    def confirm(self, obj: Any, path: str) -> None:
        if not isinstance(obj, Mapping):
            self.err("must be an object", path)
            return
        self.text(obj.get("title"), f"{path}/title", 100, plain_only=True)
        self.text(obj.get("text"), f"{path}/text", 300)
        self.text(obj.get("confirm"), f"{path}/confirm", 30, plain_only=True)
        self.text(obj.get("deny"), f"{path}/deny", 30, plain_only=True)
        if "style" in obj and obj["style"] not in ("primary", "danger"):
            self.err("must be one of: primary, danger", f"{path}/style")

    def element(self, el: Any, path: str, action_ids: set[str]) -> None:
        if not isinstance(el, Mapping):
            self.err("must be an object", path)
            return
        kind = el.get("type")
        if kind not in _INTERACTIVE_ELEMENTS:
            self.err(f"unsupported type: {kind}", f"{path}/type")
            return
        if "action_id" in el:
            self.max_len(el["action_id"], 255, f"{path}/action_id")
            if isinstance(el["action_id"], str):
                if el["action_id"] in action_ids:
                    self.err(f"duplicate action_id: {el['action_id']}", f"{path}/action_id")
                action_ids.add(el["action_id"])
        if "confirm" in el:
            self.confirm(el["confirm"], f"{path}/confirm")
        if kind == "button":
            self.text(el.get("text"), f"{path}/text", 75, plain_only=True)
            if "value" in el:
                self.max_len(el["value"], 2000, f"{path}/value")
            if "url" in el:
                self.max_len(el["url"], 3000, f"{path}/url")
            if "style" in el and el["style"] not in ("primary", "danger"):
                self.err("must be one of: primary, danger", f"{path}/style")
            if "accessibility_label" in el:
                self.max_len(el["accessibility_label"], 75, f"{path}/accessibility_label")
        elif kind in ("static_select", "radio_buttons"):
            self.select(el, path)
        elif kind == "plain_text_input":
            if "placeholder" in el:
                self.text(el["placeholder"], f"{path}/placeholder", 150, plain_only=True)
            if "initial_value" in el and not isinstance(el["initial_value"], str):
                self.err("must be a string", f"{path}/initial_value")
            for key in ("min_length", "max_length"):
                value = el.get(key)
                if value is not None and (not isinstance(value, int) or not 0 <= value <= 3000):
                    self.err("must be a number from 0 to 3000", f"{path}/{key}")
            if "multiline" in el and not isinstance(el["multiline"], bool):
                self.err("must be a boolean", f"{path}/multiline")

    def option(self, opt: Any, path: str) -> None:
        if not isinstance(opt, Mapping):
            self.err("must be an object", path)
            return
        self.text(opt.get("text"), f"{path}/text", 75)
        self.max_len(opt.get("value"), 150, f"{path}/value")
        if "description" in opt:
            self.text(opt["description"], f"{path}/description", 75)

    def select(self, el: Mapping[str, Any], path: str) -> None:
        """static_select and radio_buttons: 1 to 100 options (or option groups for a select), each
        with text (75) and a value (150); the initial option must be one of them."""
        if "placeholder" in el:
            self.text(el["placeholder"], f"{path}/placeholder", 150, plain_only=True)
        options = el.get("options")
        groups = el.get("option_groups")
        every: list[Any] = []
        if options is not None and groups is not None:
            self.err("must provide either options or option_groups", path)
        if groups is not None and el.get("type") == "static_select":
            if not isinstance(groups, list) or not groups or len(groups) > 100:
                self.err("must provide 1 to 100 option groups", f"{path}/option_groups")
            else:
                for i, group in enumerate(groups):
                    gpath = f"{path}/option_groups/{i}"
                    if not isinstance(group, Mapping):
                        self.err("must be an object", gpath)
                        continue
                    self.text(group.get("label"), f"{gpath}/label", 75, plain_only=True)
                    every.extend(group.get("options") or [])
        elif not isinstance(options, list) or not options:
            self.err("must provide at least 1 item", f"{path}/options")
            return
        else:
            if len(options) > 100:
                self.err("must provide no more than 100 items", f"{path}/options")
            every = options
        for i, opt in enumerate(every):
            self.option(opt, f"{path}/options/{i}")
        if "initial_option" in el:
            initial = el["initial_option"]
            self.option(initial, f"{path}/initial_option")
            if isinstance(initial, Mapping) and not any(
                isinstance(o, Mapping)
                and o.get("value") == initial.get("value")
                and o.get("text") == initial.get("text")
                for o in every
            ):
                self.err("must match one of the options", f"{path}/initial_option")

    def image(self, el: Mapping[str, Any], path: str) -> None:
        if "image_url" in el:
            self.max_len(el["image_url"], 3000, f"{path}/image_url")
        elif "slack_file" not in el:
            self.err("must provide either image_url or slack_file", path)
        self.max_len(el.get("alt_text"), 2000, f"{path}/alt_text")

    def block(self, block: Any, path: str, block_ids: set[str]) -> None:
        if not isinstance(block, Mapping):
            self.err("must be an object", path)
            return
        if "block_id" in block:
            self.max_len(block["block_id"], 255, f"{path}/block_id")
            if isinstance(block["block_id"], str):
                if block["block_id"] in block_ids:
                    self.err(f"duplicate block_id: {block['block_id']}", f"{path}/block_id")
                block_ids.add(block["block_id"])
        kind = block.get("type")
        action_ids: set[str] = set()
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.err("must provide either text or fields", path)
            if "text" in block:
                self.text(block["text"], f"{path}/text", 3000)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not fields:
                    self.err("must provide at least 1 item", f"{path}/fields")
                else:
                    if len(fields) > 10:
                        self.err("must provide no more than 10 items", f"{path}/fields")
                    for i, field in enumerate(fields):
                        self.text(field, f"{path}/fields/{i}", 2000)
            if "accessory" in block:
                acc = block["accessory"]
                if isinstance(acc, Mapping) and acc.get("type") == "image":
                    self.image(acc, f"{path}/accessory")
                else:
                    self.element(acc, f"{path}/accessory", action_ids)
        elif kind == "header":
            self.text(block.get("text"), f"{path}/text", 150, plain_only=True)
        elif kind == "divider":
            pass
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.err("must provide at least 1 item", f"{path}/elements")
                return
            if len(elements) > 10:
                self.err("must provide no more than 10 items", f"{path}/elements")
            for i, el in enumerate(elements):
                if isinstance(el, Mapping) and el.get("type") == "image":
                    self.image(el, f"{path}/elements/{i}")
                else:
                    self.text(el, f"{path}/elements/{i}", 3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.err("must provide at least 1 item", f"{path}/elements")
                return
            if len(elements) > 25:
                self.err("must provide no more than 25 items", f"{path}/elements")
            for i, el in enumerate(elements):
                self.element(el, f"{path}/elements/{i}", action_ids)
        elif kind == "image":
            self.image(block, path)
            if "title" in block:
                self.text(block["title"], f"{path}/title", 2000, plain_only=True)
        elif kind == "input":
            self.text(block.get("label"), f"{path}/label", 2000, plain_only=True)
            element = block.get("element")
            if isinstance(element, Mapping) and element.get("type") in _NOT_INPUT_ELEMENTS:
                self.err(f"unsupported type: {element.get('type')}", f"{path}/element/type")
            else:
                self.element(element, f"{path}/element", action_ids)
            if "hint" in block:
                self.text(block["hint"], f"{path}/hint", 2000, plain_only=True)
            for key in ("dispatch_action", "optional"):
                if key in block and not isinstance(block[key], bool):
                    self.err("must be a boolean", f"{path}/{key}")
        elif kind in _PASSTHROUGH_BLOCKS:
            if kind == "markdown":
                self.max_len(block.get("text"), 12_000, f"{path}/text")
        else:
            self.err(f"unsupported type: {kind}", f"{path}/type")


def validate_blocks(blocks: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS, path: str = "/blocks") -> None:
    """Check `blocks` against Slack's Block Kit rules; raise BlockErrors listing every violation."""
    v = _Validator()
    if not isinstance(blocks, list):
        v.err("must be an array", path)
        raise BlockErrors(v.errors)
    if len(blocks) > max_blocks:
        v.err(f"must provide no more than {max_blocks} items", path)
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        v.block(block, f"{path}/{i}", block_ids)
    if v.errors:
        raise BlockErrors(v.errors)


def parse_blocks_param(value: Any) -> list[Any] | None:
    """Blocks as a client sends them: a list (JSON bodies) or a JSON string (form/query bodies).

    Returns None when the parameter is absent; raises ValueError when it is not valid JSON or not
    an array (Slack answers `invalid_blocks_format`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if value == "":
            return None
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError("blocks must be an array")
    return value


def _short_id(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:5]


def _add_emoji(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.get("type") == "plain_text" and isinstance(obj.get("text"), str):
            obj.setdefault("emoji", True)
        for value in obj.values():
            _add_emoji(value)
    elif isinstance(obj, list):
        for item in obj:
            _add_emoji(item)
    return obj


def normalize_blocks(blocks: list[Any], salt: str = "") -> list[dict[str, Any]]:
    """A deep copy of validated `blocks` as Slack stores them (generated ids, `emoji: true`)."""
    out: list[dict[str, Any]] = _add_emoji(copy.deepcopy(blocks))
    for i, block in enumerate(out):
        if "block_id" not in block:
            block["block_id"] = _short_id(f"{salt}:{i}:{json.dumps(block, sort_keys=True)}")
        elements: list[Any] = []
        if isinstance(block.get("elements"), list) and block.get("type") == "actions":
            elements = block["elements"]
        elif isinstance(block.get("accessory"), dict):
            elements = [block["accessory"]]
        elif isinstance(block.get("element"), dict):
            elements = [block["element"]]
        for j, el in enumerate(elements):
            if isinstance(el, dict) and el.get("type") in _INTERACTIVE_ELEMENTS and "action_id" not in el:
                el["action_id"] = _short_id(f"{block['block_id']}:{j}")
    return out


def find_action(blocks: list[Any], action_id: str) -> tuple[str, dict[str, Any]] | None:
    """The (block_id, element) of the interactive element with `action_id`, or None."""
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates: list[Any] = []
        if isinstance(block.get("elements"), list):
            candidates.extend(block["elements"])
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for el in candidates:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return str(block.get("block_id", "")), el
    return None
