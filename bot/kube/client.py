"""The bot's only door to Kubernetes: one ApiClient (one aiohttp session) and the guide's verbs.

Everything here speaks plain dicts (JSON as the API server sends it) so the rest of the bot never sees
kubernetes_asyncio types. Errors become bot.errors: NotFound, Conflict (compare-and-set lost) or
KubeError (anything else, with the API server's message).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from bot.errors import InfraError
from bot.metrics import Metrics

log = logging.getLogger(__name__)
Obj = dict[str, Any]
T = TypeVar("T")

CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# One API call (not a watch) gives up after this long: a hung apiserver must not hang a release.
REQUEST_TIMEOUT_S = 20.0
# Server-side length of one watch request; the stream re-opens it from the last resourceVersion.
WATCH_SECONDS = 290
# A watch connection that delivers nothing (not even the server closing it) for this long is dead.
WATCH_READ_TIMEOUT_S = WATCH_SECONDS + 30.0
# Backoff between attempts after a transport error: capped, with full jitter.
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
# Errors of the transport or of an overloaded/restarting server: worth trying again.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)
# ... and, inside a watch's body, a line cut in half.
STREAM_ERRORS: tuple[type[BaseException], ...] = (*TRANSPORT_ERRORS, ValueError)
# The list (and watch) parameters by their names in the URL, for a path the generated API does not have.
QUERY_NAMES = {
    "resource_version": "resourceVersion",
    "watch": "watch",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
}


class KubeError(InfraError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.cluster = ""  # the name of the cluster that answered so (or did not), when known


class NotFound(KubeError):
    pass


class KubeUnavailable(KubeError):
    """The API server could not be reached or answered 5xx/429: the facts we have may be stale.
    `retry_after`: the seconds the server asked us to wait (API Priority and Fairness sends
    Retry-After with its 429s), if it said."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt` (0-based) after a transport error: capped and jittered."""
    return random.uniform(BACKOFF_MIN_S, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt))  # noqa: S311


# The longest Retry-After honoured: a server asking for more is waited on in steps of this.
RETRY_AFTER_MAX_S = 30.0


def retry_delay(error: BaseException, attempt: int) -> float:
    """Seconds to wait before trying again after `error`: the backoff, or longer when the server said
    how long to wait (Retry-After)."""
    asked = getattr(error, "retry_after", None) or 0.0
    return max(backoff(attempt), min(asked, RETRY_AFTER_MAX_S))


def _retry_after(headers: Any) -> float | None:
    """The Retry-After header in seconds (Kubernetes sends whole seconds), if any."""
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):
        return None


def transient_status(status: int | None) -> bool:
    return status is not None and (status == 429 or status >= 500)


class KubeConflict(KubeError):
    """A compare-and-set lost (HTTP 409): someone changed the object first. Not shown to people: the
    apiserver's words are for logs; callers retry or raise a refusal of their own."""


def _translate(e: ApiException, what: str) -> Exception:
    message = e.reason or ""
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(e.body or message or "{}").get("message", message)
    if e.status == 404:
        return NotFound(f"{what}: not found", 404)
    if e.status == 409:
        return KubeConflict(f"{what}: changed by someone else ({message})", 409)
    if transient_status(e.status):
        return KubeUnavailable(
            f"{what}: the API server answered {e.status} ({message})", e.status, _retry_after(e.headers)
        )
    return KubeError(f"{what}: {message or e.status}", e.status)


async def first_while_up(
    events: AsyncGenerator[tuple[str, Obj], None], predicate: Callable[[Obj], T | None], timeout: float
) -> T:
    """The first `predicate(obj)` that is not None among a stream's added or modified objects.
    TimeoutError after `timeout` seconds of the stream being up: time while it is DOWN (the API
    server cannot be reached) does not count, so a deadline never passes on stale facts."""
    left = timeout
    down = False
    async with contextlib.aclosing(events):
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(None if down else left):
                    kind, obj = await anext(events)
            finally:
                if not down:
                    left -= time.monotonic() - started
            if kind == "DOWN":
                down = True
            elif kind in ("UP", "SYNCED"):
                down = False
            elif kind in ("ADDED", "MODIFIED"):
                found = predicate(obj)
                if found is not None:
                    return found


