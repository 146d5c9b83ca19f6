"""What happened in a release, as typed events. Pure.

Strategies emit these (stored in the record with the change they report, `Record.notes`); front ends
render them: the Slack reporter as thread milestones, `release-bot ctl` as progress lines. Each event
carries only what the record does not already say; renderers get the record too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)


class Started(_Event):
    kind: Literal["started"] = "started"
    max_surge: str = ""  # rolling parameters, as the catalog gives them
    max_unavailable: str = ""


class CanaryStep(_Event):
    """The canary stopped at a step: `updated` new pods beside `old` ones. It is watched until they
    are all Ready (then `CanaryHealthy`); only then does it wait for Promote. Records written before
    `step`, `next` and `desired` existed lack them."""

    kind: Literal["canary-step"] = "canary-step"
    updated: int
    old: int
    health: str = ""  # the new pods' health in words ("1/1 ready")
    step: int | None = None  # the record's step it stopped at
    next: int = 0  # new pods after the next Promote (`desired`: all of them); 0 when not known
    desired: int = 0  # the Deployment's replicas; 0 when not known


class CanaryHealthy(_Event):
    """Every new pod of the canary step is Ready: the canary waits for Promote or Rollback."""

    kind: Literal["canary-healthy"] = "canary-healthy"
    step: int
    ready: int  # new pods, all Ready
    old: int  # old pods beside them
    next: int = 0  # new pods after the next Promote (`desired`: all of them); 0 when not known
    desired: int = 0


class Acted(_Event):
    """Someone (or the bot itself, `by` None) did something to the release: promote, abort, ..."""

    kind: Literal["acted"] = "acted"
    action: str
    by: str | None = None  # the person's id in the front end that acted
    detail: str = ""


class Succeeded(_Event):
    kind: Literal["succeeded"] = "succeeded"
    seconds: float


class Failed(_Event):
    kind: Literal["failed"] = "failed"
    reason: str
    auto_rollback: bool


class RolledBack(_Event):
    kind: Literal["rolled-back"] = "rolled-back"
    by: str | None = None  # None: automatically


class GreenCreated(_Event):
    kind: Literal["green-created"] = "green-created"


class LeftOver(_Event):
    """A green Deployment left by an earlier release is replaced."""

    kind: Literal["left-over"] = "left-over"
    name: str
    release_id: str = ""


class GreenReady(_Event):
    kind: Literal["green-ready"] = "green-ready"
    health: str = ""
    service: str = ""  # the Service a switch points at green; empty in records written before


class Switched(_Event):
    kind: Literal["switched"] = "switched"
    service: str
    pods: int
    seconds: float
    grace_seconds: float
    retire: str


class SwitchedBack(_Event):
    kind: Literal["switched-back"] = "switched-back"
    service: str
    pods: int
    seconds: float


class GreenFailed(_Event):
    kind: Literal["green-failed"] = "green-failed"
    reason: str
    switched: bool


class ServiceChanged(_Event):
    """The Service selects neither colour: someone changed it; the bot leaves it alone."""

    kind: Literal["service-changed"] = "service-changed"
    service: str
    selector: dict[str, str]


class LeftAlone(_Event):
    """A Deployment this release did not create is not deleted."""

    kind: Literal["left-alone"] = "left-alone"
    name: str


class BlueGreenEnded(_Event):
    """Rolled back or aborted: traffic on blue as before."""

    kind: Literal["bluegreen-ended"] = "bluegreen-ended"
    by: str | None = None
    aborted: bool = False
    green_deleted: bool = False


class Retired(_Event):
    """Blue retired after the switch: the release succeeded."""

    kind: Literal["retired"] = "retired"
    how: str  # "deleted" | "scaled-down" | "kept" | "gone"
    seconds: float


# --- approvals, freezes and the queue --------------------------------------------------------------


class ApprovalAsked(_Event):
    """The release waits for `required` approvals before it touches the cluster."""

    kind: Literal["approval-asked"] = "approval-asked"
    required: int
    minutes: float  # how long it waits for them


class Approved(_Event):
    kind: Literal["approved"] = "approved"
    by: str
    count: int
    required: int


class Denied(_Event):
    kind: Literal["denied"] = "denied"
    by: str
    reason: str = ""


class ApprovalExpired(_Event):
    kind: Literal["approval-expired"] = "approval-expired"
    count: int
    required: int
    minutes: float


class BrokeGlass(_Event):
    """Approvals and freezes were skipped, with a reason."""

    kind: Literal["broke-glass"] = "broke-glass"
    by: str
    reason: str


class Overridden(_Event):
    """Someone went ahead during a freeze, with a reason."""

    kind: Literal["overridden"] = "overridden"
    by: str
    window: str
    action: str  # release, promote
    reason: str


class QueuePaused(_Event):
    """The release did not succeed: the releases queued after it wait until someone acts."""

    kind: Literal["queue-paused"] = "queue-paused"
    waiting: int


class AutoscalerHeld(_Event):
    """An autoscaler of the Deployment is held at its current size while the release runs, so it
    cannot resize the old version (a canary's stable set, blue) behind the release's back."""

    kind: Literal["autoscaler-held"] = "autoscaler-held"
    name: str
    replicas: int


class AutoscalerRestored(_Event):
    """The autoscaler is given back its own bounds, on the Deployment that runs the app now."""

    kind: Literal["autoscaler-restored"] = "autoscaler-restored"
    name: str
    min_replicas: int
    max_replicas: int
    target: str


class FollowerRolledOut(_Event):
    """Another Deployment of the app (`deployments:`) runs the version on all its pods."""

    kind: Literal["follower-rolled-out"] = "follower-rolled-out"
    name: str
    health: str = ""  # its pods in words ("2/2 ready")


class Analysed(_Event):
    """One interval of the canary analysis that said something new: a check failed, the analysis
    could not be judged (and why), or it could again after that."""

    kind: Literal["analysed"] = "analysed"
    outcome: Literal["failed", "waiting", "resumed"]
    detail: str = ""  # the failing check ("error-rate 0.21 (max 0.05)"), or why it waits
    failures: int = 0  # failed checks so far in this step
    limit: int = 0  # the catalog's failure_limit


class GateRefused(_Event):
    """A webhook gate said no (or did not answer) to going on: the promotion, or the release itself
    before it touched anything (`phase` pre-rollout)."""

    kind: Literal["gate-refused"] = "gate-refused"
    gate: str
    phase: str
    said: str = ""


Event = Annotated[
    Started
    | CanaryStep
    | CanaryHealthy
    | Acted
    | Succeeded
    | Failed
    | RolledBack
    | GreenCreated
    | LeftOver
    | GreenReady
    | Switched
    | SwitchedBack
    | GreenFailed
    | ServiceChanged
    | LeftAlone
    | BlueGreenEnded
    | Retired
    | ApprovalAsked
    | Approved
    | Denied
    | ApprovalExpired
    | BrokeGlass
    | Overridden
    | QueuePaused
    | AutoscalerHeld
    | AutoscalerRestored
    | FollowerRolledOut
    | Analysed
    | GateRefused,
    Field(discriminator="kind"),
]


def canary_healthy(notes: Iterable[Event], step: int) -> CanaryHealthy | None:
    """The note saying the canary became healthy at `step`, if it has."""
    for event in notes:
        if isinstance(event, CanaryHealthy) and event.step == step:
            return event
    return None


def canary_step(notes: Iterable[Event], step: int) -> CanaryStep | None:
    """The note of the canary stopping at `step` (for a record written before steps were noted, its
    last canary stop)."""
    found = None
    for event in notes:
        if isinstance(event, CanaryStep) and event.step in (step, None):
            found = event
    return found
