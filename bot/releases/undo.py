"""`/release rollback <app> [--to-revision N]` (guide §2.3, §3.1.3): `kubectl rollout undo`, from Slack.

The pod template of the chosen revision goes back into the Deployment exactly as kubectl puts it
(history.undo), resuming the Deployment in the same patch when it is paused (kubectl refuses a paused
Deployment), with a change-cause naming who rolled back from which channel. Reported on a card like a
release; there is no automatic rollback of a rollback.
"""

from __future__ import annotations

from typing import Any

from bot.kube.client import CHANGE_CAUSE
from bot.releases import steps
from bot.releases.history import undo
from bot.releases.objects import version_label_ops
from bot.releases.record import Phase, Record
from bot.releases.run import Run


def undo_patch(
    deployment: dict[str, Any], replica_sets: list[dict[str, Any]], record: Record
) -> list[dict[str, Any]]:
    plan = undo(deployment, replica_sets, record.undo_to, unpause=True)
    patch = [dict(op) for op in plan.patch]
    for op in patch:
        if op["path"] == "/metadata/annotations":
            op["value"] = {**op["value"], CHANGE_CAUSE: steps.change_cause(record)}
    return [*patch, *version_label_ops(deployment, record.to_version)]


async def drive(run: Run) -> None:
    while True:
        record = run.record
        match record.phase:
            case Phase.PENDING:
                dep = await run.kube.deployment(record.namespace, record.deployment)
                rs = await run.kube.replica_sets(dep)
                await run.kube.patch_deployment(
                    record.namespace, record.deployment, undo_patch(dep, rs, record)
                )
                await run.save(lambda rec: rec.to(Phase.ROLLING_OUT).entry("rollback started", rec.requester))
                await run.audited("rollback", record.requester, f"started: undo to revision {record.undo_to}")
            case Phase.ROLLING_OUT:
                await steps.complete_rollout(run)
            case _:
                if not await steps.wind_down(run):
                    return
