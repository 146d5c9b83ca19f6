"""A real Prometheus (Debian's `prometheus` package) on loopback, scraping the simulated kubelets'
pod traffic (`sandbox.kubelet.traffic`) every second, for the canary analysis of the tests and the
sandbox. Started and stopped by its PID (its own process group); its data lives in `workdir`.
`stop()` then `start()` keeps the data, as a restart of a real server would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from bot.errors import UserError
from sandbox.controlplane.launcher import set_pdeathsig

SCRAPE_INTERVAL = "1s"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


class PrometheusError(UserError):
    """Prometheus could not be found or started; the message says what to do."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, workdir: Path, targets: Sequence[str], port: int = 0) -> None:
        """`targets`: the URLs to scrape (`http://127.0.0.1:PORT/metrics`)."""
        self.workdir = workdir
        self.targets = list(targets)
        self.port = port or _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _config(self) -> Path:
        hosts = [t.removeprefix("http://").split("/", 1)[0] for t in self.targets]
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": "sandbox-pods", "honor_labels": True, "static_configs": [{"targets": hosts}]}
            ],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus not found on PATH. To fix: run ./scripts/bootstrap")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "prometheus.log").open("ab")
        argv = [
            binary,
            f"--config.file={self._config()}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=set_pdeathsig
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]
                raise PrometheusError(f"prometheus exited with {self.proc.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:  # noqa: S310 - loopback
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise PrometheusError(f"prometheus did not get ready within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
