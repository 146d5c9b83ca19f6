"""The simulated kubelet's status decisions (pure: sandbox/kubelet/status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sandbox.kubelet.status import Container, PodFacts, container_fate, fake_pod_ip, plan_status

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def facts(*images: str, init: tuple[str, ...] = ()) -> PodFacts:
    return PodFacts(
        uid="uid-1",
        containers=tuple(Container(f"c{i}", img) for i, img in enumerate(images)),
        init_containers=tuple(Container(f"i{i}", img) for i, img in enumerate(init)),
        host_ip="127.0.0.1",
        pod_ip="10.244.0.7",
        seen_at=T0,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def conditions(status: dict[str, object]) -> dict[str, str]:
    conds = status["conditions"]
    assert isinstance(conds, list)
    return {c["type"]: c["status"] for c in conds}


def test_before_the_ready_delay_the_pod_is_pending_and_creating() -> None:
    plan = plan_status(facts("nginx:v1"), now=at(0.5), ready_delay=1.0, restart_period=5)
    assert plan.status["phase"] == "Pending"
    assert plan.status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert conditions(plan.status) == {
        "Initialized": "True",
        "Ready": "False",
        "ContainersReady": "False",
        "PodScheduled": "True",
    }
    assert "podIP" not in plan.status
    assert plan.recheck_at == at(1.0)


def test_after_the_ready_delay_the_pod_runs_ready_with_an_ip() -> None:
    plan = plan_status(facts("nginx:v1", "sidecar:v2"), now=at(1.0), ready_delay=1.0, restart_period=5)
    s = plan.status
    assert s["phase"] == "Running"
    assert s["podIP"] == "10.244.0.7"
    assert s["podIPs"] == [{"ip": "10.244.0.7"}]
    assert s["hostIP"] == "127.0.0.1"
    assert set(conditions(s).values()) == {"True"}
    assert [cs["ready"] for cs in s["containerStatuses"]] == [True, True]
    assert all("running" in cs["state"] for cs in s["containerStatuses"])
    assert plan.recheck_at is None


def test_status_is_deterministic_so_unchanged_pods_are_not_rewritten() -> None:
    a = plan_status(facts("nginx:v1"), now=at(3), ready_delay=1.0, restart_period=5)
    b = plan_status(facts("nginx:v1"), now=at(300), ready_delay=1.0, restart_period=5)
    assert a == b


def test_broken_image_runs_but_crash_loops_with_rising_restart_count() -> None:
    f = facts("registry/hexo:broken-1")
    first = plan_status(f, now=at(1.0), ready_delay=1.0, restart_period=5)
    later = plan_status(f, now=at(11.5), ready_delay=1.0, restart_period=5)
    for plan in (first, later):
        assert plan.status["phase"] == "Running"
        cs = plan.status["containerStatuses"][0]
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert cs["ready"] is False
        assert cs["lastState"]["terminated"]["exitCode"] == 1
        assert conditions(plan.status)["Ready"] == "False"
    assert first.status["containerStatuses"][0]["restartCount"] == 1
    assert later.status["containerStatuses"][0]["restartCount"] == 3
    assert first.recheck_at == at(6.0)
    assert later.recheck_at == at(16.0)


def test_pullfail_image_stays_pending_in_image_pull_backoff() -> None:
    plan = plan_status(facts("registry/hexo:pullfail"), now=at(60), ready_delay=1.0, restart_period=5)
    assert plan.status["phase"] == "Pending"
    cs = plan.status["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert cs["started"] is False
    assert cs["restartCount"] == 0
    assert plan.recheck_at is None


def test_one_bad_container_keeps_the_pod_unready() -> None:
    plan = plan_status(facts("nginx:v1", "x:broken"), now=at(2), ready_delay=1.0, restart_period=5)
    assert conditions(plan.status)["Ready"] == "False"
    assert [cs["ready"] for cs in plan.status["containerStatuses"]] == [True, False]


def test_init_containers_are_reported_completed() -> None:
    plan = plan_status(facts("nginx:v1", init=("busybox",)), now=at(2), ready_delay=1.0, restart_period=5)
    (init,) = plan.status["initContainerStatuses"]
    assert init["state"]["terminated"]["reason"] == "Completed"


@pytest.mark.parametrize(
    ("image", "fate"),
    [
        ("nginx:v1", "ok"),
        ("hexo:broken", "broken"),
        ("pullfail/x:1", "pullfail"),
        ("broken-pullfail", "pullfail"),
    ],
)
def test_container_fate_by_image_name(image: str, fate: str) -> None:
    assert container_fate(image) == fate


def test_fake_pod_ips_are_unique_and_valid() -> None:
    ips = [fake_pod_ip(i) for i in range(254 * 254)]
    assert len(set(ips)) == len(ips)
    assert ips[0] == "10.244.0.1"
    assert all(1 <= int(ip.rsplit(".", 1)[1]) <= 254 for ip in ips)


def test_restart_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="restart_period"):
        plan_status(facts("x"), now=at(0), ready_delay=0, restart_period=0)
