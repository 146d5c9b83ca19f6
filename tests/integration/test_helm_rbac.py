"""The chart's least-privilege RBAC against a REAL API server.

The chart is rendered for a release in its own namespace, releasing into two namespaces (a blue-green
app, and an app released rolling or canary only); its ServiceAccount, Roles, RoleBindings and
catalog ConfigMap are applied (server-side apply) with the admin client, and then everything runs
with the ServiceAccount's own token, as the deployed bot would:

- SelfSubjectAccessReview says yes to every verb the bot needs, on the names it needs, and no to
  everything else (other names, other verbs, other namespaces, cluster-wide);
- the bot's own client (bot.kube.client.Kube) really performs its calls with that token, including
  the Endpoints watch narrowed to one name, and a call outside the Role gets 403 Forbidden.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from bot.kube.client import Kube, KubeError
from sandbox.controlplane.launcher import ClusterInfo
from tests.fixtures.cluster import api_client_for
from tests.fixtures.helm import InstalledRbac, catalog_for, install_rbac, service_account_kubeconfig

pytestmark = pytest.mark.integration

Check = tuple[str, str, str, str, str]  # (namespace, API group, resource, verb, name; "" = any)

# What bot/kube/client.py calls for the blue-green app hexo (Deployment hexo, Service hexo-service):
# (API group, resource, verb, name).
NEEDED: list[tuple[str, str, str, str]] = [
    *[("apps", "deployments", v, "") for v in ("get", "list", "watch", "patch", "create", "delete")],
    ("apps", "replicasets", "list", ""),
    ("", "pods", "list", ""),
    ("", "pods", "watch", ""),
    ("", "services", "get", "hexo-service"),
    ("", "services", "patch", "hexo-service"),
    ("", "services", "list", ""),
    ("", "services", "watch", ""),
    # the Endpoints watch selects the Service's name (fieldSelector metadata.name)
    ("", "endpoints", "list", "hexo-service"),
    ("", "endpoints", "watch", "hexo-service"),
    ("", "configmaps", "list", ""),
    ("", "configmaps", "watch", ""),
    ("", "configmaps", "create", ""),
    ("", "configmaps", "get", "release-bot.hexo"),
    ("", "configmaps", "update", "release-bot.hexo"),
    ("coordination.k8s.io", "leases", "create", ""),
    ("coordination.k8s.io", "leases", "get", "release-bot.hexo"),
    ("coordination.k8s.io", "leases", "update", "release-bot.hexo"),
    ("", "events", "create", ""),
    ("autoscaling", "horizontalpodautoscalers", "list", ""),
    ("autoscaling", "horizontalpodautoscalers", "patch", ""),
    ("", "resourcequotas", "list", ""),
    ("", "resourcequotas", "watch", ""),
    ("policy", "poddisruptionbudgets", "list", ""),
    ("policy", "poddisruptionbudgets", "watch", ""),
    ("autoscaling", "horizontalpodautoscalers", "watch", ""),
]

# ... and for the rolling/canary-only app hexo1 (Deployment hexo) in its own namespace.
NEEDED_ROLLING: list[tuple[str, str, str, str]] = [
    ("apps", "deployments", "list", ""),
    ("apps", "deployments", "watch", ""),
    ("apps", "deployments", "get", "hexo"),
    ("apps", "deployments", "patch", "hexo"),
    ("apps", "replicasets", "list", ""),
    ("", "pods", "list", ""),
    ("", "pods", "watch", ""),
    ("", "configmaps", "list", ""),
    ("", "configmaps", "watch", ""),
    ("", "configmaps", "create", ""),
    ("", "configmaps", "get", "release-bot.hexo1"),
    ("", "configmaps", "update", "release-bot.hexo1"),
    ("coordination.k8s.io", "leases", "create", ""),
    ("coordination.k8s.io", "leases", "get", "release-bot.hexo1"),
    ("coordination.k8s.io", "leases", "update", "release-bot.hexo1"),
    ("", "events", "create", ""),
    ("autoscaling", "horizontalpodautoscalers", "list", ""),
    ("autoscaling", "horizontalpodautoscalers", "patch", ""),
    ("", "resourcequotas", "list", ""),
    ("", "resourcequotas", "watch", ""),
    ("policy", "poddisruptionbudgets", "list", ""),
    ("policy", "poddisruptionbudgets", "watch", ""),
    ("autoscaling", "horizontalpodautoscalers", "watch", ""),
]

# Inside the blue-green app's namespace, but outside the Role.
REFUSED_HERE: list[tuple[str, str, str, str]] = [
    ("", "pods", "delete", ""),
    ("", "pods", "create", ""),
    ("", "pods/exec", "create", ""),
    ("", "pods/log", "get", ""),
    ("", "secrets", "get", ""),
    ("", "secrets", "list", ""),
    ("", "configmaps", "get", "hexo-nginx-conf"),
    ("", "configmaps", "get", ""),
    ("", "configmaps", "update", "someone-elses-config"),
    ("", "configmaps", "patch", "release-bot.hexo"),
    ("", "configmaps", "delete", "release-bot.hexo"),
    ("", "configmaps", "deletecollection", ""),
    ("", "services", "get", "other-service"),
    ("", "services", "patch", "other-service"),
    ("", "services", "create", ""),
    ("", "services", "delete", "hexo-service"),
    ("", "services", "update", "hexo-service"),
    ("", "endpoints", "list", ""),
    ("", "endpoints", "watch", "other-service"),
    ("", "serviceaccounts", "create", ""),
    ("", "events", "delete", ""),
    ("apps", "deployments", "update", ""),
    ("apps", "deployments", "deletecollection", ""),
    ("apps", "deployments/scale", "update", ""),
    ("apps", "replicasets", "delete", ""),
    ("apps", "replicasets", "patch", ""),
    ("apps", "statefulsets", "list", ""),
    ("coordination.k8s.io", "leases", "get", "someone-elses-lease"),
    ("coordination.k8s.io", "leases", "update", "someone-elses-lease"),
    ("coordination.k8s.io", "leases", "delete", "release-bot.hexo"),
    ("coordination.k8s.io", "leases", "list", ""),
    ("rbac.authorization.k8s.io", "roles", "create", ""),
    ("rbac.authorization.k8s.io", "rolebindings", "create", ""),
    ("rbac.authorization.k8s.io", "roles", "escalate", ""),
]

# In the rolling/canary-only namespace: no blue-green, so no Deployment is created, deleted or
# patched but the app's, and no Service or Endpoints are touched.
REFUSED_ROLLING: list[tuple[str, str, str, str]] = [
    ("apps", "deployments", "create", ""),
    ("apps", "deployments", "delete", "hexo"),
    ("apps", "deployments", "get", "hexo-v2.0"),
    ("apps", "deployments", "patch", "another-app"),
    ("", "services", "get", "hexo-service"),
    ("", "services", "patch", "hexo-service"),
    ("", "services", "list", ""),
    ("", "services", "watch", ""),
    ("", "endpoints", "watch", "hexo-service"),
    ("", "configmaps", "get", "release-bot.hexo"),
    ("coordination.k8s.io", "leases", "update", "release-bot.hexo"),
]


@dataclass
class Bot:
    rbac: InstalledRbac
    namespace: str  # the released namespace of the blue-green app hexo
    rolling_namespace: str  # the released namespace of the rolling/canary-only app hexo1
    kubeconfig: Path  # authenticates as the chart's ServiceAccount
    api: client.ApiClient  # raw client with that token
    kube: Kube  # the bot's own client with that token


async def _fresh_namespace(core: client.CoreV1Api, name: str) -> None:
    manifest: Any = {"metadata": {"name": name, "labels": {"release-bot.test": "true"}}}
    await core.create_namespace(manifest)


async def _delete_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        await core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest_asyncio.fixture(loop_scope="session")
async def bot_namespace(kube_admin: client.ApiClient, namespace: str) -> AsyncIterator[str]:
    """The namespace the chart is installed in (the bot's own, distinct from the released one)."""
    core = client.CoreV1Api(kube_admin)
    name = f"{namespace}-bot"
    await _fresh_namespace(core, name)
    try:
        yield name
    finally:
        await _delete_namespace(core, name)


@pytest_asyncio.fixture(loop_scope="session")
async def rolling_namespace(kube_admin: client.ApiClient, namespace: str) -> AsyncIterator[str]:
    """A second released namespace, for an app that does not release blue-green."""
    core = client.CoreV1Api(kube_admin)
    name = f"{namespace}-r"
    await _fresh_namespace(core, name)
    try:
        yield name
    finally:
        await _delete_namespace(core, name)


@pytest_asyncio.fixture(loop_scope="session")
async def bot(
    control_plane: ClusterInfo,
    kube_admin: client.ApiClient,
    namespace: str,
    bot_namespace: str,
    rolling_namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Bot]:
    catalog = catalog_for(namespace, rolling_namespace)
    catalog["apps"]["hexo1"]["strategies"] = ["rolling", "canary"]
    rbac = await install_rbac(
        kube_admin,
        bot_namespace=bot_namespace,
        namespaces=[namespace, rolling_namespace],
        values={"catalog": catalog},
    )
    kubeconfig = await service_account_kubeconfig(
        control_plane.admin_kubeconfig, control_plane.api_url, rbac.token, tmp_path / "bot.kubeconfig"
    )
    api = await api_client_for(kubeconfig)
    kube = await Kube.connect(kubeconfig)
    try:
        yield Bot(
            rbac=rbac,
            namespace=namespace,
            rolling_namespace=rolling_namespace,
            kubeconfig=kubeconfig,
            api=api,
            kube=kube,
        )
    finally:
        await kube.close()
        await api.close()


async def allowed(api: client.ApiClient, check: Check) -> bool:
    """Ask the API server (SelfSubjectAccessReview) whether the caller may do ``check``. A list or
    watch with a name is what the API server authorizes for a request selecting that one name
    (fieldSelector=metadata.name=...)."""
    ns, group, resource, verb, name = check
    resource, _, subresource = resource.partition("/")
    attrs: dict[str, Any] = {"group": group, "resource": resource, "verb": verb}
    if ns:
        attrs["namespace"] = ns
    if subresource:
        attrs["subresource"] = subresource
    if name:
        attrs["name"] = name
    body: Any = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    }
    review = await client.AuthorizationV1Api(api).create_self_subject_access_review(body)
    return bool(review.status.allowed)


