"""Start and stop a REAL local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the simulated kubelet (``python -m sandbox.kubelet``).

This module owns the processes' whole life. Everything listens on free ports of 127.0.0.1 only. Each
process runs in its own process group (``start_new_session``) and its PID is kept, in memory and in
``cluster.json`` in the work dir, so that

- :meth:`ControlPlane.stop` always cleans up: SIGTERM to every group, SIGKILL after a short grace;
  it runs at interpreter exit (atexit) and SIGTERM is turned into KeyboardInterrupt so ``finally``
  blocks and pytest's teardown run; if the owning process dies hard, the kernel kills the servers
  (``PR_SET_PDEATHSIG``), unless the cluster was started detached;
- a separate process (``release-bot cluster down``) can stop a detached cluster by its recorded PIDs,
  checking each PID still belongs to the process we started (start time), never by name.

The API is synchronous (plain subprocesses and urllib): :meth:`ControlPlane.start` blocks until the
cluster is usable (``/readyz`` ok, the ``default`` ServiceAccount exists, our nodes are Ready), about
5 s. Call it from the main thread: the parent-death signal is tied to the thread that forks.

One component can be stopped, started again or restarted (:meth:`ControlPlane.restart`) with the
argv and environment it was first started with; etcd comes back on the same data dir, so nothing is
lost. These may be called from any thread (an executor, say): processes started off the main thread
are forked by one long-lived spawner thread, so their parent-death signal stays tied to a thread
that lives as long as the control plane.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar

from bot.errors import UserError
from sandbox.controlplane.binaries import Binaries, MissingBinaryError, find_binaries
from sandbox.controlplane.pki import RESTRICTED_USER, Pki, PkiError, make_pki, write_kubeconfig

STATE_FILE = "cluster.json"
AUDIT_LOG = "kube-apiserver-audit.log"
# Every request, once, as it is received (the RequestReceived stage only), without bodies.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
  - level: Metadata
"""
STOP_GRACE_S = 3.0
START_TIMEOUT_S = 90.0
ALIVE_CHECK_S = 0.5
NODE_PREFIX = "sandbox-node"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")
_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


class ControlPlaneError(UserError):
    """The control plane could not be started or found; the message says what to do."""


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running control plane (also what ``cluster.json`` records)."""

    workdir: Path
    api_url: str
    admin_kubeconfig: Path
    restricted_kubeconfig: Path
    restricted_user: str
    pids: dict[str, int]
    node_names: tuple[str, ...] = ()
    metrics_url: str = ""  # the simulated kubelet's pod traffic, for Prometheus to scrape

    def current_pids(self) -> dict[str, int]:
        """The pids ``cluster.json`` records now (``pids`` above is a snapshot and goes stale when a
        component is restarted); the snapshot when the state file is gone."""
        state = ClusterState.read(self.workdir)
        return dict(state.pids) if state is not None else dict(self.pids)


@dataclass
class _Proc:
    name: str
    pid: int
    start_ticks: int
    popen: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log: IO[bytes] | None = None


@dataclass
class ClusterState:
    """The JSON state file: enough for another process to report on or stop the cluster."""

    workdir: str
    api_url: str
    admin_kubeconfig: str
    restricted_kubeconfig: str
    restricted_user: str
    pids: dict[str, int]
    start_ticks: dict[str, int]
    etcd_data_dir: str
    detached: bool
    owner_pid: int
    node_names: list[str] = field(default_factory=list)

    def write(self, workdir: Path) -> None:
        tmp = workdir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(workdir / STATE_FILE)

    @classmethod
    def read(cls, workdir: Path) -> ClusterState | None:
        try:
            data = json.loads((workdir / STATE_FILE).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


# ---------------------------------------------------------------------------- process helpers


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; fields after the last ')' are plain
    rest = stat.rsplit(")", 1)[1].split()
    return int(rest[19])


def _alive(pid: int, ticks: int) -> bool:
    """True while PID is still the process we started (not a zombie, not a reused PID)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    rest = stat.rsplit(")", 1)[1].split()
    return rest[0] != "Z" and int(rest[19]) == ticks


