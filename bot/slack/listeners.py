"""The /release command and the card's buttons: ack first, then parse, authorize, hand off, answer.

Handlers stay thin: parsing is in `commands`, permission decisions in `bot.policy`, release work in the
engine, wording in `cards`. Every failure becomes an ephemeral answer; only user errors are shown
verbatim, anything else gets an error id that is also in the log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import policy
from bot.catalog import Action, App, Catalog
from bot.errors import UserError
from bot.releases.engine import Engine
from bot.releases.record import Actor, Request
from bot.slack import cards
from commands import intents
from commands.parser import UsageError, parse

log = logging.getLogger(__name__)

# An ephemeral answer: text, or (fallback text, Block Kit blocks).
Answer = str | tuple[str, list[dict[str, Any]]]

GROUP_CACHE_SECONDS = 60.0
ANSWER_TIMEOUT_S = 10.0  # a private answer that Slack does not take in this time is given up


def actor_of(body: dict[str, Any]) -> Actor:
    """Who sent a slash command (user_id, user_name) or clicked a button (user{id, username, name})."""
    user = body.get("user") or {}
    user_id = str(body.get("user_id") or user.get("id") or "")
    name = body.get("user_name") or user.get("username") or user.get("name") or user_id
    return Actor(id=user_id, name=str(name))


class Groups:
    """User-group membership through usergroups.users.list, cached for a minute."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def of(self, user_id: str, candidates: tuple[str, ...]) -> set[str]:
        member = set()
        for group in candidates:
            cached = self._cache.get(group)
            if cached is None or time.monotonic() - cached[0] > GROUP_CACHE_SECONDS:
                try:
                    resp = await self.client.usergroups_users_list(usergroup=group)
                    users: frozenset[str] = frozenset(resp.get("users", []))
                except SlackApiError as e:
                    log.warning("usergroups.users.list %s failed: %s", group, e.response.get("error"))
                    users = frozenset()  # deny by default
                cached = (time.monotonic(), users)
                self._cache[group] = cached
            if user_id in cached[1]:
                member.add(group)
        return member


