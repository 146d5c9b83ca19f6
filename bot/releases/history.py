"""Revision history and undo, computed the way `kubectl rollout history/undo` does. Pure.

kubectl's undo (k8s.io/kubectl/pkg/polymorphichelpers/rollback.go) copies the chosen ReplicaSet's pod
template back into the Deployment (without the pod-template-hash label) and its annotations (except
the bookkeeping ones), in one JSON patch. We do the same, so the cluster ends exactly as with kubectl;
unlike kubectl we may also unpause in the same patch, because a canary is paused when rolled back.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bot.errors import UserError
from bot.releases.health import revision

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


class NothingToUndo(UserError):
    pass


@dataclass(frozen=True)
class Undo:
    revision: int
    patch: list[Obj]  # JSON patch for the Deployment
    noop: bool  # the running template already is that revision


def by_revision(replica_sets: list[Obj]) -> list[Obj]:
    """ReplicaSets newest revision first."""
    return sorted(replica_sets, key=revision, reverse=True)


def template_of(replica_set: Obj) -> Obj:
    tmpl: Obj = copy.deepcopy(replica_set["spec"]["template"])
    labels = tmpl.get("metadata", {}).get("labels", {})
    labels.pop(HASH_LABEL, None)
    return tmpl


def undo(deployment: Obj, replica_sets: list[Obj], to_revision: int | None, *, unpause: bool) -> Undo:
    """The patch `kubectl rollout undo [--to-revision=N]` would apply."""
    if not replica_sets:
        raise NothingToUndo("This Deployment has no revisions to go back to.")
    ordered = by_revision(replica_sets)
    if to_revision is None:
        if len(ordered) < 2:
            raise NothingToUndo("There is no previous revision to roll back to.")
        target = ordered[1]  # kubectl: the highest revision below the current (highest) one
    else:
        found = [rs for rs in ordered if revision(rs) == to_revision]
        if not found:
            known = ", ".join(str(revision(rs)) for rs in ordered)
            raise NothingToUndo(f"Revision {to_revision} not found; known revisions: {known}.")
        target = found[0]
    if deployment.get("spec", {}).get("paused") and not unpause:
        raise NothingToUndo("The Deployment is paused; resume it first.")
    tmpl = template_of(target)
    annotations = {
        k: v for k, v in (deployment["metadata"].get("annotations") or {}).items() if k in SKIPPED_ANNOTATIONS
    }
    annotations.update(
        {
            k: v
            for k, v in (target["metadata"].get("annotations") or {}).items()
            if k not in SKIPPED_ANNOTATIONS
        }
    )
    current = copy.deepcopy(deployment["spec"]["template"])
    noop = _equal_templates(current, tmpl)
    patch: list[Obj] = [
        {"op": "replace", "path": "/spec/template", "value": tmpl},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    if unpause and deployment.get("spec", {}).get("paused"):
        patch.append({"op": "replace", "path": "/spec/paused", "value": False})
    return Undo(revision=revision(target), patch=patch, noop=noop)


def _equal_templates(a: Obj, b: Obj) -> bool:
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    for t in (a, b):
        t.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return a == b


@dataclass(frozen=True)
class Revision:
    """One line of `kubectl rollout history`, plus who released it via Slack when we know."""

    number: int
    images: tuple[str, ...]
    change_cause: str
    created: str  # RFC 3339, as the API server wrote it
    replicas: int
    template: Obj

    @property
    def slack_user(self) -> str | None:
        """The Slack user id in a change-cause written by release-bot, e.g. "... alice (U123) ..."."""
        if not self.change_cause.startswith("release-bot:"):
            return None
        start, end = self.change_cause.find("("), self.change_cause.find(")")
        return self.change_cause[start + 1 : end] if 0 < start < end else None


def revisions(replica_sets: list[Obj]) -> list[Revision]:
    """The Deployment's revisions, newest first (revision 0 / unannotated sets are skipped)."""
    out = []
    for rs in by_revision(replica_sets):
        number = revision(rs)
        if number < 1:
            continue
        meta = rs["metadata"]
        containers = rs["spec"]["template"].get("spec", {}).get("containers", [])
        out.append(
            Revision(
                number=number,
                images=tuple(c.get("image", "") for c in containers),
                change_cause=(meta.get("annotations") or {}).get("kubernetes.io/change-cause", ""),
                created=meta.get("creationTimestamp", ""),
                replicas=rs.get("status", {}).get("replicas", 0) or 0,
                template=template_of(rs),
            )
        )
    return out


def template_diff(running: Any, other: Any, path: str = "") -> list[str]:
    """What differs between two pod templates, as `path: running -> other` lines (hash label ignored)."""
    if path == "":
        running, other = copy.deepcopy(running), copy.deepcopy(other)
        for t in (running, other):
            t.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    if isinstance(running, dict) and isinstance(other, dict):
        lines: list[str] = []
        for key in sorted(set(running) | set(other)):
            lines += template_diff(running.get(key), other.get(key), f"{path}.{key}" if path else str(key))
        return lines
    if isinstance(running, list) and isinstance(other, list) and len(running) == len(other):
        lines = []
        for i, (a, b) in enumerate(zip(running, other, strict=True)):
            name = a.get("name") if isinstance(a, dict) else None
            lines += template_diff(a, b, f"{path}[{name or i}]")
        return lines
    return [] if running == other else [f"{path}: {running!r} -> {other!r}"]


def deployment_diff(first: Any, second: Any) -> tuple[tuple[int, int] | None, list[str]]:
    """How `second`'s Deployment differs from `first`'s: (their replicas when they differ, the pod
    template's differences as `template_diff` lines)."""
    a, b = first.get("spec", {}), second.get("spec", {})
    replicas = (int(a.get("replicas", 1)), int(b.get("replicas", 1)))
    changed = replicas if replicas[0] != replicas[1] else None
    return changed, template_diff(a.get("template", {}), b.get("template", {}))
