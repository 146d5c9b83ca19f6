"""`release-bot catalog check` without a cluster: which app needs each right, and how a missing right
is written (the rights reviews run against the real API server in
tests/integration/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
from bot.catalog import Catalog
from bot.cli_catalog import Rights
from bot.kube import access
from bot.releases.store import object_name
from tests.fixtures.helm import catalog_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def two_apps_in_one_namespace() -> Catalog:
    data = catalog_for("devops")  # hexo, blue-green
    data["apps"]["web"] = {"namespace": "devops", "deployment": "web", "container": "web", "image": "x/web"}
    return Catalog.from_mapping(data)


def test_every_right_needed_is_attributed_to_the_apps_that_need_it() -> None:
    catalog = two_apps_in_one_namespace()
    by_right = access.needed_by(catalog.apps.values(), object_name)
    assert list(by_right) == access.needed(catalog.apps.values(), object_name)
    described = {r.describe(): apps for r, apps in by_right.items()}
    assert described["list deployments.apps"] == ["hexo", "web"]
    assert described["create events"] == ["hexo", "web"]
    assert described["create deployments.apps"] == ["hexo"]  # blue-green colours
    assert described["patch services/hexo-service"] == ["hexo"]
    assert described["get deployments.apps/web"] == ["web"]
    assert described["update configmaps/release-bot.web"] == ["web"]
    assert "get deployments.apps/hexo" not in described  # hexo's blue-green rights cover any name


def test_a_missing_right_is_one_line_with_namespace_verb_resource_name_and_apps() -> None:
    catalog = two_apps_in_one_namespace()
    by_right = access.needed_by(catalog.apps.values(), object_name)
    lacking = [
        access.Right("devops", "apps", "deployments", "list"),
        access.Right("devops", "", "services", "get", "hexo-service"),
    ]
    rights = Rights(len(by_right), {r: by_right[r] for r in lacking})
    assert rights.problems() == [
        "namespace devops: may not list deployments.apps (needed by hexo, web)",
        "namespace devops: may not get services/hexo-service (needed by hexo)",
    ]


@pytest.mark.parametrize(("name", "problem"), [("nope", "no such file"), ("", "not a file")])
def test_a_kubeconfig_that_is_not_a_file_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, problem: str
) -> None:
    kubeconfig = tmp_path / name
    code = main(["catalog", "check", str(EXAMPLES / "catalog.yaml"), "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    assert code == 1
    assert out.out == f"✗ --kubeconfig {kubeconfig}: {problem}\n"
    assert out.err == ""


def test_a_kubeconfig_that_is_not_yaml_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{ not: [yaml\n")
    code = main(["catalog", "check", str(EXAMPLES / "catalog.yaml"), "--kubeconfig", str(kubeconfig)])
    out = capsys.readouterr()
    assert code == 1
    assert out.out.startswith(f"✗ kubeconfig {kubeconfig}: not valid YAML")
    assert len(out.out.splitlines()) == 1 and out.err == ""
