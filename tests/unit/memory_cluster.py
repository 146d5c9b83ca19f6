"""An in-memory `Cluster` (the engine's own port, `bot.releases.ports.Cluster`) for fast state-machine
tests of the engine and every strategy. Not a Kubernetes: an idealised Deployment controller that
reacts at once — a new template replaces every pod (or, held the way the canary holds it, surges the
step's pods beside the old ones), pods of an image tagged `broken` crash-loop and `pullfail` cannot pull,
like the sandbox's kubelet. ConfigMaps and Leases are compare-and-set by resourceVersion, like the API
server. The real thing is tested in tests/integration against the real control plane."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from bot.kube.client import KubeConflict, NotFound

Obj = dict[str, Any]
T = TypeVar("T")
HOLD_MIN_READY = (
    100  # a minReadySeconds this long is the canary's "stop at N new pods" (it uses the deadline)
)


def merge(into: Any, patch: Any) -> Any:
    """A strategic merge patch, for what the bot sends: dicts merged, `containers` merged by name."""
    if not isinstance(patch, dict) or not isinstance(into, dict):
        return copy.deepcopy(patch)
    out = dict(into)
    for key, value in patch.items():
        if key == "containers" and isinstance(value, list):
            by_name = {c["name"]: c for c in out.get(key, [])}
            for c in value:
                by_name[c["name"]] = merge(by_name.get(c["name"], {}), c)
            out[key] = list(by_name.values())
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def json_patch(obj: Obj, ops: list[Obj]) -> Obj:
    out = copy.deepcopy(obj)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/") if p]
        target = out
        for p in parents:
            target = target.setdefault(p, {})
        if op["op"] == "test":
            if target.get(last) != op["value"]:
                raise KubeConflict(f"test of {op['path']} failed", 422)
        elif op["op"] in ("replace", "add"):
            target[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            target.pop(last, None)
    return out


def template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


class MemoryCluster:
    def __init__(self) -> None:
        self.unreachable_since: datetime | None = None
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {
            k: {}
            for k in (
                "deployments",
                "replicasets",
                "pods",
                "services",
                "configmaps",
                "leases",
                "horizontalpodautoscalers",
                "resourcequotas",
                "poddisruptionbudgets",
            )
        }
        self.events: list[Obj] = []
        self.writes: list[tuple[str, str]] = []  # (verb, what), for tests that count changes
        self.reads: list[str] = []  # the reads asked of this API (lists and gets), for tests that count them
        self._rv = 0
        self._watchers: list[tuple[str, str, str | None, asyncio.Queue[tuple[str, Obj]]]] = []

    # --- storage -------------------------------------------------------------------------------------

    def _stamp(self, obj: Obj) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return obj

    def _put(self, kind: str, obj: Obj, event: str) -> Obj:
        meta = obj["metadata"]
        self.objects[kind][(meta["namespace"], meta["name"])] = self._stamp(obj)
        self._notify(kind, event, obj)
        return copy.deepcopy(obj)

    def _get(self, kind: str, ns: str, name: str) -> Obj:
        try:
            return self.objects[kind][(ns, name)]
        except KeyError:
            raise NotFound(f"{kind} {ns}/{name}: not found", 404) from None

    def _delete(self, kind: str, ns: str, name: str) -> None:
        obj = self.objects[kind].pop((ns, name), None)
        if obj is not None:
            self._notify(kind, "DELETED", obj)

    def _notify(self, kind: str, event: str, obj: Obj) -> None:
        for k, ns, selector, queue in self._watchers:
            if k == kind and obj["metadata"]["namespace"] == ns and _selected(obj, selector):
                queue.put_nowait((event, copy.deepcopy(obj)))

    async def stream_of(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        queue: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue()
        entry = (kind, namespace, label_selector, queue)
        self._watchers.append(entry)
        try:
            items = [
                copy.deepcopy(o)
                for (ns, _), o in self.objects[kind].items()
                if ns == namespace and _selected(o, label_selector)
            ]
            for item in items:
                yield "ADDED", item
            yield "SYNCED", {"items": items, "metadata": {"resourceVersion": str(self._rv)}}
            while True:
                yield await queue.get()
        finally:
            self._watchers.remove(entry)

    def drop_watches(self, error: str = "connection reset") -> None:
        """Every watch reports what Kube.stream reports when the API server goes away."""
        for *_, queue in self._watchers:
            queue.put_nowait(("DOWN", {"error": error}))

    def restore_watches(self) -> None:
        for *_, queue in self._watchers:
            queue.put_nowait(("UP", {}))

    # --- Deployments and their controller ------------------------------------------------------------

    def add_app(
        self,
        ns: str,
        name: str = "hexo",
        image: str = "registry.sword.org/nginx:v1.0",
        replicas: int = 6,
        *,
        labels: dict[str, str] | None = None,
        container: str = "hexo",
    ) -> None:
        """The guide's Deployment (container `hexo`) and Service, rolled out; with `labels`, another
        Deployment of the app (its own pods, no Service)."""
        service_too = labels is None
        labels = labels or {"app": "hexo-server", "version": "v1.0"}
        dep = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": ns,
                "generation": 1,
                "annotations": {},
                "uid": f"uid-{name}",
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {"containers": [{"name": container, "image": image}]},
                },
            },
            "status": {},
        }
        self._put("deployments", dep, "ADDED")
        self._reconcile(ns, name)
        if not service_too:
            return
        service = {
            "metadata": {"name": "hexo-service", "namespace": ns},
            "spec": {"selector": dict(labels)},
        }
        self._put("services", service, "ADDED")

    async def deployment(self, ns: str, name: str) -> Obj:
        self.reads.append(f"deployment {name}")
        return copy.deepcopy(self._get("deployments", ns, name))

    async def deployments(self, ns: str) -> list[Obj]:
        self.reads.append("deployments")
        return [copy.deepcopy(o) for (n, _), o in self.objects["deployments"].items() if n == ns]

    async def patch_deployment(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj:
        dep = self._get("deployments", ns, name)
        new = json_patch(dep, patch) if isinstance(patch, list) else merge(dep, patch)
        if dry_run:
            return copy.deepcopy(new)
        if new.get("spec") != dep.get("spec"):
            new["metadata"]["generation"] = dep["metadata"].get("generation", 1) + 1
        self.writes.append(("patch", f"deployment {name}"))
        self._put("deployments", new, "MODIFIED")
        self._reconcile(ns, name)
        return copy.deepcopy(self._get("deployments", ns, name))

    async def create_deployment(self, ns: str, body: Obj, *, dry_run: bool = False) -> Obj:
        name = body["metadata"]["name"]
        if (ns, name) in self.objects["deployments"]:
            raise KubeConflict(f"deployment {name} exists", 409)
        if dry_run:
            return copy.deepcopy(body)
        dep = copy.deepcopy(body)
        dep["metadata"].update({"namespace": ns, "generation": 1, "uid": f"uid-{name}"})
        dep.setdefault("status", {})
        self.writes.append(("create", f"deployment {name}"))
        self._put("deployments", dep, "ADDED")
        self._reconcile(ns, name)
        return copy.deepcopy(self._get("deployments", ns, name))

    async def delete_deployment(self, ns: str, name: str) -> None:
        dep = self._get("deployments", ns, name)
        self.writes.append(("delete", f"deployment {name}"))
        for kind in ("replicasets", "pods"):
            for (n, pod_name), obj in list(self.objects[kind].items()):
                if n == ns and _owned_by(obj, dep):
                    self._delete(kind, ns, pod_name)
        self._delete("deployments", ns, name)

    async def wait_deployment_gone(self, ns: str, name: str, timeout: float) -> None:
        if (ns, name) in self.objects["deployments"]:
            raise TimeoutError

    async def watch_deployment(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T:
        found = predicate(copy.deepcopy(self._get("deployments", ns, name)))
        if found is None:
            raise TimeoutError
        return found

    async def replica_sets(self, deployment: Obj) -> list[Obj]:
        ns = deployment["metadata"]["namespace"]
        return [
            copy.deepcopy(rs)
            for (n, _), rs in self.objects["replicasets"].items()
            if n == ns and _owned_by(rs, deployment)
        ]

    async def pods(self, ns: str, selector: dict[str, str]) -> list[Obj]:
        return [
            copy.deepcopy(p)
            for (n, _), p in self.objects["pods"].items()
            if n == ns and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]

    def _reconcile(self, ns: str, name: str) -> None:
        dep = self._get("deployments", ns, name)
        spec = dep["spec"]
        template = spec["template"]
        h = template_hash(template)
        sets = [rs for (n, _), rs in self.objects["replicasets"].items() if n == ns and _owned_by(rs, dep)]
        current = next((rs for rs in sets if rs["metadata"]["labels"]["pod-template-hash"] == h), None)
        revision = max(
            (int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in sets),
            default=0,
        )
        if current is None:
            revision += 1
            current = {
                "metadata": {
                    "name": f"{name}-{h}",
                    "namespace": ns,
                    "labels": {**template["metadata"]["labels"], "pod-template-hash": h},
                    "annotations": {
                        "deployment.kubernetes.io/revision": str(revision),
                        **{
                            k: v
                            for k, v in dep["metadata"].get("annotations", {}).items()
                            if k == "kubernetes.io/change-cause"
                        },
                    },
                    "ownerReferences": [{"uid": dep["metadata"]["uid"]}],
                    "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "spec": {"replicas": 0, "template": copy.deepcopy(template)},
                "status": {},
            }
            sets.append(current)
        elif current is not max(sets, key=_revision_of):  # back to an older template: it is the newest now
            current["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(revision + 1)
        dep["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = current[
            "metadata"
        ]["annotations"]["deployment.kubernetes.io/revision"]
        replicas = spec.get("replicas", 1)
        if not spec.get("paused"):
            rolling = spec.get("strategy", {}).get("rollingUpdate", {})
            held = spec.get("minReadySeconds", 0) >= HOLD_MIN_READY
            new = min(replicas, int(rolling.get("maxSurge", 1))) if held else replicas
            for rs in sets:
                rs["spec"]["replicas"] = new if rs is current else (replicas if held else 0)
        for rs in sets:
            self._scale_pods(ns, rs)
            self._put("replicasets", rs, "MODIFIED")
        self._status(dep, current, sets)

    def _scale_pods(self, ns: str, rs: Obj) -> None:
        prefix = rs["metadata"]["name"]
        mine = sorted(n for (pn, n) in self.objects["pods"] if pn == ns and n.startswith(prefix + "-"))
        want = rs["spec"]["replicas"]
        for n in mine[want:]:
            self._delete("pods", ns, n)
        for i in range(len(mine), want):
            image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            self._put("pods", _pod(ns, f"{prefix}-{i}", rs, image), "ADDED")

    def _status(self, dep: Obj, current: Obj, sets: list[Obj]) -> None:
        ns = dep["metadata"]["namespace"]
        pods = [
            p
            for (n, _), p in self.objects["pods"].items()
            if n == ns and any(p["metadata"]["name"].startswith(rs["metadata"]["name"] + "-") for rs in sets)
        ]
        new = [p for p in pods if p["metadata"]["name"].startswith(current["metadata"]["name"] + "-")]
        ready = [p for p in pods if _pod_ready(p)]
        held = dep["spec"].get("minReadySeconds", 0) >= HOLD_MIN_READY
        available = [p for p in ready if not (held and p in new)]
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": len(pods),
            "updatedReplicas": len(new),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
        }
        self._put("deployments", dep, "MODIFIED")

    # --- Services ------------------------------------------------------------------------------------

    async def service(self, ns: str, name: str) -> Obj:
        self.reads.append(f"service {name}")
        return copy.deepcopy(self._get("services", ns, name))

    async def patch_service(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj:
        svc = self._get("services", ns, name)
        new = json_patch(svc, patch) if isinstance(patch, list) else merge(svc, patch)
        if dry_run:
            return copy.deepcopy(new)
        self.writes.append(("patch", f"service {name}"))
        return self._put("services", new, "MODIFIED")

    async def watch_endpoints(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T:
        selector = self._get("services", ns, name)["spec"].get("selector") or {}
        pods = [p for p in await self.pods(ns, selector) if _pod_ready(p)]
        endpoints = {"subsets": [{"addresses": [{"ip": p["status"]["podIP"]} for p in pods]}]}
        found = predicate(endpoints)
        if found is None:
            raise TimeoutError
        return found

    # --- ConfigMaps and Leases (compare-and-set) -----------------------------------------------------

    async def configmap(self, ns: str, name: str) -> Obj | None:
        self.reads.append(f"configmap {name}")
        obj = self.objects["configmaps"].get((ns, name))
        return copy.deepcopy(obj) if obj else None

    async def create_configmap(self, ns: str, body: Obj) -> Obj:
        return self._create("configmaps", ns, body)

    async def replace_configmap(self, ns: str, body: Obj) -> Obj:
        return self._replace("configmaps", ns, body)

    async def lease(self, ns: str, name: str) -> Obj | None:
        self.reads.append(f"lease {name}")
        obj = self.objects["leases"].get((ns, name))
        return copy.deepcopy(obj) if obj else None

    async def create_lease(self, ns: str, body: Obj) -> Obj:
        return self._create("leases", ns, body)

    async def replace_lease(self, ns: str, body: Obj) -> Obj:
        return self._replace("leases", ns, body)

    def _create(self, kind: str, ns: str, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = ns
        if (ns, obj["metadata"]["name"]) in self.objects[kind]:
            raise KubeConflict(f"{kind} exists", 409)
        self.writes.append(("create", kind))
        return self._put(kind, obj, "ADDED")

    def _replace(self, kind: str, ns: str, body: Obj) -> Obj:
        current = self._get(kind, ns, body["metadata"]["name"])
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise KubeConflict(f"{kind} changed", 409)
        obj = copy.deepcopy(body)
        obj["metadata"]["namespace"] = ns
        self.writes.append(("replace", kind))
        return self._put(kind, obj, "MODIFIED")

    async def autoscalers(self, ns: str) -> list[Obj]:
        self.reads.append("autoscalers")
        return [o for (n, _), o in self.objects["horizontalpodautoscalers"].items() if n == ns]

    async def patch_autoscaler(self, ns: str, name: str, patch: Obj) -> Obj:
        hpa = self._get("horizontalpodautoscalers", ns, name)
        self.writes.append(("patch", f"horizontalpodautoscaler {name}"))
        return self._put("horizontalpodautoscalers", merge(hpa, patch), "MODIFIED")

    async def disruption_budgets(self, ns: str) -> list[Obj]:
        self.reads.append("budgets")
        return [o for (n, _), o in self.objects["poddisruptionbudgets"].items() if n == ns]

    async def quotas(self, ns: str) -> list[Obj]:
        self.reads.append("quotas")
        return [o for (n, _), o in self.objects["resourcequotas"].items() if n == ns]

    async def event(self, involved: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append({"reason": reason, "message": message, "warning": warning})


def _selected(obj: Obj, label_selector: str | None) -> bool:
    if not label_selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in (p.split("=", 1) for p in label_selector.split(",")))


def _owned_by(obj: Obj, dep: Obj) -> bool:
    return any(o.get("uid") == dep["metadata"]["uid"] for o in obj["metadata"].get("ownerReferences", []))


def _revision_of(rs: Obj) -> int:
    return int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def _pod(ns: str, name: str, rs: Obj, image: str) -> Obj:
    ready = "broken" not in image and "pullfail" not in image
    waiting = {"reason": "CrashLoopBackOff"} if "broken" in image else {"reason": "ImagePullBackOff"}
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": dict(rs["metadata"]["labels"]),
            "ownerReferences": [{"uid": rs["metadata"]["name"]}],
        },
        "spec": copy.deepcopy(rs["spec"]["template"]["spec"]),
        "status": {
            "phase": "Running" if ready else "Pending",
            "podIP": f"10.244.0.{abs(hash(name)) % 250}",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
            "containerStatuses": [
                {
                    "name": "hexo",
                    "ready": ready,
                    "restartCount": 0 if ready else 1,
                    "state": {"running": {}} if ready else {"waiting": waiting},
                }
            ],
        },
    }


def _pod_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
