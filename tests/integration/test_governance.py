"""Approvals, break-glass, freezes, locks and the queue, from Slack (signed commands and clicks) on the
real control plane: who may approve and who may not, what nothing-changes-before-approval means on the
cluster, a bot killed while a release waits for approval, and the queue's order and pause."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_text,
    click,
    command,
    kubectl,
    kubectl_json,
    pods_by_image,
    record_of,
    thread_with,
    wait_card,
    wait_ephemeral,
    wait_record,
)

pytestmark = pytest.mark.integration


def approvals(sim: SlackSimulator, **more: Any) -> dict[str, Any]:
    """Two approvals from the `sre` group (bob and carol); Promote needs one of them too."""
    return {
        "approvals": {"required": 2, "from": {"usergroups": [sim.usergroups["sre"]]}, "promote": True, **more}
    }


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def freeze_now(name: str) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    return [{"name": name, "start": iso(now - timedelta(hours=1)), "end": iso(now + timedelta(hours=3))}]


def events_of(cluster: ClusterInfo, namespace: str) -> list[str]:
    listing = kubectl_json(
        cluster, "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=hexo"
    )
    return [f"{e['reason']}: {e['message']}" for e in listing["items"]]


def deployment_version(cluster: ClusterInfo, namespace: str) -> str:
    dep = kubectl_json(cluster, "-n", namespace, "get", "deployment", "hexo")
    return str(dep["metadata"]["resourceVersion"])


async def test_two_distinct_approvers_start_it_and_the_requester_cannot_approve(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, tmp_path: Any
) -> None:
    ns = bots.namespace
    audit = tmp_path / "audit.jsonl"
    await bots.start(extra=approvals(slack_sim, allow_self=False), audit_log=audit)
    before = deployment_version(control_plane, ns)
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    await wait_ephemeral(slack_sim, "alice", "waits for 2 approval(s)")
    card = await wait_card(slack_sim, "Who may approve")
    text = card_text(card)
    assert "Waiting for approval" in text and "0 of 2" in text and "v1.0" in text and "v2.0" in text

    # The requester is no approver here; mallory is in no group: both refused, privately, and audited.
    assert await click(slack_sim, "alice", card, "release-gate:approve") == 200
    await wait_ephemeral(slack_sim, "alice", "not allowed to approve releases of")
    assert await click(slack_sim, "mallory", card, "release-gate:approve") == 200
    await wait_ephemeral(slack_sim, "mallory", "not allowed to approve releases of")

    assert await click(slack_sim, "bob", card, "release-gate:approve") == 200
    await wait_card(slack_sim, "1 of 2")
    await command(slack_sim, "bob", "approve hexo")  # the same person twice counts once
    await wait_ephemeral(slack_sim, "bob", "already approved")
    assert deployment_version(control_plane, ns) == before  # nothing touched the Deployment
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}

    await command(slack_sim, "carol", "approve hexo")
    card = await wait_card(slack_sim, "1 new (ready) + 6 old", timeout=90)
    assert pods_by_image(control_plane, ns) == {"v2.0": 1, "v1.0": 6}
    record = record_of(control_plane, ns)
    assert [a["name"] for a in record["approved_by"]] == ["bob", "carol"]
    thread = await thread_with(slack_sim, card, "Approved by")
    assert "(1 of 2)" in thread and "(2 of 2)" in thread

    # promote: true: the requester cannot promote their own release; an approver can.
    assert await click(slack_sim, "alice", card, "release:promote") == 200
    await wait_ephemeral(slack_sim, "alice", "other than the requester")
    assert await click(slack_sim, "bob", card, "release:promote") == 200
    await wait_card(slack_sim, "Succeeded", timeout=90)
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}

    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    approved = [x["actor_name"] for x in lines if x["action"] == "approve"]
    assert approved == ["bob", "carol"]
    assert any(x["action"] == "refused approve click" and x["actor_name"] == "alice" for x in lines)
    assert sum(e.startswith("ReleaseApprove:") for e in events_of(control_plane, ns)) == 2


async def test_a_deny_ends_it_and_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start(extra=approvals(slack_sim))
    before = deployment_version(control_plane, ns)
    await command(slack_sim, "alice", "hexo v2.0")
    card = await wait_card(slack_sim, "Who may approve")
    await command(slack_sim, "carol", 'deny hexo "not during the sale"')
    final = await wait_card(slack_sim, "Aborted")
    assert "denied by carol: not during the sale" in card_text(final)
    assert "Approve" not in json.dumps(final.get("blocks"))  # no buttons left
    await thread_with(slack_sim, card, "Denied by")
    assert deployment_version(control_plane, ns) == before
    await command(slack_sim, "bob", "approve hexo")
    await wait_ephemeral(slack_sim, "bob", "nothing to approve")


async def test_expiry_ends_it_and_says_so(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start(extra=approvals(slack_sim, expire_minutes=0.05))
    await command(slack_sim, "alice", "hexo v2.0")
    card = await wait_card(slack_sim, "Who may approve")
    final = await wait_card(slack_sim, "Aborted", timeout=30)
    assert "not approved within 0.05 min (0 of 2 approvals)" in card_text(final)
    await thread_with(slack_sim, card, "Not approved within")
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}


async def test_a_bot_killed_while_awaiting_approval_carries_on_after_restart(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    bot = await bots.start(extra=approvals(slack_sim))
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Who may approve")
    await command(slack_sim, "bob", "approve hexo")
    await wait_card(slack_sim, "1 of 2")
    await bots.restart(bot, signal.SIGKILL)
    assert record_of(control_plane, bots.namespace)["phase"] == "awaiting-approval"
    await command(slack_sim, "carol", "approve hexo")
    await wait_card(slack_sim, "Succeeded", timeout=90)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    cards = [m for m in slack_sim.history(slack_sim.channels["releases"]) if "Who may" in json.dumps(m)]
    assert len(cards) <= 1  # the same card, carried on


async def test_break_glass_needs_a_reason_skips_approvals_and_the_freeze_and_is_announced(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    incidents = slack_sim.add_private_channel("incidents", ["alice", "bob"], bot=True)
    extra = {
        **approvals(slack_sim),
        "freeze": freeze_now("black-friday"),
        "break_glass": {"users": [slack_sim.users["alice"]], "announce_channel": incidents},
    }
    await bots.start(extra=extra)
    answer = await command(slack_sim, "alice", "hexo v2.0 --break-glass")  # no reason: refused at once
    assert "needs a reason" in answer.text
    await command(slack_sim, "bob", 'hexo v2.0 --break-glass "prod is down"')  # not in break_glass
    await wait_ephemeral(slack_sim, "bob", "not allowed to")
    await command(slack_sim, "alice", 'hexo v2.0 --break-glass "prod is down"')
    card = await wait_card(slack_sim, "Succeeded", timeout=90)
    assert "Break-glass" in card_text(card) and "prod is down" in card_text(card)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    for channel in (slack_sim.channels["releases"], incidents):
        said = " ".join(m.get("text", "") for m in slack_sim.history(channel))
        assert "Break-glass" in said and "prod is down" in said


async def test_a_freeze_refuses_with_its_end_and_an_override_goes_ahead(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    extra = {"freeze": freeze_now("black-friday"), "freeze_override": {"users": [slack_sim.users["alice"]]}}
    await bots.start(extra=extra)
    await command(slack_sim, "bob", "hexo v2.0")  # bob may not release at all: permission first
    await wait_ephemeral(slack_sim, "bob", "not allowed to release")
    await command(slack_sim, "alice", "hexo v2.0")
    refusal = await wait_ephemeral(slack_sim, "alice", "is frozen")
    assert "black-friday" in refusal and "<!date^" in refusal and '--reason "why"' in refusal
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}
    await command(slack_sim, "alice", 'hexo v2.0 --canary --reason "fix for the checkout"')
    card = await wait_card(slack_sim, "1 new (ready) + 6 old", timeout=90)
    text = card_text(card)
    assert "Freeze overridden" in text and "Freeze black-friday" in text and "needs an override" in text
    # Promote during the freeze needs an override too (bob may promote, but not override).
    assert await click(slack_sim, "bob", card, "release:promote") == 200
    await wait_ephemeral(slack_sim, "bob", "Only the people of its `freeze_override`")
    await command(slack_sim, "alice", 'promote hexo --reason "same fix"')
    await wait_card(slack_sim, "Succeeded", timeout=90)
    record = record_of(control_plane, bots.namespace)
    assert [e["detail"] for e in record["history"] if e["action"] == "freeze override"] == [
        "fix for the checkout",
        "same fix",
    ]


async def test_lock_and_unlock(bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo) -> None:
    ns = bots.namespace
    await bots.start()
    await command(slack_sim, "mallory", 'lock hexo "mine"')
    await wait_ephemeral(slack_sim, "mallory", "not allowed to lock")
    await command(slack_sim, "alice", 'lock hexo "database migration"')
    await slack_sim.wait_for(
        lambda: any("locked" in m.get("text", "") for m in slack_sim.history(slack_sim.channels["releases"]))
    )
    await command(slack_sim, "alice", "hexo v2.0")  # the holder's own release is refused too
    refusal = await wait_ephemeral(slack_sim, "alice", "is locked by alice")
    assert "database migration" in refusal
    await command(slack_sim, "alice", "status hexo")
    await wait_ephemeral(slack_sim, "alice", "*Locked* by")
    cm = kubectl_json(control_plane, "-n", ns, "get", "configmap", "release-bot.hexo")
    assert json.loads(cm["data"]["gate.json"])["lock"]["reason"] == "database migration"
    await command(slack_sim, "alice", "unlock hexo")
    await slack_sim.wait_for(
        lambda: any(
            "unlocked" in m.get("text", "") for m in slack_sim.history(slack_sim.channels["releases"])
        )
    )
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=90)


async def test_the_queue_runs_in_order(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start(extra=both_release(slack_sim))
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "1 new (ready) + 6 old", timeout=90)
    await command(slack_sim, "bob", "hexo v2.1")  # without --queue: refused, saying how to wait
    refusal = await wait_ephemeral(slack_sim, "bob", "already being released")
    assert "--queue" in refusal
    await command(slack_sim, "bob", "hexo v2.1 --queue")
    await wait_ephemeral(slack_sim, "bob", "position 1")
    await command(slack_sim, "alice", "hexo v2.2 --queue")
    await wait_ephemeral(slack_sim, "alice", "position 2")
    await slack_sim.wait_for(lambda: "Queued next" in card_text(card_of_id(slack_sim, card["ts"])))
    assert "`v2.1 by bob`, `v2.2 by alice`" in card_text(card_of_id(slack_sim, card["ts"]))
    assert await click(slack_sim, "alice", card_of_id(slack_sim, card["ts"]), "release:promote") == 200
    await wait_record(
        control_plane, ns, lambda r: r["to_version"] == "v2.2" and r["phase"] == "succeeded", timeout=180
    )
    titles = [
        m["blocks"][0]["text"]["text"]
        for m in reversed(slack_sim.history(slack_sim.channels["releases"]))
        if m.get("blocks") and m["blocks"][0].get("type") == "header"
    ]
    assert titles == ["Release hexo v1.0 → v2.0", "Release hexo v2.0 → v2.1", "Release hexo v2.1 → v2.2"]
    assert pods_by_image(control_plane, ns) == {"v2.2": 6}
    history = kubectl(control_plane, "-n", ns, "rollout", "history", "deployment/hexo")
    assert history.index("released v2.1") < history.index("released v2.2")


async def test_a_failed_release_pauses_the_queue_until_unlocked(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start(extra=both_release(slack_sim))
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "1 new (ready) + 6 old", timeout=90)
    await command(slack_sim, "bob", "hexo v2.1-broken --queue")
    await wait_ephemeral(slack_sim, "bob", "position 1")
    await command(slack_sim, "alice", "hexo v2.2 --queue")
    await wait_ephemeral(slack_sim, "alice", "position 2")
    assert await click(slack_sim, "alice", card_of_id(slack_sim, card["ts"]), "release:promote") == 200
    # v2.0 succeeds, v2.1-broken starts from the queue, crash-loops and is rolled back: the queue pauses.
    broken = await wait_record(
        control_plane,
        ns,
        lambda r: r["to_version"] == "v2.1-broken" and r["phase"] == "rolled-back" and r["card_ref"],
        timeout=120,
    )
    broken_card = card_of_id(slack_sim, broken["card_ref"])
    await thread_with(slack_sim, broken_card, "queue of `hexo` (1 waiting) is paused", timeout=30)
    await asyncio.sleep(1.0)
    assert record_of(control_plane, ns)["to_version"] == "v2.1-broken"  # v2.2 did not start
    assert pods_by_image(control_plane, ns) == {"v2.0": 6}
    await command(slack_sim, "alice", "status hexo")
    await wait_ephemeral(slack_sim, "alice", "paused")
    await command(slack_sim, "alice", "unlock hexo")
    await wait_record(
        control_plane, ns, lambda r: r["to_version"] == "v2.2" and r["phase"] == "succeeded", timeout=120
    )
    assert pods_by_image(control_plane, ns) == {"v2.2": 6}
    await command(slack_sim, "bob", "dequeue hexo")
    await wait_ephemeral(slack_sim, "bob", "no release of `hexo` in its queue")


def both_release(sim: SlackSimulator) -> dict[str, Any]:
    """alice and bob may both release (and promote, roll back)."""
    people = {"users": [sim.users["alice"], sim.users["bob"]]}
    return {"permissions": {"release": people, "promote": people, "rollback": people}}


def card_of_id(sim: SlackSimulator, ts: str) -> dict[str, Any]:
    return next(m for m in sim.history(sim.channels["releases"]) if m["ts"] == ts)
