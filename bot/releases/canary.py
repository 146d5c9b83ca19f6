"""`/release <app> <version> --canary` (guide §3): the new version on a few pods first, then Promote or
Rollback.

The guide's `set image && rollout pause` races (pause too early: no canary; too late: more than one),
so the driver sets the image, watches until the controller has created the step's new pods, pauses,
and then reports the counts the cluster really has (`CanaryStep`). It then watches the step's new pods
until every one is Ready, and only then says the canary is healthy and waits for Promote
(`CanaryHealthy`, stored with the record; its time starts the analysis window). Each Promote moves to
the next catalog step (resume, watch, pause) or, at the last one, resumes to the end. While paused the
Deployment controller reports no progress, so the health gate is ours: a canary that crash-loops,
cannot pull its image, or is not Ready within progressDeadlineSeconds is rolled back (when the
catalog's auto_rollback is on). A record stored at a step without its `CanaryHealthy` (by an earlier
version, or before a restart) is watched the same way, from wherever it is.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime, timedelta

from bot.catalog import App
from bot.releases import events, health, refusals, steps
from bot.releases.ports import Reader
from bot.releases.preflight import Write
from bot.releases.record import Phase, Record, Request, setting, utcnow
from bot.releases.run import Outcome, Plan, Run, Snapshot, cannot_start


def targets(app: App, replicas: int) -> list[int]:
    """New-version pod counts at each pause; the last entry is always `replicas` (everything)."""
    if replicas < 1:
        return [0]  # nothing to split (the engine refuses canaries of a Deployment scaled to 0)
    out: list[int] = []
    for step in app.canary.steps or (1,):
        n = step if isinstance(step, int) else math.ceil(replicas * int(step[:-1]) / 100)
        n = max(1, min(n, replicas))
        if not out or n > out[-1]:
            out.append(n)
    if not out or out[-1] < replicas:
        out.append(replicas)
    return out


def _desired(run: Run) -> int:
    dep = run.snap.deployment or {}
    replicas: int = dep.get("spec", {}).get("replicas", 1)
    return replicas


def _next_target(run: Run, step: int) -> int:
    """New pods once the canary at `step` is promoted (all of them after the last step)."""
    goal = targets(run.app, _desired(run))
    return goal[min(step + 1, len(goal) - 1)]


def healthy(pods: health.PodHealth | None, expected: int) -> bool:
    """The canary step's new pods are all there (at least `expected`) and all Ready."""
    return pods is not None and pods.pods >= max(1, expected) and pods.ready == pods.pods


async def plan(kube: Reader, app: App, to_image: str) -> Plan:
    """The live Deployment; the new version on `targets` pods at each pause, beside all the old ones."""
    dep = await steps.live_deployment(kube, app)
    steps.truthful_name(app, dep, to_image)
    replicas = int(dep.get("spec", {}).get("replicas", 1) or 0)
    if not replicas:
        raise refusals.CanaryOfNothing(dep["metadata"]["name"])
    others, followers = await steps.plan_followers(kube, app, to_image)
    goal = tuple(targets(app, replicas))
    fields: dict[str, object] = {"followers": followers} if followers else {}
    return Plan(dep, fields, steps=goal, peak_pods=replicas + goal[0], others=tuple(others))


def writes(app: App, record: Record, plan: Plan) -> list[Write]:
    """The first step's patch: the image, held by the controller at the first step's pods (and the
    patches of the app's other Deployments, which follow on the last Promote)."""
    first = steps.set_image_write(app, record, plan.deployment, hold_at=plan.steps[0])
    return [first, *steps.follower_writes(app, record, plan)]


async def drive(run: Run) -> None:
    while True:
        record = run.record
        match record.phase:
            case Phase.PENDING:
                current = (run.snap.deployment or {}).get("spec", {}).get("minReadySeconds", 0)
                await run.save(setting(min_ready_seconds=current))
                await steps.hold_autoscaler(run, _desired(run))  # the stable set keeps its size
                await steps.set_image(run, hold_at=targets(run.app, _desired(run))[0])
            case Phase.ROLLING_OUT:
                await _advance(run)
            case Phase.CANARY:
                await _watch_canary(run)
            case _:
                if not await steps.wind_down(run):
                    return


