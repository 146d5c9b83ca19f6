"""The hardened /slack/events edge of the real bot process: raw malformed requests (signed and not)
get 400, 401 or 413 — never a 500 —, the bot's log holds no traceback and none of their bodies,
nothing reaches Bolt or the cluster, and a valid signed command still works afterwards."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import hmac
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bot.slack.edge import MAX_BODY_BYTES
from sandbox.controlplane.launcher import ClusterInfo
from sandbox.slack import SlackSimulator
from tests.fixtures.bot import BotProcess, Bots, command, kubectl

pytestmark = pytest.mark.integration

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def marker(n: int) -> str:
    """A string that appears nowhere but in the body of case `n`."""
    return f"EdgeBodyMarker{n:02d}zq"


@dataclass
class Case:
    name: str
    body: bytes
    content_type: str
    status: int
    signed: bool = True
    timestamp: str | None = None  # the header sent (and signed), default now
    secret: str | None = None  # default the simulator's
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False


def cases(sim: SlackSimulator) -> list[Case]:
    player = sim.player()

    def form(n: int, text: str = "hexo v2.0", **changes: str | None) -> dict[str, str]:
        fields: dict[str, str | None] = {**player.command_form("alice", text), "team_domain": marker(n)}
        fields.update(changes)
        return {k: v for k, v in fields.items() if v is not None}

    def enc(fields: dict[str, str]) -> bytes:
        return urllib.parse.urlencode(fields).encode()

    alice = sim.users["alice"]
    channel = sim.channels["releases"]
    no_actions = {
        "type": "block_actions",
        "user": {"id": alice, "username": "alice", "name": "alice"},
        "channel": {"id": channel, "name": "releases"},
        "container": {"type": "message", "message_ts": "1.000100", "channel_id": channel},
        "trigger_id": marker(9),
    }
    big = (marker(13) + "x" * MAX_BODY_BYTES).encode()[: MAX_BODY_BYTES + 1]
    return [
        Case("invalid UTF-8", enc(form(1)) + b"&extra=\xff\xfe", FORM, 400),
        Case("invalid UTF-8, unsigned", enc(form(2)) + b"&extra=\xff\xfe", FORM, 401, signed=False),
        Case("unknown charset", enc(form(3)), f"{FORM}; charset=koi8-r", 400),
        Case("payload not JSON", f"payload=notjson{marker(4)}".encode(), FORM, 400),
        Case(
            "JSON array",
            json.dumps([{"type": "url_verification", "challenge": marker(5)}]).encode(),
            JSON,
            400,
        ),
        Case("non-numeric timestamp", enc(form(6)), FORM, 401, timestamp="soon"),
        Case("no signature headers", enc(form(7)), FORM, 401, signed=False),
        Case("text/plain command", enc(form(8)), "text/plain", 400),
        Case("block_actions without actions", enc({"payload": json.dumps(no_actions)}), FORM, 400),
        Case("command without user_id", enc(form(10, user_id=None)), FORM, 400),
        Case("stale signature", enc(form(11)), FORM, 401, timestamp=str(int(time.time()) - 600)),
        Case("other secret", enc(form(12)), FORM, 401, secret="not-the-secret"),
        Case("over the cap", big, FORM, 413),
        Case("1 MB, unsigned", (marker(14) + "y" * 1_000_000).encode(), FORM, 401, signed=False),
        Case(
            "over the cap, chunked",
            big.replace(marker(13).encode(), marker(15).encode()),
            FORM,
            413,
            chunked=True,
        ),
        Case("compressed", gzip.compress(enc(form(16))), FORM, 400, headers={"Content-Encoding": "gzip"}),
        Case("compressed, not gzip", enc(form(20)), FORM, 400, headers={"Content-Encoding": "gzip"}),
        Case("JSON without type", json.dumps({"challenge": marker(17)}).encode(), JSON, 400),
        Case("form that is JSON", json.dumps({"command": "/release", "x": marker(18)}).encode(), FORM, 400),
        Case("command with a type field", enc({**form(19), "type": "block_actions"}), FORM, 400),
    ]


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 64 * 1024):
        yield body[i : i + 64 * 1024]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's signature (as `sandbox.slack.client.sign`), for any timestamp text, numeric or not."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


async def send(session: aiohttp.ClientSession, url: str, sim: SlackSimulator, case: Case) -> tuple[int, str]:
    headers = {"Content-Type": case.content_type, **case.headers}
    if case.signed:
        ts = case.timestamp if case.timestamp is not None else str(int(time.time()))
        headers["X-Slack-Request-Timestamp"] = ts
        headers["X-Slack-Signature"] = signature(case.secret or sim.signing_secret, ts, case.body)
    data: Any = chunks(case.body) if case.chunked else case.body
    async with session.post(url, data=data, headers=headers) as resp:
        return resp.status, await resp.text()


async def raw_exchange(port: int, request: bytes, *, close_after_send: bool = False) -> bytes:
    """Write raw bytes to the bot's port; the status line of its answer (b"" when it gives none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        if close_after_send:
            return b""
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()


