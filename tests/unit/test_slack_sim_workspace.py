"""Slack's message model without HTTP: threads, history order, edits, ephemerals, response_url rules."""

from __future__ import annotations

import pytest

from sandbox.slack.workspace import ApiError, Workspace


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ws(clock: Clock) -> Workspace:
    return Workspace(users=["alice", "bob"], channels=["releases"], usergroups={"rm": ["alice"]}, clock=clock)


def cid(ws: Workspace) -> str:
    return ws.channel("releases").id


def test_thread_fields_on_the_root(ws: Workspace) -> None:
    root = ws.chat_post_message({"channel": "releases", "text": "card"})["ts"]
    r1 = ws.chat_post_message({"channel": cid(ws), "text": "one", "thread_ts": root})["ts"]
    alice = ws.post_user_message("releases", "alice", "me too", thread_ts=r1)  # a reply's ts names the root
    history = ws.conversations_history({"channel": cid(ws)})["messages"]
    assert [m["ts"] for m in history] == [root]
    head = history[0]
    assert head["thread_ts"] == root
    assert head["reply_count"] == 2
    assert head["reply_users"] == [ws.bot.id, alice["user"]]
    assert head["reply_users_count"] == 2
    assert head["latest_reply"] == alice["ts"]
    thread = ws.conversations_replies({"channel": cid(ws), "ts": root})["messages"]
    assert [m["ts"] for m in thread] == [root, r1, alice["ts"]]
    assert thread[1]["thread_ts"] == root
    assert thread[1]["parent_user_id"] == ws.bot.id


def test_history_newest_first_with_pagination(ws: Workspace) -> None:
    ts = [ws.chat_post_message({"channel": "releases", "text": str(i)})["ts"] for i in range(5)]
    page1 = ws.conversations_history({"channel": cid(ws), "limit": "2"})
    assert [m["ts"] for m in page1["messages"]] == ts[::-1][:2]
    assert page1["has_more"] is True
    cursor = page1["response_metadata"]["next_cursor"]
    page2 = ws.conversations_history({"channel": cid(ws), "limit": 2, "cursor": cursor})
    assert [m["ts"] for m in page2["messages"]] == ts[::-1][2:4]
    window = ws.conversations_history({"channel": cid(ws), "oldest": ts[1], "latest": ts[3]})
    assert [m["ts"] for m in window["messages"]] == [ts[2]]
    inclusive = ws.conversations_history(
        {"channel": cid(ws), "oldest": ts[1], "latest": ts[3], "inclusive": "true"}
    )
    assert [m["ts"] for m in inclusive["messages"]] == [ts[3], ts[2], ts[1]]


def test_update_marks_edited_and_only_own_messages(ws: Workspace, clock: Clock) -> None:
    ts = ws.chat_post_message({"channel": "releases", "text": "v1"})["ts"]
    clock.now += 5
    result = ws.chat_update({"channel": cid(ws), "ts": ts, "text": "v2"})
    assert result["message"]["edited"]["user"] == ws.bot.id
    assert float(result["message"]["edited"]["ts"]) > float(ts)
    assert ws.conversations_history({"channel": cid(ws)})["messages"][0]["text"] == "v2"
    theirs = ws.post_user_message("releases", "bob", "hello")
    with pytest.raises(ApiError, match="cant_update_message"):
        ws.chat_update({"channel": cid(ws), "ts": theirs["ts"], "text": "x"})
    with pytest.raises(ApiError, match="message_not_found"):
        ws.chat_update({"channel": cid(ws), "ts": "1.000000", "text": "x"})


def test_ephemerals_stay_out_of_history_and_cannot_be_updated(ws: Workspace) -> None:
    alice = ws.user("alice").id
    ts = ws.chat_post_ephemeral({"channel": cid(ws), "user": alice, "text": "psst"})["message_ts"]
    assert ws.conversations_history({"channel": cid(ws)})["messages"] == []
    assert [m["text"] for m in ws.channel("releases").ephemerals[alice]] == ["psst"]
    with pytest.raises(ApiError, match="message_not_found"):
        ws.chat_update({"channel": cid(ws), "ts": ts, "text": "x"})


def test_deleting_a_root_with_replies_leaves_a_tombstone(ws: Workspace) -> None:
    root = ws.chat_post_message({"channel": "releases", "text": "card"})["ts"]
    reply = ws.chat_post_message({"channel": "releases", "text": "r", "thread_ts": root})["ts"]
    ws.chat_delete({"channel": cid(ws), "ts": root})
    (head,) = ws.conversations_history({"channel": cid(ws)})["messages"]
    assert head["subtype"] == "tombstone"
    ws.chat_delete({"channel": cid(ws), "ts": reply})
    assert ws.conversations_replies({"channel": cid(ws), "ts": root})["messages"][0]["reply_count"] == 0


def test_errors(ws: Workspace) -> None:
    with pytest.raises(ApiError, match="channel_not_found"):
        ws.chat_post_message({"channel": "nope", "text": "x"})
    with pytest.raises(ApiError, match="no_text"):
        ws.chat_post_message({"channel": "releases"})
    with pytest.raises(ApiError, match="msg_too_long"):
        ws.chat_post_message({"channel": "releases", "text": "x" * 40_001})
    with pytest.raises(ApiError, match="invalid_blocks_format"):
        ws.chat_post_message({"channel": "releases", "blocks": "[oops"})
    with pytest.raises(ApiError, match="thread_not_found"):
        ws.conversations_replies({"channel": cid(ws), "ts": "1.000000"})
    with pytest.raises(ApiError, match="no_such_subteam"):
        ws.usergroups_users_list({"usergroup": "S0"})
    with pytest.raises(ApiError, match="user_not_found"):
        ws.users_info({"user": "U0"})
    ws.chat_post_message({"channel": "releases", "text": "x" * 40_000})


