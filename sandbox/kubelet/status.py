"""What the simulated kubelet reports for a pod: a pure function of the pod, the clock and the settings.

No container ever runs. A pod bound to one of our nodes goes through the states a real kubelet would
report, decided here so the rules can be unit-tested without a cluster:

- before the ready delay: ``Pending``, every container waiting in ``ContainerCreating``;
- after it: ``Running`` and Ready, with a fake pod IP (Endpoints need one);
- an image whose name contains ``broken`` runs but never becomes Ready: the container waits in
  ``CrashLoopBackOff`` and its ``restartCount`` rises by one every ``restart_period``;
- an image containing ``pullfail`` never starts: the pod stays ``Pending`` with ``ImagePullBackOff``.

The result is the complete ``status`` to send as a JSON merge patch (lists are replaced as a whole),
plus the time at which the answer changes next, so the caller knows when to look again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

BROKEN_MARKER = "broken"
PULLFAIL_MARKER = "pullfail"

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Container:
    """One container of the pod spec: all the kubelet needs to know about it."""

    name: str
    image: str


@dataclass(frozen=True)
class PodFacts:
    """The facts about a pod the status depends on.

    ``seen_at`` is when this kubelet first saw the pod bound to its node (the simulated start).
    """

    uid: str
    containers: tuple[Container, ...]
    init_containers: tuple[Container, ...]
    host_ip: str
    pod_ip: str
    seen_at: datetime


@dataclass(frozen=True)
class StatusPlan:
    """The status to report now, and when (if ever) it will change without any new event."""

    status: JsonDict
    recheck_at: datetime | None


def container_fate(image: str) -> str:
    """How a container with this image behaves: ``pullfail``, ``broken`` or ``ok``."""
    if PULLFAIL_MARKER in image:
        return "pullfail"
    if BROKEN_MARKER in image:
        return "broken"
    return "ok"


def fake_pod_ip(index: int) -> str:
    """The ``index``-th fake pod IP in 10.244.0.0/16 (x.y never 0 or 255 in the last octet)."""
    index %= 254 * 254
    return f"10.244.{index // 254}.{index % 254 + 1}"


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fake_id(scheme: str, *parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{scheme}://{digest}"


def _condition(kind: str, ok: bool, at: datetime, reason: str | None = None) -> JsonDict:
    cond: JsonDict = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    cond["lastTransitionTime"] = _ts(at)
    if reason is not None:
        cond["reason"] = reason
    return cond


def _waiting(reason: str, message: str | None = None) -> JsonDict:
    state: JsonDict = {"reason": reason}
    if message is not None:
        state["message"] = message
    return {"waiting": state}


def _container_status(
    facts: PodFacts, c: Container, *, state: JsonDict, ready: bool, restarts: int, last: JsonDict
) -> JsonDict:
    started = "running" in state
    status: JsonDict = {
        "name": c.name,
        "image": c.image,
        "imageID": "" if "waiting" in state and restarts == 0 else _fake_id("sandbox-image", c.image),
        "ready": ready,
        "started": started,
        "restartCount": restarts,
        "state": state,
        "lastState": last,
    }
    if started or restarts > 0:
        status["containerID"] = _fake_id("sandbox", facts.uid, c.name)
    return status


def plan_status(facts: PodFacts, *, now: datetime, ready_delay: float, restart_period: float) -> StatusPlan:
    """The pod status a kubelet would report at ``now``.

    Deterministic: the same facts and ``now`` give the same status, so the caller can compare it with
    what it reported last and skip redundant writes. Timestamps derive from ``seen_at`` only.
    """
    if restart_period <= 0:
        raise ValueError("restart_period must be positive")
    started_at = facts.seen_at + timedelta(seconds=ready_delay)
    base: JsonDict = {"hostIP": facts.host_ip, "startTime": _ts(facts.seen_at)}
    init_statuses = [
        {
            "name": c.name,
            "image": c.image,
            "imageID": _fake_id("sandbox-image", c.image),
            "containerID": _fake_id("sandbox", facts.uid, c.name),
            "ready": True,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": _ts(facts.seen_at)}},
            "lastState": {},
        }
        for c in facts.init_containers
    ]
    if init_statuses:
        base["initContainerStatuses"] = init_statuses

    if now < started_at:
        statuses = [
            _container_status(facts, c, state=_waiting("ContainerCreating"), ready=False, restarts=0, last={})
            for c in facts.containers
        ]
        status = {
            **base,
            "phase": "Pending",
            "conditions": [
                _condition("Initialized", True, facts.seen_at),
                _condition("Ready", False, facts.seen_at, "ContainersNotReady"),
                _condition("ContainersReady", False, facts.seen_at, "ContainersNotReady"),
                _condition("PodScheduled", True, facts.seen_at),
            ],
            "containerStatuses": statuses,
        }
        return StatusPlan(status=status, recheck_at=started_at)

    statuses = []
    recheck_at: datetime | None = None
    all_ready = True
    any_unstarted = False
    for c in facts.containers:
        fate = container_fate(c.image)
        if fate == "pullfail":
            all_ready = False
            any_unstarted = True
            msg = f'Back-off pulling image "{c.image}"'
            statuses.append(
                _container_status(
                    facts, c, state=_waiting("ImagePullBackOff", msg), ready=False, restarts=0, last={}
                )
            )
        elif fate == "broken":
            all_ready = False
            elapsed = (now - started_at).total_seconds()
            restarts = 1 + math.floor(elapsed / restart_period)
            last_start = started_at + timedelta(seconds=(restarts - 1) * restart_period)
            next_restart = started_at + timedelta(seconds=restarts * restart_period)
            recheck_at = next_restart if recheck_at is None else min(recheck_at, next_restart)
            msg = f"back-off restarting failed container {c.name}"
            last = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "startedAt": _ts(last_start),
                    "finishedAt": _ts(last_start),
                }
            }
            statuses.append(
                _container_status(
                    facts,
                    c,
                    state=_waiting("CrashLoopBackOff", msg),
                    ready=False,
                    restarts=restarts,
                    last=last,
                )
            )
        else:
            state = {"running": {"startedAt": _ts(started_at)}}
            statuses.append(_container_status(facts, c, state=state, ready=True, restarts=0, last={}))

    if all_ready:
        conditions = [
            _condition("Initialized", True, facts.seen_at),
            _condition("Ready", True, started_at),
            _condition("ContainersReady", True, started_at),
            _condition("PodScheduled", True, facts.seen_at),
        ]
    else:
        conditions = [
            _condition("Initialized", True, facts.seen_at),
            _condition("Ready", False, facts.seen_at, "ContainersNotReady"),
            _condition("ContainersReady", False, facts.seen_at, "ContainersNotReady"),
            _condition("PodScheduled", True, facts.seen_at),
        ]
    status = {
        **base,
        "phase": "Pending" if any_unstarted else "Running",
        "podIP": facts.pod_ip,
        "podIPs": [{"ip": facts.pod_ip}],
        "conditions": conditions,
        "containerStatuses": statuses,
    }
    return StatusPlan(status=status, recheck_at=recheck_at)
