"""docs/troubleshooting.md names every refusal the engine can give, so the page cannot fall behind."""

from __future__ import annotations

import inspect
from pathlib import Path

from bot.releases import refusals

PAGE = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
BASES = (refusals.Refusal, refusals.Busy, refusals.BlueGreenRefusal)


def test_every_refusal_is_explained() -> None:
    text = PAGE.read_text(encoding="utf-8")
    kinds = [
        name
        for name, cls in inspect.getmembers(refusals, inspect.isclass)
        if issubclass(cls, refusals.Refusal) and cls not in BASES
    ]
    assert len(kinds) > 25
    missing = [k for k in kinds if f"[{k}]" not in text]
    assert missing == []
