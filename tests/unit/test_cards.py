"""The release card and the other messages: escaping, Block Kit limits, buttons per phase."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.catalog import App
from bot.releases import events
from bot.releases.health import Live, PodHealth, Progress
from bot.releases.record import (
    ACCEPTS,
    FINISHED,
    Actor,
    Entry,
    Phase,
    Record,
    Request,
    describe_phase,
    new_id,
)
from bot.slack import cards
from commands.parser import USAGE
from tests.unit.records import ALICE, T0, record

HOSTILE = ("<!channel>", "<!here>", "<!everyone>", "<https://evil", "<@U999>", "<!subteam^S1>")


def progress(**changes: Any) -> Progress:
    fields: dict[str, Any] = {
        "desired": 6,
        "updated": 1,
        "ready": 7,
        "available": 7,
        "total": 7,
        "paused": True,
        "observed": True,
        "deadline_exceeded": None,
    }
    fields.update(changes)
    return Progress(**fields)


def app(name: str = "hexo", namespace: str = "devops") -> App:
    return App.model_validate(
        {
            "name": name,
            "namespace": namespace,
            "deployment": name,
            "container": name,
            "image": "registry.sword.org/nginx",
            "service": "hexo-service",
            "strategies": ["rolling", "canary", "bluegreen"],
        }
    )


def texts(node: Any, kind: str | None = None) -> Iterator[str]:
    """Every text object's text in a block tree (of one kind when given)."""
    if isinstance(node, dict):
        is_text = node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str)
        if is_text and (kind is None or node["type"] == kind):
            yield node["text"]
        for value in node.values():
            yield from texts(value, kind)
    elif isinstance(node, list):
        for item in node:
            yield from texts(item, kind)


def blocks_of(kind: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for b in blocks if b["type"] == kind]


def buttons(rec: Record) -> list[dict[str, Any]]:
    _, blocks = cards.card(rec, Live())
    actions = blocks_of("actions", blocks)
    assert len(actions) <= 1
    return actions[0]["elements"] if actions else []


# --- esc, clip, mention, duration ------------------------------------------------------------------


def test_esc() -> None:
    assert cards.esc("a & b <c> d") == "a &amp; b &lt;c&gt; d"
    assert cards.esc("&lt;") == "&amp;lt;"  # already-escaped text is shown as typed
    assert cards.esc("<!channel>") == "&lt;!channel&gt;"
    assert cards.esc(42) == "42"
    assert cards.esc("plain `v2.0`") == "plain `v2.0`"


def test_clip() -> None:
    assert cards.clip("short", 10) == "short"
    assert cards.clip("x" * 10, 10) == "x" * 10
    clipped = cards.clip("x" * 11, 10)
    assert clipped == "x" * 9 + "…"
    assert len(clipped) == 10


