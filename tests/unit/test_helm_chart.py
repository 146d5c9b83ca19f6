"""The Helm chart (helm/release-bot), rendered offline with helm-python-sdk: security settings, probes,
grace period, both Slack modes and their secrets, least-privilege RBAC narrowed by name, monitoring
objects, extraObjects, the `helm test` hook, NOTES, lint, and the values schema."""

from __future__ import annotations

import base64
import math
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import helm_python
except ImportError as e:  # a missing prerequisite fails, with the command that fixes it
    raise ImportError("helm-python-sdk is not installed: run `.venv/bin/pip install helm-python-sdk`") from e

from bot.catalog import Catalog
from bot.kube import access
from bot.metrics import Metrics
from tests.fixtures.helm import (
    CHART,
    IMAGE_VALUES,
    SLACK_VALUES,
    SOCKET_VALUES,
    Obj,
    catalog_for,
    is_hook,
    of_kind,
    one,
    render,
    render_files,
    render_notes,
)

Rule = tuple[str, str, tuple[str, ...]]  # (API group, resource, resourceNames; () = every name)

# What bot/kube/client.py calls for an app released blue-green (hexo, Service hexo-service).
NEEDED_BLUEGREEN: dict[Rule, set[str]] = {
    ("apps", "deployments", ()): {"get", "list", "watch", "patch", "create", "delete"},
    ("apps", "replicasets", ()): {"list"},
    ("", "pods", ()): {"list", "watch"},
    ("", "services", ("hexo-service",)): {"get", "patch"},
    ("", "services", ()): {"list", "watch"},
    ("", "endpoints", ("hexo-service",)): {"list", "watch"},
    ("", "configmaps", ()): {"list", "watch", "create"},
    ("", "configmaps", ("release-bot.hexo",)): {"get", "update"},
    ("coordination.k8s.io", "leases", ()): {"create"},
    ("coordination.k8s.io", "leases", ("release-bot.hexo",)): {"get", "update"},
    ("", "events", ()): {"create"},
    ("autoscaling", "horizontalpodautoscalers", ()): {"list", "watch", "patch"},
    ("", "resourcequotas", ()): {"list", "watch"},
    ("policy", "poddisruptionbudgets", ()): {"list", "watch"},
}

BASE: Obj = {**IMAGE_VALUES, **SLACK_VALUES, "catalog": catalog_for("devops")}


def values(**overrides: Any) -> Obj:
    return {**BASE, **overrides}


def socket_values(**overrides: Any) -> Obj:
    return {**BASE, **SOCKET_VALUES, **overrides}


def deployment(docs: list[Obj]) -> Obj:
    return one(docs, "Deployment")


def container(docs: list[Obj]) -> Obj:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: Obj = containers[0]
    return c


def env(docs: list[Obj]) -> dict[str, Obj]:
    return {e["name"]: e for e in container(docs)["env"]}


def secret_data(docs: list[Obj]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret")["data"].items()}


def granted(role: Obj) -> dict[Rule, set[str]]:
    out: dict[Rule, set[str]] = {}
    for rule in role["rules"]:
        names = tuple(rule.get("resourceNames", ()))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource, names), set()).update(rule["verbs"])
    return out


def role_in(docs: list[Obj], namespace: str) -> Obj:
    (role,) = [r for r in of_kind(docs, "Role") if r["metadata"]["namespace"] == namespace]
    return role


@pytest.fixture(scope="module")
def default_docs() -> list[Obj]:
    return render(BASE, namespace="bots")


# ---------------------------------------------------------------------------- the Deployment


