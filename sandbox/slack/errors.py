"""The simulator's one error type: a Web API error as Slack reports it.

A module of its own so that every part of the simulator (workspace, views, server) can raise it
without importing the others.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A Web API error as Slack reports it: `error` code plus optional extra response fields."""

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra
