"""`/release` through signed requests to the real bot: bad input, refusals, the one-release-per-app
lock, failures with and without automatic rollback, a bot killed mid-release, forged requests."""

from __future__ import annotations

import signal
import time

import pytest

from sandbox.controlplane.launcher import ClusterInfo
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
    wait_card,
    wait_ephemeral,
)

pytestmark = pytest.mark.integration


def generation(cluster: ClusterInfo, namespace: str) -> int:
    dep = kubectl_json(cluster, "-n", namespace, "get", "deployment", "hexo")
    return int(dep["metadata"]["generation"])


BAD_INPUT = [
    ("hexp v2.0", "Did you mean `hexo`?"),
    ("hexo", "needs a version"),
    ("hexo v2.0 --fast", "Unknown option `--fast`"),
    ("hexo v2.0!", "is not a valid version"),
    ("hexo v2.0 --canary --bluegreen", "Choose one strategy"),
    ("hexo <!channel>", "`&lt;!channel&gt;` is not a valid version"),
    ("payload-api v2", "Unknown app `payload-api`"),
    ("rollback hexo --to-revision zero", "needs a revision number"),
    ("hexo registry.evil.org/x:v1", "not a full image reference"),
]


async def test_bad_input_gets_an_answer_and_changes_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    before = generation(control_plane, bots.namespace)
    for text, expected in BAD_INPUT:
        answer = await command(slack_sim, "alice", text)
        assert answer.status == 200, text
        if expected.startswith("not a full image"):
            shown = await wait_ephemeral(slack_sim, "alice", expected)
        else:
            shown = answer.text
        assert expected in shown, (text, shown)
        assert "Traceback" not in shown
    assert generation(control_plane, bots.namespace) == before
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None
    help_answer = await command(slack_sim, "mallory", "help")
    assert "/release &lt;app&gt; &lt;version&gt;" in help_answer.text  # escaped: Slack would parse <app>


@pytest.mark.parametrize("user", ["mallory", "bob"])
async def test_user_without_release_right_is_refused_and_recorded(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo, user: str
) -> None:
    await bots.start()
    before = generation(control_plane, bots.namespace)
    answer = await command(slack_sim, user, "hexo v2.0")
    assert answer.status == 200
    text = await wait_ephemeral(slack_sim, user, "not allowed to release")
    assert "hexo" in text
    assert generation(control_plane, bots.namespace) == before
    events = kubectl(
        control_plane, "-n", bots.namespace, "get", "events", "--field-selector", "involvedObject.name=hexo"
    )
    assert "refused" in events
    assert slack_sim.users[user] in events


async def test_second_release_while_one_runs_is_refused_naming_the_holder(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    await wait_card(slack_sim, "Promote")
    await command(slack_sim, "alice", "hexo v3.0")
    text = await wait_ephemeral(slack_sim, "alice", "already being released")
    assert "alice" in text
    assert "v2.0" in text
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}


async def test_broken_image_fails_on_pod_health_then_rollback_button(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    # A rolling release uses the canary's pod-health facts: a crash-looping version fails as soon as
    # its pods say so, long before the 600 s progress deadline.
    await bots.start(progress_deadline_seconds=600, auto_rollback=False)
    await command(slack_sim, "alice", "hexo v2.0-broken")
    card = await wait_card(slack_sim, "Failed", timeout=60)
    text = card_text(card)
    assert "ProgressDeadlineExceeded" not in text
    assert "CrashLoopBackOff" in text
    assert "release:rollback" in text
    # maxUnavailable 0: the old version kept serving
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert dep["status"]["availableReplicas"] == 6
    assert pods_by_image(control_plane, bots.namespace)["v1.0"] == 6

    assert await click(slack_sim, "bob", card, "release:rollback") == 200
    await wait_card(slack_sim, "Rolled back", timeout=60)
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}


async def test_image_pull_failure_is_rolled_back_automatically(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start(progress_deadline_seconds=10, auto_rollback=True)
    await command(slack_sim, "alice", "hexo v2.0-pullfail")
    card = await wait_card(slack_sim, "Rolled back", timeout=90)
    assert "ImagePullBackOff" in card_text(card)
    thread = slack_sim.replies(slack_sim.channels["releases"], card["ts"])
    assert any("Rolling back automatically" in m.get("text", "") for m in thread)
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}


async def test_bot_killed_mid_release_finishes_the_same_card_after_restart(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    bot = await bots.start()
    await command(slack_sim, "alice", "hexo v2.0")
    first = await wait_card(slack_sim, "Rolling out")
    await bots.restart(bot, signal.SIGKILL)
    final = await wait_card(slack_sim, "Succeeded", timeout=60)
    assert final["ts"] == first["ts"]
    cards = [m for m in slack_sim.history(slack_sim.channels["releases"]) if m.get("blocks")]
    assert len(cards) == 1
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}


async def test_forged_and_stale_signatures_are_refused(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    before = generation(control_plane, bots.namespace)
    forged = await command(slack_sim, "alice", "hexo v2.0", check=False, signing_secret="not-the-secret")
    assert forged.status == 401
    stale = await command(slack_sim, "alice", "hexo v2.0", check=False, clock=lambda: time.time() - 600)
    assert stale.status == 401
    assert generation(control_plane, bots.namespace) == before
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None


async def test_release_right_through_a_user_group(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    group = slack_sim.usergroups["release-managers"]  # alice is a member, bob is not
    bob = slack_sim.users["bob"]
    rules = {"release": {"usergroups": [group]}, "promote": {"users": [bob]}, "rollback": {"users": [bob]}}
    await bots.start(extra={"permissions": rules})
    await command(slack_sim, "bob", "hexo v2.0")
    await wait_ephemeral(slack_sim, "bob", "not allowed to release")
    await command(slack_sim, "alice", "hexo v2.0")
    await wait_card(slack_sim, "Succeeded")
    assert any(c.params.get("usergroup") == group for c in slack_sim.calls_to("usergroups.users.list"))


async def test_release_only_from_the_apps_channels(bots: Bots, slack_sim: SlackSimulator) -> None:
    alice = slack_sim.users["alice"]
    await bots.start(extra={"permissions": {"release": {"users": [alice], "channels": ["C0ELSEWHERE"]}}})
    await command(slack_sim, "alice", "hexo v2.0")
    text = await wait_ephemeral(slack_sim, "alice", "release channels")
    assert "hexo" in text
    assert card_of(slack_sim, slack_sim.channels["releases"]) is None


async def test_sigterm_hands_the_release_to_another_replica(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    first = await bots.start(instance="bot-a")
    await bots.start(instance="bot-b")
    await command(slack_sim, "alice", "hexo v2.0", bot_url=first.url)
    card = await wait_card(slack_sim, "Rolling out")
    assert await first.stop(signal.SIGTERM) == 0  # drains: hands its lease back and exits cleanly
    final = await wait_card(slack_sim, "Succeeded", timeout=60)
    assert final["ts"] == card["ts"]
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
