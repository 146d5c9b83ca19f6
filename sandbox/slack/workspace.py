"""The simulated Slack workspace: users, channels, messages, threads, ephemerals and their rules.

Owns Slack's data model and the semantics of every Web API method the simulator serves, as plain
Python (no HTTP), so the rules are in one place and can be read and tested directly:

- message `ts` unique and increasing per channel; `thread_ts` always names the root; the root
  carries `reply_count`, `reply_users`, `reply_users_count`, `latest_reply`;
- conversations.history returns roots newest first, conversations.replies the root then replies
  oldest first, both with Slack's pagination shape;
- chat.update only on the app's own non-ephemeral messages, marking `edited: {user, ts}`;
- ephemeral messages never appear in history; they are kept per (channel, user);
- response_url: at most 5 uses within 30 minutes; trigger_id: single use within 3 seconds;
- modals and Home tabs (views.open, views.update, views.publish) in `views.py`;
- conversations of three kinds: public channels, private channels and DMs (`im`), each with its
  members; the bot sees a private channel or a DM only when it is a member (`channel_not_found`
  otherwise, as if it did not exist), and posting to a public channel it is not in answers
  `not_in_channel` (unless it holds `chat:write.public`);
- ids where Slack takes only ids: a channel name (`releases`, `#releases`) is accepted by
  chat.postMessage and chat.postEphemeral only, a user id as chat.postMessage's channel means the
  app's DM with that user, and every other channel, user and user-group argument must be an id;
- bot scopes: every method needs the scope Slack documents for it (`METHOD_SCOPES`), for the kind of
  conversation it acts on; without it the call answers `missing_scope` with `needed` and `provided`;
- an org-wide (Enterprise Grid) install: `enterprise_install` adds the enterprise to what Slack
  sends and to auth.test, and chat.postMessage then refuses channel names (`team_not_found`).

Errors are raised as `ApiError(error)`; the HTTP layer (`server.py`) turns them into
`{"ok": false, "error": ...}`. Every mutation calls `on_change` so waiters and the page wake up.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.manifest import BOT_SCOPES
from sandbox.slack.blocks import (
    MAX_MESSAGE_TEXT,
    BlockErrors,
    normalize_blocks,
    parse_blocks_param,
    validate_blocks,
)
from sandbox.slack.errors import ApiError as ApiError
from sandbox.slack.ids import TsGenerator, decode_cursor, encode_cursor, parse_ts, slack_id
from sandbox.slack.views import Views

Message = dict[str, Any]

CHAT_WRITE_PUBLIC = "chat:write.public"

# The scope each Web API method needs with a bot token, from each method's page
# (https://docs.slack.dev/reference/methods/<method>, "Required scopes"). A dict names the scope per
# kind of conversation the call acts on (conversations.history needs channels:history in a public
# channel, groups:history in a private one, im:history in a DM), and Slack's `needed` then names the
# one for that conversation, as in `{"error": "missing_scope", "needed": "groups:history", "provided":
# "channels:history,reactions:read,reactions:write"}` (a real answer, quoted in DataDog/slapr#47).
# None: no scope needed.
ScopeRule = str | dict[str, str] | None
_HISTORY: dict[str, str] = {"public": "channels:history", "private": "groups:history", "im": "im:history"}
_READ: dict[str, str] = {"public": "channels:read", "private": "groups:read", "im": "im:read"}
METHOD_SCOPES: dict[str, ScopeRule] = {
    "api.test": None,
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.getPermalink": None,
    "conversations.history": _HISTORY,
    "conversations.replies": _HISTORY,
    "conversations.info": _READ,
    "conversations.list": _READ,
    "conversations.members": _READ,
    "users.info": "users:read",
    "users.list": "users:read",
    "usergroups.list": "usergroups:read",
    "usergroups.users.list": "usergroups:read",
    "views.open": None,
    "views.update": None,
    "views.publish": None,
    "reactions.add": "reactions:write",
}
# conversations.list `types` values and the kind of conversation each lists.
_LIST_TYPES = {"public_channel": "public", "private_channel": "private", "im": "im"}

RESPONSE_URL_USES = 5
RESPONSE_URL_LIFETIME = 30 * 60.0
TRIGGER_LIFETIME = 3.0
SLACKBOT_ID = "USLACKBOT"


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False


@dataclass
class Channel:
    """A conversation: a public channel, a private channel or a DM (`kind` "public", "private", "im").

    `members` are the people in it (ids); whether the bot is in it is `bot_is_member`. A DM's `name`
    is the other person's id (or both people's, for a DM between two people)."""

    id: str
    name: str
    created: int
    messages: dict[str, Message] = field(default_factory=dict)  # ts -> message (roots and replies)
    timeline: list[str] = field(default_factory=list)  # ts shown in history, ascending
    threads: dict[str, list[str]] = field(default_factory=dict)  # root ts -> reply ts, ascending
    ephemerals: dict[str, list[Message]] = field(default_factory=dict)  # user id -> messages
    archived: bool = False
    bot_is_member: bool = True
    kind: str = "public"
    members: set[str] = field(default_factory=set)


@dataclass
class ResponseUrl:
    """What a response_url is bound to: where to answer, for whom, and which message it came from."""

    token: str
    channel_id: str
    user_id: str
    issued_at: float
    original_ts: str | None = None  # the message a click came from
    original_ephemeral: bool = False
    uses: int = 0


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return str(value)


class Workspace:
    """One Slack workspace with one installed app (the bot) and some people.

    `clock` gives wall-clock seconds (settable, used for `ts` values and url/trigger expiry).
    `scopes` are the bot token's scopes (default: what the app's manifest asks for, `bot.manifest`).
    The people are members of every public channel given; the bot too.
    """

    def __init__(
        self,
        *,
        users: Sequence[str],
        channels: Sequence[str],
        usergroups: Mapping[str, Sequence[str]],
        clock: Callable[[], float],
        bot_name: str = "release-bot",
        team_domain: str = "release-sandbox",
        scopes: Iterable[str] | None = None,
    ) -> None:
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        self.team_domain = team_domain
        self.team_name = "Release Sandbox"
        self.team_id = slack_id("T", team_domain)
        self.enterprise_id = slack_id("E", team_domain)
        self.enterprise_name = "Release Sandbox Org"
        self.enterprise_install = False
        self.app_id = slack_id("A", bot_name)
        self.bot_id = slack_id("B", bot_name)
        self.bot = User(slack_id("U", f"bot:{bot_name}"), bot_name, bot_name, is_bot=True)
        self.scopes: list[str] = list(BOT_SCOPES if scopes is None else scopes)
        # The app's Messages tab (features.app_home.messages_tab_enabled): off, as in the manifest.
        self.messages_tab_enabled = False
        self.users: dict[str, User] = {self.bot.id: self.bot}
        for name in users:
            user = User(slack_id("U", name), name, name.capitalize())
            self.users[user.id] = user
        people = {u.id for u in self.users.values() if not u.is_bot}
        self.channels: dict[str, Channel] = {}
        created = int(clock())
        for name in channels:
            cid = slack_id("C", name)
            self.channels[cid] = Channel(cid, name, created, members=set(people))
        self.usergroups: dict[str, tuple[str, list[str]]] = {}
        for handle, members in usergroups.items():
            ids = [self.user(m).id for m in members]
            self.usergroups[slack_id("S", handle)] = (handle, ids)
        self._ts = TsGenerator()
        self._response_urls: dict[str, ResponseUrl] = {}
        self._triggers: dict[str, tuple[str, float]] = {}
        # Modals and Home tabs (views.open, views.update, views.publish).
        self.views = Views(
            team_id=self.team_id,
            app_id=self.app_id,
            bot_id=self.bot_id,
            clock=lambda: self.clock(),
            on_change=lambda: self.on_change(),
        )

    # ---- lookups -------------------------------------------------------------------------------

    def user(self, name_or_id: str) -> User:
        """A user by id or name; raises ApiError('user_not_found')."""
        if name_or_id in self.users:
            return self.users[name_or_id]
        for user in self.users.values():
            if user.name == name_or_id.lstrip("@"):
                return user
        raise ApiError("user_not_found")

    def channel(self, name_or_id: str | None) -> Channel:
        """A conversation by id, name or #name, whoever asks; raises ApiError('channel_not_found')."""
        if name_or_id:
            if name_or_id in self.channels:
                return self.channels[name_or_id]
            for channel in self.channels.values():
                if channel.kind != "im" and channel.name == name_or_id.lstrip("#"):
                    return channel
        raise ApiError("channel_not_found")

    def visible(self, channel: Channel) -> bool:
        """Whether the bot can see `channel`: every public channel, private channels and DMs it is in."""
        return channel.kind == "public" or channel.bot_is_member

    def conversation(
        self, params: Mapping[str, Any], key: str = "channel", *, names: bool = False, user_dm: bool = False
    ) -> Channel:
        """The conversation a Web API call names, as the bot may see it.

        Slack takes an encoded id for every channel argument except chat.postMessage's and
        chat.postEphemeral's, which also take a channel name ("An encoded ID or channel name",
        https://docs.slack.dev/reference/methods/chat.postMessage, .../chat.postEphemeral: `names`);
        chat.postMessage also takes a user id, meaning the app's DM with that user (`user_dm`). A
        private channel or a DM the bot is not in does not exist for it: `channel_not_found`.
        """
        value = _str(params, key) or ""
        channel = self.channels.get(value)
        if channel is None and user_dm and value in self.users and not self.users[value].is_bot:
            channel = self.app_dm(value)
        elif channel is None and names and value:
            if self.enterprise_install:
                # "team_not_found: ... when using an org-wide token, the `channel_name` is passed
                # instead of the `channel_id`" (https://docs.slack.dev/reference/methods/chat.postMessage)
                raise ApiError("team_not_found")
            named = [c for c in self.channels.values() if c.kind != "im" and c.name == value.lstrip("#")]
            channel = named[0] if named else None
        if channel is None or not self.visible(channel):
            raise ApiError("channel_not_found")
        return channel

    def user_id(self, params: Mapping[str, Any], key: str = "user") -> User:
        """The user a Web API call names: an id (Slack takes no user names), else `user_not_found`."""
        value = _str(params, key)
        if value is None or value not in self.users:
            raise ApiError("user_not_found")
        return self.users[value]

    # ---- conversations and people --------------------------------------------------------------

    def add_channel(
        self, name: str, members: Iterable[str], *, private: bool = False, bot: bool = True
    ) -> Channel:
        """A new channel with these people (names or ids) in it; the bot in it when `bot`."""
        if any(c.kind != "im" and c.name == name for c in self.channels.values()):
            raise ValueError(f"a channel named {name!r} exists")
        cid = slack_id("C", f"{'private' if private else 'public'}:{name}")
        channel = Channel(
            cid,
            name,
            int(self.clock()),
            bot_is_member=bot,
            kind="private" if private else "public",
            members={self.user(m).id for m in members},
        )
        self.channels[cid] = channel
        self.on_change()
        return channel

    def open_dm(self, user: str, other: str | None = None) -> Channel:
        """The DM between `user` and the app (`other` None: the app's DM, which the bot is in) or
        between two people (the bot not in it); the same one every time."""
        first = self.user(user).id
        people = sorted({first, self.user(other).id}) if other is not None else [first]
        key = "dm:" + ",".join(people)
        cid = slack_id("D", key)
        channel = self.channels.get(cid)
        if channel is None:
            channel = Channel(
                cid,
                ",".join(people),
                int(self.clock()),
                bot_is_member=other is None,
                kind="im",
                members=set(people),
            )
            self.channels[cid] = channel
            self.on_change()
        return channel

    def app_dm(self, user_id: str) -> Channel:
        """The app's DM with a user, as chat.postMessage reaches it with `channel=<user id>`."""
        return self.open_dm(user_id)

    def is_member(self, channel: Channel, user_id: str) -> bool:
        return (user_id == self.bot.id and channel.bot_is_member) or user_id in channel.members

    # ---- scopes ------------------------------------------------------------------------------------

    def needed_scope(self, method: str, params: Mapping[str, Any]) -> str | None:
        """The scope `method` needs for these arguments that the token lacks, or None."""
        rule = METHOD_SCOPES.get(method)
        if rule is None:
            return None
        if isinstance(rule, str):
            return None if rule in self.scopes else rule
        if method == "conversations.list":
            kinds = [
                _LIST_TYPES.get(t.strip(), "")
                for t in str(params.get("types") or "public_channel").split(",")
            ]
        else:
            channel = self.channels.get(_str(params, "channel") or "")
            if channel is None:
                return None  # the call itself answers channel_not_found
            kinds = [channel.kind]
        for kind in kinds:
            scope = rule.get(kind)
            if scope is not None and scope not in self.scopes:
                return scope
        return None

    def accepted_scopes(self, method: str) -> list[str]:
        """Every scope `method` accepts (what Slack's `x-accepted-oauth-scopes` header lists)."""
        rule = METHOD_SCOPES.get(method)
        if rule is None:
            return []
        return [rule] if isinstance(rule, str) else list(rule.values())

    def next_ts(self, channel: Channel) -> str:
        return self._ts.next(channel.id, self.clock())

    # ---- messages ------------------------------------------------------------------------------

    def _content(
        self, params: Mapping[str, Any], *, max_blocks: int = 50, require: bool = True
    ) -> tuple[str | None, list[dict[str, Any]] | None, Any]:
        text = params.get("text")
        if text is not None and not isinstance(text, str):
            text = str(text)
        try:
            raw_blocks = parse_blocks_param(params.get("blocks"))
        except ValueError:
            raise ApiError("invalid_blocks_format") from None
        blocks = None
        if raw_blocks is not None:
            try:
                validate_blocks(raw_blocks, max_blocks=max_blocks)
            except BlockErrors as e:
                raise ApiError(
                    "invalid_blocks",
                    errors=e.errors,
                    response_metadata={"messages": [f"[ERROR] {m}" for m in e.errors]},
                ) from None
            blocks = normalize_blocks(raw_blocks, salt=str(self.clock()))
        attachments = params.get("attachments")
        if isinstance(attachments, str) and attachments:
            try:
                attachments = json.loads(attachments)
            except ValueError:
                raise ApiError("invalid_attachments") from None
        if require and not text and not raw_blocks and not attachments:
            raise ApiError("no_text")
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise ApiError("msg_too_long")
        return text, blocks, attachments or None

    def _postable(self, params: Mapping[str, Any], *, user_dm: bool = False) -> Channel:
        channel = self.conversation(params, names=True, user_dm=user_dm)
        if channel.archived:
            raise ApiError("is_archived")
        if not channel.bot_is_member and not (channel.kind == "public" and CHAT_WRITE_PUBLIC in self.scopes):
            # A public channel the bot is not in (private ones and DMs are channel_not_found above);
            # chat:write.public lifts it: https://docs.slack.dev/reference/scopes/chat.write.public
            raise ApiError("not_in_channel")
        if channel.kind == "im" and not self.messages_tab_enabled:
            # "messages_tab_disabled: Messages tab for the app is disabled."
            # (https://docs.slack.dev/reference/methods/chat.postMessage, .../chat.postEphemeral)
            raise ApiError("messages_tab_disabled")
        return channel

    def _root_of(self, channel: Channel, thread_ts: str) -> Message:
        msg = channel.messages.get(thread_ts)
        if msg is None:
            raise ApiError("thread_not_found")
        root_ts: str = msg.get("thread_ts") or msg["ts"]
        return channel.messages[root_ts]

    def _bot_fields(self) -> Message:
        return {
            "user": self.bot.id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot.name,
                "team_id": self.team_id,
                "deleted": False,
            },
        }

    def add_message(
        self,
        channel: Channel,
        fields: Message,
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
    ) -> Message:
        """Store a new message (root or thread reply) and maintain the root's thread fields."""
        ts = self.next_ts(channel)
        msg: Message = {"type": "message", **fields, "ts": ts}
        if thread_ts is not None:
            root = self._root_of(channel, thread_ts)
            msg["thread_ts"] = root["ts"]
            msg["parent_user_id"] = root.get("user", "")
            if broadcast:
                msg["subtype"] = "thread_broadcast"
                channel.timeline.append(ts)
            replies = channel.threads.setdefault(root["ts"], [])
            replies.append(ts)
            root["thread_ts"] = root["ts"]
            root["reply_count"] = len(replies)
            users = root.setdefault("reply_users", [])
            if msg.get("user") and msg["user"] not in users:
                users.append(msg["user"])
            root["reply_users_count"] = len(users)
            root["latest_reply"] = ts
            root.setdefault("is_locked", False)
            root.setdefault("subscribed", False)
        else:
            channel.timeline.append(ts)
        channel.messages[ts] = msg
        self.on_change()
        return msg

    def post_user_message(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> Message:
        """A person posts `text` (used to stage conversations for Events API tests)."""
        ch = self.channel(channel)
        fields = {"user": self.user(user).id, "text": text, "team": self.team_id}
        return copy.deepcopy(self.add_message(ch, fields, thread_ts=thread_ts))

    def post_ephemeral(
        self,
        channel: Channel,
        user_id: str,
        fields: Message,
        *,
        via: str,
        thread_ts: str | None = None,
    ) -> Message:
        """Store an ephemeral message for one user; `via` says how it arrived (see `ephemerals`)."""
        msg: Message = {"type": "message", **fields, "ts": self.next_ts(channel), "is_ephemeral": True}
        msg["via"] = via
        if thread_ts is not None:
            msg["thread_ts"] = thread_ts
        channel.ephemerals.setdefault(user_id, []).append(msg)
        self.on_change()
        return msg

    def _message_fields(self, text: str | None, blocks: Any, attachments: Any) -> Message:
        fields: Message = {**self._bot_fields(), "text": text or ""}
        if blocks is not None:
            fields["blocks"] = blocks
        if attachments is not None:
            fields["attachments"] = attachments
        return fields

    def chat_post_message(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._postable(params, user_dm=True)
        text, blocks, attachments = self._content(params)
        fields = self._message_fields(text, blocks, attachments)
        metadata = params.get("metadata")
        if isinstance(metadata, str) and metadata:
            try:
                metadata = json.loads(metadata)
            except ValueError:
                raise ApiError("invalid_metadata_format") from None
        if isinstance(metadata, dict):
            fields["metadata"] = metadata
        msg = self.add_message(
            channel,
            fields,
            thread_ts=_str(params, "thread_ts"),
            broadcast=_truthy(params.get("reply_broadcast")),
        )
        return {"channel": channel.id, "ts": msg["ts"], "message": self._public(msg, metadata=False)}

    def chat_post_ephemeral(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._postable(params)
        user = self.user_id(params)
        if not self.is_member(channel, user.id):
            # "user: `id` of the user who will receive the ephemeral message. The user should be in
            # the channel" -> user_not_in_channel (https://docs.slack.dev/reference/methods/chat.postEphemeral)
            raise ApiError("user_not_in_channel")
        text, blocks, attachments = self._content(params)
        fields = self._message_fields(text, blocks, attachments)
        msg = self.post_ephemeral(
            channel, user.id, fields, via="chat.postEphemeral", thread_ts=_str(params, "thread_ts")
        )
        return {"message_ts": msg["ts"]}

    def _own_message(self, channel: Channel, ts: str | None, *, cant: str) -> Message:
        if ts is None or ts not in channel.messages:
            raise ApiError("message_not_found")
        msg = channel.messages[ts]
        if msg.get("bot_id") != self.bot_id or msg.get("subtype") == "tombstone":
            raise ApiError(cant)
        return msg

    def chat_update(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.conversation(params)
        if channel.archived:
            raise ApiError("is_archived")
        msg = self._own_message(channel, _str(params, "ts"), cant="cant_update_message")
        if "text" not in params and "blocks" not in params and "attachments" not in params:
            raise ApiError("no_text")
        text, blocks, attachments = self._content(params, require=False)
        if text is not None:
            msg["text"] = text
        if "blocks" in params:
            if blocks:
                msg["blocks"] = blocks
            else:
                msg.pop("blocks", None)
        if "attachments" in params:
            if attachments:
                msg["attachments"] = attachments
            else:
                msg.pop("attachments", None)
        if not msg.get("text") and not msg.get("blocks") and not msg.get("attachments"):
            raise ApiError("no_text")
        msg["edited"] = {"user": self.bot.id, "ts": self.next_ts(channel)}
        self.on_change()
        public = self._public(msg, metadata=False)
        return {"channel": channel.id, "ts": msg["ts"], "text": msg["text"], "message": public}

    def chat_delete(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.conversation(params)
        ts = _str(params, "ts")
        msg = self._own_message(channel, ts, cant="cant_delete_message")
        assert ts is not None
        self._delete(channel, msg)
        return {"channel": channel.id, "ts": ts}

    def _delete(self, channel: Channel, msg: Message) -> None:
        ts = msg["ts"]
        root_ts = msg.get("thread_ts")
        if root_ts is not None and root_ts != ts:  # a reply
            del channel.messages[ts]
            replies = channel.threads[root_ts]
            replies.remove(ts)
            if ts in channel.timeline:
                channel.timeline.remove(ts)
            root = channel.messages[root_ts]
            root["reply_count"] = len(replies)
            users: list[str] = []
            for reply_ts in replies:
                uid = channel.messages[reply_ts].get("user")
                if uid and uid not in users:
                    users.append(uid)
            root["reply_users"] = users
            root["reply_users_count"] = len(users)
            root["latest_reply"] = replies[-1] if replies else root_ts
        elif channel.threads.get(ts):  # a root with replies leaves a tombstone
            keep = {k: msg[k] for k in ("ts", "thread_ts", "reply_count", "reply_users", "latest_reply")}
            msg.clear()
            msg.update(
                {"type": "message", "subtype": "tombstone", "text": "This message was deleted.", **keep}
            )
            msg["user"] = SLACKBOT_ID
            msg["hidden"] = True
        else:
            del channel.messages[ts]
            channel.timeline.remove(ts)
            channel.threads.pop(ts, None)
        self.on_change()

    def chat_get_permalink(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.conversation(params)
        ts = _str(params, "message_ts")
        if ts is None or ts not in channel.messages:
            raise ApiError("message_not_found")
        msg = channel.messages[ts]
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p{ts.replace('.', '')}"
        if msg.get("thread_ts") and msg["thread_ts"] != ts:
            link += f"?thread_ts={msg['thread_ts']}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def reactions_add(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.conversation(params)
        ts = _str(params, "timestamp")
        name = _str(params, "name")
        if ts is None or ts not in channel.messages:
            raise ApiError("message_not_found")
        if name is None:
            raise ApiError("invalid_name")
        reactions = channel.messages[ts].setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if self.bot.id in reaction["users"]:
                    raise ApiError("already_reacted")
                reaction["users"].append(self.bot.id)
                reaction["count"] += 1
                break
        else:
            reactions.append({"name": name, "users": [self.bot.id], "count": 1})
        self.on_change()
        return {}

    # ---- reading -------------------------------------------------------------------------------

    def _public(self, msg: Message, *, metadata: bool) -> Message:
        out = copy.deepcopy(msg)
        if not metadata:
            out.pop("metadata", None)
        return out

    @staticmethod
    def _window(
        ts_list: list[str], params: Mapping[str, Any], *, newest_first: bool, default_limit: int
    ) -> tuple[list[str], str | None]:
        oldest = _str(params, "oldest")
        latest = _str(params, "latest")
        inclusive = _truthy(params.get("inclusive"))
        try:
            lo = parse_ts(oldest) if oldest else None
            hi = parse_ts(latest) if latest else None
        except ValueError:
            raise ApiError("invalid_ts_oldest" if oldest else "invalid_ts_latest") from None
        selected = []
        for ts in ts_list:
            t = parse_ts(ts)
            if lo is not None and (t < lo or (t == lo and not inclusive)):
                continue
            if hi is not None and (t > hi or (t == hi and not inclusive)):
                continue
            selected.append(ts)
        if newest_first:
            selected.reverse()
        cursor = _str(params, "cursor")
        if cursor is not None:
            decoded = decode_cursor(cursor)
            if decoded is None or not decoded.startswith("next_ts:"):
                raise ApiError("invalid_cursor")
            start = decoded.removeprefix("next_ts:")
            selected = selected[selected.index(start) :] if start in selected else []
        try:
            limit = int(params.get("limit") or default_limit)
        except (TypeError, ValueError):
            raise ApiError("invalid_limit") from None
        limit = max(1, min(limit, 999))
        page, rest = selected[:limit], selected[limit:]
        return page, (encode_cursor(f"next_ts:{rest[0]}") if rest else None)

    def _readable(self, params: Mapping[str, Any]) -> Channel:
        channel = self.conversation(params)
        if not channel.bot_is_member:
            raise ApiError("not_in_channel")
        return channel

    def conversations_history(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._readable(params)
        page, next_cursor = self._window(channel.timeline, params, newest_first=True, default_limit=100)
        meta = _truthy(params.get("include_all_metadata"))
        return {
            "messages": [self._public(channel.messages[ts], metadata=meta) for ts in page],
            "has_more": next_cursor is not None,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": next_cursor or ""},
        }

    def conversations_replies(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self._readable(params)
        ts = _str(params, "ts")
        if ts is None or ts not in channel.messages:
            raise ApiError("thread_not_found")
        root = self._root_of(channel, ts)
        thread = [root["ts"], *channel.threads.get(root["ts"], [])]
        page, next_cursor = self._window(thread, params, newest_first=False, default_limit=1000)
        meta = _truthy(params.get("include_all_metadata"))
        return {
            "messages": [self._public(channel.messages[t], metadata=meta) for t in page],
            "has_more": next_cursor is not None,
            "response_metadata": {"next_cursor": next_cursor or ""},
        }

    def _member_ids(self, channel: Channel) -> list[str]:
        people = [u for u in self.users if u in channel.members]
        return ([self.bot.id] if channel.bot_is_member else []) + [u for u in people if u != self.bot.id]

    def channel_info(self, channel: Channel) -> dict[str, Any]:
        if channel.kind == "im":
            # An IM object (https://docs.slack.dev/reference/objects/conversation-object): the other
            # person is `user`.
            others = sorted(channel.members)
            return {
                "id": channel.id,
                "created": channel.created,
                "is_im": True,
                "is_org_shared": False,
                "context_team_id": self.team_id,
                "user": others[0] if len(others) == 1 else others[-1],
                "is_user_deleted": False,
                "priority": 0,
            }
        private = channel.kind == "private"
        return {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": private,
            "is_archived": channel.archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": channel.bot_is_member,
            "created": channel.created,
            "creator": next(iter(sorted(channel.members)), self.bot.id),
            "context_team_id": self.team_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "num_members": len(self._member_ids(channel)),
        }

    def conversations_info(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel_info(self.conversation(params))}

    def conversations_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        types = str(params.get("types") or "public_channel").split(",")
        kinds = {_LIST_TYPES[t.strip()] for t in types if t.strip() in _LIST_TYPES}
        if len(kinds) != len([t for t in types if t.strip()]):
            raise ApiError("invalid_types")
        exclude_archived = _truthy(params.get("exclude_archived"))
        channels = [
            self.channel_info(c)
            for c in self.channels.values()
            if c.kind in kinds and self.visible(c) and not (exclude_archived and c.archived)
        ]
        return {"channels": channels, "response_metadata": {"next_cursor": ""}}

    def conversations_members(self, params: Mapping[str, Any]) -> dict[str, Any]:
        channel = self.conversation(params)
        return {"members": self._member_ids(channel), "response_metadata": {"next_cursor": ""}}

    def user_info(self, user: User) -> dict[str, Any]:
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": "Europe/Amsterdam",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "updated": 0,
            "profile": {
                "real_name": user.real_name,
                "real_name_normalized": user.real_name,
                "display_name": user.name,
                "display_name_normalized": user.name,
                "email": f"{user.name}@example.com",
                "team": self.team_id,
                **({"bot_id": self.bot_id} if user.is_bot else {}),
            },
        }

    def users_info(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"user": self.user_info(self.user_id(params))}

    def users_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        members = [self.user_info(u) for u in self.users.values()]
        return {"members": members, "cache_ts": int(self.clock()), "response_metadata": {"next_cursor": ""}}

    def usergroups_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        include_users = _truthy(params.get("include_users"))
        groups = []
        for gid, (handle, members) in self.usergroups.items():
            group: dict[str, Any] = {
                "id": gid,
                "team_id": self.team_id,
                "is_usergroup": True,
                "name": handle.replace("-", " ").title(),
                "handle": handle,
                "user_count": len(members),
            }
            if include_users:
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    def usergroups_users_list(self, params: Mapping[str, Any]) -> dict[str, Any]:
        gid = _str(params, "usergroup")
        if gid is None or gid not in self.usergroups:
            raise ApiError("no_such_subteam")
        return {"users": list(self.usergroups[gid][1])}

    def auth_test(self, params: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot.name,
            "team_id": self.team_id,
            "user_id": self.bot.id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.enterprise_install,
        }
        if self.enterprise_install:
            # An org-wide token names its enterprise (https://docs.slack.dev/reference/methods/auth.test)
            result["enterprise_id"] = self.enterprise_id
        return result

    # ---- response_url and trigger_id -----------------------------------------------------------

    def issue_response_url(
        self,
        channel_id: str,
        user_id: str,
        *,
        original_ts: str | None = None,
        original_ephemeral: bool = False,
    ) -> ResponseUrl:
        token = secrets.token_urlsafe(18)
        url = ResponseUrl(token, channel_id, user_id, self.clock(), original_ts, original_ephemeral)
        self._response_urls[token] = url
        return url

    def issue_trigger_id(self, user_id: str) -> str:
        trigger = f"{int(self.clock())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self._triggers[trigger] = (user_id, self.clock())
        return trigger

    def _find_ephemeral(self, channel: Channel, user_id: str, ts: str | None) -> Message | None:
        for msg in channel.ephemerals.get(user_id, []):
            if msg["ts"] == ts:
                return msg
        return None

    def respond(self, token: str, body: Mapping[str, Any]) -> None:
        """Act on a POST to a response_url (Slack's rules: 5 uses, 30 minutes)."""
        url = self._response_urls.get(token)
        if url is None:
            raise ApiError("invalid_token", status=404)
        if self.clock() - url.issued_at > RESPONSE_URL_LIFETIME:
            raise ApiError("expired_url", status=404)
        if url.uses >= RESPONSE_URL_USES:
            raise ApiError("used_url", status=404)
        channel = self.channels[url.channel_id]
        if _truthy(body.get("delete_original")):
            url.uses += 1
            if url.original_ts is None:
                return
            if url.original_ephemeral:
                eph = self._find_ephemeral(channel, url.user_id, url.original_ts)
                if eph is not None:
                    channel.ephemerals[url.user_id].remove(eph)
                    self.on_change()
            elif url.original_ts in channel.messages:
                self._delete(channel, channel.messages[url.original_ts])
            return
        text, blocks, attachments = self._content(body)
        url.uses += 1
        fields = self._message_fields(text, blocks, attachments)
        replace = _truthy(body.get("replace_original")) and url.original_ts is not None
        if replace and url.original_ephemeral:
            eph = self._find_ephemeral(channel, url.user_id, url.original_ts)
            if eph is not None:
                eph.pop("blocks", None)
                eph.pop("attachments", None)
                eph.update(fields)
                self.on_change()
                return
        elif replace and url.original_ts in channel.messages:
            msg = channel.messages[url.original_ts]
            msg.pop("blocks", None)
            msg.pop("attachments", None)
            msg.update(fields)
            self.on_change()
            return
        thread_ts = _str(body, "thread_ts")
        if body.get("response_type") == "in_channel":
            self.add_message(channel, fields, thread_ts=thread_ts)
        else:
            self.post_ephemeral(channel, url.user_id, fields, via="response_url", thread_ts=thread_ts)

    def views_open(self, params: Mapping[str, Any]) -> dict[str, Any]:
        trigger = _str(params, "trigger_id")
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        entry = self._triggers.pop(trigger, None)
        if entry is None:
            raise ApiError("invalid_trigger_id")
        if self.clock() - entry[1] > TRIGGER_LIFETIME:
            raise ApiError("expired_trigger_id")
        return {"view": self.views.open(entry[0], params.get("view"), salt=trigger)}

    def views_update(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"view": self.views.update(params)}

    def views_publish(self, params: Mapping[str, Any]) -> dict[str, Any]:
        user = self.user_id(params, "user_id")
        if user.is_bot:
            raise ApiError("user_not_found")
        return {"view": self.views.publish(user.id, params)}


METHODS: dict[str, Callable[[Workspace, Mapping[str, Any]], dict[str, Any]]] = {
    "api.test": lambda ws, p: {"args": {k: v for k, v in p.items() if k != "token"}},
    "auth.test": Workspace.auth_test,
    "chat.postMessage": Workspace.chat_post_message,
    "chat.postEphemeral": Workspace.chat_post_ephemeral,
    "chat.update": Workspace.chat_update,
    "chat.delete": Workspace.chat_delete,
    "chat.getPermalink": Workspace.chat_get_permalink,
    "conversations.history": Workspace.conversations_history,
    "conversations.replies": Workspace.conversations_replies,
    "conversations.info": Workspace.conversations_info,
    "conversations.list": Workspace.conversations_list,
    "conversations.members": Workspace.conversations_members,
    "users.info": Workspace.users_info,
    "users.list": Workspace.users_list,
    "usergroups.list": Workspace.usergroups_list,
    "usergroups.users.list": Workspace.usergroups_users_list,
    "views.open": Workspace.views_open,
    "views.update": Workspace.views_update,
    "views.publish": Workspace.views_publish,
    "reactions.add": Workspace.reactions_add,
}
"""Every Web API method the simulator serves: name -> implementation (params -> response fields)."""
