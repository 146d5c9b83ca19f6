"""``python -m sandbox.kubelet``: run the simulated kubelet against a cluster until SIGTERM or Ctrl-C.

The control-plane launcher starts this as a subprocess; it can also be run by hand against any
cluster you may write Nodes and pod statuses to.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from kubernetes_asyncio import config

from sandbox.kubelet.agent import Kubelet


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sandbox.kubelet", description=__doc__.splitlines()[0])
    p.add_argument(
        "--kubeconfig", type=Path, required=True, help="kubeconfig with rights on nodes, pods, leases"
    )
    p.add_argument(
        "--ready-delay", type=float, default=1.0, help="seconds from seeing a pod to reporting it Ready"
    )
    p.add_argument("--nodes", type=int, default=1, help="how many Node objects to serve (default 1)")
    p.add_argument("--node-prefix", default="sandbox-node", help="node names are PREFIX-0, PREFIX-1, ...")
    p.add_argument(
        "--restart-period",
        type=float,
        default=5.0,
        help="seconds between simulated restarts of a 'broken' container (default 5)",
    )
    p.add_argument(
        "--bind-unscheduled",
        action="store_true",
        help="bind unscheduled pods to our nodes (for clusters without kube-scheduler)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the pods' simulated traffic for Prometheus on http://127.0.0.1:PORT/metrics (0: not)",
    )
    p.add_argument("--verbose", action="store_true", help="log every status decision")
    args = p.parse_args(argv)
    if args.nodes < 1:
        p.error("--nodes must be at least 1")
    if args.ready_delay < 0:
        p.error("--ready-delay must not be negative")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Run the kubelet until this task is cancelled (SIGTERM/SIGINT cancel it)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    api = await config.new_client_from_config(config_file=str(args.kubeconfig))
    try:
        names = tuple(f"{args.node_prefix}-{i}" for i in range(args.nodes))
        kubelet = Kubelet(
            api,
            names,
            ready_delay=args.ready_delay,
            restart_period=args.restart_period,
            bind_unscheduled=args.bind_unscheduled,
        )
        runner = await _serve_metrics(kubelet, args.metrics_port) if args.metrics_port else None
        try:
            await kubelet.run()
        finally:
            if runner is not None:
                await runner.cleanup()
    finally:
        await api.close()


async def _serve_metrics(kubelet: Kubelet, port: int) -> web.AppRunner:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=kubelet.metrics(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except asyncio.CancelledError:
        return 0
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
