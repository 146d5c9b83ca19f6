"""The /release command, the card's buttons, the release form and the App Home tab: ack first, then
parse, authorize, hand off, answer.

Handlers stay thin: parsing is in `commands`, permission decisions in `bot.policy`, release work in the
engine, wording in `answers`, `cards` and `forms`. Every failure becomes an ephemeral answer (or, in the form, an
error under the field); only user errors are shown verbatim, anything else gets an error id that is
also in the log. Every command, click, form change and submission is checked against the catalog's
permissions; a user-group lookup that fails is said ("cannot check membership of S…") instead of
passing for a silent denial, and is not cached.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import policy
from bot.catalog import Action, App, Catalog
from bot.errors import UserError
from bot.kube.client import KubeUnavailable
from bot.releases.engine import Engine
from bot.releases.gate import Enqueued
from bot.releases.record import Actor, Record, Request
from bot.releases.refusals import Refusal
from bot.slack import answers, forms, wire
from bot.slack.health import Observer, count_hook
from commands import intents
from commands.parser import UsageError, classify_version, parse

log = logging.getLogger(__name__)

# An ephemeral answer: text, or (fallback text, Block Kit blocks).
Answer = str | tuple[str, list[dict[str, Any]]]

GROUP_CACHE_SECONDS = 60.0
GROUP_TIMEOUT_S = 5.0  # one usergroups.users.list; no answer in time is a failed lookup
ANSWER_TIMEOUT_S = 10.0  # a private answer that Slack does not take in this time is given up
READ_TIMEOUT_S = 5.0  # reading an app for the form or the Home tab
FORM_INLINE_S = 2.0  # a submission waits this long for the engine, so a refusal shows on the form
HOME_CONCURRENCY = 4  # apps read at once for the Home tab
# Slack refuses the bot's message in this conversation: the answer goes by response_url, with why.
CANNOT_POST = frozenset({"not_in_channel", "channel_not_found", "is_archived"})


def actor_of(body: dict[str, Any]) -> Actor:
    """Who sent a slash command (user_id, user_name) or clicked a button (user{id, username, name})."""
    user = body.get("user") or {}
    user_id = str(body.get("user_id") or user.get("id") or "")
    name = body.get("user_name") or user.get("username") or user.get("name") or user_id
    return Actor(id=user_id, name=str(name))


@dataclass
class Membership:
    """The user groups a person was found in, and the lookups that failed (group id -> error)."""

    groups: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class Groups:
    """User-group membership through usergroups.users.list. A successful lookup is cached for a
    minute; a failed one is not (the next request asks again) and is reported, never taken for
    "not a member" silently."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        # Lookups under way: everyone asking about the same group meanwhile waits for the same answer
        # (usergroups.users.list is Tier 2, about 20 calls a minute).
        self._asking: dict[str, asyncio.Future[frozenset[str] | str]] = {}

    async def _members(self, group: str) -> frozenset[str] | str:
        """The group's members, or the error that kept us from knowing them."""
        cached = self._cache.get(group)
        if cached is not None and time.monotonic() - cached[0] <= GROUP_CACHE_SECONDS:
            return cached[1]
        asking = self._asking.get(group)
        if asking is not None:
            return await asyncio.shield(asking)
        future: asyncio.Future[frozenset[str] | str] = asyncio.get_running_loop().create_future()
        self._asking[group] = future
        try:
            answer = await self._lookup(group)
            future.set_result(answer)
            return answer
        except BaseException as e:
            future.set_result(f"lookup interrupted ({type(e).__name__})")
            raise
        finally:
            del self._asking[group]

    async def _lookup(self, group: str) -> frozenset[str] | str:
        try:
            async with asyncio.timeout(GROUP_TIMEOUT_S):
                resp = await self.client.usergroups_users_list(usergroup=group)
        except SlackApiError as e:
            error = str(e.response.get("error") or f"http_{e.response.status_code}")
            log.warning("usergroups.users.list %s failed: %s", group, error)
            return error
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            log.warning("usergroups.users.list %s failed: %s", group, type(e).__name__)
            return f"no answer from Slack ({type(e).__name__})"
        users = resp.get("users")
        if not isinstance(users, list):
            return "Slack answered without a member list"
        members = frozenset(str(u) for u in users)
        self._cache[group] = (time.monotonic(), members)
        return members

    async def of(self, user_id: str, candidates: Sequence[str]) -> Membership:
        found = Membership()
        answers = await asyncio.gather(*(self._members(g) for g in candidates))
        for group, members in zip(candidates, answers, strict=True):
            if isinstance(members, str):
                found.failed[group] = members
            elif user_id in members:
                found.groups.add(group)
        return found


