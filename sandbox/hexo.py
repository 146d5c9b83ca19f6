"""The guide's example application (Deployment `hexo`, Service `hexo-service`) and a catalog for it.

Used by `release-bot sandbox` and by the integration tests, so both run exactly the guide's objects.
The sandbox also runs a production copy (`hexo-prod`, namespace `prod`) behind the catalog's gates:
two approvals from the `sre` user group, a break-glass person and a year-end freeze window.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

Obj = dict[str, Any]

PROD_APP = "hexo-prod"  # `/release hexo v2.0 --env prod`
PROD_NAMESPACE = "prod"
STAGING_APP = "hexo-staging"  # with two clusters (`sandbox --clusters 2`): hexo in the staging cluster
DEFAULT_CLUSTER = "default"
SOAK_MINUTES = 1.0  # with two clusters: how long staging runs a version before it may go to prod
FREEZE_TIMEZONE = "Europe/Paris"

IMAGE_REPO = "registry.sword.org/nginx"
NGINX_CONF = """\
server {
    listen 80;
    location / { root /usr/share/nginx/html; }
}
"""


def objects(
    namespace: str = "devops", *, replicas: int = 6, version: str = "v1.0", node_port: int | None = None
) -> list[Obj]:
    """The ConfigMap, Deployment and Service of guide §1.1/§1.3, in creation order."""
    labels = {"app": "hexo-server", "version": version}
    service_port: Obj = {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}
    if node_port is not None:
        service_port["nodePort"] = node_port
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hexo-nginx-conf", "namespace": namespace},
            "data": {"nginx.conf": NGINX_CONF},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "hexo", "namespace": namespace, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": 10,
                "selector": {"matchLabels": dict(labels)},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "imagePullSecrets": [{"name": "regcred"}],
                        "containers": [
                            {
                                "name": "hexo",
                                "image": f"{IMAGE_REPO}:{version}",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 80}],
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "64M"},
                                    "limits": {"cpu": "100m", "memory": "100M"},
                                },
                                "volumeMounts": [
                                    {
                                        "name": "nginx-conf",
                                        "mountPath": "/etc/nginx/nginx.conf",
                                        "subPath": "nginx.conf",
                                    }
                                ],
                            }
                        ],
                        "volumes": [{"name": "nginx-conf", "configMap": {"name": "hexo-nginx-conf"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "hexo-service", "namespace": namespace},
            "spec": {
                "type": "NodePort",
                "sessionAffinity": "ClientIP",
                "selector": dict(labels),
                "ports": [service_port],
            },
        },
    ]


def catalog(
    namespace: str,
    users: dict[str, str],
    *,
    progress_deadline_seconds: int = 600,
    auto_rollback: bool = True,
    extra: Obj | None = None,
) -> Obj:
    """A catalog with the hexo app: alice may do everything, bob may promote and roll back, mallory
    nothing (users maps those names to Slack user ids)."""
    alice, bob = users["alice"], users["bob"]
    app: Obj = {
        "namespace": namespace,
        "deployment": "hexo",
        "container": "hexo",
        "image": IMAGE_REPO,
        "service": "hexo-service",
        "strategies": ["rolling", "canary", "bluegreen"],
        "default_strategy": "rolling",
        "rolling": {"max_surge": 1, "max_unavailable": 0},
        "progress_deadline_seconds": progress_deadline_seconds,
        "auto_rollback": auto_rollback,
        "permissions": {
            "release": {"users": [alice]},
            "promote": {"users": [alice, bob]},
            "rollback": {"users": [alice, bob]},
        },
    }
    app.update(extra or {})
    return {"apps": {"hexo": app}}


def year_end_freeze(now: datetime | None = None) -> Obj:
    """The year-end freeze window of next year (24 December to 2 January, Paris time): always in the
    future, so it is shown as upcoming and never blocks the sandbox's releases."""
    year = (now or datetime.now(UTC)).astimezone(ZoneInfo(FREEZE_TIMEZONE)).year + 1
    return {
        "name": "year-end",
        "start": f"{year}-12-24T00:00:00",
        "end": f"{year + 1}-01-02T00:00:00",
        "timezone": FREEZE_TIMEZONE,
    }


