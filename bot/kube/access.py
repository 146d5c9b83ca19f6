"""Whether the bot can work with its cluster: the kubeconfig, the rights, and the API server's answer.

- `connect`: `Kube.connect`, with every way a kubeconfig can be unusable (missing, unreadable, not
  YAML, no current context, ...) turned into one `ConfigError` line instead of a traceback.
- `needed`: the rights the bot's own calls need for the catalog's apps, namespace by namespace, as
  the Helm chart's Role grants them (helm/release-bot/templates/rbac.yaml, docs/deploy.md section 5):
  named where the Role names objects (an app's Deployment, Service, record and lease), for any
  object where it cannot (lists, watches, creates, blue-green colours).
  `needed_by` says which apps need each of them.
- `missing`: which of those rights the kubeconfig's identity lacks. One SelfSubjectRulesReview per
  namespace shows the rules the identity holds there, which grant most rights at once; every right
  they do not show (and every cluster-wide one) is asked with a SelfSubjectAccessReview of its own,
  the API server's authoritative answer, so a right is only ever called missing by it (any
  authenticated identity may ask both about itself).
- `probe`: one cheap request (GET /version) through the bot's own client, so `Kube.unreachable_since`
  follows the API server even while nothing else is being asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.config.config_exception import ConfigException

from bot.catalog import App, Catalog
from bot.errors import ConfigError
from bot.kube.client import IN_CLUSTER_TOKEN, Kube, KubeError, KubeUnavailable, backoff
from commands.intents import Strategy

REVIEW_CONCURRENCY = 8
START_DEADLINE_S = 30.0  # how long start-up waits for an API server that cannot be reached


@dataclass(frozen=True, order=True)
class Right:
    """One verb on one kind of object in one namespace; `name` "" means any object of that kind."""

    namespace: str
    group: str
    resource: str
    verb: str
    name: str = ""

    def describe(self) -> str:
        """As `kubectl auth can-i` takes it: "get deployments.apps/hexo"."""
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{self.verb} {kind}" + (f"/{self.name}" if self.name else "")


WATCHED = (  # the shared caches' kinds
    ("apps", "deployments"),
    ("", "pods"),
    ("", "configmaps"),
    ("", "services"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("", "resourcequotas"),
    ("policy", "poddisruptionbudgets"),
)


def needed(
    apps: Iterable[App], record_name: Callable[[str], str], watch_scope: str = "namespace"
) -> list[Right]:
    """Every right the bot needs for `apps`; `record_name(app)` names an app's record ConfigMap and
    driver Lease. With the cluster-wide watch scope, the caches' kinds are also listed and watched
    across the cluster (the chart's ClusterRole)."""
    rights: set[Right] = set()
    if watch_scope == "cluster":
        rights.update(
            Right("", group, resource, verb) for group, resource in WATCHED for verb in ("list", "watch")
        )
    for app in apps:
        ns = app.namespace
        record = record_name(app.name)
        bluegreen = Strategy.BLUEGREEN in app.strategies

        def add(group: str, resource: str, verbs: Iterable[str], name: str = "", ns: str = ns) -> None:
            rights.update(Right(ns, group, resource, verb, name) for verb in verbs)

        add("apps", "deployments", ("list", "watch"))  # the shared Deployment cache
        if bluegreen:  # the colours the bot creates and retires: any Deployment of the namespace
            add("apps", "deployments", ("get", "patch", "create", "delete"))
        else:
            for name in (app.deployment, *(w.name for w in app.followers)):
                add("apps", "deployments", ("get", "patch"), name)
        add("apps", "replicasets", ("list",))  # revisions, for history and rollback
        add("", "pods", ("list", "watch"))  # the health gate
        if bluegreen and app.service:
            add("", "services", ("get", "patch"), app.service)  # the traffic switch
            add("", "services", ("list", "watch"))  # the live colour, read from the shared cache
            add("", "endpoints", ("list", "watch"), app.service)
        add("", "configmaps", ("list", "watch", "create"))  # release records
        add("", "configmaps", ("get", "update"), record)
        add("coordination.k8s.io", "leases", ("create",))  # driver leases
        add("coordination.k8s.io", "leases", ("get", "update"), record)
        add("", "events", ("create",))  # the audit trail on the Deployment
        # the pre-flight plan's warnings, from the shared caches; a canary or blue-green holds the
        # app's autoscaler (names are not in the catalog)
        add("autoscaling", "horizontalpodautoscalers", ("list", "watch", "patch"))
        add("", "resourcequotas", ("list", "watch"))
        add("policy", "poddisruptionbudgets", ("list", "watch"))
    return sorted(rights)


def needed_by(apps: Iterable[App], record_name: Callable[[str], str]) -> dict[Right, list[str]]:
    """`needed`, with the names of the apps that need each right (sorted, as are the rights)."""
    by_right: dict[Right, list[str]] = {}
    for app in sorted(apps, key=lambda a: a.name):
        for right in needed([app], record_name):
            by_right.setdefault(right, []).append(app.name)
    return dict(sorted(by_right.items()))


async def connect(
    kubeconfig: Path | None,
    *,
    context: str | None = None,
    in_cluster: bool = False,
    name: str = "default",
) -> Kube:
    """The bot's client for `kubeconfig` (None: in-cluster config, else ~/.kube/config) and its
    `context` (None: its current one), or a ConfigError naming what is wrong with it."""
    default_file = Path.home() / ".kube" / "config"
    if in_cluster or (kubeconfig is None and context is None and IN_CLUSTER_TOKEN.exists()):
        where = "in-cluster config"
        if not IN_CLUSTER_TOKEN.exists():
            raise ConfigError("in-cluster config: no ServiceAccount token here (not running in a pod?)")
    elif kubeconfig is not None:
        where = f"kubeconfig {kubeconfig}"
        if not kubeconfig.exists():  # noqa: ASYNC240 - once, at start-up
            raise ConfigError(f"kubeconfig {kubeconfig}: no such file (check KUBECONFIG)")
        if not kubeconfig.is_file():  # noqa: ASYNC240 - once, at start-up
            raise ConfigError(f"kubeconfig {kubeconfig}: not a file (check KUBECONFIG)")
    else:
        where = "kubeconfig ~/.kube/config"
        if not default_file.exists():
            raise ConfigError(
                "no Kubernetes configuration: set KUBECONFIG, or run the bot in a pod with a ServiceAccount"
            )
    if context is not None:
        where += f" (context {context})"
    try:
        return await Kube.connect(kubeconfig, context=context, in_cluster=in_cluster, name=name)
    except ConfigException as e:
        raise ConfigError(f"{where}: {_config_problem(str(e))}") from None
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read it ({e.strerror or e})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ConfigError(f"{where}: unusable ({type(e).__name__}: {e})") from None


async def connect_clusters(
    catalog: Catalog, kubeconfig: Path | None, names: Iterable[str]
) -> dict[str, Kube]:
    """A client for each cluster `names` names: `default` (unless the catalog's `clusters:` names it)
    is the process's own `kubeconfig`; a cluster with a `context` but no `kubeconfig` uses that
    context of the process's own. ConfigError, naming the cluster, when one cannot be configured
    (the clients made so far are closed)."""
    made: dict[str, Kube] = {}
    try:
        for name in names:
            ref = catalog.clusters.get(name)
            try:
                if ref is None:
                    made[name] = await connect(kubeconfig, name=name)
                else:
                    made[name] = await connect(
                        Path(ref.kubeconfig) if ref.kubeconfig else kubeconfig,
                        context=ref.context,
                        in_cluster=ref.in_cluster,
                        name=name,
                    )
            except ConfigError as e:
                if len(catalog.cluster_names()) == 1 and ref is None:
                    raise
                raise ConfigError(f"cluster {name}: {e}") from None
    except BaseException:
        for kube in made.values():
            await kube.close()
        raise
    return made


def _config_problem(message: str) -> str:
    """kubernetes_asyncio's ConfigException text, without its "Invalid kube-config file." prefix."""
    text = message.removeprefix("Invalid kube-config file.").strip()
    return text or message


async def allowed(kube: Kube, right: Right) -> bool:
    """Whether the kubeconfig's identity has `right` (one SelfSubjectAccessReview)."""
    attributes = {
        "namespace": right.namespace,
        "group": right.group,
        "resource": right.resource,
        "verb": right.verb,
    }
    if right.name:
        attributes["name"] = right.name
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    api = client.AuthorizationV1Api(kube.api)
    answer = await kube.call("selfsubjectaccessreview", api.create_self_subject_access_review, body)
    return bool((answer.get("status") or {}).get("allowed"))


async def rules(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    """The resource rules a SelfSubjectRulesReview shows the identity holding in `namespace` (none
    when the API server will not say: the rights are then asked one by one)."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    api = client.AuthorizationV1Api(kube.api)
    try:
        answer = await kube.call("selfsubjectrulesreview", api.create_self_subject_rules_review, body)
    except KubeError as e:
        if e.status in (403, 404):
            return []
        raise
    return list((answer.get("status") or {}).get("resourceRules") or [])


def shown(held: Iterable[dict[str, Any]], right: Right) -> bool:
    """Whether one of the rules `held` (a SelfSubjectRulesReview's resourceRules) grants `right`, by
    RBAC's rules: "*" matches any verb, group or resource; a rule naming objects grants only those."""

    def has(values: Any, value: str) -> bool:
        return isinstance(values, list) and ("*" in values or value in values)

    return any(
        has(rule.get("verbs"), right.verb)
        and has(rule.get("apiGroups"), right.group)
        and has(rule.get("resources"), right.resource)
        and (not rule.get("resourceNames") or (bool(right.name) and right.name in rule["resourceNames"]))
        for rule in held
    )


async def missing(kube: Kube, rights: Iterable[Right], deadline: float = START_DEADLINE_S) -> list[Right]:
    """The rights the identity lacks: those a namespace's rules review shows are held; each other one
    is asked (SelfSubjectAccessReview). An API server that cannot be reached is tried again until
    `deadline` seconds have passed; then, and for any other failure (bad credentials), ConfigError."""
    wanted = list(rights)
    gate = asyncio.Semaphore(REVIEW_CONCURRENCY)

    async def held(namespace: str) -> tuple[str, list[dict[str, Any]]]:
        async with gate:
            return namespace, await rules(kube, namespace)

    async def one(right: Right) -> bool:
        async with gate:
            return await allowed(kube, right)

    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    attempt = 0
    while True:
        try:
            namespaces = sorted({r.namespace for r in wanted if r.namespace})
            by_namespace = dict(await asyncio.gather(*(held(ns) for ns in namespaces)))
            asked = [r for r in wanted if not (r.namespace and shown(by_namespace[r.namespace], r))]
            answers = await asyncio.gather(*(one(r) for r in asked))
            return [r for r, ok in zip(asked, answers, strict=True) if not ok]
        except KubeUnavailable as e:
            if loop.time() >= give_up:
                raise ConfigError(
                    f"cannot reach the Kubernetes API server at {kube.api.configuration.host}: {e}"
                ) from None
            await asyncio.sleep(backoff(attempt))
            attempt += 1
        except KubeError as e:
            if e.status == 401:
                raise ConfigError(
                    f"the Kubernetes API server at {kube.api.configuration.host} refused the "
                    "kubeconfig's credentials (401 Unauthorized)"
                ) from None
            raise ConfigError(f"cannot check the bot's Kubernetes rights: {e}") from None


def describe_missing(lacking: Iterable[Right]) -> str:
    """One line per namespace: what the identity may not do there."""
    by_namespace: dict[str, list[str]] = {}
    for right in sorted(lacking):
        by_namespace.setdefault(right.namespace, []).append(right.describe())
    return "\n".join(
        f"  {f'namespace {ns}' if ns else 'cluster-wide'}: {', '.join(items)}"
        for ns, items in sorted(by_namespace.items())
    )


async def probe(kube: Kube) -> None:
    """GET /version through the bot's client: `kube.unreachable_since` is set while it fails and
    cleared when it answers. Raises KubeError when it fails."""
    await kube.call("version", client.VersionApi(kube.api).get_code)
