"""A release being driven: the live view of its cluster objects and record, and the verbs strategies use.

While a strategy runs, the shared watch caches (`bot.kube.cache`: the namespace's Deployments, pods and
release records) keep a snapshot current; `wait` wakes on every change, so a Promote click or a pod
turning Ready is seen at once, and every wait has a deadline. The card is refreshed (coalesced by the
reporter) on every change.

Stale facts never decide anything: while a cache's watch is down, predicates are not evaluated and
deadlines do not run (the card says since when the cluster is unreachable); a failure is only declared
after the objects have been read again, directly, and still say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bot import freeze
from bot.catalog import App
from bot.kube.cache import Caches, Informer
from bot.kube.client import KubeUnavailable, Obj, retry_delay
from bot.releases import health
from bot.releases.audit import Auditor
from bot.releases.events import Event
from bot.releases.gate import Gate
from bot.releases.health import Live
from bot.releases.objects import MANAGED_SELECTOR
from bot.releases.ports import Analyst, Cluster, Reader, Reporter
from bot.releases.preflight import Write
from bot.releases.record import Record, utcnow
from bot.releases.store import Store, Stored, decode, object_name

log = logging.getLogger(__name__)
T = TypeVar("T")

# A thread milestone: an event, or a function of the record as saved giving one.
Note = Event | Callable[[Record], Event]


@dataclass(frozen=True)
class Outcome:
    """What a wait decided: "complete", "failed" (with the cluster's reason), "request", or another
    strategy-specific word. A "failed" outcome is confirmed on freshly read objects before it counts."""

    kind: str
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.kind == "failed"


def cannot_start(pods: health.PodHealth | None) -> Outcome | None:
    """A failed Outcome when the new version's pods cannot start (crash loop, image pull, ...)."""
    if pods is not None and pods.fatal:
        return Outcome("failed", f"{pods.fatal} ({pods.describe()})")
    return None


@dataclass(frozen=True)
class Plan:
    """What a release will do, worked out before anything is recorded or changed: the Deployment it acts
    on (for blue-green, the live colour), the record fields it starts with, and the pre-flight view:
    new-version pods at each pause (the last entry is all of them) and pods running at the peak."""

    deployment: Obj
    fields: dict[str, object] = field(default_factory=dict)
    others: tuple[Obj, ...] = ()  # the app's other Deployments (`deployments:`), as they run now
    steps: tuple[int, ...] = ()
    peak_pods: int = 0


class Strategy(Protocol):
    """A release method of the guide: `plan` refuses (with a typed refusal) or says what will happen;
    `writes` are the writes that start it, exactly as `drive` will send them (the pre-flight plan
    dry-runs them on the API server); `drive` carries the release out from whatever phase its record
    is in (resumable, idempotent)."""

    async def plan(self, kube: Reader, app: App, to_image: str) -> Plan: ...
    def writes(self, app: App, record: Record, plan: Plan) -> list[Write]: ...
    async def drive(self, run: Run) -> None: ...


@dataclass
class Snapshot:
    record: Record
    deployment: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)
    image: str = ""  # what the followed Deployment is to run, when not the record's `to_image`

    @property
    def to_image(self) -> str:
        return self.image or self.record.to_image