def test_mention() -> None:
    assert cards.mention("U123") == "<@U123>"
    assert cards.mention("<!channel>") == "&lt;!channel&gt;"
    assert cards.mention("U1|x") == "U1|x"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0 s"),
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min 0 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (7380, "2 h 3 min"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert cards.duration(seconds) == text


# --- Escaping of everything user- or cluster-supplied ----------------------------------------------


def hostile_record(phase: Phase) -> Record:
    evil = "<!channel> <https://evil|x> <!here> <@U999> <!subteam^S1> &"
    return record(
        phase=phase,
        from_version=f"v1<https://evil|x>{evil}",
        to_version=f"<!channel>{evil}",
        to_image=f"reg/<!everyone>{evil}",
        reason=f"pod says {evil}",
        channel_name=f"<!channel>{evil}",
        requester=Actor(id="<!channel>", name=evil),
        history=(Entry(at=T0, actor=Actor(id="<!here>", name="x"), action=f"promote {evil}"),),
    )


@pytest.mark.parametrize("phase", list(Phase))
def test_card_escapes_hostile_strings(phase: Phase) -> None:
    rec = hostile_record(phase)
    evil = "<!channel> <https://evil|x>"
    live = Live(
        progress=progress(deadline_exceeded=f"deadline {evil}"),
        new_pods=PodHealth(pods=1, problems={f"Reason{evil}": 1}),
        now=T0 + timedelta(seconds=5),
    )
    _, blocks = cards.card(rec, live)
    mrkdwn = list(texts(blocks, "mrkdwn"))
    assert mrkdwn
    for text in mrkdwn:
        only_ours(text)
        for bad in HOSTILE:
            assert bad not in text, (bad, text)
    everything = "\n".join(mrkdwn)
    assert "&lt;!channel&gt;" in everything  # shown as text, not dropped
    if phase not in FINISHED:
        assert "deadline &lt;!channel&gt; &lt;https://evil|x&gt;" in everything
    if phase in (Phase.FAILED, Phase.ROLLED_BACK, Phase.ABORTED):
        assert "pod says &lt;!channel&gt;" in everything


def test_card_fallback_text_is_escaped() -> None:
    text, _ = cards.card(hostile_record(Phase.CANARY), Live())
    for bad in HOSTILE:
        assert bad not in text


def test_messages_escape_hostile_strings() -> None:
    rec = hostile_record(Phase.SUCCEEDED)
    health = PodHealth(pods=1, problems={"<!channel>": 1}).describe()
    out = [
        cards.note(rec, events.Started(max_surge="<!channel>", max_unavailable="<!here>")),
        cards.note(rec, events.CanaryStep(updated=1, old=6, health=health)),
        cards.note(rec, events.Succeeded(seconds=5)),
        cards.note(rec, events.Failed(reason="<!channel>", auto_rollback=True)),
        cards.note(rec, events.RolledBack(by="<!here>")),
        cards.note(rec, events.Acted(action="<!channel>", by="<!here>", detail="<https://evil|x>")),
        cards.usage_error("Unexpected `<!channel>`"),
        cards.refused("<!channel>"),
        cards.conflict("<!channel>"),
        cards.internal_error("<!channel>"),
        cards.not_yet("<!channel>"),
        cards.accepted(rec),
        cards.request_taken(Request.PROMOTE, "<!channel>"),
    ]
    for text in out:
        only_ours(text)
        for bad in HOSTILE:
            assert bad not in text, (bad, text)


# --- Block Kit limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", list(Phase))
def test_card_within_block_kit_limits_for_long_inputs(phase: Phase) -> None:
    name = "a" + "-b" * 30 + "c"  # 63 characters, the longest app name
    long = "v" + "x" * 4000
    rec = record(
        id=new_id(name, T0),
        app=name,
        namespace="n" * 63,
        phase=phase,
        from_version=long,
        to_version=long + "<&>" * 500,
        to_image="reg/" + long,
        reason="r&" * 5000,
        history=tuple(Entry(at=T0, actor=ALICE, action="promote" * 200) for _ in range(20)),
    )
    live = Live(
        progress=progress(deadline_exceeded="m<" * 5000),
        new_pods=PodHealth(pods=3, problems={f"R{i}" * 50: 1 for i in range(100)}),
        now=T0 + timedelta(hours=30),
    )
    text, blocks = cards.card(rec, live)
    assert text
    assert len(blocks) <= 50
    for block in blocks:
        assert block["type"] in ("header", "section", "actions", "context")
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            fields = block.get("fields", [])
            assert len(fields) <= 10
            assert all(len(f["text"]) <= 2000 for f in fields)
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
        if "block_id" in block:
            assert len(block["block_id"]) <= 255
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            assert len(element["text"]["text"]) <= 75
            assert len(element["action_id"]) <= 255
            assert len(element["value"]) <= 2000
            confirm = element["confirm"]
            assert len(confirm["title"]["text"]) <= 100
            assert len(confirm["text"]["text"]) <= 300
            assert len(confirm["confirm"]["text"]) <= 30
            assert len(confirm["deny"]["text"]) <= 30
    assert all(len(t) <= 3000 for t in texts(blocks))


# --- Buttons ---------------------------------------------------------------------------------------

EXPECTED_BUTTONS: dict[Phase, list[tuple[str, str, str]]] = {
    Phase.AWAITING_APPROVAL: [
        ("release-gate:approve", "Approve", "primary"),
        ("release-gate:deny", "Deny", "danger"),
    ],
    Phase.PENDING: [],
    Phase.ROLLING_OUT: [("release:rollback", "Rollback", "danger")],
    Phase.CANARY: [("release:promote", "Promote", "primary"), ("release:rollback", "Rollback", "danger")],
    Phase.AWAITING_SWITCH: [
        ("release:promote", "Switch traffic", "primary"),
        ("release:abort", "Abort", "danger"),
    ],
    Phase.SWITCHED: [("release:finish", "Finish", "primary"), ("release:rollback", "Rollback", "danger")],
    Phase.ROLLING_BACK: [],
    Phase.SUCCEEDED: [],
    Phase.FAILED: [("release:rollback", "Rollback", "danger")],
    Phase.ROLLED_BACK: [],
    Phase.ABORTED: [],
}


@pytest.mark.parametrize("phase", list(Phase))
def test_buttons_per_phase(phase: Phase) -> None:
    rec = record(phase=phase)
    got = buttons(rec)
    assert [(b["action_id"], b["text"]["text"], b.get("style")) for b in got] == EXPECTED_BUTTONS[phase]
    for b in got:
        assert b["type"] == "button"
        # The value carries the release and the state the person saw (the click handler checks it).
        assert cards.parse_button_value(b["value"]) == ("hexo", rec.id, phase.value, rec.step)
        confirm = b["confirm"]
        assert confirm["style"] == b["style"]
        assert confirm["deny"]["text"] == "Cancel"
        assert "`v2.0`" in confirm["text"]["text"] or "`v1.0`" in confirm["text"]["text"]
        if b["action_id"] in (cards.APPROVE_ACTION, cards.DENY_ACTION):
            continue  # approvals are counted on the record, not asked for as a request
        # Every button asks for something the record accepts in that phase.
        request = Request(b["action_id"].removeprefix(cards.ACTION_PREFIX))
        assert request in ACCEPTS[phase]


@pytest.mark.parametrize(
    "phase", [Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.PENDING, Phase.ROLLING_BACK]
)
def test_no_actions_block_without_buttons(phase: Phase) -> None:
    _, blocks = cards.card(record(phase=phase), Live())
    assert blocks_of("actions", blocks) == []


def test_pending_request_hides_the_buttons() -> None:
    for phase, request in ((Phase.CANARY, Request.PROMOTE), (Phase.FAILED, Request.ROLLBACK)):
        rec = record(phase=phase).with_request(request, ALICE, now=T0)
        _, blocks = cards.card(rec, Live())
        assert blocks_of("actions", blocks) == []


def test_button_value_round_trips_with_dashed_app_names() -> None:
    rec = record(id=new_id("payments-api-v2", T0), app="payments-api-v2", phase=Phase.CANARY, step=3)
    for b in buttons(rec):
        assert cards.parse_button_value(b["value"]) == ("payments-api-v2", rec.id, "canary", 3)
    # A value from an older card (the release id only) still names the app and the release.
    assert cards.parse_button_value(rec.id) == ("payments-api-v2", rec.id, None, None)


def test_confirm_texts() -> None:
    by_action = {b["action_id"]: b for b in buttons(record(phase=Phase.CANARY))}
    promote = by_action["release:promote"]["confirm"]
    assert promote["title"]["text"] == "Promote?"
    assert promote["text"]["text"] == "Move more traffic to `v2.0`."
    rollback = by_action["release:rollback"]["confirm"]
    assert rollback["text"]["text"] == "Put `v1.0` back and remove `v2.0`."
    assert rollback["confirm"]["text"] == "Roll back"


def test_actions_block_id_changes_with_phase_and_step() -> None:
    def block_id(rec: Record) -> str:
        _, blocks = cards.card(rec, Live())
        bid: str = blocks_of("actions", blocks)[0]["block_id"]
        return bid

    canary0 = block_id(record(phase=Phase.CANARY, step=0))
    assert canary0 == block_id(record(phase=Phase.CANARY, step=0))
    assert canary0 != block_id(record(phase=Phase.CANARY, step=1))
    assert canary0 != block_id(record(phase=Phase.ROLLING_OUT, step=0))
    assert canary0 != block_id(record(phase=Phase.CANARY, step=0, id="hexo-20240501-120000-ffff"))
    assert "hexo-20240501-120000-abcd" in canary0


# --- Card content ----------------------------------------------------------------------------------


def test_card_content_for_a_canary() -> None:
    rec = record(phase=Phase.CANARY, phase_since=T0 + timedelta(seconds=30))
    live = Live(
        progress=progress(),
        new_pods=PodHealth(pods=1, ready=1, restarts=2),
        now=T0 + timedelta(seconds=95),
    )
    text, blocks = cards.card(rec, live)
    assert text == "Release hexo v1.0 → v2.0: waiting at a canary step"
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Release hexo v1.0 → v2.0"}}
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*App*\n`hexo` in `devops`",
        "*Strategy*\ncanary",
        "*Version*\n`v1.0` → `v2.0`",
        "*Requested by*\n<@U123>",
    ]
    assert blocks[2]["text"]["text"] == ":hatching_chick: *Waiting at a canary step* · 1 min 35 s"
    live_line = blocks[3]["text"]["text"]
    assert live_line.startswith("*Canary* 1 new / 6 old pods · under watch 1 min 5 s\n")
    assert "updated 1/6 · ready 7/6 · available 7/6 · old pods 6 · paused" in live_line
    assert "*Health of v2.0* 1/1 ready, 2 restarts" in live_line
    context = blocks[-1]["elements"][0]["text"]
    assert "release `hexo-20240501-120000-abcd`" in context
    assert f"<!date^{int(T0.timestamp())}^" in context
    assert "2024-05-01 12:00:00 UTC>" in context


