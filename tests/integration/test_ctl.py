"""`release-bot ctl`: the second front end, as a real process with the caller's kubeconfig, on the real
control plane, sharing records and locks with a running bot."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import (
    Bots,
    card_text,
    click,
    command,
    kubectl_json,
    pods_by_image,
    record_of,
    wait_card,
    wait_ephemeral,
)

pytestmark = pytest.mark.integration


def ctl_env(bots: Bots, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("SLACK_BOT_TOKEN", None)
    env.update(extra)
    return env


async def ctl(
    bots: Bots, *words: str, env: dict[str, str] | None = None, catalog: Path | None = None
) -> tuple[int, str, str]:
    """Run `release-bot ctl` to its end; (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "ctl",
        "--catalog",
        str(catalog or bots.catalog_file()),
        "--kubeconfig",
        str(bots.cluster.admin_kubeconfig),
        *words,
        env=env or ctl_env(bots),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ctl_dry_run_prints_the_plan_and_changes_nothing(
    bots: Bots, control_plane: ClusterInfo
) -> None:
    before = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    code, out, err = await ctl(bots, "release", "hexo", "v2.0", "--canary", "--dry-run")
    assert code == 0, (out, err)
    assert "dry run: hexo v1.0 -> v2.0 (canary)" in out and "nothing was changed" in out
    assert "change spec.containers[hexo].image" in out and "peak: 7 pods" in out
    after = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    configmaps = kubectl_json(control_plane, "-n", bots.namespace, "get", "configmaps")["items"]
    assert "release-bot.hexo" not in {c["metadata"]["name"] for c in configmaps}


async def test_ctl_releases_from_a_terminal(bots: Bots, control_plane: ClusterInfo) -> None:
    code, out, err = await ctl(bots, "release", "hexo", "v2.0")
    assert code == 0, (out, err)
    assert "now runs v2.0" in out
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    record = record_of(control_plane, bots.namespace)
    assert record["front_end"] == "cli" and record["phase"] == "succeeded" and record["synced"]
    dep = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert "via" in dep["metadata"]["annotations"]["kubernetes.io/change-cause"]

    code, out, _ = await ctl(bots, "status", "hexo")
    assert code == 0 and "registry.sword.org/nginx:v2.0" in out
    code, out, _ = await ctl(bots, "history", "hexo")
    assert code == 0 and "release-bot:" in out


async def test_ctl_answers_bad_input_with_status_2_and_changes_nothing(
    bots: Bots, control_plane: ClusterInfo
) -> None:
    before = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    for words in (
        ("release", "hexo"),
        ("release", "nosuchapp", "v2"),
        ("release", "hexo", "v2.0", "--canery"),
    ):
        code, out, err = await ctl(bots, *words)
        assert code == 2, (words, out, err)
        assert "error:" in err and "Traceback" not in err
    after = kubectl_json(control_plane, "-n", bots.namespace, "get", "deployment", "hexo")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


async def test_a_broken_version_from_ctl_is_rolled_back_with_status_3(
    bots: Bots, control_plane: ClusterInfo
) -> None:
    catalog = bots.catalog_file(auto_rollback=True)
    code, out, err = await ctl(bots, "release", "hexo", "v2.0-broken", catalog=catalog)
    assert code == 3, (out, err)
    assert "FAILED" in out and "CrashLoopBackOff" in out
    assert pods_by_image(control_plane, bots.namespace) == {"v1.0": 6}


async def test_ctl_and_the_bot_share_the_lock(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()
    await command(slack_sim, "alice", "hexo v2.0 --canary")
    await wait_card(slack_sim, "Canary")
    code, _, err = await ctl(bots, "release", "hexo", "v3.0")
    assert code == 2 and "already being released" in err
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 1, "v1.0": 6}


async def test_a_release_started_by_ctl_is_promoted_by_a_click_in_slack(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    await bots.start()  # the bot answers the click; ctl drives the release
    channel = slack_sim.channels["releases"]
    env = ctl_env(bots, SLACK_BOT_TOKEN=slack_sim.bot_token, SLACK_API_URL=slack_sim.api_url)
    running = asyncio.create_task(
        ctl(bots, "--slack-channel", channel, "release", "hexo", "v2.0", "--canary", env=env)
    )
    card = await wait_card(slack_sim, "Canary", timeout=60)
    assert record_of(control_plane, bots.namespace)["front_end"] == "slack"
    assert await click(slack_sim, "mallory", card, "release:promote") == 200
    await wait_ephemeral(slack_sim, "mallory", "Sorry")  # the bot checks every click
    assert await click(slack_sim, "bob", card, "release:promote") == 200
    code, out, err = await running
    assert code == 0, (out, err)
    done = await wait_card(slack_sim, "Succeeded", timeout=60)
    assert "promote by" in card_text(done)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
    assert "promote by" in out  # the CLI followed (and drove) the promotion it did not click


async def test_until_decision_returns_once_the_canary_is_healthy(
    bots: Bots, control_plane: ClusterInfo
) -> None:
    code, out, err = await ctl(bots, "--until", "decision", "release", "hexo", "v2.0", "--canary")
    assert code == 0, (out, err)
    assert "canary healthy: 1 new pod(s) ready beside 6 old" in out  # not merely paused at the step
    record = record_of(control_plane, bots.namespace)
    assert record["phase"] == "canary" and any(n["kind"] == "canary-healthy" for n in record["notes"])
    code, out, err = await ctl(bots, "promote", "hexo")
    assert code == 0, (out, err)
    assert pods_by_image(control_plane, bots.namespace) == {"v2.0": 6}