async def _advance(run: Run) -> None:
    """Move the rollout to the current step's pod count, and pause there (or finish at the last)."""
    record = run.record
    goal = targets(run.app, _desired(run))
    target = goal[min(record.step, len(goal) - 1)]
    last = target >= _desired(run)
    dep = run.snap.deployment or {}
    if dep.get("spec", {}).get("paused"):
        await run.kube.patch_deployment(record.namespace, record.deployment, {"spec": {"paused": False}})
    if last:
        outcome = await steps.follow(run)
        if outcome.kind == "complete":
            outcome = await steps.roll_followers(run)
    else:

        def reached(snap: Snapshot) -> Outcome | None:
            # New pods appear in the pod watch before the Deployment's status counts them: pause on
            # whichever shows the step reached first.
            p = health.progress(snap.deployment or {})
            new = run.live().new_pods
            created = new.pods if new else 0
            if steps.runs_new_template(snap) and (created >= target or (p.observed and p.updated >= target)):
                return Outcome("complete")
            return steps.rollout_outcome(snap)

        deadline = run.app.progress_deadline_seconds + steps.SAFETY_MARGIN
        try:
            outcome = await run.wait(reached, timeout=deadline)
        except TimeoutError:
            outcome = Outcome("failed", f"the canary step did not start within {int(deadline)} s")
    if last or outcome.kind != "complete":
        await steps.conclude(run, outcome)
    else:
        pause = {
            "spec": {
                "paused": True,
                "minReadySeconds": record.min_ready_seconds,
                "strategy": steps.rolling_params(run.app),
            }
        }
        await run.kube.patch_deployment(record.namespace, record.deployment, pause)
        # Read back what the controller really did before the pause took effect.
        observed = await run.wait(_paused_and_observed, timeout=30)
        await run.save(
            lambda rec: rec.to(Phase.CANARY),
            note=events.CanaryStep(
                updated=observed.updated,
                old=observed.old,
                health=new.describe() if (new := run.live().new_pods) else "",
                step=record.step,
                next=_next_target(run, record.step),
                desired=_desired(run),
            ),
        )


def _paused_and_observed(snap: Snapshot) -> health.Progress | None:
    if snap.deployment is None:
        return None
    p = health.progress(snap.deployment)
    return p if p.paused and p.observed else None