async def wait_for_log(bot: BotProcess, words: str, timeout: float = 10.0) -> None:
    """Wait until the bot's log contains `words` (a file: nothing to wait on but the clock)."""
    async with asyncio.timeout(timeout):
        while words not in bot.log_path.read_text(errors="replace"):
            await asyncio.sleep(0.05)


def metric(page: str, name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels`."""
    total = 0.0
    for line in page.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


async def metrics_page(session: aiohttp.ClientSession, bot: BotProcess) -> str:
    async with session.get(f"http://127.0.0.1:{bot.port}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_malformed_requests_are_refused_at_the_edge_and_execute_nothing(
    bots: Bots, slack_sim: SlackSimulator, control_plane: ClusterInfo
) -> None:
    bot = await bots.start()
    table = cases(slack_sim)
    # A connection aiohttp gives up on (a body that does not decompress) is not reused.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        got = {case.name: await send(session, bot.url, slack_sim, case) for case in table}
        assert {name: status for name, (status, _) in got.items()} == {c.name: c.status for c in table}
        for name, (_, text) in got.items():
            assert text.strip() and "Traceback" not in text and "EdgeBodyMarker" not in text, (name, text)

        # Below the handler: HTTP that aiohttp cannot frame (answered 400 by aiohttp itself), and a
        # body that ends early (no answer is possible).
        bad_length = (
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1"
            + marker(30).encode()
            + b"\r\n\r\n"
        )
        assert (await raw_exchange(bot.port, bad_length)).startswith(b"HTTP/1.0 400")
        bad_chunk = (
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + marker(31).encode()
            + b"\r\nabc\r\n"
        )
        assert (await raw_exchange(bot.port, bad_chunk)).startswith(b"HTTP/1.0 400")
        truncated = (
            b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + FORM.encode() + b"\r\n"
            b"Content-Length: 500\r\n\r\ntext=" + marker(32).encode()
        )
        await raw_exchange(bot.port, truncated, close_after_send=True)
        await wait_for_log(bot, "incomplete_body")

        # Nothing reached Bolt: every refusal counted by reason, no ack measured, no Slack call made.
        page = await metrics_page(session, bot)
        assert metric(page, "release_bot_slack_rejected_total") == len(table) + 1  # + the truncated body
        assert metric(page, "release_bot_slack_rejected_total", reason="bad_signature") == 1
        assert metric(page, "release_bot_slack_rejected_total", reason="too_large") == 2
        assert metric(page, "release_bot_ack_seconds_count", mode="http") == 0

    log = bot.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "EdgeBodyMarker" not in log
    assert log.count("refused a request to /slack/events") == len(table) + 1
    assert log.count("refused a malformed HTTP request") == 3  # the two above, and the one not gzip

    for method in ("chat.postEphemeral", "chat.postMessage", "chat.update"):
        assert slack_sim.calls_to(method) == [], method
    channel = slack_sim.channels["releases"]
    assert slack_sim.history(channel) == []
    for user in slack_sim.users.values():
        assert slack_sim.ephemerals(channel, user) == []
    record = kubectl(
        control_plane, "-n", bots.namespace, "get", "configmap", "release-bot.hexo", "--ignore-not-found"
    )
    assert record == ""

    # A valid signed command still gets its answer, and is the first request Bolt saw.
    answer = await command(slack_sim, "alice", "help")
    assert "/release &lt;app&gt; &lt;version&gt;" in answer.text
    async with aiohttp.ClientSession() as session:
        assert metric(await metrics_page(session, bot), "release_bot_ack_seconds_count", mode="http") == 1
