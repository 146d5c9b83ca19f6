"""The pre-flight plan of a release: what it will change, in which steps, with how many pods, and what
stands in its way. Pure: the engine gathers the facts (the live objects, server-side dry-runs of the
strategy's writes, autoscalers, quotas) and these functions turn them into a `Preflight`, stored in
the record, that every front end shows (the `--dry-run` answer, the approval card, the card).

Warnings carry neutral words; front ends add their own formatting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.releases.health import repository_of
from bot.releases.history import template_diff
from bot.releases.objects import autoscaler_of, pod_requests, quantity

Obj = dict[str, Any]

# GitOps controllers and the marks they leave on what they manage.
ARGO_TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE_LABEL = "argocd.argoproj.io/instance"
INSTANCE_LABEL = "app.kubernetes.io/instance"  # Argo CD's default tracking label (Helm sets it too)
FLUX_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": ("kustomize.toolkit.fluxcd.io/namespace", "Flux Kustomization"),
    "helm.toolkit.fluxcd.io/name": ("helm.toolkit.fluxcd.io/namespace", "Flux HelmRelease"),
}
# Field managers of imperative edits: they own the image only until the next edit, like the bot.
IMPERATIVE_MANAGERS = ("kubectl", "release-bot", "kube-controller-manager", "helm")


@dataclass(frozen=True)
class Write:
    """One write a strategy makes to start a release, exactly as it will send it."""

    kind: Literal["deployment", "service"]
    verb: Literal["patch", "create"]
    name: str
    body: Obj | list[Obj]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Warning(_Model):
    """Something the release can do despite, but that people should know before they confirm."""

    kind: Literal["gitops", "autoscaler", "quota", "image", "paused", "budget"]
    text: str


class Pin(_Model):
    """An autoscaler held at `held` replicas while a release runs (min = max = held), and the bounds
    it had before, given back when the release ends."""

    name: str
    min_replicas: int
    max_replicas: int
    held: int
    target: str  # the Deployment it scales now
    restored: bool = False


class Preflight(_Model):
    """What a release will do, worked out by server-side dry-run before anything changes."""

    changes: tuple[str, ...] = ()  # the pod template's differences, `path: before -> after`
    steps: tuple[int, ...] = ()  # new-version pods at each pause; the last is all of them
    peak_pods: int = 0  # pods running at the peak (old and new)
    peak_cpu_millis: int = 0  # CPU the peak's pods request
    peak_memory_bytes: int = 0
    warnings: tuple[Warning, ...] = ()
    autoscaler: str = ""  # the HorizontalPodAutoscaler of the Deployment, if any


def gitops_owner(deployment: Obj) -> str | None:
    """Which GitOps tool manages this Deployment, in words, or None: Argo CD (its tracking annotation
    or instance label), Flux (its kustomize/helm toolkit labels), or a server-side apply manager that
    owns the pod template's images."""
    meta = deployment.get("metadata", {})
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    if ARGO_TRACKING_ANNOTATION in annotations:
        app = annotations[ARGO_TRACKING_ANNOTATION].split(":", 1)[0]
        return f"Argo CD application {app}"
    if ARGO_INSTANCE_LABEL in labels:
        return f"Argo CD application {labels[ARGO_INSTANCE_LABEL]}"
    if INSTANCE_LABEL in labels and labels.get("app.kubernetes.io/managed-by", "").lower() != "helm":
        return f"Argo CD application {labels[INSTANCE_LABEL]}"
    for label, (ns_label, tool) in FLUX_LABELS.items():
        if label in labels:
            where = f"{labels[ns_label]}/" if ns_label in labels else ""
            return f"{tool} {where}{labels[label]}"
    manager = image_applier(deployment)
    return f"field manager {manager} (server-side apply)" if manager else None


def image_applier(deployment: Obj) -> str | None:
    """A field manager other than an imperative tool that owns a container image by server-side
    apply (`operation: Apply`): it will set the image back on its next apply."""
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        manager = str(entry.get("manager", ""))
        if entry.get("operation") != "Apply" or manager.startswith(IMPERATIVE_MANAGERS):
            continue
        fields = entry.get("fieldsV1") or {}
        containers = fields.get("f:spec", {}).get("f:template", {}).get("f:spec", {}).get("f:containers", {})
        if any("f:image" in c for c in containers.values() if isinstance(c, dict)):
            return manager
    return None


# What a quota limits, and the word for it.
_QUOTA_RESOURCES = {
    "pods": "pods",
    "requests.cpu": "CPU",
    "cpu": "CPU",
    "requests.memory": "memory",
    "memory": "memory",
}


def _amount(value: Decimal, what: str) -> str:
    if what == "memory":
        return f"{value / 2**20:.0f} MiB"
    return f"{value.normalize():f}"


