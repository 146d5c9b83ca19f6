"""`release-bot sandbox`, the README's main job and a place to break things.

One sandbox process for the module: everything starts; a signed `/release hexo v2.0` sent to the
coordinates in its JSON file rolls the guide's app out; Slack faults scripted over its control
endpoints are what the simulator answers; restarting the apiserver gives a new pid in the JSON file
and a working cluster; a killed bot is started again by its supervisor; bad input answers 400; and
SIGTERM (the last test) stops every process the sandbox ever started, restarted ones included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from bot.kube.client import connected
from bot.releases.health import container_image, progress
from sandbox.controlplane.launcher import recorded
from sandbox.slack.client import sign
from tests.fixtures.cluster import api_client_for, pod_ready, wait_for_pods

pytestmark = pytest.mark.integration
UP = b"release-bot sandbox is up"
COMPONENTS = {
    "bot",
    "kube-apiserver",
    "etcd",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "prometheus",
}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Sandbox:
    """The running `release-bot sandbox` process and what it said."""

    proc: asyncio.subprocess.Process
    info_file: Path
    workdir: Path
    output: bytearray = field(default_factory=bytearray)
    seen_pids: set[int] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        """The JSON file now; every pid it names is remembered for the final check."""
        data: dict[str, Any] = json.loads(self.info_file.read_text())
        self.seen_pids.update(p for p in data["pids"].values() if p is not None)
        return data

    async def wait_info(self, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Wait until the JSON file satisfies `check` (a file: read it again every 50 ms)."""
        async with asyncio.timeout(timeout):
            while not check(info := self.info()):
                assert self.proc.returncode is None, self.log()
                await asyncio.sleep(0.05)
        return info

    def log(self) -> str:
        return self.output.decode(errors="replace")[-6000:]

    async def control(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """Call `{control_url}{path}`; the HTTP status and the JSON answer."""
        url = self.info()["control_url"] + path
        async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as r:
            assert r.content_type == "application/json", await r.text()
            body: dict[str, Any] = await r.json()
            return r.status, body


async def drain(stream: asyncio.StreamReader, into: bytearray, up: asyncio.Event) -> None:
    """Keep reading the sandbox's output (the bot logs there too: a full pipe would block it)."""
    while line := await stream.readline():
        into.extend(line)
        if UP in into:
            up.set()


@contextlib.asynccontextmanager
async def running_sandbox(tmp: Path, *args: str) -> AsyncIterator[Sandbox]:
    """`release-bot sandbox` with `args`, once it says it is up; SIGTERM (then SIGKILL to every
    process it was seen to start) at the end unless a test stopped it."""
    info_file, workdir = tmp / "sandbox.json", tmp / "work"
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sandbox", "--json-file", str(info_file), "--workdir", str(workdir),
        "--ready-delay", "0.3", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    box = Sandbox(proc, info_file, workdir)
    up = asyncio.Event()
    reader = asyncio.create_task(drain(proc.stdout, box.output, up))
    try:
        async with asyncio.timeout(240):
            await asyncio.wait([reader, asyncio.create_task(up.wait())], return_when=asyncio.FIRST_COMPLETED)
        assert up.is_set(), f"the sandbox exited early:\n{box.log()}"
        yield box
    finally:
        if proc.returncode is None:  # the last test did not get to stop it
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                for pid in box.seen_pids | {proc.pid}:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 5)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    async with running_sandbox(tmp_path_factory.mktemp("sandbox")) as box:
        yield box


