"""What stands between an app and its next release: a lock, and the queue of releases waiting. Pure.

Both live beside the app's release record, in the same ConfigMap (see store.py), so a release start, a
lock and a queue change are one compare-and-set: a lock taken at the moment a release starts either
refuses that release or comes after it, never half of each.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from bot.releases import refusals
from bot.releases.record import Actor, Record
from commands.intents import Release

QUEUE_MAX = 20  # releases waiting per app


class Lock(BaseModel):
    model_config = ConfigDict(frozen=True)
    holder: Actor
    reason: str
    since: datetime


class Queued(BaseModel):
    """A release asked for with `--queue` while another ran: started, as asked, when the app is free."""

    model_config = ConfigDict(frozen=True)
    id: str
    intent: Release
    requester: Actor
    channel_id: str
    channel_name: str = ""
    front_end: str = "slack"
    at: datetime
    roles: tuple[str, ...] = ()  # what the requester was allowed when queueing (override, break-glass)


class Gate(BaseModel):
    model_config = ConfigDict(frozen=True)
    lock: Lock | None = None
    queue: tuple[Queued, ...] = ()
    # The id of the release whose failure paused the queue ("" while it moves); cleared by the next
    # release of the app that succeeds, or by `/release unlock`.
    paused: str = ""
    settled: str = ""  # the last finished release whose outcome the queue has taken into account

    def locked(self, app: str, actor: Actor, reason: str, now: datetime) -> Gate:
        self.refuse_if_locked(app)
        return self.model_copy(update={"lock": Lock(holder=actor, reason=reason, since=now)})

    def unlocked(self, app: str) -> Gate:
        if self.lock is None and not self.paused:
            raise refusals.NotLocked(app)
        return self.model_copy(update={"lock": None, "paused": ""})

    def refuse_if_locked(self, app: str) -> None:
        if self.lock is not None:
            raise refusals.Locked(app, self.lock.holder.name, self.lock.reason, self.lock.since)

    def enqueued(self, entry: Queued, app: str) -> Gate:
        if len(self.queue) >= QUEUE_MAX:
            raise refusals.QueueFull(app, len(self.queue))
        return self.model_copy(update={"queue": (*self.queue, entry)})

    def without(self, actor: Actor, app: str) -> Gate:
        kept = tuple(q for q in self.queue if q.requester.id != actor.id)
        if len(kept) == len(self.queue):
            raise refusals.NotQueued(app)
        return self.model_copy(update={"queue": kept})

    @property
    def moves(self) -> bool:
        """The head of the queue may start once the app is free."""
        return bool(self.queue) and self.lock is None and not self.paused


@dataclass(frozen=True)
class Enqueued:
    """A release put in the app's queue instead of starting now."""

    entry: Queued
    position: int  # 1: next
    running: Record | None  # the release it waits for


def new_queue_id() -> str:
    return f"q-{secrets.token_hex(4)}"
