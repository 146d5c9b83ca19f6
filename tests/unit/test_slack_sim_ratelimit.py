"""Rate limits: tiers per minute, chat.postMessage per channel, integer Retry-After."""

from __future__ import annotations

from sandbox.slack.ratelimit import RateLimiter


def test_tier_3_allows_fifty_then_answers_with_retry_after() -> None:
    limiter = RateLimiter()
    assert all(limiter.check("chat.update", None, 100.0) is None for _ in range(50))
    retry_after = limiter.check("chat.update", None, 100.0)
    assert retry_after is not None
    assert retry_after >= 1
    assert isinstance(retry_after, int)
    assert limiter.check("chat.update", None, 100.0 + retry_after) is None


def test_post_message_is_paced_per_channel_with_a_short_burst() -> None:
    limiter = RateLimiter()
    assert all(
        limiter.check("chat.postMessage", "C1", 0.0) is None for _ in range(limiter.post_message_burst)
    )
    assert limiter.check("chat.postMessage", "C1", 0.0) == 1
    assert limiter.check("chat.postMessage", "C2", 0.0) is None
    assert limiter.check("chat.postMessage", "C1", 1.0) is None


def test_tiers_are_independent_and_adjustable() -> None:
    limiter = RateLimiter()
    limiter.tiers["users.info"] = 1
    assert limiter.check("users.info", None, 0.0) is None
    assert limiter.check("users.info", None, 0.0) == 60
    assert limiter.check("conversations.history", None, 0.0) is None
    limiter.reset()
    assert limiter.check("users.info", None, 0.0) is None
