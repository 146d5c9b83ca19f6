"""The local control plane is a REAL Kubernetes cluster: the guide's flows, driven with kubernetes_asyncio.

Each test runs the guide's objects (Deployment ``hexo``, Service ``hexo-service``) in a fresh namespace
against the real apiserver, Deployment/ReplicaSet/Endpoints controllers and RBAC; only the kubelet is
simulated. Waits are watches with deadlines (tests/fixtures/cluster.py).

The restart tests stop and start components of the session's control plane (the apiserver for 5 s,
etcd, the kubelet, the scheduler) and check it is usable afterwards, nothing is lost, and the other
processes rode it out.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox import hexo
from sandbox.controlplane.launcher import (
    STATE_FILE,
    ClusterInfo,
    ControlPlane,
    ControlPlaneError,
    _alive,
    _start_ticks,
    recorded,
)
from tests.fixtures.cluster import (
    api_client_for,
    deployment_condition,
    endpoint_ips,
    pod_ready,
    rollout_complete,
    wait_for_deployment,
    wait_for_endpoints,
    wait_for_pods,
    watch_until,
)

pytestmark = pytest.mark.integration

REGISTRY = "registry.sword.org"
HEXO_SELECTOR = "app=hexo-server"


def _guide_object(kind: str, version: str, replicas: int = 6) -> dict[str, Any]:
    """One of the guide's objects (sandbox.hexo), without a namespace (the test namespace is given
    at creation)."""
    obj = next(o for o in hexo.objects("unused", replicas=replicas, version=version) if o["kind"] == kind)
    obj["metadata"].pop("namespace", None)
    return obj


def hexo_deployment(
    name: str = "hexo", version: str = "v1.0", image: str = f"{REGISTRY}/nginx:v1.0", replicas: int = 6
) -> dict[str, Any]:
    """The guide's Deployment (section "the example application")."""
    dep = _guide_object("Deployment", version, replicas)
    dep["metadata"]["name"] = name
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return dep


def hexo_service(version: str = "v1.0") -> dict[str, Any]:
    """The guide's NodePort Service (nodePort left to the apiserver: parallel runs never collide)."""
    return _guide_object("Service", version)


async def create_hexo(api: client.ApiClient, ns: str, *, service: bool = True) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    await core.create_namespaced_config_map(
        ns, body({"metadata": {"name": "hexo-nginx-conf"}, "data": {"nginx.conf": "events {}\n"}})
    )
    await apps.create_namespaced_deployment(ns, body(hexo_deployment()))
    if service:
        await core.create_namespaced_service(ns, body(hexo_service()))
    await wait_for_deployment(api, ns, "hexo", rollout_complete)


async def set_image(api: client.ApiClient, ns: str, image: str, name: str = "hexo") -> None:
    """``kubectl set image`` plus the change-cause, in ONE patch (so it lands on the new revision)."""
    patch = {
        "metadata": {"annotations": {"kubernetes.io/change-cause": f"set image {image}"}},
        "spec": {"template": {"spec": {"containers": [{"name": "hexo", "image": image}]}}},
    }
    await client.AppsV1Api(api).patch_namespaced_deployment(name, ns, patch)


async def set_rolling_strategy(api: client.ApiClient, ns: str, **extra: Any) -> None:
    """Guide 2.1: maxSurge=1, maxUnavailable=0."""
    patch = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, **extra}}
    await client.AppsV1Api(api).patch_namespaced_deployment("hexo", ns, patch)


def body(manifest: dict[str, Any]) -> Any:
    """kubernetes_asyncio accepts plain manifests as request bodies; its stubs only know the models."""
    return manifest


def images(pods: list[Any]) -> list[str]:
    return sorted(p.spec.containers[0].image for p in pods)


def live(pods: list[Any]) -> list[Any]:
    return [p for p in pods if p.metadata.deletion_timestamp is None]


