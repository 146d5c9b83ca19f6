"""Socket Mode: the bot receives Slack's payloads over a WebSocket it opens, instead of on /slack/events.

Owns the connection of one process: slack_sdk's aiohttp `SocketModeClient` (reconnects after a
`disconnect` envelope or a dead socket, answers pings), fed by the SAME Bolt `AsyncApp` as HTTP mode,
so the listeners and their ack semantics are identical; only the transport differs:

- `apps.connections.open` goes through the bot's Web API client, so it goes to `SLACK_API_URL` (the
  simulator in tests) with the app-level token (`xapp-`) passed per call;
- each envelope becomes an `AsyncBoltRequest(mode="socket_mode")` (no signature: the socket is the
  authentication) with the Events API retry headers, as Bolt's own adapter builds it; the ack goes back
  as `{envelope_id, payload?}` as soon as the listener acks, and the time to it is measured
  (`release_bot_ack_seconds{mode="socket"}`);
- a bad app token fails start-up with a clear error instead of slack_sdk's endless retries;
- `not_ready()` says why the bot cannot take envelopes now: it follows slack_sdk's own
  `is_connected()` (which reconnects after a `disconnect` envelope or a dead socket without telling
  the bot's listeners), and a `link_disabled` disconnect (Socket Mode turned off for the app) counts
  as disconnected from the moment it arrives until Slack says hello on a new connection.

Several replicas each hold a connection; Slack gives each payload to exactly one of them, and release
state lives in the cluster, so any replica can handle any click.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMessage, WSMsgType
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError
from bot.metrics import Metrics

log = logging.getLogger(__name__)

PING_INTERVAL_S = 10.0  # as Bolt's adapter: a dead socket is noticed (and replaced) within ~40 s
HELLO_TIMEOUT_S = 15.0  # start-up deadline for Slack's `hello` on the first connection
FATAL_ERRORS = frozenset({"invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked"})


class OneLineErrors(logging.Filter):
    """slack_sdk logs every failed reconnect attempt with a traceback (every ping interval while
    Socket Mode is disabled): keep the line and the error, drop the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})", None
            record.exc_info, record.exc_text = None, None
        return True


SDK_LOG = logging.getLogger("release_bot.socket_mode.sdk")
SDK_LOG.addFilter(OneLineErrors())


def bolt_request(req: SocketModeRequest) -> AsyncBoltRequest:
    """The Bolt request for one envelope: its payload, and the Events API retry headers."""
    headers: dict[str, str | Sequence[str]] = {}
    if req.retry_attempt is not None:
        headers["x-slack-retry-num"] = str(req.retry_attempt)
    if req.retry_reason:
        headers["x-slack-retry-reason"] = req.retry_reason
    return AsyncBoltRequest(mode="socket_mode", body=req.payload, headers=headers or None)


def ack_response(envelope_id: str, resp: BoltResponse) -> SocketModeResponse | None:
    """What to send back for Bolt's answer: the ack with the answer as payload, or None when Bolt did
    not ack (no listener, an error), which Slack treats as a failed delivery, as in HTTP mode."""
    if resp.status != 200:
        return None
    body = resp.body or ""
    if not body:
        return SocketModeResponse(envelope_id=envelope_id)
    content_type = (resp.headers.get("content-type") or [""])[0]
    if content_type.startswith("application/json"):
        payload: Any = json.loads(body)
        return SocketModeResponse(envelope_id=envelope_id, payload=payload)
    return SocketModeResponse(envelope_id=envelope_id, payload={"text": body})


