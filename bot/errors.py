"""One exception tree for the whole bot, translated to user-visible text at one boundary.

ReleaseBotError
├── UserError            shown verbatim (ephemeral in Slack, stderr in the CLI)
│   ├── ConfigError      catalog or settings invalid at start-up
│   ├── UsageError       the command text could not be understood
│   ├── PermissionDenied the user may not do this to this app
│   └── Conflict         the state changed under us (another release, a stale click)
└── InfraError           Kubernetes or Slack failed; shown generically with an error id
"""

from __future__ import annotations


class ReleaseBotError(Exception):
    """Base of every error the bot raises on purpose."""


class UserError(ReleaseBotError):
    """An error whose message is written for the person who caused it."""


class ConfigError(UserError):
    """The catalog or the settings are invalid."""


class UsageError(UserError):
    """The command could not be understood; the message says what to type."""


class PermissionDenied(UserError):
    """The user may not perform this action on this app."""


class Conflict(UserError):
    """Someone else changed the state first (another release, a racing click)."""


class InfraError(ReleaseBotError):
    """Kubernetes or Slack failed in a way the user cannot fix."""
