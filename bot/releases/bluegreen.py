"""`/release <app> <version> --bluegreen` (guide §1): a second, complete Deployment, then a Service switch.

"Blue" is whichever Deployment the app's Service selects now (the catalog's Deployment the first time,
the green of the previous blue-green release after that); "green" is a copy of blue's spec with the new
image and `version` label, named by the catalog's `name_template`. The driver:

    PENDING          create green (marked as ours: managed-by label, app and release-id annotations)
    ROLLING_OUT      wait until every green pod is Ready (health gate: crash loops, pull errors,
                     progressDeadlineSeconds); a green that never gets there is never switched to
    AWAITING_SWITCH  Switch traffic (Promote) or Abort
                     Promote: patch the Service selector's `version` (a JSON patch that tests the old
                     selector first), then watch the Endpoints until they list only green pod IPs
    SWITCHED         blue kept for `grace_seconds`: Rollback switches back at once (Endpoints checked
                     again); Finish, or the end of the grace period, retires blue (scale to 0, or
                     delete when the catalog says so and release-bot created it) -> SUCCEEDED
    ROLLING_BACK     put the Service back on blue if needed, delete green -> ROLLED_BACK or ABORTED

Every phase is re-entrant, so a bot restarted in the middle carries on: an existing green with this
release's id is taken as created, a selector already pointing where we want is left alone, and a
request stays on the record until the step it asked for is done. Nothing is deleted unless it carries
release-bot's mark; a leftover green of an earlier release (ours, not live) is deleted and created
again, with a note in the thread.

The pure helpers (names, label values, quantities, the footprint, selector checks, endpoint checks) come
first and are unit-tested; the driver follows.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from typing import Literal

from bot.catalog import App, Retire
from bot.errors import Conflict, UserError
from bot.kube.client import CHANGE_CAUSE, KubeConflict, NotFound, Obj
from bot.releases import events, health, refusals, steps
from bot.releases.objects import (
    APP_ANNOTATION,
    APP_VERSION_LABEL,
    MANAGED_BY,
    RELEASE_ID,
    REPLICAS_BEFORE,
    VERSION_LABEL,
    find_live,
    footprint,
    green_name,
    is_ours,
    label_value,
    release_of,
    serves_only,
)
from bot.releases.ports import Reader
from bot.releases.preflight import Write
from bot.releases.record import Actor, Phase, Record, Request, utcnow
from bot.releases.run import Outcome, Plan, Run, Snapshot, cannot_start

log = logging.getLogger(__name__)

SWITCH_TIMEOUT = 60.0  # seconds for the Endpoints to follow a selector change
GONE_TIMEOUT = 60.0  # seconds for a deleted Deployment (and its pods) to go
BOT = Actor(id="release-bot", name="release-bot")  # holds the request while the grace period retires blue

# --- Blue-green names and objects (pure) ----------------------------------------------------------


def green_label(record: Record) -> str:
    return label_value(health.version_of(record.to_image))


def green_selector(record: Record) -> dict[str, str]:
    """What the Service selects once switched: blue's selector with the new version."""
    return {**record.selector, VERSION_LABEL: green_label(record)}


GreenAction = Literal["create", "reuse", "replace"]


def green_action(existing: Obj | None, release_id: str | None, live: str, app: str) -> GreenAction:
    """What to do about a Deployment already carrying the green's name (UserError when it is not ours
    to replace): nothing there -> create; this release's -> reuse; an earlier release's -> replace."""
    if existing is None:
        return "create"
    name = existing["metadata"]["name"]
    if name == live:
        raise refusals.GreenIsLive(name)
    if not is_ours(existing, app):
        raise refusals.NameTaken(name)
    if release_id is not None and release_of(existing) == release_id:
        return "reuse"
    return "replace"


