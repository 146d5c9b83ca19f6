"""The release card and the other messages: escaping, Block Kit limits, buttons per phase."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
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
from bot.slack import answers, cards, mrkdwn, notes, wire
from commands.intents import Strategy
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
    assert mrkdwn.esc("a & b <c> d") == "a &amp; b &lt;c&gt; d"
    assert mrkdwn.esc("&lt;") == "&amp;lt;"  # already-escaped text is shown as typed
    assert mrkdwn.esc("<!channel>") == "&lt;!channel&gt;"
    assert mrkdwn.esc(42) == "42"
    assert mrkdwn.esc("plain `v2.0`") == "plain `v2.0`"


def test_clip() -> None:
    assert mrkdwn.clip("short", 10) == "short"
    assert mrkdwn.clip("x" * 10, 10) == "x" * 10
    clipped = mrkdwn.clip("x" * 11, 10)
    assert clipped == "x" * 9 + "…"
    assert len(clipped) == 10


def test_mention() -> None:
    assert mrkdwn.mention("U123") == "<@U123>"
    assert mrkdwn.mention("<!channel>") == "&lt;!channel&gt;"
    assert mrkdwn.mention("U1|x") == "U1|x"


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
    assert mrkdwn.duration(seconds) == text


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
        notes.note(rec, events.Started(max_surge="<!channel>", max_unavailable="<!here>")),
        notes.note(rec, events.CanaryStep(updated=1, old=6, health=health)),
        notes.note(rec, events.CanaryHealthy(step=0, ready=1, old=6, next=6, desired=6)),
        notes.note(rec, events.Succeeded(seconds=5)),
        notes.note(rec, events.Failed(reason="<!channel>", auto_rollback=True)),
        notes.note(rec, events.RolledBack(by="<!here>")),
        notes.note(rec, events.Acted(action="<!channel>", by="<!here>", detail="<https://evil|x>")),
        answers.usage_error("Unexpected `<!channel>`"),
        answers.refused("<!channel>"),
        answers.conflict("<!channel>"),
        answers.internal_error("<!channel>"),
        answers.not_yet("<!channel>"),
        answers.accepted(rec),
        answers.request_taken(Request.PROMOTE, "<!channel>"),
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
        assert wire.parse_button_value(b["value"]) == ("hexo", rec.id, phase.value, rec.step)
        confirm = b["confirm"]
        assert confirm["style"] == b["style"]
        assert confirm["deny"]["text"] == "Cancel"
        assert "`v2.0`" in confirm["text"]["text"] or "`v1.0`" in confirm["text"]["text"]
        if b["action_id"] in (wire.APPROVE_ACTION, wire.DENY_ACTION):
            continue  # approvals are counted on the record, not asked for as a request
        # Every button asks for something the record accepts in that phase.
        request = Request(b["action_id"].removeprefix(wire.ACTION_PREFIX))
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
        assert wire.parse_button_value(b["value"]) == ("payments-api-v2", rec.id, "canary", 3)
    # A value from an older card (the release id only) still names the app and the release.
    assert wire.parse_button_value(rec.id) == ("payments-api-v2", rec.id, None, None)


def confirm_of(rec: Record, action: str, live: Live | None = None) -> tuple[str, str, str]:
    """(title, text, confirm label) of the card's button `action`."""
    _, blocks = cards.card(rec, live or Live())
    (b,) = [e for e in blocks_of("actions", blocks)[0]["elements"] if e["action_id"] == action]
    c = b["confirm"]
    return c["title"]["text"], c["text"]["text"], c["confirm"]["text"]


STOPPED = events.CanaryStep(updated=1, old=6, health="0/1 ready", step=0, next=6, desired=6)
HEALTHY = events.CanaryHealthy(step=0, ready=1, old=6, next=6, desired=6)


