"""Counting Kubernetes API requests by client from the kube-apiserver's own audit log.

`apiserver_request_total` on the apiserver's /metrics has no label for the client (its user or its
User-Agent header, "UA" below), so the benchmarks start the control plane with its audit log on
(`ControlPlane(audit_log=True)`: one JSON line per request as it is received) and count the lines of
a window by the user and UA of each request:

- the bot: kubernetes_asyncio's default UA (`OpenAPI-Generator/...`) with the bot's user (the
  sandbox's simulated kubelet sends the same UA as another user);
- kubectl: `kubectl/...`, and the `kubectl-dispatcher/...` that /usr/bin/kubectl is on machines
  with the Google Cloud SDK (it asks GET /version before every run to pick a kubectl);
- the benchmark's own watches: `BENCH_UA`, which they set on their client, so they are never
  counted as either.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

BENCH_UA = "release-bot-bench"
BOT_UA_PREFIX = "OpenAPI-Generator/"
KUBECTL_UA_PREFIXES = ("kubectl/", "kubectl-dispatcher/")

Event = dict[str, Any]


def kubeconfig_user(kubeconfig: Path) -> str:
    """The user a sandbox kubeconfig authenticates as (its one user entry is named after it)."""
    doc = yaml.safe_load(kubeconfig.read_text())
    return str(doc["users"][0]["name"])


def client_of(event: Event, bot_user: str) -> str:
    """Who made a request: bot, kubectl, bench or other (the control plane's own components)."""
    ua = str(event.get("userAgent") or "")
    if ua.startswith(BOT_UA_PREFIX):
        return "bot" if (event.get("user") or {}).get("username") == bot_user else "other"
    if ua.startswith(KUBECTL_UA_PREFIXES):
        return "kubectl"
    if ua.startswith(BENCH_UA):
        return "bench"
    return "other"


def is_version_probe(event: Event) -> bool:
    """GET /version: the bot's readiness probe (every 2 s) and the kubectl dispatcher's question."""
    return str(event.get("requestURI", "")).split("?", 1)[0].rstrip("/") == "/version"


@dataclass(frozen=True)
class Window:
    """The requests the apiserver received after a mark of its audit log."""

    events: list[Event]
    bot_user: str

    def of(self, client: str) -> list[Event]:
        return [e for e in self.events if client_of(e, self.bot_user) == client]

    def count(self, client: str, *, probes: bool = True) -> int:
        """Requests made by `client`; without GET /version when `probes` is False."""
        return sum(1 for e in self.of(client) if probes or not is_version_probe(e))

    def probes(self, client: str) -> int:
        return sum(1 for e in self.of(client) if is_version_probe(e))

    def trace(self, client: str) -> tuple[str, ...]:
        """`client`'s requests in the order received: verb and path (GET /version left out)."""
        return tuple(
            f"{e.get('verb')} {str(e.get('requestURI', '')).split('?', 1)[0]}"
            for e in self.of(client)
            if not is_version_probe(e)
        )

    def kinds(self, client: str) -> Counter[str]:
        """`client`'s requests by verb and resource ("update leases", "watch pods", "get /version")."""
        kinds: Counter[str] = Counter()
        for e in self.of(client):
            ref = e.get("objectRef") or {}
            what = ref.get("resource") or str(e.get("requestURI", "")).split("?", 1)[0].rstrip("/")
            if ref.get("subresource"):
                what += f"/{ref['subresource']}"
            kinds[f"{e.get('verb')} {what}"] += 1
        return kinds


class AuditLog:
    """The apiserver's audit log file: `mark()` a position, `since(mark)` the requests after it.
    `bot_user`: the user the bot's kubeconfig authenticates as."""

    def __init__(self, path: Path, bot_user: str) -> None:
        self.path = path
        self.bot_user = bot_user

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, mark: int) -> Window:
        """The complete lines whose newline lies after `mark`: a line the apiserver was still
        writing at the mark belongs to this window."""
        with self.path.open("rb") as f:
            f.seek(_line_start(f, mark))
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]
        events = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return Window(events, self.bot_user)


def _line_start(f: BinaryIO, offset: int) -> int:
    """Where the line holding byte `offset - 1` begins (`offset` itself when that byte ends a line)."""
    if offset <= 0:
        return 0
    back = min(offset, 1 << 20)
    f.seek(offset - back)
    newline = f.read(back).rfind(b"\n")
    return offset - back + newline + 1 if newline >= 0 else offset - back
