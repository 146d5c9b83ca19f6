"""Release records kept in the cluster, changed only by compare-and-set.

Each app has one ConfigMap `release-bot.<app>` in its namespace holding the record of its current (or
last) release as JSON, readable with `kubectl get configmap release-bot.hexo -o yaml`. Its
resourceVersion is the lock: starting a release while the record is unfinished is refused, and every
change carries the resourceVersion it was based on, so of two racing writers exactly one wins.

Who *drives* a release (runs the strategy coroutine) is decided by a coordination.k8s.io Lease per app
(`release-bot.<app>`), held by one bot process and renewed while it works: a crashed driver's lease
expires and any replica takes over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.kube.client import KubeConflict, Obj
from bot.releases import refusals
from bot.releases.gate import Gate
from bot.releases.objects import MANAGED_BY
from bot.releases.ports import Cluster
from bot.releases.record import Record

APP_LABEL = "release-bot.io/app"
ACTIVE_LABEL = "release-bot.io/active"


def object_name(app: str) -> str:
    return f"release-bot.{app}"


@dataclass(frozen=True)
class Stored:
    record: Record
    resource_version: str
    gate: Gate = field(default_factory=Gate)  # the app's lock and queue, kept beside the record


@dataclass(frozen=True)
class AppState:
    """The whole of an app's ConfigMap: its record (None: never released by the bot) and its gate."""

    record: Record | None
    gate: Gate
    resource_version: str | None  # None: the ConfigMap does not exist yet


# What the records cache says of an app's record: its ConfigMap (None: there is none), or NOT_KNOWN when
# the cache cannot tell (not listed yet, or its watch is down).
NOT_KNOWN = object()
Lookup = Callable[[str, str], object]  # a ConfigMap, None or NOT_KNOWN


