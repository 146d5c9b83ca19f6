"""The guide's kubectl verbs as steps strategies share: set image (with change-cause), follow the
rollout, pause/resume, and undo. Each step records its outcome in the release record, so a driver
that restarts in the middle carries on from the recorded phase."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from bot.catalog import App, Metric, Webhook, Workload
from bot.errors import UserError
from bot.kube.client import CHANGE_CAUSE, NotFound, Obj
from bot.releases import analysis, events, health, objects, preflight, refusals
from bot.releases.history import undo
from bot.releases.ports import Reader
from bot.releases.preflight import Pin, Write
from bot.releases.record import Actor, Follower, Phase, Record, Request, setting, utcnow
from bot.releases.run import Outcome, Plan, Run, Snapshot
from commands.intents import Strategy

SAFETY_MARGIN = 60.0  # seconds beyond progressDeadlineSeconds before we stop trusting the controller


def change_cause(record: Record) -> str:
    """The `kubernetes.io/change-cause` of the revision a release (or a rollback) creates: who, what,
    through which front end, and which release, for `kubectl rollout history`."""
    if record.undo_to is not None:
        what = f"rolled back to revision {record.undo_to} ({record.to_version})"
    else:
        what = f"released {record.to_version} ({record.strategy.value})"
    if record.front_end == "slack":
        where = f"#{record.channel_name}" if record.channel_name else record.channel_id
        via = f"via Slack {where} ({record.channel_id})"
    else:
        via = f"via {record.front_end}"
    return f"release-bot: {record.requester.name} ({record.requester.id}) {what} {via}, release {record.id}"


async def live_deployment(kube: Reader, app: App) -> Obj:
    """The Deployment that runs the app now: the catalog's or, for an app released blue-green, the
    colour its Service selects (after `hexo` → `hexo-v2.0`, rolling releases, canaries, history,
    undo and pause act on `hexo-v2.0`)."""
    if Strategy.BLUEGREEN in app.strategies and app.service:
        try:
            service = await kube.service(app.namespace, app.service)
            return objects.find_live(app, service, await kube.deployments(app.namespace))
        except (NotFound, UserError):
            pass  # no Service or no clear live colour: the catalog's Deployment is the app
    try:
        return await kube.deployment(app.namespace, app.deployment)
    except NotFound:
        raise refusals.NoDeployment(app.namespace, app.deployment) from None


def truthful_name(app: App, live: Obj, to_image: str) -> None:
    """Refuse a release on the live Deployment when its name claims a version other than the one the
    release puts on it (a guide-style blue-green colour, `hexo-v2.0`)."""
    name = live["metadata"]["name"]
    claimed = objects.claimed_version(app, name)
    version = health.version_of(to_image)
    if claimed is not None and claimed != objects.dns_name(version):
        moves_to = objects.green_name(app, version, name)
        raise refusals.NameClaimsVersion(app.name, name, claimed, version, moves_to)


def rolling_params(app: App) -> dict[str, object]:
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": app.rolling.max_surge, "maxUnavailable": app.rolling.max_unavailable},
    }


def rollout_patch(
    app: App,
    record: Record,
    live: Obj,
    containers: tuple[str, ...],
    *,
    hold_at: int | None = None,
    image: str | None = None,
) -> dict[str, object]:
    """One strategic-merge patch: strategy, deadline, image (of each of `containers`), version labels
    and change-cause together (the change-cause must land in the same patch as the image or it marks
    the old revision). A paused Deployment is resumed in the same patch, or it would never roll out.

    `hold_at=N` makes the controller stop by itself at N new pods beside all the old ones: surge N,
    none unavailable, and a minReadySeconds so long that no new pod counts as available, so no old pod
    is removed. The canary pauses there and restores the real values, so nothing races.
    """
    spec: dict[str, object] = {
        "paused": False,
        "progressDeadlineSeconds": app.progress_deadline_seconds,
        "strategy": rolling_params(app),
        "template": {
            "metadata": {"labels": {objects.APP_VERSION_LABEL: objects.label_value(record.to_version)}},
            "spec": {"containers": [{"name": c, "image": image or record.to_image} for c in containers]},
        },
    }
    if hold_at is not None:
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": hold_at, "maxUnavailable": 0},
        }
        spec["minReadySeconds"] = max(record.min_ready_seconds, app.progress_deadline_seconds - 1)
    metadata = {
        "labels": objects.own_labels(live, record.to_version),
        "annotations": {CHANGE_CAUSE: change_cause(record)},
    }
    return {"metadata": metadata, "spec": spec}


def set_image_write(app: App, record: Record, live: Obj, *, hold_at: int | None = None) -> Write:
    """The first write of a rolling release or a canary: the image, on the live Deployment."""
    patch = rollout_patch(app, record, live, app.own_containers, hold_at=hold_at)
    return Write("deployment", "patch", record.deployment, patch)


def follower_write(app: App, record: Record, follower: Follower, live: Obj) -> Write:
    """The image on one of the app's other Deployments (`deployments:`)."""
    patch = rollout_patch(app, record, live, follower.containers, image=follower.to_image)
    return Write("deployment", "patch", follower.name, patch)


