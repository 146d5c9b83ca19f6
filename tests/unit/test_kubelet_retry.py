"""When the simulated kubelet retries, and how long it waits (sandbox/kubelet/retry.py)."""

from __future__ import annotations

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from sandbox.kubelet.retry import BACKOFF_CAP_S, Backoff, backoff_delay, is_transient


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ServerDisconnectedError(),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError(),
        ApiException(status=429, reason="Too Many Requests"),
        ApiException(status=500, reason="Internal Server Error"),
        ApiException(status=503, reason="Service Unavailable"),
        ApiException(status=504, reason="Gateway Timeout"),
        ApiException(status=0, reason="no answer"),
    ],
)
def test_transport_errors_and_overload_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ApiException(status=400, reason="Bad Request"),
        ApiException(status=403, reason="Forbidden"),
        ApiException(status=404, reason="Not Found"),
        ApiException(status=409, reason="Conflict"),
        ApiException(status=410, reason="Gone"),
        ValueError("a bug"),
        KeyError("metadata"),
    ],
)
def test_answers_about_the_request_itself_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_backoff_doubles_and_is_capped() -> None:
    top = [backoff_delay(n, base=0.2, cap=5.0, rand=lambda: 1.0) for n in range(8)]
    assert top == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert backoff_delay(10_000, rand=lambda: 1.0) == BACKOFF_CAP_S


def test_backoff_jitter_stays_within_half_and_all_of_the_delay() -> None:
    assert backoff_delay(3, base=0.2, cap=5.0, rand=lambda: 0.0) == pytest.approx(0.8)
    assert backoff_delay(3, base=0.2, cap=5.0, rand=lambda: 0.5) == pytest.approx(1.2)
    for n in range(12):
        d = backoff_delay(n)
        ceiling = min(BACKOFF_CAP_S, 0.2 * 2**n)
        assert ceiling / 2 <= d <= ceiling


def test_backoff_state_advances_and_resets() -> None:
    b = Backoff(base=1.0, cap=8.0, rand=lambda: 1.0)
    assert [b.next() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    b.reset()
    assert b.next() == 1.0


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1)
