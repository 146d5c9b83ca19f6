"""The sandbox's control input and the bot supervisor's backoff (sandbox/control.py, supervisor.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.control import ControlError, FaultRequest, parse_fault
from sandbox.supervisor import crash_backoff


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        (
            {"method": "chat.update", "count": 3, "error": "ratelimited"},
            FaultRequest("chat.update", 3, error="ratelimited"),
        ),
        ({"method": "chat.postMessage", "status": 500}, FaultRequest("chat.postMessage", 1, status=500)),
        ({"method": "chat.update", "hang_seconds": 30}, FaultRequest("chat.update", 1, hang_seconds=30.0)),
        (
            {"method": "response_url", "hang_seconds": 0.5, "status": 429},
            FaultRequest("response_url", 1, status=429, hang_seconds=0.5),
        ),
        (
            {"method": "*", "count": 1, "error": "internal_error"},
            FaultRequest("*", 1, error="internal_error"),
        ),
    ],
)
def test_valid_fault_bodies(body: dict[str, Any], fault: FaultRequest) -> None:
    assert parse_fault(body) == fault


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, "expected a JSON object"),
        ([], "expected a JSON object"),
        ({"count": 3, "error": "ratelimited"}, "missing field 'method'"),
        ({"method": "chat.update"}, "say what goes wrong"),
        ({"method": "chat.update", "count": 0, "error": "x"}, "'count'"),
        ({"method": "chat.update", "count": True, "error": "x"}, "'count'"),
        ({"method": "chat.update", "count": "3", "error": "x"}, "'count'"),
        ({"method": "chat.update", "status": 200}, "'status'"),
        ({"method": "chat.update", "status": "500"}, "'status'"),
        ({"method": "chat.update", "hang_seconds": -1}, "'hang_seconds'"),
        ({"method": "chat.update", "hang_seconds": 1e9}, "'hang_seconds'"),
        ({"method": "chat.update", "hang_seconds": float("nan")}, "'hang_seconds'"),
        ({"method": "chat.update", "error": "Rate Limited!"}, "'error'"),
        ({"method": "../etc", "error": "x"}, "'method'"),
        ({"method": 7, "error": "x"}, "'method'"),
        ({"method": "chat.update", "error": "x", "hang": True}, "unknown field 'hang'"),
    ],
)
def test_bad_fault_bodies_say_what_is_wrong(body: object, says: str) -> None:
    with pytest.raises(ControlError, match=says):
        parse_fault(body)


def test_crash_backoff_doubles_from_half_a_second_up_to_ten() -> None:
    assert [crash_backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    with pytest.raises(ValueError, match="crashes"):
        crash_backoff(0)