def follower_writes(app: App, record: Record, plan: Plan) -> list[Write]:
    live = {d["metadata"]["name"]: d for d in plan.others}
    return [follower_write(app, record, f, live[f.name]) for f in record.followers]


async def set_image(run: Run, *, hold_at: int | None = None) -> None:
    """The image on the app's Deployment (with `order: parallel`, on its other Deployments too)."""
    r = run.record
    write = set_image_write(run.app, r, run.snap.deployment or {}, hold_at=hold_at)
    await run.kube.patch_deployment(r.namespace, write.name, write.body)
    if run.app.order == "parallel" and hold_at is None:
        for follower in r.followers:
            await _set_follower_image(run, follower)
    await run.save(lambda rec: rec.to(Phase.ROLLING_OUT).entry("started", rec.requester))
    await run.audited("release", r.requester, "started")


async def _set_follower_image(run: Run, follower: Follower) -> Obj:
    """The follower's Deployment, after setting the version on it unless it has it already."""
    r = run.record
    dep = await run.kube.deployment(r.namespace, follower.name)
    if health.container_image(dep, follower.containers[0]) != follower.to_image:
        write = follower_write(run.app, r, follower, dep)
        dep = await run.kube.patch_deployment(r.namespace, follower.name, write.body)
    return dep


async def plan_followers(kube: Reader, app: App, to_image: str) -> tuple[list[Obj], tuple[Follower, ...]]:
    """The app's other Deployments as they run now (refused when one is missing, lacks a container,
    or is managed by a GitOps tool the catalog does not allow)."""
    live, followers = [], []
    for workload in app.followers:
        try:
            dep = await kube.deployment(app.namespace, workload.name)
        except NotFound:
            raise refusals.NoDeployment(app.namespace, workload.name) from None
        containers = workload.names(app.container)
        images = [health.container_image(dep, c) for c in containers]
        missing = next((c for c, image in zip(containers, images, strict=True) if image is None), None)
        if missing is not None:
            raise refusals.NoContainer(workload.name, missing)
        owner = preflight.gitops_owner(dep)
        if owner and app.gitops != "allow":
            raise refusals.GitOpsManaged(app.name, workload.name, owner)
        live.append(dep)
        followers.append(
            Follower(
                name=workload.name,
                containers=containers,
                from_image=images[0] or "",
                to_image=_follower_image(app, workload, to_image),
                from_revision=health.revision(dep) or None,
            )
        )
    return live, tuple(followers)