def _quota_warnings(
    quotas: Sequence[Obj], extra_pods: int, extra_cpu: int, extra_memory: int
) -> list[Warning]:
    """Quotas the release's extra pods (beyond those running now) would exceed at the peak."""
    out = []
    needs = {"pods": Decimal(extra_pods), "CPU": Decimal(extra_cpu) / 1000, "memory": Decimal(extra_memory)}
    for q in quotas:
        hard = q.get("status", {}).get("hard") or q.get("spec", {}).get("hard") or {}
        used = q.get("status", {}).get("used") or {}
        for resource, what in _QUOTA_RESOURCES.items():
            need = needs[what]
            if resource not in hard or need <= 0:
                continue
            try:
                limit, now = quantity(hard[resource]), quantity(used.get(resource, 0))
            except ValueError:
                continue
            if now + need > limit:
                out.append(
                    Warning(
                        kind="quota",
                        text=(
                            f"quota {q['metadata']['name']}: {what} {_amount(now, what)} of "
                            f"{_amount(limit, what)} used; the release needs {_amount(need, what)} more at "
                            "its peak, so some new pods may not start"
                        ),
                    )
                )
    return out


def _budget_warnings(budgets: Sequence[Obj], template: Obj, unavailable: int) -> list[Warning]:
    """PodDisruptionBudgets of the app's pods that allow no eviction now, or fewer than the rollout
    takes down at once. A rollout does not ask the budget (only evictions do), so it is never
    blocked by one; but a node drain during the release is, and the budget's promise is broken."""
    labels = template.get("metadata", {}).get("labels") or {}
    out = []
    for pdb in budgets:
        selector = pdb.get("spec", {}).get("selector") or {}
        match = selector.get("matchLabels") or {}
        if selector.get("matchExpressions") or not match or any(labels.get(k) != v for k, v in match.items()):
            continue  # expressions are not evaluated here: only plain label selectors are checked
        status = pdb.get("status", {})
        if "disruptionsAllowed" not in status:
            continue  # not yet counted by the disruption controller
        allowed = int(status["disruptionsAllowed"])
        name = pdb["metadata"]["name"]
        if allowed == 0:
            text = (
                f"PodDisruptionBudget {name} allows no eviction now ({status.get('currentHealthy', 0)} of "
                f"{status.get('desiredHealthy', 0)} healthy pods needed): a node drain during the release "
                "would block"
            )
        elif unavailable > allowed:
            text = (
                f"the rolling update takes up to {unavailable} pods down at once, more than "
                f"PodDisruptionBudget {name} allows ({allowed}); rollouts do not ask the budget"
            )
        else:
            continue
        out.append(Warning(kind="budget", text=text))
    return out


def build(
    *,
    live: Obj,
    after: Obj,
    steps: tuple[int, ...],
    peak_pods: int,
    catalog_image: str,
    from_image: str,
    gitops: str | None,
    autoscalers: Sequence[Obj],
    quotas: Sequence[Obj],
    budgets: Sequence[Obj] = (),
    unavailable: int = 0,
) -> Preflight:
    """The plan from its facts: `live`, the Deployment as it runs; `after`, the pod template the
    release will run (from the dry-run); `gitops`, the GitOps owner the catalog allows, if any;
    `budgets`, the namespace's PodDisruptionBudgets; `unavailable`, the old pods the rollout may take
    down at once."""
    template = live.get("spec", {}).get("template", {})
    cpu, memory = pod_requests(after)
    replicas = int(live.get("spec", {}).get("replicas", 1) or 0)
    extra = max(0, peak_pods - replicas)
    warnings = []
    if gitops:
        warnings.append(
            Warning(
                kind="gitops",
                text=f"managed by {gitops}: it may set the image back to what Git says on its next sync",
            )
        )
    hpa = autoscaler_of(autoscalers, live.get("metadata", {}).get("name", ""))
    if hpa is not None:
        spec, status = hpa.get("spec", {}), hpa.get("status", {})
        warnings.append(
            Warning(
                kind="autoscaler",
                text=(
                    f"HorizontalPodAutoscaler {hpa['metadata']['name']} scales it "
                    f"({spec.get('minReplicas', 1)} to {spec.get('maxReplicas')} pods, "
                    f"{status.get('currentReplicas', replicas)} now); a canary or blue-green release holds "
                    "it at its current size until it ends"
                ),
            )
        )
    warnings += _quota_warnings(quotas, extra, extra * cpu, extra * memory)
    if repository_of(from_image) != catalog_image:
        warnings.append(
            Warning(
                kind="image",
                text=f"it runs {from_image}, not an image of the catalog's {catalog_image}: the release replaces it",
            )
        )
    if live.get("spec", {}).get("paused"):
        warnings.append(Warning(kind="paused", text="the Deployment is paused: the release resumes it"))
    warnings += _budget_warnings(budgets, template, unavailable)
    return Preflight(
        changes=tuple(template_diff(template, after)),  # `after` as the server would store it
        steps=steps,
        peak_pods=peak_pods,
        peak_cpu_millis=cpu * peak_pods,
        peak_memory_bytes=memory * peak_pods,
        warnings=tuple(warnings),
        autoscaler=hpa["metadata"]["name"] if hpa is not None else "",
    )
