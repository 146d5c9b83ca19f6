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
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.catalog import App, Catalog
from bot.errors import Conflict, UserError
from bot.kube.client import Kube, NotFound
from bot.releases import bluegreen, canary, health, rolling
from bot.releases import undo as undo_driver
from bot.releases.audit import Auditor
from bot.releases.history import Revision, revisions, undo
from bot.releases.record import Actor, Phase, Record, Request, new_id, setting, utcnow
from bot.releases.run import Reporter, Run
from bot.releases.store import Leases, Store, Stored
from bot.slack import cards
from commands.intents import Release, Strategy, VersionKind

log = logging.getLogger(__name__)

Strategy_ = Callable[[Run], Awaitable[None]]
STRATEGIES: dict[Strategy, Strategy_] = {
    Strategy.ROLLING: rolling.drive,
    Strategy.CANARY: canary.drive,
    Strategy.BLUEGREEN: bluegreen.drive,
}


class Engine:
    def __init__(
        self,
        kube: Kube,
        catalog: Catalog,
        reporter: Reporter,
        *,
        identity: str,
        lease_seconds: float,
        audit: Auditor,
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.reporter = reporter
        self.store = Store(kube)
        self.leases = Leases(kube, identity, lease_seconds)
        self.audit = audit
        self.lease_seconds = lease_seconds
        self._drivers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._again: set[tuple[str, str]] = set()  # asked for while their driver was finishing
        self._janitor: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.adopt_orphans()
        self._janitor = asyncio.create_task(self._janitor_loop(), name="engine:janitor")

    async def stop(self, drain: float) -> None:
        """Stop driving: cancel release tasks (their state is in the cluster) and hand the leases back."""
        self._stopping = True
        tasks = [t for t in [self._janitor, *self._drivers.values()] if t]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=drain)

    @property
    def busy(self) -> int:
        return len(self._drivers)

    async def adopt_orphans(self) -> None:
        """Drive every unfinished release whose driver is gone (or is this process, restarted)."""
        for ns in sorted(self.catalog.namespaces()):
            try:
                active = await self.store.active(ns)
            except Exception as e:  # a namespace we cannot read must not stop the others
                log.warning("cannot list releases in %s: %s", ns, e)
                continue
            for stored in active:
                if stored.record.app in self.catalog.apps:
                    self.ensure_driver(stored.record.namespace, stored.record.app)

    async def _janitor_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds)
            await self.adopt_orphans()

    # --- commands ----------------------------------------------------------------------------------

    def app(self, name: str) -> App:
        try:
            return self.catalog.apps[name]
        except KeyError:
            raise UserError(cards.unknown_app(name)) from None

    async def begin(self, intent: Release, actor: Actor, channel_id: str, channel_name: str) -> Record:
        app = self.app(intent.app)
        strategy = intent.strategy or app.default_strategy
        if strategy not in app.strategies:
            raise UserError(cards.strategy_not_allowed(app, strategy))
        full = intent.version_kind is VersionKind.IMAGE
        if full and not app.allow_image_override:
            raise UserError(cards.no_image_override(app))
        plan = await self._bluegreen_precheck(app, intent) if strategy is Strategy.BLUEGREEN else None
        dep = plan.blue if plan else await self._deployment(app)
        from_image = health.container_image(dep, app.container)
        if from_image is None:
            raise UserError(cards.no_container(dep["metadata"]["name"], app.container))
        if strategy is Strategy.CANARY and not dep["spec"].get("replicas", 1):
            raise UserError(cards.canary_of_nothing(dep["metadata"]["name"]))
        to_image = app.image_for(intent.version, full_reference=full)
        if from_image == to_image and not dep["spec"].get("paused"):
            raise UserError(cards.already_runs(app.name, intent.version))
        now = utcnow()
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
            channel_id=channel_id,
            channel_name=channel_name,
            created_at=now,
            phase_since=now,
        ).entry("requested", actor)
        if plan is not None:
            record = record.model_copy(update=plan.fields())
        stored = await self.store.start(record)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    async def _bluegreen_precheck(self, app: App, intent: Release) -> bluegreen.Plan:
        """Blue-green: the live colour (whichever Deployment the Service selects, not necessarily the
        catalog's), the green's name and the doubled footprint, or a UserError saying why not."""
        full = intent.version_kind is VersionKind.IMAGE
        return await bluegreen.plan(self.kube, app, app.image_for(intent.version, full_reference=full))

    async def history(self, app: App) -> tuple[dict[str, Any], list[Revision]]:
        """The running Deployment and its revisions, newest first (as `kubectl rollout history`)."""
        dep = await self._deployment(app)
        return dep, revisions(await self.kube.replica_sets(dep))

    async def _undo_target(self, app: App, to_revision: int | None) -> tuple[dict[str, Any], Revision]:
        """The running Deployment and the revision `kubectl rollout undo [--to-revision]` would restore."""
        dep = await self._deployment(app)
        rs = await self.kube.replica_sets(dep)
        plan = undo(dep, rs, to_revision, unpause=True)
        if plan.noop:
            raise UserError(cards.already_runs_revision(app.name, plan.revision))
        return dep, next(r for r in revisions(rs) if r.number == plan.revision)

    async def preview_undo(self, app: App, to_revision: int | None) -> tuple[int, Revision, str, bool]:
        """(current revision, target revision, current version, paused) for the confirmation question."""
        stored = await self.store.get(app.namespace, app.name)
        if stored is not None and stored.record.active:
            raise Conflict(cards.undo_while_releasing(stored.record))
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
    ) -> Record:
        """Start `kubectl rollout undo [--to-revision]` as a release of its own (one at a time per app).
        `seen` is the revision the person saw running when confirming: if it changed, refuse."""
        dep, target = await self._undo_target(app, to_revision)
        current = health.revision(dep)
        if seen is not None and current != seen:
            raise Conflict(cards.undo_offer_stale(app.name, current))
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
            created_at=now,
            phase_since=now,
        ).entry("rollback requested", actor, f"to revision {target.number}")
        stored = await self.store.start(record)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    async def set_paused(self, app: App, paused: bool, actor: Actor, channel_id: str) -> None:
        """`kubectl rollout pause|resume`, refused while a release of the app is being driven."""
        stored = await self.store.get(app.namespace, app.name)
        if stored is not None and stored.record.active:
            raise Conflict(cards.pause_while_releasing(stored.record))
        dep = await self._deployment(app)
        if bool(dep["spec"].get("paused")) == paused:
            raise UserError(cards.already_paused(app.name, paused))
        name = dep["metadata"]["name"]
        await self.kube.patch_deployment(app.namespace, name, {"spec": {"paused": paused}})
        verb = "pause" if paused else "resume"
        await self.audit(
            action=verb,
            actor=actor,
            app=app.name,
            namespace=app.namespace,
            deployment=name,
            result=f"{verb}d",
            channel_id=channel_id,
        )

    async def _deployment(self, app: App) -> dict[str, Any]:
        """The Deployment that runs the app now: the catalog's or, for an app released blue-green, the
        colour its Service selects (after `hexo` → `hexo-v2.0`, rolling releases, canaries, history,
        undo and pause act on `hexo-v2.0`)."""
        if Strategy.BLUEGREEN in app.strategies and app.service:
            try:
                service = await self.kube.service(app.namespace, app.service)
                return bluegreen.find_live(app, service, await self.kube.deployments(app.namespace))
            except (NotFound, UserError):
                pass  # no Service or no clear live colour: the catalog's Deployment is the app
        try:
            return await self.kube.deployment(app.namespace, app.deployment)
        except NotFound:
            raise UserError(cards.no_deployment(app)) from None

    async def status(self, app: App) -> tuple[dict[str, Any], Stored | None]:
        """The app's Deployment as it is now and its current (or last) release record."""
        return await self._deployment(app), await self.store.get(app.namespace, app.name)

    async def request(
        self, app_name: str, request: Request, actor: Actor, seen: tuple[str, str, int] | None = None
    ) -> Record:
        """Add a request to the app's current release (compare-and-set: one winner).

        `seen` (release id, phase, step) is what the card showed when its button was clicked: a click on
        a card that no longer matches the release (another release, or someone acted first) is refused,
        so a double click or a Promote racing a Rollback has exactly one effect."""
        app = self.app(app_name)

        def change(record: Record) -> Record:
            if seen is not None:
                release_id, phase, step = seen
                if record.id != release_id:
                    raise Conflict(cards.card_of_earlier_release(record, release_id))
                if (record.phase.value, record.step) != (phase, step) or record.request is not None:
                    raise Conflict(cards.stale_card(record))
            if request is Request.PROMOTE and record.phase is Phase.CANARY and app.canary.analysis_minutes:
                left = app.canary.analysis_minutes * 60 - (utcnow() - record.phase_since).total_seconds()
                if left > 0:
                    raise Conflict(cards.promote_too_early(app, left))
            return record.with_request(request, actor)

        stored = await self.store.update(app.namespace, app.name, change)
        self.ensure_driver(app.namespace, app.name)
        return stored.record

    # --- driving -----------------------------------------------------------------------------------

    def ensure_driver(self, namespace: str, app: str) -> None:
        """Make sure this app's release is being driven. If this process's driver is just finishing,
        it starts again afterwards (so a release asked for in that moment is not left waiting)."""
        key = (namespace, app)
        if self._stopping:
            return
        running = self._drivers.get(key)
        if running is not None and not running.done():
            self._again.add(key)
            return
        task = asyncio.create_task(self._drive(namespace, app), name=f"release:{namespace}/{app}")
        self._drivers[key] = task
        task.add_done_callback(lambda t: self._driver_done(key, t))

    def _driver_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._drivers.get(key) is task:
            del self._drivers[key]
        if key in self._again:
            self._again.discard(key)
            self.ensure_driver(*key)

    async def _drive(self, namespace: str, app_name: str) -> None:
        if not await self.leases.acquire(namespace, app_name):
            return  # another live process drives it
        renew = asyncio.create_task(self._keep_lease(namespace, app_name, asyncio.current_task()))
        try:
            await self._drive_held(namespace, app_name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("driving the release of %s/%s failed; will retry", namespace, app_name)
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.leases.release(namespace, app_name))

    async def _keep_lease(self, namespace: str, app: str, driver: asyncio.Task[object] | None) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                held = await self.leases.acquire(namespace, app)
            except Exception as e:
                log.warning("lease renewal for %s/%s failed: %s", namespace, app, e)
                continue
            if not held and driver is not None:
                log.warning("lost the lease for %s/%s; another process drives it now", namespace, app)
                driver.cancel()
                return

    async def _drive_held(self, namespace: str, app_name: str) -> None:
        app = self.app(app_name)
        while True:
            stored = await self.store.get(namespace, app_name)
            if stored is None:
                return
            record = stored.record
            if record.card_ts is None:
                ts = await self.reporter.open(record, health.Live(now=utcnow()))
                record = (await self.store.update(namespace, app_name, setting(card_ts=ts))).record
                await self.reporter.note(record, cards.milestone_started(record, app))
            if not record.active:
                return
            drive = undo_driver.drive if record.undo_to is not None else STRATEGIES[record.strategy]
            async with Run(self.kube, self.store, self.reporter, self.audit, app, record) as run:
                await drive(run)
                final = run.record
                live = run.live()
            await self.reporter.final(final, live)
            # and look again: a request on this record, or the app's next release, may be waiting


__all__ = ["Engine", "Phase"]
