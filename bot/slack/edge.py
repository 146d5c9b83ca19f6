"""What may reach Bolt over HTTP: every request to /slack/events checked, in a fixed order, before
anything that could throw parses it. Pure (no aiohttp, no Slack library), so it is tested with plain
calls.

`preflight` looks at the headers alone (413 for a declared length over the cap, before the body is
read; 400 for a compressed body); `check` takes the raw bytes as received and answers `Refusal` (400, 401 or 413
with a short plain-text reason and a fixed metric label) or `Accepted`:

1. 401: X-Slack-Request-Timestamp and X-Slack-Signature present exactly once, the timestamp a Unix
   time in digits within five minutes of now, and the signature `v0=HMAC-SHA256(secret,
   "v0:{timestamp}:{raw bytes}")`, compared in constant time. Nothing is decoded before this, so an
   unsigned request learns nothing about how its body would have been read.
2. 400: the charset (utf-8 or none), strict UTF-8, then the content type: form-encoded for slash
   commands and interactivity, JSON for the Events API.
3. 400: the shape Bolt and the listeners rely on. A form is a slash command (command, user_id and
   channel_id), an interaction (one field, `payload`, a JSON object with a `type`; block_actions with
   a user and a non-empty list of actions, each with an action_id; view_submission with a user and a
   view carrying its state values) or Slack's `ssl_check`; a JSON body is an Events API object
   (url_verification with its challenge, event_callback with its event, or app_rate_limited). The fields Bolt's context extraction reads (user, channel, team, enterprise,
   event, view, container, authorizations, ...) must have the types it expects, so building the Bolt
   request cannot fail on a signed but odd body.

`Accepted.body` is the body exactly as checked; the caller hands Bolt that, not a second parse.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

# Slack documents no maximum request size; what it sends this app is bounded by its message limits:
# - a slash command's text by the 40,000-character message limit: under 500 KB form-encoded even if
#   every character takes four UTF-8 bytes (12 once percent-encoded);
# - a click (block_actions) repeats the message its button is on: the bot's cards (clipped by
#   bot/slack/cards.py) come to a few kilobytes, and even 50 full 3,000-character sections to
#   about 250 KB once JSON- and form-encoded;
# - Events API deliveries (url_verification) are tiny.
# 1 MiB, aiohttp's own default, holds the largest of these twice over; anything larger is not Slack.
MAX_BODY_BYTES = 1 << 20

# Slack's replay window: a signature older (or newer) than five minutes is refused. Past timestamps
# get one second less here, so that Bolt's own check of the same request a moment later (which
# would log the body when it fails) never refuses what this one let through.
MAX_AGE_S = 300
_BOLT_MARGIN_S = 1

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

SLASH_COMMANDS = "slash_commands"
INTERACTIVE = "interactive"
EVENTS_API = "events_api"
SSL_CHECK = "ssl_check"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_MAX_FORM_FIELDS = 64

# Fields Bolt reads as an id holder (a string or an object with "id") and objects it descends into
# (besides the lists `authorizations` and `response_urls`): the same names at every level it recurses
# through.
_ID_FIELDS = ("user", "channel", "team", "enterprise")
_OBJECT_FIELDS = ("event", "view", "container")  # read with .get() whenever present
_OPTIONAL_OBJECT_FIELDS = ("message", "previous_message", "item", "assistant_thread", "function_data")
# Form fields Slack never sends with a slash command and Bolt would read as structured data.
_NOT_COMMAND_FIELDS = frozenset({"type", "actions", "event", "view", "authorizations", "response_urls"})
_EVENTS_TYPES = frozenset({"url_verification", "event_callback", "app_rate_limited"})


@dataclass(frozen=True)
class Refusal:
    """A request answered without reaching Bolt: `status`, a fixed `reason` (a metric label, safe to
    log) and the plain-text `message` sent back."""

    status: int
    reason: str
    message: str


@dataclass(frozen=True)
class Accepted:
    """A request Bolt may see: its `kind` (slash_commands, interactive, events_api or ssl_check), the
    decoded `text` (the same bytes the signature covers), the bare media type and the parsed body."""

    kind: str
    text: str
    content_type: str
    body: dict[str, Any]


TOO_LARGE = Refusal(413, "too_large", f"request body larger than {MAX_BODY_BYTES} bytes")
ENCODED = Refusal(400, "content_encoding", "compressed request bodies are not accepted")
INCOMPLETE = Refusal(400, "incomplete_body", "request body ended early")
MISSING_HEADERS = Refusal(401, "missing_headers", "X-Slack-Request-Timestamp and X-Slack-Signature required")
BAD_TIMESTAMP = Refusal(401, "bad_timestamp", "X-Slack-Request-Timestamp is not a Unix time")
STALE = Refusal(401, "stale_timestamp", "request timestamp is not within 5 minutes of now")
BAD_SIGNATURE = Refusal(401, "bad_signature", "invalid request signature")
BAD_CHARSET = Refusal(400, "bad_charset", "charset must be utf-8")
BAD_UTF8 = Refusal(400, "bad_utf8", "request body is not valid UTF-8")
BAD_CONTENT_TYPE = Refusal(
    400, "bad_content_type", f"Content-Type must be {FORM} (commands, interactivity) or {JSON} (events)"
)
BAD_FORM = Refusal(400, "bad_form", "malformed form body")
BAD_COMMAND = Refusal(400, "bad_command", "a slash command needs command, user_id and channel_id")
BAD_PAYLOAD = Refusal(400, "bad_payload", "payload must be a JSON object with a type")
BAD_ACTIONS = Refusal(400, "bad_actions", "block_actions needs a user and actions, each with an action_id")
BAD_VIEW = Refusal(400, "bad_view", "view_submission needs a user and a view with its state")
BAD_EVENT = Refusal(400, "bad_event", "JSON body must be an Events API object")
UNREADABLE = Refusal(400, "unreadable", "request body could not be read")

REASONS = frozenset(
    r.reason
    for r in (
        TOO_LARGE,
        ENCODED,
        INCOMPLETE,
        MISSING_HEADERS,
        BAD_TIMESTAMP,
        STALE,
        BAD_SIGNATURE,
        BAD_CHARSET,
        BAD_UTF8,
        BAD_CONTENT_TYPE,
        BAD_FORM,
        BAD_COMMAND,
        BAD_PAYLOAD,
        BAD_ACTIONS,
        BAD_VIEW,
        BAD_EVENT,
        UNREADABLE,
    )
)


def sign(secret: str, timestamp: str, raw: bytes) -> str:
    """Slack's signature of `raw` sent at `timestamp`: "v0=" and 64 lower-case hex digits."""
    base = b"v0:" + timestamp.encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def preflight(
    content_length: int | None, headers: Iterable[tuple[str, str]], *, limit: int = MAX_BODY_BYTES
) -> Refusal | None:
    """What the headers alone settle: a declared length over `limit` (413, answered before a byte of
    the body is read) or a Content-Encoding (400: Slack sends none, and the signature covers the
    bytes as sent; the caller still reads the body under the cap first, so the connection stays
    usable)."""
    if content_length is not None and content_length > limit:
        return TOO_LARGE
    for name, value in headers:
        if name.lower() == "content-encoding" and value.strip().lower() not in ("", "identity"):
            return ENCODED
    return None


