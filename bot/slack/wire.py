"""What the bot's buttons carry, and reading it back from a click: the wire codec. Pure.

A release button's value names the app, the release and the state the person saw
(`app:release-id:phase:step`; app names and release ids never hold a colon), so any replica can check
the click against the app's record. A rollback offer's value names the app, the target revision and
the revision running when it was offered (`app:target:seen`).
"""

from __future__ import annotations

from bot.releases.record import Record

ACTION_PREFIX = "release:"
APPROVE_ACTION = "release-gate:approve"
DENY_ACTION = "release-gate:deny"
UNDO_ACTION = "undo:rollback"


def button_value(record: Record) -> str:
    """What a button carries: the app, the release and the state the person saw when clicking."""
    return f"{record.app}:{record.id}:{record.phase.value}:{record.step}"


def parse_button_value(value: str) -> tuple[str, str, str | None, int | None]:
    """(app, release id, phase seen, step seen) from a button value."""
    parts = value.split(":")
    if len(parts) == 4:
        app, release_id, phase, step = parts
    else:
        # Cards posted before buttons named their app: `release-id[:phase:step]`, where the id is
        # `app-YYYYMMDD-HHMMSS-xxxx`.
        release_id, phase, step = ([*parts, "", ""])[:3]
        app = release_id.rsplit("-", 3)[0]
    return (
        app,
        release_id,
        phase or None,
        int(step) if step.isascii() and step.isdigit() else None,
    )


def undo_value(app: str, target: int, seen: int) -> str:
    return f"{app}:{target}:{seen}"


def parse_undo_value(value: str) -> tuple[str, int, int]:
    """(app, target revision, revision running when offered) from an undo button's value."""
    app, target, seen = ([*value.split(":"), "", ""])[:3]
    if not (target.isascii() and target.isdigit() and seen.isascii() and seen.isdigit()):
        raise ValueError(value)
    return app, int(target), int(seen)
