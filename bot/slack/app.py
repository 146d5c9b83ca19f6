"""Builds the Bolt app: one AsyncWebClient (one aiohttp session, 429s retried), signature checks on,
listeners registered by one function. Built by a factory, never at import time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.catalog import Catalog
from bot.releases.engine import Engine
from bot.slack.health import Identity, Observer
from bot.slack.listeners import Handlers

SLACK_API_URL = "https://slack.com/api/"


def web_client(
    token: str,
    session: aiohttp.ClientSession,
    api_url: str | None,
    *,
    observer: AsyncRetryHandler | None = None,
) -> AsyncWebClient:
    """The bot's Web API client: 429s retried after their Retry-After; `observer` (first in line,
    never retrying) sees every answer."""
    handlers: list[AsyncRetryHandler] = [observer] if observer is not None else []
    handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return AsyncWebClient(
        token=token,
        base_url=api_url or SLACK_API_URL,
        session=session,
        retry_handlers=handlers,
    )


def build_app(
    client: AsyncWebClient,
    signing_secret: str,
    engine: Engine,
    catalog: Catalog,
    *,
    identity: Identity | None = None,
    environments: Mapping[str, tuple[str, str]] | None = None,
    observer: Observer | None = None,
) -> tuple[AsyncApp, Handlers]:
    """The Bolt app and the handlers that own the work done after each ack (drain them on shutdown).

    process_before_response=True: Bolt runs each listener inline and answers when it returns. The
    listeners ack and hand everything else to tasks of their own, so the answer leaves at once (with
    False Bolt polls for the ack every 10 ms and runs listeners in untracked tasks)."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        request_verification_enabled=True,
        process_before_response=True,
        authorize=_known(identity, client.token or "") if identity is not None else None,
    )
    handlers = Handlers(
        engine,
        catalog,
        client,
        bot_user_id=identity.user_id if identity is not None else "",
        environments=environments or {},
        observer=observer,
    )
    handlers.register(app)
    return app, handlers


def _known(identity: Identity, token: str) -> Callable[..., Awaitable[AuthorizeResult]]:
    """Bolt's authorization from the auth.test made at start-up: Bolt then asks Slack nothing more
    (without it, it calls auth.test again on the first request, and cannot answer at all when the
    token was revoked before that)."""
    result = AuthorizeResult(
        enterprise_id=identity.enterprise_id,
        team_id=identity.team_id,
        bot_user_id=identity.user_id,
        bot_id=identity.bot_id,
        bot_token=token,
        bot_scopes=list(identity.scopes or ()),
    )

    async def authorize(**_: Any) -> AuthorizeResult:
        return result

    return authorize


def bolt_request(
    raw_body: str,
    query: str,
    headers: dict[str, str | Sequence[str]],
    body: dict[str, Any] | None = None,
) -> AsyncBoltRequest:
    """An AsyncBoltRequest whose form body is parsed correctly: Bolt treats any form body that merely
    *contains* the word "payload" (say, `/release payload-api v2`) as an interaction and drops it.

    `body`, when given, is the body as `bot.slack.edge` checked it: Bolt then works on exactly that
    (its signature check still covers `raw_body`)."""
    request = AsyncBoltRequest(body=raw_body, query=query, headers=headers)
    if body is not None:
        request.body = body
        request.context = build_async_context(AsyncBoltContext({}), body)
    elif request.body == {} and raw_body and not raw_body.lstrip().startswith("{"):
        fields = dict(parse_qsl(raw_body, keep_blank_values=True))
        if "payload" not in fields:
            request.body = fields
            request.context = build_async_context(AsyncBoltContext({}), fields)
    return request
