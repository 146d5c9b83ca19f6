"""bot.kube.access without a cluster: the rights the bot checks at start-up are exactly what the Helm
chart's Role grants (rendered offline from helm/release-bot), and every unusable kubeconfig is one
ConfigError line, and a rules review's rules are read as RBAC grants them. (The reviews themselves run
against the real API server in tests/integration/test_startup_readiness.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.kube import access
from bot.releases.store import object_name
from tests.fixtures.helm import IMAGE_VALUES, SLACK_VALUES, catalog_for, of_kind, render

Grant = tuple[str, str, str, str, str]  # namespace, group, resource, verb, name ("" = any)


def role_grants(values: dict[str, Any]) -> set[Grant]:
    """What the chart's Roles grant, one (namespace, group, resource, verb, name) per name."""
    grants: set[Grant] = set()
    for role in of_kind(render(values), "Role"):
        ns = role["metadata"]["namespace"]
        for rule in role.get("rules") or []:
            names = rule.get("resourceNames") or [""]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.update((ns, group, resource, verb, name) for name in names)
    return grants


def granted(grants: set[Grant], right: access.Right) -> bool:
    """As RBAC decides: a rule with names grants only those names; one without grants any."""
    key = (right.namespace, right.group, right.resource, right.verb)
    return (*key, "") in grants or (bool(right.name) and (*key, right.name) in grants)


@pytest.mark.parametrize(
    "strategies", [("rolling", "canary", "bluegreen"), ("rolling", "canary"), ("rolling",)]
)
def test_the_rights_checked_are_what_the_charts_role_grants(strategies: tuple[str, ...]) -> None:
    data = catalog_for("devops", "web", strategies=strategies)
    catalog = Catalog.from_mapping(data)
    needed = access.needed(catalog.apps.values(), object_name)
    grants = role_grants({**IMAGE_VALUES, **SLACK_VALUES, "catalog": data, "namespaces": ["devops", "web"]})
    missing = [r.describe() for r in needed if not granted(grants, r)]
    assert missing == []
    # and the Role grants nothing the bot does not check for
    wanted = {(r.namespace, r.group, r.resource, r.verb, r.name) for r in needed}
    assert grants <= wanted, sorted(grants - wanted)


def test_the_rights_of_a_blue_green_app() -> None:
    catalog = Catalog.from_mapping(catalog_for("devops"))
    rights = {r.describe() for r in access.needed(catalog.apps.values(), object_name)}
    assert {
        "get deployments.apps",  # any colour
        "delete deployments.apps",
        "patch services/hexo-service",
        "watch endpoints/hexo-service",
        "update configmaps/release-bot.hexo",
        "get leases.coordination.k8s.io/release-bot.hexo",
        "create events",
    } <= rights
    rolling = Catalog.from_mapping(catalog_for("devops", strategies=("rolling",)))
    rights = {r.describe() for r in access.needed(rolling.apps.values(), object_name)}
    assert "get deployments.apps/hexo" in rights and "get deployments.apps" not in rights
    assert not any("services" in r or "endpoints" in r for r in rights)


def test_the_charts_role_rules_show_every_right_it_grants() -> None:
    """A rules review answers with rules shaped as a Role's: read as RBAC does, the chart's own Role
    shows every right the bot checks for, and so spares each its own review."""
    data = catalog_for("devops", "web")
    needed = access.needed(Catalog.from_mapping(data).apps.values(), object_name)
    values = {**IMAGE_VALUES, **SLACK_VALUES, "catalog": data, "namespaces": ["devops", "web"]}
    held: dict[str, list[dict[str, Any]]] = {"devops": [], "web": []}
    for role in of_kind(render(values), "Role"):
        held[role["metadata"]["namespace"]] += role.get("rules") or []
    assert [r.describe() for r in needed if not access.shown(held[r.namespace], r)] == []
    for beyond in (("", "secrets", "get", ""), ("", "configmaps", "update", "someone-elses")):
        assert not access.shown(held["devops"], access.Right("devops", *beyond))  # nothing more


@pytest.mark.parametrize(
    ("rule", "right", "expected"),
    [
        (
            {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]},
            ("apps", "deployments", "get", "hexo"),
            True,
        ),
        (
            {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]},
            ("apps", "deployments", "patch", ""),
            False,
        ),
        ({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, ("", "configmaps", "update", "x"), True),
        (
            {"verbs": ["get"], "apiGroups": [""], "resources": ["deployments"]},
            ("apps", "deployments", "get", ""),
            False,
        ),
        (
            {
                "verbs": ["get"],
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": ["hexo"],
            },
            ("apps", "deployments", "get", "hexo"),
            True,
        ),
        (
            {
                "verbs": ["get"],
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": ["hexo"],
            },
            ("apps", "deployments", "get", "other"),
            False,
        ),
        (
            {
                "verbs": ["list"],
                "apiGroups": ["apps"],
                "resources": ["deployments"],
                "resourceNames": ["hexo"],
            },
            ("apps", "deployments", "list", ""),
            False,
        ),
        ({"verbs": ["get"], "resources": ["deployments"]}, ("apps", "deployments", "get", ""), False),
    ],
)
def test_a_rule_shows_a_right_as_rbac_grants_it(
    rule: dict[str, Any], right: tuple[str, str, str, str], expected: bool
) -> None:
    assert access.shown([rule], access.Right("devops", *right)) is expected


def test_missing_rights_are_listed_per_namespace() -> None:
    lacking = [
        access.Right("web", "", "pods", "watch"),
        access.Right("devops", "apps", "deployments", "get", "hexo"),
        access.Right("devops", "", "events", "create"),
    ]
    assert access.describe_missing(lacking) == (
        "  namespace devops: create events, get deployments.apps/hexo\n  namespace web: watch pods"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file (check KUBECONFIG)"),
        ("apiVersion: v1\nclusters: [\n", "not valid YAML"),
        ("apiVersion: v1\nkind: Config\n", "current-context"),
        ("apiVersion: v1\ncurrent-context: x\ncontexts: []\n", "Expected object with name x"),
    ],
)
async def test_an_unusable_kubeconfig_is_one_line(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        await access.connect(path)
    message = str(refused.value)
    assert message.startswith(f"kubeconfig {path}: ")
    assert expected in message
    assert "\n" not in message and "Invalid kube-config file" not in message


async def test_a_directory_is_not_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a file"):
        await access.connect(tmp_path)