def prod_app(
    users: dict[str, str],
    usergroups: dict[str, str],
    *,
    channel: str | None = None,
    now: datetime | None = None,
) -> Obj:
    """The catalog entry of `hexo-prod`: the guide's objects in namespace `prod`, released by alice
    once two people of the `sre` user group (bob, carol) approve; alice, bob and carol may promote
    and roll back, alice may break glass and release during the freeze. `users` and `usergroups` map
    names and handles to Slack ids; `channel` is where a break-glass release is announced."""
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    sre = usergroups["sre"]
    break_glass: Obj = {"users": [alice]}
    if channel is not None:
        break_glass["announce_channel"] = channel
    app: Obj = catalog(PROD_NAMESPACE, users)["apps"]["hexo"]
    app.update(
        {
            "permissions": {
                "release": {"users": [alice]},
                "promote": {"users": [alice, bob, carol]},
                "rollback": {"users": [alice, bob, carol]},
            },
            "approvals": {
                "required": 2,
                "from": {"usergroups": [sre]},
                "allow_self": False,
                "expire_minutes": 60,
                "promote": True,
            },
            "break_glass": break_glass,
            "freeze": [year_end_freeze(now)],
            "freeze_override": {"users": [alice]},
        }
    )
    return app


def analysis(prometheus_url: str) -> Obj:
    """The sandbox's canary analysis: the error rate and the p99 latency of the canary's own pods, from
    the simulated kubelet's traffic (`sandbox.kubelet.traffic`) in the sandbox's Prometheus, every 5 s;
    one failure rolls back (a `v2.0-errors` or `v2.0-slow` canary), Promote stays a person's call."""
    pods = "{{ selector }}"
    return {
        "interval": "5s",
        "failure_limit": 1,
        "metrics": [
            {
                "name": "error-rate",
                "prometheus": {
                    "address": prometheus_url,
                    "query": f'sum(rate(sandbox_http_requests_total{{{pods},code="500"}}[20s])) / '
                    f"sum(rate(sandbox_http_requests_total{{{pods}}}[20s]))",
                },
                "max": 0.05,
            },
            {
                "name": "p99-latency",
                "prometheus": {
                    "address": prometheus_url,
                    "query": "histogram_quantile(0.99, sum by (le) "
                    f"(rate(sandbox_http_request_duration_seconds_bucket{{{pods}}}[20s])))",
                },
                "max": 0.5,
            },
        ],
    }


def sandbox_catalog(
    namespace: str,
    users: dict[str, str],
    usergroups: dict[str, str],
    *,
    channel: str | None = None,
    now: datetime | None = None,
    prometheus_url: str | None = None,
) -> Obj:
    """The sandbox's catalog: `hexo` in `namespace` (as `catalog`) and `hexo-prod` (as `prod_app`),
    both with the canary `analysis` when a Prometheus is given."""
    data = catalog(namespace, users)
    data["apps"][PROD_APP] = prod_app(users, usergroups, channel=channel, now=now)
    if prometheus_url:
        for app in data["apps"].values():
            app["analysis"] = analysis(prometheus_url)
    return data


def clusters_catalog(
    namespace: str,
    users: dict[str, str],
    usergroups: dict[str, str],
    kubeconfigs: dict[str, str],
    *,
    channel: str | None = None,
    now: datetime | None = None,
    prometheus_url: str | None = None,
) -> Obj:
    """The catalog of `sandbox --clusters 2`: `hexo-staging` in `namespace` of the staging cluster,
    and `hexo-prod` (as `prod_app`) in the prod cluster, taking only what comes through staging once
    staging has run it for SOAK_MINUTES. `kubeconfigs` names each cluster's kubeconfig file."""
    staging: Obj = {**catalog(namespace, users)["apps"]["hexo"], "cluster": "staging"}
    prod: Obj = {
        **prod_app(users, usergroups, channel=channel, now=now),
        "cluster": "prod",
        "promotion": {"from": "staging", "soak_minutes": SOAK_MINUTES},
    }
    if prometheus_url:
        staging["analysis"] = prod["analysis"] = analysis(prometheus_url)
    return {
        "clusters": {name: {"kubeconfig": path} for name, path in kubeconfigs.items()},
        "apps": {STAGING_APP: staging, PROD_APP: prod},
    }
