"""The traffic the simulated kubelet's pods serve, as Prometheus metrics. Pure.

No container runs, so the requests are made up, deterministically from the pod and the clock: every
pod that is Ready (seen `ready_delay` seconds ago, and of an image that starts: `status.container_fate`) has served
`REQUESTS_PER_SECOND` requests a second since then. The image tag decides how they went:

- a tag containing `errors` answers `ERROR_SHARE` (20%) of them with HTTP 500;
- a tag containing `slow` takes `SLOW_SECONDS` per request instead of `FAST_SECONDS`.

`exposition` renders the text format Prometheus scrapes from the kubelet's `/metrics`:

- `sandbox_http_requests_total{namespace, pod, app, version, code}` (counter);
- `sandbox_http_request_duration_seconds{namespace, pod, app, version}` (histogram, `BUCKETS`).

`version` is the image tag of the pod's first container, `app` its `app` label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sandbox.kubelet.status import container_fate

REQUESTS_PER_SECOND = 10.0
ERROR_SHARE = 0.2
FAST_SECONDS = 0.05
SLOW_SECONDS = 0.8
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5)
REQUESTS = "sandbox_http_requests_total"
DURATION = "sandbox_http_request_duration_seconds"


@dataclass(frozen=True)
class Serving:
    """One pod, as far as its traffic goes."""

    namespace: str
    pod: str
    app: str
    image: str
    ready_at: datetime


def version_of(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return last.split("@", 1)[1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def serves(image: str) -> bool:
    """Whether pods of `image` ever serve (not those the kubelet keeps from starting or from Ready)."""
    return container_fate(image) == "ok"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_quote(v)}"' for k, v in labels.items()) + "}"


def exposition(pods: Iterable[Serving], now: datetime) -> str:
    lines = [
        f"# HELP {REQUESTS} Requests served by the sandbox's pods (simulated), by HTTP code.",
        f"# TYPE {REQUESTS} counter",
    ]
    histogram: list[str] = [
        f"# HELP {DURATION} Request durations of the sandbox's pods (simulated).",
        f"# TYPE {DURATION} histogram",
    ]
    for p in sorted(pods, key=lambda s: (s.namespace, s.pod)):
        if not serves(p.image):
            continue
        seconds = max(0.0, (now - p.ready_at).total_seconds())
        total = math.floor(seconds * REQUESTS_PER_SECOND)
        version = version_of(p.image)
        errors = math.floor(total * ERROR_SHARE) if "errors" in version else 0
        base = {"namespace": p.namespace, "pod": p.pod, "app": p.app, "version": version}
        lines.append(f"{REQUESTS}{_labels(**base, code='200')} {total - errors}")
        lines.append(f"{REQUESTS}{_labels(**base, code='500')} {errors}")
        took = SLOW_SECONDS if "slow" in version else FAST_SECONDS
        for le in BUCKETS:
            histogram.append(f"{DURATION}_bucket{_labels(**base, le=str(le))} {total if took <= le else 0}")
        histogram.append(f"{DURATION}_bucket{_labels(**base, le='+Inf')} {total}")
        histogram.append(f"{DURATION}_sum{_labels(**base)} {total * took:.3f}")
        histogram.append(f"{DURATION}_count{_labels(**base)} {total}")
    return "\n".join([*lines, *histogram]) + "\n"