class Store:
    """Release records. Reads come from the records cache when it can tell (`lookup`), else from the API
    server; every write is compare-and-set, so a cache that lags only costs a retry, never a wrong
    write."""

    def __init__(self, kube: Cluster, lookup: Lookup | None = None) -> None:
        self.kube = kube
        self.lookup = lookup
        # This process's last write of each app's ConfigMap (the resourceVersion it replaced, what it
        # wrote), kept until the cache shows it: meanwhile a cache still at the replaced version is one
        # write behind, and the write itself is the current state.
        self._mine: dict[tuple[str, str], tuple[str | None, Obj]] = {}

    async def _configmap(self, namespace: str, app: str, fresh: bool) -> Obj | None:
        cm = NOT_KNOWN if fresh or self.lookup is None else self._cached(namespace, app)
        if cm is NOT_KNOWN:
            cm = await self.kube.configmap(namespace, object_name(app))
        return cm if isinstance(cm, dict) else None

    def _cached(self, namespace: str, app: str) -> object:
        """The ConfigMap as the records cache says, or as this process just wrote it while the cache
        has not seen that write yet; NOT_KNOWN when neither can tell (someone else wrote since)."""
        assert self.lookup is not None
        cm = self.lookup(namespace, object_name(app))
        mine = self._mine.get((namespace, app))
        if cm is NOT_KNOWN or mine is None:
            return cm
        replaced, written = mine
        seen = cm["metadata"]["resourceVersion"] if isinstance(cm, dict) else None
        if seen == replaced:
            return written  # the cache has not caught up with this process's own write yet
        del self._mine[(namespace, app)]
        return cm if seen == written["metadata"]["resourceVersion"] else NOT_KNOWN

    def superseded(self, namespace: str, app: str, resource_version: str) -> bool:
        """Whether this process has written over that version of the app's ConfigMap already (a cache
        that delivers it now is late)."""
        mine = self._mine.get((namespace, app))
        return mine is not None and mine[0] == resource_version

    def _wrote(self, namespace: str, app: str, replaced: str | None, cm: Obj) -> Obj:
        self._mine[(namespace, app)] = (replaced, cm)
        return cm

    async def get(self, namespace: str, app: str, *, fresh: bool = False) -> Stored | None:
        cm = await self._configmap(namespace, app, fresh)
        return decode(cm) if cm is not None and is_record(cm) else None

    async def state(self, namespace: str, app: str, *, fresh: bool = False) -> AppState:
        return state_of(await self._configmap(namespace, app, fresh))

    async def start(self, record: Record) -> Stored:
        """Store a new release, refusing while another release of the app is unfinished (AppBusy) or
        the app is locked (Locked)."""
        state = await self.change(
            record.namespace, record.app, lambda current: (record, _startable(current, record.app))
        )
        assert state.record is not None and state.resource_version is not None
        return Stored(state.record, state.resource_version, state.gate)

    async def change(
        self,
        namespace: str,
        app: str,
        change: Callable[[AppState], tuple[Record | None, Gate]],
        *,
        fresh: bool = False,
    ) -> AppState:
        """Change the app's record and gate together by compare-and-set (re-applied on a lost race;
        `change` may raise a refusal to give up). Returns what was written."""
        for attempt in range(5):
            current = await self.state(namespace, app, fresh=fresh or attempt > 0)
            try:
                record, gate = change(current)
            except Exception:
                if fresh or attempt > 0:
                    raise
                continue  # refused on what the cache says: confirm on a fresh read first
            base = current.resource_version
            try:
                if base is None:
                    cm = await self.kube.create_configmap(
                        namespace, _encode(namespace, app, record, gate, None)
                    )
                else:
                    cm = await self.kube.replace_configmap(
                        namespace, _encode(namespace, app, record, gate, base)
                    )
            except KubeConflict:
                continue
            return state_of(self._wrote(namespace, app, base, cm))
        raise refusals.TooBusy(app)

    async def put(self, record: Record, base: Stored) -> Stored:
        """Replace the record if the ConfigMap is still as `base` read it; KubeConflict otherwise."""
        ns, app = record.namespace, record.app
        cm = await self.kube.replace_configmap(ns, _encode(ns, app, record, base.gate, base.resource_version))
        return decode(self._wrote(ns, app, base.resource_version, cm))

    async def update(
        self, namespace: str, app: str, change: Callable[[Record], Record], known: Stored | None = None
    ) -> Stored:
        """Read, change and write back; on a lost race re-read and apply again (change may raise
        Conflict to give up, e.g. when the state no longer allows the request). `known`, the record as
        last seen, saves the read when it is still current (compare-and-set tells)."""
        for attempt in range(5):
            current = (
                known
                if attempt == 0 and known is not None
                else await self.get(namespace, app, fresh=attempt > 0)
            )
            if current is None and attempt == 0:  # the cache may not have seen it yet
                current = await self.get(namespace, app, fresh=True)
            if current is None:
                raise refusals.NoRelease(app)
            try:
                return await self.put(change(current.record), current)
            except KubeConflict:
                continue
        raise refusals.TooBusy(app)


def busy(record: Record) -> refusals.AppBusy:
    return refusals.AppBusy(
        record.app, record.to_version, record.strategy.value, record.requester.name, record.phase.value
    )


def _startable(current: AppState, app: str) -> Gate:
    """The gate, if a new release of the app may start now; else the refusal that says why not."""
    if current.record is not None and not current.record.finished:
        raise busy(current.record)
    current.gate.refuse_if_locked(app)
    return current.gate


def _encode(namespace: str, app: str, record: Record | None, gate: Gate, resource_version: str | None) -> Obj:
    meta: dict[str, Any] = {
        "name": object_name(app),
        "namespace": namespace,
        "labels": {
            **MANAGED_BY,
            APP_LABEL: app,
            ACTIVE_LABEL: "true" if record is not None and record.active else "false",
        },
        "annotations": {"release-bot.io/release-id": record.id if record is not None else ""},
    }
    if resource_version is not None:
        meta["resourceVersion"] = resource_version
    data: dict[str, str] = {}
    if record is not None:
        data = {"record.json": record.model_dump_json(indent=1), "phase": record.phase.value}
    if gate != Gate():
        data["gate.json"] = gate.model_dump_json(indent=1)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def decode(cm: Obj) -> Stored:
    record = Record.model_validate(json.loads(cm["data"]["record.json"]))
    return Stored(record, cm["metadata"]["resourceVersion"], _gate(cm))


