"""The engine and every strategy's state machine, against the in-memory cluster (tests/unit/memory_cluster)
and an in-memory reporter: whole releases in a fraction of a second. The same flows run against the
real control plane in tests/integration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.releases import events
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.gate import Queued
from bot.releases.health import Live
from bot.releases.ports import Shown
from bot.releases.record import Actor, Phase, Record, Request
from bot.releases.refusals import AppBusy, CanaryOfNothing
from commands.intents import Release, Strategy
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster

NS = "devops"
ALICE = Actor(id="U0ALICE", name="alice")
BOB = Actor(id="U0BOB", name="bob")
USERS = {"alice": ALICE.id, "bob": BOB.id, "mallory": "U0MALLORY"}


class MemoryReporter:
    """Records what a front end would be asked to show."""

    def __init__(self) -> None:
        self.listener: Shown | None = None
        self.shown: list[Record] = []
        self.lives: list[Live] = []
        self.announced: list[tuple[str, str]] = []
        self.hold: asyncio.Event | None = None
        self.opened: list[str] = []

    def attach(self, listener: Shown) -> None:
        self.listener = listener

    async def ready(self, record: Record) -> bool:
        return True

    async def open(self, record: Record, live: Live) -> str:
        if self.hold is not None:  # a busy channel: the card waits its turn
            await self.hold.wait()
        self.opened.append(record.id)
        return f"card:{record.id}"

    def show(self, record: Record, live: Live, *, final: bool = False) -> None:
        self.shown.append(record)
        self.lives.append(live)

    def delivered(self, release_id: str) -> int | None:
        return None

    async def card_refused(self, record: Record, error: str) -> None:
        raise AssertionError("the in-memory front end never refuses a card")

    async def permalink(self, record: Record) -> str:
        return ""

    async def announce(self, channel: str, text: str) -> None:
        self.announced.append((channel, text))

    async def broadcast(self, channel: str, record: Record, event: events.Event) -> None:
        self.announced.append((channel, repr(event)))

    async def queued_refused(self, entry: Queued, app: str, refusal: Exception) -> None:
        self.announced.append((entry.channel_id, str(refusal)))


@pytest.fixture
async def world() -> AsyncIterator[tuple[MemoryCluster, Engine, MemoryReporter]]:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    reporter = MemoryReporter()
    catalog = Catalog.from_mapping(hexo.catalog(NS, USERS))
    engine = Engine(cluster, catalog, reporter, identity="unit", lease_seconds=15, audit=Auditor(cluster))
    await engine.start(sync_timeout=1)
    try:
        yield cluster, engine, reporter
    finally:
        await engine.stop(0)


def record_of(cluster: MemoryCluster) -> Record:
    cm = cluster.objects["configmaps"][(NS, "release-bot.hexo")]
    return Record.model_validate(json.loads(cm["data"]["record.json"]))


async def until(cluster: MemoryCluster, check: Callable[[Record], bool], timeout: float = 5) -> Record:
    """Wait, on the record's own watch, until `check(record)` holds."""
    async with asyncio.timeout(timeout):
        async for kind, obj in cluster.stream_of("configmaps", NS):
            if kind in ("ADDED", "MODIFIED") and obj["metadata"]["name"] == "release-bot.hexo":
                record = Record.model_validate(json.loads(obj["data"]["record.json"]))
                if check(record):
                    return record
    raise AssertionError("unreachable")


def images(cluster: MemoryCluster) -> dict[str, int]:
    out: dict[str, int] = {}
    for pod in cluster.objects["pods"].values():
        tag = pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
        out[tag] = out.get(tag, 0) + 1
    return out


async def test_a_rolling_release_succeeds(world: tuple[MemoryCluster, Engine, MemoryReporter]) -> None:
    cluster, engine, reporter = world
    await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
    assert images(cluster) == {"v2.0": 6}
    kinds = [type(e) for e in done.notes]
    assert kinds == [events.Started, events.Succeeded]
    dep = cluster.objects["deployments"][(NS, "hexo")]
    assert (
        "release-bot: alice (U0ALICE) released v2.0 (rolling)"
        in dep["metadata"]["annotations"]["kubernetes.io/change-cause"]
    )
    assert reporter.opened == [done.id]


