"""The chart, both modes, on a REAL API server, and the real bot running as the chart installs it.

- Rendered in HTTP mode (the chart's Secret, an Ingress) and in Socket Mode (an existingSecret), with
  the ServiceMonitor, the PrometheusRule, extraObjects and the policy/v1beta1 PodDisruptionBudget this
  Kubernetes 1.20 control plane serves: every manifest is applied with server-side apply (which
  refuses any field the kind's schema does not declare, built-in kinds and CRDs alike), the API
  server keeps every rendered field, applying it again changes nothing the chart owns (no drift for
  an apply-based GitOps controller), the `helm test` pod passes a server-side dry run, and the
  chart's Deployments roll out.
- Then `release-bot serve` runs with exactly what the chart gives the pod: the container's args, its
  environment resolved as the kubelet resolves it (Secret keys read back from the API server, an
  absent optional key left out, the pod name), the catalog as the chart's ConfigMap holds it, and
  the chart's ServiceAccount token; only the listen address (loopback) and the port are this host's.
  It releases hexo through the Slack simulator (HTTP mode: a rolling release; Socket Mode with an
  existingSecret that has no signing secret: a canary and Promote, with the Role narrowed to the
  app's Deployment by name), never meets a 403, and the `helm test` pod's own command passes
  against it, and fails once it is gone.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox import hexo as hexo_app
from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import BotProcess, free_port, wait_card
from tests.fixtures.cluster import rollout_complete, wait_for_deployment
from tests.fixtures.helm import (
    FIELD_MANAGER,
    IMAGE_VALUES,
    PROMETHEUS_OPERATOR_CRDS,
    Obj,
    catalog_for,
    container_env,
    dropped_fields,
    install_crds,
    is_hook,
    of_kind,
    one,
    read_back,
    render,
    server_side_apply,
    service_account_kubeconfig,
    service_account_token,
)

pytestmark = pytest.mark.integration

# The control plane is Kubernetes 1.20: no policy/v1 PodDisruptionBudget yet (Helm would pick
# policy/v1beta1 from the cluster's API versions; rendering offline has to be told).
OLD_CLUSTER: Obj = {"podDisruptionBudget": {"enabled": True, "apiVersion": "policy/v1beta1"}}
MONITORING: Obj = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prometheus"},
            "alertLabels": {"team": "p"},
        },
    }
}
# Quick leases and card updates, as the other integration tests run the bot.
QUICK_BOT: Obj = {
    "bot": {
        "port": 3000,
        "drainSeconds": 5,
        "leaseSeconds": 3,
        "cardIntervalSeconds": 0.2,
        "logLevel": "INFO",
    }
}

NamespaceFactory = Callable[[str], Awaitable[str]]


@pytest_asyncio.fixture(loop_scope="session")
async def make_namespace(kube_admin: client.ApiClient, namespace: str) -> AsyncIterator[NamespaceFactory]:
    """Creates more namespaces next to the test's (``<namespace>-<suffix>``), deleted at the end."""
    core = client.CoreV1Api(kube_admin)
    made: list[str] = []

    async def make(suffix: str) -> str:
        name = f"{namespace}-{suffix}"
        manifest: Any = {"metadata": {"name": name, "labels": {"release-bot.test": "true"}}}
        await core.create_namespace(manifest)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            try:
                await core.delete_namespace(name)
            except ApiException as e:
                if e.status != 404:
                    raise


def installed(docs: list[Obj]) -> list[Obj]:
    """What `helm install` creates (hooks run later, with `helm test`), in an order the API server
    accepts (the ServiceAccount and the ConfigMap before the Deployment that uses them)."""
    order = {"ServiceAccount": 0, "Secret": 1, "ConfigMap": 2, "Role": 3, "RoleBinding": 4}
    return sorted((d for d in docs if not is_hook(d)), key=lambda d: order.get(d["kind"], 9))


