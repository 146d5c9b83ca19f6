"""The simulated kubelet's I/O: nodes, leases, the pod watch and the status writes.

It owns every write a real kubelet would make for the test cluster, and nothing else:

- registers its Node objects (Ready, large capacity, InternalIP 127.0.0.1) and renews their Leases in
  ``kube-node-lease`` every 10 s, so the node-lifecycle controller never evicts our pods;
- watches all pods (relisting on 410 Gone); a pod bound to one of our nodes gets the status decided by
  :func:`sandbox.kubelet.status.plan_status`; unscheduled pods are bound round-robin when asked to
  (clusters started without kube-scheduler);
- finishes graceful deletions at once (DELETE with gracePeriodSeconds=0 and a uid precondition).

Everything runs on one asyncio loop: one task per concern, started and cancelled by :meth:`Kubelet.run`.
Status writes go through a queue with a few workers so a burst of pods is handled in parallel, and a
pod whose status changes over time (crash loops, the ready delay) is re-queued by a loop timer.

Like a real kubelet it outlives restarts of the apiserver and of etcd: every loop retries transient
errors (:func:`sandbox.kubelet.retry.is_transient`) with capped jittered backoff. The pod watch
resumes from the last resourceVersion it saw and relists only on 410 Gone; a failed status patch,
binding or deletion is retried for that pod alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox.kubelet.rawapi import MERGE_PATCH, RawApi
from sandbox.kubelet.retry import Backoff, backoff_delay, is_transient
from sandbox.kubelet.status import Container, PodFacts, fake_pod_ip, plan_status
from sandbox.kubelet.traffic import Serving, exposition

log = logging.getLogger("sandbox.kubelet")

JsonDict = dict[str, Any]

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40
LEASE_RENEW_S = 10.0
WATCH_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 30.0  # one request (not a watch): the apiserver answers or gives up within 60 s
REGISTER_TIMEOUT_S = 120.0
STATUS_WORKERS = 4
KUBELET_VERSION = "v1.20.2-sandbox"


@dataclass
class _Tracked:
    """What this kubelet remembers about a pod bound to one of its nodes."""

    namespace: str
    name: str
    uid: str
    seen_at: datetime
    pod_ip: str
    pod: JsonDict
    last_status: JsonDict | None = None
    timer: asyncio.TimerHandle | None = None
    deleting: bool = False
    failures: int = 0  # consecutive failed writes, for the retry backoff


def _pod_path(tracked: _Tracked) -> str:
    return f"/api/v1/namespaces/{tracked.namespace}/pods/{tracked.name}"


@dataclass
class Kubelet:
    """A fake kubelet serving ``nodes`` nodes named ``{node_prefix}-{i}``."""

    api: client.ApiClient
    node_names: tuple[str, ...]
    ready_delay: float = 1.0
    restart_period: float = 5.0
    bind_unscheduled: bool = False
    _pods: dict[str, _Tracked] = field(default_factory=dict)
    _queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    _queued: set[str] = field(default_factory=set)
    _ips: count[int] = field(default_factory=count)
    _used_ips: set[str] = field(default_factory=set)  # never hand out an IP a pod already has
    _next_node: count[int] = field(default_factory=count)
    _binding: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _raw: RawApi = field(init=False)
    pod_rv: str | None = field(default=None, init=False)  # the last resourceVersion the watch saw

    async def run(self, registered: asyncio.Event | None = None) -> None:
        """Register the nodes, then serve pods until cancelled."""
        raw = RawApi(self.api, timeout=REQUEST_TIMEOUT_S)
        self._raw = raw
        await self._register_nodes()
        if registered is not None:
            registered.set()
        log.info("nodes registered: %s", ", ".join(self.node_names))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._renew_leases(), name="kubelet-leases")
                tg.create_task(self._watch_pods(), name="kubelet-pod-watch")
                for i in range(STATUS_WORKERS):
                    tg.create_task(self._status_worker(), name=f"kubelet-status-{i}")
        finally:
            for task in list(self._binding.values()):
                task.cancel()

    def metrics(self) -> str:
        """The traffic of the pods this kubelet runs, as Prometheus scrapes it (`traffic`)."""
        serving = []
        for t in self._pods.values():
            containers = t.pod.get("spec", {}).get("containers") or []
            if t.deleting or not containers or t.pod["metadata"].get("deletionTimestamp"):
                continue
            serving.append(
                Serving(
                    namespace=t.namespace,
                    pod=t.name,
                    app=str((t.pod["metadata"].get("labels") or {}).get("app", "")),
                    image=str(containers[0].get("image", "")),
                    ready_at=t.seen_at + timedelta(seconds=self.ready_delay),
                )
            )
        return exposition(serving, datetime.now(UTC))

    # ---------------------------------------------------------------- nodes and leases

    def _node_body(self, name: str) -> JsonDict:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        capacity = {"cpu": "1000", "memory": "1Ti", "pods": "1000", "ephemeral-storage": "1Ti"}
        conditions = [
            {"type": t, "status": "False", "reason": r, "lastHeartbeatTime": now, "lastTransitionTime": now}
            for t, r in (
                ("MemoryPressure", "KubeletHasSufficientMemory"),
                ("DiskPressure", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "KubeletHasSufficientPID"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "release-bot.sandbox/simulated": "true",
                },
            },
            "spec": {},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": conditions,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                "nodeInfo": {
                    "machineID": name,
                    "systemUUID": name,
                    "bootID": name,
                    "kernelVersion": "sandbox",
                    "osImage": "release-bot simulated kubelet",
                    "containerRuntimeVersion": "sandbox://0.1",
                    "kubeletVersion": KUBELET_VERSION,
                    "kubeProxyVersion": KUBELET_VERSION,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }

    async def _register_nodes(self) -> None:
        """Register every node, retrying while the apiserver is still starting (we may start first)."""
        deadline = asyncio.get_running_loop().time() + REGISTER_TIMEOUT_S
        backoff = Backoff(base=0.1, cap=1.0)
        for name in self.node_names:
            while True:
                try:
                    await self._register_node(name)
                    break
                except Exception as e:
                    if not (isinstance(e, ApiException) or is_transient(e)):
                        raise
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    log.debug("apiserver not ready yet (%s); retrying", _describe(e))
                    await backoff.sleep()

    async def _register_node(self, name: str) -> None:
        body = self._node_body(name)
        try:
            await self._raw.request("POST", "/api/v1/nodes", body=body)
        except ApiException as e:
            if e.status != 409:
                raise
            # A restarted kubelet: the node exists; report it Ready again.
            await self._raw.request(
                "PATCH",
                f"/api/v1/nodes/{name}/status",
                body={"status": body["status"]},
                content_type=MERGE_PATCH,
            )

    async def _renew_leases(self) -> None:
        """Renew every node's Lease each LEASE_RENEW_S; after a failure, retry sooner with backoff."""
        backoff = Backoff(cap=LEASE_RENEW_S)
        while True:
            failed = False
            for name in self.node_names:
                try:
                    await self._renew_lease(name)
                except Exception as e:
                    if not (isinstance(e, ApiException) or is_transient(e)):
                        log.exception("lease renewal for %s failed", name)
                    else:
                        log.warning("lease renewal for %s failed: %s", name, _describe(e))
                    failed = True
            if failed:
                await backoff.sleep()
            else:
                backoff.reset()
                await asyncio.sleep(LEASE_RENEW_S)

    async def _renew_lease(self, name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": now}
        base = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        try:
            await self._raw.request("PATCH", f"{base}/{name}", body={"spec": spec}, content_type=MERGE_PATCH)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {"metadata": {"name": name, "namespace": LEASE_NAMESPACE}, "spec": spec}
            with contextlib.suppress(ApiException):
                await self._raw.request("POST", base, body=body)

    # ---------------------------------------------------------------- the pod watch

    async def _watch_pods(self) -> None:
        """List, then follow the watch; resume from the last resourceVersion after any transient
        error, relist on 410 Gone (and after other errors, which the apiserver should not give)."""
        backoff = Backoff()
        self.pod_rv = None
        while True:
            try:
                if self.pod_rv is None:
                    self.pod_rv = await self._relist()
                    backoff.reset()
                started = asyncio.get_running_loop().time()
                if await self._watch_from(self.pod_rv):
                    backoff.reset()
                if asyncio.get_running_loop().time() - started > 1.0:
                    continue  # the server ended the watch (timeoutSeconds): resume at once
                # ended at once with nothing new (a server shutting down): not in a tight loop
            except ApiException as e:
                if e.status == 410:
                    log.info("pod watch expired (410 Gone): relisting")
                    self.pod_rv = None
                    continue
                if is_transient(e):
                    log.warning("pod watch failed (%s): resuming from %s", _describe(e), self.pod_rv)
                else:
                    log.warning("pod watch failed (%s): relisting", _describe(e))
                    self.pod_rv = None
            except Exception as e:
                if not is_transient(e) and not isinstance(e, ValueError):
                    log.exception("pod watch failed: relisting")
                    self.pod_rv = None
                else:
                    log.warning("pod watch interrupted (%s): resuming from %s", _describe(e), self.pod_rv)
            await backoff.sleep()

    async def _relist(self) -> str:
        listing = await self._raw.request("GET", "/api/v1/pods")
        for pod in listing.get("items", []):  # first: the IPs pods have (a restarted kubelet)
            ip = pod.get("status", {}).get("podIP")
            if ip and pod.get("spec", {}).get("nodeName") in self.node_names:
                self._used_ips.add(ip)
        seen: set[str] = set()
        for pod in listing.get("items", []):
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            self._on_pod(pod)
        for uid in list(self._pods):
            if uid not in seen:
                self._forget(uid)
        rv: str = listing["metadata"]["resourceVersion"]
        return rv

    async def _watch_from(self, rv: str) -> bool:
        """Follow the pod watch from ``rv`` until the server ends it, keeping ``pod_rv`` at the last
        version seen (so an interrupted watch resumes there); True if any event arrived."""
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": rv,
            "allowWatchBookmarks": True,
            "timeoutSeconds": WATCH_TIMEOUT_S,
        }
        resp = await self._raw.open("GET", "/api/v1/pods", query=query, timeout=WATCH_TIMEOUT_S + 30)
        seen = False
        try:
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                seen = True
                self.pod_rv = obj["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self._forget(obj["metadata"]["uid"])
                else:
                    self._on_pod(obj)
        finally:
            resp.release()
        return seen

    def _on_pod(self, pod: JsonDict) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid: str = meta["uid"]
        node = spec.get("nodeName")
        if not node:
            scheduler = spec.get("schedulerName", "default-scheduler")
            if self.bind_unscheduled and scheduler == "default-scheduler":
                self._start_binding(pod)
            return
        if node not in self.node_names:
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        tracked = self._pods.get(uid)
        if tracked is None:
            existing_ip = pod.get("status", {}).get("podIP")
            tracked = _Tracked(
                namespace=meta["namespace"],
                name=meta["name"],
                uid=uid,
                seen_at=datetime.now(UTC).replace(microsecond=0),
                pod_ip=existing_ip or self._new_ip(),
                pod=pod,
            )
            self._used_ips.add(tracked.pod_ip)
            self._pods[uid] = tracked
        tracked.pod = pod
        self._enqueue(uid)

    def _new_ip(self) -> str:
        for _ in range(254 * 254):
            ip = fake_pod_ip(next(self._ips))
            if ip not in self._used_ips:
                return ip
        return fake_pod_ip(next(self._ips))  # every address taken: share one

    def _forget(self, uid: str) -> None:
        tracked = self._pods.pop(uid, None)
        if tracked is not None:
            self._used_ips.discard(tracked.pod_ip)
            if tracked.timer is not None:
                tracked.timer.cancel()

    def _enqueue(self, uid: str) -> None:
        if uid not in self._queued:
            self._queued.add(uid)
            self._queue.put_nowait(uid)

    # ---------------------------------------------------------------- binding (no scheduler)

    def _start_binding(self, pod: JsonDict) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self._binding:
            return
        node = self.node_names[next(self._next_node) % len(self.node_names)]
        task = asyncio.get_running_loop().create_task(self._bind(pod, node), name=f"kubelet-bind-{uid}")
        self._binding[uid] = task
        task.add_done_callback(lambda _t: self._binding.pop(uid, None))

    async def _bind(self, pod: JsonDict, node: str) -> None:
        """Bind the pod to ``node``, retrying transient errors; done once bound, gone or taken."""
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        backoff = Backoff()
        while True:
            try:
                await self._raw.request("POST", path, body=body)
                return
            except Exception as e:
                if isinstance(e, ApiException) and e.status in (404, 409):
                    return  # deleted, or bound by someone else
                if not is_transient(e):
                    log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], _describe(e))
                    return
                log.info("binding %s/%s: %s; retrying", meta["namespace"], meta["name"], _describe(e))
            await backoff.sleep()

    # ---------------------------------------------------------------- status writes

    async def _status_worker(self) -> None:
        """Sync queued pods; a pod whose write failed transiently is re-queued after a backoff."""
        while True:
            uid = await self._queue.get()
            self._queued.discard(uid)
            tracked = self._pods.get(uid)
            if tracked is None:
                continue
            try:
                await self._sync(tracked)
                tracked.failures = 0
            except Exception as e:
                if isinstance(e, ApiException) and e.status in (404, 409):
                    continue  # the pod is gone (or was replaced): its watch event follows
                if is_transient(e):
                    log.warning("pod %s/%s: %s; retrying", tracked.namespace, tracked.name, _describe(e))
                elif isinstance(e, ApiException):
                    log.warning("pod %s/%s: %s; retrying", tracked.namespace, tracked.name, e.reason)
                else:
                    log.exception("pod %s/%s: unexpected error; retrying", tracked.namespace, tracked.name)
                self._schedule(tracked, backoff_delay(tracked.failures))
                tracked.failures += 1

    async def _sync(self, tracked: _Tracked) -> None:
        meta = tracked.pod["metadata"]
        if meta.get("deletionTimestamp"):
            if not tracked.deleting:
                tracked.deleting = True
                await self._finish_deletion(tracked)
            return
        spec = tracked.pod.get("spec", {})
        facts = PodFacts(
            uid=tracked.uid,
            containers=tuple(Container(c["name"], c.get("image", "")) for c in spec.get("containers", [])),
            init_containers=tuple(
                Container(c["name"], c.get("image", "")) for c in spec.get("initContainers", [])
            ),
            host_ip="127.0.0.1",
            pod_ip=tracked.pod_ip,
            seen_at=tracked.seen_at,
        )
        now = datetime.now(UTC)
        plan = plan_status(facts, now=now, ready_delay=self.ready_delay, restart_period=self.restart_period)
        if plan.status != tracked.last_status:
            await self._raw.request(
                "PATCH",
                f"{_pod_path(tracked)}/status",
                body={"status": plan.status},
                content_type=MERGE_PATCH,
            )
            tracked.last_status = plan.status
        if plan.recheck_at is not None:
            self._schedule(tracked, max(0.0, (plan.recheck_at - datetime.now(UTC)).total_seconds()))

    def _schedule(self, tracked: _Tracked, delay: float) -> None:
        if tracked.timer is not None:
            tracked.timer.cancel()
        tracked.timer = asyncio.get_running_loop().call_later(delay, self._enqueue, tracked.uid)

    async def _finish_deletion(self, tracked: _Tracked) -> None:
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": tracked.uid}}
        try:
            await self._raw.request("DELETE", _pod_path(tracked), body=body)
        except ApiException as e:
            if e.status not in (404, 409):
                tracked.deleting = False  # the retry deletes again
                raise
        except BaseException:
            tracked.deleting = False
            raise


def _describe(exc: BaseException) -> str:
    """A short text for a log line: the apiserver's reason, or the error's type and message."""
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