async def test_a_canary_from_start_to_promote(world: tuple[MemoryCluster, Engine, MemoryReporter]) -> None:
    cluster, engine, _ = world
    await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
    first = await until(cluster, lambda r: r.phase is Phase.CANARY)
    assert images(cluster) == {"v2.0": 1, "v1.0": 6}
    assert isinstance(first.notes[-1], events.CanaryStep) and first.notes[-1].updated == 1
    steps = 0
    while (current := record_of(cluster)).phase is not Phase.SUCCEEDED:
        if current.phase is Phase.CANARY and current.request is None:
            await engine.request("hexo", Request.PROMOTE, BOB)
            steps += 1
        step = current.step

        def moved_on(r: Record, step: int = step) -> bool:
            return r.phase is Phase.SUCCEEDED or (r.phase is Phase.CANARY and r.step > step)

        await until(cluster, moved_on)
    assert steps == 1  # the default canary: one pod, then (one Promote) everything
    assert images(cluster) == {"v2.0": 6}
    assert any(
        isinstance(e, events.Acted) and e.action == "promote" and e.by == BOB.id
        for e in record_of(cluster).notes
    )


async def test_a_dropped_watch_shows_on_the_card_at_once_and_decides_nothing(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, reporter = world
    await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
    await until(cluster, lambda r: r.phase is Phase.CANARY)
    await asyncio.sleep(0.05)
    shown = len(reporter.lives)
    cluster.drop_watches()
    for _ in range(100):
        if any(live.unreachable_since is not None for live in reporter.lives[shown:]):
            break
        await asyncio.sleep(0.01)
    # No other change happened: the drop alone refreshed the card, and it says the facts may be stale.
    assert any(live.unreachable_since is not None for live in reporter.lives[shown:])
    assert record_of(cluster).phase is Phase.CANARY
    cluster.restore_watches()
    for _ in range(100):
        if reporter.lives[-1].unreachable_since is None:
            break
        await asyncio.sleep(0.01)
    assert reporter.lives[-1].unreachable_since is None


async def test_a_busy_channel_delays_the_card_not_the_rollout(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, reporter = world
    reporter.hold = asyncio.Event()
    await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
    assert done.card_ref is None and reporter.opened == []  # the rollout ran while the card waited
    assert images(cluster) == {"v2.0": 6}
    reporter.hold.set()
    shown = await until(cluster, lambda r: r.card_ref is not None)
    assert shown.phase is Phase.SUCCEEDED and reporter.opened == [shown.id]
    for _ in range(100):  # the card then shows the end
        if any(r.phase is Phase.SUCCEEDED and r.card_ref for r in reporter.shown):
            break
        await asyncio.sleep(0.01)
    assert any(r.phase is Phase.SUCCEEDED and r.card_ref for r in reporter.shown)


async def test_a_crash_looping_version_is_rolled_back(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = world
    await engine.begin(Release(app="hexo", version="v2.0-broken"), ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.finished)
    assert done.phase is Phase.ROLLED_BACK
    assert "CrashLoopBackOff" in done.reason
    assert images(cluster) == {"v1.0": 6}
    assert [type(e) for e in done.notes][-2:] == [events.Failed, events.RolledBack]


async def test_rollback_of_a_canary_restores_the_old_version(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = world
    await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
    await until(cluster, lambda r: r.phase is Phase.CANARY)
    await engine.request("hexo", Request.ROLLBACK, BOB)
    done = await until(cluster, lambda r: r.finished)
    assert done.phase is Phase.ROLLED_BACK
    assert images(cluster) == {"v1.0": 6}
    assert not cluster.objects["deployments"][(NS, "hexo")]["spec"].get("paused")


async def test_a_blue_green_release_switches_then_finishes(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = world
    await engine.begin(
        Release(app="hexo", version="v2.0", strategy=Strategy.BLUEGREEN), ALICE, "C1", "releases"
    )
    await until(cluster, lambda r: r.phase is Phase.AWAITING_SWITCH)
    assert (NS, "hexo-green") in cluster.objects["deployments"]
    await engine.request("hexo", Request.PROMOTE, BOB)
    await until(cluster, lambda r: r.phase is Phase.SWITCHED)
    assert cluster.objects["services"][(NS, "hexo-service")]["spec"]["selector"]["version"] == "v2.0"
    await engine.request("hexo", Request.FINISH, BOB)
    done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
    assert cluster.objects["deployments"][(NS, "hexo")]["spec"]["replicas"] == 0
    assert isinstance(done.notes[-1], events.Retired)


async def test_abort_before_the_first_patch_touches_nothing(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, reporter = world
    gate = asyncio.Event()
    opened = reporter.open

    async def slow_open(record: Record, live: Live) -> str:
        await gate.wait()  # the card cannot be posted yet
        return await opened(record, live)

    reporter.open = slow_open  # type: ignore[method-assign]
    await engine.begin(Release(app="hexo", version="v2.0"), ALICE, "C1", "releases")
    await until(cluster, lambda r: r.phase is Phase.PENDING)
    await engine.request("hexo", Request.ABORT, ALICE)
    done = await until(cluster, lambda r: r.finished)
    gate.set()
    assert done.phase is Phase.ABORTED
    assert not [w for w in cluster.writes if w[0] == "patch"]
    assert images(cluster) == {"v1.0": 6}


async def test_one_release_at_a_time_and_typed_refusals(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = world
    await engine.begin(Release(app="hexo", version="v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
    with pytest.raises(AppBusy) as busy:
        await engine.begin(Release(app="hexo", version="v3.0"), BOB, "C1", "releases")
    assert (busy.value.app, busy.value.requester) == ("hexo", "alice")
    assert "already being released" in str(busy.value)
    await until(cluster, lambda r: r.phase is Phase.CANARY)
    await engine.request("hexo", Request.ABORT, ALICE)
    await until(cluster, lambda r: r.finished)
    await cluster.patch_deployment(NS, "hexo", {"spec": {"replicas": 0}})
    with pytest.raises(CanaryOfNothing):
        await engine.begin(
            Release(app="hexo", version="v3.0", strategy=Strategy.CANARY), ALICE, "C1", "releases"
        )


def test_the_plan_says_what_a_canary_will_do() -> None:
    async def plan() -> Any:
        cluster = MemoryCluster()
        cluster.add_app(NS)
        catalog = Catalog.from_mapping(hexo.catalog(NS, USERS, extra={"canary": {"steps": [1, "50%"]}}))
        from bot.releases import canary

        return await canary.plan(cluster, catalog.apps["hexo"], "registry.sword.org/nginx:v2.0")

    p = asyncio.run(plan())
    assert p.steps == (1, 3, 6)
    assert p.peak_pods == 7
    assert p.deployment["metadata"]["name"] == "hexo"


# --- the canary waits for its pods to be Ready before it says it is healthy ----------------------------

CREATING = {
    "phase": "Pending",
    "conditions": [{"type": "Ready", "status": "False"}],
    "containerStatuses": [
        {
            "name": "hexo",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }
    ],
}
RUNNING = {
    "phase": "Running",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [{"name": "hexo", "ready": True, "restartCount": 0, "state": {"running": {}}}],
}


class SlowStart(MemoryCluster):
    """New pods of an image tagged `slow` wait in ContainerCreating until `start_pods()`."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = True

    @staticmethod
    def slow(pod: dict[str, Any]) -> bool:
        return "slow" in pod["spec"]["containers"][0]["image"]

    def _put(self, kind: str, obj: dict[str, Any], event: str) -> dict[str, Any]:
        if kind == "pods" and event == "ADDED" and self.holding and self.slow(obj):
            obj["status"] = {**obj["status"], **CREATING}
        return super()._put(kind, obj, event)

    def start_pods(self) -> None:
        self.holding = False
        for pod in list(self.objects["pods"].values()):
            if self.slow(pod):
                pod["status"] = {**pod["status"], **RUNNING}
                self._put("pods", pod, "MODIFIED")


async def engine_on(cluster: MemoryCluster) -> Engine:
    catalog = Catalog.from_mapping(hexo.catalog(NS, USERS))
    engine = Engine(
        cluster, catalog, MemoryReporter(), identity="unit", lease_seconds=15, audit=Auditor(cluster)
    )
    await engine.start(sync_timeout=1)
    return engine


async def test_a_canary_is_called_healthy_only_once_its_pods_are_ready() -> None:
    cluster = SlowStart()
    cluster.add_app(NS)
    engine = await engine_on(cluster)
    try:
        canary = Release(app="hexo", version="v2.0-slow", strategy=Strategy.CANARY)
        await engine.begin(canary, ALICE, "C1", "releases")
        at_step = await until(cluster, lambda r: r.phase is Phase.CANARY)
        stopped = at_step.notes[-1]
        assert isinstance(stopped, events.CanaryStep)
        assert (stopped.updated, stopped.old, stopped.step, stopped.next, stopped.desired) == (1, 6, 0, 6, 6)
        assert "ContainerCreating" in stopped.health
        assert events.canary_healthy(at_step.notes, 0) is None

        cluster.start_pods()
        healthy = await until(cluster, lambda r: events.canary_healthy(r.notes, 0) is not None)
        note = events.canary_healthy(healthy.notes, 0)
        assert note is not None and (note.ready, note.old, note.next, note.desired) == (1, 6, 6, 6)
        assert healthy.notes.index(note) > healthy.notes.index(stopped)
        # The step's clock (analysis window, "under watch") starts when it is healthy.
        assert healthy.phase is Phase.CANARY and healthy.phase_since > at_step.phase_since
        assert healthy.step == 0 and healthy.request is None

        await engine.request("hexo", Request.PROMOTE, BOB)
        done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        assert images(cluster) == {"v2.0-slow": 6}
        assert [type(e) for e in done.notes].count(events.CanaryHealthy) == 1
    finally:
        await engine.stop(0)


async def test_a_crash_looping_canary_is_never_called_healthy(
    world: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = world
    canary = Release(app="hexo", version="v2.0-broken", strategy=Strategy.CANARY)
    await engine.begin(canary, ALICE, "C1", "releases")
    done = await until(cluster, lambda r: r.finished)
    assert done.phase is Phase.ROLLED_BACK and "CrashLoopBackOff" in done.reason
    assert not [e for e in done.notes if isinstance(e, events.CanaryHealthy)]
    assert images(cluster) == {"v1.0": 6}


async def test_a_canary_stored_before_it_noted_its_health_carries_on() -> None:
    """A record written by the previous version at a canary step (no step on its CanaryStep, no
    CanaryHealthy) is taken up after a restart: the canary is found healthy, then promoted."""
    cluster = MemoryCluster()
    cluster.add_app(NS)
    engine = await engine_on(cluster)
    canary = Release(app="hexo", version="v2.0", strategy=Strategy.CANARY)
    try:
        await engine.begin(canary, ALICE, "C1", "releases")
        await until(cluster, lambda r: events.canary_healthy(r.notes, 0) is not None)
    finally:
        await engine.stop(0)
    cm = cluster.objects["configmaps"][(NS, "release-bot.hexo")]
    data = json.loads(cm["data"]["record.json"])
    data["notes"] = [
        {k: v for k, v in note.items() if k not in ("step", "next", "desired")}
        for note in data["notes"]
        if note["kind"] != "canary-healthy"
    ]
    data["notes_shown"] = min(data["notes_shown"], len(data["notes"]))
    cluster._put("configmaps", {**cm, "data": {**cm["data"], "record.json": json.dumps(data)}}, "MODIFIED")
    assert events.canary_healthy(record_of(cluster).notes, 0) is None

    engine = await engine_on(cluster)
    try:
        again = await until(cluster, lambda r: events.canary_healthy(r.notes, 0) is not None)
        assert again.phase is Phase.CANARY and images(cluster) == {"v2.0": 1, "v1.0": 6}
        await engine.request("hexo", Request.PROMOTE, BOB)
        await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        assert images(cluster) == {"v2.0": 6}
    finally:
        await engine.stop(0)