def test_promote_says_how_far_it_goes() -> None:
    last = record(phase=Phase.CANARY, notes=(STOPPED, HEALTHY))
    assert confirm_of(last, "release:promote") == (
        "Promote to all pods?",
        "Run `v2.0` on all 6 pods: the rollout resumes and replaces the `v1.0` pods; the release is done "
        "when they are all Ready.",
        "Promote",
    )
    stopped = STOPPED.model_copy(update={"next": 3})
    healthy = HEALTHY.model_copy(update={"next": 3})
    first = record(phase=Phase.CANARY, notes=(stopped, healthy))
    assert confirm_of(first, "release:promote") == (
        "Promote to 3 pods?",
        "Run `v2.0` on 3 of 6 pods (the others keep `v1.0`), then stop again and wait until they are Ready.",
        "Promote",
    )
    # A record stored before the steps were noted: it cannot say how far, so it says both.
    old = record(phase=Phase.CANARY, notes=(events.CanaryStep(updated=1, old=6),))
    title, text, _ = confirm_of(old, "release:promote", Live(new_pods=PodHealth(pods=1, ready=1)))
    assert title == "Promote?"
    assert text.endswith("Move `v2.0` on to the next canary step (all pods after the last one).")
    assert "Move more traffic" not in text


def test_promote_before_the_canary_is_ready_says_so() -> None:
    starting = record(phase=Phase.CANARY, notes=(STOPPED,))
    live = Live(new_pods=PodHealth(pods=1, problems={"ContainerCreating": 1}))
    _, text, _ = confirm_of(starting, "release:promote", live)
    assert text.startswith("The canary is not Ready yet (0/1 ready, 1× ContainerCreating). Run `v2.0` on all")
    _, text, _ = confirm_of(record(phase=Phase.CANARY, notes=(STOPPED, HEALTHY)), "release:promote", live)
    assert text.startswith("The canary is no longer Ready (0/1 ready, 1× ContainerCreating).")
    ready = Live(new_pods=PodHealth(pods=1, ready=1))
    _, text, _ = confirm_of(record(phase=Phase.CANARY, notes=(STOPPED, HEALTHY)), "release:promote", ready)
    assert "Ready yet" not in text and "no longer" not in text


def test_rollback_abort_and_finish_say_what_happens() -> None:
    canary = record(phase=Phase.CANARY, notes=(STOPPED, HEALTHY))
    live = Live(new_pods=PodHealth(pods=1, ready=1))
    assert confirm_of(canary, "release:rollback", live) == (
        "Roll back?",
        "Remove the 1 canary pod of `v2.0` and put `v1.0` back on all pods; the rollout is resumed.",
        "Roll back",
    )
    rolling = record(phase=Phase.ROLLING_OUT, strategy=Strategy.ROLLING)
    assert confirm_of(rolling, "release:rollback")[1] == (
        "Stop the rollout and put `v1.0` back on all pods (like `kubectl rollout undo`); `v2.0` is removed."
    )
    failed = record(phase=Phase.FAILED, strategy=Strategy.ROLLING)
    assert "put `v1.0` back on all pods" in confirm_of(failed, "release:rollback")[1]

    waiting = bluegreen(Phase.AWAITING_SWITCH)
    assert confirm_of(waiting, "release:abort") == (
        "Abort?",
        "End this release without a switch: traffic stays on blue `hexo-v2.0` (`v2.0`); green `hexo-v3.0` "
        "(`v3.0`) is deleted.",
        "Abort",
    )
    switched = waiting.to(Phase.SWITCHED, now=T0).with_note(
        events.Switched(service="hexo-service", pods=6, seconds=0.4, grace_seconds=300, retire="scale-down")
    )
    assert confirm_of(switched, "release:rollback") == (
        "Roll back?",
        "Send all traffic back to blue `hexo-v2.0` (`v2.0`) at once; green `hexo-v3.0` (`v3.0`) is then "
        "deleted.",
        "Roll back",
    )
    assert confirm_of(switched, "release:finish") == (
        "Finish now?",
        "Retire blue `hexo-v2.0` (`v2.0`) now (scaled to 0), not at the end of the grace period: instant "
        "rollback is no longer possible.",
        "Finish",
    )
    green_failed = bluegreen(Phase.FAILED)
    assert confirm_of(green_failed, "release:rollback")[1] == (
        "Traffic stays on blue `hexo-v2.0` (`v2.0`); green `hexo-v3.0` (`v3.0`) is deleted."
    )


def bluegreen(phase: Phase, service: str = "hexo-service") -> Record:
    return record(
        phase=phase,
        strategy=Strategy.BLUEGREEN,
        deployment="hexo-v2.0",
        green="hexo-v3.0",
        from_version="v2.0",
        to_version="v3.0",
        notes=(events.GreenReady(health="6/6 ready", service=service),),
    )


