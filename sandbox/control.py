"""The sandbox's control endpoints: break things on purpose and watch the bot cope.

A route group mounted on the Slack simulator's server (``SlackSimulator.mount_control``), so the
channel page's panel calls it from its own origin. Under ``control_url``:

- ``GET  /``: ``{"components": [...], "pids": {...}, "faults": {...}}``
- ``POST /faults``: script Slack faults (the simulator's ``fault()`` over HTTP); JSON body
  ``{"method": "chat.update", "count": 3}`` plus ``"error": "ratelimited"``, ``"status": 500``
  and/or ``"hang_seconds": 30`` (see :func:`parse_fault`); ``GET /faults`` lists the pending ones,
  ``DELETE /faults`` clears them.
- ``POST /restart/{component}``: restart a control-plane component or the bot; answers once it is
  usable again, with its new pid.
- ``POST /kill/bot``: SIGKILL the bot; its supervisor starts a new one after a short backoff.

Every answer is JSON. Bad input (unknown component, bad JSON, missing or ill-typed fields) answers
400 with ``{"ok": false, "error": "..."}`` saying what was wrong. Requests from another web origin
or to a non-loopback Host name are refused (403), so no web page can drive these endpoints.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

from sandbox.slack.server import SlackSimulator

log = logging.getLogger("sandbox.control")

MAX_FAULT_COUNT = 1000
MAX_HANG_SECONDS = 3600.0
_METHOD = re.compile(r"^(\*|response_url|[a-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+)$")
_ERROR = re.compile(r"^[a-z][a-z0-9_]{0,79}$")
_FAULT_FIELDS = ("method", "count", "error", "status", "hang_seconds")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class ControlError(ValueError):
    """Bad input to a control endpoint; the message says what to send instead (HTTP 400)."""


class Controls(Protocol):
    """What the endpoints act on (the running sandbox)."""

    @property
    def restartable(self) -> tuple[str, ...]: ...

    @property
    def killable(self) -> tuple[str, ...]: ...

    def pids(self) -> Mapping[str, int | None]: ...

    async def restart(self, component: str) -> Mapping[str, Any]: ...

    async def kill(self, component: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class FaultRequest:
    """One validated ``POST /faults`` body: the arguments of ``SlackSimulator.fault``."""

    method: str
    count: int = 1
    error: str | None = None
    status: int | None = None
    hang_seconds: float | None = None

    def apply(self, sim: SlackSimulator) -> None:
        sim.fault(
            self.method, self.count, error=self.error, status=self.status, hang_seconds=self.hang_seconds
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_fault(body: object) -> FaultRequest:
    """Validate a ``POST /faults`` body; raise :class:`ControlError` naming the first problem."""
    example = 'e.g. {"method": "chat.update", "count": 3, "error": "ratelimited"}'
    if not isinstance(body, dict):
        raise ControlError(f"expected a JSON object, {example}")
    unknown = sorted(set(body) - set(_FAULT_FIELDS))
    if unknown:
        raise ControlError(f"unknown field {unknown[0]!r}; fields are: {', '.join(_FAULT_FIELDS)}")
    method = body.get("method")
    if method is None:
        raise ControlError(f"missing field 'method' (a Web API method, 'response_url' or '*'), {example}")
    if not isinstance(method, str) or not _METHOD.match(method):
        raise ControlError("'method' must be a Web API method such as 'chat.update', 'response_url' or '*'")
    count = body.get("count", 1)
    if not _is_int(count) or not 1 <= count <= MAX_FAULT_COUNT:
        raise ControlError(f"'count' must be a whole number from 1 to {MAX_FAULT_COUNT}")
    error = body.get("error")
    if error is not None and (not isinstance(error, str) or not _ERROR.match(error)):
        raise ControlError("'error' must be a Slack error code such as 'ratelimited' or 'internal_error'")
    status = body.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise ControlError("'status' must be an HTTP error status from 400 to 599, such as 500 or 429")
    hang = body.get("hang_seconds")
    if hang is not None and (
        not isinstance(hang, int | float)
        or isinstance(hang, bool)
        or not math.isfinite(hang)
        or not 0 <= hang <= MAX_HANG_SECONDS
    ):
        raise ControlError(f"'hang_seconds' must be a number of seconds from 0 to {MAX_HANG_SECONDS:.0f}")
    if error is None and status is None and hang is None:
        raise ControlError(f"say what goes wrong: 'error', 'status' or 'hang_seconds', {example}")
    return FaultRequest(
        method=method,
        count=count,
        error=error,
        status=status,
        hang_seconds=float(hang) if hang is not None else None,
    )


def _answer(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(dict(body), status=status, dumps=lambda o: json.dumps(o, default=str))


def _refuse(status: int, message: str) -> web.Response:
    return _answer({"ok": False, "error": message}, status=status)


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Loopback Host names only, no other web origin, and JSON answers for every error."""
    if _hostname(request.host) not in _LOOPBACK_HOSTS:
        return _refuse(403, f"refused: Host {request.host!r} is not a loopback address")
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return _refuse(403, f"refused: requests from {origin} are not allowed")
    try:
        return await handler(request)
    except ControlError as e:
        return _refuse(400, str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _refuse(e.status, e.reason)


def control_app(sim: SlackSimulator, controls: Controls) -> web.Application:
    """The control route group for ``sim.mount_control``."""

    async def status(request: web.Request) -> web.Response:
        return _answer(
            {
                "ok": True,
                "components": [*controls.restartable],
                "killable": [*controls.killable],
                "pids": dict(controls.pids()),
                "faults": sim.pending_faults(),
            }
        )

    async def add_fault(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            raise ControlError("the body is not valid JSON") from None
        fault = parse_fault(body)
        fault.apply(sim)
        log.info("fault scripted: %s", fault)
        return _answer({"ok": True, "fault": asdict(fault), "faults": sim.pending_faults()})

    async def list_faults(request: web.Request) -> web.Response:
        return _answer({"ok": True, "faults": sim.pending_faults()})

    async def clear_faults(request: web.Request) -> web.Response:
        sim.clear_faults()
        return _answer({"ok": True, "faults": {}})

    def component(request: web.Request, allowed: tuple[str, ...], verb: str) -> str:
        name = request.match_info["component"]
        if name not in allowed:
            raise ControlError(f"cannot {verb} {name!r}; one of: {', '.join(allowed)}")
        return name

    async def restart(request: web.Request) -> web.Response:
        name = component(request, controls.restartable, "restart")
        try:
            result = await controls.restart(name)
        except Exception as e:  # the restart itself failed: say why
            log.exception("restart of %s failed", name)
            return _refuse(500, f"restart of {name} failed: {e}")
        return _answer({"ok": True, **result})

    async def kill(request: web.Request) -> web.Response:
        name = component(request, controls.killable, "kill")
        result = await controls.kill(name)
        return _answer({"ok": True, **result})

    app = web.Application(middlewares=[_guard])
    app.router.add_get("/", status)
    app.router.add_post("/faults", add_fault)
    app.router.add_get("/faults", list_faults)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_post("/restart/{component}", restart)
    app.router.add_post("/kill/{component}", kill)
    return app
