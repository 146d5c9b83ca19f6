"""bot.slack.edge: the exact answer to each kind of malformed request, the order of the checks (the
signature before anything is decoded), the headers-only preflight, and that whatever it accepts Bolt
can read without an exception."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.logger.messages import warning_unhandled_request
from slack_bolt.request.payload_utils import is_event, to_action

from bot.slack import edge
from bot.slack.app import bolt_request

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_700_000_000.0
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
OK = 200  # stands for "accepted" in the tables

COMMAND = {
    "token": "verification-token",
    "team_id": "T0001",
    "team_domain": "example",
    "channel_id": "C0RELEASES",
    "channel_name": "releases",
    "user_id": "U012ALICE",
    "user_name": "alice",
    "command": "/release",
    "text": "hexo v2.0 --canary",
    "api_app_id": "A0001",
    "is_enterprise_install": "false",
    "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
    "trigger_id": "1.2.3",
}

BLOCK_ACTIONS: dict[str, Any] = {
    "type": "block_actions",
    "user": {"id": "U012ALICE", "username": "alice", "name": "alice", "team_id": "T0001"},
    "api_app_id": "A0001",
    "token": "verification-token",
    "container": {"type": "message", "message_ts": "1.000100", "channel_id": "C0RELEASES"},
    "trigger_id": "1.2.3",
    "team": {"id": "T0001", "domain": "example"},
    "enterprise": None,
    "is_enterprise_install": False,
    "channel": {"id": "C0RELEASES", "name": "releases"},
    "message": {"ts": "1.000100", "text": "hexo v2.0", "blocks": []},
    "state": {"values": {}},
    "response_url": "https://hooks.slack.com/actions/T0001/1/abc",
    "actions": [
        {
            "action_id": "release:promote",
            "block_id": "b1",
            "value": "hexo-1:canary:0",
            "type": "button",
            "action_ts": "1.2",
        }
    ],
}

URL_VERIFICATION = {
    "token": "t",
    "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
    "type": "url_verification",
}
EVENT_CALLBACK = {
    "type": "event_callback",
    "team_id": "T0001",
    "api_app_id": "A0001",
    "event": {"type": "app_mention", "user": "U012ALICE", "channel": "C0RELEASES", "text": "hi"},
    "authorizations": [{"team_id": "T0001", "user_id": "U0BOT", "is_bot": True}],
}


# The release form's submission and a change of its app select, as Slack sends them
# (https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload).
FORM_VIEW = {
    "id": "V0FORM",
    "team_id": "T0001",
    "type": "modal",
    "callback_id": "release:form",
    "private_metadata": '{"c":"C0RELEASES","n":"releases","r":""}',
    "hash": "1700000000.abc",
    "blocks": [],
    "state": {
        "values": {
            "form:app": {"form:app": {"type": "static_select", "selected_option": {"value": "hexo"}}},
            "form:version": {"form:version": {"type": "plain_text_input", "value": "v2.0"}},
        }
    },
}
VIEW_SUBMISSION = {
    "type": "view_submission",
    "team": {"id": "T0001", "domain": "example"},
    "user": {"id": "U012ALICE", "username": "alice", "name": "alice", "team_id": "T0001"},
    "api_app_id": "A0001",
    "token": "t",
    "trigger_id": "1.2.abc",
    "view": FORM_VIEW,
    "response_urls": [],
    "is_enterprise_install": False,
    "enterprise": None,
}
FORM_CHANGE = {
    "type": "block_actions",
    "user": {"id": "U012ALICE", "username": "alice", "name": "alice", "team_id": "T0001"},
    "api_app_id": "A0001",
    "token": "t",
    "container": {"type": "view", "view_id": "V0FORM"},
    "trigger_id": "1.2.abc",
    "team": {"id": "T0001", "domain": "example"},
    "view": FORM_VIEW,
    "actions": [
        {
            "type": "static_select",
            "action_id": "form:app",
            "block_id": "form:app",
            "selected_option": {"text": {"type": "plain_text", "text": "hexo"}, "value": "hexo"},
            "action_ts": "1.2",
        }
    ],
}
APP_HOME_OPENED = {
    "type": "event_callback",
    "team_id": "T0001",
    "api_app_id": "A0001",
    "event": {
        "type": "app_home_opened",
        "user": "U012ALICE",
        "channel": "D0ALICE",
        "tab": "home",
        "event_ts": "1700000000.000100",
        "view": {"id": "V0HOME", "type": "home", "blocks": [], "state": {"values": {}}},
    },
    "event_id": "Ev0001",
    "event_time": 1700000000,
    "authorizations": [{"team_id": "T0001", "user_id": "U0BOT", "is_bot": True}],
}


def view_submission(**changes: Any) -> bytes:
    payload = {**VIEW_SUBMISSION, **changes}
    return interaction({k: v for k, v in payload.items() if v is not DROP})


def form(fields: dict[str, str]) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def command(**changes: str | None) -> bytes:
    fields = {**COMMAND, **changes}
    return form({k: v for k, v in fields.items() if v is not None})


def interaction(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return form({"payload": text})


def actions(**changes: Any) -> bytes:
    payload = {**BLOCK_ACTIONS, **changes}
    return interaction({k: v for k, v in payload.items() if v is not DROP})


DROP = object()


def signed(
    raw: bytes,
    content_type: str | None = FORM,
    *,
    timestamp: str | None = None,
    secret: str = SECRET,
    extra: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    ts = timestamp if timestamp is not None else str(int(NOW))
    headers = [("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", edge.sign(secret, ts, raw))]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return headers + (extra or [])


def verdict(raw: bytes, headers: list[tuple[str, str]], **kw: Any) -> edge.Accepted | edge.Refusal:
    return edge.check(raw, headers, secret=SECRET, now=NOW, **kw)


def status_of(result: edge.Accepted | edge.Refusal) -> int:
    return result.status if isinstance(result, edge.Refusal) else OK


def deep(n: int) -> str:
    return "[" * n + "]" * n


# (id, raw body, content type, expected status, expected reason or accepted kind); all signed.
SIGNED_CASES: list[tuple[str, bytes, str | None, int, str]] = [
    # accepted
    ("slash command", command(), FORM, OK, edge.SLASH_COMMANDS),
    ("slash command, empty text", command(text=""), FORM, OK, edge.SLASH_COMMANDS),
    ("slash command, no text field", command(text=None), FORM, OK, edge.SLASH_COMMANDS),
    ("slash command naming payload-api", command(text="payload-api v2"), FORM, OK, edge.SLASH_COMMANDS),
    ("charset utf-8", command(), f"{FORM}; charset=utf-8", OK, edge.SLASH_COMMANDS),
    ("charset quoted, upper case", command(), f'{FORM.upper()}; Charset="UTF-8"', OK, edge.SLASH_COMMANDS),
    ("block_actions", actions(), FORM, OK, edge.INTERACTIVE),
    ("block_actions from an ephemeral", actions(channel=DROP, message=DROP), FORM, OK, edge.INTERACTIVE),
    ("view_submission of the release form", view_submission(), FORM, OK, edge.INTERACTIVE),
    ("view_submission, org-wide install", view_submission(team=None), FORM, OK, edge.INTERACTIVE),
    ("block_actions in the release form", interaction(FORM_CHANGE), FORM, OK, edge.INTERACTIVE),
    ("app_home_opened", json.dumps(APP_HOME_OPENED).encode(), JSON, OK, edge.EVENTS_API),
    ("ssl_check", form({"ssl_check": "1", "token": "t"}), FORM, OK, edge.SSL_CHECK),
    ("url_verification", json.dumps(URL_VERIFICATION).encode(), JSON, OK, edge.EVENTS_API),
    (
        "url_verification, charset",
        json.dumps(URL_VERIFICATION).encode(),
        f"{JSON}; charset=utf-8",
        OK,
        edge.EVENTS_API,
    ),
    ("event_callback", json.dumps(EVENT_CALLBACK).encode(), JSON, OK, edge.EVENTS_API),
    ("app_rate_limited", b'{"type":"app_rate_limited","minute_rate_limited":1}', JSON, OK, edge.EVENTS_API),
    # charset, UTF-8
    ("invalid UTF-8", command(text="hexo") + b"\xff\xfe", FORM, 400, "bad_utf8"),
    ("overlong UTF-8", b"command=/release&user_id=U1&channel_id=C1&text=\xc0\xaf", FORM, 400, "bad_utf8"),
    ("lone surrogate", command() + "\ud800".encode("utf-8", "surrogatepass"), FORM, 400, "bad_utf8"),
    ("unknown charset", command(), f"{FORM}; charset=koi8-r", 400, "bad_charset"),
    ("latin-1 charset", command(), f"{FORM}; charset=iso-8859-1", 400, "bad_charset"),
    (
        "JSON with another charset",
        json.dumps(URL_VERIFICATION).encode(),
        f"{JSON}; charset=utf-16",
        400,
        "bad_charset",
    ),
    # content type
    ("text/plain command", command(text="hexo v2.0"), "text/plain", 400, "bad_content_type"),
    ("no content type", command(), None, 400, "bad_content_type"),
    ("multipart", command(), "multipart/form-data; boundary=x", 400, "bad_content_type"),
    ("JSON as text/json", json.dumps(URL_VERIFICATION).encode(), "text/json", 400, "bad_content_type"),
    ("garbage content type", command(), "form", 400, "bad_content_type"),
    ("two charsets", command(), f"{FORM}; charset=utf-8; charset=utf-8", 400, "bad_content_type"),
    ("parameter without value", command(), f"{FORM}; utf-8", 400, "bad_content_type"),
    # form
    ("empty form", b"", FORM, 400, "bad_form"),
    ("field without =", command() + b"&oops", FORM, 400, "bad_form"),
    ("empty field", command() + b"&&", FORM, 400, "bad_form"),
    ("repeated field", command() + b"&user_id=U034BOB", FORM, 400, "bad_form"),
    ("percent-encoded bad UTF-8", command() + b"&extra=%FF", FORM, 400, "bad_form"),
    ("form that is JSON", b'{"command":"/release","user_id":"U1","channel_id":"C1"}', FORM, 400, "bad_form"),
    ("payload next to command fields", command() + b"&" + interaction(BLOCK_ACTIONS), FORM, 400, "bad_form"),
    # slash commands
    ("no user_id", command(user_id=None), FORM, 400, "bad_command"),
    ("empty user_id", command(user_id=""), FORM, 400, "bad_command"),
    ("no channel_id", command(channel_id=None), FORM, 400, "bad_command"),
    ("no command", command(command=None), FORM, 400, "bad_command"),
    ("command without a slash", command(command="release"), FORM, 400, "bad_command"),
    ("command with a type field", command() + b"&type=block_actions&actions=x", FORM, 400, "bad_command"),
    ("command with authorizations", command() + b"&authorizations=x", FORM, 400, "bad_command"),
    # interactivity
    ("payload=notjson", b"payload=notjson", FORM, 400, "bad_payload"),
    ("payload an array", interaction([BLOCK_ACTIONS]), FORM, 400, "bad_payload"),
    ("payload a string", interaction('"block_actions"'), FORM, 400, "bad_payload"),
    ("payload without type", interaction({"actions": []}), FORM, 400, "bad_payload"),
    ("payload with empty type", interaction({"type": ""}), FORM, 400, "bad_payload"),
    ("payload with NaN", interaction('{"type":"block_actions","x":NaN}'), FORM, 400, "bad_payload"),
    (
        "payload nested too deep",
        interaction('{"type":"x","a":' + deep(100_000) + "}"),
        FORM,
        400,
        "bad_payload",
    ),
    (
        "payload with a huge integer",
        interaction('{"type":"x","n":' + "9" * 5000 + "}"),
        FORM,
        400,
        "bad_payload",
    ),
    (
        "payload with a command",
        interaction({**BLOCK_ACTIONS, "command": "/release"}),
        FORM,
        400,
        "bad_payload",
    ),
    ("user an integer", actions(user=7), FORM, 400, "bad_payload"),
    ("team a list", actions(team=["id"]), FORM, 400, "bad_payload"),
    ("container null", actions(container=None), FORM, 400, "bad_payload"),
    ("event null", actions(event=None), FORM, 400, "bad_payload"),
    ("authorizations a string", actions(authorizations="x"), FORM, 400, "bad_payload"),
    ("actions not objects", actions(actions=["release:promote"]), FORM, 400, "bad_payload"),
    ("view a string", interaction({"type": "view_submission", "view": "V1"}), FORM, 400, "bad_payload"),
    ("view_submission without user", view_submission(user=DROP), FORM, 400, "bad_view"),
    ("view_submission, user without id", view_submission(user={"name": "a"}), FORM, 400, "bad_view"),
    (
        "view_submission without view id",
        view_submission(view={"state": {"values": {}}}),
        FORM,
        400,
        "bad_view",
    ),
    ("view_submission without state", view_submission(view={"id": "V1"}), FORM, 400, "bad_view"),
    (
        "view_submission, values not objects",
        view_submission(view={"id": "V1", "state": {"values": {"form:version": "v2"}}}),
        FORM,
        400,
        "bad_view",
    ),
    (
        "view_submission, metadata not a string",
        view_submission(view={"id": "V1", "state": {"values": {}}, "private_metadata": {"c": "C1"}}),
        FORM,
        400,
        "bad_view",
    ),
    ("block_actions without actions", actions(actions=DROP), FORM, 400, "bad_actions"),
    ("block_actions, empty actions", actions(actions=[]), FORM, 400, "bad_actions"),
    ("action without action_id", actions(actions=[{"value": "v"}]), FORM, 400, "bad_actions"),
    ("action_id not a string", actions(actions=[{"action_id": 3}]), FORM, 400, "bad_actions"),
    ("block_actions without user", actions(user=DROP), FORM, 400, "bad_actions"),
    ("user without id", actions(user={"name": "alice"}), FORM, 400, "bad_actions"),
    ("user name not a string", actions(user={"id": "U1", "username": 5}), FORM, 400, "bad_actions"),
    ("channel a string", actions(channel="C0RELEASES"), FORM, 400, "bad_actions"),
    # Events API
    ("JSON array", b'[{"type":"url_verification","challenge":"c"}]', JSON, 400, "bad_event"),
    ("JSON string", b'"url_verification"', JSON, 400, "bad_event"),
    ("JSON not JSON", b"type=url_verification", JSON, 400, "bad_event"),
    ("JSON nested too deep", deep(100_000).encode(), JSON, 400, "bad_event"),
    ("JSON with a BOM", b"\xef\xbb\xbf" + json.dumps(URL_VERIFICATION).encode(), JSON, 400, "bad_event"),
    ("JSON unknown type", b'{"type":"block_actions","actions":[]}', JSON, 400, "bad_event"),
    (
        "JSON with a command",
        json.dumps({**URL_VERIFICATION, "command": "/release"}).encode(),
        JSON,
        400,
        "bad_event",
    ),
    ("url_verification without challenge", b'{"type":"url_verification"}', JSON, 400, "bad_event"),
    ("event_callback without event", b'{"type":"event_callback"}', JSON, 400, "bad_event"),
    ("event a string", b'{"type":"event_callback","event":"app_mention"}', JSON, 400, "bad_event"),
    ("event without type", b'{"type":"event_callback","event":{"user":"U1"}}', JSON, 400, "bad_event"),
    (
        "event user a number",
        b'{"type":"event_callback","event":{"type":"m","user":1}}',
        JSON,
        400,
        "bad_event",
    ),
]

MALFORMED = [case for case in SIGNED_CASES if case[3] != OK]
ACCEPTED = [case for case in SIGNED_CASES if case[3] == OK]


@pytest.mark.parametrize(
    ("name", "raw", "content_type", "status", "what"), SIGNED_CASES, ids=[c[0] for c in SIGNED_CASES]
)
def test_signed_requests(name: str, raw: bytes, content_type: str | None, status: int, what: str) -> None:
    result = verdict(raw, signed(raw, content_type))
    assert status_of(result) == status, result
    if isinstance(result, edge.Refusal):
        assert result.reason == what
        assert result.reason in edge.REASONS
    else:
        assert result.kind == what
        assert result.text.encode() == raw
        assert result.content_type in (FORM, JSON)


@pytest.mark.parametrize(
    ("name", "raw", "content_type", "status", "what"), SIGNED_CASES, ids=[c[0] for c in SIGNED_CASES]
)
def test_the_signature_is_checked_before_anything_is_decoded(
    name: str, raw: bytes, content_type: str | None, status: int, what: str
) -> None:
    """Every body of the table, well-formed or not, unsigned or forged: 401 with the signature's reason."""
    ct = [("Content-Type", content_type)] if content_type else []
    assert verdict(raw, ct) == edge.MISSING_HEADERS
    assert verdict(raw, signed(raw, content_type, secret="not-the-secret")) == edge.BAD_SIGNATURE
    assert verdict(raw, signed(raw, content_type, timestamp="yesterday")) == edge.BAD_TIMESTAMP
    assert verdict(raw, signed(raw, content_type, timestamp=str(int(NOW) - 3600))) == edge.STALE
    assert verdict(raw + b" ", signed(raw, content_type)) == edge.BAD_SIGNATURE