def test_finished_card_shows_the_outcome_and_no_live_line() -> None:
    done = T0 + timedelta(minutes=2, seconds=5)
    rec = record(phase=Phase.ROLLING_OUT).entry("promote", ALICE, now=T0).to(Phase.SUCCEEDED, now=done)
    _, blocks = cards.card(rec, Live(progress=progress(), now=done + timedelta(hours=1)))
    sections = [b["text"]["text"] for b in blocks_of("section", blocks) if "text" in b]
    assert sections == [":white_check_mark: *Succeeded* in 2 min 5 s\npromote by <@U123>"]


@pytest.mark.parametrize(
    ("phase", "start"),
    [
        (Phase.FAILED, ":x: *Failed* after 10 s: CrashLoopBackOff"),
        (
            Phase.ROLLED_BACK,
            ":leftwards_arrow_with_hook: *Rolled back* to `v1.0` after 10 s: CrashLoopBackOff",
        ),
        (Phase.ABORTED, ":no_entry_sign: *Aborted* after 10 s: CrashLoopBackOff"),
        (Phase.ROLLING_BACK, ":rewind: *Rolling back* · 10 s: CrashLoopBackOff"),
    ],
)
def test_status_line_with_reason(phase: Phase, start: str) -> None:
    rec = record(phase=Phase.ROLLING_OUT).to(phase, reason="CrashLoopBackOff", now=T0 + timedelta(seconds=10))
    _, blocks = cards.card(rec, Live())
    assert blocks[2]["text"]["text"] == start


