"""The simulator's value types, and what its parts need of one another.

A module of its own so that the player (`client.py`), Socket Mode (`socket_mode.py`) and the server
(`server.py`) share these without importing each other: the server builds the other two and hands
each only what it uses (`SlackSide` for the player; plain callables for Socket Mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.slack.workspace import Workspace


@dataclass(frozen=True)
class CommandResponse:
    """The bot's HTTP answer to something Slack sent.

    `status` is 0 when the request failed to connect or timed out (`timed_out` then says which);
    `text` is the raw body; `json` the parsed body when it was JSON.
    """

    status: int
    text: str
    json: Any = None
    timed_out: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventDelivery:
    """One attempt to deliver an Events API envelope (retry_num 0 is the first attempt)."""

    retry_num: int
    retry_reason: str | None
    response: CommandResponse


@dataclass(frozen=True)
class ApiCall:
    """One Web API call as the simulator saw it (token removed from `params`)."""

    method: str
    params: dict[str, Any]
    ok: bool
    error: str | None
    status: int
    time: float


class Delivered(Protocol):
    """One envelope sent over Socket Mode, and what came of it."""

    def response(self) -> CommandResponse: ...


class Envelopes(Protocol):
    """Delivering a payload over the app's Socket Mode connections."""

    async def deliver(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        ack_timeout: float = 3.0,
    ) -> Delivered: ...


class SlackSide(Protocol):
    """What a player needs of the simulated Slack it plays: the workspace, the credentials Slack
    signs and marks its requests with, where the bot is, and where its answers are shown."""

    @property
    def workspace(self) -> Workspace: ...

    @property
    def signing_secret(self) -> str: ...

    @property
    def verification_token(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def bot_url(self) -> str | None: ...

    @property
    def socket_mode(self) -> Envelopes: ...

    def record_unknown_command(self, channel_id: str, user_id: str, command: str) -> None: ...

    def record_command_response(
        self, channel_id: str, user_id: str, command: str, response: CommandResponse
    ) -> None: ...