def _follower_image(app: App, workload: Workload, to_image: str) -> str:
    """The app's image for `workload`: the same tag or digest in its own repository, if it has one."""
    own = to_image.startswith(app.image) and to_image[len(app.image) : len(app.image) + 1] in (":", "@")
    if not workload.image or not own:
        return to_image  # the same repository, or a full image reference given with the release
    return workload.image + to_image[len(app.image) :]


async def roll_followers(run: Run) -> Outcome:
    """The app's own Deployment runs the version: now its other Deployments, in order (with
    `order: parallel` they were all started with it), each followed to its end. The first that fails
    or is interrupted by a request decides; "complete" when all run the version."""
    r = run.record
    try:
        for follower in r.followers:
            dep = await _set_follower_image(run, follower)
            await run.follow_deployment(follower.name, dep)
            outcome = await follow(run)
            if outcome.kind != "complete":
                if outcome.failed:
                    return Outcome("failed", f"`{follower.name}`: {outcome.reason}")
                return outcome
            if not any(isinstance(n, events.FollowerRolledOut) and n.name == follower.name for n in r.notes):
                new = new_pod_health(run.snap)
                await run.note(events.FollowerRolledOut(name=follower.name, health=new.describe()))
    finally:
        await run.follow_deployment(r.deployment)
    return Outcome("complete")


def rollout_outcome(snap: Snapshot) -> Outcome | None:
    """Complete, failed (new pods that cannot start, or the deadline exceeded), or interrupted by a
    Rollback/Abort request. The pod-health facts are the canary's: a crash-looping or unpullable
    version fails at once, not at progressDeadlineSeconds."""
    if snap.record.request in (Request.ROLLBACK, Request.ABORT):
        return Outcome("request")
    if not runs_new_template(snap):
        return None
    p = health.progress(snap.deployment or {})
    if p.complete and not p.paused:
        return Outcome("complete")
    if p.deadline_exceeded:
        return Outcome("failed", failure_reason(snap, p.deadline_exceeded))
    fatal = new_pod_health(snap).fatal
    if fatal:
        return Outcome("failed", failure_reason(snap, fatal))
    return None


def new_pod_health(snap: Snapshot) -> health.PodHealth:
    image = snap.to_image
    return health.pod_health(
        [
            p
            for p in snap.pods.values()
            if any(c.get("image") == image for c in p.get("spec", {}).get("containers", []))
        ]
    )


def runs_new_template(snap: Snapshot) -> bool:
    """The snapshot shows the Deployment after our image change (not a stale, pre-patch copy)."""
    dep = snap.deployment
    if dep is None:
        return False
    images = [
        c.get("image") for c in dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    ]
    return snap.to_image in images


def failure_reason(snap: Snapshot, headline: str) -> str:
    h = new_pod_health(snap)
    reason = (
        "ProgressDeadlineExceeded"
        if "ProgressDeadlineExceeded" in headline or "progress" in headline
        else headline
    )
    if h.fatal and h.fatal != reason:
        return f"{h.fatal} ({h.describe()}); {reason}"
    return f"{reason} ({h.describe()})" if h.pods else reason


async def follow(run: Run) -> Outcome:
    deadline = run.app.progress_deadline_seconds + SAFETY_MARGIN
    try:
        return await run.wait(rollout_outcome, timeout=deadline)
    except TimeoutError:
        return Outcome("failed", f"the rollout did not finish within {int(deadline)} s")


def _elapsed(record: Record) -> float:
    return ((record.finished_at or record.phase_since) - record.created_at).total_seconds()


async def succeed(run: Run) -> None:
    stale = run.live().selector_label  # the card keeps saying it once the release has ended
    record = await run.save(
        lambda rec: rec.to(Phase.SUCCEEDED).model_copy(update={"stale_selector": stale}),
        note=lambda rec: events.Succeeded(seconds=_elapsed(rec)),
    )
    action = "rollback" if record.undo_to is not None else "release"
    await run.audited(action, record.requester, f"succeeded in {_elapsed(record):.1f} s")