def green_body(blue: Obj, record: Record, app: App) -> Obj:
    """Blue's spec with the new image and version label, marked as release-bot's (guide §1.2)."""
    label = green_label(record)
    spec = copy.deepcopy(blue["spec"])
    spec.pop("paused", None)
    spec["replicas"] = record.replicas
    spec["progressDeadlineSeconds"] = app.progress_deadline_seconds
    spec["selector"] = {**spec.get("selector", {}), "matchLabels": {**spec["selector"]["matchLabels"]}}
    spec["selector"]["matchLabels"][VERSION_LABEL] = label
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    version = {APP_VERSION_LABEL: label_value(record.to_version)}
    template_meta["labels"] = {**(template_meta.get("labels") or {}), VERSION_LABEL: label, **version}
    for container in template.get("spec", {}).get("containers", []):
        if container.get("name") in app.own_containers:
            container["image"] = record.to_image
    blue_meta = blue.get("metadata", {})
    annotations = {
        k: v
        for k, v in (blue_meta.get("annotations") or {}).items()
        if not k.startswith(("deployment.kubernetes.io/", "kubectl.kubernetes.io/", "release-bot.io/"))
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": record.green,
            "namespace": record.namespace,
            "labels": {**(blue_meta.get("labels") or {}), VERSION_LABEL: label, **version, **MANAGED_BY},
            "annotations": {
                **annotations,
                CHANGE_CAUSE: steps.change_cause(record),
                RELEASE_ID: record.id,
                APP_ANNOTATION: record.app,
                "release-bot.io/blue": record.deployment,
            },
        },
        "spec": spec,
    }


# --- The pre-check at `/release ... --bluegreen` ---------------------------------------------------


async def plan(kube: Reader, app: App, to_image: str) -> Plan:
    """Check a blue-green release can start, before anything is recorded (UserError saying why not)."""
    service_name = app.service or ""
    try:
        service = await kube.service(app.namespace, service_name)
    except NotFound:
        raise refusals.NoService(app.namespace, service_name) from None
    deployments = await kube.deployments(app.namespace)
    blue = find_live(app, service, deployments)
    blue_name = blue["metadata"]["name"]
    if health.container_image(blue, app.container) is None:
        raise refusals.NoContainer(blue_name, app.container, live=True)
    size = footprint(blue)
    if not size.replicas:
        raise refusals.LiveScaledToZero(blue_name)
    limit = app.bluegreen.max_replicas
    if limit is not None and size.during.replicas > limit:
        raise refusals.TooBig(app.name, size.replicas, limit)
    selector: dict[str, str] = service["spec"]["selector"]
    version = health.version_of(to_image)
    if label_value(version) == selector[VERSION_LABEL]:
        raise refusals.SameVersion(service_name, VERSION_LABEL, selector[VERSION_LABEL])
    name = green_name(app, version, blue_name)
    existing = next((d for d in deployments if d["metadata"]["name"] == name), None)
    green_action(existing, None, blue_name, app.name)  # refuses names that are not ours to take
    fields: dict[str, object] = {
        "deployment": blue_name,
        "green": name,
        "selector": dict(selector),
        "replicas": size.replicas,
        "cpu_millis": size.cpu_millis,
        "memory_bytes": size.memory_bytes,
    }
    return Plan(blue, fields, steps=(size.replicas,), peak_pods=size.during.replicas)


def writes(app: App, record: Record, plan: Plan) -> list[Write]:
    """Green, created beside blue, and later the Service's switch to it."""
    return [
        Write("deployment", "create", record.green or "", green_body(plan.deployment, record, app)),
        Write("service", "patch", app.service or "", service_patch(record.selector, green_selector(record))),
    ]


# --- The driver ------------------------------------------------------------------------------------


async def drive(run: Run) -> None:
    assert run.record.green, "a blue-green record names its green Deployment from the start"
    await run.follow(run.record.green, green_selector(run.record))
    while True:
        record = run.record
        match record.phase:
            case Phase.PENDING:
                await _create_green(run)
            case Phase.ROLLING_OUT:
                await _await_green(run)
            case Phase.AWAITING_SWITCH:
                await _await_switch(run)
            case Phase.SWITCHED:
                await _await_finish(run)
            case Phase.FAILED if record.request is not None:
                await steps.take_request(run)
            case Phase.ROLLING_BACK:
                await _clean_up(run)
            case _:
                return


def _last_action(record: Record) -> str:
    return record.history[-1].action if record.history else ""


def _service_name(run: Run) -> str:
    return run.app.service or ""


async def _give_up(run: Run, reason: str, *, switched: bool = False) -> None:
    """Green cannot serve: never switch to it (or switch back), and delete it."""
    switched = switched or run.record.phase is Phase.SWITCHED
    await run.save(
        lambda rec: (
            rec.consume_request().to(Phase.ROLLING_BACK, reason=reason).entry("cleanup", None, reason)
        ),
        note=events.GreenFailed(reason=reason, switched=switched),
    )
    await run.audited("release", run.record.requester, f"failed: {reason}", warning=True)


async def _green_or_none(run: Run) -> Obj | None:
    try:
        return await run.kube.deployment(run.record.namespace, run.record.green or "")
    except NotFound:
        return None