def test_accepted_bodies_are_parsed_as_slack_sent_them() -> None:
    cmd = verdict(command(text="payload-api v2 & <x>"), signed(command(text="payload-api v2 & <x>")))
    assert isinstance(cmd, edge.Accepted)
    assert cmd.body["command"] == "/release"
    assert cmd.body["text"] == "payload-api v2 & <x>"
    click = verdict(actions(), signed(actions()))
    assert isinstance(click, edge.Accepted)
    assert click.body == BLOCK_ACTIONS
    raw = json.dumps(URL_VERIFICATION).encode()
    event = verdict(raw, signed(raw, JSON))
    assert isinstance(event, edge.Accepted)
    assert event.body == URL_VERIFICATION


@pytest.mark.parametrize(
    ("name", "headers", "expected"),
    [
        ("no headers", [("Content-Type", FORM)], edge.MISSING_HEADERS),
        (
            "no signature",
            [("X-Slack-Request-Timestamp", str(int(NOW))), ("Content-Type", FORM)],
            edge.MISSING_HEADERS,
        ),
        (
            "no timestamp",
            [("X-Slack-Signature", "v0=" + "0" * 64), ("Content-Type", FORM)],
            edge.MISSING_HEADERS,
        ),
        (
            "two signatures",
            signed(command(), extra=[("x-slack-signature", "v0=" + "0" * 64)]),
            edge.MISSING_HEADERS,
        ),
        (
            "two timestamps",
            signed(command(), extra=[("X-Slack-Request-Timestamp", "1")]),
            edge.MISSING_HEADERS,
        ),
        ("non-numeric timestamp", signed(command(), timestamp="now"), edge.BAD_TIMESTAMP),
        ("negative timestamp", signed(command(), timestamp="-1700000000"), edge.BAD_TIMESTAMP),
        ("fractional timestamp", signed(command(), timestamp="1700000000.5"), edge.BAD_TIMESTAMP),
        ("exponent timestamp", signed(command(), timestamp="17e8"), edge.BAD_TIMESTAMP),
        ("non-ASCII digits", signed(command(), timestamp="١٧٠٠٠٠٠٠٠٠"), edge.BAD_TIMESTAMP),
        ("padded timestamp", signed(command(), timestamp=" 1700000000"), edge.BAD_TIMESTAMP),
        ("empty timestamp", signed(command(), timestamp=""), edge.BAD_TIMESTAMP),
        ("huge timestamp", signed(command(), timestamp="9" * 40), edge.BAD_TIMESTAMP),
        ("5 minutes old", signed(command(), timestamp=str(int(NOW) - 300)), edge.STALE),
        ("301 s ahead", signed(command(), timestamp=str(int(NOW) + 301)), edge.STALE),
        ("other secret", signed(command(), secret="not-the-secret"), edge.BAD_SIGNATURE),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_header_refusals(name: str, headers: list[tuple[str, str]], expected: edge.Refusal) -> None:
    result = verdict(command(), headers)
    assert result == expected
    assert result.status == 401


def test_the_replay_window_edges() -> None:
    for offset in (-299, 0, 300):
        ts = str(int(NOW) + offset)
        assert isinstance(verdict(command(), signed(command(), timestamp=ts)), edge.Accepted), offset
    for offset in (-300, 301):
        ts = str(int(NOW) + offset)
        assert verdict(command(), signed(command(), timestamp=ts)) == edge.STALE, offset


@pytest.mark.parametrize(
    "signature",
    [
        lambda s: s.upper().replace("V0=", "v0="),  # Slack's hex is lower case, and Bolt compares exactly
        lambda s: s[:-1],
        lambda s: s + "0",
        lambda s: "v1=" + s[3:],
        lambda s: s[3:],
        lambda s: s[:-1] + "é",
        lambda s: "",
    ],
)
def test_signature_variants_are_refused(signature: Any) -> None:
    raw = command()
    headers = signed(raw)
    good = headers[1][1]
    headers[1] = ("X-Slack-Signature", signature(good))
    assert verdict(raw, headers) == edge.BAD_SIGNATURE


def test_header_names_are_case_insensitive() -> None:
    raw = command()
    headers = [(k.upper(), v) for k, v in signed(raw)]
    assert isinstance(verdict(raw, headers), edge.Accepted)


def test_a_body_over_the_cap_is_refused_before_its_signature_is_computed() -> None:
    raw = command(text="x" * 2000)
    assert verdict(raw, [], limit=len(raw) - 1) == edge.TOO_LARGE
    assert isinstance(verdict(raw, signed(raw), limit=len(raw)), edge.Accepted)


def test_the_cap_fits_the_largest_payloads_slack_sends_this_app() -> None:
    """A slash command with 40,000 four-byte characters (Slack's message limit; 12 bytes each once
    form-encoded), and a click on a message of 50 full sections of quoted text."""
    rocket = command(text="🚀" * 40_000)
    assert 450_000 < len(rocket) <= edge.MAX_BODY_BYTES
    assert isinstance(verdict(rocket, signed(rocket)), edge.Accepted)
    text = ('release "hexo" v2.0 <ok> ' * 120)[:3000]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for _ in range(50)]
    click = actions(message={"ts": "1.000100", "text": text, "blocks": blocks})
    assert 200_000 < len(click) <= edge.MAX_BODY_BYTES
    assert isinstance(verdict(click, signed(click)), edge.Accepted)


@pytest.mark.parametrize(
    ("content_length", "headers", "expected"),
    [
        (None, [], None),
        (0, [], None),
        (edge.MAX_BODY_BYTES, [], None),
        (edge.MAX_BODY_BYTES + 1, [], edge.TOO_LARGE),
        (10**12, [], edge.TOO_LARGE),
        (100, [("Content-Encoding", "gzip")], edge.ENCODED),
        (None, [("content-encoding", "deflate")], edge.ENCODED),
        (100, [("Content-Encoding", "identity")], None),
    ],
)
def test_preflight(
    content_length: int | None, headers: list[tuple[str, str]], expected: edge.Refusal | None
) -> None:
    assert edge.preflight(content_length, headers) == expected


def test_refusals_name_a_known_reason_and_a_status_the_contract_allows() -> None:
    refusals = [v for v in vars(edge).values() if isinstance(v, edge.Refusal)]
    assert {r.reason for r in refusals} == edge.REASONS
    assert {r.status for r in refusals} <= {400, 401, 413}
    assert all(r.message and "\n" not in r.message for r in refusals)


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError, match="signing secret"):
        edge.check(command(), signed(command()), secret="", now=NOW)


