"""bot.logs: one JSON object per line with the call's extras, the text format for terminals, and no
Slack token in either, wherever in the record it hides."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.logs import JsonFormatter, RedactTokens, choose_format, configure, handler, redact

BOT = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP = "xapp-1-A0123ABCD-1234567890123-0123456789abcdef0123456789abcdef"
USER = "xoxp-11-22-33-abcdef"


def test_redact_replaces_every_token_kind() -> None:
    text = f"bot {BOT}, app {APP}; user={USER} and xoxe-1-abc plus Bearer {BOT}."
    out = redact(text)
    assert BOT not in out and APP not in out and USER not in out and "xoxe-1-abc" not in out
    assert out == (
        "bot xoxb-[redacted], app xapp-[redacted]; user=xoxp-[redacted] and xoxe-[redacted] "
        "plus Bearer xoxb-[redacted]."
    )


def test_redact_leaves_other_text_alone() -> None:
    for text in ("release hexo v2.0", "xoxbox", "inbox-xoxb", "user U012ALICE in C0RELEASES"):
        assert redact(text) == text


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs.captured")
    h = handler("json", stream)
    logger.addHandler(h)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(h)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_time_level_logger_message_and_extras(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.info("released %s to %s", "hexo", "v2.0", extra={"app": "hexo", "replicas": 6})
    (line,) = lines(stream)
    assert line["level"] == "INFO"
    assert line["logger"] == "test.logs.captured"
    assert line["message"] == "released hexo to v2.0"
    assert line["app"] == "hexo" and line["replicas"] == 6
    assert isinstance(line["time"], str) and line["time"].endswith("+00:00")


def test_tokens_are_redacted_in_message_args_extras_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.warning("token %s", BOT, extra={"headers": {"Authorization": f"Bearer {APP}"}, "tokens": [USER]})
    try:
        raise RuntimeError(f"boom with {BOT}")
    except RuntimeError:
        logger.exception("failed calling Slack with %s", APP)
    raw = stream.getvalue()
    assert BOT not in raw and APP not in raw and USER not in raw
    first, second = lines(stream)
    assert first["message"] == "token xoxb-[redacted]"
    assert first["headers"] == {"Authorization": "Bearer xapp-[redacted]"}
    assert first["tokens"] == ["xoxp-[redacted]"]
    assert "RuntimeError: boom with xoxb-[redacted]" in str(second["exception"])


def test_text_format_is_redacted_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.logs.text")
    h = handler("text", stream)
    logger.addHandler(h)
    logger.propagate = False
    try:
        try:
            raise ValueError(APP)
        except ValueError:
            logger.error("bad %s", BOT, exc_info=True)
    finally:
        logger.removeHandler(h)
    out = stream.getvalue()
    assert "ERROR test.logs.text bad xoxb-[redacted]" in out
    assert "ValueError: xapp-[redacted]" in out
    assert BOT not in out and APP not in out


def test_filter_survives_a_bad_format_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items %s", ("many",), None)
    assert RedactTokens().filter(record)
    assert "many" in record.getMessage()
    assert json.loads(JsonFormatter().format(record))["message"].startswith("%d items")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_format() -> None:
    assert choose_format(None, _Tty()) == "text"
    assert choose_format(None, io.StringIO()) == "json"
    assert choose_format("JSON", _Tty()) == "json"
    assert choose_format("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        choose_format("xml", io.StringIO())


def test_configure_sets_up_the_root_logger() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        assert configure(log_format=None, level="debug", stream=stream) == "json"
        logging.getLogger("slack_sdk.web").debug("calling with token=%s", BOT)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    (line,) = lines(stream)
    assert line["logger"] == "slack_sdk.web" and line["message"] == "calling with token=xoxb-[redacted]"