def test_requests_are_not_listed_as_done() -> None:
    rec = record(phase=Phase.CANARY).with_request(Request.PROMOTE, ALICE, now=T0)
    _, blocks = cards.card(rec, Live())
    assert "\n" not in blocks[2]["text"]["text"]


def test_deadline_exceeded_is_shown() -> None:
    rec = record(phase=Phase.ROLLING_OUT)
    _, blocks = cards.card(rec, Live(progress=progress(paused=False, deadline_exceeded="timed out")))
    assert "*Progress deadline exceeded:* timed out" in blocks[3]["text"]["text"]
    assert "paused" not in blocks[3]["text"]["text"]


# --- Ephemeral answers -----------------------------------------------------------------------------


def deployment_json(*, paused: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"generation": 4},
        "spec": {
            "replicas": 6,
            "paused": paused,
            "template": {
                "spec": {"containers": [{"name": "hexo", "image": "registry.sword.org/nginx:v1.0"}]}
            },
        },
        "status": {
            "observedGeneration": 4,
            "replicas": 6,
            "updatedReplicas": 6,
            "readyReplicas": 6,
            "availableReplicas": 6,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                {"type": "Available", "status": "True", "reason": "<!channel>"},
            ],
        },
    }


def test_status_without_a_release() -> None:
    out = cards.status(app(), deployment_json(), None, "")
    assert out.splitlines() == [
        "*hexo* (Deployment `devops/hexo`)",
        "Images: `hexo`: `registry.sword.org/nginx:v1.0`",
        "Replicas: desired 6 · updated 6 · ready 6 · available 6",
        "Condition Progressing=True (NewReplicaSetAvailable)",
        "Condition Available=True (&lt;!channel&gt;)",
    ]


def test_status_with_current_and_last_release() -> None:
    link = "https://example.slack.com/archives/C1/p1"
    current = cards.status(app(), deployment_json(paused=True), record(phase=Phase.CANARY), link)
    assert "· *paused*" in current
    assert current.splitlines()[-1] == (
        f"Current release: `v2.0` (canary) by <@U123>, waiting at a canary step <{link}|card>"
    )
    last = cards.status(app(), deployment_json(), record(phase=Phase.SUCCEEDED), "not-a-link")
    assert last.splitlines()[-1] == "Last release: `v2.0` (canary) by <@U123>, finished"


