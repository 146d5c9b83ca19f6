"""The release record and its state machine. Pure.

A record is the single source of truth about one release: it lives in the cluster (see store.py), is
changed only by compare-and-set, and says who asked for what and when. Clicks and commands never touch
the Deployment themselves: they add a *request* to the record (exactly one wins a race), and the
process that drives the release carries it out and records the outcome.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bot.releases.analysis import Tally
from bot.releases.events import Event
from bot.releases.preflight import Pin, Preflight
from bot.releases.refusals import (
    AlreadyApproved,
    NotAwaitingApproval,
    NotNow,
    RequestPending,
    SelfApproval,
)
from commands.intents import Strategy


class Phase(StrEnum):
    AWAITING_APPROVAL = "awaiting-approval"  # recorded, waiting for approvers; nothing changed yet
    PENDING = "pending"  # recorded, nothing changed on the cluster yet
    ROLLING_OUT = "rolling-out"  # new pods replacing old ones (rolling, canary promotion, green start)
    CANARY = "canary"  # paused with part of the pods on the new version, waiting for a decision
    AWAITING_SWITCH = "awaiting-switch"  # blue-green: green ready, traffic still on blue
    SWITCHED = "switched"  # blue-green: traffic on green, blue kept for instant rollback
    ROLLING_BACK = "rolling-back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # stopped; the new version is still (partly) there, Rollback offered
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED})
# A failed release frees the app for the next one, but its card still offers Rollback.
FINISHED = TERMINAL | {Phase.FAILED}


class Request(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    ABORT = "abort"
    FINISH = "finish"


# Which requests each phase accepts.
ACCEPTS: dict[Phase, frozenset[Request]] = {
    Phase.AWAITING_APPROVAL: frozenset({Request.ABORT}),
    Phase.PENDING: frozenset({Request.ABORT}),
    Phase.ROLLING_OUT: frozenset({Request.ROLLBACK, Request.ABORT}),
    Phase.CANARY: frozenset({Request.PROMOTE, Request.ROLLBACK, Request.ABORT}),
    Phase.AWAITING_SWITCH: frozenset({Request.PROMOTE, Request.ABORT}),
    Phase.SWITCHED: frozenset({Request.ROLLBACK, Request.FINISH}),
    Phase.ROLLING_BACK: frozenset(),
    Phase.FAILED: frozenset({Request.ROLLBACK}),
}


class Actor(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    name: str


class Entry(BaseModel):
    """One line of the record's own audit trail."""

    model_config = ConfigDict(frozen=True)
    at: datetime
    actor: Actor | None  # None: the bot itself (health gate, auto-rollback)
    action: str
    detail: str = ""


class Follower(BaseModel):
    """A Deployment released with the app's own (`deployments:`), as it was before the release: what
    an all-or-nothing rollback puts back."""

    model_config = ConfigDict(frozen=True)
    name: str
    containers: tuple[str, ...]
    from_image: str
    to_image: str
    from_revision: int | None = None


