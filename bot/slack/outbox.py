"""Slack delivery that loses nothing: one outbox and one sender per channel.

What a release wants Slack to show is handed to the channel's sender: card posts, the latest card
state (coalesced: only the newest state of a card is ever sent, at most once per `interval`), thread
notes (in order; several waiting for the same thread go out as one message) and announcements. The
sender delivers one call at a time, retrying 429 (after its Retry-After), 5xx, timeouts and connection
errors with capped backoff until delivered. Final card states go first. Permanent refusals
(not_in_channel, is_archived, invalid_blocks, token_revoked, ...) are never retried: a card post
fails with CardRefused, a card that was deleted is posted again, anything else is dropped and logged.
A Slack error never reaches a driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.releases.ports import CardRefused
from bot.tasks import Tasks

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0  # one Web API call; a hung call is abandoned and tried again
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.5, 30.0
# Slack answers these when the fault is on its side: worth trying again.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# The card message is gone or no longer ours to change: post a new one.
CARD_GONE = frozenset({"message_not_found", "cant_update_message"})
NOTES_PER_MESSAGE = 5  # notes waiting for the same thread are joined, up to this many
# Slack's documented limits, kept to by design rather than learnt from 429s: chat.postMessage about one
# message per second per channel with short bursts; chat.update is Tier 3 (50+ a minute, workspace-wide).
POSTS_PER_SECOND, POST_BURST = 1.0, 3
UPDATES_PER_SECOND, UPDATE_BURST = 50 / 60, 10


class Budget:
    """A token bucket: `rate` calls a second, bursts of `burst`. A call reserves a token, waiting (if
    the bucket is empty) until its turn comes; reservations queue up in order."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens, self.updated = float(burst), clock()

    def reserve(self) -> float:
        """Take a token (possibly one not there yet); the seconds to wait before using it."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate) - 1.0
        self.updated = now
        return max(0.0, -self.tokens / self.rate)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay:
            await asyncio.sleep(delay)

    def drain(self) -> None:
        """Slack said 429: spend what is left, so the next calls wait."""
        self.tokens = min(self.tokens, 0.0)


def slack_error(e: SlackApiError) -> str:
    error = e.response.get("error") if isinstance(e.response.data, dict) else None
    return str(error or f"http_{e.response.status_code}")


def transient(e: BaseException) -> float | None:
    """Seconds Slack asked us to wait (Retry-After), 0.0 for a transient error without a hint, or None
    when the error is permanent."""
    if isinstance(e, SlackApiError):
        status = e.response.status_code
        if status == 429:
            try:
                return max(0.0, float(e.response.headers.get("Retry-After", "1")))
            except (TypeError, ValueError):
                return 1.0
        if status >= 500 or slack_error(e) in TRANSIENT_ERRORS:
            return 0.0
        return None
    if isinstance(e, (TimeoutError, aiohttp.ClientError, OSError)):
        return 0.0
    return None


class Abandoned(Exception):
    """The message is no longer wanted; it was not (or no longer) tried."""


@dataclass
class Card:
    """What one release's card should show, and how far its delivery got."""

    release_id: str
    ref: str  # the card message's ts
    text: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    key: str = ""  # the state to show (text+blocks)
    sent_key: str = ""  # the state Slack shows
    final: bool = False
    due: float = 0.0  # monotonic: not before (coalescing)


@dataclass
class Post:
    """A message to post: a new card (its ts resolves `done`), a thread note, or an announcement."""

    text: str
    blocks: list[dict[str, Any]] | None = None
    release_id: str | None = None  # a thread note of this release's card
    done: asyncio.Future[str] | None = None
    on_sent: Callable[[], None] | None = None