async def signed_command(info: dict[str, Any], user: str, text: str) -> int:
    form = {
        "team_id": "T0SANDBOX",
        "channel_id": str(info["channel_id"]),
        "channel_name": "releases",
        "user_id": info["users"][user],
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


async def posted(info: dict[str, Any], text: str, timeout: float = 30) -> None:
    """Wait until the releases channel (messages, thread replies) shows `text` (the simulator's view
    of it, not the Web API: no rate limit)."""
    url = f"{info['page_url']}sim/channels/{info['channel_id']}/view"
    async with aiohttp.ClientSession() as s, asyncio.timeout(timeout):
        while True:
            async with s.get(url) as r:
                if text in json.dumps(await r.json(), ensure_ascii=False):
                    return
            await asyncio.sleep(0.1)


async def readyz(bot_url: str) -> int:
    url = bot_url.removesuffix("/slack/events") + "/readyz"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status


async def slack_call(info: dict[str, Any], method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {info['bot_token']}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(info["slack_api_url"] + method, json=params, headers=headers) as r,
    ):
        body: dict[str, Any] = await r.json()
        return r.status, body


async def test_sandbox_is_up_with_every_pid_and_runs_a_release(sandbox: Sandbox) -> None:
    info = sandbox.info()
    assert set(info) >= {
        "bot_url", "slack_api_url", "page_url", "signing_secret", "bot_token", "channel_id", "users",
        "usergroups", "kubeconfig", "namespace", "prod_namespace", "pids", "control_url", "catalog",
    }  # fmt: skip
    assert set(info["users"]) == {"alice", "bob", "carol", "mallory"}
    assert set(info["usergroups"]) == {"release-managers", "sre"}
    assert info["prod_namespace"] == "prod"
    assert set(info["pids"]) == COMPONENTS
    assert all(isinstance(p, int) and alive(p) for p in info["pids"].values())
    assert info["control_url"].startswith("http://127.0.0.1:")
    assert info["bot_url"].startswith("http://127.0.0.1:")
    state = recorded(sandbox.workdir / "cluster")
    assert state is not None
    assert state.pids == {n: p for n, p in info["pids"].items() if n not in ("bot", "prometheus")}
    assert info["prometheus_url"].startswith("http://127.0.0.1:")
    assert info["pids"]["bot"] not in (sandbox.proc.pid, *state.pids.values())  # a process of its own
    async with aiohttp.ClientSession() as s, s.get(info["prometheus_url"] + "/-/ready") as r:
        assert r.status == 200  # the sandbox's Prometheus, for the canary analysis
    status, body = await sandbox.control("GET", "")  # {control_url} itself
    assert status == 200
    assert (set(body["components"]), body["killable"]) == (COMPONENTS, ["bot"])
    assert body["pids"] == info["pids"]

    assert await signed_command(info, "alice", "hexo v2.0") == 200
    image = "registry.sword.org/nginx:v2.0"
    async with connected(Path(info["kubeconfig"])) as kube:
        await kube.watch_deployment(
            info["namespace"],
            "hexo",
            lambda d: True if container_image(d, "hexo") == image and progress(d).complete else None,
            timeout=60,
        )
    # The terminal front end finds everything it needs in the JSON file.
    ctl = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "ctl", "--catalog", info["catalog"], "--kubeconfig", info["kubeconfig"],
        "status", "hexo", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(ctl.communicate(), timeout=60)
    assert ctl.returncode == 0, err
    assert image in out.decode()


async def test_prod_waits_for_two_approvals_from_sre_and_alice_may_break_glass(sandbox: Sandbox) -> None:
    info = sandbox.info()
    prod = info["prod_namespace"]

    async def rolled_out(image: str) -> None:
        async with connected(Path(info["kubeconfig"])) as kube:
            await kube.watch_deployment(
                prod,
                "hexo",
                lambda d: True if container_image(d, "hexo") == image and progress(d).complete else None,
                timeout=60,
            )

    await rolled_out("registry.sword.org/nginx:v1.0")  # the guide's objects, installed in prod too
    assert await signed_command(info, "alice", "hexo v2.0 --env prod") == 200
    await posted(info, "asks to release `hexo-prod` `v1.0` → `v2.0`. It needs 2 approval(s)")
    assert await signed_command(info, "bob", "approve hexo --env prod") == 200
    await posted(info, f"Approved by <@{info['users']['bob']}> (1 of 2)")
    async with connected(Path(info["kubeconfig"])) as kube:  # one approval of two: nothing changed
        assert container_image(await kube.deployment(prod, "hexo"), "hexo") == "registry.sword.org/nginx:v1.0"
    assert await signed_command(info, "carol", "approve hexo --env prod") == 200
    await rolled_out("registry.sword.org/nginx:v2.0")
    assert await signed_command(info, "alice", 'hexo v3.0 --env prod --break-glass "prod is down"') == 200
    await rolled_out("registry.sword.org/nginx:v3.0")


async def test_faults_scripted_over_http_are_what_the_simulator_answers(sandbox: Sandbox) -> None:
    info = sandbox.info()
    status, body = await sandbox.control(
        "POST", "/faults", json={"method": "api.test", "count": 2, "error": "ratelimited"}
    )
    assert (status, body["ok"]) == (200, True)
    assert body["faults"]["api.test"] == [{"remaining": 2, "error": "ratelimited"}]
    status, body = await sandbox.control("POST", "/faults", json={"method": "api.test", "status": 500})
    assert status == 200
    status, body = await sandbox.control("POST", "/faults", json={"method": "api.test", "hang_seconds": 0.5})
    assert status == 200
    assert (await sandbox.control("GET", "/faults"))[1]["faults"]["api.test"] == [
        {"remaining": 2, "error": "ratelimited"},
        {"remaining": 1, "status": 500},
        {"remaining": 1, "hang_seconds": 0.5},
    ]

    answers = [await slack_call(info, "api.test") for _ in range(3)]
    assert answers == [
        (200, {"ok": False, "error": "ratelimited"}),
        (200, {"ok": False, "error": "ratelimited"}),
        (500, {"ok": False, "error": "internal_error"}),
    ]
    started = time.monotonic()
    status, body = await slack_call(info, "api.test")
    assert (status, body["ok"]) == (200, True)
    assert time.monotonic() - started >= 0.5
    assert (await slack_call(info, "api.test"))[1]["ok"] is True  # used up
    assert (await sandbox.control("GET", "/faults"))[1]["faults"] == {}

    await sandbox.control(
        "POST", "/faults", json={"method": "chat.update", "count": 3, "error": "ratelimited"}
    )
    status, body = await sandbox.control("DELETE", "/faults")
    assert (status, body["faults"]) == (200, {})


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "says"),
    [
        (
            "POST",
            "/faults",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            "not valid JSON",
        ),
        ("POST", "/faults", {}, "expected a JSON object"),
        ("POST", "/faults", {"json": {"count": 3, "error": "ratelimited"}}, "missing field 'method'"),
        ("POST", "/faults", {"json": {"method": "chat.update", "count": 3}}, "say what goes wrong"),
        ("POST", "/faults", {"json": {"method": "chat.update", "status": "500"}}, "'status'"),
        ("POST", "/restart/kube-proxy", {}, "cannot restart 'kube-proxy'"),
        ("POST", "/kill/etcd", {}, "cannot kill 'etcd'; one of: bot"),
    ],
)
async def test_bad_control_input_answers_400_saying_what_is_wrong(
    sandbox: Sandbox, method: str, path: str, kwargs: dict[str, Any], says: str
) -> None:
    pids = sandbox.info()["pids"]
    status, body = await sandbox.control(method, path, **kwargs)
    assert status == 400
    assert body["ok"] is False
    assert says in body["error"]
    assert sandbox.info()["pids"] == pids  # nothing was restarted or killed
    assert (await sandbox.control("GET", "/faults"))[1]["faults"] == {}


