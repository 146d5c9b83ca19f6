"""Shows releases in Slack: the card (chat.postMessage, then chat.update in place) and its thread.

Everything goes through the outbox (`bot.slack.outbox`): one sender per channel, card updates
coalesced to the latest state (at most one chat.update per card per `interval`; chat.update is Tier 3,
about 50 a minute), thread notes in order, transient failures retried until delivered. The notes come
from the record itself (`Record.notes`, stored with the change they report), so a process that takes
a release over re-sends exactly what was not delivered yet; once the channel shows a finished release
completely, the record is marked `synced`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.releases import events
from bot.releases.gate import Queued
from bot.releases.health import Live
from bot.releases.ports import CardRefused, Shown
from bot.releases.record import Record
from bot.slack import answers, cards, notes
from bot.slack.outbox import Card, Outbox, Post

log = logging.getLogger(__name__)

SLACK = "slack"  # the front-end name in the records this reporter shows
ANSWER_ATTEMPTS = 3  # tries of a private answer through response_url
ANSWER_TIMEOUT_S = 5.0  # permalinks and private answers are best effort
CHANNEL_CHECK_S = 60.0  # a channel found to take the bot's messages is not asked again for this long
CHANNEL_GONE = frozenset(
    {
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "account_inactive",
        "token_revoked",
        "invalid_auth",
    }
)


@dataclass
class _Release:
    record: Record
    queued: int  # notes handed to the sender
    delivered: int  # notes Slack took (or refused for good)
    final: bool = False


class SlackReporter:
    def __init__(self, client: AsyncWebClient, interval: float) -> None:
        self.client = client
        self.outbox = Outbox(client, interval)
        self.outbox.on_settled = self._settled
        self.outbox.on_moved = self._moved
        self.listener: Shown | None = None
        self._releases: dict[str, _Release] = {}
        self._permalinks: dict[str, str] = {}
        self._postable: dict[str, float] = {}  # channel -> when conversations.info said it takes messages
        self._posted: dict[str, float] = {}  # channel -> when Slack last took a card there

    async def ready(self, record: Record) -> bool:
        """Whether the channel takes the bot's messages without waiting behind them: a card went out
        there within the last minute (so the token may post there) and conversations.info (Tier 3,
        never queued behind the channel's messages; a yes is kept a minute) says the bot is still in
        it. True: post the card in the background and start now; False: not known (the channel's first
        card, no `channels:read`, Slack failing): wait for the card; CardRefused: refused for good."""
        if record.front_end != SLACK:
            return True
        channel = record.channel_id
        now = time.monotonic()
        posted = self._posted.get(channel)
        if posted is None or now - posted > CHANNEL_CHECK_S:
            return False  # no card went out here lately: this one proves the channel (and the scopes)
        seen = self._postable.get(channel)
        if seen is not None and now - seen < CHANNEL_CHECK_S:
            return True
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                resp = await self.client.conversations_info(channel=channel)
        except SlackApiError as e:
            error = str(e.response.get("error") or "")
            if error in CHANNEL_GONE:
                raise CardRefused(error) from e
            log.info(
                "cannot tell whether %s takes messages (%s): the release waits for its card", channel, error
            )
            return False
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.info("cannot tell whether %s takes messages (%s)", channel, type(e).__name__)
            return False
        info = resp.get("channel") or {}
        if info.get("is_archived"):
            raise CardRefused("is_archived")
        if info.get("is_member") is False and not info.get("is_im"):
            raise CardRefused("not_in_channel")
        self._postable[channel] = time.monotonic()
        return True

    async def open(self, record: Record, live: Live) -> str:
        """Post the card (retried until Slack takes it); CardRefused when Slack refuses it for good."""
        if record.front_end != SLACK:  # another front end's release, driven here: nothing to show
            return f"{record.front_end}:not-shown"
        text, blocks = cards.card(record, live)
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.outbox.sender(record.channel_id).post_card(Post(text=text, blocks=blocks, done=done))
        ts = await done
        self._posted[record.channel_id] = time.monotonic()
        return ts

    def attach(self, listener: Shown) -> None:
        self.listener = listener

    def show(self, record: Record, live: Live, *, final: bool = False) -> None:
        """Make the channel show `record`: the card (coalesced) and any notes not handed over yet."""
        if record.card_ref is None or record.front_end != SLACK:
            return
        state = self._releases.get(record.id)
        if state is None:
            state = self._releases[record.id] = _Release(record, record.notes_shown, record.notes_shown)
        state.record = record
        state.final = state.final or final
        sender = self.outbox.sender(record.channel_id)
        card = sender.cards.get(record.id)
        if card is None:
            card = sender.cards[record.id] = Card(record.id, record.card_ref)
        text, blocks = cards.card(record, live)
        card.text, card.blocks, card.key = text, blocks, repr(blocks)
        card.final = card.final or final
        for i in range(state.queued, len(record.notes)):
            sender.posts.append(
                Post(
                    text=notes.note(record, record.notes[i]),
                    release_id=record.id,
                    on_sent=self._note_sent(state),
                )
            )
        state.queued = max(state.queued, len(record.notes))
        sender.kick()

    def _note_sent(self, state: _Release) -> Callable[[], None]:
        def sent() -> None:
            state.delivered += 1
            self._check_synced(state)

        return sent

    def delivered(self, release_id: str) -> int | None:
        state = self._releases.get(release_id)
        return state.delivered if state else None

    def _settled(self, channel: str, card: Card) -> None:
        state = self._releases.get(card.release_id)
        if state is not None:
            self._check_synced(state)

    def _check_synced(self, state: _Release) -> None:
        record = state.record
        sender = self.outbox.senders.get(record.channel_id)
        card = sender.cards.get(record.id) if sender else None
        if not state.final or card is None or card.sent_key != card.key:
            return
        if state.delivered < len(record.notes):
            return
        # Everything is out: forget the release here, and remember in the record that it is shown.
        self._releases.pop(record.id, None)
        self._permalinks.pop(record.id, None)
        if sender is not None:
            sender.cards.pop(record.id, None)
        if self.listener is not None:
            self.outbox.tasks.spawn(f"shown:{record.id}", self.listener.shown(record, state.delivered))

    def _moved(self, card: Card) -> None:
        state = self._releases.get(card.release_id)
        if state is not None and self.listener is not None:
            self.outbox.tasks.spawn(
                f"moved:{card.release_id}", self.listener.card_moved(state.record, card.ref)
            )

    async def card_refused(self, record: Record, error: str) -> None:
        """Tell the requester privately why the release could not start, through the command's
        response_url (it works where the bot cannot post: a channel it is not in, a DM)."""
        text = answers.card_refused_reason(error, record.channel_id)
        if not record.reply_to:
            log.warning("cannot tell %s about %s: no response_url", record.requester.id, record.id)
            return
        hook = AsyncWebhookClient(record.reply_to, session=self.client.session)
        for attempt in range(ANSWER_ATTEMPTS):  # a response_url takes five answers in 30 minutes
            if attempt:
                await asyncio.sleep(2**attempt)
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    sent = await hook.send(text=text, response_type="ephemeral")
            except Exception as e:
                why = type(e).__name__
            else:
                if sent.status_code < 500 and sent.status_code != 429:
                    return  # delivered, or refused for good (expired_url, used_url): trying cannot help
                why = f"HTTP {sent.status_code}"
            log.warning("could not answer %s through response_url (%s)", record.requester.id, why)

    async def announce(self, channel: str, text: str) -> None:
        """A message of its own in the channel (for actions that have no card)."""
        sender = self.outbox.sender(channel)
        sender.posts.append(Post(text=text))
        sender.kick()

    async def broadcast(self, channel: str, record: Record, event: events.Event) -> None:
        await self.announce(channel, notes.note(record, event))

    async def queued_refused(self, entry: Queued, app: str, refusal: Exception) -> None:
        if entry.front_end == SLACK:
            await self.announce(entry.channel_id, answers.queued_refused(entry, app, refusal))

    async def permalink(self, record: Record) -> str:
        if not record.card_ref:
            return ""
        if record.id not in self._permalinks:
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    resp = await self.client.chat_getPermalink(
                        channel=record.channel_id, message_ts=record.card_ref
                    )
                self._permalinks[record.id] = resp.get("permalink", "")
            except Exception:  # best effort: the audit line then has no link
                return ""
        return self._permalinks[record.id]

    async def close(self) -> None:
        await self.outbox.close()
