"""Builds the Bolt app: one AsyncWebClient (one aiohttp session, 429s retried), signature checks on,
listeners registered by one function. Built by a factory, never at import time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.catalog import Catalog
from bot.releases.engine import Engine
from bot.slack.listeners import Handlers

SLACK_API_URL = "https://slack.com/api/"


def web_client(token: str, session: aiohttp.ClientSession, api_url: str | None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=api_url or SLACK_API_URL,
        session=session,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )


def build_app(
    client: AsyncWebClient, signing_secret: str, engine: Engine, catalog: Catalog
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
    )
    handlers = Handlers(engine, catalog, client)
    handlers.register(app)
    return app, handlers


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