async def answers(api: client.ApiClient, checks: list[Check]) -> dict[Check, bool]:
    results = await asyncio.gather(*(allowed(api, c) for c in checks))
    return dict(zip(checks, results, strict=True))


async def test_every_verb_the_bot_needs_is_allowed(bot: Bot) -> None:
    checks = [(bot.namespace, g, r, v, n) for g, r, v, n in NEEDED]
    checks += [(bot.rolling_namespace, g, r, v, n) for g, r, v, n in NEEDED_ROLLING]
    refused = [c for c, ok in (await answers(bot.api, checks)).items() if not ok]
    assert refused == [], f"the chart's Role refuses what the bot needs: {refused}"


async def test_everything_else_is_refused(bot: Bot) -> None:
    here = [(bot.namespace, g, r, v, n) for g, r, v, n in REFUSED_HERE]
    here += [(bot.rolling_namespace, g, r, v, n) for g, r, v, n in REFUSED_ROLLING]
    elsewhere = [
        (other, g, r, v, n)
        for other in (bot.rbac.bot_namespace, "default", "kube-system")
        for g, r, v, n in NEEDED
    ]
    cluster_wide = [
        ("", "", "namespaces", "list", ""),
        ("", "", "nodes", "get", ""),
        ("", "apps", "deployments", "list", ""),  # all namespaces
        ("", "", "pods", "watch", ""),
        ("", "rbac.authorization.k8s.io", "clusterroles", "create", ""),
        ("", "rbac.authorization.k8s.io", "clusterrolebindings", "create", ""),
    ]
    wrongly_allowed = [c for c, ok in (await answers(bot.api, here + elsewhere + cluster_wide)).items() if ok]
    assert wrongly_allowed == [], f"the chart's RBAC allows more than the bot needs: {wrongly_allowed}"