def _matches(pod: Obj, selector: dict[str, str]) -> bool:
    labels = pod.get("metadata", {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


class Run:
    def __init__(
        self,
        kube: Cluster,
        caches: Caches,
        store: Store,
        reporter: Reporter,
        audit: Auditor,
        app: App,
        record: Record,
        stored: Stored | None = None,
        analyst: Analyst | None = None,
    ) -> None:
        self.kube, self.store, self.reporter, self.audit, self.app = kube, store, reporter, audit, app
        self.analyst = analyst  # Prometheus and webhook gates, for apps with an `analysis`
        self.snap = Snapshot(record)
        self._stored = stored  # the record as last written or seen, with its version
        self._changed = asyncio.Event()  # replaced on every change: waiters hold the one they saw
        ns = record.namespace
        self._deployments = caches.deployments(ns)
        self._pods = caches.pods(ns)
        self._records = caches.configmaps(ns, MANAGED_SELECTOR)
        self._unsubscribe: list[Callable[[], None]] = []
        self.deployment_name = record.deployment
        self._container = app.container  # the container of the followed Deployment that runs the version
        self._selector: dict[str, str] = {}
        self._blind_since: float | None = None  # monotonic, while the caches are stale
        self.blind_seconds = 0.0  # time spent without fresh facts since the run began
        self._freeze_timer: asyncio.TimerHandle | None = None
        self._freeze: freeze.Active | None = None  # the app's freeze window on now, kept at its boundaries
        self._deferred: list[Event] = []  # notes the next write stores (`defer`)
        self._replaced: set[str] = set()  # resourceVersions of the record that are known to be old
        self._saving = asyncio.Lock()

    @property
    def record(self) -> Record:
        return self.snap.record

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self._deployments, self._pods, self._records)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Run:
        ns = self.record.namespace
        dep = None if self._deployments.stale else self._deployments.objects.get(self.record.deployment)
        if dep is None:  # not followed by a cache yet, or its watch is down
            dep = await self.kube.deployment(ns, self.record.deployment)
        self.snap.deployment = dep
        self._selector = dep["spec"]["selector"]["matchLabels"]
        for informer, apply in (
            (self._deployments, self._on_deployment),
            (self._pods, self._on_pod),
            (self._records, self._on_record),
        ):
            self._unsubscribe.append(informer.subscribe(apply))
        # A change that reached the cache before we subscribed (an Abort asked for just now) counts too.
        current = self._records.objects.get(object_name(self.record.app))
        if current is not None:
            self._on_record("MODIFIED", current)
        self._rebuild()
        self._arm_freeze_timer()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()

    def _arm_freeze_timer(self) -> None:
        """Wake (and so redraw the card) when a freeze window of the app begins or ends."""
        if not self.app.freeze:
            return
        now = utcnow()
        on = self._freeze = freeze.active(self.app.freeze, now)
        nxt = freeze.upcoming(self.app.freeze, now)
        times = [t for t in (on.ends if on else None, nxt[1] if nxt else None) if t is not None]
        if times:
            delay = min((min(times) - now).total_seconds(), 86400.0) + 0.5
            self._freeze_timer = asyncio.get_running_loop().call_later(delay, self._on_freeze_boundary)

    def _on_freeze_boundary(self) -> None:
        self._arm_freeze_timer()
        self._wake()

    # --- the snapshot, from the shared caches ------------------------------------------------------

    def _rebuild(self) -> None:
        if self._deployments.synced.is_set():
            self.snap.deployment = self._deployments.objects.get(self.deployment_name)
        if self._pods.synced.is_set():
            self.snap.pods = {
                name: pod for name, pod in self._pods.objects.items() if _matches(pod, self._selector)
            }
        self._track_blindness()

    def _track_blindness(self) -> None:
        now = time.monotonic()
        if self.stale:
            if self._blind_since is None:
                self._blind_since = now
        elif self._blind_since is not None:
            self.blind_seconds += now - self._blind_since
            self._blind_since = None

    def _wake(self) -> None:
        self._rebuild()
        self.refresh_card()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_deployment(self, kind: str, obj: Obj) -> None:
        if not obj or obj.get("metadata", {}).get("name") == self.deployment_name:
            self._wake()

    def _on_pod(self, kind: str, obj: Obj) -> None:
        if not obj or _matches(obj, self._selector):
            self._wake()

    def _on_record(self, kind: str, obj: Obj) -> None:
        if obj and kind != "DELETED":
            if obj.get("metadata", {}).get("name") != object_name(self.record.app):
                return
            stored = decode(obj)
            if stored.record.id != self.record.id or len(stored.record.history) < len(self.record.history):
                return
            if stored.resource_version in self._replaced:
                return  # a version this run has written over already, delivered late by the cache
            self._keep(stored)
        self._wake()

    def _keep(self, stored: Stored) -> None:
        """`stored` is the record as it is now."""
        if self._stored is not None and self._stored.resource_version != stored.resource_version:
            self._replaced.add(self._stored.resource_version)
        self.snap.record = stored.record
        self._stored = stored

    @property
    def stale(self) -> bool:
        """The caches' watches are down: what the snapshot says may no longer be true."""
        return any(i.stale for i in self.informers)

    def unreachable_since(self) -> datetime | None:
        times = [t for t in (*(i.down_since for i in self.informers), self.kube.unreachable_since) if t]
        return min(times) if times else None

    async def reread(self) -> None:
        """Read the Deployment, its pods and the record again, directly (not from the caches)."""
        ns = self.record.namespace
        dep = await self.kube.deployment(ns, self.deployment_name)
        pods = await self.kube.pods(ns, self._selector)
        stored = await self.store.get(ns, self.record.app, fresh=True)
        self.snap.deployment = dep
        self.snap.pods = {p["metadata"]["name"]: p for p in pods}
        if stored is not None and stored.record.id == self.record.id:
            self.snap.record = stored.record

    # --- what strategies use -----------------------------------------------------------------------

    async def follow(self, deployment: str, pod_selector: dict[str, str]) -> None:
        """Follow another Deployment (which need not exist yet) and the pods `pod_selector` matches
        instead of the record's: blue-green follows the green Deployment it creates."""
        self.deployment_name = deployment
        self._selector = dict(pod_selector)
        self.snap.deployment, self.snap.pods = None, {}
        self._wake()

    async def follow_deployment(self, name: str, deployment: Obj | None = None) -> None:
        """Follow another Deployment of the app that exists (`deployments:`), or the app's own again."""
        if name == self.deployment_name and deployment is None:
            return
        dep = deployment or await self.kube.deployment(self.record.namespace, name)
        follower = next((f for f in self.record.followers if f.name == name), None)
        self._container = follower.containers[0] if follower else self.app.container
        await self.follow(name, dep["spec"]["selector"]["matchLabels"])
        self.snap.image = follower.to_image if follower else ""

    def live(self) -> Live:
        gate = self._stored.gate if self._stored is not None else Gate()
        dep = self.snap.deployment
        progress = health.progress(dep) if dep else None
        new = health.pods_running(list(self.snap.pods.values()), self._container, self.snap.to_image)
        own = dep is not None and self.deployment_name == self.record.deployment
        return Live(
            deployment=self.deployment_name,
            selector_label=health.stale_selector_label(dep, self.app.container) if own and dep else None,
            progress=progress,
            new_pods=health.pod_health(new) if new else None,
            now=utcnow(),
            unreachable_since=self.unreachable_since() if self.stale or self.kube.unreachable_since else None,
            freeze=self._freeze,
            queue=tuple(f"{q.intent.version} by {q.requester.name}" for q in gate.queue),
            locked=f"{gate.lock.holder.name}: {gate.lock.reason}" if gate.lock else "",
        )

    def refresh_card(self) -> None:
        if self.record.card_ref:
            self.reporter.show(self.record, self.live())

    async def wait(self, until: Callable[[Snapshot], T | None], timeout: float) -> T:
        """Wait until `until(snapshot)` returns a value; TimeoutError after `timeout` seconds of fresh
        facts. While the caches are stale nothing is decided and the clock stops; a failed Outcome, and
        the timeout itself, are confirmed on freshly read objects first."""
        left = timeout
        while True:
            changed = self._changed
            if not self.stale:
                found = until(self.snap)
                if found is not None and not (isinstance(found, Outcome) and found.failed):
                    return found
                if found is not None or left <= 0:
                    confirmed = await self._confirm(until)
                    if confirmed is not None:
                        return confirmed
                    if left <= 0:
                        raise TimeoutError
                    continue
            fresh = not self.stale
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(left, 0.05) if fresh else None):
                    await changed.wait()
            if fresh:
                left -= time.monotonic() - started

    async def _confirm(self, until: Callable[[Snapshot], T | None]) -> T | None:
        """`until` on objects read again directly; None (go on waiting) when they cannot be read."""
        attempt = 0
        while True:
            try:
                await self.reread()
                return until(self.snap)
            except KubeUnavailable as e:
                log.info("cannot confirm on fresh facts yet: %s", e)
                self.refresh_card()
                await asyncio.sleep(retry_delay(e, attempt))
                attempt += 1

    async def save(self, change: Callable[[Record], Record], note: Note | None = None) -> Record:
        """Change the record by compare-and-set (re-applied on a lost race) and show it. `note`, a
        thread milestone, is stored in the same write, so it is never lost: Slack is told afterwards,
        and whoever drives the release next re-sends what was not delivered."""
        delivered = self.reporter.delivered(self.record.id)
        deferred, self._deferred = self._deferred, []

        def full(rec: Record) -> Record:
            rec = change(rec)
            for earlier in deferred:
                rec = rec.with_note(earlier)
            if note is not None:
                rec = rec.with_note(note(rec) if callable(note) else note)
            if delivered is not None and delivered > rec.notes_shown:
                rec = rec.model_copy(update={"notes_shown": min(delivered, len(rec.notes))})
            return rec

        attempt = 0
        # One save at a time (the driver's and the card's): each starts from the record the last one
        # wrote, instead of both from the same version and one losing the compare-and-set.
        async with self._saving:
            while True:  # compare-and-set is safe to repeat: wait out a passing outage instead of failing
                try:
                    stored = await self.store.update(
                        self.record.namespace, self.record.app, full, known=self._stored
                    )
                    break
                except KubeUnavailable as e:
                    log.info("cannot save the record yet: %s", e)
                    self.refresh_card()
                    await asyncio.sleep(retry_delay(e, attempt))
                    attempt += 1
                except BaseException:
                    self._deferred = [*deferred, *self._deferred]  # not written: the next save carries them
                    raise
            self._keep(stored)
        self._wake()
        return stored.record

    async def note(self, text: Note) -> None:
        await self.save(lambda rec: rec, note=text)

    def defer(self, note: Event) -> None:
        """Store `note` with the record's next write instead of a write of its own (a release about to
        make its first change: that change's write follows at once). If this driver stops before
        writing again, the note is lost with it, and the next driver notes it again."""
        self._deferred.append(note)

    async def audited(self, action: str, actor: Any, result: str, *, warning: bool = False) -> None:
        r = self.record
        await self.audit(
            action=action,
            actor=actor,
            app=r.app,
            namespace=r.namespace,
            deployment=r.deployment,
            result=result,
            channel_id=r.channel_id,
            from_version=r.from_version,
            to_version=r.to_version,
            permalink=await self.reporter.permalink(r),
            involved=self.snap.deployment if self.deployment_name == r.deployment else None,
            warning=warning,
            strategy="rollback" if r.undo_to is not None else r.strategy.value,
            duration=((r.finished_at or utcnow()) - r.created_at).total_seconds(),
        )