# The name every write of the bot carries, so managedFields show what release-bot changed.
FIELD_MANAGER = "release-bot"


def _writing(dry_run: bool = False) -> dict[str, str]:
    """The query parameters of a write: the bot's field manager, and `dryRun=All` for a dry run
    (admission, defaulting and validation run; nothing is stored)."""
    return {"field_manager": FIELD_MANAGER, **({"dry_run": "All"} if dry_run else {})}


def _api_error(status: int, reason: str, headers: Any) -> ApiException:
    e = ApiException(status=status, reason=reason)
    e.headers = headers
    return e


class Kube:
    """The bot's Kubernetes client. Create with `await Kube.connect(...)`, close with `await close()`."""

    def __init__(self, api: client.ApiClient, name: str = "default") -> None:
        self.api = api
        self.name = name  # the cluster's name in the catalog (`clusters:`), for metrics and answers
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.autoscaling = client.AutoscalingV1Api(api)
        self.policy = client.PolicyV1Api(api)
        self._budgets_v1: bool | None = None  # whether the API server serves policy/v1 budgets
        self.requests = 0  # API requests made, for the benchmarks
        self.metrics: Metrics | None = None  # counts failed calls when set
        # When the API server last stopped answering (None while it answers): cards say so.
        self.unreachable_since: datetime | None = None
        self.answered_at = 0.0  # time.monotonic() of its last answer (0: none yet)

    @classmethod
    async def connect(
        cls,
        kubeconfig: Path | None = None,
        *,
        context: str | None = None,
        in_cluster: bool = False,
        name: str = "default",
    ) -> Kube:
        """A client for `kubeconfig` (its `context`, else its current one); with neither a kubeconfig
        nor a context, the pod's ServiceAccount when there is one; `in_cluster` insists on it."""
        cfg = client.Configuration()
        own = kubeconfig is None and context is None and IN_CLUSTER_TOKEN.exists()  # noqa: ASYNC240
        if in_cluster or own:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=cfg,
            )
        # Watches hold a connection each for minutes: a pool big enough that they never starve writes.
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, 1000)
        return cls(client.ApiClient(configuration=cfg), name)

    async def close(self) -> None:
        await self.api.close()

    def _count(self, kind: str) -> None:
        self.requests += 1
        if self.metrics is not None:
            self.metrics.kube_requests.labels(kind, self.name).inc()

    def _reached(self) -> None:
        self.unreachable_since = None
        self.answered_at = time.monotonic()
        if self.metrics is not None:
            self.metrics.cluster_up.labels(self.name).set(1)

    def _unreachable(self) -> None:
        if self.unreachable_since is None:
            self.unreachable_since = datetime.now(UTC)
        if self.metrics is not None:
            self.metrics.cluster_up.labels(self.name).set(0)

    def _named(self, e: Exception) -> Exception:
        if isinstance(e, KubeError):
            e.cluster = self.name
        return e

    def _failed(self, what: str, status: int | None) -> None:
        if self.metrics is not None:
            self.metrics.kube_error(what, status, self.name)
        if status is None or transient_status(status):
            self._unreachable()

    async def call(self, what: str, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Call one API operation and return the raw JSON body as dicts. Raises KubeUnavailable when
        the server cannot be reached, does not answer within REQUEST_TIMEOUT_S, or answers 5xx/429."""
        self._count("call")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                resp = await fn(*args, _preload_content=False, **kwargs)
                async with resp:
                    body = await resp.read()
                    status, headers = resp.status, resp.headers
        except ApiException as e:
            self._failed(what, e.status)
            raise self._named(_translate(e, what)) from e
        except TRANSPORT_ERRORS as e:
            self._failed(what, None)
            raise self._named(
                KubeUnavailable(f"{what}: cannot reach the API server ({str(e) or type(e).__name__})")
            ) from e
        if not 200 <= status <= 299:
            self._failed(what, status)
            raise self._named(_translate(_api_error(status, body.decode(errors="replace"), headers), what))
        self._reached()
        return json.loads(body) if body else {}

    # --- Deployments -------------------------------------------------------------------------------

    async def deployment(self, ns: str, name: str) -> Obj:
        r: Obj = await self.call(f"deployment {ns}/{name}", self.apps.read_namespaced_deployment, name, ns)
        return r

    async def patch_deployment(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj:
        r: Obj = await self.call(
            f"deployment {ns}/{name}",
            self.apps.patch_namespaced_deployment,
            name,
            ns,
            patch,
            **_writing(dry_run),
        )
        return r

    async def create_deployment(self, ns: str, body: Obj, *, dry_run: bool = False) -> Obj:
        r: Obj = await self.call(
            f"deployment {ns}/{body['metadata']['name']}",
            self.apps.create_namespaced_deployment,
            ns,
            body,
            **_writing(dry_run),
        )
        return r

    async def delete_deployment(self, ns: str, name: str) -> None:
        """Delete in the foreground: the Deployment stays (with a deletionTimestamp) until its
        ReplicaSets and pods are gone, so `wait_deployment_gone` means the pods are gone too."""
        await self.call(
            f"deployment {ns}/{name}",
            self.apps.delete_namespaced_deployment,
            name,
            ns,
            body={"propagationPolicy": "Foreground"},
        )

    async def replica_sets(self, deployment: Obj) -> list[Obj]:
        """The ReplicaSets this Deployment owns (as `kubectl rollout history` finds them)."""
        ns = deployment["metadata"]["namespace"]
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        r = await self.call(
            f"replicasets in {ns}",
            self.apps.list_namespaced_replica_set,
            ns,
            label_selector=selector,
        )
        uid = deployment["metadata"]["uid"]
        return [
            rs
            for rs in r.get("items", [])
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))
        ]

    async def pods(self, ns: str, selector: dict[str, str]) -> list[Obj]:
        r = await self.call(
            f"pods in {ns}",
            self.core.list_namespaced_pod,
            ns,
            label_selector=",".join(f"{k}={v}" for k, v in selector.items()),
        )
        items: list[Obj] = r.get("items", [])
        return items

    async def watch_deployment(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T:
        """Wait, driven by a watch, until predicate(deployment) returns a value; TimeoutError after
        `timeout` seconds. Resumes after 410 Gone by listing again."""
        return await self.watch_until(
            f"deployment {ns}/{name}",
            lambda **kw: self.apps.list_namespaced_deployment(ns, **kw),
            f"metadata.name={name}",
            predicate,
            timeout,
        )

    async def watch_until(
        self,
        what: str,
        lister: Callable[..., Awaitable[Any]],
        field_selector: str,
        predicate: Callable[[Obj], T | None],
        timeout: float,
    ) -> T:
        """The first `predicate(obj)` that is not None, for the objects `field_selector` picks;
        TimeoutError after `timeout` seconds of the watch being up (see `first_while_up`)."""
        return await first_while_up(
            self.stream(what, lister, field_selector=field_selector), predicate, timeout
        )

    async def stream(
        self,
        what: str,
        lister: Callable[..., Awaitable[Any]],
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> AsyncGenerator[tuple[str, Obj], None]:
        """List, then watch, forever, whatever the transport does.

        Every listed object comes as ADDED, then ("SYNCED", the listing), then the watch's events. Any
        transport error (refused or reset connections, incomplete payloads, TLS errors, timeouts, 5xx,
        429) yields ("DOWN", {"error": text}) once and retries with capped, jittered backoff from the
        last resourceVersion; ("UP", {}) says the watch is open again. 410 Gone (history compacted)
        lists again. The stream only ends by cancellation."""
        selectors: dict[str, str] = {}
        if field_selector:
            selectors["field_selector"] = field_selector
        if label_selector:
            selectors["label_selector"] = label_selector
        rv = ""
        down = False
        attempt = 0
        while True:
            try:
                if not rv:
                    listing = await self.call(what, lister, **selectors)
                    for item in listing.get("items", []):
                        yield "ADDED", item
                    down, attempt = False, 0
                    yield "SYNCED", listing
                    rv = listing["metadata"]["resourceVersion"]
                async for kind, obj in self._watch_once(what, lister, rv, selectors):
                    if kind == "OPEN":
                        if down:
                            down, attempt = False, 0
                            yield "UP", {}
                        continue
                    if kind == "GONE":
                        rv = ""
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    if kind != "BOOKMARK":
                        yield kind, obj
            except KubeError as e:
                if not down:
                    down = True
                    yield "DOWN", {"error": str(e)}
                if not isinstance(e, KubeUnavailable):
                    log.warning("watch of %s failed (%s); retrying", what, e)
                await asyncio.sleep(retry_delay(e, attempt))
                attempt += 1

    async def _watch_once(
        self, what: str, lister: Callable[..., Awaitable[Any]], rv: str, selectors: dict[str, str]
    ) -> AsyncIterator[tuple[str, Obj]]:
        """One watch request from `rv`: its events, ("OPEN", {}) once the server accepted it, and
        ("GONE", {}) on 410. Transport errors become KubeUnavailable."""
        self._count("watch")
        try:
            resp = await lister(
                resource_version=rv,
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(total=None, sock_read=WATCH_READ_TIMEOUT_S),
                **selectors,
            )
        except ApiException as e:
            if e.status == 410:
                yield "GONE", {}
                return
            self._failed(what, e.status)
            raise _translate(e, what) from e
        except TRANSPORT_ERRORS as e:
            self._failed(what, None)
            raise KubeUnavailable(f"{what}: cannot watch ({str(e) or type(e).__name__})") from e
        try:
            async with resp:
                if resp.status == 410:
                    yield "GONE", {}
                    return
                if not 200 <= resp.status <= 299:
                    self._failed(what, resp.status)
                    raise _translate(_api_error(resp.status, await resp.text(), resp.headers), what)
                self._reached()
                yield "OPEN", {}
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            yield "GONE", {}
                            return
                        raise KubeUnavailable(f"{what}: watch failed: {obj.get('message')}", obj.get("code"))
                    yield kind, obj
        except STREAM_ERRORS as e:
            self._failed(what, None)
            raise KubeUnavailable(f"{what}: watch broken ({str(e) or type(e).__name__})") from e

    def stream_of(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        """`stream` of every object of `kind` in `namespace` (deployments, pods, configmaps, services,
        horizontalpodautoscalers, resourcequotas or poddisruptionbudgets; namespace "": in every
        namespace)."""
        core, autoscaling = self.core, self.autoscaling
        listers: dict[str, Callable[..., Awaitable[Any]]] = {
            "deployments": lambda **kw: self.apps.list_namespaced_deployment(namespace, **kw),
            "pods": lambda **kw: core.list_namespaced_pod(namespace, **kw),
            "configmaps": lambda **kw: core.list_namespaced_config_map(namespace, **kw),
            "services": lambda **kw: core.list_namespaced_service(namespace, **kw),
            "horizontalpodautoscalers": lambda **kw: autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, **kw
            ),
            "resourcequotas": lambda **kw: core.list_namespaced_resource_quota(namespace, **kw),
            "poddisruptionbudgets": lambda **kw: self._list_budgets(namespace, **kw),
        }
        if not namespace:  # every namespace: one cluster-wide list and watch
            listers = {
                "deployments": self.apps.list_deployment_for_all_namespaces,
                "pods": core.list_pod_for_all_namespaces,
                "configmaps": core.list_config_map_for_all_namespaces,
                "services": core.list_service_for_all_namespaces,
                "horizontalpodautoscalers": autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces,
                "resourcequotas": core.list_resource_quota_for_all_namespaces,
                "poddisruptionbudgets": lambda **kw: self._list_budgets("", **kw),
            }
        where = namespace or "every namespace"
        what = f"{kind} in {where}" + (f" ({label_selector})" if label_selector else "")
        return self.stream(what, listers[kind], label_selector=label_selector)

    def deployment_events(self, ns: str, name: str) -> AsyncIterator[tuple[str, Obj]]:
        return self.stream(
            f"deployment {ns}/{name}",
            lambda **kw: self.apps.list_namespaced_deployment(ns, **kw),
            field_selector=f"metadata.name={name}",
        )

    def pod_events(self, ns: str, selector: dict[str, str]) -> AsyncIterator[tuple[str, Obj]]:
        return self.stream(
            f"pods in {ns}",
            lambda **kw: self.core.list_namespaced_pod(ns, **kw),
            label_selector=",".join(f"{k}={v}" for k, v in selector.items()),
        )

    def configmap_events(self, ns: str, name: str) -> AsyncIterator[tuple[str, Obj]]:
        return self.stream(
            f"configmap {ns}/{name}",
            lambda **kw: self.core.list_namespaced_config_map(ns, **kw),
            field_selector=f"metadata.name={name}",
        )

    # --- Services ----------------------------------------------------------------------------------

    async def service(self, ns: str, name: str) -> Obj:
        r: Obj = await self.call(f"service {ns}/{name}", self.core.read_namespaced_service, name, ns)
        return r

    async def patch_service(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj:
        r: Obj = await self.call(
            f"service {ns}/{name}", self.core.patch_namespaced_service, name, ns, patch, **_writing(dry_run)
        )
        return r

    async def watch_endpoints(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T:
        return await self.watch_until(
            f"endpoints {ns}/{name}",
            lambda **kw: self.core.list_namespaced_endpoints(ns, **kw),
            f"metadata.name={name}",
            predicate,
            timeout,
        )

    # --- ConfigMaps (compare-and-set) and Leases ---------------------------------------------------

    async def configmap(self, ns: str, name: str) -> Obj | None:
        try:
            r: Obj = await self.call(f"configmap {ns}/{name}", self.core.read_namespaced_config_map, name, ns)
        except NotFound:
            return None
        return r

    async def create_configmap(self, ns: str, body: Obj) -> Obj:
        r: Obj = await self.call(
            f"configmap {ns}/{body['metadata']['name']}",
            self.core.create_namespaced_config_map,
            ns,
            body,
            **_writing(),
        )
        return r

    async def replace_configmap(self, ns: str, body: Obj) -> Obj:
        """Replace, failing with KubeConflict unless body's resourceVersion is still current."""
        name = body["metadata"]["name"]
        r: Obj = await self.call(
            f"configmap {ns}/{name}", self.core.replace_namespaced_config_map, name, ns, body, **_writing()
        )
        return r

    async def configmaps(self, ns: str, label_selector: str) -> list[Obj]:
        r = await self.call(
            f"configmaps in {ns}",
            self.core.list_namespaced_config_map,
            ns,
            label_selector=label_selector,
        )
        items: list[Obj] = r.get("items", [])
        return items

    async def watch_configmap(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T:
        return await self.watch_until(
            f"configmap {ns}/{name}",
            lambda **kw: self.core.list_namespaced_config_map(ns, **kw),
            f"metadata.name={name}",
            predicate,
            timeout,
        )

    async def lease(self, ns: str, name: str) -> Obj | None:
        try:
            r: Obj = await self.call(f"lease {ns}/{name}", self.coordination.read_namespaced_lease, name, ns)
        except NotFound:
            return None
        return r

    async def create_lease(self, ns: str, body: Obj) -> Obj:
        r: Obj = await self.call(
            f"lease {ns}/{body['metadata']['name']}",
            self.coordination.create_namespaced_lease,
            ns,
            body,
            **_writing(),
        )
        return r

    async def replace_lease(self, ns: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        r: Obj = await self.call(
            f"lease {ns}/{name}", self.coordination.replace_namespaced_lease, name, ns, body, **_writing()
        )
        return r

    # --- Events ------------------------------------------------------------------------------------

    async def event(self, involved: Obj, reason: str, message: str, *, warning: bool = False) -> None:
        """Record a core/v1 Event on an object, so `kubectl describe` shows who did what."""
        from datetime import UTC, datetime

        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{meta['name']}.release-bot.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "apps/v1"),
                "kind": involved.get("kind", "Deployment"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "release-bot"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self.call(
            f"event in {meta['namespace']}",
            self.core.create_namespaced_event,
            meta["namespace"],
            body,
            **_writing(),
        )

    # --- What the pre-flight plan reads: autoscalers and quotas ---------------------------------

    async def autoscalers(self, ns: str) -> list[Obj]:
        """The namespace's HorizontalPodAutoscalers (autoscaling/v1: every API server serves it)."""
        r = await self.call(
            f"horizontalpodautoscalers in {ns}",
            self.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            ns,
        )
        items: list[Obj] = r.get("items", [])
        return items

    async def patch_autoscaler(self, ns: str, name: str, patch: Obj) -> Obj:
        r: Obj = await self.call(
            f"horizontalpodautoscaler {ns}/{name}",
            self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            name,
            ns,
            patch,
            **_writing(),
        )
        return r

    async def disruption_budgets(self, ns: str) -> list[Obj]:
        r = await self.call(f"poddisruptionbudgets in {ns}", self._list_budgets, ns)
        items: list[Obj] = r.get("items", [])
        return items

    async def _list_budgets(self, ns: str, **kw: Any) -> Any:
        """List (or, with `watch`, watch) PodDisruptionBudgets of `ns` ("": every namespace):
        policy/v1, or policy/v1beta1 on API servers before 1.21 (remembered after the first answer)."""
        if self._budgets_v1 is not False:
            v1 = self.policy
            try:
                resp: Any = await (
                    v1.list_namespaced_pod_disruption_budget(ns, **kw)
                    if ns
                    else v1.list_pod_disruption_budget_for_all_namespaces(**kw)
                )
            except ApiException as e:
                if e.status != 404:
                    raise
            else:
                status = getattr(resp, "status", 200)  # a raw response (content not preloaded)
                if status != 404:
                    if 200 <= status <= 299:
                        self._budgets_v1 = True
                    return resp
                resp.release()
            self._budgets_v1 = False
        path = "/apis/policy/v1beta1" + ("/namespaces/{namespace}" if ns else "") + "/poddisruptionbudgets"
        return await self.api.call_api(
            path,
            "GET",
            path_params={"namespace": ns} if ns else {},
            query_params=[(QUERY_NAMES[k], v) for k, v in kw.items() if k in QUERY_NAMES and v is not None],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=kw.get("_preload_content", True),
            _request_timeout=kw.get("_request_timeout"),
        )

    async def quotas(self, ns: str) -> list[Obj]:
        r = await self.call(f"resourcequotas in {ns}", self.core.list_namespaced_resource_quota, ns)
        items: list[Obj] = r.get("items", [])
        return items

    # --- Blue-green: every Deployment of a namespace, and waiting for one to be gone ---------------

    async def deployments(self, ns: str) -> list[Obj]:
        """Every Deployment in the namespace (blue-green finds the live colour among them)."""
        r = await self.call(f"deployments in {ns}", self.apps.list_namespaced_deployment, ns)
        items: list[Obj] = r.get("items", [])
        return items

    async def wait_deployment_gone(self, ns: str, name: str, timeout: float) -> None:
        """Wait, driven by a watch, until Deployment `name` no longer exists; TimeoutError after
        `timeout` seconds."""
        async with asyncio.timeout(timeout):
            async for kind, obj in self.deployment_events(ns, name):
                if kind == "DELETED" or (kind == "SYNCED" and not obj.get("items")):
                    return


@asynccontextmanager
async def connected(kubeconfig: Path | None = None) -> AsyncIterator[Kube]:
    kube = await Kube.connect(kubeconfig)
    try:
        yield kube
    finally:
        await kube.close()
