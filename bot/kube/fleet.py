"""The clusters one bot serves: a client for each cluster of the catalog, each one's rights checked,
each one followed by its own probe, and what each can or cannot do now.

A cluster that does not answer stops only its own apps. With one cluster, start-up waits for it (and
stops with a ConfigError if it never answers), as it always has. With several, a cluster that does not
answer at start-up does not keep the others from being served: its rights are checked as soon as it
answers. Missing rights in a cluster that answers are a ConfigError at start-up, and a reason on
/readyz when found later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bot.catalog import Catalog
from bot.errors import ConfigError
from bot.kube import access
from bot.kube.client import Kube, KubeError

log = logging.getLogger(__name__)
PROBE_INTERVAL_S = 2.0  # GET /version: readiness notices an unreachable API server within this


class Fleet:
    def __init__(
        self,
        kubes: dict[str, Kube],
        catalog: Catalog,
        record_name: Callable[[str], str],
        kubeconfig: Path | None = None,
        watch_scope: str = "namespace",
    ) -> None:
        self.kubes = kubes
        self.watch_scope = watch_scope
        self.catalog = catalog
        self.record_name = record_name
        self.kubeconfig = kubeconfig  # the process's own (the `default` cluster's)
        self.unchecked: set[str] = set()  # clusters whose rights could not be checked yet
        self.problems: dict[str, str] = {}  # clusters that answer but cannot serve (missing rights)

    @classmethod
    async def connect(
        cls,
        catalog: Catalog,
        kubeconfig: Path | None,
        record_name: Callable[[str], str],
        watch_scope: str = "namespace",
    ) -> Fleet:
        kubes = await access.connect_clusters(catalog, kubeconfig, catalog.cluster_names())
        return cls(kubes, catalog, record_name, kubeconfig, watch_scope)

    @property
    def several(self) -> bool:
        return len(self.kubes) > 1

    async def close(self) -> None:
        for kube in self.kubes.values():
            await kube.close()

    def _where(self, name: str) -> str:
        ref = self.catalog.clusters.get(name)
        if ref is not None:
            return f"cluster {name} ({ref.describe()})"
        return f"kubeconfig {self.kubeconfig}" if self.kubeconfig else "this pod's ServiceAccount"

    async def _lacking(self, name: str, deadline: float) -> list[access.Right]:
        apps = self.catalog.apps_in(name)
        rights = access.needed(apps, self.record_name, self.watch_scope)
        return await access.missing(self.kubes[name], rights, deadline)

    async def check_rights(self, deadline: float = access.START_DEADLINE_S) -> None:
        """ConfigError listing every right an identity lacks for its cluster's apps. With several
        clusters, one that cannot be reached is left for `follow` to check once it answers."""
        names = list(self.kubes)
        found = await asyncio.gather(*(self._lacking(n, deadline) for n in names), return_exceptions=True)
        errors = []
        for name, result in zip(names, found, strict=True):
            if isinstance(result, ConfigError) and self.several and self.kubes[name].unreachable_since:
                log.warning(
                    "cluster %s does not answer; its apps are unavailable until it does: %s", name, result
                )
                self.unchecked.add(name)
            elif isinstance(result, BaseException):
                if not isinstance(result, ConfigError):
                    raise result
                errors.append(f"cluster {name}: {result}" if self.several else str(result))
            elif result:
                errors.append(_describe_lacking(self._where(name), result))
        if errors:
            raise ConfigError("\n".join(errors))

    async def follow(self, interval: float = PROBE_INTERVAL_S) -> None:
        """Probe every cluster every `interval` seconds (so `unreachable_since`, /readyz and the
        metrics follow each API server even while the bot has nothing to ask it), and check the rights
        of a cluster that was down at start-up once it answers."""
        while True:
            await asyncio.gather(*(self._probe(name, interval) for name in self.kubes))
            await asyncio.sleep(interval)

    async def _probe(self, name: str, interval: float = PROBE_INTERVAL_S) -> None:
        kube = self.kubes[name]
        # A cluster that answered the bot's own requests just now needs no question of its own.
        if kube.unreachable_since is not None or time.monotonic() - kube.answered_at >= interval:
            with contextlib.suppress(KubeError):
                await access.probe(kube)
        if name in self.unchecked and kube.unreachable_since is None:
            try:
                lacking = await self._lacking(name, deadline=0)
            except ConfigError as e:
                log.warning("cannot check the rights in cluster %s yet: %s", name, e)
                return
            self.unchecked.discard(name)
            if lacking:
                self.problems[name] = f"lacks {len(lacking)} right(s) release-bot needs"
                log.error("%s", _describe_lacking(self._where(name), lacking))
            else:
                log.info("cluster %s answers; its rights are checked", name)

    def reason(self, name: str) -> str | None:
        """Why the cluster cannot serve its apps now, or None."""
        since = self.kubes[name].unreachable_since
        if since is not None:
            return f"the Kubernetes API server has not answered since {since:%Y-%m-%dT%H:%M:%SZ}"
        if name in self.unchecked:
            return "its rights are not checked yet"
        return self.problems.get(name)

    def states(self) -> dict[str, str]:
        """Each cluster's state for /readyz: "ok" or why not."""
        return {name: self.reason(name) or "ok" for name in self.kubes}

    async def readiness(self) -> str | None:
        """The readiness check: one cluster must serve (with several, the others' reasons are details)."""
        reasons = {name: self.reason(name) for name in self.kubes}
        if not self.several:
            return next(iter(reasons.values()))
        if all(reasons.values()):
            return "no cluster can serve: " + "; ".join(f"{n}: {r}" for n, r in reasons.items())
        return None


def _describe_lacking(where: str, lacking: list[access.Right]) -> str:
    return (
        f"the Kubernetes identity of {where} lacks {len(lacking)} right(s) release-bot needs for the "
        "catalog's apps (the Helm chart's Role grants exactly these; see docs/deploy.md, section 5):\n"
        + access.describe_missing(lacking)
    )
