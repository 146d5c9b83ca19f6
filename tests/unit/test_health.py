"""What the cluster says about a rollout: Deployment progress and pod health, from plain JSON."""

from __future__ import annotations

from typing import Any

import pytest

from bot.releases.health import (
    FATAL_WAITING,
    PodHealth,
    container_image,
    pod_health,
    pods_running,
    progress,
    revision,
    template_hash,
    version_of,
)

Obj = dict[str, Any]
REPO = "registry.sword.org/nginx"
DIGEST = "sha256:" + "cd" * 32


def deployment(
    *,
    replicas: int | None = 6,
    generation: int = 2,
    observed: int | None = 2,
    updated: int | None = 6,
    ready: int | None = 6,
    available: int | None = 6,
    total: int | None = 6,
    paused: bool = False,
    conditions: list[Obj] | None = None,
) -> Obj:
    spec: Obj = {"template": {"spec": {"containers": [{"name": "hexo", "image": f"{REPO}:v1.0"}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    if paused:
        spec["paused"] = True
    status: Obj = {}
    for key, value in (
        ("observedGeneration", observed),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("replicas", total),
        ("conditions", conditions),
    ):
        if value is not None:
            status[key] = value
    return {"metadata": {"name": "hexo", "generation": generation}, "spec": spec, "status": status}


# --- progress() ------------------------------------------------------------------------------------


def test_steady_state_is_complete() -> None:
    p = progress(deployment())
    assert (p.desired, p.updated, p.ready, p.available, p.total) == (6, 6, 6, 6, 6)
    assert p.complete
    assert p.old == 0
    assert not p.paused
    assert p.observed
    assert p.deadline_exceeded is None


def test_controller_has_not_seen_the_latest_spec() -> None:
    p = progress(deployment(generation=3, observed=2))
    assert not p.observed
    assert not p.complete
    assert progress(deployment(generation=3, observed=3)).complete
    assert progress(deployment(generation=3, observed=None)).observed is False


@pytest.mark.parametrize(
    ("changes", "old"),
    [
        ({"updated": 1, "total": 7, "available": 6}, 6),  # canary: 1 new, 6 old
        ({"updated": 6, "total": 7, "available": 7}, 1),  # an old pod still terminating
        ({"updated": 6, "total": 6, "available": 5, "ready": 5}, 0),  # a new pod not yet available
        ({"updated": 0, "total": 6}, 6),
    ],
)
def test_incomplete_rollouts(changes: dict[str, Any], old: int) -> None:
    p = progress(deployment(**changes))
    assert not p.complete
    assert p.old == old


def test_paused_deployment() -> None:
    p = progress(deployment(paused=True, updated=1, total=7))
    assert p.paused
    assert not p.complete


def test_progress_deadline_exceeded() -> None:
    cond = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "hexo-abc" has timed out progressing.',
    }
    p = progress(deployment(updated=1, total=7, conditions=[{"type": "Available", "status": "True"}, cond]))
    assert p.deadline_exceeded == 'ReplicaSet "hexo-abc" has timed out progressing.'
    no_message = dict(cond, message="")
    assert progress(deployment(conditions=[no_message])).deadline_exceeded == "ProgressDeadlineExceeded"


@pytest.mark.parametrize(
    "reason", ["NewReplicaSetAvailable", "ReplicaSetUpdated", "DeploymentPaused", "FoundNewReplicaSet"]
)
def test_other_progressing_reasons_are_not_a_deadline(reason: str) -> None:
    cond = {"type": "Progressing", "status": "Unknown", "reason": reason, "message": "x"}
    assert progress(deployment(conditions=[cond])).deadline_exceeded is None


def test_missing_status_and_replicas() -> None:
    p = progress({"metadata": {"generation": 1}, "spec": {}})
    assert (p.desired, p.updated, p.ready, p.available, p.total) == (1, 0, 0, 0, 0)
    assert not p.observed
    assert not p.complete
    fresh = progress(deployment(replicas=None, updated=None, ready=None, available=None, total=None))
    assert fresh.desired == 1
    assert fresh.total == 0


def test_scaled_to_zero_is_complete() -> None:
    p = progress(deployment(replicas=0, updated=None, ready=None, available=None, total=None))
    assert p.complete


# --- pod_health() ----------------------------------------------------------------------------------


def pod(
    *,
    ready: bool = True,
    restarts: int = 0,
    waiting: str | None = None,
    phase: str = "Running",
    containers: int = 1,
    terminating: bool = False,
    statuses: bool = True,
    image: str = f"{REPO}:v2.0",
) -> Obj:
    meta: Obj = {"name": "hexo-x"}
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    status: Obj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if statuses:
        state: Obj = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
        status["containerStatuses"] = [
            {"name": f"c{i}", "restartCount": restarts, "state": state} for i in range(containers)
        ]
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "hexo", "image": image}, {"name": "sidecar", "image": "envoy"}]},
        "status": status,
    }


def test_all_ready() -> None:
    h = pod_health([pod(), pod()])
    assert h == PodHealth(pods=2, ready=2, restarts=0, problems={})
    assert h.fatal is None
    assert h.describe() == "2/2 ready"