async def test_it_is_a_real_cluster(kube_admin: client.ApiClient, control_plane: ClusterInfo) -> None:
    version = await client.VersionApi(kube_admin).get_code()
    assert version.git_version.startswith("v1.")
    nodes = (await client.CoreV1Api(kube_admin).list_node()).items
    assert {n.metadata.name for n in nodes} == set(control_plane.node_names)
    for node in nodes:
        assert {(a.type, a.address) for a in node.status.addresses} >= {("InternalIP", "127.0.0.1")}
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert control_plane.api_url.startswith("https://127.0.0.1:")
    lease = await client.CoordinationV1Api(kube_admin).read_namespaced_lease(
        nodes[0].metadata.name, "kube-node-lease"
    )
    assert lease.spec.renew_time is not None


async def test_rolling_release_replaces_every_pod_without_losing_capacity(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    await create_hexo(kube_admin, namespace)
    old_ips = await wait_for_endpoints(kube_admin, namespace, "hexo-service", lambda ips: len(ips) == 6)
    await set_rolling_strategy(kube_admin, namespace)

    new_image = f"{REGISTRY}/hexo:v0.48"
    await set_image(kube_admin, namespace, new_image)
    # Follow the ReplicaSets (in resourceVersion order) until the new one serves all 6.
    seen: list[tuple[int, int]] = []  # (sum of desired replicas, sum of available replicas)

    def rolled_out(replica_sets: dict[str, Any]) -> bool | None:
        rss = list(replica_sets.values())
        seen.append((sum(r.spec.replicas for r in rss), sum(r.status.available_replicas or 0 for r in rss)))
        new = [r for r in rss if r.spec.template.spec.containers[0].image == new_image]
        old = [r for r in rss if r not in new]
        done = (
            len(new) == 1 and new[0].status.available_replicas == 6 and all(r.spec.replicas == 0 for r in old)
        )
        return True if done else None

    apps = client.AppsV1Api(kube_admin)
    await watch_until(apps.list_namespaced_replica_set, rolled_out, namespace=namespace)
    assert max(want for want, _ in seen) <= 7, "maxSurge=1: at most one replica above 6"
    assert min(available for _, available in seen) >= 6, "maxUnavailable=0: 6 available throughout"
    await wait_for_deployment(kube_admin, namespace, "hexo", rollout_complete)

    pods = await wait_for_pods(
        kube_admin, namespace, HEXO_SELECTOR, lambda ps: len(ps) == 6 and all(map(pod_ready, ps))
    )
    assert images(pods) == [new_image] * 6
    new_ips = await wait_for_endpoints(
        kube_admin, namespace, "hexo-service", lambda ips: ips == {p.status.pod_ip for p in pods}
    )
    assert not new_ips & old_ips
    rs = (await apps.list_namespaced_replica_set(namespace)).items
    by_revision = {r.metadata.annotations["deployment.kubernetes.io/revision"]: r for r in rs}
    assert (
        by_revision["2"].metadata.annotations["kubernetes.io/change-cause"]
        == f"set image {REGISTRY}/hexo:v0.48"
    )
    assert by_revision["1"].spec.replicas == 0


async def test_canary_pause_after_image_change_leaves_one_new_pod_and_six_old(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(kube_admin)
    await create_hexo(kube_admin, namespace, service=False)
    await set_rolling_strategy(kube_admin, namespace)
    new_image = f"{REGISTRY}/hexo:v0.50"

    # Guide 3.1.1: `set image && rollout pause` (two requests, as kubectl sends them)
    await set_image(kube_admin, namespace, new_image)
    await apps.patch_namespaced_deployment("hexo", namespace, {"spec": {"paused": True}})

    def paused_with_canary_ready(dep: Any) -> bool:
        cond = deployment_condition(dep, "Progressing")
        return bool(
            dep.status.observed_generation >= dep.metadata.generation
            and cond is not None
            and cond.reason == "DeploymentPaused"
            and dep.status.updated_replicas == 1
            and dep.status.ready_replicas == 7
        )

    dep = await wait_for_deployment(kube_admin, namespace, "hexo", paused_with_canary_ready)
    assert deployment_condition(dep, "Progressing").status == "Unknown"
    pods = live(await wait_for_pods(kube_admin, namespace, HEXO_SELECTOR, lambda ps: len(live(ps)) == 7))
    assert images(pods) == sorted([new_image] + [f"{REGISTRY}/nginx:v1.0"] * 6)
    assert all(map(pod_ready, pods))

    # Guide 3.1.2: promote = resume; the rolling update finishes
    await apps.patch_namespaced_deployment("hexo", namespace, {"spec": {"paused": False}})
    await wait_for_deployment(kube_admin, namespace, "hexo", rollout_complete)
    pods = await wait_for_pods(kube_admin, namespace, HEXO_SELECTOR, lambda ps: len(ps) == 6)
    assert images(pods) == [new_image] * 6


async def test_broken_version_stalls_with_old_pods_serving_then_misses_its_deadline(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    await create_hexo(kube_admin, namespace)
    await set_rolling_strategy(kube_admin, namespace, progressDeadlineSeconds=10)
    broken = f"{REGISTRY}/hexo:v0.49-broken"
    await set_image(kube_admin, namespace, broken)

    def deadline_exceeded(dep: Any) -> bool:
        cond = deployment_condition(dep, "Progressing")
        return cond is not None and cond.status == "False" and cond.reason == "ProgressDeadlineExceeded"

    dep = await wait_for_deployment(kube_admin, namespace, "hexo", deadline_exceeded, timeout=90)
    assert dep.status.available_replicas == 6
    assert dep.status.updated_replicas == 1

    def crash_looping(pods: list[Any]) -> bool:
        new = [p for p in pods if p.spec.containers[0].image == broken]
        statuses = [cs for p in new for cs in p.status.container_statuses or []]
        return len(new) == 1 and any(cs.restart_count >= 2 for cs in statuses)

    pods = await wait_for_pods(kube_admin, namespace, HEXO_SELECTOR, crash_looping)
    new = next(p for p in pods if p.spec.containers[0].image == broken)
    assert not pod_ready(new)
    assert new.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    old = [p for p in pods if p is not new]
    assert len(old) == 6
    assert all(map(pod_ready, old))
    ips = endpoint_ips(
        await client.CoreV1Api(kube_admin).read_namespaced_endpoints("hexo-service", namespace)
    )
    assert ips == {p.status.pod_ip for p in old}


async def test_image_that_cannot_be_pulled_stays_pending(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    pod = {
        "metadata": {"name": "pull", "labels": {"app": "pull"}},
        "spec": {"containers": [{"name": "c", "image": f"{REGISTRY}/hexo:pullfail"}]},
    }
    await client.CoreV1Api(kube_admin).create_namespaced_pod(namespace, body(pod))

    def backing_off(pods: list[Any]) -> bool:
        statuses = [cs for p in pods for cs in (p.status.container_statuses or [])]
        return any(
            cs.state.waiting is not None and cs.state.waiting.reason == "ImagePullBackOff" for cs in statuses
        )

    (found,) = await wait_for_pods(kube_admin, namespace, "app=pull", backing_off)
    assert found.status.phase == "Pending"
    assert not pod_ready(found)


async def test_blue_green_selector_switch_moves_endpoints(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(kube_admin), client.CoreV1Api(kube_admin)
    await create_hexo(kube_admin, namespace)
    await apps.create_namespaced_deployment(
        namespace, body(hexo_deployment(name="hexo-v2.0", version="v2.0", image=f"{REGISTRY}/nginx:v2.0"))
    )
    await wait_for_deployment(kube_admin, namespace, "hexo-v2.0", rollout_complete)

    async def ready_ips(version: str) -> set[str]:
        pods = await wait_for_pods(
            kube_admin,
            namespace,
            f"{HEXO_SELECTOR},version={version}",
            lambda ps: len(ps) == 6 and all(map(pod_ready, ps)),
        )
        return {p.status.pod_ip for p in pods}

    blue, green = await ready_ips("v1.0"), await ready_ips("v2.0")
    assert len(blue | green) == 12
    await wait_for_endpoints(kube_admin, namespace, "hexo-service", lambda ips: ips == blue)

    selector = {"spec": {"selector": {"app": "hexo-server", "version": "v2.0"}}}
    await core.patch_namespaced_service("hexo-service", namespace, selector)  # cutover (guide 1.4)
    await wait_for_endpoints(kube_admin, namespace, "hexo-service", lambda ips: ips == green)

    selector["spec"]["selector"]["version"] = "v1.0"
    await core.patch_namespaced_service("hexo-service", namespace, selector)  # rollback
    await wait_for_endpoints(kube_admin, namespace, "hexo-service", lambda ips: ips == blue)


async def test_restricted_user_has_only_the_rights_rbac_grants(
    kube_admin: client.ApiClient, namespace: str, control_plane: ClusterInfo
) -> None:
    restricted = await api_client_for(control_plane.restricted_kubeconfig)
    try:
        apps = client.AppsV1Api(restricted)
        with pytest.raises(ApiException) as denied:
            await apps.list_namespaced_deployment(namespace)
        assert denied.value.status == 403

        rbac = client.RbacAuthorizationV1Api(kube_admin)
        rules = [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
        ]
        await rbac.create_namespaced_role(
            namespace, body({"metadata": {"name": "release-bot"}, "rules": rules})
        )
        subject = {
            "kind": "User",
            "name": control_plane.restricted_user,
            "apiGroup": "rbac.authorization.k8s.io",
        }
        binding = {
            "metadata": {"name": "release-bot"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "release-bot"},
            "subjects": [subject],
        }
        await rbac.create_namespaced_role_binding(namespace, body(binding))

        # The authorizer sees new bindings through its informer: allowed within moments.
        async with asyncio.timeout(10):
            while True:
                try:
                    listing = await apps.list_namespaced_deployment(namespace)
                    break
                except ApiException as e:
                    if e.status != 403:
                        raise
                    await asyncio.sleep(0.05)
        assert listing.items == []

        for forbidden in (
            apps.list_namespaced_deployment("default"),  # another namespace
            client.CoreV1Api(restricted).list_namespaced_secret(namespace),  # not granted
            apps.delete_collection_namespaced_deployment(namespace),  # verb not granted
        ):
            with pytest.raises(ApiException) as denied:
                await forbidden
            assert denied.value.status == 403
    finally:
        await restricted.close()


def _gone(pid: int, ticks: int | None) -> bool:
    return ticks is None or not _alive(pid, ticks)


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    cp = ControlPlane(tmp_path / "cp", ready_delay=0.2)
    info = cp.start()
    ticks = {name: _start_ticks(pid) for name, pid in info.pids.items()}
    assert set(info.pids) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kubelet"}
    assert all(t is not None for t in ticks.values())
    etcd_dir = Path(json.loads((info.workdir / STATE_FILE).read_text())["etcd_data_dir"])
    assert etcd_dir.is_dir()
    cp.stop()
    assert [n for n, pid in info.pids.items() if not _gone(pid, ticks[n])] == []
    assert not etcd_dir.exists()
    assert not (info.workdir / STATE_FILE).exists()


def test_cli_detached_cluster_is_found_and_stopped_by_recorded_pids(tmp_path: Path) -> None:
    wd = tmp_path / "cli"
    cli = [sys.executable, "-m", "sandbox.controlplane.cli"]
    up = subprocess.run([*cli, "up", "--detach", "--workdir", str(wd), "--ready-delay", "0.2"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"export KUBECONFIG={wd / 'admin.kubeconfig'}"
        state = json.loads((wd / STATE_FILE).read_text())
        status = subprocess.run([*cli, "status", "--workdir", str(wd)], capture_output=True, text=True)
        assert status.returncode == 0, status.stdout
        again = subprocess.run([*cli, "up", "--detach", "--workdir", str(wd)], capture_output=True, text=True)
        assert again.returncode == 2
        assert "already running" in again.stderr
    finally:
        down = subprocess.run(
            [*cli, "down", "--workdir", str(wd)], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    assert [n for n, pid in state["pids"].items() if not _gone(pid, state["start_ticks"][n])] == []
    status = subprocess.run([*cli, "status", "--workdir", str(wd)], capture_output=True, text=True)
    assert status.returncode == 1


# ---------------------------------------------------------------------------- restarting components


async def restart(cp: ControlPlane, name: str, down_seconds: float = 0.0) -> int:
    """``cp.restart`` off the event loop, so the test's open connections see the server go away."""
    return await asyncio.to_thread(cp.restart, name, down_seconds)


def assert_pids_recorded(cp: ControlPlane) -> None:
    """The launcher's pids, its ClusterInfo, and cluster.json agree."""
    state = recorded(cp.info.workdir)
    assert state is not None
    assert state.pids == cp.pids == cp.info.pids == cp.info.current_pids()
    assert all(_alive(state.pids[n], state.start_ticks[n]) for n in cp.components)


async def config_map_data(cp: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    """Read a ConfigMap through a new client (the old one's connections went with the old server)."""
    api = await api_client_for(cp.info.admin_kubeconfig)
    try:
        cm = await client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
        data: dict[str, str] = cm.data
        return data
    finally:
        await api.close()


async def test_apiserver_restart_gives_a_new_pid_and_the_cluster_carries_on(
    control_plane_process: ControlPlane, kube_admin: client.ApiClient, namespace: str
) -> None:
    cp = control_plane_process
    before = cp.pids
    await client.CoreV1Api(kube_admin).create_namespaced_config_map(
        namespace, body({"metadata": {"name": "kept"}, "data": {"release": "v1.0"}})
    )

    pid = await restart(cp, "kube-apiserver", down_seconds=5.0)

    assert pid != before["kube-apiserver"]
    assert cp.pids["kube-apiserver"] == pid
    assert_pids_recorded(cp)
    # the controllers, the scheduler, etcd and the kubelet rode out a 5 s outage: same processes
    assert {n: p for n, p in cp.pids.items() if n != "kube-apiserver"} == {
        n: p for n, p in before.items() if n != "kube-apiserver"
    }
    assert await config_map_data(cp, namespace, "kept") == {"release": "v1.0"}
    api = await api_client_for(cp.info.admin_kubeconfig)
    try:
        await create_hexo(api, namespace)  # the Deployment and ReplicaSet controllers still work
        await wait_for_endpoints(api, namespace, "hexo-service", lambda ips: len(ips) == 6)
    finally:
        await api.close()


async def test_etcd_restart_keeps_the_data(
    control_plane_process: ControlPlane, kube_admin: client.ApiClient, namespace: str
) -> None:
    cp = control_plane_process
    before = cp.pids
    state = recorded(cp.info.workdir)
    assert state is not None
    await client.CoreV1Api(kube_admin).create_namespaced_config_map(
        namespace, body({"metadata": {"name": "kept"}, "data": {"release": "v2.0"}})
    )

    pid = await restart(cp, "etcd", down_seconds=1.0)

    assert pid != before["etcd"]
    assert_pids_recorded(cp)
    after = recorded(cp.info.workdir)
    assert after is not None
    assert after.etcd_data_dir == state.etcd_data_dir  # the same data dir, on /dev/shm when there
    assert {n: p for n, p in cp.pids.items() if n != "etcd"} == {
        n: p for n, p in before.items() if n != "etcd"
    }
    assert await config_map_data(cp, namespace, "kept") == {"release": "v2.0"}


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
async def test_kubelet_survives_a_restart_while_pods_are_created(
    control_plane_process: ControlPlane, namespace: str, component: str
) -> None:
    cp = control_plane_process
    kubelet = cp.pids["kubelet"]
    api = await api_client_for(cp.info.admin_kubeconfig)
    try:
        await client.AppsV1Api(api).create_namespaced_deployment(namespace, body(hexo_deployment(replicas=6)))
    finally:
        await api.close()

    await restart(cp, component, down_seconds=2.0)  # while the controllers create the 6 pods

    api = await api_client_for(cp.info.admin_kubeconfig)
    try:
        await client.AppsV1Api(api).patch_namespaced_deployment("hexo", namespace, {"spec": {"replicas": 9}})
        pods = await wait_for_pods(
            api,
            namespace,
            HEXO_SELECTOR,
            lambda ps: len(live(ps)) == 9 and all(map(pod_ready, live(ps))),
            timeout=90,
        )
    finally:
        await api.close()
    assert cp.pids["kubelet"] == kubelet
    assert cp.running("kubelet")
    assert len({p.status.pod_ip for p in live(pods)}) == 9


async def test_restarted_kubelet_keeps_nodes_ready_and_pod_ips_unique(
    control_plane_process: ControlPlane, kube_admin: client.ApiClient, namespace: str
) -> None:
    cp = control_plane_process
    await client.AppsV1Api(kube_admin).create_namespaced_deployment(
        namespace, body(hexo_deployment(replicas=3))
    )
    await wait_for_deployment(kube_admin, namespace, "hexo", rollout_complete)
    old = cp.pids["kubelet"]

    pid = await restart(cp, "kubelet")

    assert pid != old
    assert_pids_recorded(cp)
    await client.AppsV1Api(kube_admin).patch_namespaced_deployment(
        "hexo", namespace, {"spec": {"replicas": 6}}
    )
    pods = await wait_for_pods(
        kube_admin, namespace, HEXO_SELECTOR, lambda ps: len(ps) == 6 and all(map(pod_ready, ps))
    )
    assert len({p.status.pod_ip for p in pods}) == 6  # the new kubelet knows which IPs are taken
    nodes = (await client.CoreV1Api(kube_admin).list_node()).items
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)


async def test_a_stopped_scheduler_started_again_places_the_pods_created_meanwhile(
    control_plane_process: ControlPlane, kube_admin: client.ApiClient, namespace: str
) -> None:
    cp = control_plane_process
    assert "kube-scheduler" in cp.components
    old = cp.pids["kube-scheduler"]
    await asyncio.to_thread(cp.stop_component, "kube-scheduler")
    assert not cp.running("kube-scheduler")
    assert cp.pids["kube-scheduler"] == old  # kept until it is started again
    pod = {
        "metadata": {"name": "waiting", "labels": {"app": "waiting"}},
        "spec": {"containers": [{"name": "c", "image": "x:1"}]},
    }
    await client.CoreV1Api(kube_admin).create_namespaced_pod(namespace, body(pod))

    pid = await asyncio.to_thread(cp.start_component, "kube-scheduler")

    assert pid != old
    assert_pids_recorded(cp)
    (found,) = await wait_for_pods(
        kube_admin, namespace, "app=waiting", lambda ps: len(ps) == 1 and all(map(pod_ready, ps))
    )
    assert found.spec.node_name in control_plane_process.info.node_names


def test_unknown_component_is_refused_by_name(control_plane_process: ControlPlane) -> None:
    with pytest.raises(ControlPlaneError, match=r"no component 'kube-proxy'.*kube-apiserver"):
        control_plane_process.restart("kube-proxy")
    with pytest.raises(ValueError, match="down_seconds"):
        control_plane_process.restart("etcd", down_seconds=-1)