async def _create_green(run: Run) -> None:
    r = run.record
    ns, name = r.namespace, r.green or ""
    try:
        blue = await run.kube.deployment(ns, r.deployment)
    except NotFound:
        await _give_up(run, f"blue `{r.deployment}` no longer exists")
        return
    service = await run.kube.service(ns, _service_name(run))
    selector = service.get("spec", {}).get("selector") or {}
    if selector != r.selector:
        changed = refusals.selector_text(selector)
        await _give_up(run, f"the Service's selector changed to `{changed}` after the release was asked for")
        return
    existing = await _green_or_none(run)
    try:
        action = green_action(existing, r.id, r.deployment, r.app)
    except UserError as e:
        await _give_up(run, str(e))
        return
    if action == "replace" and existing is not None:
        await run.note(events.LeftOver(name=name, release_id=release_of(existing)))
        await run.kube.delete_deployment(ns, name)  # ours: green_action checked the mark
        await run.kube.wait_deployment_gone(ns, name, timeout=GONE_TIMEOUT)
    await steps.hold_autoscaler(run, r.replicas)  # blue must not change size while both run
    if action != "reuse":
        try:
            await run.kube.create_deployment(ns, green_body(blue, r, run.app))
        except KubeConflict:
            return  # created at the same moment (a second driver): look again
    await run.save(
        lambda rec: rec.to(Phase.ROLLING_OUT).entry("started", rec.requester, f"green {name}"),
        note=events.GreenCreated(),
    )
    await run.audited("release", r.requester, f"started: green {name} created")


async def _await_green(run: Run) -> None:
    """Wait until every green pod is Ready, or the health gate or a request says otherwise."""

    def verdict(snap: Snapshot) -> Outcome | None:
        if snap.record.request in (Request.ROLLBACK, Request.ABORT):
            return Outcome("request")
        if snap.deployment is None or not steps.runs_new_template(snap):
            return None
        pods = run.live().new_pods
        if (fatal := cannot_start(pods)) is not None:
            return fatal
        p = health.progress(snap.deployment)
        if p.deadline_exceeded:
            return Outcome("failed", steps.failure_reason(snap, p.deadline_exceeded))
        if p.complete and pods is not None and pods.ready >= p.desired:
            return Outcome("ready")
        return None

    deadline = run.app.progress_deadline_seconds + steps.SAFETY_MARGIN
    try:
        outcome = await run.wait(verdict, timeout=deadline)
    except TimeoutError:
        outcome = Outcome("failed", f"green was not Ready within {int(deadline)} s")
    if outcome.kind == "request":
        await steps.take_request(run)
    elif outcome.kind == "ready":
        await run.save(
            lambda rec: rec.to(Phase.AWAITING_SWITCH),
            note=events.GreenReady(
                health=new.describe() if (new := run.live().new_pods) else "", service=_service_name(run)
            ),
        )
    else:
        await _give_up(run, outcome.reason)


async def _await_switch(run: Run) -> None:
    """Green is ready and idle: wait for Switch traffic or Abort, still watching green's health."""

    def decision(snap: Snapshot) -> Outcome | None:
        if snap.record.request is not None:
            return Outcome("request")
        pods = run.live().new_pods
        if (fatal := cannot_start(pods)) is not None:
            return fatal
        return None

    while True:  # a decision has no deadline of its own; each wait does, and is re-armed
        try:
            verdict = await run.wait(decision, timeout=run.app.progress_deadline_seconds)
            break
        except TimeoutError:
            continue
    if verdict.kind != "request":
        await _give_up(run, verdict.reason)
    elif run.record.request is Request.PROMOTE:
        if await steps.gate_refusal(run, "promote", Record.consume_request) is not None:
            return  # a gate said no: green stays ready, the switch can be asked for again
        failed = await _analyse_green(run)
        if failed:
            await _give_up(run, failed)
        elif run.record.request is Request.PROMOTE:
            await _switch(run)
    else:
        await steps.take_request(run)


async def _analyse_green(run: Run) -> str:
    """Before the switch, the catalog's analysis judges green's pods: "" once an interval passes,
    the reason when it fails. An interval that cannot be judged is tried again an interval later
    (never switching meanwhile); an Abort asked for meanwhile ends the wait ("")."""
    config = run.app.analysis
    if config is None or not config.metrics:
        return ""
    while run.record.request is Request.PROMOTE:
        judged = await steps.analyse(run, run.record.step)
        if judged is not None and judged[0] == "fail":
            return judged[1]
        tally = run.record.analysis
        if tally is not None and not tally.waiting and tally.good >= 1:
            return ""
        with contextlib.suppress(TimeoutError):
            await run.wait(
                lambda snap: True if snap.record.request is not Request.PROMOTE else None,
                timeout=config.interval,
            )
    return ""


