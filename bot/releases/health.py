"""What the cluster says about a rollout, reduced to facts the card and the health gate use. Pure.

Works on the JSON of a Deployment and its pods, following `kubectl rollout status`: a rollout is
complete when the controller has seen the latest spec and every desired replica is updated and
available with no old replica left; it has failed when Progressing is False/ProgressDeadlineExceeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.freeze import Active
from bot.releases.objects import label_value

Obj = dict[str, Any]

# Container waiting reasons that mean the new version will not become Ready by itself.
FATAL_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class Progress:
    desired: int
    updated: int
    ready: int
    available: int
    total: int  # all pods the controller counts, old and new
    paused: bool
    observed: bool  # the controller has seen the latest spec
    deadline_exceeded: str | None  # the Progressing condition's message when the deadline passed

    @property
    def complete(self) -> bool:
        return (
            self.observed
            and self.updated == self.desired
            and self.total == self.desired
            and self.available == self.desired
        )

    @property
    def old(self) -> int:
        return max(0, self.total - self.updated)


@dataclass(frozen=True)
class Running:
    """What a Deployment runs, as status answers show it: its name, each container's image, its
    conditions (type, status, reason) and its rollout progress."""

    namespace: str
    name: str
    images: tuple[tuple[str, str], ...]  # (container, image)
    conditions: tuple[tuple[str, str, str], ...]
    progress: Progress


def running(deployment: Obj) -> Running:
    meta = deployment.get("metadata", {})
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    conditions = deployment.get("status", {}).get("conditions") or []
    return Running(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        images=tuple((str(c.get("name", "")), str(c.get("image", ""))) for c in containers),
        conditions=tuple(
            (str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", ""))) for c in conditions
        ),
        progress=progress(deployment),
    )


def progress(deployment: Obj) -> Progress:
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    meta = deployment.get("metadata", {})
    exceeded = None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            exceeded = cond.get("message") or "ProgressDeadlineExceeded"
    return Progress(
        desired=spec.get("replicas", 1),
        updated=status.get("updatedReplicas", 0) or 0,
        ready=status.get("readyReplicas", 0) or 0,
        available=status.get("availableReplicas", 0) or 0,
        total=status.get("replicas", 0) or 0,
        paused=bool(spec.get("paused")),
        observed=(status.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
        deadline_exceeded=exceeded,
    )


@dataclass(frozen=True)
class PodHealth:
    """The health of the pods that run one version (one pod template)."""

    pods: int = 0
    ready: int = 0
    restarts: int = 0
    problems: dict[str, int] = field(default_factory=dict)  # waiting reason -> pods

    @property
    def fatal(self) -> str | None:
        for reason in sorted(self.problems):
            if reason in FATAL_WAITING:
                return reason
        return None

    def describe(self) -> str:
        parts = [f"{self.ready}/{self.pods} ready"]
        if self.restarts:
            parts.append(f"{self.restarts} restarts")
        parts += [f"{n}× {reason}" for reason, n in sorted(self.problems.items())]
        return ", ".join(parts)


def pod_health(pods: list[Obj]) -> PodHealth:
    ready = restarts = 0
    problems: dict[str, int] = {}
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    for pod in live:
        status = pod.get("status", {})
        if any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ):
            ready += 1
        reasons = set()
        for cs in status.get("containerStatuses") or []:
            restarts += cs.get("restartCount", 0) or 0
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason"):
                reasons.add(waiting["reason"])
        if not status.get("containerStatuses") and status.get("phase") == "Pending":
            reasons.add("Pending")
        for r in reasons:
            problems[r] = problems.get(r, 0) + 1
    return PodHealth(pods=len(live), ready=ready, restarts=restarts, problems=problems)


def template_hash(replica_set: Obj) -> str | None:
    labels: dict[str, str] = replica_set.get("metadata", {}).get("labels", {})
    return labels.get("pod-template-hash")


def revision(obj: Obj) -> int:
    value = obj.get("metadata", {}).get("annotations", {}).get("deployment.kubernetes.io/revision", "0")
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() else 0


def container_image(deployment_or_template: Obj, container: str) -> str | None:
    spec = deployment_or_template.get("spec", {})
    template = spec.get("template", deployment_or_template)
    for c in template.get("spec", {}).get("containers", []):
        if c.get("name") == container:
            image: str = c.get("image", "")
            return image
    return None


def repository_of(image: str) -> str:
    """An image reference without its tag or digest (`registry:5000/team/hexo:v2` -> `registry:5000/team/hexo`)."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def version_of(image: str) -> str:
    """The part of an image reference a person calls its version (tag or digest)."""
    if "@" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


@dataclass(frozen=True)
class Live:
    """What the driver last saw on the cluster, for the card."""

    progress: Progress | None = None
    new_pods: PodHealth | None = None
    now: datetime | None = None
    unreachable_since: datetime | None = None  # the cluster stopped answering then: facts may be stale
    freeze: Active | None = None  # a freeze window of the app is on now: its next steps need an override
    queue: tuple[str, ...] = ()  # the releases waiting for this one, in order ("v2.1 by bob")
    locked: str = ""  # who locked the app and why, when it is locked
    deployment: str = ""  # the Deployment `progress` is of (one of the app's several, `deployments:`)
    # (the immutable selector's `version`, the version running) when they disagree (see below)
    selector_label: tuple[str, str] | None = None


def pods_running(pods: list[Obj], container: str, image: str) -> list[Obj]:
    """The pods whose `container` runs `image` (the new version's pods, whatever their ReplicaSet)."""
    out = []
    for pod in pods:
        for c in pod.get("spec", {}).get("containers", []):
            if c.get("name") == container and c.get("image") == image:
                out.append(pod)
    return out


def stale_selector_label(deployment: Obj, container: str, label: str = "version") -> tuple[str, str] | None:
    """(the selector's `label`, the version `container` runs) when they disagree: a selector is
    immutable, so the guide's `version` label in it cannot follow a rolling release or a canary."""
    selected = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    image = container_image(deployment, container)
    if label not in selected or image is None:
        return None
    running = version_of(image)
    if selected[label] == label_value(running):
        return None
    return str(selected[label]), running