class SocketMode:
    """One Socket Mode connection for `bolt`. `await start()`, then `await stop()` at shutdown."""

    def __init__(self, bolt: AsyncApp, app_token: str, client: AsyncWebClient, metrics: Metrics) -> None:
        self.bolt = bolt
        self.metrics = metrics
        self.app_token = app_token
        self.client = client
        self.hellos = 0
        self._hello = asyncio.Event()
        self._socket: SocketModeClient | None = None
        self._disabled_since: datetime | None = None  # a link_disabled disconnect, until the next hello
        self._down_since: datetime | None = None

    async def not_ready(self) -> str | None:
        """Why no envelope can reach this process now, or None while the connection is up."""
        socket = self._socket
        if socket is None:
            return "the Socket Mode connection is closed"
        if self._disabled_since is not None:
            return (
                f"Slack disabled Socket Mode for the app (link_disabled) at "
                f"{self._disabled_since:%Y-%m-%dT%H:%M:%SZ}; reconnecting once it is enabled again"
            )
        if await socket.is_connected():
            self._down_since = None
            return None
        self._down_since = self._down_since or datetime.now(UTC)
        return f"the Socket Mode connection is down since {self._down_since:%Y-%m-%dT%H:%M:%SZ}; reconnecting"

    async def start(self, hello_timeout: float = HELLO_TIMEOUT_S) -> None:
        """Open the connection and wait for Slack's hello. ConfigError when the app token is refused."""
        socket = SocketModeClient(
            app_token=self.app_token,
            logger=SDK_LOG,
            web_client=self.client,
            ping_interval=PING_INTERVAL_S,
        )
        socket.message_listeners.append(self._on_message)
        socket.on_message_listeners.append(self._on_raw)
        socket.socket_mode_request_listeners.append(self._on_request)
        self._socket = socket
        try:
            socket.wss_uri = await socket.issue_new_wss_url()
        except SlackApiError as e:
            await self.stop()
            error = str(e.response.get("error", "")) if e.response is not None else ""
            if error in FATAL_ERRORS:
                raise ConfigError(f"Slack refused SLACK_APP_TOKEN for Socket Mode: {error}") from e
            raise
        await socket.connect()  # type: ignore[no-untyped-call]
        try:
            async with asyncio.timeout(hello_timeout):
                await self._hello.wait()
        except TimeoutError:
            await self.stop()
            raise ConfigError(f"no hello from Slack's Socket Mode within {hello_timeout:.0f} s") from None

    async def stop(self) -> None:
        """Close the connection: no new envelopes reach this process (Slack sends them to others)."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()  # type: ignore[no-untyped-call]

    async def _on_raw(self, message: WSMessage) -> None:
        """Every text frame, before slack_sdk handles it: slack_sdk acts on `disconnect` itself and
        never hands it to the message listeners."""
        if message.type != WSMsgType.TEXT or '"disconnect"' not in str(message.data):
            return
        try:
            frame = json.loads(message.data)
        except ValueError:
            return
        if not isinstance(frame, dict) or frame.get("type") != "disconnect":
            return
        reason = str(frame.get("reason") or "")
        if reason == "link_disabled":
            self._disabled_since = self._disabled_since or datetime.now(UTC)
            log.warning("Slack disabled Socket Mode for the app (link_disabled)", extra={"reason": reason})
        else:
            log.info("socket mode reconnecting", extra={"reason": reason})

    async def _on_message(
        self, _: AsyncBaseSocketModeClient, message: dict[str, Any], __: str | None
    ) -> None:
        if message.get("type") == "hello":
            self.hellos += 1
            self._disabled_since = None
            self._hello.set()
            log.info(
                "socket mode connected",
                extra={"connections": message.get("num_connections"), "hellos": self.hellos},
            )

    async def _on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        started = time.perf_counter()
        # Logged before the ack goes out, so whoever sees the ack can find this line.
        log.info("socket mode envelope", extra={"envelope_id": req.envelope_id, "envelope_type": req.type})
        resp = await self.bolt.async_dispatch(bolt_request(req))
        ack = ack_response(req.envelope_id, resp)
        if ack is None:
            log.warning(
                "socket mode envelope not acked",
                extra={"envelope_id": req.envelope_id, "envelope_type": req.type, "status": resp.status},
            )
            return
        await client.send_socket_mode_response(ack)
        self.metrics.ack("socket", req.type, time.perf_counter() - started)
