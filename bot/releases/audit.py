"""The audit trail that outlives Slack: a Kubernetes Event on the Deployment and a JSON log line.

Together with the change-cause annotation and the release record, someone with only kubectl (or the
log store) can tell who changed what, when, from which channel, and how it ended.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from bot.kube.client import KubeError
from bot.metrics import Metrics
from bot.releases.ports import Cluster, Obj
from bot.releases.record import Actor

log = logging.getLogger("release_bot.audit")


class Auditor:
    def __init__(self, kube: Cluster, file: Path | None = None, metrics: Metrics | None = None) -> None:
        self.kube = kube
        self.file = file
        self.metrics = metrics  # counts every outcome when set

    def on(self, kube: Cluster) -> Auditor:
        """The same audit trail (log, file, metrics), with its Events recorded in `kube`."""
        return Auditor(kube, self.file, self.metrics)

    async def __call__(
        self,
        *,
        action: str,
        actor: Actor | None,
        app: str,
        namespace: str,
        deployment: str,
        result: str,
        channel_id: str = "",
        from_version: str = "",
        to_version: str = "",
        permalink: str = "",
        warning: bool = False,
        strategy: str | None = None,
        duration: float | None = None,
        involved: Obj | None = None,
    ) -> None:
        """Log and record one audited action; `involved`, the Deployment as just seen, saves reading it."""
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "actor_id": actor.id if actor else "release-bot",
            "actor_name": actor.name if actor else "release-bot",
            "action": action,
            "app": app,
            "namespace": namespace,
            "from": from_version,
            "to": to_version,
            "result": result,
            "channel": channel_id,
            "card": permalink,
        }
        text = json.dumps(line, sort_keys=True)
        # In the log, the audit fields are top-level keys of the line (the formatter stamps its own time).
        log.info(
            "audit: %s %s by %s: %s",
            action,
            app,
            line["actor_name"],
            result,
            extra={f"audit_{k}" if k == "time" else k: v for k, v in line.items()},
        )
        if self.file:
            with self.file.open("a", encoding="utf-8") as f:
                f.write(text + "\n")
        if self.metrics is not None:
            self.metrics.audited(action, result, strategy=strategy, duration=duration)
        who = f"{line['actor_name']} ({line['actor_id']})"
        where = f" via Slack channel {channel_id}" if channel_id else ""
        span = f" {from_version} -> {to_version}" if to_version else ""
        message = f"{action}{span} by {who}{where}: {result}"
        try:
            dep = involved or await self.kube.deployment(namespace, deployment)
            await self.kube.event(
                dep, f"Release{action.title().replace(' ', '').replace('-', '')}", message, warning=warning
            )
        except KubeError as e:
            log.warning("could not record event for %s/%s: %s", namespace, deployment, e)
