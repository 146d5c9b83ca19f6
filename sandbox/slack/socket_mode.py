"""Socket Mode in the simulated Slack: `apps.connections.open` and the WebSocket envelope protocol.

Owns everything about delivering to an app over Socket Mode instead of HTTP, as Slack does it:

- the app-level token (`xapp-1-<app id>-...`) the simulator issues; `apps.connections.open` accepts only
  that token (a bot token answers `not_allowed_token_type`, anything else `invalid_auth`) and returns a
  single-use `ws://127.0.0.1:<port>/link/?ticket=...&app_id=...` URL;
- on connect: `{"type": "hello", "num_connections": n, "connection_info": {"app_id"}, "debug_info"}`;
  at most 10 open connections per app: one more gets `{"type": "disconnect", "reason":
  "too_many_websockets"}` and is closed;
- envelopes `{envelope_id, type: events_api|slash_commands|interactive, payload,
  accepts_response_payload, retry_attempt, retry_reason}`, each sent to exactly ONE open connection,
  chosen round robin; acks `{envelope_id, payload?}` are accepted on any connection of the app (the
  client may have replaced the one the envelope went out on);
- `disconnect(reason)`, Slack's `{"type": "disconnect", "reason": ..., "debug_info": {"host"}}`
  messages (https://docs.slack.dev/apis/events-api/using-socket-mode, "Disconnect events"):
  `refresh_requested` (`refresh()`): that connection gets no more envelopes and the client opens a
  new one (the old one closes when the client closes it); `warning`: the connection is about to go
  (it still carries envelopes, and the simulator closes it `close_after` seconds later, 10 by
  default as Slack does); `link_disabled`: Socket Mode was turned off for the app, so every
  connection is told so and closed and nothing is delivered (a payload finds no connection:
  dispatch_failed) until `enable()`. What a client that reconnects meanwhile meets is not in
  Slack's docs: here the WebSocket handshake is refused (HTTP 403), so it backs off instead of
  spinning.

Deliveries are recorded (`deliveries`) with the connection that carried them and the ack, so tests can
check "each payload went to exactly one connection". Every change is reported through `on_change`
(the simulator wakes its `wait_for` waiters and the page with it). It needs of the simulator only
what it is given: the app's id, its bot token, the base URL, the clock and `on_change`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from sandbox.slack.types import CommandResponse

MAX_CONNECTIONS = 10
WARNING_CLOSE_S = 10.0  # a `warning` disconnect: Slack closes the connection about 10 s later
DISCONNECT_REASONS = ("warning", "refresh_requested", "link_disabled")
TICKET_LIFETIME = 60.0  # seconds a URL from apps.connections.open may wait before it is used
ENVELOPE_TYPES = ("events_api", "slash_commands", "interactive")


class SocketModeError(Exception):
    """A Web API error from apps.connections.open (`error` is Slack's code)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Connection:
    """One open WebSocket of the app."""

    id: str
    ws: web.WebSocketResponse
    opened_at: float
    ready: bool = False  # hello sent: may carry envelopes
    refreshing: bool = False  # told to reconnect: carries no more envelopes
    received: list[str] = field(default_factory=list)  # envelope ids sent on it


@dataclass
class Delivery:
    """One envelope sent to the app and what came of it."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    connection: str | None  # the connection it went out on; None: no connection was open
    retry_attempt: int = 0
    retry_reason: str = ""
    acked: bool = False
    acked_on: str | None = None  # the connection the ack came back on
    ack_payload: dict[str, Any] | None = None
    timed_out: bool = False

    def response(self) -> CommandResponse:
        """The ack as the HTTP-mode equivalent: 200 with the ack payload as a JSON body; status 0 with
        `timed_out` when no ack came in time; status 0 when no connection was open (dispatch_failed)."""
        if self.connection is None:
            return CommandResponse(0, "no open Socket Mode connection", None, False)
        if not self.acked:
            return CommandResponse(0, "", None, True)
        if self.ack_payload:
            return CommandResponse(200, json.dumps(self.ack_payload), self.ack_payload, False)
        return CommandResponse(200, "", None, False)


class SocketModeServer:
    """The Socket Mode side of a `SlackSimulator` (available as `sim.socket_mode`), for the app
    `app_id` whose bot token is `bot_token()`; `base_url()` is the simulator's, `clock()` its
    wall clock, and `on_change()` is called on every change.

    Attributes: `app_token` (settable before the bot starts), `connections` (open connections that
    may carry envelopes, in connection order), `all_connections` (every open one), `deliveries`,
    `max_connections`, `enabled` (False after a `link_disabled` disconnect, until `enable()`).
    """

    def __init__(
        self,
        *,
        app_id: str,
        bot_token: Callable[[], str],
        base_url: Callable[[], str],
        clock: Callable[[], float],
        on_change: Callable[[], None],
        app_token: str | None = None,
    ) -> None:
        self.app_id = app_id
        self._bot_token = bot_token
        self._base_url = base_url
        self._clock = clock
        self._changed = on_change
        self.app_token = app_token or (f"xapp-1-{app_id}-{secrets.randbelow(10**13)}-{secrets.token_hex(32)}")
        self.max_connections = MAX_CONNECTIONS
        self.all_connections: list[Connection] = []
        self.deliveries: list[Delivery] = []
        self.opened = 0  # connections ever opened (hello sent)
        self._tickets: dict[str, float] = {}
        self._pending: dict[str, asyncio.Future[tuple[str, dict[str, Any] | None]]] = {}
        self._next = 0
        self.enabled = True
        self._closers: set[asyncio.Task[None]] = set()

    # ---- wiring ----------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/link/", self._websocket)

    async def close(self) -> None:
        """Close every connection (going away), as when Slack's edge restarts."""
        for task in list(self._closers):
            task.cancel()
        for conn in list(self.all_connections):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutting down")
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()

    @property
    def connections(self) -> list[Connection]:
        return [c for c in self.all_connections if c.ready and not c.refreshing and not c.ws.closed]

    # ---- apps.connections.open -------------------------------------------------------------------

    def check_token(self, token: str | None) -> None:
        """Raise SocketModeError unless `token` is the app-level token."""
        if not token:
            raise SocketModeError("not_authed")
        if secrets.compare_digest(token, self._bot_token()):
            raise SocketModeError("not_allowed_token_type")
        if not secrets.compare_digest(token, self.app_token):
            raise SocketModeError("invalid_auth")

    def connections_open(self, token: str | None) -> dict[str, Any]:
        """apps.connections.open: a fresh single-use WebSocket URL for the app."""
        self.check_token(token)
        now = self._clock()
        self._tickets = {t: at for t, at in self._tickets.items() if now - at <= TICKET_LIFETIME}
        ticket = str(uuid.uuid4())
        self._tickets[ticket] = now
        base = self._base_url().replace("http://", "ws://", 1)
        return {"url": f"{base}link/?ticket={ticket}&app_id={self.app_id}"}

    # ---- the WebSocket -----------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:  # before the ticket is spent: the same URL works once Socket Mode is back
            raise web.HTTPForbidden(text="Socket Mode is disabled for this app (link_disabled)")
        ticket = request.query.get("ticket", "")
        issued = self._tickets.pop(ticket, None)
        if issued is None or self._clock() - issued > TICKET_LIFETIME:
            raise web.HTTPUnauthorized(text="invalid or used ticket: call apps.connections.open")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if len(self.all_connections) >= self.max_connections:
            await ws.send_json({"type": "disconnect", "reason": "too_many_websockets", "debug_info": {}})
            await ws.close()
            return ws
        conn = Connection(id=f"conn-{uuid.uuid4().hex[:10]}", ws=ws, opened_at=self._clock())
        self.all_connections.append(conn)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self.all_connections),
                    "debug_info": {"host": "applink-sim", "build_number": 1, "connection": conn.id},
                    "connection_info": {"app_id": self.app_id},
                }
            )
            conn.ready = True
            self.opened += 1
            self._changed()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
        finally:
            self.all_connections.remove(conn)
            self._changed()
        return ws

    def _on_text(self, conn: Connection, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        envelope_id = message.get("envelope_id")
        fut = self._pending.get(str(envelope_id)) if envelope_id else None
        if fut is None or fut.done():
            return  # unknown, late or repeated ack: Slack ignores it too
        payload = message.get("payload")
        fut.set_result((conn.id, payload if isinstance(payload, dict) else None))

    def _pick(self) -> Connection | None:
        """The next connection, round robin over those that may carry envelopes."""
        open_ = self.connections
        if not open_ or not self.enabled:
            return None
        conn = open_[self._next % len(open_)]
        self._next += 1
        return conn

    # ---- delivering --------------------------------------------------------------------------------

    async def deliver(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        ack_timeout: float = 3.0,  # Slack's limit, part of the protocol, not a test sleep
    ) -> Delivery:
        """Send one envelope to exactly one open connection and wait (at most `ack_timeout`) for its ack."""
        if type_ not in ENVELOPE_TYPES:
            raise ValueError(f"unknown envelope type {type_!r}")
        delivery = Delivery(
            envelope_id=str(uuid.uuid4()),
            type=type_,
            payload=dict(payload),
            connection=None,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        conn = self._pick()
        self.deliveries.append(delivery)
        if conn is None:
            self._changed()
            return delivery
        delivery.connection = conn.id
        envelope: dict[str, Any] = {
            "envelope_id": delivery.envelope_id,
            "payload": delivery.payload,
            "type": type_,
            "accepts_response_payload": accepts_response_payload,
        }
        if type_ == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        fut: asyncio.Future[tuple[str, dict[str, Any] | None]] = asyncio.get_running_loop().create_future()
        self._pending[delivery.envelope_id] = fut
        try:
            conn.received.append(delivery.envelope_id)
            await conn.ws.send_str(json.dumps(envelope, separators=(",", ":")))
            async with asyncio.timeout(ack_timeout):
                acked_on, ack_payload = await fut
            delivery.acked, delivery.acked_on, delivery.ack_payload = True, acked_on, ack_payload
        except (TimeoutError, ConnectionError):
            delivery.timed_out = True
        finally:
            self._pending.pop(delivery.envelope_id, None)
            self._changed()
        return delivery

    async def refresh(self, connection: str | None = None) -> list[str]:
        """Ask one connection (by id) or every open one to reconnect (`refresh_requested`); returns
        the ids asked. The client then calls apps.connections.open and connects again."""
        return await self.disconnect("refresh_requested", connection)

    async def disconnect(
        self, reason: str, connection: str | None = None, *, close_after: float = WARNING_CLOSE_S
    ) -> list[str]:
        """Send Slack's `disconnect` message with `reason` ("warning", "refresh_requested" or
        "link_disabled") to one connection (by id) or to every open one; returns the ids told.

        `refresh_requested`: those connections carry no more envelopes. `warning`: they still do,
        and are closed `close_after` seconds later. `link_disabled` (always every connection):
        Socket Mode is off (`enabled` False), every connection is closed at once, and nothing is
        delivered until `enable()`."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"reason must be one of {', '.join(DISCONNECT_REASONS)}, not {reason!r}")
        if reason == "link_disabled":
            if connection is not None:
                raise ValueError("link_disabled turns Socket Mode off for the app: every connection")
            self.enabled = False
        targets = [c for c in self.connections if connection is None or c.id == connection]
        if connection is not None and not targets:
            raise KeyError(f"no open connection {connection!r}")
        if reason != "warning":
            for conn in targets:
                conn.refreshing = True
        self._changed()
        for conn in targets:
            with contextlib.suppress(ConnectionError):
                await conn.ws.send_json(
                    {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sim"}}
                )
        if reason == "link_disabled":
            for conn in targets:
                with contextlib.suppress(Exception):
                    await conn.ws.close(code=1000, message=b"link_disabled")
        elif reason == "warning":
            for conn in targets:
                task = asyncio.create_task(self._close_later(conn, close_after), name=f"sim:close:{conn.id}")
                self._closers.add(task)
                task.add_done_callback(self._closers.discard)
        return [c.id for c in targets]

    async def _close_later(self, conn: Connection, delay: float) -> None:
        await asyncio.sleep(delay)  # Slack's grace period after a `warning`, not a test wait
        conn.refreshing = True
        self._changed()
        with contextlib.suppress(Exception):
            await conn.ws.close(code=1000, message=b"warning")

    def enable(self) -> None:
        """Turn Socket Mode back on after `link_disabled`: connections are accepted again."""
        self.enabled = True
        self._changed()