# Looked up once, here: the child of a multi-threaded parent must not resolve symbols (the dynamic
# loader's lock may be held by a thread that does not exist in the child).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def set_pdeathsig() -> None:
    """``preexec_fn`` (runs in the child between fork and exec): the child gets SIGKILL when the
    thread that forked it ends (PR_SET_PDEATHSIG)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Spawner:
    """One long-lived daemon thread that forks the processes started off the main thread.

    The parent-death signal fires when the *thread* that forked a child ends, not the process: a
    server forked by a worker thread that later exits would be killed with it.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="control-plane-spawner", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[], T]) -> T:
        done: Future[T] = Future()
        self._jobs.put((fn, done))
        return done.result()

    def close(self) -> None:
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            try:
                done.set_result(fn())
            except BaseException as e:  # handed to the caller
                done.set_exception(e)


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_processes(procs: list[tuple[str, int, int]], grace: float = STOP_GRACE_S) -> list[str]:
    """Stop (name, pid, start_ticks) groups: SIGTERM, then SIGKILL after ``grace``. Returns names stopped.

    A PID whose start time no longer matches is not ours any more (and, since a PID cannot be reused
    while its process group lives, neither is its group): it is left alone.
    """
    ours = [(n, p, t) for n, p, t in procs if _alive(p, t)]
    for _, pid, _ in ours:
        _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p, t) for _, p, t in ours):
        time.sleep(0.05)
    for _, pid, ticks in ours:
        if _alive(pid, ticks):
            _killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(p, t) for _, p, t in ours):
        time.sleep(0.05)
    return [n for n, _, _ in ours]


# ---------------------------------------------------------------------------- HTTP probing


