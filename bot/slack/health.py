"""The bot's standing with Slack: the token checked at start-up, and every answer Slack gives after.

- `verify`: `auth.test` with the bot token at start-up. A token Slack refuses (`invalid_auth`,
  `token_revoked`, `account_inactive`, ...) or one without a scope the bot needs (read from the
  `x-oauth-scopes` header Slack puts on every Web API answer) is a `ConfigError` that says what to do.
- `Observer`: a slack_sdk retry handler that never retries and sees every answer (each HTTP attempt,
  retried ones included) on the client it is given to. It counts them by Slack's own code
  (`release_bot_slack_api_results_total{method,error}`: `ok`, `ratelimited`, `not_in_channel`, ...;
  Slack answers errors with HTTP 200, so the HTTP status cannot tell them apart) and feeds
  `SlackHealth`.
- `SlackHealth`: whether Slack refuses the bot token now (readiness turns false while it does). It is
  learnt from the bot's own calls only: the bot never polls Slack, so a token that works again shows
  as soon as the next call with it succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError
from bot.metrics import Metrics, slack_method

log = logging.getLogger(__name__)

# What Slack answers when it refuses the token itself, and what to do about each.
TOKEN_ERRORS: dict[str, str] = {
    "not_authed": "no token was sent: set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...)",
    "invalid_auth": (
        "the token is not valid: copy the Bot User OAuth Token (xoxb-...) from the app's "
        "OAuth & Permissions page into SLACK_BOT_TOKEN"
    ),
    "token_revoked": (
        "the token was revoked (the app was uninstalled or its token regenerated): install the app "
        "again and put the new xoxb- token in SLACK_BOT_TOKEN"
    ),
    "token_expired": (
        "the token expired (token rotation is on): turn token rotation off for this app and reinstall it"
    ),
    "account_inactive": (
        "the bot user or its workspace was deactivated: install the app again and put the new xoxb- "
        "token in SLACK_BOT_TOKEN"
    ),
    "not_allowed_token_type": "this is not a bot token: SLACK_BOT_TOKEN must be an xoxb- token",
}
# Answers that say nothing about the token: Slack or the network failed, try again.
TRANSIENT = frozenset({"unreachable", "ratelimited", "internal_error", "fatal_error", "service_unavailable"})
START_ATTEMPTS = 4  # auth.test at start-up, when Slack cannot be reached or fails on its side
START_BACKOFF_S = 1.0


@dataclass(frozen=True)
class Identity:
    """Who the bot is in Slack (from auth.test) and what its token may do."""

    user_id: str
    user: str
    team_id: str
    scopes: tuple[str, ...] | None  # None: Slack did not say (no x-oauth-scopes header)
    bot_id: str = ""
    enterprise_id: str | None = None


class SlackHealth:
    """Whether Slack currently refuses the bot token, learnt from the bot's own calls."""

    def __init__(self) -> None:
        self.token_error: str | None = None
        self.since: datetime | None = None

    def answered(self, code: str) -> None:
        """One answer to a call made with the bot token: `ok` or Slack's error code."""
        if code in TOKEN_ERRORS:
            if self.token_error != code:
                log.error("Slack refuses the bot token: %s", code, extra={"error": code})
                self.token_error, self.since = code, datetime.now(UTC)
        elif code not in TRANSIENT and not code.startswith("http_"):
            if self.token_error is not None:
                log.info("Slack takes the bot token again", extra={"error": code})
            self.token_error, self.since = None, None

    def reason(self) -> str | None:
        """Why the bot cannot work with Slack now, or None."""
        if self.token_error is None or self.since is None:
            return None
        return (
            f"Slack refuses the bot token ({self.token_error}) since {self.since:%Y-%m-%dT%H:%M:%SZ}: "
            f"{TOKEN_ERRORS[self.token_error]}"
        )


def answer_code(response: HttpResponse | None, error: Exception | None) -> str:
    """Slack's code for one answer: "ok", Slack's `error`, "ratelimited" for a bare 429,
    "http_<status>" for an answer that is not Slack's, "unreachable" for none."""
    if response is None:
        return "unreachable"
    body: Any = response.body
    if body is None and response.data:
        text = response.data.decode("utf-8", errors="replace").strip()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
            if text == "ok" and response.status_code == 200:
                return "ok"  # response_url answers a plain "ok"
            if response.status_code != 200 and text.isidentifier() and text.islower() and len(text) <= 40:
                return text  # response_url answers errors as plain words: used_url, expired_url, ...
    if isinstance(body, Mapping):
        if body.get("ok") is True:
            return "ok"
        error = body.get("error")
        if isinstance(error, str) and error:
            return error
    if response.status_code == 429:
        return "ratelimited"
    if response.status_code == 200 and response.data is None and body is None:
        return "ok"
    return f"http_{response.status_code}"


