"""Typed release intents: what a person asked for, already validated for shape.

An intent says nothing about whether the app exists in the catalog with that strategy or whether the
person may do it: the policy and the engine decide that.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUEGREEN = "bluegreen"


class VersionKind(StrEnum):
    TAG = "tag"  # v2.0: appended to the catalog's image repository
    DIGEST = "digest"  # sha256:...: pinned content of the catalog's repository
    IMAGE = "image"  # registry/repo:tag or repo@sha256:...: a full reference (catalog must allow it)


class _Intent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Release(_Intent):
    kind: Literal["release"] = "release"
    app: str
    version: str
    version_kind: VersionKind = VersionKind.TAG
    strategy: Strategy | None = None  # None: the catalog's default
    queue: bool = False  # `--queue`: wait in the app's queue if another release of it runs
    break_glass: str | None = Field(default=None, min_length=1)  # `--break-glass`: the emergency
    reason: str | None = Field(default=None, min_length=1)  # `--reason`: why, during a freeze
    dry_run: bool = False  # `--dry-run`: show the plan privately, change nothing


class Status(_Intent):
    kind: Literal["status"] = "status"
    app: str


class History(_Intent):
    kind: Literal["history"] = "history"
    app: str
    revision: int | None = Field(default=None, ge=1)


class Rollback(_Intent):
    kind: Literal["rollback"] = "rollback"
    app: str
    to_revision: int | None = Field(default=None, ge=1)


class Promote(_Intent):
    kind: Literal["promote"] = "promote"
    app: str
    reason: str | None = Field(default=None, min_length=1)  # `--reason`: why, during a freeze


class Pause(_Intent):
    kind: Literal["pause"] = "pause"
    app: str


class Resume(_Intent):
    kind: Literal["resume"] = "resume"
    app: str


class Finish(_Intent):
    """Blue-green: retire the old colour now instead of waiting for the grace period."""

    kind: Literal["finish"] = "finish"
    app: str


class Abort(_Intent):
    """Stop the running release of an app and put the previous version back."""

    kind: Literal["abort"] = "abort"
    app: str


class Approve(_Intent):
    """Let a release that waits for approval go on."""

    kind: Literal["approve"] = "approve"
    app: str


class Deny(_Intent):
    """Refuse a release that waits for approval."""

    kind: Literal["deny"] = "deny"
    app: str
    reason: str = ""  # optional


class Lock(_Intent):
    """Stop every release of an app until it is unlocked."""

    kind: Literal["lock"] = "lock"
    app: str
    reason: str = Field(min_length=1)


class Unlock(_Intent):
    kind: Literal["unlock"] = "unlock"
    app: str


class Dequeue(_Intent):
    """Take the person's own queued release of an app off the app's queue."""

    kind: Literal["dequeue"] = "dequeue"
    app: str


class Promotion(_Intent):
    """`/release promote <app> --from <env> --to <env>`: release to one environment exactly the image
    another runs."""

    kind: Literal["promotion"] = "promotion"
    app: str  # the target environment's app (`hexo-prod`)
    source: str  # the environment's app it comes from (`hexo-staging`)
    strategy: Strategy | None = None
    reason: str | None = Field(default=None, min_length=1)  # during a freeze


class Diff(_Intent):
    """`/release diff <app> <env> <env>`: how two environments' pod templates differ."""

    kind: Literal["diff"] = "diff"
    app: str  # the first environment's app (`hexo-staging`): the permissions checked first
    other: str  # the second's (`hexo-prod`)


class Apps(_Intent):
    kind: Literal["apps"] = "apps"


class Help(_Intent):
    kind: Literal["help"] = "help"


AppIntent = (
    Release
    | Promotion
    | Status
    | Diff
    | History
    | Rollback
    | Promote
    | Pause
    | Resume
    | Finish
    | Abort
    | Approve
    | Deny
    | Lock
    | Unlock
    | Dequeue
)
Intent = AppIntent | Apps | Help
