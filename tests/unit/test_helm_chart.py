"""The Helm chart (helm/release-bot), rendered offline with helm-python-sdk: security settings, probes,
grace period, least-privilege RBAC, Slack secret handling, lint, and the values schema."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml

try:
    import helm_python
except ImportError as e:  # a missing prerequisite fails, with the command that fixes it
    raise ImportError("helm-python-sdk is not installed: run `.venv/bin/pip install helm-python-sdk`") from e

from tests.fixtures.helm import CHART, SLACK_VALUES, Obj, catalog_for, of_kind, one, render, render_notes

# What bot/kube/client.py calls, per (API group, resource): the Role must grant exactly this.
NEEDED: dict[tuple[str, str], set[str]] = {
    ("apps", "deployments"): {"get", "list", "watch", "patch", "create", "delete"},
    ("apps", "replicasets"): {"list"},
    ("", "pods"): {"list", "watch"},
    ("", "services"): {"get", "patch"},
    ("", "endpoints"): {"list", "watch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "update"},
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},
    ("", "events"): {"create"},
}

BASE: Obj = {**SLACK_VALUES, "catalog": catalog_for("devops")}


def values(**overrides: Any) -> Obj:
    return {**BASE, **overrides}


def deployment(docs: list[Obj]) -> Obj:
    return one(docs, "Deployment")


def container(docs: list[Obj]) -> Obj:
    containers = deployment(docs)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    c: Obj = containers[0]
    return c


def env(docs: list[Obj]) -> dict[str, Obj]:
    return {e["name"]: e for e in container(docs)["env"]}


def granted(role: Obj) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


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
    for key in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert e[key]["valueFrom"]["secretKeyRef"] == {"name": "release-bot", "key": key}
    assert e["SLACK_APP_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert deployment(default_docs)["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


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


def test_three_replicas_with_ingress_and_existing_secret() -> None:
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
    assert e["SLACK_BOT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "slack-from-vault"
    assert "checksum/secret" not in deployment(docs)["spec"]["template"]["metadata"]["annotations"]
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert rule["host"] == "bot.example.org"
    assert path["path"] == "/slack/events", "only Slack's Request URL is exposed"
    assert path["backend"]["service"] == {"name": "release-bot", "port": {"number": 80}}


def test_created_secret_holds_the_slack_tokens(default_docs: list[Obj]) -> None:
    import base64

    secret = one(default_docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": "test-signing-secret"}
    with_app = one(render(values(slack={**SLACK_VALUES["slack"], "appToken": "xapp-1"})), "Secret")
    assert "SLACK_APP_TOKEN" in with_app["data"]


def test_missing_slack_token_is_a_clear_error() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"slack\.botToken is required"):
        render({"catalog": catalog_for("devops")})


def test_every_object_is_namespaced_and_labelled(default_docs: list[Obj]) -> None:
    for doc in default_docs:
        meta = doc["metadata"]
        assert meta.get("namespace"), f"{doc['kind']} {meta['name']} has no namespace"
        assert meta["labels"]["app.kubernetes.io/instance"] == "release-bot"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


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


def test_empty_catalog_is_a_clear_error() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"catalog\.apps is empty"):
        render({**SLACK_VALUES})


def test_role_grants_exactly_what_the_bot_calls(default_docs: list[Obj]) -> None:
    role = one(default_docs, "Role")
    assert granted(role) == NEEDED


def test_no_wildcards_and_nothing_cluster_scoped() -> None:
    docs = render(values(catalog=catalog_for("devops", "web")))
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    for role in of_kind(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"wildcard in {field}: {rule}"
            assert "resourceNames" not in rule or rule["resourceNames"]
            assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "deletecollection"}
            assert not {r for r in rule["resources"] if "/" in r}, "no subresources (exec, scale, ...)"


def test_every_rule_says_why() -> None:
    with helm_python.Chart.load(CHART) as chart:
        text = chart.render(BASE, name="release-bot", namespace="bots")["release-bot/templates/rbac.yaml"]
    lines = text.splitlines()
    rule_lines = [i for i, line in enumerate(lines) if re.match(r"\s+- apiGroups:", line)]
    assert len(rule_lines) == 9
    for i in rule_lines:
        assert lines[i - 1].strip().startswith("#"), f"rule without a comment: {lines[i]}"


def test_rbac_can_be_left_to_the_platform_team() -> None:
    docs = render(values(rbac={"create": False}, serviceAccount={"create": False, "name": "bot"}))
    assert of_kind(docs, "Role") == [] and of_kind(docs, "ServiceAccount") == []
    assert deployment(docs)["spec"]["template"]["spec"]["serviceAccountName"] == "bot"


def test_notes_give_the_request_url() -> None:
    notes = render_notes(values(ingress={"enabled": True, "hosts": ["bot.example.org"]}))
    assert "https://bot.example.org/slack/events" in notes


# ---------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize(
    "extra",
    [{}, {"replicaCount": 3, "existingSecret": "s", "ingress": {"enabled": True, "hosts": ["a.example"]}}],
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
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"ingress": {"enabled": "yes"}}, "enabled"),
        ({"catalog": {"apps": {"hexo": {"namespace": "devops"}}}}, "deployment"),
        ({"catalog": {"apps": {}, "users": []}}, "users"),
        ({"podDisruptionBudget": {"apiVersion": "policy/v2"}}, "apiVersion"),
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
            )
        )


def test_socket_mode_runs_serve_with_the_flag() -> None:
    values = {
        **SLACK_VALUES,
        "catalog": catalog_for("devops"),
        "slack": {**SLACK_VALUES["slack"], "socketMode": True, "appToken": "xapp-1-A-1-x"},
    }
    container = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "--socket-mode"]
    default = one(render({**SLACK_VALUES, "catalog": catalog_for("devops")}), "Deployment")
    assert default["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve"]
