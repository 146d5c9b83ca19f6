"""Freeze windows: when releases are held back. Pure: plain data in, plain answers out.

A window has one of two shapes:

* fixed: `start` and `end`, ISO date-times. The window is active when start <= t < end (the end is
  exclusive). A value without an offset is wall-clock time in the window's `timezone`; a value with
  an offset (`2026-12-20T18:00:00+01:00`, `...Z`) is that instant, whatever `timezone` says.
* recurring: `cron` (five fields: minute hour day-of-month month day-of-week, e.g. `0 18 * * FRI`)
  and `duration` (`62h`, `90m`, `2d`, `1h30m`, `1d12h`). Each time the cron expression fires, an
  occurrence of the window begins and lasts `duration`.

Wall-clock rules. The cron expression is read on the wall clock of `timezone`, and `duration` is
counted on that wall clock too: the occurrence that begins Friday 18:00 with `62h` ends at Monday
08:00 local time, on every weekend of the year. People write "Friday 18:00 for 62 hours" meaning
"until Monday 08:00", so on the weekends the clocks change the window is one hour shorter (spring)
or longer (autumn) in elapsed time, and still ends Monday 08:00.

Clock changes. A wall time is turned into an instant with Python's `zoneinfo` rules for `fold=0`:

* a wall time that does not exist (in the gap when clocks spring forward) moves forward by the
  length of the gap: `30 2 * * *` in Europe/Paris begins at 03:30 CEST on the last Sunday of March,
  and with `1h` it ends at 04:30 CEST;
* a wall time that happens twice (when clocks fall back) is its first occurrence, and a cron
  expression fires once for it: `30 2 * * *` begins at 02:30 CEST on the last Sunday of October,
  not again at 02:30 CET. An hourly `0 * * * *` likewise fires once at 02:00 that night.

The cron expression is evaluated by croniter on naive wall-clock times (not on time-zone-aware
ones, where croniter fires twice in the repeated hour and moves gap times to the top of the next
hour), and the rules above are applied afterwards.

Occurrences may overlap (a daily cron with `36h`): at any moment the window is active if any
occurrence covers it, and `active_at` reports the covering occurrence that ends last.

Every datetime returned is time-zone-aware UTC; every datetime passed in must be time-zone-aware.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    field_serializer,
    field_validator,
    model_validator,
)

# Any two UTC offsets of one zone differ by at most 26 hours (offsets lie between -12:00 and +14:00),
# so a wall time and the instant it names are never further apart than this. The cron searches use it
# to bound how far around a moment they look.
_OFFSET_SPREAD = timedelta(hours=26)
_MINUTE = timedelta(minutes=1)

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?")
_DURATION_FORMS = "days, hours and minutes in that order, such as '62h', '90m', '2d', '1h30m' or '1d12h'"


def parse_duration(text: str) -> timedelta:
    """`62h`, `90m`, `2d`, `1h30m`, `1d12h`: whole days (d), hours (h) and minutes (m), in that order,
    without spaces. Raises ValueError naming the accepted forms for anything else."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f"duration {text!r} is not understood: write {_DURATION_FORMS}")
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(value: timedelta) -> str:
    """The form `parse_duration` reads back: `2d14h`, `1h30m`, `90m` becomes `1h30m`."""
    minutes = int(value.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n)
    return text or "0m"


@dataclass(frozen=True)
class Active:
    """A window that is in force: which one, since when and until when (UTC)."""

    name: str
    started: datetime
    ends: datetime


