"""Every refusal the engine raises, as a typed error carrying its facts. Pure.

Front ends decide how to show a refusal; each class's `__str__` is its neutral wording (plain text, with
`code` marks a front end may render or leave), the one place that wording lives. A Slack front end
escapes it for mrkdwn; a terminal prints it as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.errors import Conflict, UserError


def selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


@dataclass(eq=False)
class Refusal(UserError):
    """Base of the typed refusals: a dataclass whose fields say what was refused and why."""

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:  # pragma: no cover - every subclass words itself
        return type(self).__name__


@dataclass(eq=False)
class Busy(Refusal, Conflict):
    """Refused because of what else is happening (another release, a stale click, a race)."""


# --- releases --------------------------------------------------------------------------------------


@dataclass(eq=False)
class UnknownApp(Refusal):
    app: str

    def __str__(self) -> str:
        return f"Unknown app `{self.app}`. Type `/release apps`."


@dataclass(eq=False)
class StrategyNotAllowed(Refusal):
    app: str
    strategy: str
    allowed: tuple[str, ...]

    def __str__(self) -> str:
        allowed = ", ".join(f"`--{s}`" for s in self.allowed)
        return f"`{self.app}` cannot be released with `--{self.strategy}`; allowed: {allowed}."


@dataclass(eq=False)
class NoImageOverride(Refusal):
    app: str
    image: str

    def __str__(self) -> str:
        return (
            f"`{self.app}` takes a version (an image tag such as `v2.0`), not a full image reference; "
            f"its image is `{self.image}`."
        )


@dataclass(eq=False)
class GitOpsManaged(Refusal):
    app: str
    deployment: str
    owner: str

    def __str__(self) -> str:
        return (
            f"Deployment `{self.deployment}` is managed by {self.owner}: it would put the image back "
            "to what Git says on its next sync (drift), undoing the release. Change the version in Git "
            f"instead, or set `gitops: allow` for `{self.app}` in the catalog to release it here anyway."
        )


@dataclass(eq=False)
class Rejected(Refusal):
    """The API server refused a dry-run of the release's first writes (admission: a quota, a webhook,
    validation): nothing was changed."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"The API server would refuse this release ({self.what}): {self.reason}. Nothing was changed."


@dataclass(eq=False)
class NoContainer(Refusal):
    deployment: str
    container: str
    live: bool = False  # the live colour of a blue-green app

    def __str__(self) -> str:
        what = "The live Deployment" if self.live else "Deployment"
        return f"{what} `{self.deployment}` has no container `{self.container}`."


@dataclass(eq=False)
class NoDeployment(Refusal):
    namespace: str
    deployment: str

    def __str__(self) -> str:
        return f"Deployment `{self.namespace}/{self.deployment}` does not exist."


@dataclass(eq=False)
class CanaryOfNothing(Refusal):
    deployment: str

    def __str__(self) -> str:
        return f"`{self.deployment}` is scaled to 0: there is nothing to run a canary beside."


@dataclass(eq=False)
class AlreadyRuns(Refusal):
    app: str
    version: str

    def __str__(self) -> str:
        return f"`{self.app}` already runs `{self.version}`."


@dataclass(eq=False)
class AlreadyRunsRevision(Refusal):
    app: str
    revision: int

    def __str__(self) -> str:
        return f"`{self.app}` already runs the template of revision {self.revision}."


@dataclass(eq=False)
class AlreadyPaused(Refusal):
    app: str
    paused: bool

    def __str__(self) -> str:
        return f"`{self.app}` is already {'paused' if self.paused else 'running (not paused)'}."


# --- while something else happens ------------------------------------------------------------------


@dataclass(eq=False)
class WhileReleasing(Busy):
    """A rollback to a revision, or a pause/resume, asked for while a release runs."""

    app: str
    phase: str
    verb: str  # "rollback" | "pause"

    def __str__(self) -> str:
        use = "use Rollback on its card" if self.verb == "rollback" else "use its card's buttons"
        tail = "without a revision" if self.verb == "rollback" else ""
        return (
            f"A release of `{self.app}` is running ({self.phase}): {use}, or `/release rollback {self.app}`"
            + (f" {tail}." if tail else ".")
        )


@dataclass(eq=False)
class UndoOfferStale(Busy):
    app: str
    current: int

    def __str__(self) -> str:
        return (
            f"`{self.app}` changed since you asked (now at revision {self.current}); run the rollback "
            "command again."
        )


