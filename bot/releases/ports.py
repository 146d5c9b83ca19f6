"""The ports the engine is written against. Pure (protocols only).

- `Reader`: the reads of a release's plan, from the API server or the shared watch caches.
- `Cluster`: every Kubernetes operation the engine, the run, the store, the leases and the auditor use
  (plain JSON dicts in and out). Implemented by `bot.kube.client.Kube`; unit tests use an in-memory one.
- `Reporter` and `Shown`: how a release is shown to people, and what a front end tells the engine back.
  Implemented by `bot.slack.reporter` and `bot.ctl.terminal`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from bot.releases.events import Event
from bot.releases.gate import Queued
from bot.releases.health import Live
from bot.releases.record import Record

Obj = dict[str, Any]
T = TypeVar("T")


class Reader(Protocol):
    """The reads a release's plan makes (and `/release status`): the API server's answers
    (`Cluster`), or the shared watch caches' while their watch is up (`bot.kube.cache.Reads`)."""

    async def deployment(self, ns: str, name: str) -> Obj: ...
    async def deployments(self, ns: str) -> list[Obj]: ...
    async def service(self, ns: str, name: str) -> Obj: ...
    async def autoscalers(self, ns: str) -> list[Obj]: ...  # HorizontalPodAutoscalers (autoscaling/v1)
    async def quotas(self, ns: str) -> list[Obj]: ...  # ResourceQuotas
    async def disruption_budgets(self, ns: str) -> list[Obj]: ...  # PodDisruptionBudgets (policy)


class Cluster(Reader, Protocol):
    """One Kubernetes cluster, as the engine uses it."""

    unreachable_since: datetime | None  # when the API server stopped answering (None: it answers)

    def stream_of(
        self, kind: str, namespace: str, label_selector: str | None = None
    ) -> AsyncIterator[tuple[str, Obj]]:
        """List then watch `kind` ("deployments", "pods", "configmaps", "services",
        "horizontalpodautoscalers", "resourcequotas", "poddisruptionbudgets") forever, surviving any
        transport error: ADDED..., ("SYNCED", listing), events, ("DOWN"/"UP", {})."""
        ...

    # Writes take `dry_run`: admission, defaulting and validation run, nothing is stored.
    async def patch_deployment(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj: ...
    async def create_deployment(self, ns: str, body: Obj, *, dry_run: bool = False) -> Obj: ...
    async def delete_deployment(self, ns: str, name: str) -> None: ...
    async def wait_deployment_gone(self, ns: str, name: str, timeout: float) -> None: ...
    async def watch_deployment(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T: ...
    async def replica_sets(self, deployment: Obj) -> list[Obj]: ...
    async def pods(self, ns: str, selector: dict[str, str]) -> list[Obj]: ...
    async def patch_service(
        self, ns: str, name: str, patch: Obj | list[Obj], *, dry_run: bool = False
    ) -> Obj: ...
    async def patch_autoscaler(self, ns: str, name: str, patch: Obj) -> Obj: ...
    async def watch_endpoints(
        self, ns: str, name: str, predicate: Callable[[Obj], T | None], timeout: float
    ) -> T: ...
    async def configmap(self, ns: str, name: str) -> Obj | None: ...
    async def create_configmap(self, ns: str, body: Obj) -> Obj: ...
    async def replace_configmap(self, ns: str, body: Obj) -> Obj: ...
    async def lease(self, ns: str, name: str) -> Obj | None: ...
    async def create_lease(self, ns: str, body: Obj) -> Obj: ...
    async def replace_lease(self, ns: str, body: Obj) -> Obj: ...
    async def event(self, involved: Obj, reason: str, message: str, *, warning: bool = False) -> None: ...


class CardRefused(Exception):
    """Slack refused the card for good (the bot is not in the channel, the channel is archived, the
    token was revoked...): retrying cannot help."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class Shown(Protocol):
    """What a reporter tells the engine back (the engine attaches itself)."""

    async def shown(self, record: Record, notes: int) -> None: ...  # the front end shows the end
    async def card_moved(self, record: Record, ref: str) -> None: ...  # the card had to be re-posted


class Analyst(Protocol):
    """What the canary analysis asks outside the cluster: Prometheus, and webhook gates."""

    async def query(self, address: str, promql: str, timeout: float) -> tuple[list[float], str]:
        """The values of the query's series now ([] when it has none), or ([], why) when Prometheus
        could not be asked or refused the query."""
        ...

    async def ask(self, url: str, payload: Obj, timeout: float) -> tuple[bool, str]:
        """Whether the gate at `url` says yes to `payload`, and what it said. No answer within
        `timeout`, an HTTP error or an answer outside the contract is a no (fails closed)."""
        ...


class Reporter(Protocol):
    """How the engine shows a release to people (bot.slack.reporter, bot.ctl.terminal)."""

    def attach(self, listener: Shown) -> None: ...

    # Whether the front end can show the release (True), cannot tell yet (False: wait for the card), or
    # refuses it for good (CardRefused), without waiting behind other messages.
    async def ready(self, record: Record) -> bool: ...
    async def open(self, record: Record, live: Live) -> str: ...  # post the card, return its reference
    def show(self, record: Record, live: Live, *, final: bool = False) -> None: ...  # card + new notes
    def delivered(self, release_id: str) -> int | None: ...  # notes delivered so far, if known here
    async def card_refused(self, record: Record, error: str) -> None: ...  # tell the requester why
    async def permalink(self, record: Record) -> str: ...
    async def announce(self, channel: str, text: str) -> None: ...  # a message without a card
    # A release event as a message of its own in `channel` (break-glass is announced, not only threaded).
    async def broadcast(self, channel: str, record: Record, event: Event) -> None: ...
    # A queued release could not start when its turn came: tell its requester why.
    async def queued_refused(self, entry: Queued, app: str, refusal: Exception) -> None: ...
