"""A client that plays Slack towards a bot: signed slash commands, clicks and Events API deliveries.

Owns the requests Slack itself sends to an app, byte for byte in Slack's encodings, signed with the
simulator's signing secret (`v0=HMAC-SHA256(secret, "v0:{ts}:{raw body}")`), so the bot's real
request verification, parsing and ack path are exercised:

- slash commands: form-encoded with Slack's fields in Slack's order, `text` HTML-escaped (`& < >`)
  like Slack, a real simulator response_url and a trigger_id; the synchronous answer (ack body) is
  recorded in the simulator as the ephemeral the user would see. From a DM `channel_name` is
  `directmessage`, from a private channel the app is not in `privategroup`; an org-wide install adds
  `enterprise_id`, `enterprise_name` and `is_enterprise_install=true`; an app without the `commands`
  scope gets no slash command at all (Slackbot tells the user it is not a valid command);
- block_actions: built from a REAL message's button (found by action_id in its blocks) and sent as
  the form field `payload`, with `container`, `message` (not for ephemerals, as Slack), a
  response_url bound to that message, and a trigger_id; for an org-wide install `team` is null and
  `enterprise` names the organisation;
- modals: a choice in a modal's dispatching select (block_actions with `container.type` "view" and
  the whole view, its state included) and a submission (view_submission), whose answer is applied to
  the modal as Slack applies it (closed, field errors, updated, pushed; see `views.py`);
- Events API: `event_callback` envelopes, retried up to 3 times with `X-Slack-Retry-Num` and
  `X-Slack-Retry-Reason` when the bot does not answer 2xx in time, and `url_verification`;
  `open_home` sends `app_home_opened` (with the Home tab published for that person, if any).

It needs of the simulator only `types.SlackSide` (the workspace, the credentials, where the bot is,
Socket Mode delivery, and where command answers are shown).

With `transport="socket"` the same payloads go as Socket Mode envelopes (`slash_commands`,
`interactive`, `events_api`) through the simulator's open connections instead (see `socket_mode.py`);
the ack's payload is the answer.

Like Slack it waits `ack_timeout` (3 s) for an answer. `clock` (settable) dates the signatures, for
stale-signature tests; `signing_secret` can be overridden for bad-signature tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from sandbox.slack.blocks import find_action
from sandbox.slack.types import CommandResponse, EventDelivery, SlackSide
from sandbox.slack.workspace import Channel, Message

USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def slack_escape(text: str) -> str:
    """Escape `&`, `<` and `>` the way Slack does in command text and message text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Slack's request signature for `body` sent at `timestamp`."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackPlayer:
    """Plays Slack towards the bot at `bot_url` (default: the simulator's `bot_url`, read per call).

    Users and channels may be given by name or id. One aiohttp session; `close()` it. `transport`
    (settable): "http" (signed requests to `bot_url`) or "socket" (Socket Mode envelopes).
    """

    def __init__(self, sim: SlackSide, *, bot_url: str | None = None, transport: str = "http") -> None:
        if transport not in ("http", "socket"):
            raise ValueError(f"transport must be http or socket, not {transport!r}")
        self.sim = sim
        self.transport = transport
        self._bot_url = bot_url
        self.clock: Callable[[], float] = time.time
        self.signing_secret: str = sim.signing_secret
        self.ack_timeout: float = 3.0
        self.last_response: CommandResponse | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def bot_url(self) -> str:
        url = self._bot_url or self.sim.bot_url
        if not url:
            raise RuntimeError("no bot_url: set SlackSimulator.bot_url or pass bot_url=")
        return url

    @bot_url.setter
    def bot_url(self, value: str | None) -> None:
        self._bot_url = value

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> SlackPlayer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def signed_headers(self, body: bytes, content_type: str) -> dict[str, str]:
        """Slack's headers for `body`, signed at `clock()`."""
        timestamp = int(self.clock())
        return {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            "Accept": "application/json,*/*",
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": sign(self.signing_secret, timestamp, body),
        }

    async def post(
        self, body: bytes, content_type: str, extra_headers: Mapping[str, str] | None = None
    ) -> CommandResponse:
        """POST a signed raw body to the bot; wait at most `ack_timeout` seconds like Slack."""
        headers = self.signed_headers(body, content_type)
        headers.update(extra_headers or {})
        timeout = aiohttp.ClientTimeout(total=self.ack_timeout)
        try:
            async with self._http().post(self.bot_url, data=body, headers=headers, timeout=timeout) as resp:
                text = await resp.text()
                parsed: Any = None
                if resp.content_type == "application/json":
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        parsed = None
                result = CommandResponse(resp.status, text, parsed, False, dict(resp.headers))
        except TimeoutError:
            result = CommandResponse(0, "", None, True)
        except aiohttp.ClientError as e:
            result = CommandResponse(0, str(e), None, False)
        self.last_response = result
        return result

    async def envelope(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str | None = None,
    ) -> CommandResponse:
        """Send `payload` as one Socket Mode envelope; the ack as an HTTP-like answer (see Delivery)."""
        delivery = await self.sim.socket_mode.deliver(
            type_,
            payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason or "",
            ack_timeout=self.ack_timeout,
        )
        result = delivery.response()
        self.last_response = result
        return result

    # ---- slash commands ------------------------------------------------------------------------

    def _channel_name(self, channel: Channel) -> str:
        """What Slack puts in `channel_name`: "directmessage" for a DM, "privategroup" for a private
        channel the app is not in, else the channel's name (as apps receiving Slack's commands test
        for: `channel_name == "directmessage"`, `channel_name != "privategroup"`)."""
        if channel.kind == "im":
            return "directmessage"
        if channel.kind == "private" and not channel.bot_is_member:
            return "privategroup"
        return channel.name

    def command_form(
        self, user: str, text: str, *, channel: str = "releases", command: str = "/release"
    ) -> dict[str, str]:
        """The form fields Slack sends for `command text`, in Slack's order (issues a response_url).

        Raises LookupError when `user` could not type in `channel` (a private channel or DM they are
        not in)."""
        ws = self.sim.workspace
        u = ws.user(user)
        ch = ws.channel(channel)
        if ch.kind != "public" and u.id not in ch.members:
            raise LookupError(f"{u.name} is not in {ch.kind} conversation {ch.id}")
        url = ws.issue_response_url(ch.id, u.id)
        form = {
            "token": self.sim.verification_token,
            "team_id": ws.team_id,
            "team_domain": ws.team_domain,
        }
        if ws.enterprise_install:
            # Slack's slash command sample: "...&team_domain=example&enterprise_id=E0001&
            # enterprise_name=Globular%20Construct%20Inc&channel_id=..."
            # (https://docs.slack.dev/interactivity/implementing-slash-commands)
            form.update({"enterprise_id": ws.enterprise_id, "enterprise_name": ws.enterprise_name})
        form.update(
            {
                "channel_id": ch.id,
                "channel_name": self._channel_name(ch),
                "user_id": u.id,
                "user_name": u.name,
                "command": command,
                "text": slack_escape(text),
                "api_app_id": ws.app_id,
                "is_enterprise_install": "true" if ws.enterprise_install else "false",
                "response_url": f"{self.sim.base_url}hooks/response/{url.token}",
                "trigger_id": ws.issue_trigger_id(u.id),
            }
        )
        return form

    async def command(
        self, user: str, text: str, *, channel: str = "releases", command: str = "/release"
    ) -> CommandResponse:
        """Run `command text` as `user` in `channel`; the answer is recorded as Slack shows it."""
        form = self.command_form(user, text, channel=channel, command=command)
        if "commands" not in self.sim.workspace.scopes:
            # An app without the `commands` scope has no slash commands
            # (https://docs.slack.dev/reference/scopes/commands): nothing reaches it.
            self.sim.record_unknown_command(form["channel_id"], form["user_id"], command)
            result = CommandResponse(0, "not a valid command", None, False)
            self.last_response = result
            return result
        if self.transport == "socket":
            response = await self.envelope("slash_commands", form, accepts_response_payload=True)
        else:
            body = urllib.parse.urlencode(form).encode()
            response = await self.post(body, "application/x-www-form-urlencoded")
        self.sim.record_command_response(form["channel_id"], form["user_id"], command, response)
        return response

    # ---- interactivity -------------------------------------------------------------------------

    def click_payload(
        self, user: str, message: Mapping[str, Any], action_id: str, *, channel: str = "releases"
    ) -> dict[str, Any]:
        """Slack's block_actions payload for clicking `action_id` in `message` (as the user sees it)."""
        ws = self.sim.workspace
        u = ws.user(user)
        ch = ws.channel(channel)
        blocks = message.get("blocks") or []
        found = find_action(list(blocks), action_id)
        if found is None:
            ids = [
                el.get("action_id")
                for b in blocks
                for el in [*(b.get("elements") or []), b.get("accessory") or {}]
                if isinstance(el, dict) and el.get("action_id")
            ]
            raise LookupError(f"no element with action_id {action_id!r} in message; have {ids}")
        block_id, element = found
        ephemeral = bool(message.get("is_ephemeral"))
        ts = str(message["ts"])
        url = ws.issue_response_url(ch.id, u.id, original_ts=ts, original_ephemeral=ephemeral)
        action_ts = f"{self.clock():.6f}"
        action: dict[str, Any] = {
            "action_id": element["action_id"],
            "block_id": block_id,
            "text": element.get("text"),
            "value": element.get("value"),
            "style": element.get("style"),
            "type": element.get("type", "button"),
            "action_ts": action_ts,
        }
        action = {k: v for k, v in action.items() if v is not None}
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": ts,
            "channel_id": ch.id,
            "is_ephemeral": ephemeral,
        }
        if message.get("thread_ts") and message["thread_ts"] != ts:
            container["thread_ts"] = message["thread_ts"]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": u.id, "username": u.name, "name": u.name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "token": self.sim.verification_token,
            "container": container,
            "trigger_id": ws.issue_trigger_id(u.id),
            # An org-wide install: `team` null and the organisation in `enterprise` ("With org-wide
            # installations, payload.team in interactivity payloads can be None": slack_bolt's
            # request/internals.py extract_team_id, which then reads user.team_id).
            "team": None if ws.enterprise_install else {"id": ws.team_id, "domain": ws.team_domain},
            "enterprise": (
                {"id": ws.enterprise_id, "name": ws.enterprise_name} if ws.enterprise_install else None
            ),
            "is_enterprise_install": ws.enterprise_install,
            "channel": {"id": ch.id, "name": self._channel_name(ch)},
            "state": {"values": {}},
            "response_url": f"{self.sim.base_url}hooks/response/{url.token}",
            "actions": [action],
        }
        if not ephemeral:
            shown = {k: v for k, v in message.items() if k not in ("via", "is_ephemeral")}
            payload["message"] = shown
        return payload

    async def click(
        self, user: str, message: Mapping[str, Any], action_id: str, *, channel: str = "releases"
    ) -> int:
        """Click the button `action_id` of `message` as `user`; the bot's HTTP status (0: no answer).

        `message` is the user's copy (from `history()`/`replies()`/`ephemerals()`): pass an old copy
        to simulate a click on a card the user has not seen refreshed.
        """
        payload = self.click_payload(user, message, action_id, channel=channel)
        if self.transport == "socket":
            return (await self.envelope("interactive", payload)).status
        body = urllib.parse.urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        response = await self.post(body, "application/x-www-form-urlencoded")
        return response.status

    # ---- modals and the Home tab ---------------------------------------------------------------

    def _view_payload_base(self, user_id: str) -> dict[str, Any]:
        ws = self.sim.workspace
        u = ws.user(user_id)
        return {
            "user": {"id": u.id, "username": u.name, "name": u.name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "token": self.sim.verification_token,
            "trigger_id": ws.issue_trigger_id(u.id),
            "team": None if ws.enterprise_install else {"id": ws.team_id, "domain": ws.team_domain},
            "enterprise": (
                {"id": ws.enterprise_id, "name": ws.enterprise_name} if ws.enterprise_install else None
            ),
            "is_enterprise_install": ws.enterprise_install,
        }

    async def _interactive(self, payload: Mapping[str, Any]) -> CommandResponse:
        if self.transport == "socket":
            return await self.envelope("interactive", payload, accepts_response_payload=True)
        body = urllib.parse.urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        return await self.post(body, "application/x-www-form-urlencoded")

    def _open_modal(self, user: str, view_id: str | None) -> Any:
        ws = self.sim.workspace
        u = ws.user(user)
        view = ws.views.get(view_id) if view_id else ws.views.modal_of(u.id)
        if view is None or not view.open or view.user_id != u.id:
            raise LookupError(f"{u.name} has no open modal {view_id or ''}".rstrip())
        return view

    async def view_action(
        self,
        user: str,
        action_id: str,
        value: str,
        *,
        view_id: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> CommandResponse:
        """`user` chooses `value` in the element `action_id` of their open modal (or `view_id`) after
        entering `values` (action_id -> text or option value); an element that dispatches actions
        (a select in an input block with `dispatch_action`, or in an actions block) sends Slack's
        block_actions with `container.type` "view" and the whole view, state included."""
        ws = self.sim.workspace
        view = self._open_modal(user, view_id)
        ws.views.enter(view.id, {**(values or {}), action_id: value})
        block_id, element = ws.views.element(view, action_id)
        selected = ws.views.by_id[view.id].data["state"]["values"][block_id][action_id]
        action: dict[str, Any] = {
            "type": element.get("type"),
            "action_id": action_id,
            "block_id": block_id,
            "action_ts": f"{self.clock():.6f}",
        }
        if "selected_option" in selected:
            action["selected_option"] = selected["selected_option"]
        else:
            action["value"] = selected.get("value")
        payload = {
            "type": "block_actions",
            **self._view_payload_base(view.user_id),
            "container": {"type": "view", "view_id": view.id},
            "view": dict(view.data),
            "actions": [action],
        }
        return await self._interactive(payload)

    async def submit_view(
        self, user: str, values: Mapping[str, Any] | None = None, *, view_id: str | None = None
    ) -> CommandResponse:
        """`user` enters `values` (action_id -> text or option value) in their open modal (or
        `view_id`) and presses its submit button: Slack's view_submission, and the bot's answer
        applied to the modal as Slack applies it (see `views.Views.answered`)."""
        ws = self.sim.workspace
        view = self._open_modal(user, view_id)
        if values:
            ws.views.enter(view.id, values)
        payload = {
            "type": "view_submission",
            **self._view_payload_base(view.user_id),
            "view": dict(view.data),
            "response_urls": [],
        }
        response = await self._interactive(payload)
        ws.views.answered(view.id, response.status, response.json)
        return response

    def close_view(self, user: str, *, view_id: str | None = None) -> None:
        """`user` presses the modal's close button (the app is not told: no notify_on_close)."""
        self.sim.workspace.views.close(self._open_modal(user, view_id).id)

    async def open_home(self, user: str) -> list[EventDelivery]:
        """`user` opens the app's Home tab: Slack's `app_home_opened` event (with the view published
        for them, if any)."""
        ws = self.sim.workspace
        u = ws.user(user)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": u.id,
            "channel": ws.app_dm(u.id).id,
            "tab": "home",
            "event_ts": f"{self.clock():.6f}",
        }
        home = ws.views.home_of(u.id)
        if home is not None:
            event["view"] = dict(home.data)
        return await self.event(event)

    # ---- Events API ----------------------------------------------------------------------------

    def event_envelope(self, event: Mapping[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """An `event_callback` envelope around `event`, as Slack delivers it."""
        ws = self.sim.workspace
        now = int(self.clock())
        return {
            "token": self.sim.verification_token,
            "team_id": ws.team_id,
            "context_team_id": ws.team_id,
            "api_app_id": ws.app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": now,
            # For an org-wide install the authorization names the enterprise and says so
            # (https://docs.slack.dev/enterprise/apps/reference, "Sample event payload").
            "authorizations": [
                {
                    "enterprise_id": ws.enterprise_id if ws.enterprise_install else None,
                    "team_id": ws.team_id,
                    "user_id": ws.bot.id,
                    "is_bot": True,
                    "is_enterprise_install": ws.enterprise_install,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": "4-" + secrets.token_urlsafe(24),
        }

    async def deliver(
        self, envelope: Mapping[str, Any], *, retry_num: int = 0, retry_reason: str | None = None
    ) -> CommandResponse:
        """One signed delivery of an Events API envelope (with retry headers when retry_num > 0)."""
        if self.transport == "socket":
            return await self.envelope(
                "events_api", envelope, retry_attempt=retry_num, retry_reason=retry_reason
            )
        body = json.dumps(envelope, separators=(",", ":")).encode()
        extra: dict[str, str] = {}
        if retry_num > 0:
            extra = {
                "X-Slack-Retry-Num": str(retry_num),
                "X-Slack-Retry-Reason": retry_reason or "http_error",
            }
        return await self.post(body, "application/json", extra)

    async def event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        max_retries: int = 3,
        retry_delays: Sequence[float] = (0.0, 0.0, 0.0),
    ) -> list[EventDelivery]:
        """Deliver `event` like Slack: retry (up to `max_retries`) until the bot answers 2xx in time.

        Slack waits about 1 minute and 5 minutes between retries; here `retry_delays` (seconds) says
        how long, immediate by default. A response header `X-Slack-No-Retry: 1` stops retries.
        """
        envelope = self.event_envelope(event, event_id=event_id)
        deliveries: list[EventDelivery] = []
        reason: str | None = None
        for attempt in range(max_retries + 1):
            if attempt > 0:
                delay = retry_delays[min(attempt - 1, len(retry_delays) - 1)] if retry_delays else 0.0
                if delay > 0:
                    await asyncio.sleep(delay)
            response = await self.deliver(envelope, retry_num=attempt, retry_reason=reason)
            deliveries.append(EventDelivery(attempt, reason, response))
            if 200 <= response.status < 300:
                break
            if response.headers.get("X-Slack-No-Retry") == "1":
                break
            if response.timed_out:
                reason = "http_timeout"
            else:
                reason = "connection_failed" if response.status == 0 else "http_error"
        return deliveries

    async def url_verification(self, challenge: str | None = None) -> CommandResponse:
        """Slack's URL check: the bot must echo `challenge`."""
        payload = {
            "token": self.sim.verification_token,
            "challenge": challenge or secrets.token_urlsafe(24),
            "type": "url_verification",
        }
        return await self.post(json.dumps(payload).encode(), "application/json")


__all__ = ["CommandResponse", "EventDelivery", "Message", "SlackPlayer", "sign", "slack_escape"]