async def test_control_refuses_requests_from_other_web_origins(sandbox: Sandbox) -> None:
    pids = sandbox.info()["pids"]
    status, body = await sandbox.control("POST", "/kill/bot", headers={"Origin": "https://example.com"})
    assert (status, body["ok"]) == (403, False)
    assert "example.com" in body["error"]
    status, body = await sandbox.control("GET", "/", headers={"Host": "sandbox.example.com"})
    assert status == 403
    assert sandbox.info()["pids"] == pids


async def test_restart_kube_apiserver_gives_a_new_pid_and_the_cluster_works(sandbox: Sandbox) -> None:
    before = sandbox.info()["pids"]
    status, body = await sandbox.control("POST", "/restart/kube-apiserver")
    assert status == 200, body
    assert body["component"] == "kube-apiserver"
    assert body["previous_pid"] == before["kube-apiserver"]
    assert body["pid"] != before["kube-apiserver"]
    info = sandbox.info()  # rewritten before the answer
    assert info["pids"]["kube-apiserver"] == body["pid"]
    assert {n: p for n, p in info["pids"].items() if n != "kube-apiserver"} == {
        n: p for n, p in before.items() if n != "kube-apiserver"
    }
    assert not alive(before["kube-apiserver"])
    state = recorded(sandbox.workdir / "cluster")
    assert state is not None
    assert state.pids["kube-apiserver"] == body["pid"]

    api = await api_client_for(Path(info["kubeconfig"]))
    try:
        apps = client.AppsV1Api(api)
        await apps.patch_namespaced_deployment("hexo", info["namespace"], {"spec": {"replicas": 7}})
        pods = await wait_for_pods(
            api, info["namespace"], "app=hexo-server", lambda ps: len(ps) == 7 and all(map(pod_ready, ps))
        )
    finally:
        await api.close()
    assert len(pods) == 7
    assert await readyz(info["bot_url"]) == 200


async def test_killed_bot_is_started_again_by_its_supervisor(sandbox: Sandbox) -> None:
    old = sandbox.info()["pids"]["bot"]
    status, body = await sandbox.control("POST", "/kill/bot")
    assert (status, body["killed_pid"]) == (200, old)
    info = await sandbox.wait_info(lambda i: i["pids"]["bot"] not in (None, old))
    new = info["pids"]["bot"]
    assert not alive(old)
    async with asyncio.timeout(60):
        while True:  # the new process is starting: nothing to watch yet
            with contextlib.suppress(aiohttp.ClientError):
                if await readyz(info["bot_url"]) == 200:
                    break
            await asyncio.sleep(0.1)
    assert sandbox.info()["pids"]["bot"] == new
    assert await signed_command(info, "alice", "status hexo") == 200
    assert b"exited with status -9" in sandbox.output  # the supervisor said what happened


async def test_restart_bot_replaces_the_process_gracefully(sandbox: Sandbox) -> None:
    old = sandbox.info()["pids"]["bot"]
    status, body = await sandbox.control("POST", "/restart/bot")
    assert status == 200, body
    assert body["previous_pid"] == old
    assert body["pid"] not in (None, old)
    assert sandbox.info()["pids"]["bot"] == body["pid"]
    assert await readyz(sandbox.info()["bot_url"]) == 200
    assert not alive(old)


async def test_sigterm_stops_every_process_it_ever_started(sandbox: Sandbox) -> None:
    info = sandbox.info()
    state = recorded(sandbox.workdir / "cluster")
    assert state is not None
    sandbox.seen_pids.update(state.pids.values())
    assert len(sandbox.seen_pids) >= len(COMPONENTS) + 2  # a restarted apiserver, two later bots
    sandbox.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(sandbox.proc.wait(), 60)
    assert code == 0, sandbox.log()
    assert [pid for pid in sorted(sandbox.seen_pids) if alive(pid)] == []
    assert not Path(info["kubeconfig"]).parent.joinpath("cluster.json").exists()