def test_pod_and_container_are_locked_down(default_docs: list[Obj]) -> None:
    pod = deployment(default_docs)["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(default_docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_tmp_is_the_only_writable_mount(default_docs: list[Obj]) -> None:
    pod = deployment(default_docs)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in container(default_docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp", "/etc/release-bot"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/release-bot"]["readOnly"] is True


def test_probes_healthz_and_readyz(default_docs: list[Obj]) -> None:
    c = container(default_docs)
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"http": 3000}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_resources_are_set(default_docs: list[Obj]) -> None:
    res = container(default_docs)["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]


@pytest.mark.parametrize("drain", [0, 20, 45.5, 600])
def test_grace_period_outlasts_the_drain(drain: float) -> None:
    docs = render(values(bot={"drainSeconds": drain}))
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["terminationGracePeriodSeconds"] == math.ceil(drain) + 10
    assert env(docs)["RELEASE_BOT_DRAIN_SECONDS"]["value"] == str(drain)


def test_bot_settings_reach_the_environment(default_docs: list[Obj]) -> None:
    e = env(default_docs)
    assert e["RELEASE_BOT_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert e["RELEASE_BOT_PORT"]["value"] == "3000"
    assert e["RELEASE_BOT_LEASE_SECONDS"]["value"] == "15"
    # The image sets RELEASE_BOT_HOST=0.0.0.0; the chart must not override it, nor give a kubeconfig.
    assert "RELEASE_BOT_HOST" not in e and "KUBECONFIG" not in e
    assert deployment(default_docs)["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_image_is_required_and_takes_the_tag_or_digest() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"image\.repository is required"):
        render({**SLACK_VALUES, "catalog": catalog_for("devops")})
    assert container(render(values()))["image"] == "registry.example.org/release-bot:0.1.0"
    untagged = render(values(image={"repository": "registry.example.org/rb"}))
    assert container(untagged)["image"] == "registry.example.org/rb:0.1.0", "the chart's appVersion"
    digest = "sha256:" + "a" * 64
    pinned = render(values(image={"repository": "registry.example.org/rb", "tag": "9", "digest": digest}))
    assert container(pinned)["image"] == f"registry.example.org/rb@{digest}"


def test_catalog_configmap_is_mounted_where_the_bot_reads_it(default_docs: list[Obj]) -> None:
    cm = one(default_docs, "ConfigMap")
    assert yaml.safe_load(cm["data"]["catalog.yaml"]) == BASE["catalog"]
    pod = deployment(default_docs)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "catalog")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert env(default_docs)["RELEASE_BOT_CATALOG"]["value"] == "/etc/release-bot/catalog.yaml"


def test_catalog_or_secret_change_rolls_the_pods(default_docs: list[Obj]) -> None:
    def checksums(docs: list[Obj]) -> dict[str, str]:
        ann: dict[str, str] = deployment(docs)["spec"]["template"]["metadata"]["annotations"]
        return ann

    before = checksums(default_docs)
    other_catalog = checksums(render(values(catalog=catalog_for("devops", "web")), namespace="bots"))
    other_token = checksums(
        render(values(slack={"botToken": "xoxb-2", "signingSecret": "s"}), namespace="bots")
    )
    assert other_catalog["checksum/catalog"] != before["checksum/catalog"]
    assert other_token["checksum/secret"] != before["checksum/secret"]


def test_defaults_two_replicas_and_a_pdb(default_docs: list[Obj]) -> None:
    assert deployment(default_docs)["spec"]["replicas"] == 2
    assert deployment(default_docs)["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(default_docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert (
        pdb["spec"]["selector"]["matchLabels"] == deployment(default_docs)["spec"]["selector"]["matchLabels"]
    )


def test_pdb_for_old_clusters_and_none_for_one_replica() -> None:
    old = one(render(values(podDisruptionBudget={"apiVersion": "policy/v1beta1"})), "PodDisruptionBudget")
    assert old["apiVersion"] == "policy/v1beta1"
    assert of_kind(render(values(replicaCount=1)), "PodDisruptionBudget") == []
    with pytest.raises(helm_python.HelmRenderError, match="minAvailable must be below replicaCount"):
        render(values(replicaCount=2, podDisruptionBudget={"minAvailable": 2}))


def test_every_object_is_namespaced_and_labelled(default_docs: list[Obj]) -> None:
    for doc in default_docs:
        meta = doc["metadata"]
        assert meta.get("namespace"), f"{doc['kind']} {meta['name']} has no namespace"
        assert meta["labels"]["app.kubernetes.io/instance"] == "release-bot"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


# ---------------------------------------------------------------------------- Slack: HTTP mode


def test_http_mode_needs_the_signing_secret_and_no_app_token(default_docs: list[Obj]) -> None:
    assert container(default_docs)["args"] == ["serve"]
    e = env(default_docs)
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert e[key]["valueFrom"]["secretKeyRef"] == {"name": "release-bot", "key": key}, "not optional"
    assert "SLACK_APP_TOKEN" not in e
    assert secret_data(default_docs) == {
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "test-signing-secret",
    }


def test_http_mode_with_ingress_and_existing_secret() -> None:
    docs = render(
        values(
            replicaCount=3,
            existingSecret="slack-from-vault",
            slack={},
            ingress={"enabled": True, "className": "nginx", "hosts": ["bot.example.org"]},
        ),
        namespace="bots",
    )
    assert deployment(docs)["spec"]["replicas"] == 3
    assert of_kind(docs, "Secret") == [], "existingSecret: the chart must not create a Secret"
    e = env(docs)
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert e[key]["valueFrom"]["secretKeyRef"] == {"name": "slack-from-vault", "key": key}
    assert "checksum/secret" not in deployment(docs)["spec"]["template"]["metadata"]["annotations"]
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert rule["host"] == "bot.example.org"
    assert path["path"] == "/slack/events", "only Slack's Request URL is exposed"
    assert path["backend"]["service"] == {"name": "release-bot", "port": {"number": 80}}


def test_http_mode_notes_give_the_request_url_and_the_keys() -> None:
    notes = render_notes(values(ingress={"enabled": True, "hosts": ["bot.example.org"]}))
    assert "HTTP mode" in notes
    assert "https://bot.example.org/slack/events" in notes
    assert re.search(r"SLACK_SIGNING_SECRET\s+required", notes)
    assert "SLACK_APP_TOKEN" not in notes and "Socket Mode" not in notes


# ---------------------------------------------------------------------------- Slack: Socket Mode


def test_socket_mode_with_the_charts_secret_needs_no_signing_secret() -> None:
    docs = render(socket_values())
    assert container(docs)["args"] == ["serve", "--socket-mode"]
    assert secret_data(docs) == {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_APP_TOKEN": "xapp-1-A1-2-x"}
    e = env(docs)
    assert e["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "release-bot",
        "key": "SLACK_APP_TOKEN",
    }
    assert e["SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"]["optional"] is True
    signed = render(socket_values(slack={**SOCKET_VALUES["slack"], "signingSecret": "s3"}))
    assert secret_data(signed)["SLACK_SIGNING_SECRET"] == "s3"


def test_socket_mode_with_an_existing_secret() -> None:
    docs = render(socket_values(existingSecret="slack-from-vault", slack={"socketMode": True}))
    assert of_kind(docs, "Secret") == []
    e = env(docs)
    assert e["SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "slack-from-vault",
        "key": "SLACK_BOT_TOKEN",
    }
    # required: a Secret without it stops the pod before the bot starts (CreateContainerConfigError)
    assert e["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "slack-from-vault",
        "key": "SLACK_APP_TOKEN",
    }
    # optional: a Secret without it starts the bot, which needs none in Socket Mode
    assert e["SLACK_SIGNING_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "slack-from-vault",
        "key": "SLACK_SIGNING_SECRET",
        "optional": True,
    }


@pytest.mark.parametrize(
    ("slack", "message"),
    [
        ({"socketMode": True, "botToken": "xoxb-1"}, r"/slack/appToken"),
        ({"socketMode": True, "botToken": "xoxb-1", "appToken": "xoxb-not-an-app-token"}, r"/slack/appToken"),
        ({"socketMode": True, "appToken": "xapp-1"}, r"/slack/botToken"),
        ({"botToken": "xoxb-1"}, r"/slack/signingSecret"),
        ({"signingSecret": "s"}, r"/slack/botToken"),
    ],
)
def test_schema_refuses_a_secret_the_mode_cannot_run_with(slack: Obj, message: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError, match=message):
            chart.validate_schema(values(slack=slack))
        chart.validate_schema(values(slack=slack, existingSecret="mine"))  # the chart cannot see it


@pytest.mark.parametrize(
    ("slack", "message"),
    [
        (
            {"socketMode": True, "botToken": "xoxb-1"},
            r"slack\.appToken \(xapp-\.\.\.\) is required in Socket Mode",
        ),
        ({"botToken": "xoxb-1"}, r"slack\.signingSecret is required in HTTP mode"),
        ({"signingSecret": "s"}, r"slack\.botToken is required"),
    ],
)
def test_templates_refuse_it_too_without_the_schema(slack: Obj, message: str, tmp_path: Path) -> None:
    """Rendering with schema validation skipped (a chart copy without values.schema.json): the
    templates themselves say what is missing."""
    copy = tmp_path / "release-bot"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    with helm_python.Chart.load(copy) as chart, pytest.raises(helm_python.HelmRenderError, match=message):
        chart.render(values(slack=slack), name="release-bot", namespace="bots")


def test_socket_mode_refuses_an_ingress() -> None:
    with pytest.raises(helm_python.HelmValuesError, match=r"/ingress/enabled"):
        render(socket_values(ingress={"enabled": True, "hosts": ["bot.example.org"]}))


def test_socket_mode_notes_say_no_request_url() -> None:
    notes = render_notes(socket_values())
    assert "Socket Mode" in notes
    assert "Request URL" in notes and "no Request URL" in notes
    assert "/slack/events" not in notes
    assert re.search(r"SLACK_APP_TOKEN\s+required", notes)
    assert re.search(r"SLACK_SIGNING_SECRET\s+optional", notes)
    existing = render_notes(socket_values(existingSecret="slack-from-vault", slack={"socketMode": True}))
    assert "Secret slack-from-vault (yours, existingSecret)" in existing
    assert "rollout restart" in existing


# ---------------------------------------------------------------------------- RBAC


def test_one_role_and_binding_per_namespace() -> None:
    docs = render(
        values(catalog=catalog_for("devops", "web"), namespaces=["devops", "web"]), namespace="bots"
    )
    roles, bindings = of_kind(docs, "Role"), of_kind(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["devops", "web"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["devops", "web"]
    sa = one(docs, "ServiceAccount")
    for b in bindings:
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "release-bot",
        }
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "bots"}
        ]


def test_namespaces_derive_from_the_catalog() -> None:
    docs = render(values(catalog=catalog_for("web", "devops", "web")))
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["devops", "web"]


def test_listed_namespaces_must_cover_the_catalog() -> None:
    with pytest.raises(helm_python.HelmRenderError, match='namespaces does not include "web"'):
        render(values(catalog=catalog_for("devops", "web"), namespaces=["devops"]))
    extra = render(values(namespaces=["devops", "staging"]))
    assert sorted(r["metadata"]["namespace"] for r in of_kind(extra, "Role")) == ["devops", "staging"]
    assert role_in(extra, "staging")["rules"] == [], "no catalog app there: nothing granted"


def test_empty_catalog_is_a_clear_error() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"catalog\.apps is empty"):
        render({**IMAGE_VALUES, **SLACK_VALUES})


def test_role_grants_exactly_what_a_bluegreen_app_needs(default_docs: list[Obj]) -> None:
    assert granted(one(default_docs, "Role")) == NEEDED_BLUEGREEN


def test_without_bluegreen_deployments_are_named_and_never_created() -> None:
    docs = render(values(catalog=catalog_for("devops", strategies=("rolling", "canary"))))
    assert granted(one(docs, "Role")) == {
        ("apps", "deployments", ()): {"list", "watch"},
        ("apps", "deployments", ("hexo",)): {"get", "patch"},
        ("apps", "replicasets", ()): {"list"},
        ("", "pods", ()): {"list", "watch"},
        ("", "configmaps", ()): {"list", "watch", "create"},
        ("", "configmaps", ("release-bot.hexo",)): {"get", "update"},
        ("coordination.k8s.io", "leases", ()): {"create"},
        ("coordination.k8s.io", "leases", ("release-bot.hexo",)): {"get", "update"},
        ("", "events", ()): {"create"},
        ("autoscaling", "horizontalpodautoscalers", ()): {"list", "watch", "patch"},
        ("", "resourcequotas", ()): {"list", "watch"},
        ("policy", "poddisruptionbudgets", ()): {"list", "watch"},
    }


def test_several_deployments_of_an_app_are_all_named() -> None:
    catalog = catalog_for("devops", strategies=("rolling",))
    app = catalog["apps"]["hexo"]
    del app["deployment"]
    app["deployments"] = [{"name": "hexo"}, {"name": "hexo-worker", "container": "worker"}]
    granted_ = granted(one(render(values(catalog=catalog)), "Role"))
    assert granted_[("apps", "deployments", ("hexo", "hexo-worker"))] == {"get", "patch"}
    parsed = Catalog.from_mapping(catalog).apps["hexo"]
    names = {
        r.name for r in access.needed([parsed], lambda a: f"release-bot.{a}") if r.resource == "deployments"
    }
    assert names == {"", "hexo", "hexo-worker"}


def test_environments_become_apps_with_their_own_records() -> None:
    catalog = {
        "apps": {
            "api": {
                "deployment": "api",
                "container": "api",
                "image": "registry.example.org/api",
                "environments": {
                    "staging": {"namespace": "staging", "deployment": "api-staging"},
                    "prod": {"namespace": "prod"},
                },
            },
            "web": {"namespace": "prod", "deployment": "web", "container": "web", "image": "r/web"},
        }
    }
    docs = render(values(catalog=catalog))
    prod, staging = granted(role_in(docs, "prod")), granted(role_in(docs, "staging"))
    assert prod[("", "configmaps", ("release-bot.api-prod", "release-bot.web"))] == {"get", "update"}
    assert prod[("apps", "deployments", ("api", "web"))] == {"get", "patch"}
    assert staging[("coordination.k8s.io", "leases", ("release-bot.api-staging",))] == {"get", "update"}
    assert staging[("apps", "deployments", ("api-staging",))] == {"get", "patch"}
    assert yaml.safe_load(one(docs, "ConfigMap")["data"]["catalog.yaml"]) == catalog, "passed as written"


def test_apps_of_another_cluster_get_no_role_here_and_its_kubeconfigs_are_mounted() -> None:
    catalog = catalog_for("staging", "prod", strategies=("rolling",))
    catalog["apps"]["hexo1"]["cluster"] = "prod"  # the app of namespace prod
    catalog["clusters"] = {"prod": {"kubeconfig": "/etc/release-bot-clusters/prod.kubeconfig"}}
    docs = render(values(catalog=catalog, clusterCredentials={"secretName": "kubeconfigs"}))
    assert [r["metadata"]["namespace"] for r in of_kind(docs, "Role")] == ["staging"]
    pod = deployment(docs)["spec"]["template"]["spec"]
    assert {"name": "clusters", "secret": {"secretName": "kubeconfigs"}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "clusters", "mountPath": "/etc/release-bot-clusters", "readOnly": True} in mounts
    catalog["clusters"] = {"prod": {"in_cluster": True}}  # the bot's own cluster under another name
    docs = render(values(catalog=catalog))
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["prod", "staging"]
    del catalog["clusters"]
    with pytest.raises(helm_python.HelmRenderError, match=r'cluster "prod" is not in catalog\.clusters'):
        render(values(catalog=catalog))


def test_the_cluster_wide_watch_scope_adds_only_list_and_watch_of_the_cached_kinds() -> None:
    assert env(render(BASE))["RELEASE_BOT_WATCH_SCOPE"]["value"] == "namespace"
    assert of_kind(render(BASE), "ClusterRole") == []
    docs = render(values(bot={"watchScope": "cluster"}))
    assert env(docs)["RELEASE_BOT_WATCH_SCOPE"]["value"] == "cluster"
    role = one(docs, "ClusterRole")
    assert granted(role) == {
        ("apps", "deployments", ()): {"list", "watch"},
        ("", "pods", ()): {"list", "watch"},
        ("", "configmaps", ()): {"list", "watch"},
        ("", "services", ()): {"list", "watch"},
        ("", "resourcequotas", ()): {"list", "watch"},
        ("autoscaling", "horizontalpodautoscalers", ()): {"list", "watch"},
        ("policy", "poddisruptionbudgets", ()): {"list", "watch"},
    }
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    wanted = {
        (r.group, r.resource, r.verb)
        for r in access.needed([], lambda a: a, watch_scope="cluster")
        if r.namespace == ""
    }
    assert wanted == {(g, res, v) for (g, res, _), verbs in granted(role).items() for v in verbs}


def test_bluegreen_without_a_service_is_a_clear_error() -> None:
    catalog = catalog_for("devops")
    del catalog["apps"]["hexo"]["service"]
    with pytest.raises(helm_python.HelmRenderError, match="blue-green needs `service`"):
        render(values(catalog=catalog))


def test_no_wildcards_no_empty_names_and_nothing_cluster_scoped() -> None:
    mixed = catalog_for("devops", "web")
    mixed["apps"]["hexo1"]["strategies"] = ["rolling"]
    docs = render(values(catalog=mixed, namespaces=["devops", "web", "idle"]))
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    for role in of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"wildcard in {field}: {rule}"
            # an empty resourceNames list would grant every name
            assert "resourceNames" not in rule or rule["resourceNames"]
            assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "deletecollection"}
            assert not {r for r in rule["resources"] if "/" in r}, "no subresources (exec, scale, ...)"
            if "resourceNames" in rule:  # names cannot narrow create, nor list/watch of a whole namespace
                assert "create" not in rule["verbs"]
                assert not {"list", "watch"} & set(rule["verbs"]) or rule["resources"] == ["endpoints"]
            assert "secrets" not in rule["resources"]