async def _point_service(run: Run, frm: dict[str, str], to: dict[str, str]) -> bool:
    """Make the Service select `to` if it selects `frm` (a JSON patch that tests `frm` first, so a
    selector someone else changed is never overwritten). False if it selects something else."""
    ns, name = run.record.namespace, _service_name(run)
    current = (await run.kube.service(ns, name)).get("spec", {}).get("selector") or {}
    if current == to:
        return True
    if current != frm:
        return False
    await run.kube.patch_service(ns, name, service_patch(frm, to))
    return True


def service_patch(frm: dict[str, str], to: dict[str, str]) -> list[Obj]:
    """A JSON patch that moves a Service's selector from `frm` to `to`, and fails if it selects
    anything else by then."""
    return [
        {"op": "test", "path": "/spec/selector", "value": frm},
        {"op": "replace", "path": "/spec/selector", "value": to},
    ]


async def _endpoints_follow(run: Run, selector: dict[str, str]) -> int | None:
    """Watch the Service's Endpoints until they list only the pods `selector` matches; their number,
    or None if that did not happen within SWITCH_TIMEOUT."""
    ns = run.record.namespace
    pods = [p for p in await run.kube.pods(ns, selector) if not p["metadata"].get("deletionTimestamp")]
    try:
        await run.kube.watch_endpoints(
            ns,
            _service_name(run),
            lambda ep: True if serves_only(ep, pods) else None,
            timeout=SWITCH_TIMEOUT,
        )
    except TimeoutError:
        return None
    return len(pods)


async def _switch(run: Run) -> None:
    """Switch traffic (guide §1.4). The Promote request stays on the record until the Endpoints show
    green only, so a restart in the middle switches (idempotently) again."""
    r = run.record
    actor = r.request_by
    if _last_action(r) != "switch":
        await run.save(
            lambda rec: rec.entry("switch", actor),
            note=events.Acted(action="switch traffic", by=actor.id if actor else None),
        )
    started = time.monotonic()
    if not await _point_service(run, r.selector, green_selector(r)):
        await _give_up(run, "the Service's selector was changed by someone else before the switch")
        return
    pods = await _endpoints_follow(run, green_selector(r))
    if pods is None:
        reason = f"the Service's endpoints did not list only green's pods within {int(SWITCH_TIMEOUT)} s"
        await _give_up(run, reason, switched=True)
        return
    seconds = time.monotonic() - started
    await steps.retarget_autoscaler(run, r.green or "")
    bg = run.app.bluegreen
    await run.save(
        lambda rec: rec.consume_request().to(Phase.SWITCHED),
        note=events.Switched(
            service=_service_name(run),
            pods=pods,
            seconds=seconds,
            grace_seconds=bg.grace_seconds,
            retire=bg.retire.value,
        ),
    )
    await run.audited("promote", actor, f"switched traffic to {r.green}")


async def _await_finish(run: Run) -> None:
    """Traffic is on green; blue is kept for an instant rollback until Finish or the grace period."""
    app = run.app

    def decision(snap: Snapshot) -> Outcome | None:
        if snap.record.request is not None:
            return Outcome("request")
        pods = run.live().new_pods
        if app.auto_rollback and (fatal := cannot_start(pods)) is not None:
            return fatal
        return None

    left = app.bluegreen.grace_seconds - (utcnow() - run.record.phase_since).total_seconds()
    try:
        verdict = await run.wait(decision, timeout=max(0.0, left))
    except TimeoutError:
        verdict = Outcome("grace")
    if verdict.kind == "grace" or (verdict.kind == "request" and run.record.request is Request.FINISH):
        await _retire(run)
    elif verdict.kind == "request":
        await steps.take_request(run)
    else:
        await _give_up(run, verdict.reason)


