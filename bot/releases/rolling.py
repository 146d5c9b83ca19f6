"""`/release <app> <version> --rolling` (guide §2): set the image with maxSurge/maxUnavailable from
the catalog and follow the rollout to the end, rolling back on failure when the catalog says so."""

from __future__ import annotations

import math

from bot.catalog import App
from bot.releases import steps
from bot.releases.ports import Reader
from bot.releases.preflight import Write
from bot.releases.record import Phase, Record
from bot.releases.run import Plan, Run


async def plan(kube: Reader, app: App, to_image: str) -> Plan:
    """The live Deployment, replaced pod by pod: at most maxSurge extra pods at any time."""
    dep = await steps.live_deployment(kube, app)
    steps.truthful_name(app, dep, to_image)
    others, followers = await steps.plan_followers(kube, app, to_image)
    replicas = int(dep.get("spec", {}).get("replicas", 1) or 0)
    surge = app.rolling.max_surge
    extra = surge if isinstance(surge, int) else math.ceil(replicas * int(str(surge).rstrip("%")) / 100)
    fields: dict[str, object] = {"followers": followers} if followers else {}
    return Plan(dep, fields, steps=(replicas,), peak_pods=replicas + extra, others=tuple(others))


def writes(app: App, record: Record, plan: Plan) -> list[Write]:
    return [steps.set_image_write(app, record, plan.deployment), *steps.follower_writes(app, record, plan)]


async def drive(run: Run) -> None:
    while True:
        record = run.record
        match record.phase:
            case Phase.PENDING:
                await steps.set_image(run)
            case Phase.ROLLING_OUT:
                await steps.complete_rollout(run)
            case _:
                if not await steps.wind_down(run):
                    return
