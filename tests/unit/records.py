"""A release record for unit tests: sensible defaults, any field overridden by keyword."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.releases.record import Actor, Record
from commands.intents import Strategy

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALICE = Actor(id="U123", name="alice")


def record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "id": "hexo-20240501-120000-abcd",
        "app": "hexo",
        "namespace": "devops",
        "deployment": "hexo",
        "strategy": Strategy.CANARY,
        "from_version": "v1.0",
        "to_version": "v2.0",
        "from_image": "registry.sword.org/nginx:v1.0",
        "to_image": "registry.sword.org/nginx:v2.0",
        "requester": ALICE,
        "channel_id": "C1",
        "created_at": T0,
        "phase_since": T0,
    }
    return Record(**{**fields, **changes})