async def fail(run: Run, reason: str) -> None:
    """The new version did not become healthy: roll back automatically (when the catalog says so; never
    for a rollback) or stop and offer Rollback."""
    undoing = run.record.undo_to is not None
    auto = run.app.auto_rollback and not undoing
    note = events.Failed(reason=reason, auto_rollback=auto)
    if auto:
        await run.save(
            lambda rec: rec.to(Phase.ROLLING_BACK, reason=reason).entry("auto-rollback", None, reason),
            note=note,
        )
    else:
        await run.save(lambda rec: rec.to(Phase.FAILED, reason=reason), note=note)
    await run.audited(
        "rollback" if undoing else "release", run.record.requester, f"failed: {reason}", warning=True
    )


async def complete_rollout(run: Run) -> None:
    """Follow the rollout to its end (the app's other Deployments' too): success, failure, or a
    Rollback/Abort request."""
    outcome = await follow(run)
    if outcome.kind == "complete":
        outcome = await roll_followers(run)
    await conclude(run, outcome)


async def conclude(run: Run, outcome: Outcome) -> None:
    """Act on how the rollout to every pod ended."""
    if outcome.kind == "complete":
        await succeed(run)
    elif outcome.kind == "failed":
        await fail(run, outcome.reason)
    else:
        await take_request(run)


async def wind_down(run: Run) -> bool:
    """The phases every strategy ends the same way: a Rollback asked of a failed release, and rolling
    back. False when there is nothing left to do."""
    record = run.record
    if record.phase is Phase.FAILED and record.request is not None:
        await take_request(run)
    elif record.phase is Phase.ROLLING_BACK:
        await roll_back(run)
    else:
        return False
    return True


async def take_request(run: Run) -> tuple[Request, Actor | None]:
    """Consume the pending request and move to the phase that carries it out."""
    record = run.record
    request, actor = record.request, record.request_by
    assert request is not None
    target = Phase.ROLLING_BACK
    await run.save(
        lambda rec: rec.consume_request().to(target).entry(request.value, actor),
        note=events.Acted(action=request.value, by=actor.id if actor else None),
    )
    return request, actor


async def abort_unstarted(run: Run) -> None:
    """Abort asked for before anything changed on the cluster: end here, touching nothing."""
    actor = run.record.request_by
    note = events.Acted(action="abort", by=actor.id if actor else None, detail="Nothing was changed.")
    shown = {} if run.record.card_ref else {"synced": True}  # no card: nothing to show
    await run.save(
        lambda rec: (
            rec.consume_request()
            .to(Phase.ABORTED)
            .entry("abort", actor, "before any change")
            .model_copy(update=shown)
        ),
        note=note if run.record.card_ref else None,
    )
    await run.audited("abort", actor, "aborted before any change")


async def roll_back(run: Run) -> None:
    """Put the revision that ran before the release back (kubectl rollout undo --to-revision), even if
    the Deployment is paused, and wait for it to finish; all or nothing: the app's other Deployments
    first, newest change first, then its own."""
    record = run.record
    actor = next((e.actor for e in reversed(record.history) if e.action in ("rollback", "abort")), None)
    own = Follower(
        name=record.deployment,
        containers=(run.app.container,),
        from_image=record.from_image,
        to_image=record.to_image,
        from_revision=record.from_revision,
    )
    every = (*reversed(record.followers), own)
    undone = [await _undo(run, workload) for workload in every]
    deadline = run.app.progress_deadline_seconds + SAFETY_MARGIN
    try:
        for workload, dep in zip(every, undone, strict=True):
            await run.follow_deployment(workload.name, dep)

            def back(snap: Snapshot, workload: Follower = workload) -> bool | None:
                if snap.deployment is None:
                    return None
                p = health.progress(snap.deployment)
                image = health.container_image(snap.deployment, workload.containers[0])
                return True if (image == workload.from_image and p.complete) else None

            await run.wait(back, timeout=deadline)
    except TimeoutError:
        reason = f"the rollback did not finish within {int(deadline)} s"
        if record.followers:
            reason += f" (`{run.deployment_name}`)"
        await run.follow_deployment(record.deployment)
        await run.save(
            lambda rec: rec.to(Phase.FAILED, reason=reason),
            note=events.Failed(reason=reason, auto_rollback=False),
        )
        return
    done = await run.save(
        lambda rec: rec.to(Phase.ROLLED_BACK),
        note=events.RolledBack(by=actor.id if actor else None),
    )
    await run.audited("rollback", actor, f"rolled back to {done.from_version}")


