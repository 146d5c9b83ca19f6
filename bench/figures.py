"""How the benchmarks summarise what they measured: percentiles, and a median with its range over
repeats (the figure printed as `12.3 (11.8–13.0)`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: Sequence[float], fmt: str = ".1f", unit: str = "") -> str:
    """The median of `values` and, over more than one, their range: "12.3 ms (11.8–13.0)"."""
    if not values:
        return "n/a"
    median = f"{statistics.median(values):{fmt}}{unit}"
    if len(values) == 1:
        return median
    return f"{median} ({min(values):{fmt}}–{max(values):{fmt}})"


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0."""
    return a / b if b else float("nan")


def ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each repeat i: the ratio's median and range are those of the pairs."""
    return [ratio(x, y) for x, y in zip(a, b, strict=True)]
