"""Message timestamps and ids: Slack's shape, unique and increasing per channel."""

from __future__ import annotations

import re

import pytest

from sandbox.slack.ids import TsGenerator, decode_cursor, encode_cursor, format_ts, parse_ts, slack_id


def test_ts_has_slack_shape_and_follows_the_clock() -> None:
    gen = TsGenerator()
    ts = gen.next("C1", 1_700_000_000.25)
    assert re.fullmatch(r"\d{10}\.\d{6}", ts)
    assert ts == "1700000000.250000"


def test_ts_unique_and_increasing_when_the_clock_stands_still_or_goes_back() -> None:
    gen = TsGenerator()
    values = [gen.next("C1", 1_700_000_000.0) for _ in range(5)]
    values.append(gen.next("C1", 1_699_999_000.0))
    assert values[:3] == ["1700000000.000000", "1700000000.000001", "1700000000.000002"]
    assert len(set(values)) == len(values)
    assert [parse_ts(v) for v in values] == sorted(parse_ts(v) for v in values)


def test_ts_sequences_are_per_channel() -> None:
    gen = TsGenerator()
    assert gen.next("C1", 1.0) == gen.next("C2", 1.0) == "1.000000"


def test_ts_carries_into_the_next_second() -> None:
    gen = TsGenerator()
    assert gen.next("C1", 5.999999) == "5.999999"
    assert gen.next("C1", 5.0) == "6.000000"


@pytest.mark.parametrize(
    ("text", "micros"), [("1.5", 1_500_000), ("12", 12_000_000), ("3.000007", 3_000_007)]
)
def test_parse_ts(text: str, micros: int) -> None:
    assert parse_ts(text) == micros
    assert parse_ts(format_ts(micros)) == micros


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "-1", "1.x"])
def test_parse_ts_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Slack ts"):
        parse_ts(bad)


def test_ids_are_slack_like_and_stable() -> None:
    cid = slack_id("C", "releases")
    assert re.fullmatch(r"C[A-Z0-9]{10}", cid)
    assert cid == slack_id("C", "releases") != slack_id("C", "general")


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor("next_ts:1.000001")) == "next_ts:1.000001"
    assert decode_cursor("!!!") is None
