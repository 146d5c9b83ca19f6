"""One exception tree for the whole bot, translated to user-visible text at one boundary.

ReleaseBotError
├── UserError            shown verbatim (ephemeral in Slack, stderr in the CLI)
│   ├── ConfigError      catalog or settings invalid at start-up
│   ├── Conflict         the state changed under us (another release, a stale click)
│   └── Refusal          bot.releases.refusals: typed refusals carrying their facts
└── InfraError           Kubernetes or Slack failed; shown generically with an error id
    └── KubeError        bot.kube.client (NotFound, KubeConflict, KubeUnavailable)

The command language's own UsageError (commands.parser) is a ValueError outside this tree: commands/
is pure and imports nothing of the bot.
"""

from __future__ import annotations


class ReleaseBotError(Exception):
    """Base of every error the bot raises on purpose."""


class UserError(ReleaseBotError):
    """An error whose message is written for the person who caused it."""


class ConfigError(UserError):
    """The catalog or the settings are invalid."""


class Conflict(UserError):
    """Someone else changed the state first (another release, a racing click)."""


class InfraError(ReleaseBotError):
    """Kubernetes or Slack failed in a way the user cannot fix."""
