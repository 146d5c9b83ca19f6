"""`release-bot sandbox`, the README's main job: everything starts, a signed `/release hexo v2.0` sent
to the coordinates in its JSON file rolls the guide's app out, and SIGTERM stops every process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import urllib.parse
from pathlib import Path

import aiohttp
import pytest

from bot.kube.client import connected
from bot.releases.health import container_image, progress
from sandbox.controlplane.launcher import recorded
from sandbox.slack.client import sign

pytestmark = pytest.mark.integration
UP = b"release-bot sandbox is up"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def signed_command(info: dict[str, object], user: str, text: str) -> int:
    users = info["users"]
    assert isinstance(users, dict)
    form = {
        "team_id": "T0SANDBOX",
        "channel_id": str(info["channel_id"]),
        "channel_name": "releases",
        "user_id": users[user],
        "user_name": user,
        "command": "/release",
        "text": text,
        "trigger_id": "0.0.0",
    }
    body = urllib.parse.urlencode(form).encode()
    now = int(time.time())
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign(str(info["signing_secret"]), now, body),
    }
    async with aiohttp.ClientSession() as s, s.post(str(info["bot_url"]), data=body, headers=headers) as r:
        return r.status


async def test_sandbox_runs_a_release_and_stops_everything(tmp_path: Path) -> None:
    info_file, workdir = tmp_path / "sandbox.json", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sandbox", "--json-file", str(info_file), "--workdir", str(workdir),
        "--ready-delay", "0.3",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    output = b""
    pids: dict[str, int] = {}
    try:
        async with asyncio.timeout(120):
            while UP not in output:
                line = await proc.stdout.readline()
                assert line, f"the sandbox exited early:\n{output.decode(errors='replace')}"
                output += line
        info = json.loads(info_file.read_text())
        assert set(info) >= {"bot_url", "slack_api_url", "signing_secret", "bot_token", "channel_id", "users"}
        state = recorded(workdir / "cluster")
        assert state is not None
        pids = dict(state.pids)

        assert await signed_command(info, "alice", "hexo v2.0") == 200
        image = "registry.sword.org/nginx:v2.0"
        async with connected(Path(info["kubeconfig"])) as kube:
            await kube.watch_deployment(
                info["namespace"],
                "hexo",
                lambda d: True if container_image(d, "hexo") == image and progress(d).complete else None,
                timeout=60,
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    assert pids
    assert [name for name, pid in pids.items() if alive(pid)] == []
