"""`release-bot sandbox --clusters 2`: staging and prod as two real control planes (each its own etcd
and apiserver) and one bot serving both. The JSON file lists both kubeconfigs and every component of
both clusters; a signed `/release hexo v2.0 --env staging` rolls out in the staging cluster only; the
control endpoint restarts prod's apiserver by its own name; /readyz names both clusters; SIGTERM stops
every process of both clusters."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from bot.kube.client import connected
from bot.releases.health import container_image, progress
from tests.integration.test_sandbox import COMPONENTS, alive, posted, running_sandbox, signed_command

pytestmark = pytest.mark.integration

V1, V2 = "registry.sword.org/nginx:v1.0", "registry.sword.org/nginx:v2.0"


async def test_two_clusters_one_bot(tmp_path: Path) -> None:
    async with running_sandbox(tmp_path, "--clusters", "2") as sandbox:
        info = sandbox.info()
        kubeconfigs = info["kubeconfigs"]
        assert set(kubeconfigs) == {"staging", "prod"} and kubeconfigs["staging"] == info["kubeconfig"]
        assert info["apps"] == {
            "hexo-staging": {"cluster": "staging", "namespace": "devops"},
            "hexo-prod": {"cluster": "prod", "namespace": "prod"},
        }
        components = COMPONENTS | {f"prod-{c}" for c in COMPONENTS - {"bot", "prometheus"}}
        assert set(info["pids"]) == components
        assert all(isinstance(p, int) and alive(p) for p in info["pids"].values())
        assert info["pids"]["kube-apiserver"] != info["pids"]["prod-kube-apiserver"]
        readyz = info["bot_url"].removesuffix("/slack/events") + "/readyz"
        async with aiohttp.ClientSession() as s, s.get(readyz) as r:
            assert (r.status, await r.json()) == (
                200,
                {"ready": True, "clusters": {"prod": "ok", "staging": "ok"}},
            )

        assert await signed_command(info, "alice", "hexo v2.0 --env staging") == 200
        async with connected(Path(kubeconfigs["staging"])) as kube:
            await kube.watch_deployment(
                "devops",
                "hexo",
                lambda d: True if container_image(d, "hexo") == V2 and progress(d).complete else None,
                timeout=90,
            )
        await posted(info, "hexo-staging")
        async with connected(Path(kubeconfigs["prod"])) as kube:  # prod's cluster is another one
            assert container_image(await kube.deployment("prod", "hexo"), "hexo") == V1
            assert await kube.deployments("devops") == []  # staging's hexo lives in the other cluster

        old = info["pids"]["prod-kube-apiserver"]
        status, body = await sandbox.control("POST", "/restart/prod-kube-apiserver")
        assert status == 200 and body["previous_pid"] == old and body["pid"] != old
        assert (
            sandbox.info()["pids"]["kube-apiserver"] == info["pids"]["kube-apiserver"]
        )  # staging's untouched

        sandbox.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(sandbox.proc.wait(), 90) == 0, sandbox.log()
        assert [pid for pid in sorted(sandbox.seen_pids) if alive(pid)] == []