def test_sign_matches_slacks_documented_example() -> None:
    """The example of Slack's "Verifying requests from Slack" page."""
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
        b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
        b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
        b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    assert (
        edge.sign("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body)
        == "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    )


# --- fuzzing ---------------------------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [FORM, JSON, f"{FORM}; charset=utf-8", f"{JSON}; charset=latin-1", "text/plain", "", ";", "a/b; c"]
)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), content_type=CONTENT_TYPES)
def test_any_bytes_get_an_answer_and_unsigned_ones_401(raw: bytes, content_type: str) -> None:
    result = verdict(raw, signed(raw, content_type))
    assert status_of(result) in (OK, 400)
    assert status_of(verdict(raw, [("Content-Type", content_type)])) == 401


BOLT_KEYS = [
    "type",
    "user",
    "channel",
    "team",
    "enterprise",
    "event",
    "message",
    "previous_message",
    "item",
    "view",
    "container",
    "actions",
    "action_id",
    "authorizations",
    "response_urls",
    "id",
    "challenge",
    "is_ext_shared_channel",
    "function_data",
    "assistant_thread",
    "user_team",
]
TYPES = [
    "block_actions",
    "event_callback",
    "url_verification",
    "view_submission",
    "interactive_message",
    "app_rate_limited",
    "app_mention",
]

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", "U1", "id", "type", *TYPES])
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.dictionaries(st.sampled_from(BOLT_KEYS), inner, max_size=5)
        | st.lists(st.dictionaries(st.sampled_from(BOLT_KEYS), inner, max_size=4), max_size=2)
        | st.lists(inner, max_size=2)
    ),
    max_leaves=20,
)
random_bodies = st.dictionaries(st.sampled_from(BOLT_KEYS), json_values, max_size=8).flatmap(
    lambda d: st.sampled_from(TYPES).map(lambda t: {"type": t, **d}) | st.just(d)
)


