"""The ports the engine is written against on the front-end side: how a release is shown to people, and
what a front end tells the engine back. Pure (protocols only); implemented by bot.slack.reporter and
bot.ctl.terminal."""

from __future__ import annotations

from typing import Protocol

from bot.releases.health import Live
from bot.releases.record import Record


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


class Reporter(Protocol):
    """How the engine shows a release to people (bot.slack.reporter, bot.ctl.terminal)."""

    def attach(self, listener: Shown) -> None: ...

    async def open(self, record: Record, live: Live) -> str: ...  # post the card, return its reference
    def show(self, record: Record, live: Live, *, final: bool = False) -> None: ...  # card + new notes
    def delivered(self, release_id: str) -> int | None: ...  # notes delivered so far, if known here
    async def card_refused(self, record: Record, error: str) -> None: ...  # tell the requester why
    async def permalink(self, record: Record) -> str: ...
    async def announce(self, channel: str, text: str) -> None: ...  # a message without a card