class Handlers:
    def __init__(self, engine: Engine, catalog: Catalog, client: AsyncWebClient) -> None:
        self.engine = engine
        self.catalog = catalog
        self.client = client
        self.groups = Groups(client)
        self._tasks: set[asyncio.Task[None]] = set()  # work after the ack, answered privately

    def register(self, app: AsyncApp) -> None:
        app.command("/release")(self.on_command)
        app.action(re.compile(f"^{re.escape(cards.ACTION_PREFIX)}"))(self.on_click)
        app.action(cards.UNDO_ACTION)(self.on_undo_click)

    # --- boundary ----------------------------------------------------------------------------------

    async def _answer(self, channel: str, user: str, answer: Answer, reply_to: str = "") -> None:
        """Answer privately: an ephemeral message, or, where the bot cannot post (not in the channel,
        a DM), through the request's response_url, which always works."""
        text, blocks = (answer, None) if isinstance(answer, str) else answer
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
        except SlackApiError as e:
            log.warning("ephemeral answer to %s failed: %s", user, e.response.get("error"))
        except (TimeoutError, aiohttp.ClientError) as e:
            log.warning("ephemeral answer to %s failed: %s", user, type(e).__name__)
        if not reply_to:
            return
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await AsyncWebhookClient(reply_to, session=self.client.session).send(
                    text=text, blocks=blocks, response_type="ephemeral"
                )
        except Exception as e:
            log.warning("answer to %s through response_url failed: %s", user, type(e).__name__)

    def _after_ack(
        self, channel: str, user: str, work: Callable[[], Awaitable[Answer | None]], reply_to: str = ""
    ) -> None:
        """Run the work in a task of ours once the ack has gone out; whatever happens, the person gets
        an answer. The tasks are tracked and drained on shutdown."""
        task = asyncio.create_task(self._answering(channel, user, work, reply_to), name=f"after-ack:{user}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Let answers in progress finish (up to `timeout` seconds), then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()

    async def _answering(
        self, channel: str, user: str, work: Callable[[], Awaitable[Answer | None]], reply_to: str
    ) -> None:
        answer: Answer | None
        try:
            answer = await work()
        except UserError as e:
            answer = cards.conflict(str(e))
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("error %s handling a request from %s", error_id, user)
            answer = cards.internal_error(error_id)
        if answer:
            await self._answer(channel, user, answer, reply_to)

    async def _authorize(
        self, app: App, action: Action, user_id: str, user_name: str, channel_id: str, what: str
    ) -> str | None:
        groups = await self.groups.of(user_id, policy.groups_needed(app, action))
        decision = policy.decide(app, action, user_id, groups, channel_id)
        if decision.allowed:
            return None
        await self.engine.audit(
            action=f"refused {what}",
            actor=Actor(id=user_id, name=user_name),
            app=app.name,
            namespace=app.namespace,
            deployment=app.deployment,
            result=f"refused: {decision.reason}",
            channel_id=channel_id,
            warning=True,
        )
        return cards.refused(f"Sorry, {decision.reason}.")

    # --- /release ----------------------------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            intent = parse(body.get("text", ""), apps=self.catalog.apps.keys())
        except UsageError as e:
            await ack(text=cards.usage_error(str(e)))
            return
        if isinstance(intent, intents.Help):
            await ack(text=cards.help_text())
            return
        await ack()
        user_id, channel_id = body["user_id"], body["channel_id"]
        actor = actor_of(body)
        reply_to = str(body.get("response_url") or "")
        self._after_ack(channel_id, user_id, lambda: self._command(intent, actor, channel_id, body), reply_to)

    async def _command(
        self, intent: intents.Intent, actor: Actor, channel_id: str, body: dict[str, Any]
    ) -> Answer | None:
        if isinstance(intent, intents.Apps):
            allowed = []
            for app in self.catalog.apps.values():
                groups = await self.groups.of(actor.id, policy.groups_needed(app, Action.RELEASE))
                if policy.decide(app, Action.RELEASE, actor.id, groups, channel_id).allowed:
                    allowed.append(app.name)
            return cards.apps_list(self.catalog.apps.values(), allowed)
        if isinstance(intent, intents.Help):
            return cards.help_text()
        app = self.engine.app(intent.app)
        refusal = await self._authorize(
            app, policy.action_for(intent), actor.id, actor.name, channel_id, intent.kind
        )
        if refusal:
            return refusal
        match intent:
            case intents.Release():
                record = await self.engine.begin(
                    intent,
                    actor,
                    channel_id,
                    body.get("channel_name", ""),
                    str(body.get("response_url") or ""),
                )
                return cards.accepted(record)
            case intents.Status():
                dep, stored = await self.engine.status(app)
                link = (
                    await self.engine.reporter.permalink(stored.record)
                    if stored and stored.record.active
                    else ""
                )
                return cards.status(app, dep, stored.record if stored else None, link)
            case intents.Promote() | intents.Abort() | intents.Finish():
                request = Request(intent.kind)
                await self.engine.request(app.name, request, actor)
                return cards.request_taken(request, app.name)
            case intents.History():
                dep, revisions = await self.engine.history(app)
                return cards.history_text(app, dep, revisions, intent.revision)
            case intents.Rollback():
                _, stored = await self.engine.status(app)
                if stored is not None and stored.record.active and intent.to_revision is None:
                    await self.engine.request(app.name, Request.ROLLBACK, actor)
                    return cards.request_taken(Request.ROLLBACK, app.name)
                return cards.undo_offer(app, *await self.engine.preview_undo(app, intent.to_revision))
            case intents.Pause() | intents.Resume():
                paused = isinstance(intent, intents.Pause)
                await self.engine.set_paused(app, paused, actor, channel_id)
                await self.engine.reporter.announce(
                    channel_id, cards.paused_announcement(app, actor.id, paused)
                )
                return None
            case _:
                return cards.not_yet(intent.kind)

    # --- buttons -----------------------------------------------------------------------------------

    async def on_click(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        user = body.get("user", {})
        user_id = user.get("id", "")
        channel_id = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
        actor = actor_of(body)
        reply_to = str(body.get("response_url") or "")
        self._after_ack(channel_id, user_id, lambda: self._click(action, actor, channel_id), reply_to)

    async def on_undo_click(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        action = body["actions"][0]
        user = body.get("user", {})
        user_id = user.get("id", "")
        channel = body.get("channel") or {}
        channel_id = channel.get("id") or body.get("container", {}).get("channel_id", "")
        actor = actor_of(body)

        async def work() -> Answer | None:
            try:
                app_name, target, seen = cards.parse_undo_value(str(action.get("value", "")))
            except ValueError:
                return cards.conflict("That button is not one of mine any more.")
            app = self.engine.app(app_name)
            refusal = await self._authorize(
                app, Action.ROLLBACK, actor.id, actor.name, channel_id, "rollback"
            )
            if refusal:
                return refusal
            await self.engine.begin_undo(
                app, target, actor, channel_id, channel.get("name", ""), seen, reply_to
            )
            return None

        reply_to = str(body.get("response_url") or "")
        self._after_ack(channel_id, user_id, work, reply_to)

    async def _click(self, action: dict[str, Any], actor: Actor, channel_id: str) -> str | None:
        try:
            request = Request(action["action_id"].removeprefix(cards.ACTION_PREFIX))
        except ValueError:
            return cards.conflict("That button is not one of mine any more.")
        app_name, release_id, phase, step = cards.parse_button_value(str(action.get("value", "")))
        app = self.engine.app(app_name)
        refusal = await self._authorize(
            app, policy.ACTION_OF[request.value], actor.id, actor.name, channel_id, f"{request.value} click"
        )
        if refusal:
            return refusal
        seen = (release_id, phase or "", step if step is not None else -1)
        await self.engine.request(app.name, request, actor, seen)
        return None