def mutated(base: dict[str, Any], where: str | None, changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied at the top level or inside its object field `where`."""
    body: dict[str, Any] = json.loads(json.dumps(base))
    target = body.get(where) if where else body
    (target if isinstance(target, dict) else body).update(changes)
    return body


# Real payloads with a few fields replaced by odd values: most stay acceptable, so what Bolt does with
# the accepted ones is explored, not only the refusals.
mutated_bodies = st.builds(
    mutated,
    st.sampled_from([BLOCK_ACTIONS, EVENT_CALLBACK, URL_VERIFICATION]),
    st.sampled_from([None, "event", "user", "message", "container"]),
    st.dictionaries(st.sampled_from(BOLT_KEYS), json_values, max_size=3),
)
bodies = random_bodies | mutated_bodies


@settings(max_examples=500, deadline=None)
@given(body=bodies, as_json=st.booleans())
def test_whatever_is_accepted_bolt_can_read(body: dict[str, Any], as_json: bool) -> None:
    """Odd shapes are either refused with 400 or read by Bolt without an exception: its parsing and
    context extraction, the built-in middleware's reads, its listener matching and its warning for a
    request no listener takes."""
    raw = json.dumps(body).encode() if as_json else interaction(body)
    result = verdict(raw, signed(raw, JSON if as_json else FORM))
    if isinstance(result, edge.Refusal):
        assert result.status == 400
        return
    headers: dict[str, Any] = {"content-type": result.content_type}
    req = bolt_request(result.text, "", headers, body=result.body)
    assert req.body == result.body
    req.body.get("event", {}).get("bot_id")  # IgnoringSelfEvents
    is_event(req.body)
    to_action(req.body)
    warning_unhandled_request(req)
