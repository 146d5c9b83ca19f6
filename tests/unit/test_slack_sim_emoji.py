"""The page's emoji table: Slack's short names, including every one the bot's cards use."""

from __future__ import annotations

import re
from pathlib import Path

from bot.slack import answers, cards, notes
from sandbox.slack.emoji import emoji_table


def test_slack_short_names_map_to_emoji() -> None:
    table = emoji_table()
    assert table["white_check_mark"] == "✅"
    assert table["large_green_circle"] == "🟢"  # Slack's name, not the Unicode one (green_circle)
    assert table["warning"] == "⚠️"  # fully qualified
    assert table["+1"] == table["thumbsup"] == "👍"
    assert table["skin-tone-3"] == "🏼"
    assert len(table) > 1500


def test_every_emoji_the_bot_uses_is_known() -> None:
    wording = "".join(Path(str(m.__file__)).read_text(encoding="utf-8") for m in (cards, notes, answers))
    used = set(re.findall(r":([a-z0-9_+-]+):", wording))
    assert "white_check_mark" in used
    missing = sorted(name for name in used if name not in emoji_table())
    assert missing == []