@dataclass(eq=False)
class CardOfEarlierRelease(Busy):
    app: str
    release_id: str
    current_id: str
    phase: str

    def __str__(self) -> str:
        return (
            f"That card is for an earlier release of `{self.app}` ({self.release_id}); "
            f"the current one is {self.current_id} ({self.phase})."
        )


@dataclass(eq=False)
class StaleCard(Busy):
    phase: str  # described ("rolling out")
    last_action: str = ""
    last_actor: str = ""

    def __str__(self) -> str:
        who = f" ({self.last_action} by {self.last_actor})" if self.last_actor else ""
        return (
            f"This card was out of date: the release is now {self.phase}{who}. Nothing was done; look at "
            "the card again."
        )


@dataclass(eq=False)
class PromoteTooEarly(Busy):
    app: str
    minutes: float
    seconds_left: float

    def __str__(self) -> str:
        return (
            f"The canary of `{self.app}` must stay healthy for {self.minutes:g} min before Promote; "
            f"{int(self.seconds_left)} s to go."
        )


@dataclass(eq=False)
class NoRelease(Busy):
    app: str

    def __str__(self) -> str:
        return f"There is no release of `{self.app}` to change."


@dataclass(eq=False)
class TooBusy(Busy):
    app: str

    def __str__(self) -> str:
        return f"The release of `{self.app}` is changing too fast; try again."


@dataclass(eq=False)
class AppBusy(Busy):
    app: str = ""  # empty: another release started at the same moment
    version: str = ""
    strategy: str = ""
    requester: str = ""
    phase: str = ""

    def __str__(self) -> str:
        if not self.app:
            return "Another release started at the same moment; try again."
        return (
            f"`{self.app}` is already being released: {self.version} ({self.strategy}) by "
            f"{self.requester}, {self.phase}. Wait for it to finish, roll it back, or add `--queue` to "
            "release after it."
        )


@dataclass(eq=False)
class RequestPending(Busy):
    request: str
    by: str

    def __str__(self) -> str:
        return f"{self.by} already asked to {self.request} this release; it is being carried out."


@dataclass(eq=False)
class NotNow(Busy):
    request: str
    phase: str  # described

    def __str__(self) -> str:
        past = {"promote": "promoted", "rollback": "rolled back", "abort": "aborted", "finish": "finished"}
        return f"This release is {self.phase}: it cannot be {past.get(self.request, self.request)} now."


# --- approvals, freezes, locks and the queue -------------------------------------------------------