class Window(BaseModel):
    """One freeze window: fixed (`start`, `end`) or recurring (`cron`, `duration`). See the module
    documentation for how wall-clock times and clock changes are handled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
    start: datetime | None = None
    end: datetime | None = None
    cron: str | None = None
    duration: timedelta | None = None
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'Europe/Paris', "
                "'America/New_York' or 'UTC'"
            ) from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        fields = value.split()
        example = "minute hour day-of-month month day-of-week, e.g. '0 18 * * FRI'"
        if len(fields) != 5:
            raise ValueError(f"cron {value!r} needs five fields ({example})")
        expression = " ".join(fields)
        try:
            croniter(expression, datetime(2000, 1, 1), ret_type=datetime).get_next()
        except CroniterBadDateError:
            raise ValueError(f"cron {value!r} never fires") from None
        except (CroniterError, ValueError, TypeError) as e:
            raise ValueError(f"cron {value!r} is not a valid cron expression ({example}): {e}") from None
        return expression

    @field_validator("duration", mode="before")
    @classmethod
    def _readable_duration(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int | float):
            raise ValueError(f"duration {value!r} needs a unit: write {_DURATION_FORMS}")
        return value

    @field_serializer("duration", when_used="json")
    def _duration_text(self, value: timedelta | None) -> str | None:
        return None if value is None else format_duration(value)

    @model_validator(mode="after")
    def _one_shape(self) -> Self:
        fixed = self.start is not None or self.end is not None
        recurring = self.cron is not None or self.duration is not None
        both = "give `start` and `end` (a fixed window) or `cron` and `duration` (a recurring one)"
        if fixed and recurring:
            raise ValueError(f"window {self.name!r} mixes both shapes: {both}, not both")
        if not fixed and not recurring:
            raise ValueError(f"window {self.name!r} has no times: {both}")
        if fixed:
            if self.start is None or self.end is None:
                missing = "start" if self.start is None else "end"
                raise ValueError(f"window {self.name!r} has no `{missing}`: a fixed window needs both")
            if self._instant(self.end) <= self._instant(self.start):
                raise ValueError(
                    f"window {self.name!r} ends ({self.end.isoformat()}) before it starts "
                    f"({self.start.isoformat()})"
                )
        else:
            if self.cron is None or self.duration is None:
                missing = "cron" if self.cron is None else "duration"
                raise ValueError(f"window {self.name!r} has no `{missing}`: a recurring window needs both")
            if self.duration <= timedelta(0):
                raise ValueError(f"window {self.name!r}: `duration` must be longer than zero")
            if self.duration % _MINUTE:
                raise ValueError(f"window {self.name!r}: `duration` must be whole minutes")
        return self

    # --- questions ------------------------------------------------------------------------------

    def active_at(self, t: datetime) -> Active | None:
        """The occurrence in force at `t` (time-zone-aware), or None."""
        t = _aware_utc(t)
        if self.start is not None and self.end is not None:
            start, end = self._instant(self.start), self._instant(self.end)
            return Active(self.name, start, end) if start <= t < end else None
        assert self.duration is not None
        wall = self._wall(t)
        # An occurrence whose fire time is at or before `floor` ends before t. Once the latest
        # occurrence begun by t is found, those fired more than two offset spreads earlier end no later
        # than it does, so the search stops there too.
        floor = wall - self.duration - 2 * _OFFSET_SPREAD
        best: Active | None = None
        latest_found = False
        for fire in self._fires(wall + _OFFSET_SPREAD + _MINUTE, backwards=True):
            if fire <= floor:
                break
            start, end = self._occurrence(fire)
            if start > t:
                continue
            if not latest_found:
                latest_found = True
                floor = max(floor, fire - 2 * _OFFSET_SPREAD)
            if t < end and (best is None or end > best.ends):
                best = Active(self.name, start, end)
        return best

    def next_start(self, t: datetime) -> datetime | None:
        """When the window next begins strictly after `t` (UTC), or None if it never does again."""
        t = _aware_utc(t)
        if self.start is not None:
            start = self._instant(self.start)
            return start if start > t else None
        first: datetime | None = None
        best: datetime | None = None
        for fire in self._fires(self._wall(t) - _OFFSET_SPREAD - _MINUTE, backwards=False):
            # Past `first + spread`, every fire time begins after the earliest one already seen.
            if first is not None and fire >= first + _OFFSET_SPREAD:
                break
            start = _localise(fire, self._zone)
            if start <= t:
                continue
            if first is None:
                first = fire
            if best is None or start < best:
                best = start
        return best

    # --- wall clock -----------------------------------------------------------------------------

    @property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _instant(self, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            return _localise(value.replace(tzinfo=None), self._zone)
        return value.astimezone(UTC)

    def _wall(self, t: datetime) -> datetime:
        return t.astimezone(self._zone).replace(tzinfo=None)

    def _occurrence(self, fire: datetime) -> tuple[datetime, datetime]:
        """The occurrence the cron fire time `fire` (naive wall clock) begins: its start and end (UTC).
        The end is the start's actual wall time plus `duration`, on the wall clock."""
        assert self.duration is not None
        start = _localise(fire, self._zone)
        return start, _localise(self._wall(start) + self.duration, self._zone)

    def _fires(self, origin: datetime, *, backwards: bool) -> Iterator[datetime]:
        """Cron fire times on the naive wall clock, strictly before (or after) `origin`."""
        assert self.cron is not None
        times = croniter(self.cron, origin, ret_type=datetime)
        while True:
            try:
                yield times.get_prev() if backwards else times.get_next()
            except CroniterBadDateError:  # no fire time within croniter's search horizon
                return


def active(windows: Iterable[Window], t: datetime) -> Active | None:
    """The active window among `windows` at t; when several are active, the one that ends last
    (the first listed of those ending at the same time)."""
    best: Active | None = None
    for window in windows:
        now = window.active_at(t)
        if now is not None and (best is None or now.ends > best.ends):
            best = now
    return best


def upcoming(windows: Iterable[Window], t: datetime) -> tuple[Window, datetime] | None:
    """The window that begins next after t and when (for status displays); the first listed of those
    beginning at the same time."""
    best: tuple[Window, datetime] | None = None
    for window in windows:
        start = window.next_start(t)
        if start is not None and (best is None or start < best[1]):
            best = (window, start)
    return best


def _aware_utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: pass a time-zone-aware datetime")
    return t.astimezone(UTC)


def _localise(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of the naive wall time `wall` in `zone`, by the `fold=0` rules: a time in a
    spring-forward gap moves forward by the gap, a repeated time is its first occurrence."""
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
