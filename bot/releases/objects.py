"""Kubernetes object helpers and the bot's ownership marks, in one place. Pure.

Plain JSON (dicts as the API server sends them) in and out: resource quantities and what a pod
template requests, which Deployment a Service selects (the live colour), what Endpoints serve, and
the labels and annotations by which the bot recognises what it created (checked before any delete).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.catalog import App
from bot.releases import refusals

Obj = dict[str, Any]

MANAGED_BY = {"app.kubernetes.io/managed-by": "release-bot"}  # label on everything the bot creates
MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
VERSION_LABEL = "version"  # the label the Service selector switches on (guide §1.3)
# The running version, on the Deployment and on its pod template, kept true by every release and
# rollback (the guide's `version` label sits in the immutable selector and cannot follow).
APP_VERSION_LABEL = "app.kubernetes.io/version"
RELEASE_ID = "release-bot.io/release-id"  # annotation: the release that created an object
APP_ANNOTATION = "release-bot.io/app"  # annotation: the catalog app an object belongs to
REPLICAS_BEFORE = "release-bot.io/replicas-before-retire"  # annotation on a blue scaled to 0
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    **{s: Decimal(2) ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def dns_name(text: str, limit: int = 63) -> str:
    """`text` as a DNS-1123 name (lower case, dot-separated labels of [a-z0-9-], alphanumeric at both
    ends of each label); "" when nothing usable is left. Capped at 63 so pod names stay readable."""
    labels = []
    for part in text.lower().split("."):
        part = re.sub(r"[^a-z0-9-]+", "-", part).strip("-")
        if part:
            labels.append(part)
    return ".".join(labels)[:limit].rstrip(".-")


def label_value(version: str) -> str:
    """`version` as a label value (63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", version)[:63].strip("-_.")
    return value or "unknown"


def quantity(text: object) -> Decimal:
    """A Kubernetes resource quantity (`100m`, `64M`, `1Gi`, `1e3`, `0.5`) as a number."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix, exponent = m.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as e:
        raise ValueError(f"not a quantity: {text!r}") from e
    if exponent is not None:
        return value * Decimal(10) ** int(exponent)
    return value * _SUFFIX[suffix or ""]


def pod_requests(template: Obj) -> tuple[int, int]:
    """(CPU millicores, memory bytes) one pod of this template requests, as the scheduler counts it:
    the sum over its containers, or the largest init container if that is more."""

    def requested(container: Obj, resource: str) -> Decimal:
        value = ((container.get("resources") or {}).get("requests") or {}).get(resource)
        if value is None:
            return Decimal(0)
        try:
            return quantity(value)
        except ValueError:
            return Decimal(0)

    spec = template.get("spec", {})
    out = []
    for resource, scale in (("cpu", 1000), ("memory", 1)):
        main = sum((requested(c, resource) for c in spec.get("containers") or []), Decimal(0))
        init = max((requested(c, resource) for c in spec.get("initContainers") or []), default=Decimal(0))
        out.append(math.ceil(max(main, init) * scale))
    return out[0], out[1]


@dataclass(frozen=True)
class Footprint:
    """What one colour runs; both run during the release, so the release needs twice this."""

    replicas: int
    cpu_millis: int
    memory_bytes: int

    @property
    def during(self) -> Footprint:
        return Footprint(2 * self.replicas, 2 * self.cpu_millis, 2 * self.memory_bytes)


def footprint(deployment: Obj) -> Footprint:
    replicas = int(deployment.get("spec", {}).get("replicas", 1) or 0)
    cpu, memory = pod_requests(deployment.get("spec", {}).get("template", {}))
    return Footprint(replicas, cpu * replicas, memory * replicas)


def template_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = (
        deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
    )
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_ours(obj: Obj, app: str) -> bool:
    """Created by release-bot for this app (the mark checked before any delete)."""
    meta = obj.get("metadata", {})
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items()) and annotations.get(APP_ANNOTATION) == app


def release_of(obj: Obj) -> str:
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(RELEASE_ID, "")


def find_live(app: App, service: Obj, deployments: Sequence[Obj]) -> Obj:
    """The live colour: the one Deployment whose pods the Service selects (UserError saying why not)."""
    service_name = app.service or ""
    selector: dict[str, str] = service.get("spec", {}).get("selector") or {}
    if not selector:
        raise refusals.NoSelector(service_name)
    if VERSION_LABEL not in selector:
        raise refusals.NoVersionLabel(service_name, selector, VERSION_LABEL)
    matching = [d for d in deployments if selects(selector, template_labels(d))]
    if len(matching) > 1:  # a retired colour scaled to 0 may still carry the same labels
        running = [d for d in matching if d.get("spec", {}).get("replicas", 1)]
        matching = running or matching
    if not matching:
        catalog = next((d for d in deployments if d["metadata"]["name"] == app.deployment), None)
        raise refusals.NothingSelected(
            app.namespace,
            service_name,
            selector,
            app.deployment,
            template_labels(catalog) if catalog is not None else None,
        )
    if len(matching) > 1:
        raise refusals.Ambiguous(service_name, sorted(d["metadata"]["name"] for d in matching))
    live = matching[0]
    name = live["metadata"]["name"]
    # The guide's own colours (`hexo-v2.0`, made by hand) count as the app's: the bot moves them.
    if name != app.deployment and not is_ours(live, app.name) and claimed_version(app, name) is None:
        raise refusals.LiveNotOurs(service_name, name, app.name, app.deployment)
    return live


def endpoint_ips(endpoints: Obj) -> tuple[set[str], set[str]]:
    """(ready, not ready) addresses of an Endpoints object."""
    ready: set[str] = set()
    not_ready: set[str] = set()
    for subset in endpoints.get("subsets") or []:
        ready |= {a["ip"] for a in subset.get("addresses") or [] if a.get("ip")}
        not_ready |= {a["ip"] for a in subset.get("notReadyAddresses") or [] if a.get("ip")}
    return ready, not_ready


def pod_ready(pod: Obj) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def serves_only(endpoints: Obj, pods: Sequence[Obj]) -> bool:
    """The Endpoints list only these pods' IPs, and every one of them that is Ready: traffic goes to
    this colour and nowhere else."""
    live = [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]
    ips = {p.get("status", {}).get("podIP") for p in live} - {None, ""}
    ready_ips = {p.get("status", {}).get("podIP") for p in live if pod_ready(p)} - {None, ""}
    ready, not_ready = endpoint_ips(endpoints)
    return bool(ready) and (ready | not_ready) <= ips and ready_ips <= ready


def autoscaler_of(autoscalers: Sequence[Obj], deployment: str) -> Obj | None:
    """The HorizontalPodAutoscaler that scales `deployment`, if any."""
    for hpa in autoscalers:
        ref = hpa.get("spec", {}).get("scaleTargetRef", {})
        if ref.get("kind") == "Deployment" and ref.get("name") == deployment:
            return hpa
    return None


def own_labels(deployment: Obj, version: str) -> dict[str, str]:
    """The Deployment's own labels that name its version, set to `version`: always
    `app.kubernetes.io/version`, and the guide's `version` where the Deployment carries it (its own
    labels, unlike its selector, can follow a rolling release)."""
    value = label_value(version)
    labels = {APP_VERSION_LABEL: value}
    if VERSION_LABEL in (deployment.get("metadata", {}).get("labels") or {}):
        labels[VERSION_LABEL] = value
    return labels


def version_label_ops(deployment: Obj, version: str) -> list[Obj]:
    """JSON patch operations that set the Deployment's own version labels (`own_labels`)."""
    labels = own_labels(deployment, version)
    if not deployment.get("metadata", {}).get("labels"):
        return [{"op": "add", "path": "/metadata/labels", "value": labels}]
    return [
        {"op": "add", "path": "/metadata/labels/" + k.replace("~", "~0").replace("/", "~1"), "value": v}
        for k, v in labels.items()
    ]


COLOURS = ("blue", "green")


def green_name(app: App, version: str, live: str) -> str:
    """The green Deployment's name from the catalog's `name_template`: by default the colour that is
    not live (`hexo` -> `hexo-green` -> `hexo-blue` -> `hexo-green`), so no name claims a version."""
    template = app.bluegreen.name_template

    def render(colour: str) -> str:
        fields = {"deployment": app.deployment, "version": version, "app": app.name, "colour": colour}
        try:
            raw = template.format_map(fields)
        except (KeyError, ValueError, IndexError) as e:
            raise refusals.BadNameTemplate(template) from e
        name = dns_name(raw)
        if not name:
            raise refusals.BadNameTemplate(template)
        return name

    green = render("green")
    return render("blue") if green == live else green


def claimed_version(app: App, name: str) -> str | None:
    """The version a guide-style colour's name claims (`hexo-v2.0` -> `v2.0`), or None for the app's
    own name and the colour names the bot gives (`hexo-green`), which claim none."""
    prefix = f"{app.deployment}-"
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    if rest in COLOURS or not re.fullmatch(r"v?[0-9][a-z0-9.-]*", rest):
        return None
    return rest