class Promoted(BaseModel):
    """The evidence a promotion carried: the source environment ran this image healthily."""

    model_config = ConfigDict(frozen=True)
    source: str  # the source environment's app (`hexo-staging`)
    image: str  # what it runs (by digest when its pods report one)
    healthy_since: datetime  # every pod of it has been Ready since then
    pods: int
    restarts: int  # container restarts of those pods


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    app: str
    namespace: str
    deployment: str
    strategy: Strategy
    from_version: str
    to_version: str
    from_image: str
    to_image: str
    from_revision: int | None = None
    requester: Actor
    channel_id: str
    channel_name: str = ""
    # Which front end shows this release ("slack", "cli"), and its opaque reference to the card there
    # (for Slack the message ts). Records written before the field was renamed said `card_ts`.
    front_end: str = "slack"
    card_ref: str | None = Field(default=None, validation_alias=AliasChoices("card_ref", "card_ts"))
    # Where the requester can always be told privately why the release could not start (Slack's
    # response_url for the command, good for 30 minutes); dropped once the release has finished.
    reply_to: str = ""
    phase: Phase = Phase.PENDING
    reason: str = ""  # why it failed or was rolled back, in the cluster's words
    request: Request | None = None
    request_by: Actor | None = None
    step: int = 0  # canary: index of the current step
    green: str | None = None  # blue-green: the Deployment this release created
    followers: tuple[Follower, ...] = ()  # the app's other Deployments, released after `deployment`
    # (the selector's `version`, the version running) when the release ended, if they disagree
    stale_selector: tuple[str, str] | None = None
    promoted: Promoted | None = None  # a promotion from another environment, with its evidence
    analysis: Tally | None = None  # the canary analysis of the current step (metrics, gates)
    # Blue-green: `deployment` is the live colour ("blue") found at the start; these say how the Service
    # selected it (the rollback target) and what one colour requests (the card shows twice that).
    selector: dict[str, str] = Field(default_factory=dict)
    replicas: int = 0  # blue-green: replicas of each colour
    cpu_millis: int = 0  # blue-green: CPU requested by one colour (all replicas), millicores
    memory_bytes: int = 0  # blue-green: memory requested by one colour (all replicas), bytes
    min_ready_seconds: int = 0  # canary: the Deployment's own value, restored after the first pause
    undo_to: int | None = None  # set when this is `/release rollback`: the revision being restored
    # Approvals: how many distinct approvers the release waits for, who approved (in order), and until
    # when it waits; the requester's own approval counts only with `approve_self`.
    approvals_required: int = 0
    approved_by: tuple[Actor, ...] = ()
    approve_self: bool = False
    approve_until: datetime | None = None
    approvers: tuple[str, ...] = ()  # who may approve: user ids and user-group ids
    break_glass: str = ""  # the reason given to skip approvals and freezes
    override: str = ""  # the reason given to release during a freeze
    preflight: Preflight | None = None  # the plan, by server-side dry-run, before anything changed
    autoscaler: Pin | None = None  # an autoscaler the release holds at a fixed size, to give back
    created_at: datetime
    phase_since: datetime
    finished_at: datetime | None = None
    history: tuple[Entry, ...] = Field(default_factory=tuple)
    # The release's thread milestones, in order, stored with the change they report so none is lost;
    # `notes_shown` of them are known to be delivered, and `synced` says the channel shows the final
    # state (until then whoever drives the app next re-sends what is missing).
    notes: tuple[Event, ...] = Field(default_factory=tuple)
    notes_shown: int = 0
    synced: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def active(self) -> bool:
        """Something is left to do: the release runs, or a request on a failed one waits."""
        return not self.finished or self.request is not None

    @property
    def needs_driver(self) -> bool:
        """Some process must take this record up: it is active, or the channel does not show its end."""
        return self.active or not self.synced

    def with_note(self, event: Event) -> Record:
        return self.model_copy(update={"notes": (*self.notes, event)})

    def entry(
        self, action: str, actor: Actor | None, detail: str = "", *, now: datetime | None = None
    ) -> Record:
        e = Entry(at=now or utcnow(), actor=actor, action=action, detail=detail)
        return self.model_copy(update={"history": (*self.history, e)})

    def to(self, phase: Phase, *, reason: str | None = None, now: datetime | None = None) -> Record:
        now = now or utcnow()
        update: dict[str, object] = {"phase": phase, "phase_since": now}
        if reason is not None:
            update["reason"] = reason
        update["finished_at"] = now if phase in FINISHED else None
        if phase in FINISHED:
            update["reply_to"] = ""
        return self.model_copy(update=update)

    def with_request(self, request: Request, actor: Actor, *, now: datetime | None = None) -> Record:
        """Add a request, or raise Conflict saying why it cannot be taken now."""
        if self.request is not None and self.request_by is not None:
            raise RequestPending(self.request.value, self.request_by.name)
        if request not in ACCEPTS.get(self.phase, frozenset()):
            raise NotNow(request.value, describe_phase(self.phase))
        return self.model_copy(update={"request": request, "request_by": actor}).entry(
            f"{request.value} requested", actor, now=now
        )

    def approve(self, actor: Actor, *, now: datetime | None = None) -> Record:
        """Count `actor`'s approval, or raise the refusal that says why it does not count."""
        if self.phase is not Phase.AWAITING_APPROVAL:
            raise NotAwaitingApproval(self.app, describe_phase(self.phase))
        if actor.id == self.requester.id and not self.approve_self:
            raise SelfApproval(self.app)
        if any(a.id == actor.id for a in self.approved_by):
            raise AlreadyApproved(self.app, len(self.approved_by), self.approvals_required)
        return self.model_copy(update={"approved_by": (*self.approved_by, actor)}).entry(
            "approved", actor, f"{len(self.approved_by) + 1} of {self.approvals_required}", now=now
        )

    @property
    def approved(self) -> bool:
        return len(self.approved_by) >= self.approvals_required

    def consume_request(self) -> Record:
        return self.model_copy(update={"request": None, "request_by": None})


def setting(**fields: object) -> Callable[[Record], Record]:
    """A change for Store.update/Run.save that sets fields (values bound now, not at call time)."""
    return lambda rec: rec.model_copy(update=fields)


def describe_phase(phase: Phase) -> str:
    return {
        Phase.AWAITING_APPROVAL: "waiting for approval",
        Phase.PENDING: "starting",
        Phase.ROLLING_OUT: "rolling out",
        Phase.CANARY: "waiting at a canary step",
        Phase.AWAITING_SWITCH: "waiting for the traffic switch",
        Phase.SWITCHED: "switched, with the old colour kept for rollback",
        Phase.ROLLING_BACK: "rolling back",
        Phase.SUCCEEDED: "finished",
        Phase.FAILED: "failed",
        Phase.ROLLED_BACK: "rolled back",
        Phase.ABORTED: "aborted",
    }[phase]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(app: str, now: datetime) -> str:
    return f"{app}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