def check(
    raw: bytes, headers: Iterable[tuple[str, str]], *, secret: str, now: float, limit: int = MAX_BODY_BYTES
) -> Accepted | Refusal:
    """The verdict on one request to /slack/events: `raw` as received, every header (repeats
    included), the signing secret and the current Unix time."""
    if not secret:
        raise ValueError("a signing secret is required to check Slack requests")
    if len(raw) > limit:
        return TOO_LARGE
    fields = _headers(headers)

    # 1. The signature, on the raw bytes, before anything is decoded.
    timestamps, signatures = fields.get("x-slack-request-timestamp", []), fields.get("x-slack-signature", [])
    if len(timestamps) != 1 or len(signatures) != 1:
        return MISSING_HEADERS
    timestamp, signature = timestamps[0], signatures[0]  # as Bolt will read them: no trimming
    if not _TIMESTAMP.fullmatch(timestamp):
        return BAD_TIMESTAMP
    age = now - int(timestamp)
    if age > MAX_AGE_S - _BOLT_MARGIN_S or -age > MAX_AGE_S:
        return STALE
    if not signature.isascii() or not hmac.compare_digest(sign(secret, timestamp, raw), signature):
        return BAD_SIGNATURE

    # 2. Charset, UTF-8, content type.
    content_types = fields.get("content-type", [])
    parsed = _content_type(content_types[0]) if len(content_types) == 1 else None
    if parsed is None:
        return BAD_CONTENT_TYPE
    media_type, charset = parsed
    if charset is not None and charset.lower() != "utf-8":
        return BAD_CHARSET
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return BAD_UTF8
    if media_type == FORM:
        return _form(text)
    if media_type == JSON:
        return _events(text)
    return BAD_CONTENT_TYPE


# --- steps -----------------------------------------------------------------------------------------


def _headers(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def _content_type(value: str) -> tuple[str, str | None] | None:
    """(media type in lower case, charset or None) of a Content-Type header; None when malformed."""
    media, *params = value.split(";")
    media = media.strip().lower()
    kind, slash, sub = media.partition("/")
    if not slash or not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(sub):
        return None
    charset: str | None = None
    for param in params:
        if not param.strip():
            continue
        key, eq, val = param.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not eq or not _TOKEN.fullmatch(key):
            return None
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1]
        if key == "charset":
            if charset is not None:
                return None
            charset = val
    return media, charset


