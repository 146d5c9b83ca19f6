"""The engine owns every release task of this process.

`begin` records a release in the cluster and starts driving it; `request` adds a Promote/Rollback/...
request to a record (compare-and-set: exactly one of racing clicks wins) and makes sure some process
drives it. A release is driven by whichever process holds the app's Lease: this one, another replica,
or a restarted bot (which finds unfinished records at start-up and carries them on). Tasks are named,
tracked, and cancelled on shutdown; leases are handed back so another replica can continue at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot import freeze
from bot.catalog import DEFAULT_CLUSTER, Action, App, Catalog
from bot.errors import ConfigError, Conflict, UserError
from bot.kube.cache import NAMESPACED, Behind, Caches, Reads
from bot.kube.client import KubeConflict, KubeError, KubeUnavailable, NotFound, backoff
from bot.releases import bluegreen, canary, events, health, preflight, promotion, refusals, rolling, steps
from bot.releases import undo as undo_driver
from bot.releases.audit import Auditor
from bot.releases.gate import Enqueued, Gate, Queued, new_queue_id
from bot.releases.history import Revision, revisions, undo
from bot.releases.objects import MANAGED_SELECTOR
from bot.releases.ports import Analyst, CardRefused, Cluster, Reader, Reporter
from bot.releases.record import (
    Actor,
    Phase,
    Promoted,
    Record,
    Request,
    describe_phase,
    new_id,
    setting,
    utcnow,
)
from bot.releases.run import Plan, Run
from bot.releases.run import Strategy as StrategyPort
from bot.releases.store import (
    NOT_KNOWN,
    AppState,
    Leases,
    Store,
    Stored,
    busy,
    decode,
    is_record,
    object_name,
)
from bot.tasks import Tasks
from commands.intents import Promotion, Release, Strategy, VersionKind

log = logging.getLogger(__name__)

# The guide's release methods; each module is a `run.Strategy` (plan + drive).
STRATEGIES: dict[Strategy, StrategyPort] = {
    Strategy.ROLLING: rolling,
    Strategy.CANARY: canary,
    Strategy.BLUEGREEN: bluegreen,
}


Roles = frozenset[Action]  # what a person may do beyond the action checked: approve, override, break glass


@dataclass(frozen=True)
class Ask:
    """A release as it was asked for: the app and intent, who asked, where, and with which rights."""

    app: App
    intent: Release
    actor: Actor
    channel_id: str
    channel_name: str
    reply_to: str
    front_end: str
    roles: Roles
    promoted: Promoted | None = None


@dataclass(frozen=True)
class Site:
    """One cluster, and what the engine keeps per cluster: its client, caches, records, leases and
    audit Events. A cluster that does not answer stops only the releases of its own apps."""

    name: str
    cluster: Cluster
    caches: Caches
    store: Store
    leases: Leases
    audit: Auditor


class Engine:
    def __init__(
        self,
        clusters: Cluster | Mapping[str, Cluster],
        catalog: Catalog,
        reporter: Reporter,
        *,
        identity: str,
        lease_seconds: float,
        audit: Auditor,
        analyst: Analyst | None = None,
        watch_scope: str = NAMESPACED,
        follow_reads: bool = True,
    ) -> None:
        """`clusters`: a client for each cluster the engine may act in, by the catalog's names (one
        client alone serves `default`). `release-bot serve` connects every cluster of the catalog;
        `release-bot ctl` only those of the apps a command names, and reads what it plans on from the
        API server (`follow_reads` off: a one-shot process starts no cache for a single read)."""
        self.catalog = catalog
        self.reporter = reporter
        by_name = dict(clusters) if isinstance(clusters, Mapping) else {DEFAULT_CLUSTER: clusters}
        self.sites: dict[str, Site] = {}
        for name, kube in by_name.items():
            caches = Caches(kube, watch_scope, catalog.namespaces(name), follow_reads=follow_reads)
            self.sites[name] = Site(
                name,
                kube,
                caches,
                Store(kube, self._cached_record_of(caches)),
                Leases(kube, identity, lease_seconds),
                audit.on(kube),
            )
        self.audit = audit
        self.analyst = analyst  # Prometheus and webhook gates, for apps with an `analysis`
        self.lease_seconds = lease_seconds
        self.tasks = Tasks("engine")
        self._drivers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()  # asked for while their driver was finishing
        self._failures: dict[tuple[str, str], int] = {}  # driver attempts that failed in a row
        self._posting: dict[str, asyncio.Task[None]] = {}  # cards posted while their release runs
        reporter.attach(self)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, sync_timeout: float = 10.0) -> None:
        """Follow the release records of every namespace of the catalog, in each app's cluster: an
        unfinished one (or one whose end the channel does not show yet) is taken up as soon as it is
        seen, and again whenever its driver's lease runs out. Waits (up to `sync_timeout`) until the
        records have been listed; a cluster that does not answer is followed once it does."""
        informers = []
        for name, site in self.sites.items():
            for ns in sorted(self.catalog.namespaces(name)):
                informer = site.caches.configmaps(ns, MANAGED_SELECTOR)
                informer.subscribe(functools.partial(self._on_record, name))
                informers.append((name, informer))
        synced = await asyncio.gather(*(i.wait_synced(sync_timeout) for _, i in informers))
        for (name, informer), ok in zip(informers, synced, strict=True):
            if not ok:
                where = f" in cluster {name}" if len(self.sites) > 1 else ""
                log.warning(
                    "%s%s not listed yet; releases there are taken up once it is", informer.what, where
                )

    async def stop(self, drain: float) -> None:
        """Stop driving: cancel release tasks at their next await (every step is idempotent and its state
        is in the record, so that is a safe point) and hand the leases back."""
        await self.tasks.stop(0)
        for site in self.sites.values():
            await site.caches.stop()

    def site(self, app: App | str) -> Site:
        """The cluster site of `app` (an App, or an app's name): its client, caches, records, leases."""
        named = app if isinstance(app, App) else self.app(app)
        site = self.sites.get(named.cluster)
        if site is None:
            raise ConfigError(
                f"`{named.name}` runs in cluster `{named.cluster}`, which is not connected here"
            )
        return site

    def _writable(self, app: App) -> Site:
        """The app's site, refused at once (nothing written) while its cluster is known not to answer."""
        site = self.site(app)
        since = site.cluster.unreachable_since
        if since is not None:
            raise refusals.ClusterDown(app.name, site.name, since, len(self.sites) > 1)
        return site

    @staticmethod
    def _cached_record_of(caches: Caches) -> Callable[[str, str], object]:
        def cached(namespace: str, name: str) -> object:
            """A record's ConfigMap from the records cache (None: none), or NOT_KNOWN if it cannot tell."""
            informer = caches.configmaps(namespace, MANAGED_SELECTOR)
            if informer.stale:
                return NOT_KNOWN
            return informer.objects.get(name)

        return cached

    @property
    def busy(self) -> int:
        return len(self._drivers)

    def _on_record(self, cluster: str, kind: str, obj: dict[str, Any]) -> None:
        if kind not in ("ADDED", "MODIFIED") or not is_record(obj):
            return
        try:
            stored = decode(obj)
        except ValueError as e:
            log.warning("unreadable release record %s: %s", obj["metadata"].get("name"), e)
            return
        record = stored.record
        key = (record.namespace, record.app)
        if not record.active and self.reporter.delivered(record.id) is not None:
            return  # its end is being delivered by this process already
        site = self.sites.get(cluster)
        if site is not None and site.store.superseded(record.namespace, record.app, stored.resource_version):
            return  # this process wrote over that version already: what it wrote counts
        wanted = record.needs_driver or stored.gate.moves
        app = self.catalog.apps.get(record.app)
        if app is not None and app.cluster == cluster and wanted and key not in self._drivers:
            self.ensure_driver(*key)

    # --- commands ----------------------------------------------------------------------------------

    def app(self, name: str) -> App:
        try:
            return self.catalog.apps[name]
        except KeyError:
            raise refusals.UnknownApp(name) from None

    async def begin(
        self,
        intent: Release,
        actor: Actor,
        channel_id: str,
        channel_name: str,
        reply_to: str = "",
        front_end: str = "slack",
        roles: Roles = frozenset(),
        promoted: Promoted | None = None,
    ) -> Record | Enqueued:
        """Start a release, or with `--queue` while another runs, put it in the app's queue. `roles`:
        what the person may do beyond releasing (approve, override a freeze, break glass), as the front
        end checked it."""
        app = self.app(intent.app)
        _check_request(app, intent)
        site = self._writable(app)
        if intent.queue:
            entry = Queued(
                id=new_queue_id(),
                intent=intent,
                requester=actor,
                channel_id=channel_id,
                channel_name=channel_name,
                front_end=front_end,
                at=utcnow(),
                roles=tuple(sorted(r.value for r in roles)),
            )
            try:
                state = await site.store.change(
                    app.namespace, app.name, lambda st: _enqueue(st, entry, app.name)
                )
            except _Free:
                pass  # nothing runs and nobody waits: start now
            else:
                position = next(i for i, q in enumerate(state.gate.queue, 1) if q.id == entry.id)
                running = state.record if state.record is not None and state.record.active else None
                await site.audit(
                    action="queue",
                    actor=actor,
                    app=app.name,
                    namespace=app.namespace,
                    deployment=app.deployment,
                    result=f"queued {intent.version} at position {position}",
                    channel_id=channel_id,
                    to_version=intent.version,
                )
                return Enqueued(entry, position, running)
        record = await self._prepare(
            Ask(app, intent, actor, channel_id, channel_name, reply_to, front_end, roles, promoted)
        )
        stored = await site.store.start(record)
        if record.break_glass:
            await self._announce_break_glass(app, stored.record)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    async def _prepare(self, ask: Ask) -> Record:
        """The record of a release about to start: planned on the cluster as it is now (reads only),
        past the stage it must come through, past the freeze (or its override), waiting for approval
        when the app needs it. The plan reads the shared caches. It is made again from the API server
        when a dry-run shows a cache was behind it, and before any refusal: nothing is refused on what
        a cache says alone."""
        site = self.site(ask.app)
        try:
            return await self._plan_record(ask, Reads(site.cluster, site.caches))
        except (Behind, UserError, NotFound) as e:
            log.info("planning %s again from the API server: %s", ask.app.name, e)
            return await self._plan_record(ask, site.cluster)

    async def _plan_record(self, ask: Ask, reads: Reader) -> Record:
        app, intent, actor, roles, promoted = ask.app, ask.intent, ask.actor, ask.roles, ask.promoted
        stage = app.promotion.from_
        if stage is not None and (promoted is None or promoted.source != stage):
            raise refusals.NotThroughStage(app.name, stage, promoted.source if promoted else "")
        strategy = intent.strategy or app.default_strategy
        full = intent.version_kind is VersionKind.IMAGE
        to_image = app.image_for(intent.version, full_reference=full)
        plan = await STRATEGIES[strategy].plan(reads, app, to_image)
        dep = plan.deployment
        missing = next((c for c in app.own_containers if health.container_image(dep, c) is None), None)
        if missing is not None:
            raise refusals.NoContainer(dep["metadata"]["name"], missing)
        from_image = health.container_image(dep, app.container) or ""
        if from_image == to_image and not dep["spec"].get("paused"):
            raise refusals.AlreadyRuns(app.name, intent.version)
        now = utcnow()
        override = ""
        if not intent.break_glass:
            override = _past_freeze(
                app, "release", f"/release {app.name} {intent.version}", intent.reason, roles, now
            )
        record = Record(
            id=new_id(app.name, now),
            app=app.name,
            namespace=app.namespace,
            deployment=dep["metadata"]["name"],
            strategy=strategy,
            from_version=health.version_of(from_image),
            to_version=intent.version,
            from_image=from_image,
            to_image=to_image,
            from_revision=health.revision(dep) or None,
            requester=actor,
            channel_id=ask.channel_id,
            channel_name=ask.channel_name,
            reply_to=ask.reply_to,
            front_end=ask.front_end,
            created_at=now,
            phase_since=now,
            break_glass=intent.break_glass or "",
            override=override,
            promoted=promoted,
        ).entry("requested", actor)
        if intent.break_glass:
            record = record.entry("break-glass", actor, intent.break_glass)
        if override:
            record = record.entry("freeze override", actor, override)
        if app.approvals is not None and not intent.break_glass:
            a = app.approvals
            record = record.model_copy(
                update={
                    "phase": Phase.AWAITING_APPROVAL,
                    "approvals_required": a.required,
                    "approve_self": a.allow_self,
                    "approve_until": now + timedelta(minutes=a.expire_minutes),
                    "approvers": (*a.from_.users, *a.from_.usergroups),
                }
            )
        record = record.model_copy(update=plan.fields)
        owner = preflight.gitops_owner(dep)
        if owner and app.gitops != "allow":
            raise refusals.GitOpsManaged(app.name, dep["metadata"]["name"], owner)
        planned = await self._preflight(app, record, plan, owner, from_image, reads)
        return record.model_copy(update={"preflight": planned})

    async def _preflight(
        self, app: App, record: Record, plan: Plan, gitops: str | None, from_image: str, reads: Reader
    ) -> preflight.Preflight:
        """The plan, by server-side dry-run of exactly the writes that start the release: what the
        API server would store (defaults and mutating webhooks included), or its refusal (a quota,
        a validating webhook, validation) before anything is written. A dry-run answers with the
        version the API server holds: another than the cache's raises Behind."""
        ns, site = app.namespace, self.site(app)
        after = plan.deployment.get("spec", {}).get("template", {})
        first = True  # the template diff is the app's own Deployment's (the first write)
        for write in STRATEGIES[record.strategy].writes(app, record, plan):
            try:
                stored = await self._dry_run(site.cluster, ns, write)
            except KubeConflict:
                continue  # a left-over green the release replaces first: nothing to learn from it
            except (KubeUnavailable, NotFound):
                raise
            except KubeError as e:
                raise refusals.Rejected(f"{write.verb} {write.kind} {write.name}", str(e)) from e
            if isinstance(reads, Reads) and write.verb == "patch":
                reads.check(f"{write.kind}s", ns, write.name, stored["metadata"]["resourceVersion"])
            if write.kind == "deployment" and first:
                after, first = stored["spec"]["template"], False
        autoscalers, quotas, budgets = await asyncio.gather(
            self._optional(reads.autoscalers(ns), "horizontalpodautoscalers"),
            self._optional(reads.quotas(ns), "resourcequotas"),
            self._optional(reads.disruption_budgets(ns), "poddisruptionbudgets"),
        )
        return preflight.build(
            live=plan.deployment,
            after=after,
            steps=plan.steps,
            peak_pods=plan.peak_pods,
            catalog_image=app.image,
            from_image=from_image,
            gitops=gitops,
            autoscalers=autoscalers,
            quotas=quotas,
            budgets=budgets,
            unavailable=_unavailable(
                app, record.strategy, int(plan.deployment["spec"].get("replicas", 1) or 0)
            ),
        )

    @staticmethod
    async def _dry_run(kube: Cluster, ns: str, write: preflight.Write) -> dict[str, Any]:
        """`write` sent with dryRun=All: the object as the API server would store it."""
        if write.kind == "service":
            return await kube.patch_service(ns, write.name, write.body, dry_run=True)
        if write.verb == "create":
            assert isinstance(write.body, dict)
            return await kube.create_deployment(ns, write.body, dry_run=True)
        return await kube.patch_deployment(ns, write.name, write.body, dry_run=True)

    @staticmethod
    async def _optional(read: Awaitable[list[dict[str, Any]]], what: str) -> list[dict[str, Any]]:
        """What the plan only warns about: a read the bot may not be allowed (older charts) is skipped."""
        try:
            return await read
        except KubeUnavailable:
            raise
        except KubeError as e:
            log.info("the pre-flight plan skips %s: %s", what, e)
            return []

    async def preview(
        self,
        intent: Release,
        actor: Actor,
        channel_id: str,
        channel_name: str,
        front_end: str = "slack",
        roles: Roles = frozenset(),
    ) -> tuple[Record, Record | None, Gate]:
        """`--dry-run`: the record a release would start with (its plan computed by server-side
        dry-run), the release running now if any, and the app's lock and queue. Nothing is stored or
        changed."""
        app = self.app(intent.app)
        _check_request(app, intent)
        record = await self._prepare(Ask(app, intent, actor, channel_id, channel_name, "", front_end, roles))
        state = await self.site(app).store.state(app.namespace, app.name)
        running = state.record if state.record is not None and state.record.active else None
        return record, running, state.gate

    async def begin_promotion(
        self,
        intent: Promotion,
        actor: Actor,
        channel_id: str,
        channel_name: str,
        reply_to: str = "",
        front_end: str = "slack",
        roles: Roles = frozenset(),
    ) -> Record:
        """Release to `intent.app` exactly the image `intent.source` runs, once it has run it healthily
        for the target's `promotion.soak_minutes` (refused with the evidence otherwise). Approvals,
        freezes and locks apply as to any release."""
        target, source = self.app(intent.app), self.app(intent.source)
        self._writable(target)
        kube = self.site(source).cluster
        dep = await steps.live_deployment(kube, source)
        pods = await kube.pods(source.namespace, dep["spec"]["selector"]["matchLabels"])
        promoted = promotion.evidence(
            source.name, dep, pods, source.container, target.promotion.soak_minutes, utcnow()
        )
        pinned = "@" in promoted.image
        if health.repository_of(promoted.image) == target.image:
            version = promoted.image.rsplit("@", 1)[1] if pinned else health.version_of(promoted.image)
            kind = VersionKind.DIGEST if pinned else VersionKind.TAG
        elif target.allow_image_override:
            version, kind = promoted.image, VersionKind.IMAGE
        else:
            raise refusals.OtherRepository(source.name, promoted.image, target.name, target.image)
        release = Release(
            app=target.name,
            version=version,
            version_kind=kind,
            strategy=intent.strategy,
            reason=intent.reason,
        )
        started = await self.begin(
            release, actor, channel_id, channel_name, reply_to, front_end, roles, promoted=promoted
        )
        assert isinstance(started, Record)  # a promotion is never queued
        return started

    async def _announce_break_glass(self, app: App, record: Record) -> None:
        event = events.BrokeGlass(by=record.requester.id, reason=record.break_glass)
        channels = [record.channel_id]
        if (
            app.break_glass
            and app.break_glass.announce_channel
            and app.break_glass.announce_channel not in channels
        ):
            channels.append(app.break_glass.announce_channel)
        for channel in channels:
            await self.reporter.broadcast(channel, record, event)
        await self.site(app).audit(
            action="break-glass",
            actor=record.requester,
            app=app.name,
            namespace=app.namespace,
            deployment=record.deployment,
            result=f"approvals and freezes skipped: {record.break_glass}",
            channel_id=record.channel_id,
            to_version=record.to_version,
            warning=True,
        )

    # --- approvals, locks and the queue ------------------------------------------------------------

    async def approve(self, app_name: str, actor: Actor, release_id: str | None = None) -> Record:
        """Count `actor`'s approval of the app's release waiting for approval (the front end checked
        that the person is one of `approvals.from`). `release_id`: the card that was clicked."""
        app = self.app(app_name)

        def change(rec: Record) -> Record:
            _same_release(rec, release_id)
            rec = rec.approve(actor)
            return rec.with_note(
                events.Approved(by=actor.id, count=len(rec.approved_by), required=rec.approvals_required)
            )

        return await self._verdict(
            app,
            actor,
            "approve",
            change,
            lambda r: f"approved ({len(r.approved_by)} of {r.approvals_required})",
        )

    async def deny(
        self, app_name: str, actor: Actor, reason: str = "", release_id: str | None = None
    ) -> Record:
        """End the app's release waiting for approval: an approver said no."""
        app = self.app(app_name)

        def change(rec: Record) -> Record:
            _same_release(rec, release_id)
            if rec.phase is not Phase.AWAITING_APPROVAL:
                raise refusals.NotAwaitingApproval(rec.app, describe_phase(rec.phase))
            why = f"denied by {actor.name}" + (f": {reason}" if reason else "")
            return (
                rec.to(Phase.ABORTED, reason=why)
                .entry("denied", actor, reason)
                .with_note(events.Denied(by=actor.id, reason=reason))
            )

        said = "denied" + (f": {reason}" if reason else "")
        return await self._verdict(app, actor, "deny", change, lambda _: said, warning=True)

    async def _verdict(
        self,
        app: App,
        actor: Actor,
        action: str,
        change: Callable[[Record], Record],
        result: Callable[[Record], str],
        *,
        warning: bool = False,
    ) -> Record:
        """Record an approver's approval or denial (compare-and-set), audit it, and wake the driver."""
        r = (await self.site(app).store.update(app.namespace, app.name, change)).record
        await self.site(app).audit(
            action=action,
            actor=actor,
            app=app.name,
            namespace=app.namespace,
            deployment=r.deployment,
            result=result(r),
            channel_id=r.channel_id,
            from_version=r.from_version,
            to_version=r.to_version,
            warning=warning,
        )
        self.ensure_driver(app.namespace, app.name)
        return r

    async def lock(self, app_name: str, actor: Actor, reason: str, channel_id: str) -> Gate:
        app = self.app(app_name)
        now = utcnow()
        stored = await self.site(app).store.change(
            app.namespace, app.name, lambda st: (st.record, st.gate.locked(app.name, actor, reason, now))
        )
        await self._gate_audit(app, actor, "lock", f"locked: {reason}", channel_id)
        return stored.gate

    async def unlock(self, app_name: str, actor: Actor, channel_id: str) -> Gate:
        """Lift the app's lock, and let a queue paused by a failed release move again."""
        app = self.app(app_name)
        stored = await self.site(app).store.change(
            app.namespace, app.name, lambda st: (st.record, st.gate.unlocked(app.name))
        )
        await self._gate_audit(app, actor, "unlock", "unlocked", channel_id)
        if stored.gate.moves:
            self.ensure_driver(app.namespace, app.name)
        return stored.gate

    async def dequeue(self, app_name: str, actor: Actor, channel_id: str) -> Gate:
        """Take `actor`'s releases off the app's queue."""
        app = self.app(app_name)
        stored = await self.site(app).store.change(
            app.namespace, app.name, lambda st: (st.record, st.gate.without(actor, app.name))
        )
        await self._gate_audit(app, actor, "dequeue", "queued release removed", channel_id)
        return stored.gate

    async def gate(self, app: App, *, fresh: bool = False) -> Gate:
        """The app's lock and queue (from the records cache unless `fresh`)."""
        return (await self.site(app).store.state(app.namespace, app.name, fresh=fresh)).gate

    async def _gate_audit(self, app: App, actor: Actor, action: str, result: str, channel_id: str) -> None:
        await self.site(app).audit(
            action=action,
            actor=actor,
            app=app.name,
            namespace=app.namespace,
            deployment=app.deployment,
            result=result,
            channel_id=channel_id,
        )

    async def history(self, app: App) -> tuple[dict[str, Any], list[Revision]]:
        """The running Deployment and its revisions, newest first (as `kubectl rollout history`)."""
        dep = await self._deployment(app)
        return dep, revisions(await self.site(app).cluster.replica_sets(dep))

    async def _undo_target(self, app: App, to_revision: int | None) -> tuple[dict[str, Any], Revision]:
        """The running Deployment and the revision `kubectl rollout undo [--to-revision]` would restore."""
        dep = await self._deployment(app)
        rs = await self.site(app).cluster.replica_sets(dep)
        plan = undo(dep, rs, to_revision, unpause=True)
        if plan.noop:
            raise refusals.AlreadyRunsRevision(app.name, plan.revision)
        return dep, next(r for r in revisions(rs) if r.number == plan.revision)

    async def preview_undo(self, app: App, to_revision: int | None) -> tuple[int, Revision, str, bool]:
        """(current revision, target revision, current version, paused) for the confirmation question."""
        stored = await self.site(app).store.get(app.namespace, app.name)
        if stored is not None and stored.record.active:
            raise refusals.WhileReleasing(app.name, stored.record.phase.value, "rollback")
        dep, target = await self._undo_target(app, to_revision)
        current = health.container_image(dep, app.container) or ""
        return health.revision(dep), target, health.version_of(current), bool(dep["spec"].get("paused"))

    async def begin_undo(
        self,
        app: App,
        to_revision: int | None,
        actor: Actor,
        channel_id: str,
        channel_name: str,
        seen: int | None,
        reply_to: str = "",
    ) -> Record:
        """Start `kubectl rollout undo [--to-revision]` as a release of its own (one at a time per app).
        `seen` is the revision the person saw running when confirming: if it changed, refuse."""
        site = self._writable(app)
        dep, target = await self._undo_target(app, to_revision)
        current = health.revision(dep)
        if seen is not None and current != seen:
            raise refusals.UndoOfferStale(app.name, current)
        from_image = health.container_image(dep, app.container) or ""
        to_image = health.container_image(target.template, app.container) or ""
        now = utcnow()
        record = Record(
            id=new_id(app.name, now),
            app=app.name,
            namespace=app.namespace,
            deployment=dep["metadata"]["name"],
            strategy=Strategy.ROLLING,
            from_version=health.version_of(from_image),
            to_version=health.version_of(to_image),
            from_image=from_image,
            to_image=to_image,
            from_revision=current or None,
            undo_to=target.number,
            requester=actor,
            channel_id=channel_id,
            channel_name=channel_name,
            reply_to=reply_to,
            created_at=now,
            phase_since=now,
        ).entry("rollback requested", actor, f"to revision {target.number}")
        stored = await site.store.start(record)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    async def set_paused(self, app: App, paused: bool, actor: Actor, channel_id: str) -> None:
        """`kubectl rollout pause|resume`, refused while a release of the app is being driven."""
        stored = await self.site(app).store.get(app.namespace, app.name)
        if stored is not None and stored.record.active:
            raise refusals.WhileReleasing(app.name, stored.record.phase.value, "pause")
        dep = await self._deployment(app)
        if bool(dep["spec"].get("paused")) == paused:
            raise refusals.AlreadyPaused(app.name, paused)
        name = dep["metadata"]["name"]
        await self.site(app).cluster.patch_deployment(app.namespace, name, {"spec": {"paused": paused}})
        verb = "pause" if paused else "resume"
        await self.site(app).audit(
            action=verb,
            actor=actor,
            app=app.name,
            namespace=app.namespace,
            deployment=name,
            result=f"{verb}d",
            channel_id=channel_id,
        )

    async def _deployment(self, app: App) -> dict[str, Any]:
        return await steps.live_deployment(self.site(app).cluster, app)

    async def others(self, app: App) -> list[dict[str, Any]]:
        """The app's other Deployments (`deployments:`) as they are now; missing ones are left out."""
        found = []
        for workload in app.followers:
            with contextlib.suppress(NotFound):
                found.append(await self.site(app).cluster.deployment(app.namespace, workload.name))
        return found

    async def status(self, app: App) -> tuple[dict[str, Any], Stored | None]:
        """The app's Deployment as it is now (as the shared cache has it while its watch is up) and its
        current (or last) release record."""
        site = self.site(app)
        live = await steps.live_deployment(Reads(site.cluster, site.caches), app)
        return live, await site.store.get(app.namespace, app.name)

    async def request(
        self,
        app_name: str,
        request: Request,
        actor: Actor,
        seen: tuple[str, str, int] | None = None,
        *,
        roles: Roles = frozenset(),
        reason: str | None = None,
    ) -> Record:
        """Add a request to the app's current release (compare-and-set: one winner).

        `seen` (release id, phase, step) is what the card showed when its button was clicked: a click on
        a card that no longer matches the release (another release, or someone acted first) is refused,
        so a double click or a Promote racing a Rollback has exactly one effect. A Promote (or Switch
        traffic) also passes the app's gates: an approver other than the requester when its approvals
        say `promote`, and a freeze override (`reason`, with the role) during a freeze."""
        app = self.app(app_name)
        site = self._writable(app)
        now = utcnow()

        def change(record: Record) -> Record:
            if seen is not None:
                release_id, phase, step = seen
                if record.id != release_id:
                    raise refusals.CardOfEarlierRelease(record.app, release_id, record.id, record.phase.value)
                if (record.phase.value, record.step) != (phase, step) or record.request is not None:
                    raise stale_card(record)
            if request is Request.PROMOTE and record.phase is Phase.CANARY and app.canary.analysis_minutes:
                left = app.canary.analysis_minutes * 60 - (utcnow() - record.phase_since).total_seconds()
                if left > 0:
                    raise refusals.PromoteTooEarly(app.name, app.canary.analysis_minutes, left)
            override = ""
            if request is Request.PROMOTE and record.phase in (Phase.CANARY, Phase.AWAITING_SWITCH):
                what = "switch traffic of" if record.phase is Phase.AWAITING_SWITCH else "promote"
                if app.approvals is not None and app.approvals.promote:
                    if actor.id == record.requester.id:
                        raise refusals.PromoteNeedsApprover(app.name, what, requester=True)
                    if Action.APPROVE not in roles:
                        raise refusals.PromoteNeedsApprover(app.name, what, requester=False)
                override = _past_freeze(app, what, f"/release promote {app.name}", reason, roles, now)
            record = record.with_request(request, actor)
            if override:
                window = freeze.active(app.freeze, now)
                record = record.entry("freeze override", actor, override).with_note(
                    events.Overridden(
                        by=actor.id, window=window.name if window else "", action=what, reason=override
                    )
                )
            return record

        stored = await site.store.update(app.namespace, app.name, change)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    # --- driving ---------------------------------------------------------------------------------

    def ensure_driver(self, namespace: str, app: str) -> None:
        """Make sure this app's release is being driven. If this process's driver is just finishing,
        it starts again afterwards (so a release asked for in that moment is not left waiting)."""
        key = (namespace, app)
        if self.tasks.stopping:
            return
        running = self._drivers.get(key)
        if running is not None and not running.done():
            self._again.add(key)
            return
        task = self.tasks.spawn(f"release:{namespace}/{app}", self._drive(namespace, app))
        self._drivers[key] = task
        task.add_done_callback(lambda t: self._driver_done(key, t))

    def _driver_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._drivers.get(key) is task:
            del self._drivers[key]
        if key in self._again:
            self._again.discard(key)
            self.ensure_driver(*key)

    def _retry(self, key: tuple[str, str], delay: float) -> None:
        self.tasks.later(f"retry:{key[0]}/{key[1]}", delay, lambda: self.ensure_driver(*key))

    async def _drive(self, namespace: str, app_name: str) -> None:
        key = (namespace, app_name)
        try:
            claim = await self.site(app_name).leases.acquire(namespace, app_name)
        except KubeError as e:
            log.warning("cannot take the lease of %s/%s yet: %s", namespace, app_name, e)
            self._tell_unreachable(namespace, app_name)
            self._retry_after_failure(key)
            return
        if not claim:
            # Another live process drives it: try again the moment its lease runs out.
            wait = (claim.expires - utcnow()).total_seconds() if claim.expires else self.lease_seconds
            self._retry(key, wait + TAKEOVER_SLACK_S)
            return
        driver = asyncio.current_task()
        renew = self.tasks.spawn(
            f"lease:{namespace}/{app_name}", self._keep_lease(namespace, app_name, driver)
        )
        keep_lease = False
        try:
            await self._drive_held(namespace, app_name)
            self._failures.pop(key, None)
        except asyncio.CancelledError:
            if self.tasks.stopping or not renew.done():
                raise
            # The lease could not be renewed in time: stepped down; take it up again when possible.
            self._tell_unreachable(namespace, app_name)
            self._retry_after_failure(key)
        except Exception as e:
            if isinstance(e, KubeUnavailable):
                # Still ours until it runs out: the next attempt renews it without a transition.
                keep_lease = True
                log.warning("the cluster is unreachable while driving %s/%s: %s", namespace, app_name, e)
                self._tell_unreachable(namespace, app_name)
            else:
                log.exception("driving the release of %s/%s failed; will retry", namespace, app_name)
            self._retry_after_failure(key)
        finally:
            renew.cancel()
            if not keep_lease:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.site(app_name).leases.release(namespace, app_name))

    def _tell_unreachable(self, namespace: str, app_name: str) -> None:
        """Nobody can drive the release while its cluster does not answer: its card says so (from the
        last record seen), instead of showing old facts as if they were current."""
        site = self.site(app_name)
        since = site.cluster.unreachable_since
        obj = site.caches.configmaps(namespace, MANAGED_SELECTOR).objects.get(object_name(app_name))
        if since is None or obj is None or not is_record(obj):
            return
        with contextlib.suppress(ValueError):
            record = decode(obj).record
            if record.active:
                self.reporter.show(record, health.Live(now=utcnow(), unreachable_since=since))

    def _retry_after_failure(self, key: tuple[str, str]) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self._retry(key, min(self.lease_seconds, backoff(n)))

    async def _keep_lease(self, namespace: str, app: str, driver: asyncio.Task[object] | None) -> None:
        """Renew the lease every third of its duration (every second while renewals fail). The driver
        is stopped when another process holds the lease, or when the lease has run out without a
        renewal: an apiserver outage shorter than the lease loses nothing; a longer one steps down."""
        renewed = time.monotonic()
        while True:
            failing = time.monotonic() - renewed > self.lease_seconds / 3 + 1
            await asyncio.sleep(1.0 if failing else self.lease_seconds / 3)
            try:
                # A renewal that hangs must not outlive the lease: wait at most until it runs out.
                async with asyncio.timeout(max(1.0, self.lease_seconds - (time.monotonic() - renewed))):
                    held = await self.site(app).leases.acquire(namespace, app)
            except (KubeError, TimeoutError) as e:
                log.warning("lease renewal for %s/%s failed: %s", namespace, app, e or type(e).__name__)
                if time.monotonic() - renewed >= self.lease_seconds and driver is not None:
                    log.warning("the lease of %s/%s ran out unrenewed; stepping down", namespace, app)
                    driver.cancel()
                    return
                continue
            if not held:
                if driver is not None:
                    log.warning("lost the lease for %s/%s; another process drives it now", namespace, app)
                    driver.cancel()
                return
            renewed = time.monotonic()

    async def _drive_held(self, namespace: str, app_name: str) -> None:
        app = self.app(app_name)
        site = self.site(app)
        while True:
            # The driver acts on current facts: the records cache while its watch is up (or this process's
            # own write it has not shown yet), else a read from the API server. A change the cache has
            # not delivered yet reaches the run by the cache a moment later, and every write is
            # compare-and-set.
            stored = await site.store.get(namespace, app_name)
            if stored is None:
                return
            record = stored.record
            if not record.active:
                if record.autoscaler is not None and not record.autoscaler.restored:
                    # ended by a driver that stopped before giving the autoscaler back
                    async with self._run(site, app, stored) as run:
                        await steps.restore_autoscaler(run, _live_name(record))
                    continue
                if not record.synced:  # finished, but the channel may not show it yet
                    self.reporter.show(record, health.Live(now=utcnow()), final=True)
                if stored.gate.queue and await self._next_in_queue(app, stored):
                    continue
                return
            drive = undo_driver.drive if record.undo_to is not None else STRATEGIES[record.strategy].drive
            async with self._run(site, app, stored) as run:
                if run.record.card_ref is None and not await self._open_card(run, app):
                    continue
                if run.record.phase is Phase.AWAITING_APPROVAL and run.record.request is None:
                    await steps.await_approval(run)
                unstarted = run.record.phase in (Phase.PENDING, Phase.AWAITING_APPROVAL)
                if unstarted and run.record.request is Request.ABORT:
                    await steps.abort_unstarted(run)
                elif run.record.active:  # not ended while it waited for approval
                    refused = await steps.gate_refusal(run, "pre-rollout") if unstarted else None
                    if refused is not None:
                        await steps.refuse_unstarted(run, refused)
                    else:
                        await drive(run)
                if run.record.finished:
                    await steps.restore_autoscaler(run, _live_name(run.record))
                posting = self._posting.get(run.record.id)
                if posting is not None:  # the end is shown on the card: let it be posted first
                    await asyncio.shield(posting)
                final = run.record
                live = run.live()
            self.reporter.show(final, live, final=True)
            # and look again: a request on this record, or the app's next release, may be waiting

    def _run(self, site: Site, app: App, stored: Stored) -> Run:
        """A run of the stored release in its app's cluster site."""
        return Run(
            site.cluster,
            site.caches,
            site.store,
            self.reporter,
            site.audit,
            app,
            stored.record,
            stored,
            self.analyst,
        )

    async def _open_card(self, run: Run, app: App) -> bool:
        """Open the release's card before touching the cluster. When the front end says at once that
        the channel takes the bot's messages, the card is posted in the background and the release
        starts now (a busy channel delays the card, not the rollout); else the release waits for its
        card, honouring an abort asked for meanwhile. A card refused for good ends the release here,
        and the requester is told why. False when the release ended without a card."""
        record = run.record
        if record.id in self._posting:
            return True  # its card is on its way
        first: events.Event = steps.started(app)
        if record.phase is Phase.AWAITING_APPROVAL:
            first = events.ApprovalAsked(
                required=record.approvals_required,
                minutes=app.approvals.expire_minutes if app.approvals else 0,
            )
        try:
            ready = await self.reporter.ready(record)
        except CardRefused as e:
            await self._card_refused(run, e.error)
            return False
        if ready:
            if record.phase is Phase.PENDING:
                run.defer(first)  # written with the release's first change, a moment later
            else:
                await run.save(lambda rec: rec, note=first)
            task = self.tasks.spawn(f"card:{record.id}", self._post_card(run))
            self._posting[record.id] = task
            task.add_done_callback(lambda _: self._posting.pop(record.id, None))
            return True
        post = asyncio.ensure_future(self.reporter.open(record, run.live()))
        aborted = asyncio.ensure_future(run.wait(lambda s: s.record.request is Request.ABORT or None, 1e9))
        try:
            await asyncio.wait({post, aborted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborted.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await aborted
        if not post.done():  # aborted before Slack took the card: nothing was changed
            post.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await post
            await steps.abort_unstarted(run)
            return False
        try:
            ts = post.result()
        except CardRefused as e:
            await self._card_refused(run, e.error)
            return False
        await run.save(setting(card_ref=ts), note=first)
        return True

    async def _post_card(self, run: Run) -> None:
        """Post the card of a release that already runs, and remember where it is. Refused for good
        although the channel took messages a moment ago: the release is stopped (nobody could follow or
        control it there), and the requester told why."""
        record = run.record
        try:
            ts = await self.reporter.open(record, run.live())
        except CardRefused as e:
            error = e.error
            log.warning("the card of %s was refused (%s): stopping the release", record.id, error)
            with contextlib.suppress(UserError):
                await run.save(
                    lambda rec: rec.with_request(Request.ABORT, BOT).entry("card refused", None, error)
                )
            await self.reporter.card_refused(record, error)
            return
        await run.save(setting(card_ref=ts))

    async def _card_refused(self, run: Run, error: str) -> None:
        """The card was refused for good before anything changed: end the release there."""
        record = run.record
        reply_to = record.reply_to
        reason = f"the card could not be posted ({error})"
        await run.save(
            lambda rec: (
                rec.to(Phase.ABORTED, reason=reason)
                .entry("card refused", None, error)
                .model_copy(update={"synced": True})
            )  # there is no card to show it on
        )
        await run.audited("release", record.requester, f"not started: {reason}", warning=True)
        await self.reporter.card_refused(run.record.model_copy(update={"reply_to": reply_to}), error)

    async def _next_in_queue(self, app: App, stored: Stored) -> bool:
        """The app is free: start the head of its queue (True), or pause the queue after a release that
        did not succeed (True: look again), or leave it waiting (False: locked, paused or frozen)."""
        record, gate = stored.record, stored.gate
        key = (app.namespace, app.name)
        if gate.lock is not None:
            return False
        if record.phase is not Phase.SUCCEEDED and record.id != gate.settled:
            waiting = len(gate.queue)

            def pause(st: AppState) -> tuple[Record | None, Gate]:
                if st.record is None or st.record.id != record.id:
                    raise Conflict("another release")
                noted = st.record.with_note(events.QueuePaused(waiting=waiting))
                paused = st.gate.model_copy(update={"paused": record.id, "settled": record.id})
                return noted.model_copy(update={"synced": False}), paused

            with contextlib.suppress(Conflict):
                await self.site(app).store.change(app.namespace, app.name, pause, fresh=True)
            return True
        if gate.paused and (record.phase is not Phase.SUCCEEDED or record.id == gate.paused):
            return False  # paused until a later release succeeds or someone unlocks the app
        head = gate.queue[0]
        try:
            new = await self._prepare(
                Ask(
                    app,
                    head.intent.model_copy(update={"queue": False}),
                    head.requester,
                    head.channel_id,
                    head.channel_name,
                    "",
                    head.front_end,
                    frozenset(Action(r) for r in head.roles),
                )
            )
        except refusals.Frozen as e:
            log.info("the queue of %s/%s waits for the freeze %s to end", *key, e.window)
            self._retry(key, (e.ends - utcnow()).total_seconds() + 1)
            return False
        except UserError as e:
            await self.site(app).store.change(
                app.namespace, app.name, lambda st: (st.record, _drop(st.gate, head.id))
            )
            await self.reporter.queued_refused(head, app.name, e)
            return True

        def start_head(st: AppState) -> tuple[Record | None, Gate]:
            if not st.gate.queue or st.gate.queue[0].id != head.id or st.gate.lock is not None:
                raise Conflict("the queue changed")
            if st.record is not None and not st.record.finished:
                raise busy(st.record)
            settled = st.record.id if st.record is not None else ""
            return new, st.gate.model_copy(
                update={"queue": st.gate.queue[1:], "paused": "", "settled": settled}
            )

        try:
            await self.site(app).store.change(app.namespace, app.name, start_head, fresh=True)
        except (Conflict, UserError):
            return True  # look again at what is there now
        await self.site(app).audit(
            action="release",
            actor=head.requester,
            app=app.name,
            namespace=app.namespace,
            deployment=new.deployment,
            result="started from the queue",
            channel_id=head.channel_id,
            from_version=new.from_version,
            to_version=new.to_version,
        )
        if new.break_glass:
            await self._announce_break_glass(app, new)
        return True

    # --- what the reporter tells us ----------------------------------------------------------------

    async def shown(self, record: Record, notes: int) -> None:
        """The channel shows `record`'s final state and its first `notes` notes: remember it, so no one
        re-sends them."""

        def change(rec: Record) -> Record:
            if rec.id != record.id:
                raise Conflict("another release")
            return rec.model_copy(
                update={"synced": not rec.active, "notes_shown": max(rec.notes_shown, notes)}
            )

        with contextlib.suppress(UserError, KubeError):  # a conflict, or an app no longer in the catalog
            await self.site(record.app).store.update(record.namespace, record.app, change)

    async def card_moved(self, record: Record, ref: str) -> None:
        """The card had to be posted again (someone deleted it): remember where it is now."""

        def change(rec: Record) -> Record:
            if rec.id != record.id:
                raise Conflict("another release")
            return rec.model_copy(update={"card_ref": ref})

        with contextlib.suppress(UserError, KubeError):  # a conflict, or an app no longer in the catalog
            await self.site(record.app).store.update(record.namespace, record.app, change)


def _unavailable(app: App, strategy: Strategy, replicas: int) -> int:
    """Old pods the rollout may take down at once: rolling's maxUnavailable (a canary ends with the same
    rolling update); none for blue-green, whose old colour serves until the switch."""
    if strategy is Strategy.BLUEGREEN:
        return 0
    value = app.rolling.max_unavailable
    return value if isinstance(value, int) else replicas * int(value.rstrip("%")) // 100


def _live_name(record: Record) -> str:
    """The Deployment that runs the app once `record` has ended."""
    if record.strategy is Strategy.BLUEGREEN and record.phase is Phase.SUCCEEDED and record.green:
        return record.green
    return record.deployment


def stale_card(record: Record) -> refusals.StaleCard:
    last = next((e for e in reversed(record.history) if e.actor is not None), None)
    return refusals.StaleCard(
        describe_phase(record.phase),
        last.action if last else "",
        last.actor.name if last and last.actor else "",
    )


TAKEOVER_SLACK_S = 0.25  # after a holder's lease runs out, before trying to take it
BOT = Actor(id="release-bot", name="release-bot")  # the bot itself, when it asks for something


class _Free(Exception):
    """Nothing runs and nobody waits: a `--queue` release starts at once."""


def _check_request(app: App, intent: Release) -> None:
    """What the catalog refuses whatever the cluster says: a strategy or an image override."""
    strategy = intent.strategy or app.default_strategy
    if strategy not in app.strategies:
        raise refusals.StrategyNotAllowed(app.name, strategy.value, tuple(s.value for s in app.strategies))
    if intent.version_kind is VersionKind.IMAGE and not app.allow_image_override:
        raise refusals.NoImageOverride(app.name, app.image)


def _enqueue(state: AppState, entry: Queued, app: str) -> tuple[Record | None, Gate]:
    running = state.record is not None and not state.record.finished
    if not running and not state.gate.queue:
        raise _Free
    state.gate.refuse_if_locked(app)
    return state.record, state.gate.enqueued(entry, app)


def _drop(gate: Gate, entry_id: str) -> Gate:
    return gate.model_copy(update={"queue": tuple(q for q in gate.queue if q.id != entry_id)})


def _same_release(record: Record, release_id: str | None) -> None:
    if release_id is not None and record.id != release_id:
        raise refusals.CardOfEarlierRelease(record.app, release_id, record.id, record.phase.value)


def _past_freeze(app: App, action: str, command: str, reason: str | None, roles: Roles, now: datetime) -> str:
    """ "" when no freeze of the app is on; the override's reason when the person may override it and
    gave one; else the refusal naming the window and its end."""
    window = freeze.active(app.freeze, now)
    if window is None:
        return ""
    may = Action.OVERRIDE in roles
    if reason and may:
        return reason
    if reason:
        raise refusals.NoOverride(app.name, window.name)
    raise refusals.Frozen(app.name, window.name, window.ends, action, may, command)


__all__ = ["Engine", "Phase"]
