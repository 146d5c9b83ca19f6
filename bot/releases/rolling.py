"""`/release <app> <version> --rolling` (guide §2): set the image with maxSurge/maxUnavailable from
the catalog and follow the rollout to the end, rolling back on failure when the catalog says so."""

from __future__ import annotations

from bot.releases import steps
from bot.releases.record import Phase
from bot.releases.run import Run


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
