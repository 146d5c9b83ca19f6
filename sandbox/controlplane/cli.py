"""release-bot cluster up|down|status: a local Kubernetes control plane from the command line.

"up" starts one in a work dir and prints the "export KUBECONFIG=..." line; it stays in the
foreground until Ctrl-C or SIGTERM (then stops everything), or with --detach leaves it running.
"down" stops a detached one by the PIDs recorded in the work dir (never by process name).
"status" says whether the one in the work dir is up (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from sandbox.controlplane.launcher import (
    ControlPlane,
    ControlPlaneError,
    alive_processes,
    probe,
    recorded,
    stop_recorded,
)


def default_workdir() -> Path:
    """``$XDG_RUNTIME_DIR/release-bot/cluster`` when set, else ``~/.cache/release-bot/cluster``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "release-bot" / "cluster"
    return Path.home() / ".cache" / "release-bot" / "cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    sub = parser.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    wd_help = f"work dir with PKI, kubeconfigs, logs and cluster.json (default: {default_workdir()})"

    up = sub.add_parser("up", help="start a control plane and print the KUBECONFIG to use")
    up.add_argument("--workdir", type=Path, default=None, help=wd_help)
    up.add_argument("--detach", action="store_true", help="leave it running and return (stop with `down`)")
    up.add_argument(
        "--ready-delay",
        type=float,
        default=1.0,
        help="seconds the simulated kubelet waits before a pod is Running and Ready (default 1.0)",
    )
    up.add_argument("--nodes", type=int, default=1, help="how many simulated nodes (default 1)")

    down = sub.add_parser("down", help="stop the detached control plane recorded in the work dir")
    down.add_argument("--workdir", type=Path, default=None, help=wd_help)

    status = sub.add_parser("status", help="report whether the control plane in the work dir is up")
    status.add_argument("--workdir", type=Path, default=None, help=wd_help)


def run(args: argparse.Namespace) -> int:
    workdir: Path = (args.workdir or default_workdir()).expanduser().resolve()
    action: str = args.cluster_command
    if action == "up":
        return _up(workdir, detach=args.detach, ready_delay=args.ready_delay, nodes=args.nodes)
    if action == "down":
        return _down(workdir)
    return _status(workdir)


def _up(workdir: Path, *, detach: bool, ready_delay: float, nodes: int) -> int:
    state = recorded(workdir)
    if state is not None and alive_processes(state):
        raise ControlPlaneError(
            f"a control plane is already running in {workdir} (api {state.api_url}); "
            f"stop it with: release-bot cluster down --workdir {workdir}"
        )
    if state is not None:
        stop_recorded(workdir)  # leftovers of a crashed run: clears the stale state file
    started = time.monotonic()
    cp = ControlPlane(workdir, ready_delay=ready_delay, nodes=nodes, detach=detach)
    info = cp.start()
    took = time.monotonic() - started
    print(f"export KUBECONFIG={info.admin_kubeconfig}")
    print(
        f"# control plane up in {took:.1f} s at {info.api_url}; restricted user {info.restricted_user!r}: "
        f"{info.restricted_kubeconfig}",
        file=sys.stderr,
    )
    if detach:
        print(f"# stop it with: release-bot cluster down --workdir {workdir}", file=sys.stderr)
        return 0
    print("# press Ctrl-C to stop it", file=sys.stderr)
    sys.stdout.flush()
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the launcher turns it into KeyboardInterrupt)
        pass
    finally:
        cp.stop()
    print("# control plane stopped", file=sys.stderr)
    return 0


def _down(workdir: Path) -> int:
    state = recorded(workdir)
    if state is None:
        print(f"no control plane recorded in {workdir}", file=sys.stderr)
        return 0
    stopped = stop_recorded(workdir)
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def _status(workdir: Path) -> int:
    state = recorded(workdir)
    if state is None:
        print(f"down: no control plane recorded in {workdir}")
        return 1
    alive = alive_processes(state)
    missing = sorted(set(state.pids) - set(alive))
    ready = bool(alive) and probe(state.api_url, Path(state.admin_kubeconfig))
    if ready and not missing:
        print(f"up: {state.api_url} (pids {', '.join(f'{n}={p}' for n, p in alive.items())})")
        print(f"export KUBECONFIG={state.admin_kubeconfig}")
        return 0
    what = "apiserver not ready" if not ready else f"not running: {', '.join(missing)}"
    print(f"down: {what} (work dir {workdir})")
    return 1


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m sandbox.controlplane.cli``), same as ``release-bot cluster``."""
    parser = argparse.ArgumentParser(prog="release-bot cluster")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ControlPlaneError as e:
        print(f"release-bot cluster: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
