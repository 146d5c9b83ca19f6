"""Slack's Web API rate limits: per-method tiers and chat.postMessage's per-channel pace.

Owns the decision "would Slack answer this call with HTTP 429, and with which `Retry-After`?", so
the bot's reporter is exercised against the limits it will meet in production (Tier 3 for
chat.update, about one chat.postMessage per second per channel with short bursts).

Each limit is a token bucket: a tier of N calls per minute refills at N/60 calls per second and
holds at most N (Slack tolerates bursts within the minute); chat.postMessage refills one token per
second per channel with a small burst. Pure: the clock is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

TIER_PER_MINUTE: dict[int, int] = {1: 1, 2: 20, 3: 50, 4: 100}

METHOD_TIERS: dict[str, int] = {
    "api.test": 4,
    "auth.test": 4,
    "chat.update": 3,
    "chat.delete": 3,
    "chat.postEphemeral": 4,
    "chat.getPermalink": 4,
    "chat.meMessage": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.info": 3,
    "conversations.list": 2,
    "conversations.members": 4,
    "users.info": 4,
    "users.list": 2,
    "usergroups.list": 2,
    "usergroups.users.list": 2,
    "views.open": 4,
    "views.update": 4,
    "views.push": 4,
    "views.publish": 4,
    "reactions.add": 3,
    "reactions.remove": 3,
}
POST_MESSAGE_PER_SECOND = 1.0
POST_MESSAGE_BURST = 5


@dataclass
class _Bucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; return 0.0 on success or the seconds until one is available."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


@dataclass
class RateLimiter:
    """Token buckets keyed by method (and by channel for chat.postMessage).

    `tiers` maps method -> tier (unlisted methods get Tier 3); `post_message_per_second` and
    `post_message_burst` shape chat.postMessage per channel. Change them freely before or during
    a test; `reset()` refills every bucket.
    """

    tiers: dict[str, int] = field(default_factory=lambda: dict(METHOD_TIERS))
    post_message_per_second: float = POST_MESSAGE_PER_SECOND
    post_message_burst: int = POST_MESSAGE_BURST
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def reset(self) -> None:
        self._buckets.clear()

    def check(self, method: str, channel: str | None, now: float) -> int | None:
        """None if the call may proceed (and count it), else the integer Retry-After in seconds."""
        if method == "chat.postMessage":
            key = (method, channel or "")
            capacity, rate = float(self.post_message_burst), self.post_message_per_second
        else:
            per_minute = TIER_PER_MINUTE[self.tiers.get(method, 3)]
            key = (method, "")
            capacity, rate = float(per_minute), per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, rate, capacity, now)
        wait = bucket.take(now)
        if wait == 0.0:
            return None
        return max(1, math.ceil(wait))
