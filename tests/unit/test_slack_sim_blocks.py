"""Block Kit validation with Slack's limits, and what Slack adds when it stores blocks."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.slack.blocks import (
    BlockErrors,
    find_action,
    normalize_blocks,
    parse_blocks_param,
    validate_blocks,
)


def section(text: str = "hi") -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str, text: str = "Go", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}, **extra}


def errors_of(blocks: Any) -> list[str]:
    with pytest.raises(BlockErrors) as info:
        validate_blocks(blocks)
    return info.value.errors


def test_a_realistic_card_is_valid() -> None:
    confirm = {
        "title": {"type": "plain_text", "text": "Roll back?"},
        "text": {"type": "mrkdwn", "text": "Really?"},
        "confirm": {"type": "plain_text", "text": "Roll back"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }
    validate_blocks(
        [
            {"type": "header", "text": {"type": "plain_text", "text": "hexo v2.0"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*f{i}*"} for i in range(10)]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "by <@U1>"}]},
            {"type": "divider"},
            {
                "type": "actions",
                "block_id": "decide",
                "elements": [
                    button("promote", "Promote", style="primary", value="r1"),
                    button("rollback", "Rollback", style="danger", confirm=confirm),
                ],
            },
        ]
    )


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ([section()] * 51, "no more than 50 items [json-pointer:/blocks]"),
        ([section("x" * 3001)], "less than 3001 characters [json-pointer:/blocks/0/text/text]"),
        ([section("")], "more than 0 characters [json-pointer:/blocks/0/text/text]"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
            "less than 2001 characters [json-pointer:/blocks/0/fields/0/text]",
        ),
        (
            [{"type": "actions", "elements": [button(f"a{i}") for i in range(26)]}],
            "no more than 25 items [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            "must be one of: plain_text [json-pointer:/blocks/0/text/type]",
        ),
        (
            [{**section(), "block_id": "b" * 256}],
            "less than 256 characters [json-pointer:/blocks/0/block_id]",
        ),
        (
            [{"type": "actions", "elements": [button("a" * 256)]}],
            "less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
        ),
        (
            [{"type": "actions", "elements": [button("a", "t" * 76)]}],
            "less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "actions", "elements": [button("a", value="v" * 2001)]}],
            "less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        (
            [{"type": "actions", "elements": [button("a", style="loud")]}],
            "must be one of: primary, danger [json-pointer:/blocks/0/elements/0/style]",
        ),
        (
            [{**section(), "block_id": "x"}, {**section(), "block_id": "x"}],
            "duplicate block_id: x [json-pointer:/blocks/1/block_id]",
        ),
        (
            [{"type": "actions", "elements": [button("same"), button("same")]}],
            "duplicate action_id: same [json-pointer:/blocks/0/elements/1/action_id]",
        ),
        ([{"type": "marquee"}], "unsupported type: marquee [json-pointer:/blocks/0/type]"),
        ([{"type": "section"}], "must provide either text or fields [json-pointer:/blocks/0]"),
        ("not a list", "must be an array [json-pointer:/blocks]"),
    ],
)
def test_limits(blocks: Any, expected: str) -> None:
    assert any(expected in e for e in errors_of(blocks)), errors_of(blocks)


def test_exact_limits_pass() -> None:
    validate_blocks([section("x" * 3000)] * 50)
    validate_blocks([{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}])
    validate_blocks(
        [{"type": "actions", "elements": [button(f"a{i}", "t" * 75, value="v" * 2000) for i in range(25)]}]
    )


def test_same_action_id_in_different_blocks_is_allowed() -> None:
    validate_blocks(
        [{"type": "actions", "elements": [button("go")]}, {"type": "actions", "elements": [button("go")]}]
    )


def test_normalize_adds_ids_and_emoji_without_touching_the_input() -> None:
    original = [
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Go"}}]}
    ]
    stored = normalize_blocks(original)
    assert "block_id" not in original[0]
    assert stored[0]["block_id"]
    element = stored[0]["elements"][0]
    assert element["action_id"]
    assert element["text"]["emoji"] is True
    assert find_action(stored, element["action_id"]) == (stored[0]["block_id"], element)
    assert find_action(stored, "missing") is None


def test_blocks_param_accepts_list_or_json_string() -> None:
    assert parse_blocks_param('[{"type": "divider"}]') == [{"type": "divider"}]
    assert parse_blocks_param([{"type": "divider"}]) == [{"type": "divider"}]
    assert parse_blocks_param(None) is None
    with pytest.raises(ValueError, match=r"Expecting|array"):
        parse_blocks_param("{oops")
    with pytest.raises(ValueError, match="array"):
        parse_blocks_param('{"type": "divider"}')
