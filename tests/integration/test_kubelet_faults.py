"""The simulated kubelet against an apiserver that misbehaves on purpose, over real HTTP on loopback.

A small scripted apiserver answers the kubelet's real kubernetes_asyncio client: pod status patches
get 429 and 503 before they succeed, the first lease renewal gets 500, the pod watch is cut in the
middle of an event (an incomplete chunked payload, as a restarting apiserver does) and then answers
410 Gone. The kubelet must resume the watch from the last resourceVersion it saw, relist only on
410, retry every write, and keep running. (Real apiserver and etcd restarts: test_cluster.py.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client

from sandbox.kubelet.agent import Kubelet

pytestmark = pytest.mark.integration

NODE = "fake-node-0"
NS = "faults"


def pod(name: str, rv: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "resourceVersion": rv},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "registry/app:v1"}]},
        "status": {},
    }


@dataclass
class ScriptedApiServer:
    """Answers what the kubelet asks, with the faults scripted below; records what it saw."""

    status_faults: dict[str, list[int]] = field(default_factory=lambda: {"a": [429, 503]})
    lease_faults: list[int] = field(default_factory=lambda: [500])
    lists: int = 0
    watch_rvs: list[str] = field(default_factory=list)
    status_attempts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    lease_answers: list[int] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await self.changed.wait()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/nodes", self.create_node)
        app.router.add_patch(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}", self.lease
        )
        app.router.add_get("/api/v1/pods", self.pods)
        app.router.add_patch("/api/v1/namespaces/{ns}/pods/{name}/status", self.pod_status)
        return app

    async def create_node(self, request: web.Request) -> web.Response:
        return web.json_response(await request.json(), status=201)

    async def lease(self, request: web.Request) -> web.Response:
        status = self.lease_faults.pop(0) if self.lease_faults else 200
        self.lease_answers.append(status)
        self.bump()
        return web.json_response({"kind": "Status", "code": status, "message": "scripted"}, status=status)

    async def pod_status(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.status_attempts[name] = self.status_attempts.get(name, 0) + 1
        faults = self.status_faults.get(name, [])
        status = faults.pop(0) if faults else 200
        if status == 200:
            self.statuses[name] = (await request.json())["status"]
        self.bump()
        return web.json_response({"kind": "Status", "code": status, "message": "scripted"}, status=status)

    async def pods(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.lists += 1
            self.bump()
            if self.lists == 1:
                return web.json_response({"metadata": {"resourceVersion": "10"}, "items": [pod("a", "9")]})
            items = [pod("a", "9"), pod("b", "11"), pod("c", "30")]
            return web.json_response({"metadata": {"resourceVersion": "30"}, "items": items})
        self.watch_rvs.append(request.query["resourceVersion"])
        self.bump()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        n = len(self.watch_rvs)
        if n == 1:  # one event, then the connection dies in the middle of the next one
            await resp.write(json.dumps({"type": "ADDED", "object": pod("b", "11")}).encode() + b"\n")
            await resp.write(b'{"type": "MODIFIED", "object": {"metad')
            assert request.transport is not None
            request.transport.close()
            return resp
        if n == 2:  # the resumed watch is told its version is too old
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
            await resp.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            return resp
        await self.closing.wait()  # later watches stay open
        return resp


@pytest_asyncio.fixture(loop_scope="session")
async def scripted() -> AsyncIterator[tuple[ScriptedApiServer, client.ApiClient]]:
    server = ScriptedApiServer()
    runner = web.AppRunner(server.app(), shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    config = client.Configuration(host=f"http://{host}:{port}")
    config.api_key = {"BearerToken": "Bearer test"}
    api = client.ApiClient(config)
    try:
        yield server, api
    finally:
        server.closing.set()
        await api.close()
        await runner.cleanup()


async def test_kubelet_retries_every_write_and_resumes_its_watch(
    scripted: tuple[ScriptedApiServer, client.ApiClient],
) -> None:
    server, api = scripted
    kubelet = Kubelet(api, (NODE,), ready_delay=0.0)
    task = asyncio.create_task(kubelet.run())
    try:
        await server.until(lambda: {"a", "b", "c"} <= set(server.statuses) or task.done())
        assert not task.done(), task.exception()
        # pod a's status went through on the third try, after 429 and 503
        assert server.status_attempts["a"] == 3
        assert {name: s["phase"] for name, s in server.statuses.items()} == {
            "a": "Running",
            "b": "Running",
            "c": "Running",
        }
        # the cut watch resumed from the last version it saw (11); only the 410 made it relist
        await server.until(lambda: len(server.watch_rvs) >= 3)
        assert server.watch_rvs[:3] == ["10", "11", "30"]
        assert server.lists == 2
        # the lease renewal refused with 500 was retried at once, not after the 10 s period
        await server.until(lambda: 200 in server.lease_answers)
        assert server.lease_answers[:2] == [500, 200]
        assert kubelet.pod_rv == "30"
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