async def _retire(run: Run) -> None:
    """Retire blue (scale to 0, or delete when configured and ours), then the release succeeded."""
    r = run.record
    if r.request is not Request.FINISH:  # the grace period is over: take the request slot ourselves
        grace = f"{run.app.bluegreen.grace_seconds:g} s"

        def lock(rec: Record) -> Record:
            if rec.request is not None:
                raise Conflict("a request arrived first")
            return rec.model_copy(update={"request": Request.FINISH, "request_by": BOT}).entry(
                "finish", None, f"grace period of {grace} over"
            )

        try:
            await run.save(
                lock, note=events.Acted(action="finish", detail=f"The grace period of {grace} is over.")
            )
        except Conflict:
            return  # a click won the race: the next turn carries it out
    elif _last_action(r) != "finish":
        actor = r.request_by
        await run.save(
            lambda rec: rec.entry("finish", actor),
            note=events.Acted(action="finish", by=actor.id if actor else None),
        )
    how = await _retire_blue(run)
    actor = run.record.request_by if run.record.request_by != BOT else None

    def elapsed_of(rec: Record) -> float:
        return ((rec.finished_at or rec.phase_since) - rec.created_at).total_seconds()

    done = await run.save(
        lambda rec: rec.consume_request().to(Phase.SUCCEEDED),
        note=lambda rec: events.Retired(how=how, seconds=elapsed_of(rec)),
    )
    elapsed = elapsed_of(done)
    await run.audited("release", actor or done.requester, f"succeeded in {elapsed:.1f} s; blue {how}")


async def _retire_blue(run: Run) -> str:
    r = run.record
    ns, name = r.namespace, r.deployment
    try:
        blue = await run.kube.deployment(ns, name)
    except NotFound:
        return "gone"
    ours = is_ours(blue, r.app)
    if run.app.bluegreen.retire is Retire.DELETE and ours:
        await run.kube.delete_deployment(ns, name)
        try:
            await run.kube.wait_deployment_gone(ns, name, timeout=GONE_TIMEOUT)
        except TimeoutError:
            log.warning("blue %s/%s and its pods were not gone %s s after deletion", ns, name, GONE_TIMEOUT)
        return "deleted"
    replicas = blue.get("spec", {}).get("replicas", 1)
    if replicas:
        patch = {"metadata": {"annotations": {REPLICAS_BEFORE: str(replicas)}}, "spec": {"replicas": 0}}
        await run.kube.patch_deployment(ns, name, patch)

    def scaled_down(dep: Obj) -> bool | None:
        p = health.progress(dep)
        return True if p.observed and p.total == 0 else None

    try:
        await run.kube.watch_deployment(ns, name, scaled_down, timeout=GONE_TIMEOUT)
    except TimeoutError:
        log.warning("blue %s/%s did not report 0 replicas within %s s", ns, name, GONE_TIMEOUT)
    return "kept" if run.app.bluegreen.retire is Retire.DELETE else "scaled-down"


async def _clean_up(run: Run) -> None:
    """Roll back or abort: the Service back on blue (Endpoints checked), green deleted."""
    r = run.record
    ns, service = r.namespace, _service_name(run)
    decided = next((e for e in reversed(r.history) if e.action in ("abort", "rollback", "cleanup")), None)
    current = (await run.kube.service(ns, service)).get("spec", {}).get("selector") or {}
    if current == green_selector(r):
        started = time.monotonic()
        await _point_service(run, green_selector(r), r.selector)
        pods = await _endpoints_follow(run, r.selector)
        if pods is None:
            reason = f"the Service's endpoints did not list only blue's pods within {int(SWITCH_TIMEOUT)} s"
            await run.save(
                lambda rec: rec.consume_request().to(Phase.FAILED, reason=reason),
                note=events.Failed(reason=reason, auto_rollback=False),
            )
            return
        await run.note(events.SwitchedBack(service=service, pods=pods, seconds=time.monotonic() - started))
    elif current != r.selector:
        await run.note(events.ServiceChanged(service=service, selector=current))
    await steps.retarget_autoscaler(run, r.deployment)  # before green, which it may scale, goes
    green = await _green_or_none(run)
    deleted = False
    if green is not None and is_ours(green, r.app) and release_of(green) == r.id:
        await run.kube.delete_deployment(ns, r.green or "")
        deleted = True
        try:
            await run.kube.wait_deployment_gone(ns, r.green or "", timeout=GONE_TIMEOUT)
        except TimeoutError:
            log.warning("green %s/%s pods still running %s s after its deletion", ns, r.green, GONE_TIMEOUT)
    elif green is not None:
        await run.note(events.LeftAlone(name=r.green or ""))
    final = Phase.ABORTED if decided is not None and decided.action == "abort" else Phase.ROLLED_BACK
    who = decided.actor if decided is not None else None
    await run.save(
        lambda rec: rec.consume_request().to(final),
        note=events.BlueGreenEnded(
            by=who.id if who else None, aborted=final is Phase.ABORTED, green_deleted=deleted
        ),
    )
    action = "abort" if final is Phase.ABORTED else "rollback"
    await run.audited(action, who, f"{final.value}: traffic on {r.deployment} ({r.from_version})")
