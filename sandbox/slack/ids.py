"""Identifiers the way Slack shapes them: message timestamps and object ids.

Owns two small pure pieces the simulator relies on for faithfulness:

- `TsGenerator`: message `ts` values (`"<epoch seconds>.<6 digits>"`) that are unique and strictly
  increasing per channel even when many messages are posted within one microsecond, because the bot
  uses `ts` as the identity of its release card and thread.
- `slack_id`: stable Slack-looking ids (`C…`, `U…`, `S…`, `T…`) derived from a name, so a sandbox
  started twice hands out the same ids (handy for bookmarked pages and JSON files).
"""

from __future__ import annotations

import base64
import hashlib

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def slack_id(prefix: str, name: str, length: int = 10) -> str:
    """A Slack-like id: `prefix` plus `length` upper-case alphanumerics derived from `name`."""
    digest = int.from_bytes(hashlib.sha256(f"{prefix}:{name}".encode()).digest(), "big")
    chars = []
    for _ in range(length):
        digest, rem = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[rem])
    return prefix + "".join(chars)


def format_ts(micros: int) -> str:
    """Render integer microseconds since the epoch as a Slack `ts` string."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{seconds}.{fraction:06d}"


def parse_ts(ts: str) -> int:
    """Parse a Slack `ts` (or any decimal epoch like `"1700000000"`) into integer microseconds.

    Raises ValueError for anything that is not a non-negative decimal number.
    """
    text = ts.strip()
    whole, _, frac = text.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(whole) * 1_000_000 + int((frac + "000000")[:6])


class TsGenerator:
    """Hands out message timestamps, strictly increasing per channel.

    The timestamp follows the given wall-clock time (microsecond resolution); when the clock stands
    still or goes backwards the previous value is bumped by one microsecond, as Slack does for
    bursts, so every `ts` in a channel is unique and ordered.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def next(self, channel_id: str, now: float) -> str:
        """The next `ts` for `channel_id` at wall-clock time `now` (seconds since the epoch)."""
        candidate = int(now * 1_000_000)
        last = self._last.get(channel_id, -1)
        micros = max(candidate, last + 1)
        self._last[channel_id] = micros
        return format_ts(micros)


def encode_cursor(value: str) -> str:
    """Slack's opaque pagination cursor (base64 of `next_ts:<ts>` style text)."""
    return base64.b64encode(value.encode()).decode()


def decode_cursor(cursor: str) -> str | None:
    """Inverse of `encode_cursor`; None for a cursor this simulator did not hand out."""
    try:
        return base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
