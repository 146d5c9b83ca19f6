"""Where the control-plane binaries come from.

Order, per binary: the envtest folder ``$KUBEBUILDER_ASSETS`` (users with a modern version test
against it), then ``PATH``, then this project's build cache, whose folder
``sandbox/controlplane/build.sh`` prints (instantly when cached; it builds Kubernetes 1.20 from
Debian's source package otherwise). Only a missing REQUIRED binary makes us ask the build script.
Mixing sources (a modern apiserver from ``KUBEBUILDER_ASSETS`` with the cached 1.20 controllers) is
possible but not recommended: put all of them in the one folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build.sh")
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager")
OPTIONAL = ("kube-scheduler",)
FIX_HINT = (
    "run ./scripts/bootstrap in the project root (installs etcd/openssl and builds the Kubernetes "
    "control plane once, about 4 minutes), or point KUBEBUILDER_ASSETS at a folder holding "
    "kube-apiserver, etcd and kube-controller-manager"
)


class MissingBinaryError(RuntimeError):
    """A required binary is nowhere to be found; the message says what to run."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    apiserver: Path
    controller_manager: Path
    scheduler: Path | None  # None: the simulated kubelet binds pods itself


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def build_cache_dir() -> tuple[Path | None, str]:
    """The folder ``build.sh`` prints, or None and the reason it failed."""
    try:
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as e:
        return None, str(e)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return None, (proc.stderr.strip().splitlines() or ["build.sh failed"])[-1]
    return Path(lines[-1]), ""


def find_binaries(env: Mapping[str, str] | None = None) -> Binaries:
    """Locate every binary, or raise :class:`MissingBinaryError` saying what to run."""
    env = os.environ if env is None else env
    found: dict[str, Path] = {}
    assets = env.get("KUBEBUILDER_ASSETS")
    for name in (*REQUIRED, *OPTIONAL):
        if assets and _executable(Path(assets) / name):
            found[name] = Path(assets) / name
            continue
        on_path = shutil.which(name, path=env.get("PATH"))
        if on_path:
            found[name] = Path(on_path)
    why = ""
    if any(n not in found for n in REQUIRED):
        cache, why = build_cache_dir()
        if cache is not None:
            for name in (*REQUIRED, *OPTIONAL):
                if name not in found and _executable(cache / name):
                    found[name] = cache / name
    missing = [n for n in REQUIRED if n not in found]
    if missing:
        detail = f" (build script: {why})" if why else ""
        raise MissingBinaryError(
            f"control plane binaries not found: {', '.join(missing)}{detail}. To fix: {FIX_HINT}."
        )
    return Binaries(
        etcd=found["etcd"],
        apiserver=found["kube-apiserver"],
        controller_manager=found["kube-controller-manager"],
        scheduler=found.get("kube-scheduler"),
    )