class ChannelSender:
    """Delivers everything for one channel, one call at a time, never dropping what is transient."""

    def __init__(self, client: AsyncWebClient, channel: str, interval: float, outbox: Outbox) -> None:
        self.client = client
        self.channel = channel
        self.interval = interval
        self.outbox = outbox
        self.cards: dict[str, Card] = {}
        self.posts: deque[Post] = deque()
        self.budget = Budget(POSTS_PER_SECOND, POST_BURST)  # this channel's messages
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def post_card(self, post: Post) -> None:
        """Queue a new card: ahead of the thread notes waiting here (a release never waits behind
        other releases' notes), behind the channel messages already waiting (the channel's own order
        of cards and announcements is the audit trail)."""
        at = 0
        for i, queued in enumerate(self.posts):
            if queued.release_id is None:
                at = i + 1
        self.posts.insert(at, post)
        self.kick()

    def kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = self.outbox.tasks.spawn(f"slack:{self.channel}", self._run())

    @property
    def idle(self) -> bool:
        return not self.posts and all(c.sent_key == c.key for c in self.cards.values())

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            job = self._next()
            if job is None:
                due = [c.due for c in self.cards.values() if c.sent_key != c.key]
                wait = max(0.0, min(due) - time.monotonic()) if due else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
                continue
            await job()

    def _next(self) -> Callable[[], Awaitable[None]] | None:
        now = time.monotonic()
        pending = [c for c in self.cards.values() if c.sent_key != c.key]
        final = next((c for c in pending if c.final), None)
        if final is not None:  # final states first: the channel must end up telling the truth
            return lambda: self._update(final)
        if self.posts:
            return self._post_next
        ready = [c for c in pending if c.due <= now]
        if ready:
            card = min(ready, key=lambda c: c.due)
            return lambda: self._update(card)
        return None

    async def _post_next(self) -> None:
        post = self.posts.popleft()
        if post.done is not None and post.done.cancelled():
            return  # the release ended before its card went out
        joined = [post]
        if post.release_id is not None and post.done is None:  # notes for the same thread: one message
            while (
                self.posts
                and len(joined) < NOTES_PER_MESSAGE
                and self.posts[0].release_id == post.release_id
                and self.posts[0].done is None
            ):
                joined.append(self.posts.popleft())
        text = "\n\n".join(p.text for p in joined)
        kwargs: dict[str, Any] = {"channel": self.channel, "text": text, "unfurl_links": False}
        if post.blocks is not None:
            kwargs["blocks"] = post.blocks
        if post.release_id is not None and post.done is None:
            card = self.cards.get(post.release_id)
            if card is None:
                log.warning("note for %s dropped: its card is unknown here", post.release_id)
                return
            kwargs["thread_ts"] = card.ref
        done = post.done
        gave_up = done.cancelled if done is not None else None
        try:
            resp = await self.outbox.deliver(
                "chat.postMessage",
                lambda: self.client.chat_postMessage(**kwargs),
                gave_up=gave_up,
                budget=self.budget,
            )
        except Abandoned:
            return
        except CardRefused as e:
            if post.done is not None and not post.done.done():
                post.done.set_exception(e)
                return
            log.warning("message in %s refused by Slack: %s", self.channel, e.error)
            resp = None
        if post.done is not None and post.done.cancelled() and resp is not None:
            # Slack took the card after its release had ended without it: take it back.
            ts = str(resp["ts"])
            with contextlib.suppress(CardRefused, Abandoned):
                await self.outbox.deliver(
                    "chat.delete", lambda: self.client.chat_delete(channel=self.channel, ts=ts)
                )
            return
        if post.done is not None and not post.done.done() and resp is not None:
            post.done.set_result(str(resp["ts"]))
        for p in joined:
            if p.on_sent is not None:
                p.on_sent()

    async def _update(self, card: Card) -> None:
        key, text, blocks = card.key, card.text, card.blocks
        try:
            await self.outbox.deliver(
                "chat.update",
                lambda: self.client.chat_update(channel=self.channel, ts=card.ref, text=text, blocks=blocks),
                budget=self.outbox.updates,
            )
        except CardRefused as e:
            if e.error not in CARD_GONE:
                log.warning("card %s of %s refused by Slack: %s", card.ref, card.release_id, e.error)
                card.sent_key = key  # nothing more can be shown on it
                self.outbox.settled(self, card)
                return
            await self._repost(card)
            return
        card.sent_key = key
        card.due = time.monotonic() + self.interval
        self.outbox.settled(self, card)

    async def _repost(self, card: Card) -> None:
        """Someone deleted the card: post it again, and remember where it is now."""
        try:
            resp = await self.outbox.deliver(
                "chat.postMessage",
                lambda: self.client.chat_postMessage(
                    channel=self.channel, text=card.text, blocks=card.blocks
                ),
                budget=self.budget,
            )
        except CardRefused as e:
            log.warning("card of %s could not be posted again: %s", card.release_id, e.error)
            card.sent_key = card.key
            self.outbox.settled(self, card)
            return
        card.ref = str(resp["ts"])
        card.sent_key = card.key
        self.outbox.moved(card)
        self.outbox.settled(self, card)


class Outbox:
    """The channels' senders, and the retry policy they share."""

    def __init__(self, client: AsyncWebClient, interval: float) -> None:
        self.client = client
        self.interval = interval
        self.tasks = Tasks("outbox")
        self.senders: dict[str, ChannelSender] = {}
        self.updates = Budget(UPDATES_PER_SECOND, UPDATE_BURST)  # chat.update, for the whole workspace
        self.retries = 0  # Slack calls tried again (for the benchmarks and the metrics)
        self.on_settled: Callable[[str, Card], None] | None = None
        self.on_moved: Callable[[Card], None] | None = None

    def sender(self, channel: str) -> ChannelSender:
        sender = self.senders.get(channel)
        if sender is None:
            sender = self.senders[channel] = ChannelSender(self.client, channel, self.interval, self)
        return sender

    async def deliver(
        self,
        method: str,
        call: Callable[[], Awaitable[Any]],
        gave_up: Callable[[], bool] | None = None,
        budget: Budget | None = None,
    ) -> Any:
        """Make the call until Slack takes it, within `budget`; CardRefused for a permanent refusal,
        Abandoned when `gave_up()` says it is no longer wanted (checked before every retry)."""
        attempt = 0
        while True:
            if attempt and gave_up is not None and gave_up():
                raise Abandoned(method)
            if budget is not None:
                await budget.acquire()
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    return await call()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                wait = transient(e)
                if wait and budget is not None:
                    budget.drain()
                if wait is None:
                    if isinstance(e, SlackApiError):
                        raise CardRefused(slack_error(e)) from e
                    raise
                backoff = random.uniform(BACKOFF_MIN_S, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt))  # noqa: S311
                delay = max(wait, backoff if not wait else 0.0)
                log.info("%s failed (%s); trying again in %.1f s", method, _describe(e), delay)
                self.retries += 1
                attempt += 1
                await asyncio.sleep(delay)

    def settled(self, sender: ChannelSender, card: Card) -> None:
        if self.on_settled is not None:
            self.on_settled(sender.channel, card)

    def moved(self, card: Card) -> None:
        if self.on_moved is not None:
            self.on_moved(card)

    async def close(self) -> None:
        await self.tasks.stop(0)


def _describe(e: BaseException) -> str:
    if isinstance(e, SlackApiError):
        return f"{slack_error(e)}, HTTP {e.response.status_code}"
    return type(e).__name__