class Observer(AsyncRetryHandler):
    """Counts every answer on the client it is given to (first in its `retry_handlers`) and tells
    `health` about the ones to calls made with `token`. Never asks for a retry itself."""

    def __init__(self, metrics: Metrics, health: SlackHealth | None = None, token: str = "") -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics
        self.health = health
        self._bearer = f"Bearer {token}" if token else ""

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = slack_method(urlparse(request.url).path)
        if method == "other":
            method = "response_url"
        code = answer_code(response, error)
        self.metrics.slack_result(method, code)
        authorization = request.headers.get("Authorization") or request.headers.get("authorization") or []
        if self.health is not None and self._bearer and self._bearer in authorization:
            self.health.answered(code)
        return False


def count_hook(observer: Observer | None, status: int | None, body: str = "") -> None:
    """Count one response_url answer (slack_sdk's webhook client shows retry handlers only its
    failures): `status` None when it did not answer."""
    if observer is None:
        return
    response = None if status is None else HttpResponse(status_code=status, headers={}, data=body.encode())
    observer.metrics.slack_result("response_url", answer_code(response, None))


def scopes_of(headers: Mapping[str, Any] | None) -> tuple[str, ...] | None:
    """The token's scopes from Slack's `x-oauth-scopes` header (None when absent)."""
    if headers is None:
        return None
    value = headers.get("x-oauth-scopes")
    if value is None:
        value = next((v for k, v in headers.items() if str(k).lower() == "x-oauth-scopes"), None)
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if value is None:
        return None
    return tuple(s.strip() for s in str(value).split(",") if s.strip())


async def verify(client: AsyncWebClient, needed: Mapping[str, str]) -> Identity:
    """auth.test with the bot token: who the bot is, or ConfigError saying what is wrong with the
    token. `needed` maps each scope the bot needs to why; a token without one of them is refused.
    Slack failing on its side or not answering is tried again a few times first."""
    for attempt in range(START_ATTEMPTS):
        try:
            resp = await client.auth_test()
            break
        except SlackApiError as e:
            error = str(e.response.get("error") or f"http_{e.response.status_code}")
            if error in TOKEN_ERRORS:
                raise ConfigError(f"Slack refused SLACK_BOT_TOKEN ({error}): {TOKEN_ERRORS[error]}") from None
            if error not in TRANSIENT and e.response.status_code < 500:
                raise ConfigError(f"Slack's auth.test answered {error} for SLACK_BOT_TOKEN") from None
            problem = f"Slack's auth.test answered {error}"
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            problem = f"cannot reach Slack's Web API at {client.base_url} ({type(e).__name__}: {e})"
        if attempt + 1 == START_ATTEMPTS:
            raise ConfigError(f"{problem}; gave up after {START_ATTEMPTS} attempts") from None
        log.warning("%s; trying again", problem)
        await asyncio.sleep(START_BACKOFF_S * 2**attempt)
    scopes = scopes_of(resp.headers)
    identity = Identity(
        user_id=str(resp.get("user_id") or ""),
        user=str(resp.get("user") or ""),
        team_id=str(resp.get("team_id") or ""),
        scopes=scopes,
        bot_id=str(resp.get("bot_id") or ""),
        enterprise_id=str(resp["enterprise_id"]) if resp.get("enterprise_id") else None,
    )
    if scopes is None:
        log.warning("Slack did not say which scopes the bot token has (no x-oauth-scopes header)")
        return identity
    missing = [scope for scope in needed if scope not in scopes]
    if missing:
        why = "; ".join(f"{scope}: {needed[scope]}" for scope in missing)
        raise ConfigError(
            f"SLACK_BOT_TOKEN lacks the scope{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"({why}). Add {'them' if len(missing) > 1 else 'it'} to the app's Bot Token Scopes (or paste "
            "the manifest `release-bot manifest` prints) and reinstall the app; the token has: "
            f"{', '.join(scopes) or 'no scopes'}"
        )
    return identity