async def secret(api: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    await server_side_apply(api, [body])


# ---------------------------------------------------------------------------- the manifests


def key(doc: Obj) -> str:
    return f"{doc['kind']}/{doc['metadata']['namespace']}/{doc['metadata']['name']}"


def owned(doc: Obj) -> tuple[Any, ...]:
    """What a server-side apply by the tests' field manager last set on ``doc``, and when."""
    meta = doc["metadata"]
    entries = [
        (m["operation"], m.get("time"), json.dumps(m.get("fieldsV1"), sort_keys=True))
        for m in meta.get("managedFields", [])
        if m["manager"] == FIELD_MANAGER
    ]
    return (meta.get("generation"), tuple(entries))


async def test_both_modes_apply_server_side_and_the_api_server_keeps_every_field(
    kube_admin: client.ApiClient, namespace: str, make_namespace: NamespaceFactory
) -> None:
    await install_crds(kube_admin, PROMETHEUS_OPERATOR_CRDS)
    http_ns, socket_ns = await make_namespace("http"), await make_namespace("sock")
    extra = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "{{ .Release.Name }}-egress", "namespace": "{{ .Release.Namespace }}"},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/instance": "{{ .Release.Name }}"}},
                "policyTypes": ["Egress"],
                "egress": [{}],
            },
        }
    ]
    http = render(
        {
            **IMAGE_VALUES,
            **OLD_CLUSTER,
            **MONITORING,
            "slack": {"botToken": "xoxb-1", "signingSecret": "s"},
            "catalog": catalog_for(namespace),
            "ingress": {"enabled": True, "className": "nginx", "hosts": ["bot.example.org"]},
            "extraObjects": extra,
        },
        name="rb-http",
        namespace=http_ns,
    )
    await secret(
        kube_admin, socket_ns, "slack-creds", {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1-A-1-x"}
    )
    socket = render(
        {
            **IMAGE_VALUES,
            **OLD_CLUSTER,
            **MONITORING,
            "slack": {"socketMode": True},
            "existingSecret": "slack-creds",
            "catalog": catalog_for(namespace, strategies=("rolling", "canary")),
            "extraObjects": extra,
        },
        name="rb-sock",
        namespace=socket_ns,
    )
    for docs in (http, socket):
        kinds = {d["kind"] for d in installed(docs)}
        assert {"ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget", "Role"} <= kinds
    assert one(http, "Secret") and of_kind(socket, "Secret") == [] and one(http, "Ingress")

    for docs in (http, socket):
        wanted = installed(docs)
        applied = await server_side_apply(kube_admin, wanted)
        dropped = {
            f"{d['kind']}/{d['metadata']['name']}": dropped_fields(d, live)
            for d, live in zip(wanted, applied, strict=True)
        }
        assert {k: v for k, v in dropped.items() if v} == {}, "the API server did not keep these fields"

        # The `helm test` pod is valid (server-side dry run: admitted, not created).
        (hook,) = [d for d in docs if is_hook(d)]
        (dry,) = await server_side_apply(kube_admin, [hook], dry_run=True)
        assert dropped_fields(hook, dry) == []
        with pytest.raises(ApiException) as absent:
            await client.CoreV1Api(kube_admin).read_namespaced_pod(
                hook["metadata"]["name"], hook["metadata"]["namespace"]
            )
        assert absent.value.status == 404

        dep = one(docs, "Deployment")
        await wait_for_deployment(
            kube_admin, dep["metadata"]["namespace"], dep["metadata"]["name"], rollout_complete, timeout=90
        )

        # Applying the same manifests again (seconds later) changes nothing the chart owns: the
        # field manager's entry keeps its time and fields, the spec its generation. An apply-based
        # GitOps controller sees no drift in the chart's own objects.
        before = {key(d): owned(d) for d in await read_back(kube_admin, wanted)}
        after = {key(d): owned(d) for d in await server_side_apply(kube_admin, wanted)}
        assert after == before

    # Both releases' Roles sit side by side in the released namespace, each narrowed to the catalog.
    roles = {r["metadata"]["name"]: r for r in await read_back(kube_admin, of_kind(http + socket, "Role"))}
    assert set(roles) == {"rb-http-release-bot", "rb-sock-release-bot"}
    named = [r for r in roles["rb-sock-release-bot"]["rules"] if r.get("resourceNames") == ["hexo"]]
    assert [r["verbs"] for r in named] == [["get", "patch"]]
    stored_rule = (await read_back(kube_admin, of_kind(http, "PrometheusRule")))[0]
    assert {r["alert"] for r in stored_rule["spec"]["groups"][0]["rules"]} >= {
        "ReleaseBotReleaseStuck",
        "ReleaseBotSlackErrors",
        "ReleaseBotKubernetesErrors",
        "ReleaseBotNotReady",
    }


# ---------------------------------------------------------------------------- the bot, as installed


class Installed:
    """The chart installed into its own namespace, and the bot process run the way its pod would."""

    def __init__(
        self, cluster: ClusterInfo, api: client.ApiClient, namespace: str, docs: list[Obj], tmp: Path
    ) -> None:
        self.cluster, self.api, self.namespace, self.docs, self.tmp = cluster, api, namespace, docs, tmp
        self.bot: BotProcess | None = None

    @property
    def container(self) -> Obj:
        c: Obj = one(self.docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return c

    async def apply(self) -> None:
        await server_side_apply(self.api, installed(self.docs))

    async def start_bot(self) -> BotProcess:
        """`release-bot serve` with the pod's args, environment, catalog and ServiceAccount."""
        dep = one(self.docs, "Deployment")
        pod_spec = dep["spec"]["template"]["spec"]
        token = await service_account_token(self.api, self.namespace, pod_spec["serviceAccountName"])
        kubeconfig = await service_account_kubeconfig(
            self.cluster.admin_kubeconfig, self.cluster.api_url, token, self.tmp / "sa.kubeconfig"
        )
        # The catalog as the API server holds the chart's ConfigMap, where the pod mounts it.
        (volume,) = [v for v in pod_spec["volumes"] if "configMap" in v]
        cm = await client.CoreV1Api(self.api).read_namespaced_config_map(
            volume["configMap"]["name"], self.namespace
        )
        catalog = self.tmp / "catalog.yaml"
        catalog.write_text(cm.data["catalog.yaml"], encoding="utf-8")
        (mount,) = [m for m in self.container["volumeMounts"] if m["name"] == volume["name"]]
        chart_env = await container_env(
            self.api, self.namespace, self.container, pod_name=f"{dep['metadata']['name']}-0"
        )
        assert chart_env["RELEASE_BOT_CATALOG"] == f"{mount['mountPath']}/catalog.yaml"
        port = free_port()
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.lower().endswith("_proxy") and not k.startswith(("SLACK_", "RELEASE_BOT_", "KUBECONFIG"))
        }
        env = {
            **inherited,
            **chart_env,
            # what the pod gets from the kubelet rather than from its env: the mounted catalog, the
            # in-cluster ServiceAccount token, its own network
            "RELEASE_BOT_CATALOG": str(catalog),
            "KUBECONFIG": str(kubeconfig),
            "RELEASE_BOT_PORT": str(port),
        }
        args = self.container["args"]
        assert args[0] == "serve"
        self.bot = BotProcess(env=env, port=port, log_path=self.tmp / "bot.log", args=args[1:])
        self.bot.spawn()
        await self.bot.wait_ready()
        return self.bot

    def helm_test(self) -> subprocess.CompletedProcess[str]:
        """The `helm test` pod's own command and environment, pointed at the bot's port here."""
        assert self.bot is not None
        (hook,) = [d for d in self.docs if is_hook(d)]
        (c,) = hook["spec"]["containers"]
        assert c["command"][0] == "python"
        hook_env = {e["name"]: e["value"] for e in c["env"]}
        assert hook_env["READYZ_URL"].endswith("/readyz")
        url = f"http://127.0.0.1:{self.bot.port}/readyz"
        return subprocess.run(
            [sys.executable, *c["command"][1:]],
            env={**hook_env, "READYZ_URL": url},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def assert_never_forbidden(self) -> None:
        assert self.bot is not None
        log = self.bot.log_path.read_text(errors="replace")
        assert "Forbidden" not in log and "(403)" not in log, self.bot.log_tail()


@pytest_asyncio.fixture(loop_scope="session")
async def chart_install(
    control_plane: ClusterInfo, kube_admin: client.ApiClient, make_namespace: NamespaceFactory, tmp_path: Path
) -> AsyncIterator[Callable[[Obj], Awaitable[Installed]]]:
    made: list[Installed] = []

    async def install(values: Obj) -> Installed:
        """Render the chart for its own new namespace; ``await .apply()`` installs it."""
        bot_ns = await make_namespace(f"bot{len(made)}")
        docs = render(
            {**IMAGE_VALUES, **OLD_CLUSTER, **QUICK_BOT, **values}, name="release-bot", namespace=bot_ns
        )
        inst = Installed(control_plane, kube_admin, bot_ns, docs, tmp_path)
        made.append(inst)
        return inst

    try:
        yield install
    finally:
        for inst in made:
            if inst.bot is not None:
                await inst.bot.stop()


async def hexo_image(api: client.ApiClient, namespace: str) -> str:
    dep = await client.AppsV1Api(api).read_namespaced_deployment("hexo", namespace)
    image: str = dep.spec.template.spec.containers[0].image
    return image


async def test_http_mode_the_bot_releases_as_the_chart_installs_it(
    chart_install: Callable[[Obj], Awaitable[Installed]],
    kube_admin: client.ApiClient,
    hexo: str,
    slack_sim: SlackSimulator,
) -> None:
    inst = await chart_install(
        {
            "slack": {
                "botToken": slack_sim.bot_token,
                "signingSecret": slack_sim.signing_secret,
                "apiUrl": slack_sim.api_url,
            },
            "catalog": hexo_app.catalog(hexo, slack_sim.users),
        }
    )
    await inst.apply()
    bot = await inst.start_bot()
    assert "SLACK_APP_TOKEN" not in bot.env and bot.args == []
    slack_sim.bot_url = bot.url

    player = slack_sim.player()
    try:
        assert (await player.command("alice", "hexo v2.0")).status == 200
    finally:
        await player.close()
    await wait_card(slack_sim, "Succeeded", timeout=90)
    await wait_for_deployment(kube_admin, hexo, "hexo", rollout_complete, timeout=60)
    assert await hexo_image(kube_admin, hexo) == f"{hexo_app.IMAGE_REPO}:v2.0"
    inst.assert_never_forbidden()
    # docs/gitops.md: the bot's image patch is recorded under its own field manager, `release-bot`,
    # as an Update (what Argo CD's managedFieldsManagers or a field-ownership check sees).
    dep = await client.AppsV1Api(kube_admin).read_namespaced_deployment("hexo", hexo)
    image_managers = {
        (m.manager, m.operation)
        for m in dep.metadata.managed_fields or []
        if '"f:image"' in json.dumps(m.fields_v1)
    }
    assert image_managers == {("release-bot", "Update")}

    passed = inst.helm_test()
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout.strip().endswith(": 200")
    await bot.stop()
    failed = inst.helm_test()
    assert failed.returncode != 0 and "no answer" in failed.stderr


async def test_socket_mode_with_an_existing_secret_and_no_signing_secret(
    chart_install: Callable[[Obj], Awaitable[Installed]],
    kube_admin: client.ApiClient,
    hexo: str,
    slack_sim: SlackSimulator,
    make_namespace: NamespaceFactory,
) -> None:
    catalog = hexo_app.catalog(hexo, slack_sim.users, extra={"strategies": ["rolling", "canary"]})
    values: Obj = {
        "slack": {"socketMode": True, "apiUrl": slack_sim.api_url},
        "existingSecret": "slack-from-vault",
        "catalog": catalog,
    }
    inst = await chart_install(values)
    # The Secret exists before the chart's pods start, as External Secrets or sealed-secrets would
    # make it: the bot token and the app-level token, no signing secret.
    await secret(
        kube_admin,
        inst.namespace,
        "slack-from-vault",
        {"SLACK_BOT_TOKEN": slack_sim.bot_token, "SLACK_APP_TOKEN": slack_sim.app_token},
    )
    await inst.apply()
    role = one(inst.docs, "Role")
    deployment_rules = [r for r in role["rules"] if r["resources"] == ["deployments"]]
    assert [(r["verbs"], r.get("resourceNames")) for r in deployment_rules] == [
        (["list", "watch"], None),
        (["get", "patch"], ["hexo"]),
    ], "no blue-green: only the app's Deployment, never created or deleted"

    opened = slack_sim.socket_mode.opened
    bot = await inst.start_bot()
    assert bot.args == ["--socket-mode"]
    assert "SLACK_SIGNING_SECRET" not in bot.env, "optional and absent: left out, as the kubelet does"
    assert bot.env["SLACK_APP_TOKEN"] == slack_sim.app_token
    await slack_sim.wait_for(lambda: slack_sim.socket_mode.opened > opened, timeout=30)
    assert slack_sim.bot_url is None, "nothing reaches it over HTTP"

    player = slack_sim.player(transport="socket")
    try:
        assert (await player.command("alice", "hexo v2.0 --canary")).status == 200
        card = await wait_card(slack_sim, "Promote", timeout=90)
        assert await player.click("bob", card, "release:promote") == 200
    finally:
        await player.close()
    await wait_card(slack_sim, "Succeeded", timeout=90)
    await wait_for_deployment(kube_admin, hexo, "hexo", rollout_complete, timeout=60)
    assert await hexo_image(kube_admin, hexo) == f"{hexo_app.IMAGE_REPO}:v2.0"
    inst.assert_never_forbidden()
    passed = inst.helm_test()
    assert passed.returncode == 0, passed.stderr