async def _undo(run: Run, workload: Follower) -> Obj:
    """One Deployment back on its revision from before the release (resumed if paused), as the
    API server answered."""
    ns, name = run.record.namespace, workload.name
    dep = await run.kube.deployment(ns, name)
    if health.container_image(dep, workload.containers[0]) != workload.from_image:
        rs = await run.kube.replica_sets(dep)
        revision = workload.from_revision
        target = revision if any(health.revision(r) == revision for r in rs) else None
        plan = undo(dep, rs, target, unpause=True)
        version = health.version_of(workload.from_image)
        if name == run.record.deployment:
            version = run.record.from_version
        return await run.kube.patch_deployment(
            ns, name, [*plan.patch, *objects.version_label_ops(dep, version)]
        )
    if dep["spec"].get("paused"):
        return await run.kube.patch_deployment(ns, name, {"spec": {"paused": False}})
    return dep


# --- an autoscaler of the Deployment -----------------------------------------------------------------


async def hold_autoscaler(run: Run, replicas: int) -> None:
    """An autoscaler of the Deployment would resize the old version behind the release's back (a
    canary's stable set, blue before the switch): hold it at `replicas` (min = max) until the release
    ends. Its own bounds are read and recorded first, so they can be given back after any restart."""
    record = run.record
    if record.autoscaler is None:
        if record.preflight is None or not record.preflight.autoscaler:
            return
        hpa = objects.autoscaler_of(await run.kube.autoscalers(record.namespace), record.deployment)
        if hpa is None:
            return
        spec = hpa.get("spec", {})
        pin = Pin(
            name=hpa["metadata"]["name"],
            min_replicas=int(spec.get("minReplicas", 1)),
            max_replicas=int(spec["maxReplicas"]),
            held=replicas,
            target=record.deployment,
        )
        await run.save(setting(autoscaler=pin), note=events.AutoscalerHeld(name=pin.name, replicas=replicas))
    held = run.record.autoscaler
    assert held is not None
    await _patch_autoscaler(run, held, {"minReplicas": held.held, "maxReplicas": held.held})


async def retarget_autoscaler(run: Run, deployment: str) -> None:
    """Point the held autoscaler at `deployment` (blue-green's switch and switch back)."""
    pin = run.record.autoscaler
    if pin is None or pin.restored or pin.target == deployment:
        return
    await _patch_autoscaler(run, pin, {"scaleTargetRef": {"name": deployment}})
    await run.save(setting(autoscaler=pin.model_copy(update={"target": deployment})))


async def restore_autoscaler(run: Run, live: str) -> None:
    """The release has ended: give the autoscaler back its own bounds, on `live`, the Deployment that
    runs the app now. Idempotent, and done by whoever drives the record next after a crash."""
    pin = run.record.autoscaler
    if pin is None or pin.restored:
        return
    spec: dict[str, object] = {"minReplicas": pin.min_replicas, "maxReplicas": pin.max_replicas}
    if pin.target != live:
        spec["scaleTargetRef"] = {"name": live}
    await _patch_autoscaler(run, pin, spec)
    await run.save(
        setting(autoscaler=pin.model_copy(update={"restored": True, "target": live})),
        note=events.AutoscalerRestored(
            name=pin.name, min_replicas=pin.min_replicas, max_replicas=pin.max_replicas, target=live
        ),
    )


