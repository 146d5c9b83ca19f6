"""`release-bot catalog check FILE [--kubeconfig K]`: is this catalog good to deploy?

Validates the file as the bot would at start-up; with a kubeconfig, also checks that every app's
Deployment, container and Service exist in its namespace. Prints one line per problem and exits 0
when there is none, 1 otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.catalog import App, Catalog
from bot.errors import ConfigError
from bot.kube.client import Kube, KubeError, NotFound
from bot.releases import health
from commands.intents import Strategy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="validate a catalog file (and, with --kubeconfig, the cluster)")
    check.add_argument("file", type=Path, help="the catalog YAML")
    check.add_argument("--kubeconfig", type=Path, help="also check the apps' objects in this cluster")


def run(args: argparse.Namespace) -> int:
    try:
        catalog = Catalog.load(args.file)
    except ConfigError as e:
        print(f"✗ {e}")
        return 1
    problems = asyncio.run(cluster_problems(catalog, args.kubeconfig)) if args.kubeconfig else []
    for problem in problems:
        print(f"✗ {problem}")
    apps = ", ".join(sorted(catalog.apps))
    if problems:
        print(f"{len(problems)} problem(s) in {args.file} ({apps})")
        return 1
    where = " and in the cluster" if args.kubeconfig else ""
    print(f"✓ {args.file}: {len(catalog.apps)} app(s) ({apps}) valid{where}")
    return 0


async def cluster_problems(catalog: Catalog, kubeconfig: Path) -> list[str]:
    try:
        kube = await Kube.connect(kubeconfig)
    except Exception as e:  # a missing or broken kubeconfig: one clear line
        raise ConfigError(f"cannot load the kubeconfig {kubeconfig}: {e}") from e
    try:
        out: list[str] = []
        for app in catalog.apps.values():
            out += await app_problems(kube, app)
        return out
    finally:
        await kube.close()


async def app_problems(kube: Kube, app: App) -> list[str]:
    where = f"{app.name}: "
    try:
        dep = await kube.deployment(app.namespace, app.deployment)
    except NotFound:
        return [f"{where}Deployment {app.namespace}/{app.deployment} does not exist"]
    except KubeError as e:
        return [f"{where}cannot read Deployment {app.namespace}/{app.deployment}: {e}"]
    out = []
    if health.container_image(dep, app.container) is None:
        names = [c.get("name") for c in dep["spec"]["template"]["spec"].get("containers", [])]
        out.append(f"{where}Deployment {app.deployment} has no container {app.container} (it has {names})")
    if Strategy.BLUEGREEN in app.strategies:
        if not app.service:
            out.append(f"{where}blue-green needs `service:` (the Service whose selector is switched)")
        else:
            try:
                await kube.service(app.namespace, app.service)
            except NotFound:
                out.append(f"{where}Service {app.namespace}/{app.service} does not exist")
            except KubeError as e:
                out.append(f"{where}cannot read Service {app.namespace}/{app.service}: {e}")
    return out