def _form(text: str) -> Accepted | Refusal:
    # Bolt reads any body starting with "{" as JSON, whatever its content type says.
    if text.startswith("{"):
        return BAD_FORM
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError:  # a field without "=", bad percent-encoded UTF-8, too many fields
        return BAD_FORM
    fields = dict(pairs)
    if len(fields) != len(pairs) or not fields:
        return BAD_FORM
    if "payload" in fields:
        if len(fields) != 1:
            return BAD_FORM
        return _interaction(fields["payload"], text)
    if fields.get("ssl_check") == "1":
        return Accepted(SSL_CHECK, text, FORM, fields)
    if _NOT_COMMAND_FIELDS & fields.keys():
        return BAD_COMMAND
    if (
        not fields.get("command", "").startswith("/")
        or not fields.get("user_id")
        or not fields.get("channel_id")
    ):
        return BAD_COMMAND
    return Accepted(SLASH_COMMANDS, text, FORM, fields)


def _interaction(payload_text: str, text: str) -> Accepted | Refusal:
    payload = _json_object(payload_text)
    if payload is None or not _is_text(payload.get("type")) or "command" in payload:
        return BAD_PAYLOAD
    if not _shape_ok(payload):
        return BAD_PAYLOAD
    if payload["type"] in ("block_actions", "interactive_message") and not _actions_ok(payload):
        return BAD_ACTIONS
    if payload["type"] == "view_submission" and not _view_ok(payload):
        return BAD_VIEW
    return Accepted(INTERACTIVE, text, FORM, payload)


def _events(text: str) -> Accepted | Refusal:
    body = _json_object(text)
    kind = body.get("type") if body is not None else None
    if body is None or not isinstance(kind, str) or kind not in _EVENTS_TYPES:
        return BAD_EVENT
    if "command" in body or not _shape_ok(body):
        return BAD_EVENT
    if kind == "url_verification" and not isinstance(body.get("challenge"), str):
        return BAD_EVENT
    if kind == "event_callback" and not _is_text((body.get("event") or {}).get("type")):
        return BAD_EVENT
    return Accepted(EVENTS_API, text, JSON, body)


def _json_object(text: str) -> dict[str, Any] | None:
    """`text` parsed as strict JSON (no NaN or Infinity), when it is an object."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # malformed, an over-long integer, nested too deep
        return None
    return value if isinstance(value, dict) else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _shape_ok(body: dict[str, Any]) -> bool:
    """The fields Bolt's context extraction and middleware read have the types they expect, at every
    level they descend to (iteratively: the depth is the sender's choice)."""
    pending = [body]
    while pending:
        obj = pending.pop()
        for key in _ID_FIELDS:
            value = obj.get(key)
            if value is not None and not isinstance(value, str | dict):
                return False
        for key in _OBJECT_FIELDS:
            if key in obj:
                if not isinstance(obj[key], dict):
                    return False
                pending.append(obj[key])
        for key in _OPTIONAL_OBJECT_FIELDS:
            value = obj.get(key)
            if value is not None:
                if not isinstance(value, dict):
                    return False
                pending.append(value)
        authorizations = obj.get("authorizations")
        if authorizations is not None:
            if not isinstance(authorizations, list) or not all(isinstance(v, dict) for v in authorizations):
                return False
            pending.extend(authorizations)
        # Bolt takes the first of `response_urls` (and fails to log about a second one).
        if "response_urls" in obj:
            urls = obj["response_urls"]
            if not isinstance(urls, list) or len(urls) > 1 or not all(isinstance(v, dict) for v in urls):
                return False
        actions = obj.get("actions")
        if actions is not None and (
            not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions)
        ):
            return False
    return True


def _view_ok(payload: dict[str, Any]) -> bool:
    """What the form's submission listener reads: the user (id and names) and the view's id, state
    values (block_id -> action_id -> object) and metadata."""
    user = payload.get("user")
    if not isinstance(user, dict) or not _is_text(user.get("id")):
        return False
    if any(user.get(k) is not None and not isinstance(user[k], str) for k in ("username", "name")):
        return False
    view = payload.get("view")
    if not isinstance(view, dict) or not _is_text(view.get("id")):
        return False
    if any(
        view.get(k) is not None and not isinstance(view[k], str)
        for k in ("callback_id", "private_metadata", "hash")
    ):
        return False
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        return False
    return all(
        isinstance(actions, dict) and all(isinstance(v, dict) for v in actions.values())
        for actions in values.values()
    )


def _actions_ok(payload: dict[str, Any]) -> bool:
    """What the button listeners read: the first action's action_id, the user (id and names) and the
    channel as an object (or the container's channel_id)."""
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        return False
    if payload["type"] == "block_actions" and not all(_is_text(a.get("action_id")) for a in actions):
        return False
    user = payload.get("user")
    if not isinstance(user, dict) or not _is_text(user.get("id")):
        return False
    if any(user.get(k) is not None and not isinstance(user[k], str) for k in ("username", "name")):
        return False
    channel = payload.get("channel")
    return channel is None or isinstance(channel, dict)
