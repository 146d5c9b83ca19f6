"""Promotion between environments: the evidence that the source environment runs an image healthily,
and what the target may take. Pure.

The source's pods are the facts: every pod of its live Deployment runs the image, is Ready and not
being deleted; it has been healthy since the last of them turned Ready; its restarts are counted.
The image is taken by digest when the pods report one (a real kubelet's `imageID`), so the target
gets exactly the bytes the source ran, not whatever the tag points to by then.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.releases import health
from bot.releases.record import Promoted
from bot.releases.refusals import NotSoaked

Obj = dict[str, Any]


def digest_of(pods: Sequence[Obj], container: str) -> str | None:
    """The `sha256:…` digest the pods report for `container`, when they all report the same one."""
    found = set()
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if status.get("name") == container:
                image_id = str(status.get("imageID") or "")
                found.add(image_id.rsplit("@", 1)[1] if "@sha256:" in image_id else "")
    if len(found) == 1 and (digest := found.pop()).startswith("sha256:"):
        return digest
    return None


def _ready_since(pod: Obj) -> datetime | None:
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True" and c.get("lastTransitionTime"):
            return datetime.fromisoformat(str(c["lastTransitionTime"]).replace("Z", "+00:00"))
    return None


def evidence(
    source: str, deployment: Obj, pods: Sequence[Obj], container: str, soak_minutes: float, now: datetime
) -> Promoted:
    """What the source runs and since when, healthily: Promoted, or NotSoaked saying why not yet."""
    image = health.container_image(deployment, container) or ""
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    p = health.progress(deployment)
    mine = health.pods_running(live, container, image)
    since = [_ready_since(pod) for pod in mine]
    why = ""
    if not p.complete:
        why = f"its rollout is not complete ({p.updated} of {p.desired} updated, {p.ready} ready)"
    elif not mine or len(mine) != len(live):
        why = f"{len(mine)} of {len(live)} pods run it"
    elif any(t is None for t in since):
        why = f"{sum(t is None for t in since)} of {len(mine)} pods are not Ready"
    if why:
        raise NotSoaked(source, image, soak_minutes, 0.0, why)
    healthy_since = max(t for t in since if t is not None)
    healthy = (now - healthy_since).total_seconds() / 60
    if healthy < soak_minutes:
        raise NotSoaked(source, image, soak_minutes, healthy)
    digest = digest_of(mine, container)
    restarts = sum(
        int(s.get("restartCount") or 0)
        for pod in mine
        for s in pod.get("status", {}).get("containerStatuses") or []
    )
    pinned = f"{health.repository_of(image)}@{digest}" if digest else image
    return Promoted(
        source=source, image=pinned, healthy_since=healthy_since, pods=len(mine), restarts=restarts
    )
