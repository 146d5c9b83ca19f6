"""The command line answers a missing or wrong setting with a message and a non-zero exit, never a
traceback (no cluster or Slack needed: it stops before connecting to either)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox import hexo as hexo_app
from sandbox.controlplane.launcher import ClusterInfo

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(*args, env=clean_env())


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "RELEASE_BOT_"))}
    return {**env, **extra}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("serve",), {}, "set SLACK_BOT_TOKEN"),
        (("serve",), {"SLACK_BOT_TOKEN": "xoxb-1"}, "set SLACK_SIGNING_SECRET"),
        (("serve", "--socket-mode"), {"SLACK_BOT_TOKEN": "xoxb-1"}, "set SLACK_APP_TOKEN"),
        (("serve", "--socket-mode"), {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "xapp-"),
    ],
)
def test_missing_settings_are_named(args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = run(*args, env=clean_env(**env))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_catalog_is_reported_with_the_app_and_field(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "apps:\n  hexo:\n    namespace: Devops\n    deployment: hexo\n    container: hexo\n    image: x\n"
    )
    env = clean_env(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s", RELEASE_BOT_CATALOG=str(catalog))
    result = run("serve", env=env)
    assert result.returncode == 2
    assert "catalog: app 'hexo': namespace" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_subcommand_and_help() -> None:
    assert run("--help", env=clean_env()).returncode == 0
    result = run("deploy", env=clean_env())
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_version_is_printed() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.startswith("release-bot ")


def test_catalog_check_validates_the_file(tmp_path: Path) -> None:
    good = run_cli("catalog", "check", str(EXAMPLES / "catalog.yaml"))
    assert good.returncode == 0 and "1 app(s) (hexo) valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps:\n  hexo:\n    namespace: devops\n    strategies: [sideways]\n")
    out = run_cli("catalog", "check", str(bad))
    assert out.returncode == 1 and "hexo" in out.stdout and "Traceback" not in out.stdout + out.stderr
    missing = run_cli("catalog", "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "--catalog" in missing.stdout


async def test_catalog_check_against_the_cluster(
    hexo: str, control_plane: ClusterInfo, tmp_path: Path
) -> None:
    users = {"alice": "U0ALICE", "bob": "U0BOB", "mallory": "U0MALLORY"}
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(hexo_app.catalog(hexo, users)))
    kubeconfig = str(control_plane.admin_kubeconfig)
    out = await asyncio.to_thread(run_cli, "catalog", "check", str(good), "--kubeconfig", kubeconfig)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid and in the cluster" in out.stdout

    wrong = hexo_app.catalog(hexo, users, extra={"container": "web", "service": "no-such-service"})
    wrong["apps"]["gone"] = {**wrong["apps"]["hexo"], "deployment": "no-such-deployment"}
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(wrong))
    out = await asyncio.to_thread(run_cli, "catalog", "check", str(path), "--kubeconfig", kubeconfig)
    assert out.returncode == 1
    assert "hexo: Deployment hexo has no container web" in out.stdout
    assert f"Service {hexo}/no-such-service does not exist" in out.stdout
    assert f"gone: Deployment {hexo}/no-such-deployment does not exist" in out.stdout


def test_serve_help_lists_its_environment() -> None:
    out = run_cli("serve", "--help")
    assert out.returncode == 0
    for var in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "RELEASE_BOT_CATALOG",
                "KUBECONFIG", "RELEASE_BOT_LEASE_SECONDS", "LOG_FORMAT"):  # fmt: skip
        assert var in out.stdout, var