def test_switch_traffic_names_the_service_and_the_colours() -> None:
    title, text, ok = confirm_of(bluegreen(Phase.AWAITING_SWITCH), "release:promote")
    assert (title, ok) == ("Switch traffic?", "Switch traffic")
    assert text == (
        "Send all traffic of Service `hexo-service` to green `hexo-v3.0` (`v3.0`); blue `hexo-v2.0` "
        "(`v2.0`) keeps running for an instant rollback."
    )
    assert "Promote" not in title + text and "Move more traffic" not in text
    # Green made ready by an earlier version of the bot, which did not note the Service.
    _, text, _ = confirm_of(bluegreen(Phase.AWAITING_SWITCH, service=""), "release:promote")
    assert text.startswith("Send all traffic of the app's Service to green `hexo-v3.0`")


def test_confirm_texts_are_escaped_and_never_cut_an_entity() -> None:
    evil = "<!channel>&" * 40
    rec = bluegreen(Phase.AWAITING_SWITCH, service=evil).model_copy(update={"to_version": evil})
    _, text, _ = confirm_of(rec, "release:promote")
    assert len(text) <= 300
    only_ours(text)
    assert "&lt;!channel&gt;&amp;" in text


@pytest.mark.parametrize(
    ("text", "limit", "clipped"),
    [
        ("short", 10, "short"),
        ("a &amp; b", 5, "a …"),  # not "a &a…"
        ("x <!date^1^{ago}|now> y", 8, "x …"),
        ("abc &lt; def", 11, "abc &lt; d…"),
    ],
)
def test_clip_mrkdwn(text: str, limit: int, clipped: str) -> None:
    assert mrkdwn.clip_mrkdwn(text, limit) == clipped


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


def ago_of(t: datetime) -> str:
    return f"<!date^{int(t.timestamp())}^{{ago}}|{t:%Y-%m-%d %H:%M:%S} UTC>"


def test_card_content_for_a_canary() -> None:
    since = T0 + timedelta(seconds=30)
    rec = record(phase=Phase.CANARY, phase_since=since, notes=(STOPPED, HEALTHY))
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
    # The start, as Slack's relative date ("started 3 minutes ago", moving by itself), not "· 1 min 35 s".
    assert blocks[2]["text"]["text"] == (
        ":hatched_chick: *Canary healthy, waiting for Promote* · started "
        "<!date^1714564800^{ago}|2024-05-01 12:00:00 UTC>"
    )
    assert blocks[3]["text"]["text"] == (
        f"*Canary* 1 new (ready) + 6 old pods · under watch since it became ready {ago_of(since)}\n"
        "*Rollout* paused at this step · 7 pods for 6 wanted (1 extra while the canary runs)\n"
        "*Health of v2.0* 1/1 ready, 2 restarts"
    )
    assert "7/6" not in str(blocks)
    context = blocks[-1]["elements"][0]["text"]
    assert "release `hexo-20240501-120000-abcd`" in context
    assert f"<!date^{int(T0.timestamp())}^" in context
    assert "2024-05-01 12:00:00 UTC>" in context