async def _watch_canary(run: Run) -> None:
    """Watch the step's new pods until all are Ready (then say so: `CanaryHealthy`), and wait for
    Promote/Rollback, the health gate, or the analysis window's auto-promote."""
    app = run.app
    analysis = timedelta(minutes=app.canary.analysis_minutes)
    deadline = timedelta(seconds=app.progress_deadline_seconds)
    step = run.record.step
    stopped = events.canary_step(run.record.notes, step)
    expected = stopped.updated if stopped is not None else 1

    def decision(snap: Snapshot) -> Outcome | None:
        if snap.record.request is not None:
            return Outcome("request")
        live = run.live()
        if (fatal := cannot_start(live.new_pods)) is not None:
            return fatal
        # Time the cluster could not be seen does not count against the canary.
        waited = utcnow() - snap.record.phase_since - timedelta(seconds=run.blind_seconds)
        ok = healthy(live.new_pods, expected)
        if not ok and waited > deadline:
            what = live.new_pods.describe() if live.new_pods else "no canary pods"
            return Outcome(
                "failed", f"the canary was not Ready within {int(deadline.total_seconds())} s ({what})"
            )
        if ok and events.canary_healthy(snap.record.notes, step) is None:
            return Outcome("healthy")
        if ok and app.canary.auto_promote and waited >= analysis:
            return Outcome("auto-promote")
        return None

    # Timers the watches cannot see: the readiness deadline, the analysis window, the analysis interval.
    checks = app.analysis if app.analysis is not None and app.analysis.checks_each_step else None
    while True:
        since = run.record.phase_since
        noted = events.canary_healthy(run.record.notes, step) is not None
        window = analysis if app.canary.auto_promote and noted else deadline
        wake = (min(deadline, window) - (utcnow() - since)).total_seconds()
        due = _analysis_due(run, step, checks.interval) if checks is not None and noted else None
        if due is not None:
            wake = min(wake, (due - utcnow()).total_seconds())
        try:
            verdict = await run.wait(
                decision, timeout=max(0.1, wake + 0.1) if due is None else max(0.0, wake)
            )
        except TimeoutError:
            if due is None or utcnow() < due:
                continue
            judged = await steps.analyse(run, step)
            if judged is None:
                continue
            verdict = Outcome("failed", judged[1]) if judged[0] == "fail" else Outcome("analysed", judged[1])
            break
        promote = verdict.kind == "request" and run.record.request is Request.PROMOTE
        if promote and await steps.gate_refusal(run, "promote", Record.consume_request) is not None:
            continue  # the gate said no: the Promote is dropped, the canary stays at this step
        if verdict.kind != "healthy":
            break
        await _say_healthy(run, step)
    if verdict.kind in ("auto-promote", "analysed") and await steps.gate_refusal(run, "promote") is not None:
        # The gate said no: ask again an interval later (a Promote or Rollback meanwhile is taken).
        pause = checks.interval if checks is not None else 30.0
        with contextlib.suppress(TimeoutError):
            await run.wait(lambda snap: True if snap.record.request is not None else None, timeout=pause)
        return
    if verdict.kind == "request":
        request = run.record.request
        if request is Request.PROMOTE:
            actor = run.record.request_by
            await run.save(
                lambda rec: (
                    rec.consume_request()
                    .to(Phase.ROLLING_OUT)
                    .model_copy(update={"step": rec.step + 1})
                    .entry("promote", actor)
                ),
                note=events.Acted(action="promote", by=actor.id if actor else None),
            )
            await run.audited("promote", actor, f"promoted to step {run.record.step + 1}")
        else:
            await steps.take_request(run)
    elif verdict.kind in ("auto-promote", "analysed"):
        why = (
            f"healthy for {app.canary.analysis_minutes:g} min"
            if verdict.kind == "auto-promote"
            else verdict.reason
        )
        await run.save(
            lambda rec: (
                rec.to(Phase.ROLLING_OUT)
                .model_copy(update={"step": rec.step + 1})
                .entry("auto-promote", None, why)
            ),
            note=events.Acted(action="auto-promote", detail=f"{why[0].upper()}{why[1:]}."),
        )
        await run.audited("promote", None, f"auto-promoted to step {run.record.step}: {why}")
    else:
        await steps.fail(run, verdict.reason)


def _analysis_due(run: Run, step: int, interval: float) -> datetime:
    """When the step's next analysis interval is due: `interval` after the last one (or after the
    canary turned healthy)."""
    tally = run.record.analysis
    if tally is not None and tally.step == step and tally.at is not None:
        return tally.at + timedelta(seconds=interval)
    return run.record.phase_since + timedelta(seconds=interval)  # the step's clock starts when healthy


async def _say_healthy(run: Run, step: int) -> None:
    """Every new pod of the step is Ready: note it, and start the step's clock (the analysis window
    and "under watch") now."""
    new = run.live().new_pods
    p = health.progress(run.snap.deployment or {})
    note = events.CanaryHealthy(
        step=step,
        ready=new.ready if new else 0,
        old=p.old,
        next=_next_target(run, step),
        desired=_desired(run),
    )

    def change(rec: Record) -> Record:
        return rec.to(Phase.CANARY) if rec.phase is Phase.CANARY and rec.step == step else rec

    await run.save(change, note=note)
