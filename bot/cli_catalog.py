"""`release-bot catalog check FILE [--kubeconfig K]`: is this catalog good to deploy?

Validates the file as the bot would at start-up; with a kubeconfig, also checks, in that cluster,
that every app's Deployment, container and Service exist in its namespace, and that the kubeconfig's
identity has every right the bot needs for the catalog's apps (`bot.kube.access.needed`, asked as
`serve` does at start-up: a rules review per namespace, an access review for each right it does not
show). Prints one line per problem (a
missing right names its namespace, verb, resource, object name if any, and the apps that need it)
and exits 0 when there is none, 1 otherwise, a kubeconfig that cannot be used or cannot reach the
cluster included (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path

from bot.catalog import App, Catalog
from bot.errors import ConfigError
from bot.kube import access
from bot.kube.client import Kube, KubeError, NotFound
from bot.releases import health
from bot.releases.store import object_name
from commands.intents import Strategy

# How long an API server that cannot be reached is tried again before the check gives up.
REACH_DEADLINE_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser(
        "check",
        help="validate a catalog file (and, with --kubeconfig, the cluster and the bot's rights)",
        description="Validate a catalog file as `release-bot serve` would; with --kubeconfig, also "
        "check that every app's Deployment, container and Service exist and that the kubeconfig's "
        "identity has every right the bot needs in the catalog's namespaces. Exit status: 0 no "
        "problem, 1 problems (one line each), 2 bad arguments.",
    )
    check.add_argument("file", type=Path, help="the catalog YAML")
    check.add_argument(
        "--kubeconfig",
        type=Path,
        metavar="PATH",
        help="also check the apps' objects in this cluster, and the bot's rights as this "
        "kubeconfig's identity (give it the bot's own credentials)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        catalog = Catalog.load(args.file)
    except ConfigError as e:
        print(f"✗ {e}")
        return 1
    problems: list[str] = []
    rights: Rights | None = None
    if args.kubeconfig:
        if not args.kubeconfig.is_file():
            what = "not a file" if args.kubeconfig.exists() else "no such file"
            print(f"✗ --kubeconfig {args.kubeconfig}: {what}")
            return 1
        try:
            problems, rights = asyncio.run(cluster_problems(catalog, args.kubeconfig))
        except ConfigError as e:  # unusable kubeconfig, unreachable cluster, refused credentials
            print(f"✗ {e}")
            return 1
    for problem in problems:
        print(f"✗ {problem}")
    apps = ", ".join(sorted(catalog.apps))
    if problems:
        print(f"{len(problems)} problem(s) in {args.file} ({apps})")
        if rights is not None and rights.lacking:
            print(
                "  the Helm chart's Role grants exactly the rights release-bot needs "
                "(docs/deploy.md, section 5)"
            )
        return 1
    where = ""
    if rights is not None:
        where = (
            f" and in the cluster; the bot's rights suffice ({rights.checked} checked as the "
            "kubeconfig's identity)"
        )
    print(f"✓ {args.file}: {len(catalog.apps)} app(s) ({apps}) valid{where}")
    return 0


@dataclass(frozen=True)
class Rights:
    """What the rights check found: how many rights were asked about, and the missing ones with the
    apps that need each."""

    checked: int
    lacking: dict[access.Right, list[str]]

    def problems(self) -> list[str]:
        return [
            f"namespace {right.namespace}: may not {right.describe()} (needed by {', '.join(apps)})"
            for right, apps in self.lacking.items()
        ]


async def cluster_problems(catalog: Catalog, kubeconfig: Path) -> tuple[list[str], Rights]:
    """The problems of the catalog's apps, each in its own cluster (`kubeconfig` is the `default`
    one's, and the one a cluster given by `context` alone uses), object checks first, then missing
    rights. Raises ConfigError when a kubeconfig is unusable or a cluster cannot be asked at all."""
    kubes = await access.connect_clusters(catalog, kubeconfig, catalog.cluster_names())
    several = len(kubes) > 1
    try:
        out: list[str] = []
        checked, lacking_by = 0, {}
        for name, kube in kubes.items():
            apps = catalog.apps_in(name)
            needs = access.needed_by(apps, object_name)
            try:  # first: it also proves the API server answers and takes the credentials
                lacking = await access.missing(kube, needs, deadline=REACH_DEADLINE_S)
            except ConfigError as e:
                raise ConfigError(f"cluster {name}: {e}" if several else str(e)) from None
            checked += len(needs)
            lacking_by.update({right: needs[right] for right in lacking})
            for app in apps:
                out += await app_problems(kube, app)
        rights = Rights(checked, lacking_by)
        return out + rights.problems(), rights
    finally:
        for kube in kubes.values():
            await kube.close()


async def app_problems(kube: Kube, app: App) -> list[str]:
    where = f"{app.name}: "
    out = []
    workloads = [
        (app.deployment, app.own_containers),
        *((w.name, w.names(app.container)) for w in app.followers),
    ]
    for name, containers in workloads:
        try:
            dep = await kube.deployment(app.namespace, name)
        except NotFound:
            out.append(f"{where}Deployment {app.namespace}/{name} does not exist")
            continue
        except KubeError as e:
            out.append(f"{where}cannot read Deployment {app.namespace}/{name}: {e}")
            continue
        names = [c.get("name") for c in dep["spec"]["template"]["spec"].get("containers", [])]
        for container in containers:
            if health.container_image(dep, container) is None:
                out.append(f"{where}Deployment {name} has no container {container} (it has {names})")
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