def test_a_canary_says_waiting_for_promote_only_once_it_is_healthy() -> None:
    since = T0 + timedelta(seconds=30)
    starting = record(phase=Phase.CANARY, phase_since=since, notes=(STOPPED,))
    creating = Live(
        progress=progress(ready=6, available=6), new_pods=PodHealth(pods=1, problems={"ContainerCreating": 1})
    )
    _, blocks = cards.card(starting, creating)
    assert blocks[2]["text"]["text"].startswith(
        ":hatching_chick: *Starting the canary pod* · started <!date^"
    )
    assert blocks[3]["text"]["text"].startswith(
        f"*Canary* 1 new (starting) + 6 old pods · step reached {ago_of(since)}, waiting until Ready\n"
    )
    assert "waiting for Promote" not in str(blocks)
    # Ready in the cluster, but the bot has not said so yet (it does as soon as it sees it): still starting.
    _, blocks = cards.card(starting, Live(progress=progress(), new_pods=PodHealth(pods=1, ready=1)))
    assert "*Starting the canary pod*" in blocks[2]["text"]["text"]
    several = record(phase=Phase.CANARY, notes=(STOPPED.model_copy(update={"updated": 3}),))
    assert "*Starting the canary pods*" in cards.card(several, Live())[1][2]["text"]["text"]
    # Healthy once, then a pod stops being Ready: the card says so instead of "healthy".
    healthy = record(phase=Phase.CANARY, notes=(STOPPED, HEALTHY))
    _, blocks = cards.card(healthy, creating)
    assert ":hatching_chick: *Canary no longer Ready, watching it*" in blocks[2]["text"]["text"]
    crashing = Live(
        progress=progress(), new_pods=PodHealth(pods=1, restarts=3, problems={"CrashLoopBackOff": 1})
    )
    assert (
        "*Canary* 1 new (CrashLoopBackOff) + 6 old pods"
        in cards.card(starting, crashing)[1][3]["text"]["text"]
    )
    partly = Live(progress=progress(updated=3, total=9), new_pods=PodHealth(pods=3, ready=1))
    line = cards.card(starting, partly)[1][3]["text"]["text"]
    assert "*Canary* 3 new (1 ready, 2 starting) + 6 old pods" in line
    assert "9 pods for 6 wanted (3 extra while the canary runs)" in line


def test_a_record_stored_before_canary_steps_were_noted_still_reads_right() -> None:
    legacy = record(phase=Phase.CANARY, notes=(events.CanaryStep(updated=1, old=6, health="1/1 ready"),))
    assert events.canary_step(legacy.notes, 0) == legacy.notes[0]
    assert events.canary_healthy(legacy.notes, 0) is None
    _, blocks = cards.card(legacy, Live(progress=progress(), new_pods=PodHealth(pods=1, ready=1)))
    assert "*Starting the canary pod*" in blocks[2]["text"]["text"]
    later = legacy.with_note(HEALTHY)
    assert events.canary_healthy(later.notes, 0) == HEALTHY
    assert events.canary_healthy(later.notes, 1) is None  # the next step is not healthy yet
    assert "*Canary healthy, waiting for Promote*" in cards.card(later, Live())[1][2]["text"]["text"]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (
            {"updated": 3, "ready": 5, "available": 5, "total": 6, "paused": False},
            "updated 3/6 · ready 5/6 · available 5/6 · 3 old pods left",
        ),
        (
            {"updated": 3, "ready": 7, "available": 6, "total": 7, "paused": False},
            "updated 3/6 · 7 pods for 6 wanted (1 extra during the update): 7 ready, 6 available · 4 old pods left",
        ),
        (
            {"updated": 6, "ready": 6, "available": 6, "total": 6, "paused": False},
            "updated 6/6 · ready 6/6 · available 6/6",
        ),
        (
            {"updated": 5, "ready": 6, "available": 6, "total": 6, "paused": True},
            "updated 5/6 · ready 6/6 · available 6/6 · 1 old pod left · paused",
        ),
    ],
)
def test_rolling_progress_in_words(changes: dict[str, Any], words: str) -> None:
    rec = record(phase=Phase.ROLLING_OUT, strategy=Strategy.ROLLING)
    _, blocks = cards.card(rec, Live(progress=progress(**changes)))
    assert blocks[3]["text"]["text"] == f"*Progress* {words}"


def test_no_count_is_ever_above_its_total() -> None:
    for total in range(0, 10):
        for updated in range(0, total + 1):
            for ready in range(0, total + 1):
                p = progress(updated=updated, ready=ready, available=max(0, ready - 1), total=total)
                for phase, strategy in (
                    (Phase.ROLLING_OUT, Strategy.ROLLING),
                    (Phase.CANARY, Strategy.CANARY),
                    (Phase.AWAITING_SWITCH, Strategy.BLUEGREEN),
                ):
                    rec = record(phase=phase, strategy=strategy, notes=(STOPPED,))
                    text = str(
                        cards.card(
                            rec, Live(progress=p, new_pods=PodHealth(pods=updated, ready=min(ready, updated)))
                        )[1]
                    )
                    for n, of in re.findall(r"(\d+)/(\d+)", text):
                        assert int(n) <= int(of), (text, p)