async def test_the_bots_own_calls_work_with_its_token(bot: Bot, kube_admin: client.ApiClient) -> None:
    ns, kube = bot.namespace, bot.kube
    # Deployments: create (blue-green's new colour), read, patch, list its ReplicaSets, delete.
    dep = await kube.create_deployment(
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hexo-green", "labels": {"app": "hexo"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "hexo", "colour": "green"}},
                "template": {
                    "metadata": {"labels": {"app": "hexo", "colour": "green"}},
                    "spec": {"containers": [{"name": "hexo", "image": "registry.sword.org/nginx:v2.0"}]},
                },
            },
        },
    )
    assert (await kube.deployment(ns, "hexo-green"))["metadata"]["uid"] == dep["metadata"]["uid"]
    planned = await kube.patch_deployment(ns, "hexo-green", {"spec": {"paused": True}}, dry_run=True)
    assert planned["spec"]["paused"] is True and not (await kube.deployment(ns, "hexo-green"))["spec"].get(
        "paused"
    )
    assert await kube.autoscalers(ns) == [] and await kube.quotas(ns) == []
    patched = await kube.patch_deployment(ns, "hexo-green", {"spec": {"paused": True}})
    assert patched["spec"]["paused"] is True
    assert isinstance(await kube.replica_sets(patched), list)
    assert await kube.pods(ns, {"app": "hexo"}) == []

    # Services and their Endpoints: read, patch the selector (blue-green's switch), follow endpoints.
    service: Any = {
        "metadata": {"name": "hexo-service"},
        "spec": {"selector": {"app": "hexo", "colour": "blue"}, "ports": [{"port": 80}]},
    }
    await client.CoreV1Api(kube_admin).create_namespaced_service(ns, service)
    await kube.service(ns, "hexo-service")
    switched = await kube.patch_service(ns, "hexo-service", {"spec": {"selector": {"colour": "green"}}})
    assert switched["spec"]["selector"]["colour"] == "green"
    endpoints = await kube.watch_endpoints(ns, "hexo-service", lambda ep: ep, timeout=30)
    assert endpoints["metadata"]["name"] == "hexo-service"

    # Release records: create, follow with a watch, compare-and-set replace, list by label.
    record = await kube.create_configmap(
        ns,
        {
            "metadata": {"name": "release-bot.hexo", "labels": {"release-bot.io/active": "true"}},
            "data": {"v": "1"},
        },
    )
    listed = asyncio.Event()

    def at_v2(cm: dict[str, Any]) -> dict[str, Any] | None:
        listed.set()
        return cm if cm.get("data", {}).get("v") == "2" else None

    watcher = asyncio.create_task(kube.watch_configmap(ns, "release-bot.hexo", at_v2, timeout=30))
    try:
        async with asyncio.timeout(30):
            await listed.wait()
        record["data"]["v"] = "2"
        await kube.replace_configmap(ns, record)
        seen = await watcher
    finally:
        watcher.cancel()
    assert seen["data"]["v"] == "2"
    assert [c["metadata"]["name"] for c in await kube.configmaps(ns, "release-bot.io/active=true")] == [
        "release-bot.hexo"
    ]

    # Driver lease: create, read, renew.
    lease = await kube.create_lease(
        ns,
        {
            "metadata": {"name": "release-bot.hexo"},
            "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15},
        },
    )
    lease["spec"]["holderIdentity"] = "pod-b"
    await kube.replace_lease(ns, lease)
    current = await kube.lease(ns, "release-bot.hexo")
    assert current is not None and current["spec"]["holderIdentity"] == "pod-b"

    # Audit: an Event on the Deployment.
    await kube.event(dep, "ReleaseStarted", "alice released hexo v2.0 (test)")
    events = await client.CoreV1Api(kube_admin).list_namespaced_event(
        ns, field_selector="involvedObject.name=hexo-green"
    )
    assert [e.reason for e in events.items] == ["ReleaseStarted"]

    await kube.delete_deployment(ns, "hexo-green")