async def _patch_autoscaler(run: Run, pin: Pin, spec: dict[str, object]) -> None:
    with contextlib.suppress(NotFound):  # deleted meanwhile: nothing to hold or give back
        await run.kube.patch_autoscaler(run.record.namespace, pin.name, {"spec": spec})


# --- approvals -------------------------------------------------------------------------------------


def started(app: App) -> events.Started:
    """The thread's first milestone once the release is under way."""
    return events.Started(
        max_surge=str(app.rolling.max_surge), max_unavailable=str(app.rolling.max_unavailable)
    )


async def await_approval(run: Run) -> None:
    """Wait for the release's approvals. Returns once it is approved (now PENDING, ready to drive), was
    denied or aborted meanwhile, or has expired (then it is ended here, having changed nothing)."""

    def decided(s: Snapshot) -> Record | None:
        r = s.record
        expired = r.approve_until is not None and utcnow() >= r.approve_until
        if r.phase is not Phase.AWAITING_APPROVAL or r.approved or r.request is not None or expired:
            return r
        return None

    while True:
        until = run.record.approve_until
        left = (until - utcnow()).total_seconds() if until else 1e9
        try:
            record = await run.wait(decided, max(left, 0.0))
        except TimeoutError:
            continue  # the deadline passed while the cluster could not be seen: look again
        if record.phase is not Phase.AWAITING_APPROVAL or record.request is not None:
            return
        if record.approved:
            await run.save(lambda rec: _approved(rec, run.app))
            if run.record.phase is Phase.PENDING:
                names = ", ".join(a.name for a in run.record.approved_by)
                await run.audited("release", record.requester, f"approved by {names}: starting")
            return
        await run.save(_expired)
        if run.record.phase is not Phase.AWAITING_APPROVAL:
            if run.record.phase is Phase.ABORTED:
                await run.audited("release", None, f"not started: {run.record.reason}", warning=True)
            return


def _approved(rec: Record, app: App) -> Record:
    if rec.phase is not Phase.AWAITING_APPROVAL:
        return rec  # denied or aborted meanwhile: that stands
    return rec.to(Phase.PENDING).with_note(started(app))


def _expired(rec: Record) -> Record:
    if rec.phase is not Phase.AWAITING_APPROVAL or rec.approved:
        return rec
    minutes = (rec.approve_until - rec.created_at).total_seconds() / 60 if rec.approve_until else 0
    count, required = len(rec.approved_by), rec.approvals_required
    reason = f"not approved within {minutes:g} min ({count} of {required} approvals)"
    return (
        rec.to(Phase.ABORTED, reason=reason)
        .entry("approval expired", None, reason)
        .with_note(events.ApprovalExpired(count=count, required=required, minutes=minutes))
    )


# --- the canary analysis: metrics and webhook gates (bot.releases.analysis is its pure part) ---------


def analysis_values(run: Run) -> dict[str, str]:
    """What a query template may name: the version, namespace, app, Deployment, and the new pods."""
    record = run.record
    new = health.pods_running(list(run.snap.pods.values()), run.app.container, record.to_image)
    return {
        "version": analysis.promql_string(record.to_version),
        "namespace": analysis.promql_string(record.namespace),
        "app": analysis.promql_string(record.app),
        "deployment": analysis.promql_string(record.deployment),
        "selector": analysis.selector(record.namespace, [p["metadata"]["name"] for p in new]),
    }


def gate_payload(run: Run, phase: str) -> dict[str, object]:
    """What a webhook gate is sent (docs/analysis.md)."""
    record = run.record
    new = health.pods_running(list(run.snap.pods.values()), run.app.container, record.to_image)
    return {
        "phase": phase,
        "release_id": record.id,
        "app": record.app,
        "namespace": record.namespace,
        "deployment": record.deployment,
        "strategy": record.strategy.value,
        "from_version": record.from_version,
        "to_version": record.to_version,
        "to_image": record.to_image,
        "step": record.step,
        "canary_pods": sorted(p["metadata"]["name"] for p in new),
        "requested_by": record.requester.id,
    }