class Handlers:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        client: AsyncWebClient,
        *,
        bot_user_id: str = "",
        environments: Mapping[str, tuple[str, str]] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.client = client
        self.bot_user_id = bot_user_id
        self.environments = dict(environments or {})
        self.observer = observer  # counts response_url answers too
        self.groups = Groups(client)
        self._tasks: set[asyncio.Task[Any]] = set()  # work after the ack, answered privately

    def register(self, app: AsyncApp) -> None:
        app.command("/release")(self.on_command)
        app.action(re.compile(f"^{re.escape(wire.ACTION_PREFIX)}"))(self.on_click)
        app.action(wire.UNDO_ACTION)(self.on_undo_click)
        app.action(wire.APPROVE_ACTION)(self.on_gate_click)
        app.action(wire.DENY_ACTION)(self.on_gate_click)
        app.action(re.compile("^(" + "|".join(map(re.escape, forms.FORM_ACTIONS)) + ")$"))(
            self.on_form_change
        )
        app.view_submission(forms.FORM_CALLBACK)(self.on_form_submit)
        app.event("app_home_opened")(self.on_home_opened)

    # --- boundary ----------------------------------------------------------------------------------

    async def _answer(self, channel: str, user: str, answer: Answer, reply_to: str = "") -> None:
        """Answer privately: an ephemeral message, or, where the bot cannot post (not in the channel,
        a DM), through the request's response_url, which always works, saying why and what to do."""
        text, blocks = (answer, None) if isinstance(answer, str) else answer
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
        except SlackApiError as e:
            error = str(e.response.get("error") or "")
            log.warning("ephemeral answer to %s failed: %s", user, error)
            if error in CANNOT_POST:
                hint = answers.cannot_post_here(error, channel, self.bot_user_id)
                text = f"{text}\n{hint}"
                if blocks:
                    blocks = [*blocks, {"type": "context", "elements": [{"type": "mrkdwn", "text": hint}]}]
        except (TimeoutError, aiohttp.ClientError) as e:
            log.warning("ephemeral answer to %s failed: %s", user, type(e).__name__)
        if not reply_to:
            return
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                sent = await AsyncWebhookClient(
                    reply_to, session=self.client.session, retry_handlers=[]
                ).send(text=text, blocks=blocks, response_type="ephemeral")
        except Exception as e:
            count_hook(self.observer, None)
            log.warning("answer to %s through response_url failed: %s", user, type(e).__name__)
            return
        count_hook(self.observer, sent.status_code, sent.body or "")
        if sent.status_code != 200:
            log.warning("answer to %s through response_url refused: HTTP %d", user, sent.status_code)

    def _after_ack(
        self, channel: str, user: str, work: Callable[[], Awaitable[Answer | None]], reply_to: str = ""
    ) -> None:
        """Run the work in a task of ours once the ack has gone out; whatever happens, the person gets
        an answer. The tasks are tracked and drained on shutdown."""
        self._spawn(f"after-ack:{user}", self._answering(channel, user, work, reply_to))

    def _spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            answer = answers.refusal(e)
        except KubeUnavailable as e:  # the app's cluster stopped answering while we asked it
            several = len(self.engine.sites) > 1
            answer = answers.unreachable(e.cluster if several else "", str(e))
        except Exception:
            answer = answers.internal_error(self._logged_error(user))
        if answer:
            await self._answer(channel, user, answer, reply_to)

    @staticmethod
    def _logged_error(user: str) -> str:
        error_id = secrets.token_hex(4)
        log.exception("error %s handling a request from %s", error_id, user)
        return error_id

    async def _membership(self, app: App, action: Action, user_id: str) -> Membership:
        """The person's groups among those that decide `action` (none asked for when the rule names
        the person)."""
        rule = app.rule(action)
        candidates = () if user_id in rule.users else policy.groups_needed(app, action)
        return await self.groups.of(user_id, candidates)

    async def _decide(
        self, app: App, action: Action, user_id: str, channel_id: str
    ) -> tuple[policy.Decision, str]:
        """The decision, and when it is a denial that a failed user-group lookup may have caused, why
        membership could not be checked ("" otherwise)."""
        membership = await self._membership(app, action, user_id)
        decision = policy.decide(app, action, user_id, membership.groups, channel_id)
        if decision.allowed or not membership.failed:
            return decision, ""
        # Would the groups we could not check have allowed it? Then nobody knows, and we say so.
        maybe = policy.decide(app, action, user_id, membership.groups | set(membership.failed), channel_id)
        if not maybe.allowed:
            return maybe, ""
        return decision, answers.membership_unknown(membership.failed)

    async def _authorize(
        self, app: App, action: Action, user_id: str, user_name: str, channel_id: str, what: str
    ) -> str | None:
        """None when allowed; else the refusal to show (recorded in the audit trail)."""
        decision, unknown = await self._decide(app, action, user_id, channel_id)
        if decision.allowed:
            return None
        reason = unknown or decision.reason
        await self.engine.audit(
            action=f"refused {what}",
            actor=Actor(id=user_id, name=user_name),
            app=app.name,
            namespace=app.namespace,
            deployment=app.deployment,
            result=f"refused: {reason}",
            channel_id=channel_id,
            warning=True,
        )
        if unknown:
            return answers.membership_refusal(unknown, action.value, app.name)
        return answers.refused_with_who(f"Sorry, {decision.reason}.", user_id, app.rule(action))

    async def _allowed(
        self, user_id: str, action: Action, channel_id: str
    ) -> tuple[list[App], dict[str, str]]:
        """The catalog's apps `user_id` may do `action` to from `channel_id`, in catalog order, and the
        user-group lookups that failed on the way (group -> error)."""
        apps = list(self.catalog.apps.values())
        decided = await asyncio.gather(*(self._decide_groups(a, action, user_id, channel_id) for a in apps))
        allowed, failed = [], {}
        for app, (ok, unknown) in zip(apps, decided, strict=True):
            if ok:
                allowed.append(app)
            failed.update(unknown)
        return allowed, failed

    async def _decide_groups(
        self, app: App, action: Action, user_id: str, channel_id: str
    ) -> tuple[bool, dict[str, str]]:
        membership = await self._membership(app, action, user_id)
        return policy.decide(app, action, user_id, membership.groups, channel_id).allowed, membership.failed

    async def _roles(self, app: App, user_id: str, channel_id: str) -> frozenset[Action]:
        """What the person may do to `app` beyond the action checked: approve, override a freeze, break
        glass (only the gates the app has are looked up)."""
        wanted = [
            action
            for action, present in (
                (Action.APPROVE, app.approvals),
                (Action.OVERRIDE, app.freeze_override),
                (Action.BREAK_GLASS, app.break_glass),
            )
            if present is not None
        ]
        decided = await asyncio.gather(*(self._decide(app, a, user_id, channel_id) for a in wanted))
        return frozenset(a for a, (d, _) in zip(wanted, decided, strict=True) if d.allowed)

    async def _refused(self, app: App, actor: Actor, what: str, error: Exception, channel_id: str) -> None:
        """Record a refusal of the release core (a freeze, a lock, a self-approval...) in the audit trail."""
        await self.engine.audit(
            action=f"refused {what}",
            actor=actor,
            app=app.name,
            namespace=app.namespace,
            deployment=app.deployment,
            result=f"refused: {error}",
            channel_id=channel_id,
            warning=True,
        )

    # --- /release ----------------------------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        text = str(body.get("text") or "")
        if not text.strip():  # `/release` alone: the release form
            await ack()
            user_id, channel_id = body["user_id"], body["channel_id"]
            reply_to = str(body.get("response_url") or "")
            self._after_ack(channel_id, user_id, lambda: self._open_form(body), reply_to)
            return
        try:
            intent = parse(text, apps=self.catalog.apps.keys())
        except UsageError as e:
            await ack(text=answers.usage_error(str(e)))
            return
        if isinstance(intent, intents.Help):
            await ack(text=answers.help_text())
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
            allowed, failed = await self._allowed(actor.id, Action.RELEASE, channel_id)
            gates = {a.name: await self.engine.gate(a) for a in self.catalog.apps.values()}
            listing = answers.apps_list(self.catalog.apps.values(), [a.name for a in allowed], gates)
            return listing + (f"\n{answers.membership_unknown(failed)}" if failed else "")
        if isinstance(intent, intents.Help):
            return answers.help_text()
        app = self.engine.app(intent.app)
        refusal = await self._authorize(
            app, policy.action_for(intent), actor.id, actor.name, channel_id, intent.kind
        )
        if refusal:
            return refusal
        if isinstance(intent, intents.Diff | intents.Promotion):  # the other environment is viewed
            other = intent.other if isinstance(intent, intents.Diff) else intent.source
            refusal = await self._authorize(
                self.engine.app(other), Action.VIEW, actor.id, actor.name, channel_id, intent.kind
            )
            if refusal:
                return refusal
        if isinstance(intent, intents.Release) and intent.break_glass:
            refusal = await self._authorize(
                app, Action.BREAK_GLASS, actor.id, actor.name, channel_id, "break-glass"
            )
            if refusal:
                return refusal
        try:
            return await self._act(app, intent, actor, channel_id, body)
        except Refusal as e:
            await self._refused(app, actor, intent.kind, e, channel_id)
            raise

    async def _act(
        self, app: App, intent: intents.AppIntent, actor: Actor, channel_id: str, body: dict[str, Any]
    ) -> Answer | None:
        match intent:
            case intents.Release(dry_run=True):
                roles = await self._roles(app, actor.id, channel_id)
                record, running, gate = await self.engine.preview(
                    intent, actor, channel_id, body.get("channel_name", ""), roles=roles
                )
                return answers.dry_run(record, running, gate)
            case intents.Release():
                started = await self._begin(
                    intent,
                    actor,
                    channel_id,
                    body.get("channel_name", ""),
                    str(body.get("response_url") or ""),
                )
                return answers.accepted(started)
            case intents.Promotion():
                roles = await self._roles(app, actor.id, channel_id)
                promoted = await self.engine.begin_promotion(
                    intent,
                    actor,
                    channel_id,
                    body.get("channel_name", ""),
                    str(body.get("response_url") or ""),
                    roles=roles,
                )
                return answers.accepted(promoted)
            case intents.Diff():
                other = self.engine.app(intent.other)
                (dep, _), (other_dep, _) = await asyncio.gather(
                    self.engine.status(app), self.engine.status(other)
                )
                return answers.diff_text(app, dep, other, other_dep)
            case intents.Status():
                dep, stored = await self.engine.status(app)
                link = (
                    await self.engine.reporter.permalink(stored.record)
                    if stored and stored.record.active
                    else ""
                )
                gate = await self.engine.gate(app)
                others = await self.engine.others(app)
                return answers.status(app, dep, stored.record if stored else None, link, gate, others)
            case intents.Promote():
                roles = await self._roles(app, actor.id, channel_id)
                await self.engine.request(app.name, Request.PROMOTE, actor, roles=roles, reason=intent.reason)
                return answers.request_taken(Request.PROMOTE, app.name)
            case intents.Abort() | intents.Finish():
                request = Request(intent.kind)
                await self.engine.request(app.name, request, actor)
                return answers.request_taken(request, app.name)
            case intents.Approve():
                record = await self.engine.approve(app.name, actor)
                return answers.approval_taken(record)
            case intents.Deny():
                record = await self.engine.deny(app.name, actor, intent.reason)
                return answers.approval_taken(record)
            case intents.Lock():
                await self.engine.lock(app.name, actor, intent.reason, channel_id)
                await self.engine.reporter.announce(
                    channel_id, answers.gate_changed(app.name, actor.id, "locked", intent.reason)
                )
                return None
            case intents.Unlock():
                await self.engine.unlock(app.name, actor, channel_id)
                await self.engine.reporter.announce(
                    channel_id, answers.gate_changed(app.name, actor.id, "unlocked")
                )
                return None
            case intents.Dequeue():
                gate = await self.engine.dequeue(app.name, actor, channel_id)
                return answers.dequeued(app.name, gate)
            case intents.History():
                dep, revisions = await self.engine.history(app)
                return answers.history_text(app, dep, revisions, intent.revision)
            case intents.Rollback():
                _, stored = await self.engine.status(app)
                if stored is not None and stored.record.active and intent.to_revision is None:
                    await self.engine.request(app.name, Request.ROLLBACK, actor)
                    return answers.request_taken(Request.ROLLBACK, app.name)
                return answers.undo_offer(app, *await self.engine.preview_undo(app, intent.to_revision))
            case intents.Pause() | intents.Resume():
                paused = isinstance(intent, intents.Pause)
                await self.engine.set_paused(app, paused, actor, channel_id)
                await self.engine.reporter.announce(
                    channel_id, answers.paused_announcement(app, actor.id, paused)
                )
                return None
            case _:
                return answers.not_yet(intent.kind)

    async def _begin(
        self, intent: intents.Release, actor: Actor, channel_id: str, channel_name: str, reply_to: str
    ) -> Record | Enqueued:
        """Start a release: the typed command and the form come here alike."""
        app = self.engine.app(intent.app)
        roles = await self._roles(app, actor.id, channel_id)
        return await self.engine.begin(intent, actor, channel_id, channel_name, reply_to, roles=roles)

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
                app_name, target, seen = wire.parse_undo_value(str(action.get("value", "")))
            except ValueError:
                return answers.conflict("That button is not one of mine any more.")
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
            request = Request(action["action_id"].removeprefix(wire.ACTION_PREFIX))
        except ValueError:
            return answers.conflict("That button is not one of mine any more.")
        app_name, release_id, phase, step = wire.parse_button_value(str(action.get("value", "")))
        app = self.engine.app(app_name)
        refusal = await self._authorize(
            app, policy.ACTION_OF[request.value], actor.id, actor.name, channel_id, f"{request.value} click"
        )
        if refusal:
            return refusal
        seen = (release_id, phase or "", step if step is not None else -1)
        roles = await self._roles(app, actor.id, channel_id) if request is Request.PROMOTE else frozenset()
        try:
            await self.engine.request(app.name, request, actor, seen, roles=roles)
        except Refusal as e:
            await self._refused(app, actor, f"{request.value} click", e, channel_id)
            raise
        return None

    async def on_gate_click(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """Approve or Deny on a card waiting for approval: checked against `approvals.from`."""
        await ack()
        action = body["actions"][0]
        user_id = str((body.get("user") or {}).get("id") or "")
        channel_id = (body.get("channel") or {}).get("id") or body.get("container", {}).get("channel_id", "")
        actor = actor_of(body)
        approve = action.get("action_id") == wire.APPROVE_ACTION

        async def work() -> Answer | None:
            app_name, release_id, _, _ = wire.parse_button_value(str(action.get("value", "")))
            app = self.engine.app(app_name)
            what = "approve click" if approve else "deny click"
            refusal = await self._authorize(app, Action.APPROVE, actor.id, actor.name, channel_id, what)
            if refusal:
                return refusal
            try:
                if approve:
                    await self.engine.approve(app.name, actor, release_id)
                else:
                    await self.engine.deny(app.name, actor, "", release_id)
            except Refusal as e:
                await self._refused(app, actor, what, e, channel_id)
                raise
            return None

        self._after_ack(channel_id, user_id, work, str(body.get("response_url") or ""))

    # --- the release form --------------------------------------------------------------------------

    def _offered(self, allowed: Sequence[App]) -> list[forms.Choice]:
        return forms.choices((a.name for a in allowed), self.environments)

    async def _running(self, app: App) -> forms.Running:
        """What runs now for the form (never fails: a problem is shown on the form instead)."""
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                deployment, _ = await self.engine.status(app)
        except UserError as e:
            return forms.Running(None, str(e))
        except TimeoutError:
            return forms.Running(None, "the cluster did not answer in time")
        except Exception as e:
            log.warning("reading %s for the release form failed: %s", app.name, e)
            return forms.Running(None, "the cluster could not be read")
        return forms.running_of(app, deployment)

    async def _open_form(self, body: dict[str, Any]) -> Answer | None:
        """`/release` alone: open the form with the apps this person may release from this channel,
        then fill in what runs now."""
        user_id, channel_id = str(body["user_id"]), str(body["channel_id"])
        allowed, failed = await self._allowed(user_id, Action.RELEASE, channel_id)
        offered = self._offered(allowed)
        if not offered:
            return answers.nothing_to_release(failed)
        selected = offered[0]
        app = self.catalog.apps[selected.name]
        meta = forms.FormMeta(
            channel_id, str(body.get("channel_name") or ""), str(body.get("response_url") or "")
        )
        try:
            opened = await self.client.views_open(
                trigger_id=str(body.get("trigger_id") or ""),
                view=forms.release_form(offered, selected, app, meta),
            )
        except SlackApiError as e:
            return answers.form_failed(str(e.response.get("error") or "unknown"))
        view = opened.get("view") or {}
        await self._redraw(view, offered, selected, meta)
        return None

    async def _redraw(
        self,
        view: Mapping[str, Any],
        offered: Sequence[forms.Choice],
        selected: forms.Choice,
        meta: forms.FormMeta,
    ) -> None:
        """Draw the form again for `selected`, with what runs now. Someone changing the form meanwhile
        makes Slack refuse this (`hash_conflict`): their change brings its own redraw."""
        app = self.catalog.apps[selected.name]
        running = await self._running(app)
        try:
            await self.client.views_update(
                view_id=str(view.get("id") or ""),
                hash=str(view.get("hash") or "") or None,
                view=forms.release_form(offered, selected, app, meta, running),
            )
        except SlackApiError as e:
            log.info("release form not redrawn: %s", e.response.get("error"))

    async def on_form_change(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """The app or the environment of the form changed: redraw it for the new choice."""
        await ack()
        user_id = str((body.get("user") or {}).get("id") or "")
        view = body.get("view") or {}
        try:
            meta = forms.FormMeta.decode(view.get("private_metadata"))
        except ValueError:
            log.warning("a form change without our metadata from %s", user_id)
            return
        action = (body.get("actions") or [{}])[0]
        changed = str(action.get("action_id") or "")

        async def work() -> Answer | None:
            allowed, _ = await self._allowed(user_id, Action.RELEASE, meta.channel_id)
            offered = self._offered(allowed)
            values = forms.read_form(view)
            if changed == forms.ENV_ACTION:
                selected = next((c for c in offered if c.name == values.environment_app), None)
            else:
                selected = next((c for c in offered if c.base == values.base), None)
            if selected is None:  # not one the person may release: the form stays as it is
                log.warning("form change to an app %s may not release", user_id)
                return None
            await self._redraw(view, offered, selected, meta)
            return None

        self._after_ack(meta.channel_id, user_id, work, meta.reply_to)

    async def on_form_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """The form was submitted: check it as the typed command would be checked (errors under the
        field), then start the same release. A start that takes longer than `FORM_INLINE_S` closes
        the form and its outcome follows as a private message."""
        view = body.get("view") or {}
        actor = actor_of(body)
        strategy_block = forms.strategy_block(view)

        async def errors(block: str, message: str) -> None:
            await ack(response_action="errors", errors={block: forms.field_error(message)})

        try:
            meta = forms.FormMeta.decode(view.get("private_metadata"))
        except ValueError:
            await errors(forms.APP_BLOCK, "This form is out of date: type /release again.")
            return
        values = forms.read_form(view)
        name = values.chosen()
        app = self.catalog.apps.get(name)
        env_base = self.environments.get(name, (name, None))[0]
        if app is None or env_base != values.base:
            await errors(forms.APP_BLOCK, "Choose one of the apps in the list.")
            return
        try:
            kind = classify_version(values.version) if values.version else None
        except UsageError as e:
            await errors(forms.VERSION_BLOCK, str(e))
            return
        if kind is None:
            await errors(forms.VERSION_BLOCK, "Type the version to release, for example v2.0.")
            return
        strategy = next((s for s in app.strategies if s.value == values.strategy), None)
        if strategy is None:
            await errors(strategy_block, f"Choose one of {', '.join(s.value for s in app.strategies)}.")
            return
        refusal = await self._authorize(app, Action.RELEASE, actor.id, actor.name, meta.channel_id, "release")
        if refusal:
            await errors(forms.APP_BLOCK, refusal.removeprefix(":no_entry: "))  # plain text there
            return
        intent = intents.Release(app=name, version=values.version, version_kind=kind, strategy=strategy)
        task = self._spawn(
            f"form:{actor.id}", self._begin(intent, actor, meta.channel_id, meta.channel_name, meta.reply_to)
        )
        done, _ = await asyncio.wait({task}, timeout=FORM_INLINE_S)
        if not done:  # still starting: close the form, answer when it is known
            await ack()
            self._after_ack(meta.channel_id, actor.id, lambda: self._form_outcome(task), meta.reply_to)
            return
        failure = task.exception()
        if isinstance(failure, UserError):
            block = forms.VERSION_BLOCK if "version" in str(failure).lower() else forms.APP_BLOCK
            await errors(block, str(failure))
            return
        if failure is not None:
            error_id = secrets.token_hex(4)
            log.error("error %s starting a release from the form of %s", error_id, actor.id, exc_info=failure)
            await errors(
                forms.APP_BLOCK,
                f"Something went wrong on our side (error id {error_id}); nothing was changed.",
            )
            return
        await ack()
        started = task.result()
        self._after_ack(
            meta.channel_id, actor.id, lambda: _answer_now(answers.accepted(started)), meta.reply_to
        )

    async def _form_outcome(self, task: asyncio.Task[Record | Enqueued]) -> Answer:
        return answers.accepted(await task)

    # --- App Home ----------------------------------------------------------------------------------

    async def on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Draw the Home tab of whoever opened it: the apps they may see."""
        if event.get("tab", "home") != "home":
            return
        user_id = str(event.get("user") or "")
        if not user_id:
            return
        self._spawn(f"home:{user_id}", self._publish_home(user_id))

    async def _publish_home(self, user_id: str) -> None:
        try:
            visible, _ = await self._allowed(user_id, Action.VIEW, "")
            gate = asyncio.Semaphore(HOME_CONCURRENCY)

            async def read(app: App) -> forms.HomeApp:
                async with gate:
                    return await self._home_app(app)

            shown = visible[: forms.HOME_APPS_MAX]
            entries = await asyncio.gather(*(read(a) for a in shown))
            view = forms.home_view(user_id, entries, hidden=len(visible) - len(shown))
            await self.client.views_publish(user_id=user_id, view=view)
        except SlackApiError as e:
            log.warning("Home tab of %s not published: %s", user_id, e.response.get("error"))
        except Exception:
            self._logged_error(user_id)

    async def _home_app(self, app: App) -> forms.HomeApp:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                deployment, stored = await self.engine.status(app)
                _, revisions = await self.engine.history(app)
        except UserError as e:
            return forms.HomeApp(app, problem=str(e))
        except TimeoutError:
            return forms.HomeApp(app, problem="the cluster did not answer in time")
        except Exception as e:
            log.warning("reading %s for the Home tab failed: %s", app.name, e)
            return forms.HomeApp(app, problem="the cluster could not be read")
        record = stored.record if stored is not None else None
        link = await self.engine.reporter.permalink(record) if record is not None else ""
        return forms.HomeApp(app, deployment, record, link, tuple(revisions))


async def _answer_now(answer: Answer) -> Answer:
    return answer