async def test_calls_outside_the_role_get_403(bot: Bot) -> None:
    with pytest.raises(ApiException) as e:
        await client.CoreV1Api(bot.api).list_namespaced_secret(bot.namespace)
    assert e.value.status == 403
    with pytest.raises(KubeError) as denied:
        await bot.kube.configmaps(bot.rbac.bot_namespace, "release-bot.io/active=true")
    assert denied.value.status == 403
    with pytest.raises(KubeError) as denied:
        await bot.kube.deployment("default", "anything")
    assert denied.value.status == 403
    # names outside the Role's resourceNames
    with pytest.raises(KubeError) as denied:
        await bot.kube.configmap(bot.namespace, "someone-elses-config")
    assert denied.value.status == 403
    with pytest.raises(KubeError) as denied:
        await bot.kube.lease(bot.namespace, "someone-elses-lease")
    assert denied.value.status == 403
    with pytest.raises(KubeError) as denied:
        await bot.kube.service(bot.namespace, "other-service")
    assert denied.value.status == 403
    with pytest.raises(ApiException) as e:  # an Endpoints list that does not select the one name
        await client.CoreV1Api(bot.api).list_namespaced_endpoints(bot.namespace)
    assert e.value.status == 403


async def test_without_bluegreen_only_the_apps_deployment_is_touched(
    bot: Bot, kube_admin: client.ApiClient
) -> None:
    ns, kube = bot.rolling_namespace, bot.kube
    apps = client.AppsV1Api(kube_admin)
    for name in ("hexo", "another-app"):
        body: Any = _deployment(name)
        await apps.create_namespaced_deployment(ns, body)
    patched = await kube.patch_deployment(ns, "hexo", {"spec": {"paused": True}})
    assert patched["spec"]["paused"] is True
    assert {d["metadata"]["name"] for d in await kube.deployments(ns)} == {"hexo", "another-app"}
    with pytest.raises(KubeError) as denied:
        await kube.patch_deployment(ns, "another-app", {"spec": {"paused": True}})
    assert denied.value.status == 403
    with pytest.raises(KubeError) as denied:
        await kube.create_deployment(ns, _deployment("hexo-v2.0"))
    assert denied.value.status == 403
    with pytest.raises(KubeError) as denied:
        await kube.delete_deployment(ns, "hexo")
    assert denied.value.status == 403
    record = await kube.create_configmap(ns, {"metadata": {"name": "release-bot.hexo1"}, "data": {"v": "1"}})
    record["data"]["v"] = "2"
    assert (await kube.replace_configmap(ns, record))["data"]["v"] == "2"
    other = await kube.create_configmap(ns, {"metadata": {"name": "not-a-record"}, "data": {}})
    with pytest.raises(KubeError) as denied:  # created, but not a name the Role lets it replace
        await kube.replace_configmap(ns, other)
    assert denied.value.status == 403


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.sword.org/nginx:v1.0"}]},
            },
        },
    }