def _utc(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@dataclass(eq=False)
class NotAwaitingApproval(Busy):
    app: str
    phase: str  # described

    def __str__(self) -> str:
        return f"The release of `{self.app}` is {self.phase}: there is nothing to approve or deny."


@dataclass(eq=False)
class SelfApproval(Refusal):
    app: str

    def __str__(self) -> str:
        return f"You asked for this release of `{self.app}`: your own approval does not count."


@dataclass(eq=False)
class AlreadyApproved(Busy):
    app: str
    count: int
    required: int

    def __str__(self) -> str:
        return (
            f"You already approved this release of `{self.app}` ({self.count} of {self.required}): "
            "another approver is needed."
        )


@dataclass(eq=False)
class PromoteNeedsApprover(Refusal):
    app: str
    action: str  # "promote" or "switch traffic of"
    requester: bool  # the person asked for the release themselves

    def __str__(self) -> str:
        who = "someone other than the requester" if self.requester else "an approver"
        return f"Only {who} may {self.action} this release of `{self.app}` (its approvals say so)."


@dataclass(eq=False)
class Frozen(Refusal):
    app: str
    window: str
    ends: datetime
    action: str  # release, promote, switch traffic of
    can_override: bool  # the person may go ahead with --reason
    command: str = ""  # what to type to go ahead anyway ("/release promote hexo")

    def __str__(self) -> str:
        how = (
            f' You may override it: type `{self.command} --reason "why"`.'
            if self.can_override
            else " Only the people of `freeze_override` may go ahead, with a reason."
        )
        return (
            f"`{self.app}` is frozen ({self.window}) until {_utc(self.ends)}: you cannot {self.action} "
            f"it now.{how}"
        )


@dataclass(eq=False)
class NoOverride(Refusal):
    app: str
    window: str

    def __str__(self) -> str:
        return f"You may not override the freeze {self.window} of `{self.app}`."


@dataclass(eq=False)
class Locked(Busy):
    app: str
    holder: str
    reason: str
    since: datetime

    def __str__(self) -> str:
        return (
            f"`{self.app}` is locked by {self.holder} since {_utc(self.since)}: {self.reason}. "
            f"Nothing is released until someone unlocks it (`/release unlock {self.app}`)."
        )


@dataclass(eq=False)
class NotLocked(Busy):
    app: str

    def __str__(self) -> str:
        return f"`{self.app}` is not locked."


@dataclass(eq=False)
class NotQueued(Busy):
    app: str

    def __str__(self) -> str:
        return f"You have no release of `{self.app}` in its queue."


@dataclass(eq=False)
class QueueFull(Busy):
    app: str
    size: int

    def __str__(self) -> str:
        return f"The queue of `{self.app}` is full ({self.size} releases); wait for some to run."


# --- blue-green ------------------------------------------------------------------------------------


@dataclass(eq=False)
class BlueGreenRefusal(Refusal):
    """Why a blue-green release cannot start from what the cluster has."""


@dataclass(eq=False)
class NoService(BlueGreenRefusal):
    namespace: str
    service: str

    def __str__(self) -> str:
        return (
            f"Service `{self.namespace}/{self.service}` does not exist: a blue-green release switches its "
            "selector."
        )


@dataclass(eq=False)
class NoSelector(BlueGreenRefusal):
    service: str

    def __str__(self) -> str:
        return (
            f"Service `{self.service}` has no selector (its endpoints are managed by hand): blue-green "
            "cannot switch it."
        )


@dataclass(eq=False)
class NoVersionLabel(BlueGreenRefusal):
    service: str
    selector: dict[str, str]
    label: str

    def __str__(self) -> str:
        return (
            f"Service `{self.service}` selects `{selector_text(self.selector)}` without a `{self.label}` "
            f"label: blue-green moves traffic by changing `{self.label}` in the selector (guide §1.3-1.4), "
            "so it must be there."
        )


@dataclass(eq=False)
class NothingSelected(BlueGreenRefusal):
    namespace: str
    service: str
    selector: dict[str, str]
    catalog: str
    catalog_labels: dict[str, str] | None

    def __str__(self) -> str:
        hint = (
            f"; Deployment `{self.catalog}`'s pods are labelled `{selector_text(self.catalog_labels)}`"
            if self.catalog_labels is not None
            else ""
        )
        return (
            f"Service `{self.service}` selects `{selector_text(self.selector)}`, but no Deployment in "
            f"`{self.namespace}` has pods labelled that way{hint}. Fix the Service's selector (or the "
            "catalog) first."
        )


@dataclass(eq=False)
class Ambiguous(BlueGreenRefusal):
    service: str
    names: Sequence[str] = field(default_factory=tuple)

    def __str__(self) -> str:
        listed = ", ".join(f"`{n}`" for n in self.names)
        return (
            f"Service `{self.service}` selects the pods of several running Deployments ({listed}): "
            "blue-green needs exactly one live colour."
        )


@dataclass(eq=False)
class LiveNotOurs(BlueGreenRefusal):
    service: str
    live: str
    app: str
    catalog: str

    def __str__(self) -> str:
        return (
            f"Service `{self.service}` selects Deployment `{self.live}`, which is neither the catalog's "
            f"`{self.catalog}` nor one release-bot created for `{self.app}`: refusing to release from it."
        )


@dataclass(eq=False)
class LiveScaledToZero(BlueGreenRefusal):
    name: str

    def __str__(self) -> str:
        return (
            f"The live Deployment `{self.name}` is scaled to 0: there is nothing to copy into a green "
            "Deployment."
        )


@dataclass(eq=False)
class SameVersion(BlueGreenRefusal):
    service: str
    label: str
    value: str

    def __str__(self) -> str:
        return f"Service `{self.service}` already selects `{self.label}={self.value}`: that version is the live colour."


@dataclass(eq=False)
class TooBig(BlueGreenRefusal):
    app: str
    replicas: int
    limit: int

    def __str__(self) -> str:
        n = self.replicas
        return (
            f"A blue-green release of `{self.app}` runs both colours at once: {2 * n} pods ({n} blue + {n} "
            f"green), above the catalog's `bluegreen.max_replicas` of {self.limit}. Use `--rolling` or "
            "`--canary`, or raise the limit."
        )


@dataclass(eq=False)
class NameTaken(BlueGreenRefusal):
    name: str

    def __str__(self) -> str:
        return (
            f"Deployment `{self.name}` already exists and was not created by release-bot: the green "
            "Deployment cannot take its name. Rename or remove it, or change `bluegreen.name_template`."
        )


@dataclass(eq=False)
class GreenIsLive(BlueGreenRefusal):
    name: str

    def __str__(self) -> str:
        return (
            f"The green Deployment's name `{self.name}` is the live colour's own name: change "
            "`bluegreen.name_template` so that it includes `{colour}`."
        )


@dataclass(eq=False)
class BadNameTemplate(BlueGreenRefusal):
    template: str

    def __str__(self) -> str:
        return (
            f"The catalog's `bluegreen.name_template` `{self.template}` does not give a valid Deployment "
            "name; use `{deployment}` and `{colour}`, e.g. `{deployment}-{colour}`."
        )


@dataclass(eq=False)
class NameClaimsVersion(Refusal):
    """A rolling release or canary on a colour whose name claims a version (the guide's `hexo-v2.0`)
    would leave that name claiming a version it no longer runs."""

    app: str
    name: str
    claimed: str
    version: str
    moves_to: str

    def __str__(self) -> str:
        return (
            f"`{self.name}` serves `{self.app}`, and its name says `{self.claimed}`: a release of "
            f"`{self.version}` on it would leave a name that claims a version it does not run. Move the "
            f"app to a name without a version once, by blue-green: `/release {self.app} {self.version} "
            f"--bluegreen` creates `{self.moves_to}`, switches traffic to it and retires `{self.name}`; "
            "rolling releases and canaries work on it from then on."
        )


@dataclass(eq=False)
class NotSoaked(Refusal):
    """The source environment has not run the image healthily for the soak time yet."""

    source: str
    image: str
    minutes: float  # the soak time asked for
    healthy_minutes: float  # how long it has been healthy (0: not healthy now)
    why: str = ""  # when not healthy: what is wrong

    def __str__(self) -> str:
        if self.why:
            return (
                f"`{self.source}` does not run `{self.image}` healthily now ({self.why}): nothing to "
                "promote yet."
            )
        return (
            f"`{self.source}` has run `{self.image}` healthily for {self.healthy_minutes:.1f} min; a "
            f"promotion needs {self.minutes:g} min. Try again in {self.minutes - self.healthy_minutes:.1f} min."
        )


@dataclass(eq=False)
class NotThroughStage(Refusal):
    """The environment takes only what comes through another (`promotion.from`)."""

    app: str
    stage: str
    source: str = ""  # the environment it was promoted from instead, if any

    def __str__(self) -> str:
        came = f"from `{self.source}`" if self.source else "directly"
        base, _, env = self.stage.rpartition("-")
        target_env = self.app.rpartition("-")[2]
        how = f"`/release promote {base or self.stage} --from {env} --to {target_env}`"
        return (
            f"`{self.app}` takes only what comes through `{self.stage}`, not a release {came}. "
            f"Release it to `{self.stage}` first, then {how}."
        )


@dataclass(eq=False)
class OtherRepository(Refusal):
    """The source runs an image of another repository than the target's catalog image."""

    source: str
    image: str
    app: str
    repository: str

    def __str__(self) -> str:
        return (
            f"`{self.source}` runs `{self.image}`, not an image of `{self.app}`'s repository "
            f"`{self.repository}`: it cannot be promoted there."
        )


@dataclass(eq=False)
class ClusterDown(Refusal):
    """The app's cluster does not answer now: nothing was asked of it or written to it."""

    app: str
    cluster: str
    since: datetime
    several: bool = False  # the bot serves other clusters, which carry on

    def __str__(self) -> str:
        where = f"cluster `{self.cluster}`" if self.several else "the cluster"
        others = " Apps on the other clusters are not affected." if self.several else ""
        return (
            f"`{self.app}` is unavailable: {where} has not answered since {_utc(self.since)}; nothing "
            f"was changed.{others} Try again once it is back (`/release status {self.app}` says when)."
        )
