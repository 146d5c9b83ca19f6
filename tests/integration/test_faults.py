"""Faults are part of the product: releases end correct, with the card and thread telling the truth,
when the cluster or Slack fails. The real bot process, the real control plane (components restarted
by PID), the Slack simulator with scripted faults; every test checks the end state in the cluster and
in the channel, and that nothing else changed.

Each test prints what it measured (recovery delay, Slack retries, takeover time); the figures are
reported, never asserted against a clock.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import pytest

from sandbox.controlplane.launcher import ClusterInfo, ControlPlane
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_of,
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
    wait_new_card,
    wait_record,
    watches_opened,
)

pytestmark = pytest.mark.integration

V1 = "registry.sword.org/nginx:v1.0"
V2 = "registry.sword.org/nginx:v2.0"
V3 = "registry.sword.org/nginx:v3.0"


def slow_rollout(cluster: ClusterInfo, namespace: str, seconds: int = 2) -> None:
    """Make each new pod count as available only `seconds` after it is Ready, so that a fault lands
    in the middle of the rollout (the release does not touch minReadySeconds)."""
    patch = json.dumps({"spec": {"minReadySeconds": seconds}})
    kubectl(cluster, "-n", namespace, "patch", "deployment", "hexo", "-p", patch)


def assert_runs(cluster: ClusterInfo, namespace: str, image: str) -> dict[str, Any]:
    dep: dict[str, Any] = kubectl_json(cluster, "-n", namespace, "get", "deployment", "hexo")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert dep["status"].get("updatedReplicas") == 6 == dep["status"].get("availableReplicas")
    assert pods_by_image(cluster, namespace) == {image.rsplit(":", 1)[1]: 6}
    return dep


def notes(sim: SlackSimulator, card: dict[str, Any]) -> list[str]:
    return [m.get("text", "") for m in sim.replies(sim.channels["releases"], card["ts"])[1:]]


def failed_calls(sim: SlackSimulator, since: int = 0) -> int:
    return sum(1 for c in sim.calls[since:] if not c.ok)


def cards_in_channel(sim: SlackSimulator) -> list[dict[str, Any]]:
    return [
        m
        for m in sim.history(sim.channels["releases"])
        if any(b.get("type") == "header" for b in m.get("blocks") or [])
    ]


# --- the cluster fails -------------------------------------------------------------------------------


async def test_apiserver_restart_mid_release_ends_correct_and_keeps_the_lease(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, control_plane_process: ControlPlane
) -> None:
    ns = bots.namespace
    slow_rollout(control_plane, ns)
    await bots.start(env={"RELEASE_BOT_LEASE_SECONDS": "30"})
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Rolling out")
    lease = kubectl_json(control_plane, "-n", ns, "get", "lease", "release-bot.hexo")["spec"]
    assert record_of(control_plane, ns)["phase"] == "rolling-out"  # the fault lands mid-release

    restart = asyncio.create_task(asyncio.to_thread(control_plane_process.restart, "kube-apiserver", 2.0))
    blind = await wait_card(slack_sim, "Cluster unreachable since", timeout=60)  # the card says so
    assert "Failed" not in card_text(blind)
    await restart
    back = time.monotonic()
    fresh = await slack_sim.wait_for(
        lambda: (
            (c := card_of(slack_sim, slack_sim.channels["releases"])) is not None
            and "unreachable" not in card_text(c)
        ),
        timeout=60,
    )
    assert fresh
    seen = time.monotonic() - back
    during = kubectl_json(control_plane, "-n", ns, "get", "lease", "release-bot.hexo")["spec"]
    assert record_of(control_plane, ns)["phase"] == "rolling-out"
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    print(
        f"\napiserver restart: card fresh again {seen:.2f} s after the apiserver was back; "
        f"release finished {time.monotonic() - back:.2f} s after"
    )

    assert_runs(control_plane, ns, V2)
    text = card_text(card)
    assert "Rolled back" not in text and "Failed" not in text
    thread = " ".join(notes(slack_sim, card))
    assert "now runs" in thread
    assert "olling back" not in thread and "failed" not in thread.lower()
    # An outage shorter than the lease never loses it: same holder, same acquisition, no transition.
    assert during["holderIdentity"] == lease["holderIdentity"] == "bot-0"
    assert during.get("leaseTransitions", 0) == lease.get("leaseTransitions", 0)
    assert during["acquireTime"] == lease["acquireTime"]
    record = await wait_record(control_plane, ns, lambda r: r["synced"])
    assert record["phase"] == "succeeded"
    history = kubectl(control_plane, "-n", ns, "rollout", "history", "deployment/hexo")
    assert history.count("release-bot:") == 1  # one change: no rollback, no second patch


async def test_apiserver_restart_between_releases_plans_on_what_the_server_holds(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, control_plane_process: ControlPlane
) -> None:
    """Plans read the shared caches. The apiserver restarted between releases drops their watches:
    a release asked for the moment it is back is planned from the API server (or the re-listed
    caches), and so are a refusal and a change someone else made right before the command. Nothing
    is refused, labelled or written on a cache's old copy."""
    ns = bots.namespace
    bot = await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")
    first = await wait_card(slack_sim, "Succeeded", timeout=120)
    before = await watches_opened(bot.port)

    await asyncio.to_thread(control_plane_process.restart, "kube-apiserver", 2.0)
    back = time.monotonic()
    await command(slack_sim, "alice", "hexo v3.0")  # while the caches' watches are still re-opening
    card = await wait_new_card(slack_sim, "Succeeded", [first], timeout=120)
    print(
        f"\napiserver restart between releases: next release succeeded {time.monotonic() - back:.2f} s after"
    )
    assert "v2.0 → v3.0" in card_text(card)
    assert_runs(control_plane, ns, V3)
    assert await watches_opened(bot.port) > before  # the caches followed the cluster again

    # Someone else moves the app back to v1.0 right before the next commands.
    kubectl(control_plane, "-n", ns, "set", "image", "deployment/hexo", f"hexo={V1}")
    await command(slack_sim, "alice", "hexo v1.0")
    refused = await wait_ephemeral(slack_sim, "alice", "already runs")
    assert "`v1.0`" in refused
    kubectl(control_plane, "-n", ns, "rollout", "status", "deployment/hexo", "--timeout=120s")
    kubectl(control_plane, "-n", ns, "set", "image", "deployment/hexo", f"hexo={V2}")
    await command(slack_sim, "alice", "hexo v3.0")
    last = await wait_new_card(slack_sim, "Succeeded", [first, card], timeout=120)
    assert "v2.0 → v3.0" in card_text(last)  # labelled from what ran, not from the release before
    assert_runs(control_plane, ns, V3)
    assert len(cards_in_channel(slack_sim)) == 3  # the refusal started nothing
    record = await wait_record(control_plane, ns, lambda r: r["synced"])
    assert record["phase"] == "succeeded" and record["from_image"] == V2
    replanned = bot.log_path.read_text(errors="replace").count("again from the API server")
    print(f"plans made again from the API server after a cache was behind or a refusal: {replanned}")


