"""A release being driven: the live view of its cluster objects and record, and the verbs strategies use.

While a strategy runs, three watches (the Deployment, its pods, the release record) keep a snapshot
current; `wait` wakes on every change, so a Promote click or a pod turning Ready is seen at once, and
every wait has a deadline. The card is refreshed (coalesced by the reporter) on every change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from bot.catalog import App
from bot.kube.client import Kube, Obj
from bot.releases import health
from bot.releases.audit import Auditor
from bot.releases.health import Live
from bot.releases.record import Record, utcnow
from bot.releases.store import Store, decode, object_name

log = logging.getLogger(__name__)
T = TypeVar("T")


class Reporter(Protocol):
    """How the engine shows a release in Slack (implemented in bot.slack.reporter)."""

    async def open(self, record: Record, live: Live) -> str: ...  # post the card, return its ts
    def card(self, record: Record, live: Live) -> None: ...  # coalesced card update
    async def final(self, record: Record, live: Live) -> None: ...  # card update now
    async def note(self, record: Record, text: str) -> None: ...  # a milestone in the thread
    async def permalink(self, record: Record) -> str: ...
    async def announce(self, channel: str, text: str) -> None: ...  # a message without a card


@dataclass
class Snapshot:
    record: Record
    deployment: Obj | None = None
    pods: dict[str, Obj] = field(default_factory=dict)


class Run:
    def __init__(
        self, kube: Kube, store: Store, reporter: Reporter, audit: Auditor, app: App, record: Record
    ) -> None:
        self.kube, self.store, self.reporter, self.audit, self.app = kube, store, reporter, audit, app
        self.snap = Snapshot(record)
        self._changed = asyncio.Condition()
        self._watchers: list[asyncio.Task[None]] = []
        self.deployment_name = record.deployment

    @property
    def record(self) -> Record:
        return self.snap.record

    # --- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Run:
        ns = self.record.namespace
        dep = await self.kube.deployment(ns, self.record.deployment)
        self.snap.deployment = dep
        selector = dep["spec"]["selector"]["matchLabels"]
        self._watch(
            "deployment", self.kube.deployment_events(ns, self.record.deployment), self._on_deployment
        )
        self._watch("pods", self.kube.pod_events(ns, selector), self._on_pod)
        self._watch("record", self.kube.configmap_events(ns, object_name(self.record.app)), self._on_record)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._watchers:
            t.cancel()
        for t in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def _watch(
        self, name: str, events: AsyncIterator[tuple[str, Obj]], apply: Callable[[str, Obj], None]
    ) -> None:
        async def pump() -> None:
            async for kind, obj in events:
                if kind == "SYNCED":
                    continue
                apply(kind, obj)
                async with self._changed:
                    self._changed.notify_all()

        task = asyncio.create_task(pump(), name=f"watch:{self.record.id}:{name}")
        task.add_done_callback(self._watch_ended)
        self._watchers.append(task)

    def _watch_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("watch %s failed: %s", task.get_name(), task.exception())

    def _on_deployment(self, kind: str, obj: Obj) -> None:
        if kind != "DELETED":
            self.snap.deployment = obj
            self.refresh_card()

    def _on_pod(self, kind: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.snap.pods.pop(name, None)
        else:
            self.snap.pods[name] = obj
        self.refresh_card()

    def _on_record(self, kind: str, obj: Obj) -> None:
        if kind == "DELETED":
            return
        stored = decode(obj)
        if stored.record.id == self.record.id and len(stored.record.history) >= len(self.record.history):
            self.snap.record = stored.record
            self.refresh_card()

    # --- what strategies use -----------------------------------------------------------------------

    async def follow(self, deployment: str, pod_selector: dict[str, str]) -> None:
        """Watch another Deployment (which need not exist yet) and the pods `pod_selector` matches
        instead of the record's: blue-green follows the green Deployment it creates."""
        old = [t for t in self._watchers if t.get_name().endswith((":deployment", ":pods"))]
        for t in old:
            t.cancel()
        for t in old:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._watchers = [t for t in self._watchers if t not in old]
        ns = self.record.namespace
        self.deployment_name = deployment
        self.snap.deployment, self.snap.pods = None, {}
        self._watch("deployment", self.kube.deployment_events(ns, deployment), self._on_deployment)
        self._watch("pods", self.kube.pod_events(ns, pod_selector), self._on_pod)

    def live(self) -> Live:
        dep = self.snap.deployment
        progress = health.progress(dep) if dep else None
        new = health.pods_running(list(self.snap.pods.values()), self.app.container, self.record.to_image)
        return Live(progress=progress, new_pods=health.pod_health(new) if new else None, now=utcnow())

    def refresh_card(self) -> None:
        if self.record.card_ts:
            self.reporter.card(self.record, self.live())

    async def wait(self, until: Callable[[Snapshot], T | None], timeout: float) -> T:
        """Wait until `until(snapshot)` returns a value; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                found = until(self.snap)
                if found is not None:
                    return found
                await self._changed.wait()

    async def save(self, change: Callable[[Record], Record]) -> Record:
        """Change the record by compare-and-set (re-applied on a lost race) and show it."""
        stored = await self.store.update(self.record.namespace, self.record.app, change)
        self.snap.record = stored.record
        self.refresh_card()
        async with self._changed:
            self._changed.notify_all()
        return stored.record

    async def note(self, text: str) -> None:
        await self.reporter.note(self.record, text)

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
            warning=warning,
            strategy="rollback" if r.undo_to is not None else r.strategy.value,
            duration=((r.finished_at or utcnow()) - r.created_at).total_seconds(),
        )
