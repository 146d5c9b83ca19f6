"""The guide's example application (Deployment `hexo`, Service `hexo-service`) and a catalog for it.

Used by `release-bot sandbox` and by the integration tests, so both run exactly the guide's objects.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

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
