"""The bot's settings: one typed object, read once at start-up and passed explicitly.

Values come from the environment (and CLI flags, which override). Secrets are SecretStr so they are
never printed or logged by accident.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    slack_bot_token: SecretStr = Field(description="xoxb- token for the Web API")
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="verifies every request Slack sends over HTTP; required unless in Socket Mode",
    )
    slack_api_url: str | None = Field(
        default=None, description="Web API base URL, e.g. a local simulator; default Slack's own"
    )
    slack_app_token: SecretStr | None = Field(default=None, description="xapp- token for Socket Mode")

    catalog: Path = Field(default=Path("catalog.yaml"), alias="RELEASE_BOT_CATALOG")
    kubeconfig: Path | None = Field(
        default=None, description="the kubeconfig file (unset: in-cluster config)"
    )
    host: str = Field(default="127.0.0.1", alias="RELEASE_BOT_HOST")
    port: int = Field(default=3000, alias="RELEASE_BOT_PORT")

    # A stable name for this process: the driver leases name it. Same name after a restart means the
    # restarted process takes its releases back at once instead of waiting for the lease to expire.
    instance_id: str = Field(
        default_factory=lambda: os.environ.get("HOSTNAME") or socket.gethostname(),
        alias="RELEASE_BOT_INSTANCE_ID",
    )
    lease_seconds: float = Field(
        default=15.0, alias="RELEASE_BOT_LEASE_SECONDS", description="driver lease; renewed at 1/3"
    )
    card_interval: float = Field(
        default=1.0,
        alias="RELEASE_BOT_CARD_INTERVAL",
        description="seconds between card updates (chat.update is Tier 3: ~50/min)",
    )
    drain_seconds: float = Field(
        default=20.0,
        alias="RELEASE_BOT_DRAIN_SECONDS",
        description="on SIGTERM, time given to release tasks to reach a safe point",
    )
    audit_log: Path | None = Field(default=None, alias="RELEASE_BOT_AUDIT_LOG")
    watch_scope: Literal["namespace", "cluster"] = Field(
        default="namespace",
        alias="RELEASE_BOT_WATCH_SCOPE",
        description="namespace: one watch per kind and namespace; cluster: one per kind for the whole "
        "cluster (needs list/watch cluster-wide: the chart's watchScope)",
    )
