"""The Slack simulator: a local Web API server, response_url endpoints, read-back, and the page.

Owns everything HTTP about the simulated Slack, on one aiohttp server bound to 127.0.0.1:

- `<api_url><method>` (api_url ends with `/api/`): Slack's Web API with Slack's encodings (JSON body
  with a Bearer token, form body, query string; token in the Authorization header or a `token`
  form/query parameter), Slack's response shapes and error codes, per-tier rate limits (HTTP 429 +
  integer `Retry-After`), and scripted faults. The semantics live in `workspace.py`.
- `/hooks/response/<token>`: response_url endpoints (5 uses, 30 minutes).
- `apps.connections.open` and `/link/`: Socket Mode (app token, WebSocket envelopes), in `socket_mode.py`.
- `/sim/...`: JSON read-back (history, threads, ephemerals, API call log, the emoji table, a person's
  open modal and Home tab), live change notifications (Server-Sent Events), and actions the page asks
  for (run a slash command, click a button, choose in or submit or close a modal, open the Home tab)
  which go to the bot as real signed requests through a `SlackPlayer`.
- `/`: the channel page (`page.html`, a single static file).
- optionally a control route group (`mount_control`, e.g. the sandbox's `/control/...`); the page
  then shows its panel.

Every Web API answer to a known token carries `x-oauth-scopes` (the token's scopes) and
`x-accepted-oauth-scopes` (what the method accepts), as Slack's do (Slack's SDKs read both: the Node
SDK's WebClient puts them in `response_metadata.scopes`/`acceptedScopes`).

Tests use the Python API (`history`, `replies`, `ephemerals`, `calls`, `fault`, `wait_for`, `player`,
`workspace.views` for modals and Home tabs,
and for Slack's rules: `set_scopes`, `revoke_token`, `add_private_channel`, `open_dm`, `set_member`,
`set_bot_membership`, `archive`, `enterprise_install`, `socket_mode.disconnect`).
Every change to the workspace, the call log or the pending faults wakes `wait_for` waiters and the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from sandbox.slack.client import SlackPlayer
from sandbox.slack.emoji import emoji_table
from sandbox.slack.ratelimit import RateLimiter
from sandbox.slack.socket_mode import SocketModeError, SocketModeServer
from sandbox.slack.types import ApiCall as ApiCall
from sandbox.slack.types import CommandResponse
from sandbox.slack.workspace import (
    METHODS,
    SLACKBOT_ID,
    ApiError,
    Channel,
    Message,
    Workspace,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

_PAGE = Path(__file__).with_name("page.html")
_DEFAULT_USERS: Sequence[str] = ("alice", "bob", "carol", "mallory")
_DEFAULT_USERGROUPS: Mapping[str, Sequence[str]] = {"release-managers": ("alice",), "sre": ("bob", "carol")}


@dataclass
class _Fault:
    remaining: int
    error: str | None
    status: int | None
    hang: bool
    hang_seconds: float | None = None

    def describe(self) -> dict[str, Any]:
        """The fault as the control endpoints show it."""
        shown: dict[str, Any] = {"remaining": self.remaining}
        for key in ("error", "status", "hang_seconds"):
            if getattr(self, key) is not None:
                shown[key] = getattr(self, key)
        if self.hang:
            shown["hang"] = True
        return shown


@dataclass
class _Changes:
    """A version counter plus an event replaced on every change (edge-triggered wake-ups)."""

    version: int = 0
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def bump(self) -> None:
        self.version += 1
        self.event.set()
        self.event = asyncio.Event()


class SlackSimulator:
    """A faithful local Slack workspace with one app installed (the bot under test).

    Args:
        users: people in the workspace (names; ids are derived, see `users`).
        channels: public channels (names); every user and the bot are members.
        usergroups: handle -> member names (default: release-managers with alice, sre with bob and
            carol, each keeping only the members that are among `users`).
        bot_url: where Slack would send slash commands, clicks and events (settable later).
        rate_limits: answer over-limit calls with HTTP 429 (also the runtime attribute).
        signing_secret, bot_token: fixed credentials (random ones by default).
        clock: wall-clock seconds for message ts and response_url/trigger expiry (settable as
            `sim.clock`; rate limits always use the monotonic clock).

    Attributes after `start()`: `api_url`, `page_url`, `base_url`. Always: `bot_token`,
    `signing_secret`, `verification_token`, `channels` (name -> id), `users` (name -> id, people
    only), `usergroups` (handle -> id), `bot_user_id`, `bot_id`, `app_id`, `team_id`,
    `workspace` (the model), `calls` (list of ApiCall), `rate_limiter` (tunable buckets),
    `token_revoked` (when True every call answers `token_revoked`; see `revoke_token`), `scopes`
    (the bot token's, by default what the app's manifest asks for; see `set_scopes`),
    `enterprise_install` (an org-wide install; see its docstring).
    """

    def __init__(
        self,
        *,
        users: Sequence[str] = _DEFAULT_USERS,
        channels: Sequence[str] = ("releases",),
        usergroups: Mapping[str, Sequence[str]] | None = None,
        bot_url: str | None = None,
        rate_limits: bool = True,
        signing_secret: str | None = None,
        bot_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        if usergroups is None:
            usergroups = {h: [m for m in ms if m in users] for h, ms in _DEFAULT_USERGROUPS.items()}
        self.workspace = Workspace(
            users=users, channels=channels, usergroups=usergroups, clock=lambda: self._clock()
        )
        self.workspace.on_change = self._changed
        self.bot_url = bot_url
        self.rate_limits = rate_limits
        self.rate_limiter = RateLimiter()
        self.signing_secret = signing_secret or secrets.token_hex(16)
        self.bot_token = bot_token or f"xoxb-{secrets.randbelow(10**12)}-{secrets.token_hex(12)}"
        self.verification_token = secrets.token_urlsafe(18)
        self.token_revoked = False
        ws = self.workspace
        self.channels: dict[str, str] = {c.name: c.id for c in ws.channels.values()}
        self.users: dict[str, str] = {u.name: u.id for u in ws.users.values() if not u.is_bot}
        self.usergroups: dict[str, str] = {handle: gid for gid, (handle, _) in ws.usergroups.items()}
        self.bot_user_id, self.bot_id, self.app_id, self.team_id = ws.bot.id, ws.bot_id, ws.app_id, ws.team_id
        self.calls: list[ApiCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._changes = _Changes()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._control: tuple[str, web.Application] | None = None
        self._page_player: SlackPlayer | None = None
        self.socket_mode = SocketModeServer(
            app_id=self.app_id,
            bot_token=lambda: self.bot_token,
            base_url=lambda: self.base_url,
            clock=lambda: self._clock(),
            on_change=self._changed,
        )

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self._clock = value

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0 picks a free port)."""
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/hooks/response/{token}", self._response_url)
        app.router.add_get("/", self._page)
        app.router.add_get("/sim/state", self._sim_state)
        app.router.add_get("/sim/channels/{channel}/history", self._sim_history)
        app.router.add_get("/sim/channels/{channel}/replies/{ts}", self._sim_replies)
        app.router.add_get("/sim/channels/{channel}/ephemerals/{user}", self._sim_ephemerals)
        app.router.add_get("/sim/channels/{channel}/view", self._sim_view)
        app.router.add_get("/sim/calls", self._sim_calls)
        app.router.add_get("/sim/emoji", self._sim_emoji)
        app.router.add_get("/sim/events", self._sim_events)
        app.router.add_post("/sim/command", self._sim_command)
        app.router.add_post("/sim/click", self._sim_click)
        app.router.add_get("/sim/views", self._sim_views)
        app.router.add_post("/sim/view/action", self._sim_view_action)
        app.router.add_post("/sim/view/submit", self._sim_view_submit)
        app.router.add_post("/sim/view/close", self._sim_view_close)
        app.router.add_post("/sim/home/open", self._sim_home_open)
        self.socket_mode.add_routes(app)
        if self._control is not None:
            prefix, control = self._control
            app.router.add_get(prefix, self._to_control)  # {control_url} itself: its index
            app.add_subapp(prefix, control)
        self._closing.clear()
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        host, bound = runner.addresses[0][:2]
        self._base_url = f"http://{host}:{bound}/"

    async def stop(self) -> None:
        """Close live streams and hung calls, the page's player, then the server."""
        self._closing.set()
        self._changed()
        if self._page_player is not None:
            await self._page_player.close()
            self._page_player = None
        await self.socket_mode.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/`; raises RuntimeError before `start()`."""
        if self._base_url is None:
            raise RuntimeError("SlackSimulator is not started")
        return self._base_url

    @property
    def app_token(self) -> str:
        """The app-level token (`xapp-`) for Socket Mode; see `socket_mode`."""
        return self.socket_mode.app_token

    @property
    def api_url(self) -> str:
        """The Web API base URL for `AsyncWebClient(base_url=...)`; ends with `/api/`."""
        return self.base_url + "api/"

    @property
    def page_url(self) -> str:
        """The channel page."""
        return self.base_url

    def mount_control(self, app: web.Application, prefix: str = "/control") -> None:
        """Serve `app` under `prefix` on this server (same origin as the page, which then shows its
        control panel for it). Call before `start()`."""
        if self._runner is not None:
            raise RuntimeError("mount_control() must be called before start()")
        if not prefix.startswith("/") or prefix.endswith("/") or prefix in ("/api", "/sim", "/hooks"):
            raise ValueError(f"bad control prefix {prefix!r}")
        self._control = (prefix, app)

    @property
    def control_url(self) -> str | None:
        """The mounted control route group's URL (no trailing slash), or None."""
        if self._control is None:
            return None
        return self.base_url.rstrip("/") + self._control[0]

    # ---- read-back -----------------------------------------------------------------------------

    def _channel(self, channel: str) -> Channel:
        try:
            return self.workspace.channel(channel)
        except ApiError:
            raise KeyError(f"no channel {channel!r}") from None

    def history(self, channel_id: str) -> list[Message]:
        """Every message conversations.history would return (roots, newest first; `metadata` included
        as with include_all_metadata=true)."""
        ch = self._channel(channel_id)
        return [self.workspace._public(ch.messages[ts], metadata=True) for ts in reversed(ch.timeline)]

    def replies(self, channel_id: str, ts: str) -> list[Message]:
        """What conversations.replies returns for `ts`: the root, then its replies oldest first."""
        return list(
            self.workspace.conversations_replies(
                {"channel": self._channel(channel_id).id, "ts": ts, "limit": 999, "include_all_metadata": 1}
            )["messages"]
        )

    def message(self, channel_id: str, ts: str) -> Message | None:
        """The current version of one message (root or reply), or None if absent."""
        msg = self._channel(channel_id).messages.get(ts)
        return None if msg is None else self.workspace._public(msg, metadata=True)

    def ephemerals(self, channel_id: str, user_id: str) -> list[Message]:
        """Ephemeral messages shown to one user in a channel, oldest first.

        Each carries `is_ephemeral: True` and `via`: "chat.postEphemeral", "command_response" (the
        synchronous answer to a slash command), "response_url", or "slack_error" (what Slack shows
        when the bot failed to answer a command, posted as Slackbot).
        """
        uid = self.workspace.user(user_id).id
        return [dict(m) for m in self._channel(channel_id).ephemerals.get(uid, [])]

    def calls_to(self, method: str) -> list[ApiCall]:
        """The API calls made to `method`, in order."""
        return [c for c in self.calls if c.method == method]

    def post_user_message(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> Message:
        """Stage a message from a person (no Events API delivery; see SlackPlayer.event)."""
        return self.workspace.post_user_message(channel, user, text, thread_ts)

    def archive(self, channel: str, archived: bool = True) -> None:
        """Archive a channel: posting answers `is_archived`."""
        self._channel(channel).archived = archived
        self._changed()

    def set_bot_membership(self, channel: str, member: bool) -> None:
        """Remove the bot from (or return it to) a channel: posting to a public channel then answers
        `not_in_channel`, every call about a private channel `channel_not_found`."""
        self._channel(channel).bot_is_member = member
        self._changed()

    def set_member(self, channel: str, user: str, member: bool) -> None:
        """Add a person to (or remove them from) a channel: an ephemeral for someone who is not in
        the channel answers `user_not_in_channel`."""
        ch, uid = self._channel(channel), self.workspace.user(user).id
        if member:
            ch.members.add(uid)
        else:
            ch.members.discard(uid)
        self._changed()

    def add_private_channel(self, name: str, members: Sequence[str], *, bot: bool = False) -> str:
        """A private channel with these people in it (names or ids), and the bot when `bot`; its id.

        While the bot is not in it, the bot cannot see it: every call naming it answers
        `channel_not_found`, and slash commands from it carry `channel_name=privategroup`."""
        channel = self.workspace.add_channel(name, members, private=True, bot=bot)
        self.channels[name] = channel.id
        return channel.id

    def open_dm(self, user: str, other: str | None = None) -> str:
        """The id of a DM: `user`'s DM with the app (`other` None), or between `user` and `other`
        (the bot is not in it: calls naming it answer `channel_not_found`)."""
        return self.workspace.open_dm(user, other).id

    @property
    def scopes(self) -> list[str]:
        """The bot token's scopes, as `x-oauth-scopes` and `missing_scope`'s `provided` list them."""
        return list(self.workspace.scopes)

    def set_scopes(self, scopes: Sequence[str]) -> None:
        """Give the bot token exactly these scopes (as reinstalling the app with them would). A method
        whose scope is missing answers `missing_scope`; without `commands` no slash command reaches
        the app."""
        self.workspace.scopes = list(scopes)
        self._changed()

    def revoke_token(self, revoked: bool = True) -> None:
        """Revoke the bot token (the app uninstalled, or the token revoked with auth.revoke): every
        Web API call with it then answers `token_revoked`. `revoke_token(False)` restores it."""
        self.token_revoked = revoked
        self._changed()

    @property
    def enterprise_install(self) -> bool:
        """An org-wide (Enterprise Grid) install of the app. Slash commands then carry
        `enterprise_id`, `enterprise_name` and `is_enterprise_install=true`, clicks `team: null`,
        an `enterprise` and `is_enterprise_install: true`, Events API envelopes the enterprise in their
        `authorizations`, auth.test `is_enterprise_install: true` and `enterprise_id`; chat.postMessage
        refuses channel names (`team_not_found`)."""
        return self.workspace.enterprise_install

    @enterprise_install.setter
    def enterprise_install(self, value: bool) -> None:
        self.workspace.enterprise_install = value
        self._changed()

    # ---- scripted faults and waiting -----------------------------------------------------------

    def fault(
        self,
        method: str,
        times: int = 1,
        *,
        error: str | None = None,
        status: int | None = None,
        hang: bool = False,
        hang_seconds: float | None = None,
    ) -> None:
        """Make the next `times` calls to `method` fail (or answer late).

        `error` answers HTTP 200 `{"ok": false, "error": error}`; `status` answers that HTTP
        status (429 adds `Retry-After: 1` and error "ratelimited"); `hang` never answers (until the
        simulator stops). `hang_seconds` delays the answer by that long: the call is then answered
        normally, or with `error`/`status` when given (a simulator stopping meanwhile answers 503).
        `method` may be a Web API method, "response_url", or "*" for any call. Faults queue up in
        the order given.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if hang_seconds is not None and not 0 <= hang_seconds < float("inf"):
            raise ValueError("hang_seconds must be a finite number of seconds, at least 0")
        if not (error or status or hang or hang_seconds is not None):
            error = "internal_error"
        self._faults.setdefault(method, []).append(_Fault(times, error, status, hang, hang_seconds))
        self._changed()

    def clear_faults(self) -> None:
        self._faults.clear()
        self._changed()

    def pending_faults(self) -> dict[str, list[dict[str, Any]]]:
        """The faults not used up yet, per method, in the order they apply."""
        return {m: [f.describe() for f in q] for m, q in self._faults.items() if q}

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method, "*"):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                self._changed()  # pending_faults() changed
                return fault
        return None

    def _changed(self) -> None:
        self._changes.bump()

    async def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float = 10.0,  # a deadline, not a sleep: part of this API's contract
    ) -> T:
        """Wait until `predicate()` returns something other than None/False, and return it.

        Re-evaluated on every change (messages, ephemerals, API calls), never on a timer; raises
        TimeoutError naming the last API calls when `timeout` seconds pass first.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._changes.event
                    result = predicate()
                    if result is not None and result is not False:
                        return result
                    await event.wait()
        except TimeoutError:
            recent = ", ".join(f"{c.method}:{'ok' if c.ok else c.error}" for c in self.calls[-8:])
            raise TimeoutError(f"condition not met within {timeout} s; last API calls: [{recent}]") from None

    # ---- players -------------------------------------------------------------------------------

    def player(self, bot_url: str | None = None, *, transport: str = "http") -> SlackPlayer:
        """A new client that plays Slack towards `bot_url` (default: `self.bot_url`), or over the app's
        Socket Mode connections with `transport="socket"`. Close it."""
        return SlackPlayer(self, bot_url=bot_url, transport=transport)

    def record_unknown_command(self, channel_id: str, user_id: str, command: str) -> None:
        """What Slack shows a person who typed a slash command no installed app provides."""
        text = (
            f"{command} is not a valid command. In Slack, all messages that start with the "
            '"/" character are interpreted as commands.'
        )
        fields: Message = {"user": SLACKBOT_ID, "text": text}
        self.workspace.post_ephemeral(self.workspace.channel(channel_id), user_id, fields, via="slack_error")

    def record_command_response(
        self, channel_id: str, user_id: str, command: str, response: CommandResponse
    ) -> None:
        """Show the bot's synchronous answer to a slash command the way Slack does.

        Used by SlackPlayer: a text or JSON body becomes an ephemeral for the user (or a channel
        message when `response_type` is "in_channel"); an empty 200 shows nothing; an error or a
        timeout becomes Slackbot's ephemeral '<command> failed with the error "<reason>"'.
        """
        ws = self.workspace
        channel = ws.channel(channel_id)
        if response.timed_out or response.status != 200:
            if response.timed_out:
                reason = "operation_timeout"
            elif response.status == 0:
                reason = "dispatch_failed"
            else:
                reason = "http_service_error"
            fields: Message = {"user": SLACKBOT_ID, "text": f'{command} failed with the error "{reason}"'}
            ws.post_ephemeral(channel, user_id, fields, via="slack_error")
            return
        body: Mapping[str, Any]
        if response.json is not None and isinstance(response.json, dict):
            body = response.json
        elif response.text.strip():
            body = {"text": response.text}
        else:
            return
        try:
            text, blocks, attachments = ws._content(body)
        except ApiError as e:
            fields = {"user": SLACKBOT_ID, "text": f'{command} failed with the error "{e.error}"'}
            ws.post_ephemeral(channel, user_id, fields, via="slack_error")
            return
        fields = ws._message_fields(text, blocks, attachments)
        if body.get("response_type") == "in_channel":
            ws.add_message(channel, fields)
        else:
            ws.post_ephemeral(channel, user_id, fields, via="command_response")

    # ---- the Web API ---------------------------------------------------------------------------

    @staticmethod
    def _json(
        body: Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            text=json.dumps(body),
            status=status,
            content_type="application/json",
            charset="utf-8",
            headers=headers,
        )

    async def _read_params(self, request: web.Request) -> tuple[dict[str, Any], str | None]:
        params: dict[str, Any] = dict(request.query)
        token = params.pop("token", None)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise ApiError("invalid_json") from None
                if not isinstance(body, dict):
                    raise ApiError("invalid_json")
                body.pop("token", None)  # Slack ignores tokens inside JSON bodies
                params.update(body)
            else:
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
                token = params.pop("token", token)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ").strip()
        return params, token

    def _log(self, method: str, params: Mapping[str, Any], status: int, error: str | None) -> None:
        self.calls.append(ApiCall(method, dict(params), error is None, error, status, self._clock()))
        self._changed()

    async def _delay(self, fault: _Fault) -> bool:
        """Wait out a `hang_seconds` fault; False if the simulator stopped meanwhile."""
        if fault.hang_seconds is None:
            return True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(fault.hang_seconds):
                await self._closing.wait()
        return not self._closing.is_set()

    @staticmethod
    def _answers_normally(fault: _Fault) -> bool:
        """A pure delay: after `hang_seconds` the call is served as usual."""
        return fault.hang_seconds is not None and not (fault.hang or fault.error or fault.status)

    async def _apply_fault(self, method: str, params: Mapping[str, Any], fault: _Fault) -> web.Response:
        if fault.hang:
            self._log(method, params, 0, "hang")
            await self._closing.wait()
            return self._json({"ok": False, "error": "service_unavailable"}, status=503)
        if not await self._delay(fault):
            self._log(method, params, 503, "service_unavailable")
            return self._json({"ok": False, "error": "service_unavailable"}, status=503)
        status = fault.status or 200
        error = fault.error or ("ratelimited" if status == 429 else "internal_error")
        self._log(method, params, status, error)
        headers = {"Retry-After": "1"} if status == 429 else None
        return self._json({"ok": False, "error": error}, status=status, headers=headers)

    def _token_scopes(self, token: str | None) -> list[str] | None:
        """The scopes of a token the simulator issued (None for an unknown, missing or revoked one)."""
        if not token:
            return None
        if secrets.compare_digest(token, self.socket_mode.app_token):
            return ["connections:write"]
        if secrets.compare_digest(token, self.bot_token) and not self.token_revoked:
            return list(self.workspace.scopes)
        return None

    def _scope_headers(self, method: str, token: str | None) -> dict[str, str]:
        """`x-oauth-scopes` (the token's scopes) and `x-accepted-oauth-scopes` (the method's), which
        Slack adds to its Web API answers (read by Slack's SDKs; the Node SDK's WebClient turns them
        into `response_metadata.scopes` and `acceptedScopes`)."""
        scopes = self._token_scopes(token)
        if scopes is None:
            return {}
        if method == "apps.connections.open":
            accepted = ["connections:write"]
        else:
            accepted = self.workspace.accepted_scopes(method)
        return {"x-oauth-scopes": ",".join(scopes), "x-accepted-oauth-scopes": ",".join(accepted)}

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params, token = await self._read_params(request)
        except ApiError as e:
            self._log(method, {}, 200, e.error)
            return self._json({"ok": False, "error": e.error})
        headers = self._scope_headers(method, token)
        fault = self._take_fault(method)
        if fault is not None and self._answers_normally(fault):
            if not await self._delay(fault):
                self._log(method, params, 503, "service_unavailable")
                return self._json({"ok": False, "error": "service_unavailable"}, status=503)
        elif fault is not None:
            return await self._apply_fault(method, params, fault)
        if method == "apps.connections.open":
            # Socket Mode (app token only). Slack documents Tier 1 but lets an app open its connections
            # in a burst, so no rate limit here; scripted faults above still apply.
            try:
                opened = self.socket_mode.connections_open(token)
            except SocketModeError as e:
                self._log(method, params, 200, e.error)
                return self._json({"ok": False, "error": e.error}, headers=headers)
            self._log(method, params, 200, None)
            return self._json({"ok": True, **opened}, headers=headers)
        impl = METHODS.get(method)
        if impl is None:
            self._log(method, params, 200, "unknown_method")
            return self._json({"ok": False, "error": "unknown_method", "req_method": method}, headers=headers)
        auth_error = None
        if method != "api.test":
            if not token:
                auth_error = "not_authed"
            elif secrets.compare_digest(token, self.socket_mode.app_token):
                auth_error = "not_allowed_token_type"
            elif not secrets.compare_digest(token, self.bot_token):
                auth_error = "invalid_auth"
            elif self.token_revoked:
                # "token_revoked: Authentication token is for a deleted user or workspace or the app
                # has been removed" (the error every method documents, e.g.
                # https://docs.slack.dev/reference/methods/auth.test)
                auth_error = "token_revoked"
        if auth_error is not None:
            self._log(method, params, 200, auth_error)
            return self._json({"ok": False, "error": auth_error}, headers=headers)
        if self.rate_limits:
            channel = params.get("channel")
            with contextlib.suppress(ApiError):
                channel = self.workspace.channel(str(channel)).id if channel else None
            retry_after = self.rate_limiter.check(method, channel, time.monotonic())
            if retry_after is not None:
                self._log(method, params, 429, "ratelimited")
                return self._json(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={**headers, "Retry-After": str(retry_after)},
                )
        needed = self.workspace.needed_scope(method, params) if method != "api.test" else None
        if needed is not None:
            # {"ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "..."}: the
            # answer Slack gives a token without the method's scope (the shape quoted in
            # apache/superset#15904 and DataDog/slapr#47).
            self._log(method, params, 200, "missing_scope")
            provided = ",".join(self.workspace.scopes)
            body = {"ok": False, "error": "missing_scope", "needed": needed, "provided": provided}
            return self._json(body, headers=headers)
        try:
            result = impl(self.workspace, params)
        except ApiError as e:
            self._log(method, params, 200, e.error)
            return self._json({"ok": False, "error": e.error, **e.extra}, headers=headers)
        self._log(method, params, 200, None)
        return self._json({"ok": True, **result}, headers=headers)

    async def _response_url(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        fault = self._take_fault("response_url")
        if fault is not None and self._answers_normally(fault):
            if not await self._delay(fault):
                return self._json({"ok": False, "error": "service_unavailable"}, status=503)
        elif fault is not None:
            return await self._apply_fault("response_url", {}, fault)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._log("response_url", {}, 400, "invalid_payload")
            return self._json({"ok": False, "error": "invalid_payload"}, status=400)
        try:
            self.workspace.respond(token, body)
        except ApiError as e:
            status = e.status if e.status != 200 else 400
            self._log("response_url", body, status, e.error)
            return self._json({"ok": False, "error": e.error, **e.extra}, status=status)
        self._log("response_url", body, 200, None)
        return self._json({"ok": True})

    # ---- the page and its JSON -----------------------------------------------------------------

    async def _to_control(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.path + "/")

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=_PAGE.read_text(encoding="utf-8"),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def _sim_state(self, request: web.Request) -> web.Response:
        ws = self.workspace
        return self._json(
            {
                "team": {"id": ws.team_id, "domain": ws.team_domain, "name": ws.team_name},
                "bot": {"user_id": ws.bot.id, "bot_id": ws.bot_id, "name": ws.bot.name},
                "bot_url": self.bot_url,
                "control": self._control[0] if self._control is not None else None,
                "channels": [
                    {"id": c.id, "name": c.name, "kind": c.kind, "members": sorted(c.members)}
                    for c in ws.channels.values()
                ],
                "users": [
                    {"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
                    for u in ws.users.values()
                ],
                "version": self._changes.version,
            }
        )

    def _lookup(self, request: web.Request) -> Channel:
        try:
            return self.workspace.channel(request.match_info["channel"])
        except ApiError as e:
            raise web.HTTPNotFound(
                text=json.dumps({"error": e.error}), content_type="application/json"
            ) from e

    async def _sim_history(self, request: web.Request) -> web.Response:
        return self._json({"messages": self.history(self._lookup(request).id)})

    async def _sim_replies(self, request: web.Request) -> web.Response:
        ch = self._lookup(request)
        try:
            return self._json({"messages": self.replies(ch.id, request.match_info["ts"])})
        except ApiError as e:
            raise web.HTTPNotFound(
                text=json.dumps({"error": e.error}), content_type="application/json"
            ) from e

    async def _sim_ephemerals(self, request: web.Request) -> web.Response:
        ch = self._lookup(request)
        try:
            return self._json({"messages": self.ephemerals(ch.id, request.match_info["user"])})
        except ApiError as e:
            raise web.HTTPNotFound(
                text=json.dumps({"error": e.error}), content_type="application/json"
            ) from e

    async def _sim_view(self, request: web.Request) -> web.Response:
        """Everything the page shows for one channel as one user, oldest first."""
        ch = self._lookup(request)
        user = request.query.get("user")
        roots = list(reversed(self.history(ch.id)))
        for root in roots:
            if root.get("reply_count"):
                root["replies"] = self.replies(ch.id, root["ts"])[1:]
        ephemerals = self.ephemerals(ch.id, user) if user and user in self.workspace.users else []
        return self._json(
            {"channel": {"id": ch.id, "name": ch.name}, "messages": roots, "ephemerals": ephemerals}
        )

    async def _sim_calls(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "calls": [
                    {
                        "method": c.method,
                        "params": c.params,
                        "ok": c.ok,
                        "error": c.error,
                        "status": c.status,
                        "time": c.time,
                    }
                    for c in self.calls
                ]
            }
        )

    async def _sim_emoji(self, request: web.Request) -> web.Response:
        """The emoji table the page renders `:shortcodes:` with (short name -> emoji)."""
        return web.Response(
            text=json.dumps(emoji_table(), ensure_ascii=False, separators=(",", ":")),
            content_type="application/json",
            charset="utf-8",
            headers={"Cache-Control": "max-age=86400"},
        )

    async def _sim_events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one `data: {"version": n}` per change, comments as keep-alives."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sent = -1
        try:
            while not self._closing.is_set():
                event = self._changes.event
                if sent != self._changes.version:
                    sent = self._changes.version
                    await response.write(f"data: {json.dumps({'version': sent})}\n\n".encode())
                try:
                    async with asyncio.timeout(15.0):
                        await event.wait()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    def _ensure_page_player(self) -> SlackPlayer:
        if self._page_player is None:
            self._page_player = self.player()
        self._page_player.transport = "http" if self.bot_url else "socket"
        return self._page_player

    async def _page_request(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="expected a JSON object")
        if not self.bot_url and not self.socket_mode.connections:
            raise web.HTTPConflict(
                text="no bot_url and no Socket Mode connection: start the simulator with --bot-url"
            )
        return body

    async def _sim_command(self, request: web.Request) -> web.Response:
        body = await self._page_request(request)
        text = str(body.get("text", ""))
        command = str(body.get("command") or "/release")
        try:
            response = await self._ensure_page_player().command(
                str(body.get("user", "")), text, channel=str(body.get("channel", "")), command=command
            )
        except ApiError as e:
            raise web.HTTPBadRequest(text=e.error) from e
        return self._json({"status": response.status, "text": response.text, "timed_out": response.timed_out})

    async def _sim_click(self, request: web.Request) -> web.Response:
        body = await self._page_request(request)
        try:
            channel = self.workspace.channel(str(body.get("channel", "")))
            user = self.workspace.user(str(body.get("user", "")))
        except ApiError as e:
            raise web.HTTPBadRequest(text=e.error) from e
        ts = str(body.get("ts", ""))
        msg: Message | None
        if body.get("ephemeral"):
            msg = next((m for m in channel.ephemerals.get(user.id, []) if m["ts"] == ts), None)
        else:
            msg = channel.messages.get(ts)
        if msg is None:
            raise web.HTTPNotFound(text="message_not_found")
        status = await self._ensure_page_player().click(
            user.id, dict(msg), str(body.get("action_id", "")), channel=channel.id
        )
        return self._json({"status": status})

    # ---- modals and the Home tab, for the page ---------------------------------------------------

    async def _sim_views(self, request: web.Request) -> web.Response:
        """What one person sees of the app's views: their open modal (with the errors the app gave
        and Slack's own message) and their Home tab."""
        try:
            user = self.workspace.user(request.query.get("user", ""))
        except ApiError as e:
            raise web.HTTPNotFound(text=e.error) from e
        modal = self.workspace.views.modal_of(user.id)
        home = self.workspace.views.home_of(user.id)
        shown = None
        if modal is not None:
            shown = {**modal.data, "errors": modal.errors, "problem": modal.problem}
        return self._json({"modal": shown, "home": home.data if home is not None else None})

    async def _view_request(self, request: web.Request) -> tuple[dict[str, Any], str]:
        body = await self._page_request(request)
        try:
            user = self.workspace.user(str(body.get("user", "")))
        except ApiError as e:
            raise web.HTTPBadRequest(text=e.error) from e
        values = body.get("values") or {}
        if not isinstance(values, dict):
            raise web.HTTPBadRequest(text="values must be an object")
        return body, user.id

    async def _sim_view_action(self, request: web.Request) -> web.Response:
        body, user = await self._view_request(request)
        try:
            response = await self._ensure_page_player().view_action(
                user,
                str(body.get("action_id", "")),
                str(body.get("value", "")),
                view_id=str(body.get("view_id") or "") or None,
                values=body.get("values") or {},
            )
        except (LookupError, ApiError) as e:
            raise web.HTTPBadRequest(text=str(e)) from e
        return self._json({"status": response.status, "timed_out": response.timed_out})

    async def _sim_view_submit(self, request: web.Request) -> web.Response:
        body, user = await self._view_request(request)
        try:
            response = await self._ensure_page_player().submit_view(
                user, body.get("values") or {}, view_id=str(body.get("view_id") or "") or None
            )
        except (LookupError, ApiError) as e:
            raise web.HTTPBadRequest(text=str(e)) from e
        return self._json({"status": response.status, "timed_out": response.timed_out})

    async def _sim_view_close(self, request: web.Request) -> web.Response:
        body, user = await self._view_request(request)
        try:
            self._ensure_page_player().close_view(user, view_id=str(body.get("view_id") or "") or None)
        except (LookupError, ApiError) as e:
            raise web.HTTPBadRequest(text=str(e)) from e
        return self._json({"ok": True})

    async def _sim_home_open(self, request: web.Request) -> web.Response:
        _, user = await self._view_request(request)
        deliveries = await self._ensure_page_player().open_home(user)
        return self._json({"status": deliveries[-1].response.status if deliveries else 0})