def test_restarts_and_waiting_reasons() -> None:
    h = pod_health(
        [
            pod(ready=False, restarts=3, waiting="CrashLoopBackOff", containers=2),
            pod(ready=False, waiting="ContainerCreating"),
            pod(restarts=1),
        ]
    )
    assert h.pods == 3
    assert h.ready == 1
    assert h.restarts == 7  # summed over containers and pods
    # A reason counts once per pod, however many containers wait for it.
    assert h.problems == {"CrashLoopBackOff": 1, "ContainerCreating": 1}
    assert h.fatal == "CrashLoopBackOff"
    assert h.describe() == "1/3 ready, 7 restarts, 1× ContainerCreating, 1× CrashLoopBackOff"


@pytest.mark.parametrize("reason", sorted(FATAL_WAITING))
def test_fatal_waiting_reasons(reason: str) -> None:
    assert pod_health([pod(ready=False, waiting=reason)]).fatal == reason


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", "Pending"])
def test_transient_reasons_are_not_fatal(reason: str) -> None:
    assert pod_health([pod(ready=False, waiting=reason)]).fatal is None


def test_fatal_is_deterministic_when_several() -> None:
    h = pod_health(
        [pod(waiting="ImagePullBackOff"), pod(waiting="ErrImagePull"), pod(waiting="CrashLoopBackOff")]
    )
    assert h.fatal == "CrashLoopBackOff"


def test_terminating_pods_are_ignored() -> None:
    h = pod_health([pod(), pod(terminating=True, ready=False, waiting="CrashLoopBackOff", restarts=9)])
    assert h == PodHealth(pods=1, ready=1, restarts=0, problems={})


def test_pending_pod_without_statuses() -> None:
    h = pod_health([pod(ready=False, phase="Pending", statuses=False)])
    assert h.problems == {"Pending": 1}
    assert h.fatal is None
    assert h.describe() == "0/1 ready, 1× Pending"
    # A running pod without statuses (should not happen) is not called Pending.
    assert pod_health([pod(statuses=False)]).problems == {}


def test_no_pods() -> None:
    h = pod_health([])
    assert h == PodHealth()
    assert h.describe() == "0/0 ready"


def test_pod_with_nulls_from_the_api() -> None:
    bare: Obj = {
        "metadata": {},
        "status": {"conditions": None, "containerStatuses": None, "phase": "Running"},
    }
    h = pod_health([bare, {"status": {"containerStatuses": [{"restartCount": None, "state": None}]}}])
    assert h.pods == 2
    assert h.ready == 0
    assert h.restarts == 0


# --- small readers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version"),
    [
        (f"{REPO}:v2.0", "v2.0"),
        (REPO, "latest"),
        ("nginx", "latest"),
        ("registry.sword.org:5000/nginx", "latest"),
        ("registry.sword.org:5000/nginx:1.25", "1.25"),
        (f"{REPO}@{DIGEST}", DIGEST),
        (f"{REPO}:v2.0@{DIGEST}", DIGEST),
    ],
)
def test_version_of(image: str, version: str) -> None:
    assert version_of(image) == version


def test_container_image() -> None:
    dep = deployment()
    assert container_image(dep, "hexo") == f"{REPO}:v1.0"
    assert container_image(dep["spec"]["template"], "hexo") == f"{REPO}:v1.0"
    assert container_image(dep, "sidecar") is None
    assert container_image({}, "hexo") is None
    no_image = {"spec": {"template": {"spec": {"containers": [{"name": "hexo"}]}}}}
    assert container_image(no_image, "hexo") == ""


def test_container_image_reads_a_pod_spec() -> None:
    assert container_image(pod(), "sidecar") == "envoy"


def test_pods_running() -> None:
    new, old = pod(image=f"{REPO}:v2.0"), pod(image=f"{REPO}:v1.0")
    assert pods_running([new, old, new], "hexo", f"{REPO}:v2.0") == [new, new]
    assert pods_running([new, old], "sidecar", f"{REPO}:v2.0") == []
    assert pods_running([new, old], "sidecar", "envoy") == [new, old]
    assert pods_running([{}], "hexo", f"{REPO}:v2.0") == []


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"deployment.kubernetes.io/revision": "3"}, 3),
        ({"deployment.kubernetes.io/revision": "12"}, 12),
        ({"deployment.kubernetes.io/revision": "x"}, 0),
        ({"deployment.kubernetes.io/revision": "-1"}, 0),
        ({"deployment.kubernetes.io/revision": ""}, 0),
        ({}, 0),
    ],
)
def test_revision(annotations: dict[str, str], expected: int) -> None:
    assert revision({"metadata": {"annotations": annotations}}) == expected


def test_revision_without_metadata() -> None:
    assert revision({}) == 0


def test_revision_with_a_superscript_digit() -> None:
    assert revision({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "²"}}}) == 0


def test_template_hash() -> None:
    rs = {"metadata": {"labels": {"app": "hexo-server", "pod-template-hash": "5d8f"}}}
    assert template_hash(rs) == "5d8f"
    assert template_hash({"metadata": {}}) is None