async def _ask(run: Run, gate: Webhook, phase: str) -> tuple[bool, str]:
    if run.analyst is None:
        return False, "no gate client in this process"
    return await run.analyst.ask(gate.url, gate_payload(run, phase), gate.timeout)


async def gate_refusal(
    run: Run, phase: str, change: Callable[[Record], Record] = lambda rec: rec
) -> str | None:
    """Ask every webhook of `phase` (pre-rollout, promote), in order; the first that says no is noted
    on the record (with `change`, in the same write), and its refusal returned ("gate smoke said no:
    ..."). None: all said yes."""
    config = run.app.analysis
    for gate in config.gates(phase) if config else ():
        ok, said = await _ask(run, gate, phase)
        if not ok:
            await run.save(change, note=events.GateRefused(gate=gate.name, phase=phase, said=said))
            return analysis.describe(analysis.gate(gate.name, False, said))
    return None


async def _reading(run: Run, metric: Metric, previous: analysis.Reading | None) -> analysis.Reading:
    trend = previous.trend if previous is not None else ()
    if run.analyst is None:
        return analysis.judge(metric, None, "no Prometheus client in this process", trend)
    query = analysis.render(metric.prometheus.query, analysis_values(run))
    timeout = min(10.0, run.app.analysis.interval if run.app.analysis else 10.0)
    values, problem = await run.analyst.query(metric.prometheus.address, query, timeout)
    if problem:
        return analysis.judge(metric, None, problem, trend)
    return analysis.judge(metric, analysis.worst(values, metric), "", trend)


async def analyse(run: Run, step: int) -> tuple[str, str] | None:
    """Run one interval of the analysis of `step` and store its tally: ("fail", reason) once the checks
    failed `failure_limit` times, or when no interval could be judged for progressDeadlineSeconds;
    ("promote", why) after `auto_promote_after` good intervals; None to go on waiting."""
    config = run.app.analysis
    assert config is not None
    before = run.record.analysis if run.record.analysis and run.record.analysis.step == step else None
    kept = {r.name: r for r in before.readings} if before else {}
    readings = list(await asyncio.gather(*(_reading(run, m, kept.get(m.name)) for m in config.metrics)))
    for gate in config.gates("step"):
        ok, said = await _ask(run, gate, "step")
        readings.append(analysis.gate(gate.name, ok, "" if ok else said))
    now = utcnow()
    tally = analysis.tally(before, step, readings, now)
    note: events.Event | None = None
    failed = analysis.failed_check(tally)
    if failed is not None:
        detail = analysis.describe(failed)
        note = events.Analysed(
            outcome="failed", detail=detail, failures=tally.failures, limit=config.failure_limit
        )
    elif tally.waiting and not (before and before.waiting):
        note = events.Analysed(outcome="waiting", detail=tally.waiting)
    elif not tally.waiting and before is not None and before.waiting:
        note = events.Analysed(outcome="resumed")
    await run.save(setting(analysis=tally), note=note)
    verdict = analysis.verdict(tally, config)
    if verdict == "fail":
        return "fail", analysis.failure_reason(tally, config)
    if verdict == "promote":
        return "promote", f"{tally.good} good analyses in a row"
    limit = run.app.progress_deadline_seconds
    if tally.waiting and tally.judged_at is not None and (now - tally.judged_at).total_seconds() > limit:
        return "fail", f"the analysis could not judge the canary for {limit} s: {tally.waiting}"
    return None


async def refuse_unstarted(run: Run, gate_said: str) -> None:
    """A pre-rollout gate said no: end here, before anything changed on the cluster."""
    reason = f"not started: {gate_said}"
    await run.save(lambda rec: rec.to(Phase.ABORTED, reason=reason).entry("gate", None, gate_said))
    await run.audited("release", run.record.requester, reason, warning=True)
