"""mrkdwn for Slack: escaping, clipping to Block Kit's limits, mentions, times and sizes. Pure.

Everything user- or cluster-supplied (versions, names, reasons, messages) goes through `esc` before it
reaches mrkdwn, so `<!channel>` or `<https://evil|ok>` in a tag or a pod message is shown as text.
Limits from Slack's Block Kit reference are applied here (header 150, section text 3000, button 75).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

Block = dict[str, Any]


SECTION_MAX = 3000


HEADER_MAX = 150


CONTEXT_MAX = 2000


def esc(text: object) -> str:
    """Escape for mrkdwn: Slack's three control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_mrkdwn(text: str, limit: int) -> str:
    """`clip` for mrkdwn already escaped: never cuts an entity (`&amp;`) or a control sequence
    (`<!date^…>`) in half."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut + "…"


def mention(user_id: str) -> str:
    return f"<@{user_id}>" if user_id.isalnum() else esc(user_id)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    return f"{minutes // 60} h {minutes % 60} min"


def when(t: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A time Slack shows in the reader's own time zone (the fallback says UTC)."""
    return f"<!date^{int(t.timestamp())}^{fmt}|{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


def ago(t: datetime) -> str:
    """How long ago `t` was, as Slack shows it ("3 minutes ago", moving by itself in Slack's clients);
    the fallback says the time in UTC."""
    return f"<!date^{int(t.timestamp())}^{{ago}}|{t.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC>"


def who_of(ids: Iterable[str]) -> str:
    """User ids and user-group ids as Slack mentions."""
    out = [f"<!subteam^{esc(i)}>" if i.startswith("S") else mention(i) for i in ids]
    return ", ".join(out) if out else "nobody"


def plural(n: int, word: str) -> str:
    """`1 pod`, `6 pods`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def channel_link(channel_id: str) -> str:
    """A channel as Slack shows it (#name) when `channel_id` is a channel id; escaped text otherwise."""
    return f"<#{channel_id}>" if channel_id.isalnum() else esc(channel_id)


def cpu_text(millis: int) -> str:
    return f"{millis}m CPU" if millis < 1000 else f"{millis / 1000:g} CPU"


def memory_text(n: int) -> str:
    binary = n >= 1 << 20 and n % (1 << 20) == 0
    units = [("GiB", 1 << 30), ("MiB", 1 << 20)] if binary else [("GB", 10**9), ("MB", 10**6), ("kB", 10**3)]
    for unit, size in units:
        if n >= size:
            return f"{round(n / size, 1):g} {unit}"
    return f"{n} B"


# Slack's control sequences (`<@U…>`, `<#C…|name>`, `<!subteam^S…|@handle>`, `<!date^…|fallback>`,
# `<!here>`, `<url|text>`), each with what plain text shows instead.
_CONTROL = re.compile(r"<([^<>]*)>")


def _plain_control(m: re.Match[str]) -> str:
    inner, _, label = m.group(1).partition("|")
    if inner.startswith("!date^"):
        return label or inner
    if inner.startswith("!subteam^"):
        return label or f"@{inner.removeprefix('!subteam^')}"
    if inner.startswith("!"):
        return f"@{inner[1:]}"
    if inner.startswith("@"):
        return inner
    if inner.startswith("#"):
        return f"#{label}" if label else inner
    return label or inner


def plain(text: str) -> str:
    """mrkdwn as plain text, for the places Slack shows text as it is (field errors of a form):
    mentions, channels, dates and links as readable text, entities decoded."""
    text = _CONTROL.sub(_plain_control, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