def _get(url: str, token: str, ctx: ssl.SSLContext, timeout: float = 2.0) -> tuple[int, bytes]:
    # always https://127.0.0.1:<port>: no file: or custom schemes can reach here
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    req = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _etcd_healthy(etcd_url: str, timeout: float = 2.0) -> bool:
    """True if etcd at ``etcd_url`` (http://127.0.0.1:<port>) answers /health with health "true"."""
    try:
        with urllib.request.urlopen(f"{etcd_url}/health", timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 200 and json.loads(resp.read()).get("health") == "true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def probe(api_url: str, admin_kubeconfig: Path) -> bool:
    """True if the apiserver behind ``api_url`` answers /readyz with ok."""
    try:
        import yaml

        doc = yaml.safe_load(admin_kubeconfig.read_text())
        token = doc["users"][0]["user"]["token"]
        import base64

        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    except (OSError, KeyError, IndexError, TypeError, ValueError):
        return False
    ctx = ssl.create_default_context(cadata=ca)
    status, body = _get(f"{api_url}/readyz", token, ctx)
    return status == 200 and body.strip() == b"ok"


# ---------------------------------------------------------------------------- the control plane


class ControlPlane:
    """One local control plane. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    ``workdir`` holds PKI, kubeconfigs, logs and ``cluster.json``; when None a temporary folder is
    made and removed by :meth:`stop`. etcd's data lives on /dev/shm when available. With
    ``detach=True`` the servers survive this process (no parent-death signal, no atexit stop): stop
    them with :func:`stop_recorded` (``release-bot cluster down``). With ``audit_log=True`` the
    apiserver writes one JSON line per request, as it receives it, to :attr:`audit_log_path` (its
    audit log at level Metadata: who asked what, never a body); the benchmarks count requests by
    client with it.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        ready_delay: float = 1.0,
        nodes: int = 1,
        restart_period: float = 5.0,
        detach: bool = False,
        audit_log: bool = False,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self._workdir_arg = workdir
        self.ready_delay = ready_delay
        self.nodes = nodes
        self.restart_period = restart_period
        self.detach = detach
        self.audit_log = audit_log
        self._procs: list[_Proc] = []
        self._workdir: Path | None = None
        self._own_workdir = False
        self._etcd_dir: Path | None = None
        self._info: ClusterInfo | None = None
        self._prev_sigterm: Any = None
        self._atexit_registered = False
        self._lock = threading.RLock()  # guards _procs (read by pids from any thread)
        self._ops = threading.RLock()  # one stop/start/restart of a component at a time
        self._stopping = threading.Event()
        self._spawner: _Spawner | None = None
        self._api_url = ""
        self._etcd_url = ""
        self._kcfg: dict[str, Path] = {}
        self._pki: Pki | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def info(self) -> ClusterInfo:
        """How to reach the cluster; ``pids`` are the current ones (a new object after a restart)."""
        if self._info is None:
            raise RuntimeError("control plane not started")
        return self._info

    @property
    def audit_log_path(self) -> Path | None:
        """The apiserver's audit log (one JSON line per request received), when ``audit_log`` is on."""
        if not self.audit_log or self._workdir is None:
            return None
        return self._workdir / "logs" / AUDIT_LOG

    @property
    def pids(self) -> dict[str, int]:
        """Component name -> the PID of its current process (the last one, while it is stopped)."""
        with self._lock:
            return {p.name: p.pid for p in self._procs}

    @property
    def components(self) -> tuple[str, ...]:
        """The components this control plane runs (kube-scheduler only when its binary was found)."""
        with self._lock:
            return tuple(n for n in COMPONENTS if any(p.name == n for p in self._procs))

    def running(self, name: str) -> bool:
        """True while the component's current process is alive."""
        return self._running(self._proc(name))

    def stop_component(self, name: str, grace: float = STOP_GRACE_S) -> None:
        """Stop one component's process group by its PID: SIGTERM, then SIGKILL after ``grace``.

        Its argv, environment and (for etcd) data dir are kept for :meth:`start_component`; stopping
        a component that is not running does nothing.
        """
        with self._ops:
            proc = self._proc(name)
            stop_processes([(proc.name, proc.pid, proc.start_ticks)], grace)
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=1.0)
            if proc.log is not None:
                proc.log.close()
                proc.log = None

    def start_component(self, name: str, timeout: float = START_TIMEOUT_S) -> int:
        """Start one component again with the argv and environment it was first started with, and
        block until it is usable; return its PID.

        Usable means: kube-apiserver answers /readyz with 200, etcd answers /health, the others are
        alive (they reconnect by themselves). A component already running is only waited for.
        """
        with self._ops:
            proc = self._proc(name)
            if not self._running(proc):
                self._respawn(proc)
                self._changed()
            self._wait_usable(proc, timeout)
            return proc.pid

    def restart(self, name: str, down_seconds: float = 0.0) -> int:
        """Stop one component, leave it down ``down_seconds``, start it again; return its new PID.

        Returns once the cluster is usable again: after etcd, the apiserver must be ready too. Any
        other component that exited meanwhile (the controllers, the kubelet) is started again.
        """
        if down_seconds < 0:
            raise ValueError("down_seconds must not be negative")
        with self._ops:
            self._proc(name)
            self.stop_component(name)
            if down_seconds and self._stopping.wait(down_seconds):
                raise ControlPlaneError("the control plane is stopping")
            pid = self.start_component(name)
            if name == "etcd" and "kube-apiserver" in self.components:
                self.start_component("kube-apiserver")
            for other in ("kube-controller-manager", "kube-scheduler", "kubelet"):
                if other != name and other in self.components and not self.running(other):
                    self.start_component(other)
            return pid

    def start(self) -> ClusterInfo:
        """Start every process and block until the cluster is usable; stop everything on failure."""
        if self._info is not None:
            return self._info
        try:
            binaries = find_binaries()
        except MissingBinaryError as e:
            raise ControlPlaneError(str(e)) from e
        if shutil.which("openssl") is None:
            raise ControlPlaneError("openssl not found: run ./scripts/bootstrap (installs it)")
        self._install_cleanup()
        self._stopping.clear()
        try:
            self._info = self._start(binaries)
        except BaseException:
            self.stop()
            raise
        return self._info

    def stop(self) -> None:
        """Stop every process this object started (idempotent; safe at any point of start, and while
        another thread restarts a component: that restart fails at once)."""
        self._stopping.set()
        with self._lock:
            stopping = list(reversed(self._procs))
            self._procs.clear()
        stop_processes([(p.name, p.pid, p.start_ticks) for p in stopping])
        for p in stopping:
            if p.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=1.0)
            if p.log is not None:
                p.log.close()
                p.log = None
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        if self._etcd_dir is not None:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
            self._etcd_dir = None
        if self._workdir is not None:
            if self._own_workdir:
                shutil.rmtree(self._workdir, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    (self._workdir / STATE_FILE).unlink()
        self._info = None
        self._uninstall_cleanup()

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- cleanup hooks --------------------------------------------------------------------

    def _install_cleanup(self) -> None:
        if self.detach:
            return
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        if threading.current_thread() is threading.main_thread():
            current = signal.getsignal(signal.SIGTERM)
            if current in (signal.SIG_DFL, None):
                self._prev_sigterm = current
                signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)

    def _uninstall_cleanup(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if self._prev_sigterm is not None and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _sigterm_to_keyboard_interrupt:
                signal.signal(signal.SIGTERM, self._prev_sigterm)
            self._prev_sigterm = None

    # -- starting ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> _Proc:
        proc = _Proc(name, 0, 0, argv=list(argv), env=dict(env if env is not None else _clean_env()))
        with self._lock:
            self._launch(proc)
            self._procs.append(proc)
        return proc

    def _respawn(self, proc: _Proc) -> None:
        with self._lock:
            if proc not in self._procs:
                raise ControlPlaneError("the control plane is stopping")
            self._launch(proc)

    def _launch(self, proc: _Proc) -> None:
        """Fork ``proc``'s argv (from the spawner thread when not on the main thread)."""
        assert self._workdir is not None
        if self._stopping.is_set():
            raise ControlPlaneError("the control plane is stopping")
        log = (self._workdir / "logs" / f"{proc.name}.log").open("ab")
        cwd = self._workdir

        def fork() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                proc.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if self.detach else set_pdeathsig,
                env=proc.env,
                cwd=cwd,
            )

        try:
            if self.detach or threading.current_thread() is threading.main_thread():
                popen = fork()
            else:
                if self._spawner is None:
                    self._spawner = _Spawner()
                popen = self._spawner.run(fork)
        except BaseException:
            log.close()
            raise
        if proc.log is not None:
            proc.log.close()
        proc.popen, proc.log = popen, log
        proc.pid, proc.start_ticks = popen.pid, _start_ticks(popen.pid) or 0

    def _proc(self, name: str) -> _Proc:
        with self._lock:
            found = next((p for p in self._procs if p.name == name), None)
        if found is None:
            if self._info is None:
                raise ControlPlaneError("the control plane is not running")
            known = ", ".join(self.components)
            raise ControlPlaneError(f"no component {name!r} in this control plane (it runs: {known})")
        return found

    @staticmethod
    def _running(proc: _Proc) -> bool:
        if proc.popen is not None and proc.popen.poll() is not None:
            return False
        return _alive(proc.pid, proc.start_ticks)

    def _changed(self) -> None:
        """Record the current pids: in cluster.json and in ``info``."""
        with self._lock:
            if self._info is None:
                return
            self._write_state()
            self._info = dataclasses.replace(self._info, pids={p.name: p.pid for p in self._procs})

    def _wait_usable(self, proc: _Proc, timeout: float) -> None:
        pki = self._pki
        assert pki is not None
        check: Callable[[], bool]
        if proc.name == "kube-apiserver":
            ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
            token, url = pki.identities["admin"].token, f"{self._api_url}/readyz"
            what = "kube-apiserver to be ready (/readyz)"
            check = lambda: _get(url, token, ctx)[0] == 200  # noqa: E731
        elif proc.name == "etcd":
            what, etcd_url = "etcd to answer /health", self._etcd_url
            check = lambda: _etcd_healthy(etcd_url)  # noqa: E731
        else:
            what, up_since = f"{proc.name} to stay up", time.monotonic()
            check = lambda: time.monotonic() - up_since >= ALIVE_CHECK_S  # noqa: E731
        deadline = time.monotonic() + timeout
        while True:
            if self._stopping.is_set():
                raise ControlPlaneError("the control plane is stopping")
            if not self._running(proc):
                code = proc.popen.returncode if proc.popen is not None else None
                raise ControlPlaneError(
                    f"{proc.name} exited with status {code} while waiting for {what}; "
                    f"last lines of its log:\n{self._log_tail(proc.name)}"
                )
            if check():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {timeout:.0f} s waiting for {what}; last lines of its log:\n"
                    f"{self._log_tail(proc.name)}"
                )
            time.sleep(0.05)

    def _start(self, bins: Binaries) -> ClusterInfo:
        if self._workdir_arg is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="release-bot-cluster-"))
            self._own_workdir = True
        else:
            self._workdir = self._workdir_arg.expanduser().resolve()
            self._workdir.mkdir(parents=True, exist_ok=True)
        wd = self._workdir
        (wd / "logs").mkdir(exist_ok=True)
        shm = Path("/dev/shm")  # noqa: S108 (a private mkdtemp below, removed by stop)
        shm_ok = shm.is_dir() and os.access(shm, os.W_OK)
        self._etcd_dir = Path(tempfile.mkdtemp(prefix="release-bot-etcd-", dir=shm if shm_ok else wd))

        try:
            pki = make_pki(wd / "pki")
        except PkiError as e:
            raise ControlPlaneError(f"{e}; run ./scripts/bootstrap") from e
        etcd_port, peer_port, api_port, cm_port, sched_port, metrics_port = _free_ports(6)
        api_url = f"https://127.0.0.1:{api_port}"
        self._api_url, self._pki = api_url, pki
        kcfg = {
            key: write_kubeconfig(
                wd / f"{key}.kubeconfig", server=api_url, ca_cert=pki.ca_cert, identity=ident
            )
            for key, ident in pki.identities.items()
        }

        self._kcfg = kcfg
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._etcd_url = etcd_url
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(bins.etcd),
                "--name=sandbox",
                f"--data-dir={self._etcd_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=sandbox={peer_url}",
                "--initial-cluster-state=new",
                "--log-level=warn",
                "--logger=zap",
            ],
        )
        self._spawn("kube-apiserver", self._apiserver_argv(bins, pki, etcd_url, api_port))
        # The kubelet waits for the apiserver by itself: starting it now overlaps its Python start-up.
        node_names = tuple(f"{NODE_PREFIX}-{i}" for i in range(self.nodes))
        kubelet_argv = [
            sys.executable,
            "-m",
            "sandbox.kubelet",
            f"--kubeconfig={kcfg['kubelet']}",
            f"--ready-delay={self.ready_delay}",
            f"--nodes={self.nodes}",
            f"--node-prefix={NODE_PREFIX}",
            f"--restart-period={self.restart_period}",
            f"--metrics-port={metrics_port}",
        ]
        if bins.scheduler is None:
            kubelet_argv.append("--bind-unscheduled")
        env = _clean_env()
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), *filter(None, [env.get("PYTHONPATH")])]
        )
        self._spawn("kubelet", kubelet_argv, env=env)
        self._write_state()

        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        admin = pki.identities["admin"].token
        self._wait(
            "the apiserver to be ready (/readyz)", lambda: _get(f"{api_url}/readyz", admin, ctx)[0] == 200
        )
        # Not earlier: kube-controller-manager gives up if the apiserver is not healthy within 10 s.
        self._spawn("kube-controller-manager", self._cm_argv(bins, pki, kcfg["controller-manager"], cm_port))
        if bins.scheduler is not None:
            self._spawn("kube-scheduler", self._scheduler_argv(bins, kcfg["scheduler"], sched_port))
        self._write_state()

        def default_sa() -> bool:
            return _get(f"{api_url}/api/v1/namespaces/default/serviceaccounts/default", admin, ctx)[0] == 200

        def nodes_ready() -> bool:
            status, body = _get(f"{api_url}/api/v1/nodes", admin, ctx)
            if status != 200:
                return False
            ready = {
                n["metadata"]["name"]
                for n in json.loads(body).get("items", [])
                if any(
                    c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", [])
                )
            }
            return set(node_names) <= ready

        self._wait("the default ServiceAccount in namespace default", default_sa)
        self._wait(f"nodes {', '.join(node_names)} to be Ready", nodes_ready)
        return ClusterInfo(
            workdir=wd,
            api_url=api_url,
            admin_kubeconfig=kcfg["admin"],
            restricted_kubeconfig=kcfg["restricted"],
            restricted_user=RESTRICTED_USER,
            pids={p.name: p.pid for p in self._procs},
            node_names=node_names,
            metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
        )

    def _write_state(self) -> None:
        assert self._workdir is not None
        assert self._etcd_dir is not None
        assert self._pki is not None
        with self._lock:
            pids = {p.name: p.pid for p in self._procs}
            ticks = {p.name: p.start_ticks for p in self._procs}
        ClusterState(
            workdir=str(self._workdir),
            api_url=self._api_url,
            admin_kubeconfig=str(self._kcfg["admin"]),
            restricted_kubeconfig=str(self._kcfg["restricted"]),
            restricted_user=self._pki.identities["restricted"].user,
            pids=pids,
            start_ticks=ticks,
            etcd_data_dir=str(self._etcd_dir),
            detached=self.detach,
            owner_pid=os.getpid(),
            node_names=[f"{NODE_PREFIX}-{i}" for i in range(self.nodes)],
        ).write(self._workdir)

    def _wait(self, what: str, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with self._lock:
                procs = list(self._procs)
            for p in procs:
                if p.popen is not None and p.popen.poll() is not None:
                    raise ControlPlaneError(
                        f"{p.name} exited with status {p.popen.returncode} while waiting for {what}; "
                        f"last lines of its log:\n{self._log_tail(p.name)}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}; logs are in "
                    f"{self._workdir}/logs (apiserver:\n{self._log_tail('kube-apiserver')})"
                )
            time.sleep(0.05)

    def _log_tail(self, name: str, lines: int = 15) -> str:
        assert self._workdir is not None
        try:
            text = (self._workdir / "logs" / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _apiserver_argv(self, bins: Binaries, pki: Pki, etcd_url: str, port: int) -> list[str]:
        return [
            str(bins.apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--insecure-port=0",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={pki.token_file}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            f"--requestheader-client-ca-file={pki.ca_cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--profiling=false",
            "--v=1",
            *self._audit_argv(),
        ]

    def _audit_argv(self) -> list[str]:
        log_path = self.audit_log_path
        if log_path is None:
            return []
        policy = log_path.parent.parent / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [f"--audit-policy-file={policy}", f"--audit-log-path={log_path}"]

    def _cm_argv(self, bins: Binaries, pki: Pki, kubeconfig: Path, port: int) -> list[str]:
        return [
            str(bins.controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            "--profiling=false",
            "--v=1",
        ]

    def _scheduler_argv(self, bins: Binaries, kubeconfig: Path, port: int) -> list[str]:
        assert bins.scheduler is not None
        return [
            str(bins.scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--port=0",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]


def _clean_env() -> dict[str, str]:
    """The environment for servers: no proxies (everything is loopback), no stray ETCD_* settings."""
    drop = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("ETCD_")}


def _sigterm_to_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C, so ``finally`` blocks, atexit and pytest's teardown still run."""
    raise KeyboardInterrupt


# ---------------------------------------------------------------------------- for other processes


def recorded(workdir: Path) -> ClusterState | None:
    """The state a (possibly detached) control plane recorded in ``workdir``, if any."""
    return ClusterState.read(workdir)


def alive_processes(state: ClusterState) -> dict[str, int]:
    """The recorded processes that are still the ones we started."""
    return {n: pid for n, pid in state.pids.items() if _alive(pid, state.start_ticks.get(n, -1))}


def stop_recorded(workdir: Path) -> list[str]:
    """Stop the control plane recorded in ``workdir`` by its PIDs; return the names stopped."""
    state = ClusterState.read(workdir)
    if state is None:
        return []
    order = ["kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
    procs = [(n, state.pids[n], state.start_ticks.get(n, -1)) for n in order if n in state.pids]
    stopped = stop_processes(procs)
    if state.etcd_data_dir:
        shutil.rmtree(state.etcd_data_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        (workdir / STATE_FILE).unlink()
    return stopped