def test_apps_list() -> None:
    out = cards.apps_list([app("hexo"), app("blog", "web")], ["hexo"])
    assert out == (
        "*Apps you can release:*\n"
        "• `hexo` in `devops`: rolling, canary, bluegreen\n"
        "• `blog` in `web`: rolling, canary, bluegreen _(view only)_"
    )
    assert cards.apps_list([], []) == "*Apps you can release:*\nnone"


# What the bot itself means as a control sequence: mentions, channel links, dates and its own links.
OURS = re.compile(
    r"<(?:@[UW][A-Z0-9]+|#[CGD][A-Z0-9]+|!date\^[0-9]+\^[^|<>]*\|[^<>]*|https://[^|<>\s]+\|[^<>]*)>"
)


def only_ours(text: str) -> None:
    """`text` as Slack parses mrkdwn: no control sequence but the bot's own, and every `&` an entity."""
    rest = OURS.sub("", text)
    assert "<" not in rest and ">" not in rest, text
    assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", rest, flags=re.S), text


def test_help_text_escapes_what_slack_would_parse() -> None:
    out = cards.help_text()
    assert out.startswith("*release-bot* ")
    only_ours(out)
    assert "`/release &lt;app&gt; &lt;version&gt; [--rolling|--canary|--bluegreen] [--env E]`" in out
    assert html.unescape(out).splitlines()[1:-1] == USAGE.splitlines()  # every line of the usage, as text
    assert "`/release` alone opens a form" in out


def test_invite_and_cannot_post_here() -> None:
    assert (
        cards.invite("C0RELEASES")
        == "invite @release-bot to <#C0RELEASES> (type `/invite @release-bot` there)"
    )
    assert cards.invite("C0RELEASES", "UBOT1").startswith("invite <@UBOT1> to <#C0RELEASES>")
    here = cards.cannot_post_here("not_in_channel", "C0RELEASES", "UBOT1")
    assert "release-bot is not in this channel: invite <@UBOT1> to <#C0RELEASES>" in here
    assert "cannot see this conversation" in cards.cannot_post_here("channel_not_found", "G0SECRET")
    assert "archived" in cards.cannot_post_here("is_archived", "C1")
    refused = cards.card_refused_reason("not_in_channel", "C0RELEASES")
    assert "invite @release-bot to <#C0RELEASES>" in refused
    for text in (here, refused, cards.cannot_post_here("<!channel>", "<!here>"), cards.invite("<!here>")):
        only_ours(text)


def test_membership_unknown_and_the_form_answers() -> None:
    text = cards.membership_unknown(
        {"S0RELEASE": "missing_scope", "S0OPS": "no answer from Slack (TimeoutError)"}
    )
    assert text == (
        "cannot check membership of S0OPS: no answer from Slack (TimeoutError); S0RELEASE: missing_scope"
    )
    hostile = {"<!channel>": "<https://evil|x>"}
    for out in (
        cards.membership_unknown(hostile),
        cards.nothing_to_release(hostile),
        cards.form_failed("<!channel>"),
        cards.nothing_to_release({}),
    ):
        only_ours(out)
        for bad in HOSTILE:
            assert bad not in out
    assert "cannot check membership" in cards.nothing_to_release({"S1": "x"})
    assert "/release &lt;app&gt; &lt;version&gt;" in cards.form_failed("expired_trigger_id")


def test_every_phase_has_an_icon_and_a_description() -> None:
    for phase in Phase:
        assert cards.PHASE_ICON[phase].startswith(":")
        text, _ = cards.card(record(phase=phase), Live())
        assert text.endswith(describe_phase(phase))


def test_a_permission_refusal_names_the_person_and_who_may_act() -> None:
    from bot.catalog import Rule

    rule = Rule(users=("U0ALICE",), usergroups=("S0SRE",), channels=("C0REL",))
    text = cards.refused_with_who("Sorry, you are not allowed to release `hexo`.", "U0MALLORY", rule)
    assert "You are <@U0MALLORY> (`U0MALLORY`)" in text
    assert "Who may: <@U0ALICE>, <!subteam^S0SRE> from <#C0REL>" in text
    nobody = cards.refused_with_who("Sorry.", "U0MALLORY", Rule())
    assert "nobody" in nobody and "<!" not in nobody
