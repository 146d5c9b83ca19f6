"""Approvals, freezes, break-glass, locks and the queue in the engine, against the in-memory cluster
(tests/unit/memory_cluster): whole flows in a fraction of a second. The same flows run through Slack on
the real control plane in tests/integration/test_governance.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.catalog import Action, Catalog
from bot.releases import events, refusals
from bot.releases.audit import Auditor
from bot.releases.engine import Engine
from bot.releases.gate import Enqueued
from bot.releases.record import Actor, Phase, Record, Request
from commands.intents import Release, Strategy
from sandbox import hexo
from tests.unit.memory_cluster import MemoryCluster
from tests.unit.test_engine import NS, MemoryReporter, images, record_of, until

ALICE = Actor(id="U0ALICE", name="alice")
BOB = Actor(id="U0BOB", name="bob")
CAROL = Actor(id="U0CAROL", name="carol")
USERS = {"alice": ALICE.id, "bob": BOB.id, "mallory": "U0MALLORY"}
APPROVERS = {"users": [ALICE.id, BOB.id, CAROL.id]}
APPROVER: frozenset[Action] = frozenset({Action.APPROVE})


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def frozen_now(name: str = "year-end") -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{"name": name, "start": iso(now - timedelta(hours=1)), "end": iso(now + timedelta(hours=2))}]


async def world_of(extra: dict[str, Any]) -> tuple[MemoryCluster, Engine, MemoryReporter]:
    cluster = MemoryCluster()
    cluster.add_app(NS)
    reporter = MemoryReporter()
    catalog = Catalog.from_mapping(hexo.catalog(NS, USERS, extra=extra))
    engine = Engine(cluster, catalog, reporter, identity="unit", lease_seconds=15, audit=Auditor(cluster))
    await engine.start(sync_timeout=1)
    return cluster, engine, reporter


@pytest.fixture
async def gated() -> AsyncIterator[tuple[MemoryCluster, Engine, MemoryReporter]]:
    world = await world_of({"approvals": {"required": 2, "from": APPROVERS, "promote": True}})
    yield world
    await world[1].stop(0)


def release(version: str = "v2.0", **kw: Any) -> Release:
    return Release(app="hexo", version=version, **kw)


async def test_two_distinct_approvers_start_the_release_and_nothing_moves_before(
    gated: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = gated
    started = await engine.begin(release(), ALICE, "C1", "releases")
    assert isinstance(started, Record) and started.phase is Phase.AWAITING_APPROVAL
    await until(cluster, lambda r: r.card_ref is not None)
    with pytest.raises(refusals.SelfApproval):
        await engine.approve("hexo", ALICE)
    await engine.approve("hexo", BOB)
    with pytest.raises(refusals.AlreadyApproved):
        await engine.approve("hexo", BOB)
    await asyncio.sleep(0.05)
    assert record_of(cluster).phase is Phase.AWAITING_APPROVAL
    assert images(cluster) == {"v1.0": 6}  # nothing touched the cluster
    assert not [w for w in cluster.writes if w[0] == "patch"]
    await engine.approve("hexo", CAROL)
    done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
    assert [a.id for a in done.approved_by] == [BOB.id, CAROL.id]
    kinds = [type(n).__name__ for n in done.notes]
    assert kinds[:4] == ["ApprovalAsked", "Approved", "Approved", "Started"]
    assert images(cluster) == {"v2.0": 6}
    assert [e["reason"] for e in cluster.events].count("ReleaseApprove") == 2  # an Event per approval


async def test_a_deny_ends_it_touching_nothing(gated: tuple[MemoryCluster, Engine, MemoryReporter]) -> None:
    cluster, engine, _ = gated
    await engine.begin(release(), ALICE, "C1", "releases")
    await until(cluster, lambda r: r.card_ref is not None)
    await engine.deny("hexo", BOB, "not during the sale")
    done = await until(cluster, lambda r: r.phase is Phase.ABORTED)
    assert done.reason == "denied by bob: not during the sale"
    assert isinstance(done.notes[-1], events.Denied)
    with pytest.raises(refusals.NotAwaitingApproval):
        await engine.approve("hexo", CAROL)
    assert images(cluster) == {"v1.0": 6}


async def test_expiry_ends_it_and_says_so() -> None:
    cluster, engine, _ = await world_of(
        {"approvals": {"required": 1, "from": APPROVERS, "expire_minutes": 0.01}}
    )
    try:
        await engine.begin(release(), ALICE, "C1", "releases")
        done = await until(cluster, lambda r: r.phase is Phase.ABORTED)
        assert done.reason == "not approved within 0.01 min (0 of 1 approvals)"
        assert isinstance(done.notes[-1], events.ApprovalExpired)
        assert images(cluster) == {"v1.0": 6}
    finally:
        await engine.stop(0)


async def test_promote_needs_an_approver_other_than_the_requester(
    gated: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    cluster, engine, _ = gated
    await engine.begin(release(strategy=Strategy.CANARY), ALICE, "C1", "releases")
    await engine.approve("hexo", BOB)
    await engine.approve("hexo", CAROL)
    await until(cluster, lambda r: r.phase is Phase.CANARY)
    with pytest.raises(refusals.PromoteNeedsApprover) as by_self:
        await engine.request("hexo", Request.PROMOTE, ALICE, roles=APPROVER)
    assert by_self.value.requester
    with pytest.raises(refusals.PromoteNeedsApprover):
        await engine.request("hexo", Request.PROMOTE, BOB)  # not an approver (no role)
    await engine.request("hexo", Request.PROMOTE, BOB, roles=APPROVER)
    await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)


async def test_break_glass_skips_approvals_and_freezes_and_is_announced() -> None:
    cluster, engine, reporter = await world_of(
        {
            "approvals": {"required": 2, "from": APPROVERS},
            "freeze": frozen_now(),
            "break_glass": {"users": [ALICE.id], "announce_channel": "CINCIDENT"},
        }
    )
    try:
        with pytest.raises(refusals.Frozen):
            await engine.begin(release(), ALICE, "C1", "releases")
        started = await engine.begin(release(break_glass="prod is down"), ALICE, "C1", "releases")
        assert isinstance(started, Record) and started.phase is Phase.PENDING
        done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        assert done.break_glass == "prod is down"
        assert {c for c, text in reporter.announced if "BrokeGlass" in text} == {"C1", "CINCIDENT"}
    finally:
        await engine.stop(0)


async def test_a_freeze_refuses_and_an_override_goes_ahead_with_its_reason() -> None:
    cluster, engine, _ = await world_of(
        {"freeze": frozen_now("black-friday"), "freeze_override": {"users": [ALICE.id]}}
    )
    try:
        with pytest.raises(refusals.Frozen) as refused:
            await engine.begin(release(), ALICE, "C1", "releases")
        assert refused.value.window == "black-friday" and not refused.value.can_override
        override = frozenset({Action.OVERRIDE})
        with pytest.raises(refusals.Frozen) as may:
            await engine.begin(release(), ALICE, "C1", "releases", roles=override)
        assert may.value.can_override
        with pytest.raises(refusals.NoOverride):
            await engine.begin(release(reason="hotfix"), BOB, "C1", "releases")
        await engine.begin(release(reason="hotfix for the checkout"), ALICE, "C1", "releases", roles=override)
        done = await until(cluster, lambda r: r.phase is Phase.SUCCEEDED)
        assert done.override == "hotfix for the checkout"
        assert any(e.action == "freeze override" for e in done.history)
    finally:
        await engine.stop(0)


async def test_a_lock_refuses_everyone_until_unlocked(
    gated: tuple[MemoryCluster, Engine, MemoryReporter],
) -> None:
    _, engine, _ = gated
    await engine.lock("hexo", BOB, "database migration", "C1")
    for who in (ALICE, BOB):
        with pytest.raises(refusals.Locked) as locked:
            await engine.begin(release(break_glass="urgent"), who, "C1", "releases")
        assert locked.value.holder == "bob" and locked.value.reason == "database migration"
    with pytest.raises(refusals.Locked):
        await engine.lock("hexo", ALICE, "again", "C1")
    await engine.unlock("hexo", ALICE, "C1")
    with pytest.raises(refusals.NotLocked):
        await engine.unlock("hexo", ALICE, "C1")
    started = await engine.begin(release(), ALICE, "C1", "releases")
    assert isinstance(started, Record)


async def test_the_queue_runs_in_order_and_a_failed_release_pauses_it() -> None:
    cluster, engine, _ = await world_of({})
    try:
        first = await engine.begin(release("v2.0", strategy=Strategy.CANARY), ALICE, "C1", "releases")
        assert isinstance(first, Record)
        await until(cluster, lambda r: r.phase is Phase.CANARY)
        with pytest.raises(refusals.AppBusy):
            await engine.begin(release("v2.1"), BOB, "C1", "releases")
        second = await engine.begin(release("v2.1", queue=True), BOB, "C1", "releases")
        third = await engine.begin(release("v2.2", queue=True), ALICE, "C1", "releases")
        assert isinstance(second, Enqueued) and second.position == 1 and second.running is not None
        assert isinstance(third, Enqueued) and third.position == 2
        assert [q.intent.version for q in (await engine.gate(engine.app("hexo"), fresh=True)).queue] == [
            "v2.1",
            "v2.2",
        ]

        # The canary is rolled back: the release did not succeed, so the queue pauses and says so.
        await engine.request("hexo", Request.ROLLBACK, ALICE)
        paused = await until(cluster, lambda r: any(isinstance(n, events.QueuePaused) for n in r.notes))
        assert paused.id == first.id and paused.phase is Phase.ROLLED_BACK
        await asyncio.sleep(0.05)
        gate = await engine.gate(engine.app("hexo"), fresh=True)
        assert gate.paused == first.id and len(gate.queue) == 2 and record_of(cluster).id == first.id

        await engine.dequeue("hexo", ALICE, "C1")  # alice takes v2.2 off
        with pytest.raises(refusals.NotQueued):
            await engine.dequeue("hexo", ALICE, "C1")
        await engine.unlock("hexo", ALICE, "C1")  # the queue moves again: v2.1 by bob starts
        moved = await until(cluster, lambda r: r.to_version == "v2.1" and r.phase is Phase.SUCCEEDED)
        assert moved.requester == BOB
        assert (await engine.gate(engine.app("hexo"), fresh=True)).queue == ()
        assert images(cluster) == {"v2.1": 6}
    finally:
        await engine.stop(0)


async def test_rollback_of_a_failed_release_is_carried_out() -> None:
    """A failed release is finished but takes a Rollback: the driver carries the request out."""
    cluster, engine, _ = await world_of({"auto_rollback": False})
    try:
        await engine.begin(release("v2.0-broken"), ALICE, "C1", "releases")
        failed = await until(cluster, lambda r: r.phase is Phase.FAILED)
        assert "CrashLoopBackOff" in failed.reason
        await engine.request("hexo", Request.ROLLBACK, BOB)
        done = await until(cluster, lambda r: r.phase is Phase.ROLLED_BACK)
        assert done.request is None
        assert images(cluster) == {"v1.0": 6}
    finally:
        await engine.stop(0)