async def test_etcd_restart_during_a_canary_then_promote_ends_correct(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, control_plane_process: ControlPlane
) -> None:
    ns = bots.namespace
    await bots.start()  # lease 3 s: this outage outlasts it, so the driver steps down and resumes
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    card = await wait_card(slack_sim, "Canary")
    assert pods_by_image(control_plane, ns) == {"v2.0": 1, "v1.0": 6}

    await asyncio.to_thread(control_plane_process.restart, "etcd", 4.0)
    back = time.monotonic()
    # The canary is still waiting for a decision, healthy: nothing was decided while blind.
    card = await wait_card(slack_sim, "Promote", timeout=60)
    record = record_of(control_plane, ns)
    assert record["phase"] == "canary" and record["reason"] == ""
    assert pods_by_image(control_plane, ns) == {"v2.0": 1, "v1.0": 6}

    latest = card_of(slack_sim, slack_sim.channels["releases"]) or card
    assert await click(slack_sim, "bob", latest, "release:promote") == 200
    done = await wait_card(slack_sim, "Succeeded", timeout=120)
    print(f"\netcd restart: promoted and succeeded {time.monotonic() - back:.2f} s after etcd was back")
    assert_runs(control_plane, ns, V2)
    assert "olling back" not in " ".join(notes(slack_sim, done))


# --- Slack fails -------------------------------------------------------------------------------------


