"""Freeze windows: fixed and recurring shapes, wall-clock durations across clock changes, the gap and
the repeated hour, overlapping occurrences, picking among windows, and readable validation errors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.freeze import Active, Window, active, format_duration, parse_duration, upcoming

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    """A wall-clock time in `zone`, as the UTC instant the bot would be asked about."""
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def window(**fields: Any) -> Window:
    return Window.model_validate({"name": "freeze", **fields})


def local(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


# --- fixed windows ------------------------------------------------------------------------------


def test_fixed_window_before_inside_after_with_the_end_exclusive() -> None:
    w = window(start="2026-12-20T18:00:00", end="2027-01-04T08:00:00", timezone="Europe/Paris")
    assert w.active_at(at(PARIS, 2026, 12, 20, 17, 59)) is None
    assert w.active_at(at(PARIS, 2026, 12, 20, 18, 0)) == Active(
        "freeze", utc(2026, 12, 20, 17, 0), utc(2027, 1, 4, 7, 0)
    )
    assert w.active_at(at(PARIS, 2027, 1, 4, 7, 59)) is not None
    assert w.active_at(at(PARIS, 2027, 1, 4, 8, 0)) is None
    assert w.active_at(at(PARIS, 2027, 2, 1, 0, 0)) is None


def test_naive_times_are_local_to_the_window_and_offsets_are_honoured() -> None:
    naive = window(start="2026-07-01T09:00:00", end="2026-07-01T17:00:00", timezone="America/New_York")
    offset = window(
        start="2026-07-01T09:00:00+02:00", end="2026-07-01T17:00:00Z", timezone="America/New_York"
    )
    found = naive.active_at(utc(2026, 7, 1, 13, 0))
    assert found is not None
    assert (found.started, found.ends) == (utc(2026, 7, 1, 13, 0), utc(2026, 7, 1, 21, 0))
    assert naive.active_at(utc(2026, 7, 1, 12, 59)) is None
    found = offset.active_at(utc(2026, 7, 1, 7, 0))
    assert found is not None
    assert (found.started, found.ends) == (utc(2026, 7, 1, 7, 0), utc(2026, 7, 1, 17, 0))
    assert found.started.tzinfo is UTC and found.ends.tzinfo is UTC


def test_a_date_without_time_is_local_midnight() -> None:
    w = window(start=date(2026, 12, 24), end="2026-12-27", timezone="Europe/Paris")
    assert w.active_at(utc(2026, 12, 23, 22, 59)) is None
    found = w.active_at(utc(2026, 12, 23, 23, 0))
    assert found is not None
    assert found.ends == utc(2026, 12, 26, 23, 0)


def test_a_fixed_window_begins_once() -> None:
    w = window(start="2026-12-20T18:00:00Z", end="2027-01-04T08:00:00Z")
    assert w.next_start(utc(2026, 12, 1)) == utc(2026, 12, 20, 18, 0)
    assert w.next_start(utc(2026, 12, 20, 18, 0)) is None  # strictly after
    assert w.next_start(utc(2027, 3, 1)) is None


def test_a_naive_moment_is_refused() -> None:
    w = window(start="2026-12-20T18:00:00Z", end="2027-01-04T08:00:00Z")
    with pytest.raises(ValueError, match="no time zone"):
        w.active_at(datetime(2026, 12, 21, 12, 0))
    with pytest.raises(ValueError, match="no time zone"):
        w.next_start(datetime(2026, 12, 21, 12, 0))


# --- recurring windows across clock changes -----------------------------------------------------

WEEKEND = window(name="weekend", cron="0 18 * * FRI", duration="62h", timezone="Europe/Paris")


@pytest.mark.parametrize(
    ("friday", "elapsed_hours"),
    [
        pytest.param(date(2026, 5, 15), 62, id="ordinary weekend"),
        pytest.param(date(2026, 3, 27), 61, id="spring forward on Sunday 2026-03-29"),
        pytest.param(date(2026, 10, 23), 63, id="fall back on Sunday 2026-10-25"),
    ],
)
def test_the_weekend_freeze_ends_monday_0800_local_every_weekend(friday: date, elapsed_hours: int) -> None:
    fri = (friday.year, friday.month, friday.day)
    sat = (friday.year, friday.month, friday.day + 1)
    mon = (friday.year, friday.month, friday.day + 3)
    assert WEEKEND.active_at(at(PARIS, *fri, 17, 59)) is None
    found = WEEKEND.active_at(at(PARIS, *sat, 12, 0))
    assert found is not None
    assert found.name == "weekend"
    assert local(found.started, PARIS) == datetime(*fri, 18, 0)
    assert local(found.ends, PARIS) == datetime(*mon, 8, 0)
    assert found.ends - found.started == timedelta(hours=elapsed_hours)
    assert WEEKEND.active_at(at(PARIS, *mon, 7, 59)) == found
    assert WEEKEND.active_at(at(PARIS, *mon, 8, 0)) is None
    next_friday = friday + timedelta(weeks=1)
    assert WEEKEND.next_start(at(PARIS, *mon, 8, 0)) == at(
        PARIS, next_friday.year, next_friday.month, next_friday.day, 18, 0
    )


@pytest.mark.parametrize(
    ("evening", "morning", "elapsed_hours"),
    [
        pytest.param((2026, 3, 7), (2026, 3, 8), 9, id="spring forward 2026-03-08"),
        pytest.param((2026, 10, 31), (2026, 11, 1), 11, id="fall back 2026-11-01"),
        pytest.param((2026, 6, 10), (2026, 6, 11), 10, id="ordinary night"),
    ],
)
def test_a_nightly_freeze_ends_0800_local_across_the_change(
    evening: tuple[int, int, int], morning: tuple[int, int, int], elapsed_hours: int
) -> None:
    nightly = window(cron="0 22 * * *", duration="10h", timezone="America/New_York")
    found = nightly.active_at(at(NEW_YORK, *morning, 3, 30))
    assert found is not None
    assert local(found.started, NEW_YORK) == datetime(*evening, 22, 0)
    assert local(found.ends, NEW_YORK) == datetime(*morning, 8, 0)
    assert found.ends - found.started == timedelta(hours=elapsed_hours)
    assert nightly.active_at(at(NEW_YORK, *morning, 7, 59)) == found
    assert nightly.active_at(at(NEW_YORK, *morning, 8, 0)) is None
    assert nightly.next_start(at(NEW_YORK, *morning, 8, 0)) == at(NEW_YORK, *morning, 22, 0)


def test_a_fire_time_in_the_spring_forward_gap_moves_forward_by_the_gap() -> None:
    # 02:30 does not exist in Paris on 2026-03-29 (02:00 CET becomes 03:00 CEST): it begins at 03:30.
    w = window(cron="30 2 * * *", duration="1h", timezone="Europe/Paris")
    assert w.next_start(utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 30)
    assert w.next_start(utc(2026, 3, 29, 1, 10)) == utc(2026, 3, 29, 1, 30)  # from 03:10 CEST
    assert w.active_at(utc(2026, 3, 29, 1, 29)) is None  # 03:29 CEST
    found = w.active_at(utc(2026, 3, 29, 1, 45))
    assert found is not None
    assert local(found.started, PARIS) == datetime(2026, 3, 29, 3, 30)
    assert local(found.ends, PARIS) == datetime(2026, 3, 29, 4, 30)
    # The next day is ordinary again.
    assert w.next_start(found.started) == at(PARIS, 2026, 3, 30, 2, 30)


def test_a_fire_time_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    # 02:30 happens twice in Paris on 2026-10-25: 02:30 CEST (00:30Z), then 02:30 CET (01:30Z).
    w = window(cron="30 2 * * *", duration="1h", timezone="Europe/Paris")
    assert w.next_start(utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert w.next_start(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)  # not 01:30Z that night
    found = w.active_at(utc(2026, 10, 25, 0, 30))
    assert found is not None
    assert found.started == utc(2026, 10, 25, 0, 30)
    assert local(found.ends, PARIS) == datetime(2026, 10, 25, 3, 30)  # 03:30 CET: two hours later
    assert found.ends == utc(2026, 10, 25, 2, 30)


def test_an_occurrence_begun_in_the_first_pass_of_the_repeated_hour_covers_the_second() -> None:
    # At 02:30 CET (the second 02:30) the wall clock reads earlier than the fire time 02:45, which
    # already happened as 02:45 CEST.
    w = window(cron="45 2 * * *", duration="1h", timezone="Europe/Paris")
    found = w.active_at(at(PARIS, 2026, 10, 25, 2, 30, fold=1))
    assert found == Active("freeze", utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 2, 45))


def test_overlapping_occurrences_report_the_one_ending_last() -> None:
    w = window(cron="0 20 * * *", duration="36h")
    found = w.active_at(utc(2026, 6, 3, 7, 0))  # 2 June 20:00 (till 4 June 08:00) and 1 June 20:00
    assert found == Active("freeze", utc(2026, 6, 2, 20, 0), utc(2026, 6, 4, 8, 0))
    found = w.active_at(utc(2026, 6, 2, 19, 0))  # only 1 June 20:00 has begun and still runs
    assert found == Active("freeze", utc(2026, 6, 1, 20, 0), utc(2026, 6, 3, 8, 0))


def test_a_gap_time_moved_forward_can_end_after_a_later_fire_time() -> None:
    # Lord Howe Island springs forward by half an hour, 02:00 to 02:30, on 2026-10-04. The 02:20
    # occurrence begins at 02:50 and ends 03:50; the 02:40 one begins earlier, at 02:40, and ends 03:40.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    w = window(cron="20,40 2 * * *", duration="1h", timezone="Australia/Lord_Howe")
    found = w.active_at(at(lord_howe, 2026, 10, 4, 3, 0))
    assert found is not None
    assert local(found.started, lord_howe) == datetime(2026, 10, 4, 2, 50)
    assert local(found.ends, lord_howe) == datetime(2026, 10, 4, 3, 50)
    assert w.next_start(at(lord_howe, 2026, 10, 4, 1, 0)) == at(lord_howe, 2026, 10, 4, 2, 40)


def test_a_recurring_window_is_inactive_between_occurrences() -> None:
    w = window(cron="0 9 * * MON-FRI", duration="30m", timezone="Europe/Paris")
    assert w.active_at(at(PARIS, 2026, 6, 10, 9, 29)) is not None
    assert w.active_at(at(PARIS, 2026, 6, 10, 9, 30)) is None
    assert w.active_at(at(PARIS, 2026, 6, 13, 9, 10)) is None  # Saturday
    assert w.next_start(at(PARIS, 2026, 6, 12, 9, 0)) == at(PARIS, 2026, 6, 15, 9, 0)


# --- several windows ----------------------------------------------------------------------------


def test_active_picks_the_window_ending_last() -> None:
    short = window(name="short", start="2026-12-20T00:00:00Z", end="2026-12-21T00:00:00Z")
    long = window(name="long", start="2026-12-21T00:00:00Z", end="2026-12-31T00:00:00Z")
    weekly = window(name="weekly", cron="0 18 * * FRI", duration="62h")
    assert active([short, long, weekly], utc(2026, 12, 20, 12, 0)) == Active(
        "weekly", utc(2026, 12, 18, 18, 0), utc(2026, 12, 21, 8, 0)
    )
    found = active([short, weekly, long], utc(2026, 12, 21, 6, 0))
    assert found is not None
    assert found.name == "long"
    assert active([short, long], utc(2027, 1, 1)) is None
    assert active([], utc(2027, 1, 1)) is None


def test_active_keeps_the_first_listed_of_windows_ending_together() -> None:
    a = window(name="a", start="2026-12-20T00:00:00Z", end="2026-12-22T00:00:00Z")
    b = window(name="b", start="2026-12-21T00:00:00Z", end="2026-12-22T00:00:00Z")
    found = active([a, b], utc(2026, 12, 21, 12, 0))
    assert found is not None
    assert found.name == "a"


def test_upcoming_finds_the_next_start() -> None:
    past = window(name="past", start="2026-01-01T00:00:00Z", end="2026-01-02T00:00:00Z")
    holidays = window(name="holidays", start="2026-12-20T18:00:00", end="2027-01-04", timezone="Europe/Paris")
    weekend = window(name="weekend", cron="0 18 * * FRI", duration="62h", timezone="Europe/Paris")
    windows = [past, holidays, weekend]
    assert upcoming(windows, utc(2026, 12, 14)) == (weekend, at(PARIS, 2026, 12, 18, 18, 0))
    assert upcoming(windows, at(PARIS, 2026, 12, 19, 12, 0)) == (holidays, utc(2026, 12, 20, 17, 0))
    assert upcoming([past], utc(2026, 6, 1)) is None
    assert upcoming([], utc(2026, 6, 1)) is None


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("62h", timedelta(hours=62)),
        ("90m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1d2h3m", timedelta(days=1, hours=2, minutes=3)),
        (" 45m ", timedelta(minutes=45)),
    ],
)
def test_parse_duration_reads_days_hours_minutes(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "62", "1h30", "30m1h", "1.5h", "62 hours", "1h 30m", "2w", "62H", "٦٢h", "-1h"]
)
def test_parse_duration_names_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"not understood: write days, hours and minutes in that order") as e:
        parse_duration(text)
    assert "'1h30m'" in str(e.value)


def test_a_huge_duration_is_refused_as_too_long() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9999999999d")


def test_durations_write_back_in_the_form_they_are_read() -> None:
    assert format_duration(timedelta(hours=62)) == "2d14h"
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(0)) == "0m"
    assert parse_duration(format_duration(timedelta(days=3, minutes=7))) == timedelta(days=3, minutes=7)
    assert WEEKEND.model_dump(mode="json")["duration"] == "2d14h"
    assert Window.model_validate_json(WEEKEND.model_dump_json()) == WEEKEND
    assert WEEKEND.model_dump()["duration"] == timedelta(hours=62)


def test_a_timedelta_is_taken_as_is() -> None:
    assert window(cron="0 18 * * FRI", duration=timedelta(hours=62)) == window(
        cron="0 18 * * FRI", duration="62h"
    )


# --- validation ---------------------------------------------------------------------------------


def error_of(**fields: Any) -> str:
    with pytest.raises(ValidationError) as e:
        Window.model_validate(fields)
    return str(e.value)


def test_an_unknown_time_zone_is_refused_with_examples() -> None:
    message = error_of(name="w", cron="0 18 * * FRI", duration="62h", timezone="Europe/Pari")
    assert "unknown time zone 'Europe/Pari'" in message
    assert "'Europe/Paris'" in message
    assert "unknown time zone '../etc/passwd'" in error_of(
        name="w", cron="0 18 * * FRI", duration="62h", timezone="../etc/passwd"
    )


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("61 * * * *", "is not a valid cron expression (minute hour day-of-month month day-of-week"),
        ("0 18 * * FRY", "is not a valid cron expression"),
        ("0 18 * *", "needs five fields"),
        ("0 0 18 * * FRI", "needs five fields"),
        ("@weekly", "needs five fields"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_a_bad_cron_is_refused(cron: str, says: str) -> None:
    message = error_of(name="w", cron=cron, duration="1h")
    assert f"cron {cron!r} {says}" in message


def test_cron_whitespace_is_normalised() -> None:
    assert window(cron="  0  18 * *   FRI ", duration="1h").cron == "0 18 * * FRI"


def test_both_shapes_are_refused() -> None:
    message = error_of(
        name="w", start="2026-12-20T00:00:00Z", end="2026-12-21T00:00:00Z", cron="0 18 * * FRI", duration="1h"
    )
    assert (
        "window 'w' mixes both shapes: give `start` and `end` (a fixed window) or `cron` and `duration`"
        in message
    )


def test_no_shape_is_refused() -> None:
    assert "window 'w' has no times: give `start` and `end`" in error_of(name="w")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"start": "2026-12-20T00:00:00Z"}, "window 'w' has no `end`: a fixed window needs both"),
        ({"end": "2026-12-20T00:00:00Z"}, "window 'w' has no `start`: a fixed window needs both"),
        ({"cron": "0 18 * * FRI"}, "window 'w' has no `duration`: a recurring window needs both"),
        ({"duration": "62h"}, "window 'w' has no `cron`: a recurring window needs both"),
    ],
)
def test_half_a_shape_is_refused(fields: dict[str, str], says: str) -> None:
    assert says in error_of(name="w", **fields)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-12-21T00:00:00", "2026-12-20T00:00:00"),
        ("2026-12-20T00:00:00", "2026-12-20T00:00:00"),
    ],
)
def test_an_end_not_after_the_start_is_refused(start: str, end: str) -> None:
    message = error_of(name="w", start=start, end=end)
    assert f"window 'w' ends ({end}) before it starts ({start})" in message


def test_start_and_end_are_compared_as_instants() -> None:
    # 01:30+01:00 is 00:30Z, before 00:45Z although its clock reads later.
    w = window(start="2026-12-20T01:30:00+01:00", end="2026-12-20T00:45:00Z")
    assert w.active_at(utc(2026, 12, 20, 0, 40)) is not None
    # A naive end in Paris (01:00 CET, 00:00Z) before a UTC start (00:30Z) is refused.
    assert "ends" in error_of(
        name="w", start="2026-12-20T00:30:00Z", end="2026-12-20T01:00:00", timezone="Europe/Paris"
    )


@pytest.mark.parametrize(
    ("duration", "says"),
    [
        ("62 hours", "duration '62 hours' is not understood: write days, hours and minutes in that order"),
        ("1.5h", "duration '1.5h' is not understood"),
        (62, "duration 62 needs a unit: write days, hours and minutes"),
        ("0m", "window 'w': `duration` must be longer than zero"),
        (timedelta(seconds=-60), "window 'w': `duration` must be longer than zero"),
        (timedelta(seconds=90), "window 'w': `duration` must be whole minutes"),
    ],
)
def test_a_bad_duration_is_refused(duration: object, says: str) -> None:
    assert says in error_of(name="w", cron="0 18 * * FRI", duration=duration)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": ""}, "name\n  String should have at least 1 character"),
        ({"name": "   "}, "name\n  String should have at least 1 character"),
        ({"name": "x" * 81}, "name\n  String should have at most 80 characters"),
        ({"name": "w", "zone": "UTC"}, "zone\n  Extra inputs are not permitted"),
    ],
)
def test_names_and_unknown_keys_are_checked(fields: dict[str, str], says: str) -> None:
    assert says in error_of(cron="0 18 * * FRI", duration="1h", **fields)


def test_windows_are_immutable() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        WEEKEND.name = "other"