def test_response_url_five_uses_then_used_url(ws: Workspace) -> None:
    alice = ws.user("alice").id
    url = ws.issue_response_url(cid(ws), alice)
    for i in range(5):
        ws.respond(url.token, {"text": f"answer {i}"})
    with pytest.raises(ApiError, match="used_url"):
        ws.respond(url.token, {"text": "one too many"})
    assert len(ws.channel("releases").ephemerals[alice]) == 5


def test_response_url_expires_after_30_minutes(ws: Workspace, clock: Clock) -> None:
    url = ws.issue_response_url(cid(ws), ws.user("bob").id)
    clock.now += 30 * 60 + 1
    with pytest.raises(ApiError, match="expired_url"):
        ws.respond(url.token, {"text": "late"})


def test_response_url_replace_and_in_channel(ws: Workspace) -> None:
    bob = ws.user("bob").id
    ts = ws.chat_post_message({"channel": "releases", "text": "card"})["ts"]
    url = ws.issue_response_url(cid(ws), bob, original_ts=ts)
    ws.respond(url.token, {"text": "replaced", "replace_original": True})
    ws.respond(url.token, {"text": "for everyone", "response_type": "in_channel"})
    texts = [m["text"] for m in ws.conversations_history({"channel": cid(ws)})["messages"]]
    assert texts == ["for everyone", "replaced"]
    ws.respond(url.token, {"delete_original": True})
    texts = [m["text"] for m in ws.conversations_history({"channel": cid(ws)})["messages"]]
    assert texts == ["for everyone"]


def test_trigger_id_is_single_use_and_expires(ws: Workspace, clock: Clock) -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    trigger = ws.issue_trigger_id(ws.user("alice").id)
    assert ws.views_open({"trigger_id": trigger, "view": view})["view"]["id"].startswith("V")
    with pytest.raises(ApiError, match="invalid_trigger_id"):
        ws.views_open({"trigger_id": trigger, "view": view})
    late = ws.issue_trigger_id(ws.user("alice").id)
    clock.now += 4
    with pytest.raises(ApiError, match="expired_trigger_id"):
        ws.views_open({"trigger_id": late, "view": view})


def test_ids_where_slack_takes_only_ids(ws: Workspace) -> None:
    alice = ws.user("alice").id
    ts = ws.chat_post_message({"channel": "#releases", "text": "by name"})["ts"]
    by_name = {"channel": "releases", "ts": ts, "text": "x"}
    for method in (ws.chat_update, ws.chat_delete, ws.conversations_history, ws.conversations_info):
        with pytest.raises(ApiError, match="channel_not_found"):
            method(by_name)
    with pytest.raises(ApiError, match="user_not_found"):
        ws.chat_post_ephemeral({"channel": cid(ws), "user": "alice", "text": "x"})
    with pytest.raises(ApiError, match="user_not_found"):
        ws.users_info({"user": "alice"})
    assert ws.users_info({"user": alice})["user"]["name"] == "alice"


def test_private_channels_and_dms_are_invisible_to_the_bot_unless_it_is_in_them(ws: Workspace) -> None:
    alice, bob = ws.user("alice").id, ws.user("bob").id
    secret = ws.add_channel("secret", ["alice"], private=True, bot=False)
    dm = ws.open_dm("alice", "bob")
    assert ws.open_dm("bob", "alice") is dm
    assert (secret.kind, dm.kind, dm.members) == ("private", "im", {alice, bob})
    for channel in (secret, dm):
        with pytest.raises(ApiError, match="channel_not_found"):
            ws.chat_post_message({"channel": channel.id, "text": "x"})
        with pytest.raises(ApiError, match="channel_not_found"):
            ws.conversations_members({"channel": channel.id})
    with pytest.raises(ApiError, match="channel_not_found"):
        ws.chat_post_message({"channel": "secret", "text": "x"})
    secret.bot_is_member = True
    assert ws.conversations_members({"channel": secret.id})["members"] == [ws.bot.id, alice]
    with pytest.raises(ApiError, match="user_not_in_channel"):
        ws.chat_post_ephemeral({"channel": secret.id, "user": bob, "text": "x"})


def test_scopes_needed_per_kind_of_conversation(ws: Workspace) -> None:
    secret = ws.add_channel("secret", ["alice"], private=True, bot=True)
    ws.scopes = ["chat:write", "channels:history", "channels:read"]
    assert ws.needed_scope("chat.postMessage", {"channel": cid(ws)}) is None
    assert ws.needed_scope("conversations.history", {"channel": cid(ws)}) is None
    assert ws.needed_scope("conversations.history", {"channel": secret.id}) == "groups:history"
    assert ws.needed_scope("conversations.list", {"types": "public_channel,private_channel"}) == "groups:read"
    assert ws.needed_scope("usergroups.users.list", {}) == "usergroups:read"
    assert ws.needed_scope("chat.getPermalink", {}) is None
    ws.scopes = []
    assert ws.needed_scope("chat.update", {"channel": cid(ws)}) == "chat:write"


def test_an_org_wide_install_refuses_channel_names(ws: Workspace) -> None:
    ws.enterprise_install = True
    with pytest.raises(ApiError, match="team_not_found"):
        ws.chat_post_message({"channel": "releases", "text": "x"})
    assert ws.chat_post_message({"channel": cid(ws), "text": "x"})["channel"] == cid(ws)
    assert ws.auth_test({})["enterprise_id"] == ws.enterprise_id
