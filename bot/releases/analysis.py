"""Canary analysis, the pure part: queries rendered from their templates, each metric's value judged
against its bound, and what one interval's checks mean for the release.

One interval asks every metric and every `step` webhook (`bot.analysis` does the asking). Its
`Tally` (stored in the record as `record.analysis`) says:

- a check that failed (a metric past its bound, a gate that said no) counts one failure; at the
  catalog's `failure_limit` failures the release fails (and rolls back), naming the check and value;
- an interval where every check passed counts one good interval (in a row: a failure, or an interval
  that could not be judged, starts the count again); at `auto_promote_after` the bot promotes;
- an interval where a check could not be judged (Prometheus unreachable, no data, a gate that did not
  answer in time...) counts neither: the release waits and the card says why. It never promotes on
  such an interval; after `progress_deadline_seconds` without a judged interval it fails, naming the
  cause.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from bot.catalog import TEMPLATE_NAMES, Analysis, Metric

TREND = 5  # values of each metric kept for the card


def render(query: str, values: Mapping[str, str]) -> str:
    """The query with each `{{ name }}` replaced by its value (the catalog checked the names)."""
    out = query
    for name in TEMPLATE_NAMES:
        value = values.get(name, "")
        for spelled in (f"{{{{ {name} }}}}", f"{{{{{name}}}}}"):
            out = out.replace(spelled, value)
    return out


def promql_string(value: str) -> str:
    """`value` as a PromQL double-quoted string's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(namespace: str, pods: Sequence[str]) -> str:
    """PromQL label matchers of the canary's pods: `namespace="devops",pod=~"hexo-1|hexo-2"`."""
    names = "|".join(sorted(pods)) or "^$"
    return f'namespace="{promql_string(namespace)}",pod=~"{promql_string(names)}"'


class Reading(BaseModel):
    """One check's last result: a metric's value, or a gate's answer."""

    model_config = ConfigDict(frozen=True)
    name: str
    kind: str = "metric"  # metric | webhook
    value: float | None = None  # None: not judged (see `problem`)
    max: float | None = None
    min: float | None = None
    ok: bool | None = None  # None: could not be judged
    problem: str = ""  # why it could not be judged, or what the gate said
    trend: tuple[float, ...] = ()  # the metric's last values, oldest first

    def bound(self) -> str:
        if self.max is not None and self.min is not None:
            return f"{number(self.min)}..{number(self.max)}"
        return f"max {number(self.max)}" if self.max is not None else f"min {number(self.min)}"


class Tally(BaseModel):
    """The analysis of the current canary step (or blue-green switch), kept in the record."""

    model_config = ConfigDict(frozen=True)
    step: int = 0
    good: int = 0  # good intervals in a row
    failures: int = 0  # failed checks of this step
    intervals: int = 0  # intervals run in this step
    readings: tuple[Reading, ...] = ()
    waiting: str = ""  # why the last interval could not be judged ("" when it was)
    judged_at: datetime | None = None  # the last judged interval (or the step's start)
    at: datetime | None = None  # the last interval


def judge(metric: Metric, value: float | None, problem: str = "", trend: Sequence[float] = ()) -> Reading:
    """`metric`'s reading for `value` (None, or NaN: not judged, because of `problem`)."""
    if value is not None and math.isnan(value):
        value, problem = None, problem or "the query's value is NaN (no traffic?)"
    kept = tuple([*trend, value][-TREND:]) if value is not None else tuple(trend)[-TREND:]
    base = Reading(name=metric.name, max=metric.max, min=metric.min, trend=kept)
    if value is None:
        return base.model_copy(update={"problem": problem or "no data"})
    ok = (metric.max is None or value <= metric.max) and (metric.min is None or value >= metric.min)
    return base.model_copy(update={"value": value, "ok": ok})


def gate(name: str, ok: bool | None, said: str) -> Reading:
    """A webhook's reading: yes, no (with what it said), or no answer (`ok` None)."""
    return Reading(name=name, kind="webhook", ok=ok, problem=said)


def worst(values: Sequence[float], metric: Metric) -> float | None:
    """Of several series a query returned, the one closest to failing counts."""
    usable = [v for v in values if not math.isnan(v)]
    if not usable:
        return None
    return max(usable) if metric.max is not None else min(usable)


def tally(previous: Tally | None, step: int, readings: Sequence[Reading], now: datetime) -> Tally:
    """The step's tally after one interval's `readings`."""
    before = previous if previous is not None and previous.step == step else Tally(step=step, judged_at=now)
    failed = sum(1 for r in readings if r.ok is False)
    unjudged = [r for r in readings if r.ok is None]
    judged: datetime | None
    if failed:
        good, waiting, judged = 0, "", now
    elif unjudged:
        good, judged = 0, before.judged_at
        waiting = "; ".join(f"{r.name}: {r.problem}" for r in unjudged)
    else:
        good, waiting, judged = before.good + 1, "", now
    return Tally(
        step=step,
        good=good,
        failures=before.failures + failed,
        intervals=before.intervals + 1,
        readings=tuple(readings),
        waiting=waiting,
        judged_at=judged,
        at=now,
    )


def failed_check(t: Tally) -> Reading | None:
    return next((r for r in t.readings if r.ok is False), None)


def describe(r: Reading) -> str:
    """A reading as the card and the thread say it: "error-rate 0.21 (max 0.05)", "smoke said no: x"."""
    if r.kind == "webhook":
        if r.ok is None:
            return f"gate {r.name} did not answer ({r.problem})"
        return f"gate {r.name} said {'yes' if r.ok else 'no'}" + (f": {r.problem}" if r.problem else "")
    if r.value is None:
        return f"{r.name}: {r.problem} ({r.bound()})"
    return f"{r.name} {number(r.value)} ({r.bound()})"


def verdict(t: Tally, analysis: Analysis) -> str | None:
    """`fail` once the failures reach the limit, `promote` after enough good intervals, else None."""
    if t.failures >= analysis.failure_limit:
        return "fail"
    if analysis.auto_promote_after is not None and t.good >= analysis.auto_promote_after:
        return "promote"
    return None


def failure_reason(t: Tally, analysis: Analysis) -> str:
    last = failed_check(t)
    what = describe(last) if last is not None else "a check failed"
    return f"analysis failed ({t.failures} of {analysis.failure_limit} allowed failures): {what}"


def number(value: float | None) -> str:
    """A value as the card shows it: integers whole, the rest to 3 significant digits."""
    if value is None:
        return "?"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}"
