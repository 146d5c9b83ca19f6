"""The release record's state machine: requests, phases, history, ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import Conflict
from bot.releases.record import (
    ACCEPTS,
    FINISHED,
    TERMINAL,
    Actor,
    Phase,
    Record,
    Request,
    describe_phase,
    new_id,
    setting,
)
from commands.parser import APP_RE
from tests.unit.records import ALICE, T0, record

BOB = Actor(id="U456", name="bob")

# The spec of which button or command each phase takes, written out independently of ACCEPTS.
EXPECTED: dict[Phase, set[Request]] = {
    Phase.AWAITING_APPROVAL: {Request.ABORT},
    Phase.PENDING: {Request.ABORT},
    Phase.ROLLING_OUT: {Request.ROLLBACK, Request.ABORT},
    Phase.CANARY: {Request.PROMOTE, Request.ROLLBACK, Request.ABORT},
    Phase.AWAITING_SWITCH: {Request.PROMOTE, Request.ABORT},
    Phase.SWITCHED: {Request.ROLLBACK, Request.FINISH},
    Phase.ROLLING_BACK: set(),
    Phase.SUCCEEDED: set(),
    Phase.FAILED: {Request.ROLLBACK},
    Phase.ROLLED_BACK: set(),
    Phase.ABORTED: set(),
}
PAST = {
    Request.PROMOTE: "promoted",
    Request.ROLLBACK: "rolled back",
    Request.ABORT: "aborted",
    Request.FINISH: "finished",
}


def test_accepts_matches_the_spec() -> None:
    for phase in Phase:
        assert set(ACCEPTS.get(phase, frozenset())) == EXPECTED[phase], phase


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("request_", list(Request))
def test_with_request_per_phase(phase: Phase, request_: Request) -> None:
    rec = record(phase=phase)
    if request_ in EXPECTED[phase]:
        at = T0 + timedelta(minutes=3)
        out = rec.with_request(request_, BOB, now=at)
        assert out.request is request_
        assert out.request_by == BOB
        assert out.phase is phase
        assert out.history[-1].action == f"{request_.value} requested"
        assert out.history[-1].actor == BOB
        assert out.history[-1].at == at
        assert rec.request is None  # the original is untouched
    else:
        with pytest.raises(Conflict) as info:
            rec.with_request(request_, BOB)
        assert str(info.value) == (
            f"This release is {describe_phase(phase)}: it cannot be {PAST[request_]} now."
        )


def test_second_request_names_who_asked_first() -> None:
    rec = record(phase=Phase.CANARY).with_request(Request.PROMOTE, ALICE)
    for second in (Request.PROMOTE, Request.ROLLBACK, Request.ABORT):
        with pytest.raises(Conflict) as info:
            rec.with_request(second, BOB)
        assert str(info.value) == "alice already asked to promote this release; it is being carried out."


def test_second_request_on_a_failed_release() -> None:
    rec = record(phase=Phase.FAILED).with_request(Request.ROLLBACK, BOB)
    with pytest.raises(Conflict, match=r"^bob already asked to rollback this release"):
        rec.with_request(Request.ROLLBACK, ALICE)


def test_conflict_message_for_finished_release() -> None:
    with pytest.raises(Conflict) as info:
        record(phase=Phase.SUCCEEDED).with_request(Request.ROLLBACK, ALICE)
    assert str(info.value) == "This release is finished: it cannot be rolled back now."


def test_consume_request_frees_the_record_for_the_next_one() -> None:
    rec = record(phase=Phase.CANARY).with_request(Request.PROMOTE, ALICE)
    consumed = rec.consume_request()
    assert consumed.request is None
    assert consumed.request_by is None
    assert consumed.history == rec.history  # the request stays in the audit trail
    again = consumed.with_request(Request.ROLLBACK, BOB)
    assert (again.request, again.request_by) == (Request.ROLLBACK, BOB)


@pytest.mark.parametrize("phase", list(Phase))
def test_to_sets_finished_at_only_for_finished_phases(phase: Phase) -> None:
    at = T0 + timedelta(seconds=42)
    out = record(phase=Phase.ROLLING_OUT).to(phase, now=at)
    assert out.phase is phase
    assert out.phase_since == at
    assert out.finished_at == (at if phase in FINISHED else None)
    assert out.finished is (phase in FINISHED)


def test_finished_phases() -> None:
    assert {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED} == TERMINAL
    assert TERMINAL | {Phase.FAILED} == FINISHED


def test_to_keeps_or_replaces_the_reason() -> None:
    rec = record(phase=Phase.ROLLING_OUT).to(Phase.FAILED, reason="ImagePullBackOff", now=T0)
    assert rec.reason == "ImagePullBackOff"
    assert rec.to(Phase.ROLLING_BACK, now=T0).reason == "ImagePullBackOff"
    assert rec.to(Phase.ROLLED_BACK, reason="", now=T0).reason == ""


def test_to_defaults_to_the_current_time() -> None:
    before = datetime.now(UTC)
    out = record().to(Phase.SUCCEEDED)
    after = datetime.now(UTC)
    assert out.finished_at is not None
    assert before <= out.phase_since == out.finished_at <= after


def test_leaving_a_finished_phase_clears_finished_at() -> None:
    failed = record(phase=Phase.ROLLING_OUT).to(Phase.FAILED, now=T0 + timedelta(minutes=1))
    rolling_back = failed.to(Phase.ROLLING_BACK, now=T0 + timedelta(minutes=5))
    assert rolling_back.finished_at is None


def test_active() -> None:
    assert record(phase=Phase.PENDING).active
    assert record(phase=Phase.CANARY).active
    assert record(phase=Phase.ROLLING_BACK).active
    for phase in FINISHED:
        assert not record(phase=phase).active
    failed_with_request = record(phase=Phase.FAILED).with_request(Request.ROLLBACK, ALICE)
    assert failed_with_request.finished
    assert failed_with_request.active
    assert not failed_with_request.consume_request().active


def test_entry_appends() -> None:
    at1, at2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    rec = record().entry("release", ALICE, "v2.0", now=at1).entry("auto-rollback", None, "crash", now=at2)
    assert [(e.action, e.actor, e.detail, e.at) for e in rec.history] == [
        ("release", ALICE, "v2.0", at1),
        ("auto-rollback", None, "crash", at2),
    ]
    assert record().history == ()


def test_setting_binds_values_when_made() -> None:
    step = 2
    change = setting(step=step, green="hexo-v2-0")
    step = 5
    rec = record()
    out = change(rec)
    assert (out.step, out.green) == (2, "hexo-v2-0")
    assert (rec.step, rec.green) == (0, None)
    assert step == 5


def test_record_is_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        record().phase = Phase.SUCCEEDED


def test_record_round_trips_through_json() -> None:
    rec = record(phase=Phase.CANARY).with_request(Request.PROMOTE, BOB, now=T0).to(Phase.CANARY, now=T0)
    assert Record.model_validate_json(rec.model_dump_json()) == rec


def test_describe_phase_covers_every_phase() -> None:
    words = {describe_phase(p) for p in Phase}
    assert len(words) == len(Phase)
    assert describe_phase(Phase.CANARY) == "waiting at a canary step"


def test_new_id_format() -> None:
    now = datetime(2024, 5, 1, 9, 8, 7, tzinfo=UTC)
    rid = new_id("hexo", now)
    assert re.fullmatch(r"hexo-20240501-090807-[0-9a-f]{4}", rid)
    assert len({new_id("hexo", now) for _ in range(30)}) > 1


@settings(max_examples=300, deadline=None)
@given(
    app=st.from_regex(APP_RE, fullmatch=True),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
    ),
)
def test_new_id_gives_the_app_back(app: str, now: datetime) -> None:
    rid = new_id(app, now)
    assert rid.rsplit("-", 3)[0] == app
    assert rid.startswith(f"{app}-")


def test_new_id_with_dashed_app_name() -> None:
    rid = new_id("payments-api-v2", T0)
    assert rid.rsplit("-", 3)[0] == "payments-api-v2"