def test_running_cards_show_when_they_started_and_finished_ones_how_long_they_took() -> None:
    running = record(phase=Phase.ROLLING_OUT, strategy=Strategy.ROLLING)
    _, blocks = cards.card(running, Live(progress=progress(paused=False), now=T0 + timedelta(seconds=41)))
    assert blocks[2]["text"]["text"] == (
        ":arrows_counterclockwise: *Rolling out* · started <!date^1714564800^{ago}|2024-05-01 12:00:00 UTC>"
    )
    assert " 41 s" not in str(blocks) and " 0 s" not in str(blocks)
    done = running.to(Phase.SUCCEEDED, now=T0 + timedelta(seconds=41))
    _, blocks = cards.card(done, Live(now=T0 + timedelta(hours=2)))
    assert blocks[2]["text"]["text"] == ":white_check_mark: *Succeeded* in 41 s"
    assert "{ago}" not in str(blocks[2:-1])
    switched = bluegreen(Phase.AWAITING_SWITCH).to(Phase.SWITCHED, now=T0 + timedelta(minutes=3))
    _, blocks = cards.card(switched, Live())
    assert f"traffic on *green*, switched {ago_of(T0 + timedelta(minutes=3))}" in blocks[3]["text"]["text"]


def test_who_started_a_running_release_is_said_once() -> None:
    started = record(phase=Phase.ROLLING_OUT).entry("started", ALICE, now=T0)
    _, blocks = cards.card(started, Live())
    assert blocks[2]["text"]["text"] == (
        ":arrows_counterclockwise: *Rolling out* · started <!date^1714564800^{ago}|2024-05-01 12:00:00 UTC> "
        "by <@U123>"
    )
    promoted = started.entry("promote", Actor(id="U0BOB", name="bob"), now=T0)
    assert blocks_of("section", cards.card(promoted, Live())[1])[1]["text"]["text"].endswith(
        "by <@U123>\npromote by <@U0BOB>"
    )
    done = promoted.to(Phase.SUCCEEDED, now=T0 + timedelta(seconds=5))
    assert cards.card(done, Live())[1][2]["text"]["text"] == (
        ":white_check_mark: *Succeeded* in 5 s\nstarted by <@U123>; promote by <@U0BOB>"
    )


def test_ago() -> None:
    assert mrkdwn.ago(T0) == "<!date^1714564800^{ago}|2024-05-01 12:00:00 UTC>"
    only_ours(mrkdwn.ago(T0))


def test_canary_notes() -> None:
    rec = record(phase=Phase.CANARY)
    assert notes.note(rec, STOPPED) == (
        ":hatching_chick: Canary started: 1 new pod of `v2.0` (0/1 ready) beside 6 old. Watching until it "
        "is Ready."
    )
    assert notes.note(rec, HEALTHY) == (
        ":hatched_chick: Canary healthy: 1 new pod ready beside 6 old. Waiting for Promote or Rollback. "
        "Promote runs `v2.0` on all 6 pods."
    )
    step = events.CanaryStep(updated=3, old=4, step=1, next=6, desired=6)
    assert notes.note(rec, step).startswith(
        ":hatching_chick: Canary step reached: 3 new pods of `v2.0` beside 4 old. Watching until they are"
    )
    assert notes.note(rec, HEALTHY.model_copy(update={"next": 3})).endswith(
        "Promote runs `v2.0` on 3 of 6 pods."
    )
    legacy = events.CanaryHealthy(step=0, ready=1, old=6)
    assert notes.note(rec, legacy).endswith("Waiting for Promote or Rollback.")


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
        (
            Phase.ROLLING_BACK,
            ":rewind: *Rolling back*: CrashLoopBackOff · started <!date^1714564800^{ago}|2024-05-01 12:00:00 UTC>",
        ),
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
    out = answers.status(app(), deployment_json(), None, "")
    assert out.splitlines() == [
        "*hexo* (Deployment `devops/hexo`)",
        "Images: `hexo`: `registry.sword.org/nginx:v1.0`",
        "Replicas: desired 6 · updated 6 · ready 6 · available 6",
        "Condition Progressing=True (NewReplicaSetAvailable)",
        "Condition Available=True (&lt;!channel&gt;)",
    ]