async def test_slack_429s_and_a_5xx_burst_lose_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    slow_rollout(control_plane, ns, 1)
    await bots.start()
    slack_sim.fault("chat.postMessage", 3, status=500)  # the card itself: retried, not a lease period
    start = len(slack_sim.calls)
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Rolling out", timeout=60)
    slack_sim.fault("chat.update", 4, status=429)
    slack_sim.fault("chat.postMessage", 4, status=503)
    card = await wait_card(slack_sim, "Succeeded", timeout=90)
    thread = await thread_with(slack_sim, card, "now runs", timeout=60)
    print(f"\n429s and 5xx: {failed_calls(slack_sim, start)} Slack calls failed and were retried")

    assert "started releasing" in thread
    texts = notes(slack_sim, card)
    assert sum("now runs" in t for t in texts) == 1  # delivered once, not once per retry
    assert len(cards_in_channel(slack_sim)) == 1
    assert_runs(control_plane, ns, V2)
    await wait_record(control_plane, ns, lambda r: r["synced"] and r["notes_shown"] == len(r["notes"]))


async def test_slack_outage_spanning_the_end_of_a_release_heals_the_card(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Rolling out", timeout=60)
    slack_sim.fault("*", 100_000, status=503)
    await wait_record(control_plane, ns, lambda r: r["phase"] == "succeeded")
    stale = card_of(slack_sim, slack_sim.channels["releases"])
    assert stale is not None and "Succeeded" not in card_text(stale)
    failed = failed_calls(slack_sim)
    slack_sim.clear_faults()
    back = time.monotonic()
    card = await wait_card(slack_sim, "Succeeded", timeout=90)
    await thread_with(slack_sim, card, "now runs", timeout=60)
    print(
        f"\nSlack outage: card correct {time.monotonic() - back:.2f} s after Slack recovered; "
        f"{failed} calls failed during the outage"
    )
    assert_runs(control_plane, ns, V2)
    await wait_record(control_plane, ns, lambda r: r["synced"])


async def test_a_hang_longer_than_the_client_timeout_is_abandoned_and_retried(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    slack_sim.fault("chat.update", 1, hang_seconds=15)  # the client gives up after 10 s
    start = time.monotonic()
    await command(slack_sim, "alice", "hexo v2.0")
    card = await wait_card(slack_sim, "Succeeded", timeout=120)
    await thread_with(slack_sim, card, "now runs", timeout=60)
    assert_runs(control_plane, ns, V2)
    print(
        f"\nhang: card and thread complete {time.monotonic() - start:.2f} s after the command (10 s abandoned)"
    )


async def test_bot_not_in_the_channel_ends_the_release_untouched_and_tells_the_requester(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    before = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    await bots.start()
    channel = slack_sim.channels["releases"]
    slack_sim.set_bot_membership(channel, False)
    await command(slack_sim, "alice", "hexo v2.0")
    told = await wait_ephemeral(slack_sim, "alice", "not_in_channel", timeout=30)
    assert "invite" in told.lower()
    record = await wait_record(control_plane, ns, lambda r: r["phase"] == "aborted")
    assert "not_in_channel" in record["reason"]
    after = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == V1

    # The app is free: once the bot is invited, the next release runs.
    slack_sim.set_bot_membership(channel, True)
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded", timeout=90)
    assert_runs(control_plane, ns, V2)


async def test_a_card_slack_cannot_take_yet_delays_the_card_not_the_rollout(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")  # a card went out here: the channel takes them
    await wait_card(slack_sim, "Succeeded", timeout=90)
    slack_sim.fault("chat.postMessage", 100_000, status=503)  # a busy (here: failing) channel
    await command(slack_sim, "alice", "hexo v3.0")
    record = await wait_record(
        control_plane, ns, lambda r: r["to_version"] == "v3.0" and r["phase"] == "succeeded"
    )
    assert record["card_ref"] is None and len(cards_in_channel(slack_sim)) == 1  # the rollout did not wait
    assert_runs(control_plane, ns, V3)
    slack_sim.clear_faults()
    card = await slack_sim.wait_for(
        lambda: next(
            (
                c
                for c in cards_in_channel(slack_sim)
                if "v3.0" in card_text(c) and "Succeeded" in card_text(c)
            ),
            None,
        ),
        timeout=60,
    )
    thread = await thread_with(slack_sim, card, "now runs", timeout=60)
    assert "started releasing" in thread
    assert len(cards_in_channel(slack_sim)) == 2
    await wait_record(control_plane, ns, lambda r: r["synced"] and r["card_ref"] == card["ts"])


async def test_abort_before_the_first_patch_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    before = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    await bots.start()
    # Slack can say neither whether the channel takes messages nor take the card: the release waits.
    slack_sim.fault("conversations.info", 100_000, status=500)
    slack_sim.fault("chat.postMessage", 100_000, status=500)
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_record(control_plane, ns, lambda r: r["phase"] == "pending")
    await command(slack_sim, "alice", "abort hexo")
    record = await wait_record(control_plane, ns, lambda r: r["phase"] == "aborted")
    assert any(e["action"] == "abort" for e in record["history"])
    slack_sim.clear_faults()
    # Whatever Slack took late is taken back; the requester was answered; nothing was patched.
    await command(slack_sim, "alice", "status hexo")
    await wait_ephemeral(slack_sim, "alice", "v1.0", timeout=30)
    assert cards_in_channel(slack_sim) == []
    after = kubectl_json(control_plane, "-n", ns, "get", "deployment", "hexo")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert pods_by_image(control_plane, ns) == {"v1.0": 6}


async def test_sigkill_between_cluster_success_and_the_card_update_is_healed(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    bot = await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Rolling out", timeout=60)
    slack_sim.fault("chat.update", 100_000, status=500)
    slack_sim.fault("chat.postMessage", 100_000, status=500)
    await wait_record(control_plane, ns, lambda r: r["phase"] == "succeeded")
    await bot.stop(signal.SIGKILL)
    stale = card_of(slack_sim, slack_sim.channels["releases"])
    assert stale is not None and "Succeeded" not in card_text(stale)
    slack_sim.clear_faults()
    restarted = time.monotonic()
    await bots.restart(bot)
    card = await wait_card(slack_sim, "Succeeded", timeout=60)
    await thread_with(slack_sim, card, "now runs", timeout=60)
    assert card["ts"] == stale["ts"]  # the same card, healed
    print(f"\nSIGKILL: the same card healed {time.monotonic() - restarted:.2f} s after the restart began")
    assert_runs(control_plane, ns, V2)
    await wait_record(control_plane, ns, lambda r: r["synced"])


# --- replicas ----------------------------------------------------------------------------------------


async def test_another_replica_takes_over_at_lease_expiry(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    ns = bots.namespace
    first = await bots.start(instance="bot-a")
    await bots.start(instance="bot-b")
    await command(slack_sim, "alice", "hexo v2.0 --canary", bot_url=first.url)
    card = await wait_card(slack_sim, "Canary")
    lease = kubectl_json(control_plane, "-n", ns, "get", "lease", "release-bot.hexo")["spec"]
    driver = lease["holderIdentity"]
    survivor = next(b for b in bots.started if b.env["RELEASE_BOT_INSTANCE_ID"] != driver)
    dead = next(b for b in bots.started if b.env["RELEASE_BOT_INSTANCE_ID"] == driver)
    await dead.stop(signal.SIGKILL)
    last = kubectl_json(control_plane, "-n", ns, "get", "lease", "release-bot.hexo")["spec"]

    assert await click(slack_sim, "bob", card, "release:promote", bot_url=survivor.url) == 200
    await wait_card(slack_sim, "Succeeded", timeout=90)
    after = kubectl_json(control_plane, "-n", ns, "get", "lease", "release-bot.hexo")["spec"]
    assert after.get("holderIdentity") in (survivor.env["RELEASE_BOT_INSTANCE_ID"], None)
    assert after.get("leaseTransitions", 0) > lease.get("leaseTransitions", 0)
    expiry = _lease_time(last["renewTime"]) + last["leaseDurationSeconds"]
    taken = _lease_time(after["acquireTime"])
    assert taken > expiry  # never before the dead driver's lease ran out
    print(
        f"\ntakeover: {taken - expiry:.2f} s after the lease expired (lease {last['leaseDurationSeconds']} s)"
    )
    assert_runs(control_plane, ns, V2)


def _lease_time(text: str) -> float:
    from datetime import datetime

    return datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