def _gate(cm: Obj) -> Gate:
    raw = (cm.get("data") or {}).get("gate.json")
    return Gate.model_validate(json.loads(raw)) if raw else Gate()


def state_of(cm: Obj | None) -> AppState:
    if cm is None:
        return AppState(None, Gate(), None)
    record = decode(cm).record if is_record(cm) else None
    return AppState(record, _gate(cm), cm["metadata"]["resourceVersion"])


def is_record(cm: Obj) -> bool:
    """A ConfigMap of ours that holds a release record (the caches watch every managed ConfigMap)."""
    return APP_LABEL in (cm.get("metadata", {}).get("labels") or {}) and "record.json" in (
        cm.get("data") or {}
    )


# --- Driver leases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to take an app's lease."""

    held: bool
    expires: datetime | None = None  # not held: when the holder's lease runs out (if it says)

    def __bool__(self) -> bool:
        return self.held


class Leases:
    """One Lease per app says which bot process drives its release."""

    def __init__(self, kube: Cluster, identity: str, duration: float) -> None:
        self.kube = kube
        self.identity = identity
        self.duration = duration
        self._held: dict[tuple[str, str], Obj] = {}  # our leases as last written: renewals skip the read
        # Leases we handed back, as written: the app's next release takes it without reading it first
        # (a copy someone changed since fails its compare-and-set, and is then read).
        self._released: dict[tuple[str, str], Obj] = {}

    async def acquire(self, namespace: str, app: str) -> Claim:
        """Take (or renew) the app's lease if it is free, expired or already ours. When another
        process holds it, the claim says when that holder's lease runs out (so it can be tried again
        then, instead of on a fixed period). A renewal starts from the lease as this process last
        wrote it, and reads it only when that copy turns out to be stale."""
        cached = self._held.pop((namespace, app), None) or self._released.pop((namespace, app), None)
        if cached is not None:
            claim = await self._claim(namespace, app, cached)
            if claim.held or claim.expires is not None:
                return claim
        return await self._claim(namespace, app, await self.kube.lease(namespace, object_name(app)))

    async def _claim(self, namespace: str, app: str, lease: Obj | None) -> Claim:
        now = datetime.now(UTC)
        name = object_name(app)
        key = (namespace, app)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "renewTime": _micro(now),
        }
        try:
            if lease is None:
                spec["acquireTime"] = _micro(now)
                self._held[key] = await self.kube.create_lease(
                    namespace,
                    {"metadata": {"name": name, "namespace": namespace, "labels": MANAGED_BY}, "spec": spec},
                )
                return Claim(True)
            current = lease.get("spec", {})
            holder = current.get("holderIdentity")
            if holder and holder != self.identity and not _expired(current, now):
                return Claim(False, _expiry(current))
            if holder != self.identity:
                spec["acquireTime"] = _micro(now)
                spec["leaseTransitions"] = current.get("leaseTransitions", 0) + 1
            lease["spec"] = {**current, **spec}
            self._held[key] = await self.kube.replace_lease(namespace, lease)
            return Claim(True)
        except KubeConflict:
            return Claim(False)

    async def release(self, namespace: str, app: str) -> None:
        """Hand the lease back (holder none) so another process may take it at once."""
        cached = self._held.pop((namespace, app), None)
        for lease in (cached, None) if cached is not None else (None,):
            lease = lease or await self.kube.lease(namespace, object_name(app))
            if not lease or lease.get("spec", {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            try:
                self._released[(namespace, app)] = await self.kube.replace_lease(namespace, lease)
                return
            except KubeConflict:
                continue  # the copy was stale: read it and try once more


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry(spec: dict[str, Any]) -> datetime | None:
    renew = spec.get("renewTime")
    if not renew:
        return None
    renewed = datetime.strptime(renew.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or 15)


def _expired(spec: dict[str, Any], now: datetime) -> bool:
    expiry = _expiry(spec)
    return expiry is None or now > expiry