def test_status_with_current_and_last_release() -> None:
    link = "https://example.slack.com/archives/C1/p1"
    current = answers.status(app(), deployment_json(paused=True), record(phase=Phase.CANARY), link)
    assert "· *paused*" in current
    assert current.splitlines()[-1] == (
        f"Current release: `v2.0` (canary) by <@U123>, waiting at a canary step <{link}|card>"
    )
    last = answers.status(app(), deployment_json(), record(phase=Phase.SUCCEEDED), "not-a-link")
    assert last.splitlines()[-1] == "Last release: `v2.0` (canary) by <@U123>, finished"


def test_apps_list() -> None:
    out = answers.apps_list([app("hexo"), app("blog", "web")], ["hexo"])
    assert out == (
        "*Apps you can release:*\n"
        "• `hexo` in `devops`: rolling, canary, bluegreen\n"
        "• `blog` in `web`: rolling, canary, bluegreen _(view only)_"
    )
    assert answers.apps_list([], []) == "*Apps you can release:*\nnone"


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
    out = answers.help_text()
    assert out.startswith("*release-bot* ")
    only_ours(out)
    assert "`/release &lt;app&gt; &lt;version&gt; [--rolling|--canary|--bluegreen] [--env E]`" in out
    assert html.unescape(out).splitlines()[1:-1] == USAGE.splitlines()  # every line of the usage, as text
    assert "`/release` alone opens a form" in out


def test_invite_and_cannot_post_here() -> None:
    assert (
        answers.invite("C0RELEASES")
        == "invite @release-bot to <#C0RELEASES> (type `/invite @release-bot` there)"
    )
    assert answers.invite("C0RELEASES", "UBOT1").startswith("invite <@UBOT1> to <#C0RELEASES>")
    here = answers.cannot_post_here("not_in_channel", "C0RELEASES", "UBOT1")
    assert "release-bot is not in this channel: invite <@UBOT1> to <#C0RELEASES>" in here
    assert "cannot see this conversation" in answers.cannot_post_here("channel_not_found", "G0SECRET")
    assert "archived" in answers.cannot_post_here("is_archived", "C1")
    refused = answers.card_refused_reason("not_in_channel", "C0RELEASES")
    assert "invite @release-bot to <#C0RELEASES>" in refused
    for text in (here, refused, answers.cannot_post_here("<!channel>", "<!here>"), answers.invite("<!here>")):
        only_ours(text)


def test_membership_unknown_and_the_form_answers() -> None:
    text = answers.membership_unknown(
        {"S0RELEASE": "missing_scope", "S0OPS": "no answer from Slack (TimeoutError)"}
    )
    assert text == (
        "cannot check membership of S0OPS: no answer from Slack (TimeoutError); S0RELEASE: missing_scope"
    )
    hostile = {"<!channel>": "<https://evil|x>"}
    for out in (
        answers.membership_unknown(hostile),
        answers.nothing_to_release(hostile),
        answers.form_failed("<!channel>"),
        answers.nothing_to_release({}),
    ):
        only_ours(out)
        for bad in HOSTILE:
            assert bad not in out
    assert "cannot check membership" in answers.nothing_to_release({"S1": "x"})
    assert "/release &lt;app&gt; &lt;version&gt;" in answers.form_failed("expired_trigger_id")


def test_every_phase_has_an_icon_and_a_description() -> None:
    for phase in Phase:
        assert cards.PHASE_ICON[phase].startswith(":")
        text, _ = cards.card(record(phase=phase), Live())
        assert text.endswith(describe_phase(phase))


def test_a_permission_refusal_names_the_person_and_who_may_act() -> None:
    from bot.catalog import Rule

    rule = Rule(users=("U0ALICE",), usergroups=("S0SRE",), channels=("C0REL",))
    text = answers.refused_with_who("Sorry, you are not allowed to release `hexo`.", "U0MALLORY", rule)
    assert "You are <@U0MALLORY> (`U0MALLORY`)" in text
    assert "Who may: <@U0ALICE>, <!subteam^S0SRE> from <#C0REL>" in text
    nobody = answers.refused_with_who("Sorry.", "U0MALLORY", Rule())
    assert "nobody" in nobody and "<!" not in nobody
