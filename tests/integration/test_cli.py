"""The command line answers a missing or wrong setting with a message and a non-zero exit, never a
traceback (no cluster or Slack needed: it stops before connecting to either)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


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
