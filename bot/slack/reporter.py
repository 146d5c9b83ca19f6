"""Shows releases in Slack: the card (chat.postMessage, then chat.update in place) and its thread.

Card updates are coalesced per release: at most one chat.update per `interval` seconds (chat.update is
Tier 3, about 50 a minute), always ending with the latest state. Thread replies are for milestones
only. 429s are retried by the client's AsyncRateLimitErrorRetryHandler; other Slack errors are logged
and never stop a release.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.releases.health import Live
from bot.releases.record import Record
from bot.slack import cards

log = logging.getLogger(__name__)


class SlackReporter:
    def __init__(self, client: AsyncWebClient, interval: float) -> None:
        self.client = client
        self.interval = interval
        self._latest: dict[str, tuple[Record, Live]] = {}
        self._flushers: dict[str, asyncio.Task[None]] = {}
        self._sent: dict[str, str] = {}  # release id -> last text+blocks sent, to skip no-op updates
        self._permalinks: dict[str, str] = {}
        self.updates = 0

    async def open(self, record: Record, live: Live) -> str:
        text, blocks = cards.card(record, live)
        resp = await self.client.chat_postMessage(channel=record.channel_id, text=text, blocks=blocks)
        ts: str = resp["ts"]
        return ts

    def card(self, record: Record, live: Live) -> None:
        self._latest[record.id] = (record, live)
        task = self._flushers.get(record.id)
        if task is None or task.done():
            self._flushers[record.id] = asyncio.create_task(
                self._flush_loop(record.id), name=f"card:{record.id}"
            )

    async def _flush_loop(self, release_id: str) -> None:
        while release_id in self._latest:
            record, live = self._latest.pop(release_id)
            await self._update(record, live)
            await asyncio.sleep(self.interval)

    async def final(self, record: Record, live: Live) -> None:
        """Show this state now (cancelling a pending coalesced update)."""
        self._latest.pop(record.id, None)
        task = self._flushers.pop(record.id, None)
        if task and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._update(record, live, force=True)
        if not record.active:  # nothing more will be shown for this release
            self._sent.pop(record.id, None)
            self._permalinks.pop(record.id, None)

    async def _update(self, record: Record, live: Live, *, force: bool = False) -> None:
        if not record.card_ts:
            return
        text, blocks = cards.card(record, live)
        key = repr(blocks)
        if not force and self._sent.get(record.id) == key:
            return
        try:
            await self.client.chat_update(
                channel=record.channel_id, ts=record.card_ts, text=text, blocks=blocks
            )
            self._sent[record.id] = key
            self.updates += 1
        except SlackApiError as e:
            log.warning("card update for %s failed: %s", record.id, e.response.get("error"))

    async def note(self, record: Record, text: str) -> None:
        try:
            await self.client.chat_postMessage(
                channel=record.channel_id, thread_ts=record.card_ts, text=text, unfurl_links=False
            )
        except SlackApiError as e:
            log.warning("thread note for %s failed: %s", record.id, e.response.get("error"))

    async def announce(self, channel: str, text: str) -> None:
        """A message of its own in the channel (for actions that have no card)."""
        try:
            await self.client.chat_postMessage(channel=channel, text=text, unfurl_links=False)
        except SlackApiError as e:
            log.warning("announcement in %s failed: %s", channel, e.response.get("error"))

    async def permalink(self, record: Record) -> str:
        if not record.card_ts:
            return ""
        if record.id not in self._permalinks:
            try:
                resp = await self.client.chat_getPermalink(
                    channel=record.channel_id, message_ts=record.card_ts
                )
                self._permalinks[record.id] = resp.get("permalink", "")
            except SlackApiError:
                return ""
        return self._permalinks[record.id]

    async def close(self) -> None:
        for task in self._flushers.values():
            task.cancel()
        for task in self._flushers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