def test_every_rule_says_why() -> None:
    text = render_files(BASE, namespace="bots")["release-bot/templates/rbac.yaml"]
    lines = text.splitlines()
    rule_lines = [i for i, line in enumerate(lines) if re.match(r"\s+- apiGroups:", line)]
    assert len(rule_lines) == len(one(render(BASE, namespace="bots"), "Role")["rules"]) == 15
    for i in rule_lines:
        assert lines[i - 1].strip().startswith("#"), f"rule without a comment: {lines[i]}"


def test_rbac_can_be_left_to_the_platform_team() -> None:
    docs = render(values(rbac={"create": False}, serviceAccount={"create": False, "name": "bot"}))
    assert of_kind(docs, "Role") == [] and of_kind(docs, "ServiceAccount") == []
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "bot"


# ---------------------------------------------------------------------------- monitoring


def monitoring_docs(**prometheus_rule: Any) -> list[Obj]:
    metrics = {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True, **prometheus_rule}}
    return render(values(metrics=metrics), namespace="bots")


def alerts(docs: list[Obj]) -> dict[str, Obj]:
    (group,) = one(docs, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_no_monitoring_objects_by_default(default_docs: list[Obj]) -> None:
    assert of_kind(default_docs, "ServiceMonitor") == [] and of_kind(default_docs, "PrometheusRule") == []


def test_service_monitor_scrapes_the_metrics_of_the_service() -> None:
    docs = monitoring_docs()
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["bots"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "selects the chart's Service"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"


def test_alerts_cover_stuck_releases_slack_kubernetes_and_readiness() -> None:
    rules = alerts(monitoring_docs(alertLabels={"team": "platform"}))
    assert set(rules) == {
        "ReleaseBotReleaseStuck",
        "ReleaseBotSlackErrors",
        "ReleaseBotKubernetesErrors",
        "ReleaseBotNotReady",
        "ReleaseBotDown",
    }
    for rule in rules.values():
        assert rule["labels"]["team"] == "platform" and rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "ReleaseBotNotReady" not in alerts(monitoring_docs(kubeStateMetrics=False))


def test_alert_thresholds_and_windows_come_from_values() -> None:
    rules = alerts(
        monitoring_docs(
            releaseStuckAfterSeconds=900,
            releaseLookbackSeconds=3600,
            slackErrorsPer10m=7,
            kubernetesErrorsPer10m=9,
        )
    )
    stuck = rules["ReleaseBotReleaseStuck"]["expr"]
    assert "[3600s] offset 900s" in stuck and "[4500s]" in stuck
    assert rules["ReleaseBotSlackErrors"]["expr"].rstrip().endswith("> 7")
    assert rules["ReleaseBotKubernetesErrors"]["expr"].rstrip().endswith("> 9")


def _series(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every selector in a PromQL expression."""
    return re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr)


def test_alerts_use_only_series_and_labels_the_bot_exports() -> None:
    """Every release_bot_* series an alert reads is one bot/metrics.py registers, with its labels."""
    exported: dict[str, set[str]] = {}
    for family in Metrics().registry.collect():
        suffixes = ("_total",) if family.type == "counter" else ("_bucket", "_count", "_sum")
        for suffix in suffixes:
            exported[family.name + suffix] = set()
    m = Metrics()
    m.audited("release", "started", strategy="rolling")
    m.slack_call("/api/chat.update", 500)
    m.kube_error("deployment ns/name", 403)
    for family in m.registry.collect():
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    target_labels = {"job", "namespace", "pod", "instance", "service", "endpoint", "container"}
    rules = alerts(monitoring_docs())
    used = 0
    for rule in rules.values():
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
        for name, matchers in _series(rule["expr"]):
            if not name.startswith("release_bot_"):
                continue
            used += 1
            assert name in exported, f"{rule['alert']}: {name} is not a series the bot exports"
            labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
            assert labels <= exported[name] | target_labels, f"{rule['alert']}: {labels - exported[name]}"
        for by in re.findall(r"by \(([^)]*)\)", rule["expr"]):
            for label in by.split(","):
                assert label.strip() in set().union(*exported.values()) | target_labels
    assert used >= 4


def test_alerts_select_this_releases_series() -> None:
    rules = alerts(monitoring_docs())
    for name in (
        "ReleaseBotReleaseStuck",
        "ReleaseBotSlackErrors",
        "ReleaseBotKubernetesErrors",
        "ReleaseBotDown",
    ):
        for _, matchers in _series(rules[name]["expr"]):
            assert 'job="release-bot"' in matchers and 'namespace="bots"' in matchers, rules[name]["expr"]
    custom = alerts(monitoring_docs(seriesSelector='service="rb",cluster="eu"'))
    assert all('service="rb",cluster="eu"' in m for _, m in _series(custom["ReleaseBotDown"]["expr"]))


# ---------------------------------------------------------------------------- extraObjects, helm test


def test_extra_objects_are_rendered_through_tpl() -> None:
    docs = render(
        values(
            extraObjects=[
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "{{ .Release.Name }}-extra"}},
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: as-text\n  namespace: {{ .Release.Namespace }}\n",
            ]
        ),
        namespace="bots",
    )
    names = {c["metadata"]["name"]: c for c in of_kind(docs, "ConfigMap")}
    assert "release-bot-extra" in names and names["as-text"]["metadata"]["namespace"] == "bots"


def test_helm_test_hook_asks_readyz_through_the_service() -> None:
    docs = render(values(), namespace="bots")
    (pod,) = [d for d in docs if is_hook(d)]
    assert pod["kind"] == "Pod" and pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    assert c["image"] == container(docs)["image"], "the bot's own image: no other image to pull"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    service = one(docs, "Service")
    url = {e["name"]: e["value"] for e in c["env"]}["READYZ_URL"]
    assert (
        url == f"http://{service['metadata']['name']}.bots.svc:{service['spec']['ports'][0]['port']}/readyz"
    )
    assert [d for d in render(values(tests={"enabled": False})) if is_hook(d)] == []


def test_helm_test_script_fails_unless_readyz_answers_200() -> None:
    """The hook's own command, run here against a closed port: it must exit non-zero (the ready case
    runs against a real bot in tests/integration/test_helm_install.py)."""
    (pod,) = [d for d in render(values()) if is_hook(d)]
    (c,) = pod["spec"]["containers"]
    assert c["command"][:2] == ["python", "-c"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-c", c["command"][2]],
        env={"READYZ_URL": f"http://127.0.0.1:{port}/readyz"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "no answer" in result.stderr


# ---------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"replicaCount": 3, "existingSecret": "s", "ingress": {"enabled": True, "hosts": ["a.example"]}},
        {
            **SOCKET_VALUES,
            "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        },
    ],
)
def test_helm_lint_is_clean(extra: Obj) -> None:
    report = helm_python.lint(CHART, values=values(**extra), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [] and report["errors"] == [], report


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"replicaConut": 2}, "replicaConut"),
        ({"bot": {"drainSeconds": -1}}, "drainSeconds"),
        ({"bot": {"port": 80}}, "port"),
        ({"bot": {"auditLog": "/var/log/audit.log"}}, "auditLog"),
        ({"namespaces": ["Not_A_Namespace"]}, "namespaces"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"ingress": {"enabled": "yes"}}, "enabled"),
        ({"catalog": {"apps": {"hexo": {"namespace": "devops"}}}}, "deployment"),
        (
            {"catalog": {"apps": {"hexo": {**catalog_for("d")["apps"]["hexo"], "strategies": ["big-bang"]}}}},
            "strategies",
        ),
        ({"catalog": {"apps": {}, "users": []}}, "users"),
        ({"podDisruptionBudget": {"apiVersion": "policy/v2"}}, "apiVersion"),
        ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
        ({"metrics": {"prometheusRule": {"releaseStuckAfterSeconds": "1h"}}}, "releaseStuckAfterSeconds"),
        ({"metrics": {"grafana": {}}}, "grafana"),
        ({"extraObjects": [3]}, "extraObjects"),
        ({"tests": {"enabled": "yes"}}, "enabled"),
    ],
)
def test_schema_rejects_bad_values(bad: Obj, message: str) -> None:
    with helm_python.Chart.load(CHART) as chart:
        with pytest.raises(helm_python.HelmValuesError, match=message):
            chart.validate_schema(values(**bad))
        with pytest.raises(helm_python.HelmValuesError):
            chart.render(values(**bad), name="release-bot", namespace="bots")


def test_schema_accepts_the_defaults_and_a_full_example() -> None:
    with helm_python.Chart.load(CHART) as chart:
        chart.validate_schema(BASE)
        chart.validate_schema(
            values(
                replicaCount=3,
                image={"repository": "registry.example.org/release-bot", "tag": "1.2.3"},
                namespaces=["devops"],
                bot={"drainSeconds": 45, "auditLog": "/tmp/audit.jsonl", "logLevel": "DEBUG"},
                ingress={
                    "enabled": True,
                    "className": "nginx",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                    "hosts": ["bot.example.org"],
                    "tls": [{"secretName": "bot-tls", "hosts": ["bot.example.org"]}],
                },
                extraEnv=[{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
                metrics={
                    "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
                    "prometheusRule": {
                        "enabled": True,
                        "labels": {"release": "prom"},
                        "kubeStateMetrics": False,
                    },
                },
                extraObjects=[
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
                    "kind: X",
                ],
            )
        )
