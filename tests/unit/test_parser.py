"""The /release language: every verb and flag form, every class of bad input, and fuzzing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from commands.intents import (
    Abort,
    Approve,
    Apps,
    Deny,
    Dequeue,
    Diff,
    Finish,
    Help,
    History,
    Intent,
    Lock,
    Pause,
    Promote,
    Release,
    Resume,
    Rollback,
    Status,
    Strategy,
    Unlock,
    VersionKind,
)
from commands.parser import MAX_TEXT, USAGE, UsageError, Word, classify_version, parse, tokenise

APPS = frozenset({"hexo", "blog", "payments-api"})
DIGEST = "sha256:" + "0123456789abcdef" * 4
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def usage(text: str, apps: frozenset[str] | None = APPS) -> str:
    with pytest.raises(UsageError) as info:
        parse(text, apps=apps)
    return str(info.value)


# --- Releases --------------------------------------------------------------------------------------


def test_release_without_strategy_uses_the_catalog_default() -> None:
    assert parse("hexo v2.0", apps=APPS) == Release(app="hexo", version="v2.0", strategy=None)


@pytest.mark.parametrize(
    ("flag", "strategy"),
    [
        ("--rolling", Strategy.ROLLING),
        ("--canary", Strategy.CANARY),
        ("--bluegreen", Strategy.BLUEGREEN),
        ("--blue-green", Strategy.BLUEGREEN),
    ],
)
def test_release_strategy_flags_anywhere(flag: str, strategy: Strategy) -> None:
    expected = Release(app="hexo", version="v2.0", version_kind=VersionKind.TAG, strategy=strategy)
    assert parse(f"hexo v2.0 {flag}", apps=APPS) == expected
    assert parse(f"{flag} hexo v2.0", apps=APPS) == expected
    assert parse(f"hexo {flag} v2.0", apps=APPS) == expected


def test_the_same_strategy_twice_is_one_strategy() -> None:
    assert parse("hexo v2.0 --canary --canary").strategy == Strategy.CANARY  # type: ignore[union-attr]


@pytest.mark.parametrize("dash", ["\u2014", "\u2013", "\u2212"])
def test_typographic_dashes_become_double_dash(dash: str) -> None:
    assert parse(f"hexo v2.0 {dash}canary") == Release(app="hexo", version="v2.0", strategy=Strategy.CANARY)
    assert parse(f"rollback hexo {dash}to-revision=3") == Rollback(app="hexo", to_revision=3)
    assert parse(f"history hexo {dash}revision 2") == History(app="hexo", revision=2)


def test_dash_inside_a_word_is_left_alone() -> None:
    # Only a leading dash is a mangled `--`: a `-` inside a tag stays as typed.
    assert parse("hexo v2.0-rc1") == Release(app="hexo", version="v2.0-rc1")


def test_nbsp_and_runs_of_whitespace_separate_words() -> None:
    assert parse("\u00a0hexo\u00a0\u00a0v2.0\t\n--canary ") == Release(
        app="hexo", version="v2.0", strategy=Strategy.CANARY
    )


def test_tokenise_undoes_slack_html_escapes_and_dashes() -> None:
    assert tokenise("a&amp;b &lt;c&gt; \u2014canary\u00a0x") == [
        Word("a&b"),
        Word("<c>"),
        Word("--canary"),
        Word("x"),
    ]


def test_html_escapes_are_undone_before_reading_words() -> None:
    # Slack sends `<` as `&lt;`: the error shows what the person typed, not the escape.
    msg = usage("hexo &lt;v2&gt;")
    assert "`<v2>`" in msg
    assert "&lt;" not in msg
    assert "`&`" in usage("hexo v2.0 &amp;")


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ("v2.0", VersionKind.TAG),
        ("latest", VersionKind.TAG),
        ("_build.1-rc_2", VersionKind.TAG),
        ("0", VersionKind.TAG),
        ("a" * 128, VersionKind.TAG),
        (DIGEST, VersionKind.DIGEST),
        ("registry.sword.org/hexo:v2.0", VersionKind.IMAGE),
        ("registry.sword.org:5000/team/hexo:v2.0", VersionKind.IMAGE),
        ("localhost/hexo", VersionKind.IMAGE),
        (f"hexo@{DIGEST}", VersionKind.IMAGE),
        (f"registry.sword.org/hexo:v2.0@{DIGEST}", VersionKind.IMAGE),
    ],
)
def test_versions_are_classified(version: str, kind: VersionKind) -> None:
    assert classify_version(version) == kind
    assert parse(f"hexo {version}") == Release(app="hexo", version=version, version_kind=kind)


@pytest.mark.parametrize(
    "version",
    [
        ".v2",  # may not start with a dot
        "a" * 129,  # too long for a tag
        "v2!",
        "v2/",
        "nginx:1.25",  # a repository with a tag needs a registry path to count as an image
        "sha256:" + "0" * 63,  # digest too short
        "sha256:" + "A" * 64,  # digest is lower-case hex
        "Registry.Sword.org/Hexo:v2",  # repository path components are lower case
        "hexo@sha256:xyz",
    ],
)
def test_bad_versions_say_what_a_version_is(version: str) -> None:
    with pytest.raises(UsageError, match="is not a valid version") as info:
        classify_version(version)
    assert "v2.0" in str(info.value)  # an example of what to type
    assert f"`{version}`" in usage(f"hexo {version}")


# --- Other verbs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "   ", "help", "HELP", "-h", "--help", "hexo v2.0 --help", "\u2014help"]
)
def test_help(text: str) -> None:
    assert parse(text, apps=APPS) == Help()


def test_apps() -> None:
    assert parse("apps") == Apps()
    assert parse("Apps", apps=APPS) == Apps()


@pytest.mark.parametrize(
    ("verb", "intent"),
    [
        ("status", Status(app="hexo")),
        ("promote", Promote(app="hexo")),
        ("pause", Pause(app="hexo")),
        ("resume", Resume(app="hexo")),
        ("finish", Finish(app="hexo")),
        ("abort", Abort(app="hexo")),
        ("history", History(app="hexo")),
        ("rollback", Rollback(app="hexo")),
        ("approve", Approve(app="hexo")),
        ("deny", Deny(app="hexo")),
        ("unlock", Unlock(app="hexo")),
        ("dequeue", Dequeue(app="hexo")),
    ],
)
def test_app_verbs(verb: str, intent: Intent) -> None:
    assert parse(f"{verb} hexo", apps=APPS) == intent
    assert parse(f"{verb.upper()} hexo", apps=APPS) == intent


@pytest.mark.parametrize(
    "text",
    [
        "rollback hexo --to-revision 3",
        "rollback hexo --to-revision=3",
        "rollback --to-revision 3 hexo",
        "rollback hexo \u2014to-revision 3",
        "rollback hexo \u2013to-revision=3",
        "rollback hexo --to-revision 03",
    ],
)
def test_rollback_to_revision_forms(text: str) -> None:
    assert parse(text, apps=APPS) == Rollback(app="hexo", to_revision=3)


@pytest.mark.parametrize(
    "text", ["history hexo --revision 7", "history hexo --revision=7", "history --revision 7 hexo"]
)
def test_history_revision_forms(text: str) -> None:
    assert parse(text, apps=APPS) == History(app="hexo", revision=7)


def test_largest_accepted_revision_has_nine_digits() -> None:
    assert parse("rollback hexo --to-revision 999999999") == Rollback(app="hexo", to_revision=999_999_999)


def test_app_names_with_dashes() -> None:
    assert parse("payments-api v1", apps=APPS) == Release(app="payments-api", version="v1")
    assert parse("status payments-api", apps=APPS) == Status(app="payments-api")


def test_without_apps_any_well_formed_name_is_accepted() -> None:
    assert parse("status anything-goes") == Status(app="anything-goes")


# --- Bad input: each says what to type -------------------------------------------------------------


def test_unknown_app_suggests_the_closest_one() -> None:
    msg = usage("hexa v2.0")
    assert msg.startswith("Unknown app `hexa`.")
    assert "Did you mean `hexo`?" in msg
    assert "`/release apps`" in msg
    assert "Did you mean `payments-api`?" in usage("status payment-api")


def test_unknown_app_without_a_close_match_has_no_suggestion() -> None:
    msg = usage("zzzzzz v2.0")
    assert "Unknown app `zzzzzz`" in msg
    assert "Did you mean" not in msg
    assert "`/release apps`" in msg


@pytest.mark.parametrize("name", ["Hexo", "hexo_1", "hexo-", "h" * 64, "héxo"])
def test_malformed_app_name(name: str) -> None:
    msg = usage(f"{name} v2.0")
    assert f"`{name}` is not an app name" in msg
    assert "`/release apps`" in msg
    assert "is not an app name" in usage(f"status {name}")


@pytest.mark.parametrize("word", ["--force", "-x", "--canary=yes", "--rolling=1", "--nope", "--soak"])
def test_unknown_option_lists_the_options(word: str) -> None:
    msg = usage(f"hexo v2.0 {word}")
    assert f"Unknown option `{word}`" in msg
    for option in (
        "--rolling",
        "--canary",
        "--bluegreen",
        "--to-revision N",
        "--revision N",
        "/release help",
    ):
        assert option in msg


def test_missing_version_shows_an_example() -> None:
    msg = usage("hexo")
    assert "`/release hexo` needs a version" in msg
    assert "`/release hexo <version>`" in msg
    assert "`/release hexo v2.0`" in msg
    assert "needs a version" in usage("hexo --canary")


def test_flags_without_an_app() -> None:
    assert "Which app?" in usage("--canary")
    assert "`/release <app> <version>`" in usage("--rolling --canary")


def test_two_strategies_are_refused() -> None:
    msg = usage("hexo v2.0 --canary --rolling")
    assert msg == "Choose one strategy: `--canary` and `--rolling` were both given."
    assert "Choose one strategy" in usage("hexo v2.0 \u2014bluegreen --blue-green")


@pytest.mark.parametrize(
    ("text", "flag", "verb"),
    [
        ("status hexo --canary", "--canary", "status"),
        ("promote hexo --rolling", "--rolling", "promote"),
        ("abort --bluegreen hexo", "--bluegreen", "abort"),
        ("history hexo --to-revision 3", "--to-revision", "history"),
        ("rollback hexo --revision 3", "--revision", "rollback"),
        ("rollback hexo --canary", "--canary", "rollback"),
        ("help --canary", "--canary", "help"),
        ("apps --revision 2", "--revision", "apps"),
        ("status hexo --queue", "--queue", "status"),
        ("promote hexo --queue", "--queue", "promote"),
        ('promote hexo --break-glass "prod is down"', "--break-glass", "promote"),
        ("rollback hexo --reason=why", "--reason", "rollback"),
        ('abort hexo --reason "why"', "--reason", "abort"),
        ("approve hexo --break-glass=now", "--break-glass", "approve"),
        ("unlock hexo --queue", "--queue", "unlock"),
        ("dequeue hexo --queue", "--queue", "dequeue"),
        ("deny hexo --canary", "--canary", "deny"),
        ('lock hexo "db" --break-glass x', "--break-glass", "lock"),
        ("history hexo --queue", "--queue", "history"),
        ("apps --queue", "--queue", "apps"),
        ('help --break-glass "x"', "--break-glass", "help"),
    ],
)
def test_flag_on_the_wrong_verb(text: str, flag: str, verb: str) -> None:
    assert usage(text) == f"`{flag}` does not apply to `/release {verb}`. Type `/release help`."


@pytest.mark.parametrize(
    ("text", "verb"),
    [("hexo v2.0 --to-revision 3", "rollback"), ("hexo v2.0 --revision=3", "history")],
)
def test_revision_flags_on_a_release_point_to_their_verb(text: str, verb: str) -> None:
    assert f"belongs to `/release {verb} <app>`" in usage(text)


@pytest.mark.parametrize(
    ("text", "extra", "after"),
    [
        ("hexo v2.0 v3.0", "v3.0", "hexo"),
        ("status hexo blog", "blog", "status"),
        ("rollback hexo 3", "3", "rollback"),
        ("help me", "me", "help"),
        ("apps all", "all", "apps"),
        ("approve hexo now", "now", "approve"),
        ("unlock hexo please", "please", "unlock"),
        ('dequeue hexo "my release"', "my release", "dequeue"),
        ("promote hexo --env prod now", "now", "promote"),
    ],
)
def test_extra_words(text: str, extra: str, after: str) -> None:
    assert usage(text) == f"Unexpected `{extra}` after `/release {after}`. Type `/release help`."


@pytest.mark.parametrize(
    "verb",
    [
        *("status", "promote", "pause", "resume", "finish", "abort", "history", "rollback"),
        *("approve", "unlock", "dequeue"),
    ],
)
def test_verb_without_app(verb: str) -> None:
    assert usage(verb) == f"`/release {verb}` needs an app. Type `/release {verb} <app>`."


def test_deny_and_lock_without_app_show_the_reason_too() -> None:
    assert usage("deny") == "`/release deny` needs an app. Type `/release deny <app> [reason]`."
    assert usage("lock") == '`/release lock` needs an app. Type `/release lock <app> "reason"`.'


def test_too_long_text_is_refused_before_parsing() -> None:
    text = "hexo v2.0" + " " * (MAX_TEXT - len("hexo v2.0"))
    assert parse(text) == Release(app="hexo", version="v2.0")
    msg = usage(text + " ")
    assert msg == f"That command is too long ({MAX_TEXT + 1} characters). Type `/release help`."


@pytest.mark.parametrize("value", ["0", "00", "-1", "abc", "1.5", "3a", "1234567890", "+3", "1e3"])
def test_bad_revision_numbers(value: str) -> None:
    msg = usage(f"rollback hexo --to-revision {value}")
    assert msg == f"`--to-revision` needs a revision number (1 or more), not `{value}`."
    assert "`--revision` needs a revision number" in usage(f"history hexo --revision={value}")


def test_empty_revision_after_equals() -> None:
    assert (
        usage("rollback hexo --to-revision=")
        == "`--to-revision` needs a revision number (1 or more), not ``."
    )


@pytest.mark.parametrize("flag", ["--to-revision", "--revision"])
def test_revision_flag_without_a_value(flag: str) -> None:
    assert usage(f"rollback hexo {flag}") == f"`{flag}` needs a revision number, for example `{flag} 3`."


@pytest.mark.parametrize("value", ["²", "٣", "１"])
def test_non_ascii_digits_are_not_revision_numbers(value: str) -> None:
    usage(f"rollback hexo --to-revision {value}")


def test_usage_text_names_every_verb() -> None:
    for verb in (
        "promote",
        "rollback",
        "abort",
        "finish",
        "pause",
        "resume",
        "status",
        "history",
        "apps",
        "help",
        "approve",
        "deny",
        "lock",
        "unlock",
        "dequeue",
    ):
        assert f"`/release {verb}" in USAGE
    for option in ("--to-revision N", "--queue", '--break-glass "reason"', '--reason "why"'):
        assert option in USAGE
    assert '`/release lock <app> "reason"`' in USAGE
    assert "`/release deny <app> [reason]`" in USAGE


def test_usage_lines_are_short_enough_for_slack() -> None:
    assert max(len(line) for line in USAGE.splitlines()) <= 104


# --- Quotes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'hexo v2.0 --break-glass "prod is down"',
        "hexo v2.0 --break-glass \u201cprod is down\u201d",  # what Slack clients make of `"`
        "hexo v2.0 --break-glass \u201dprod is down\u201d",
        "hexo v2.0 --break-glass \u201eprod is down\u201c",
        'hexo v2.0 --break-glass="prod is down"',
        "hexo v2.0 --break-glass=\u201cprod is down\u201d",
        'hexo v2.0 --break-glass "prod  is\u00a0down "',  # whitespace in a reason is one space
        'hexo v2.0 --break-glass prod" is "down',  # quotes join the parts of one word
        '--break-glass "prod is down" hexo v2.0',
    ],
)
def test_a_quoted_part_is_one_word(text: str) -> None:
    assert parse(text, apps=APPS) == Release(app="hexo", version="v2.0", break_glass="prod is down")


def test_tokenise_keeps_quoted_text_as_typed() -> None:
    assert tokenise('lock hexo "a  \u2014b" --x="c d"') == [
        Word("lock"),
        Word("hexo"),
        Word("a  \u2014b", quoted=True),  # a dash inside quotes is text, not a mangled `--`
        Word("--x=c d"),
    ]
    assert tokenise('deny hexo ""') == [Word("deny"), Word("hexo"), Word("", quoted=True)]
    assert tokenise('"\u2014 late" \u2014x') == [Word("\u2014 late", quoted=True), Word("--x")]
    assert parse('deny hexo "\u2014 too late"', apps=APPS) == Deny(app="hexo", reason="\u2014 too late")
    assert tokenise("   ") == []


def test_quotes_of_the_other_kind_are_text_inside_quotes() -> None:
    intent = parse('lock hexo "the \u201cnew\u201d schema"', apps=APPS)
    assert intent == Lock(app="hexo", reason="the \u201cnew\u201d schema")
    intent = parse('lock hexo \u201csay "hi"\u201d', apps=APPS)
    assert intent == Lock(app="hexo", reason='say "hi"')


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("deny hexo it's broken", "it's broken"),
        ("deny hexo it\u2019s broken", "it\u2019s broken"),  # Slack's curly apostrophe
        ('deny hexo "it\'s broken"', "it's broken"),
        ("deny hexo \u201cit\u2019s broken\u201d", "it\u2019s broken"),
        ("deny hexo 'not tested'", "'not tested'"),  # single quotes are ordinary characters
        ("deny hexo \u2018not tested\u2019", "\u2018not tested\u2019"),
    ],
)
def test_apostrophes_and_single_quotes_are_ordinary_characters(text: str, reason: str) -> None:
    assert parse(text, apps=APPS) == Deny(app="hexo", reason=reason)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('hexo v2.0 --break-glass "prod is down', '"prod is down'),
        ("hexo v2.0 --break-glass \u201cprod is down", "\u201cprod is down"),
        ("deny hexo \"it's", "\"it's"),
        ('lock hexo "', '"'),
        ('lock hexo "a" "b', '"b'),
        ('hexo v2.0 --reason="freeze', '"freeze'),
        ('deny hexo "' + "x" * 100, '"' + "x" * 22 + "\u2026"),  # a long text is cut short
    ],
)
def test_an_unclosed_quote_asks_to_close_it(text: str, shown: str) -> None:
    assert usage(text) == (
        f"Close the quote at `{shown}`: a text in quotes needs a quote at each end, "
        'for example `/release lock hexo "database migration"`.'
    )


def test_a_straight_quote_does_not_close_a_curly_one() -> None:
    assert 'Close the quote at `\u201cprod is down"`' in usage('deny hexo \u201cprod is down"')
    assert "Close the quote" in usage('deny hexo "prod is down\u201d')


def test_a_quoted_word_is_never_an_option() -> None:
    assert parse('deny hexo "--canary broke it"', apps=APPS) == Deny(app="hexo", reason="--canary broke it")
    assert parse('deny hexo "-h"', apps=APPS) == Deny(app="hexo", reason="-h")
    assert (
        usage('status hexo "--canary"')
        == "Unexpected `--canary` after `/release status`. Type `/release help`."
    )


def test_slack_html_escapes_inside_quotes_are_undone() -> None:
    assert parse('lock hexo "a &amp; b &lt;c&gt;"', apps=APPS) == Lock(app="hexo", reason="a & b <c>")


# --- Queue, break glass, freezes -------------------------------------------------------------------


def test_release_has_no_queue_break_glass_or_reason_by_default() -> None:
    intent = parse("hexo v2.0", apps=APPS)
    assert isinstance(intent, Release)
    assert (intent.queue, intent.break_glass, intent.reason) == (False, None, None)


@pytest.mark.parametrize("text", ["hexo v2.0 --queue", "--queue hexo v2.0", "hexo \u2014queue v2.0"])
def test_queue(text: str) -> None:
    assert parse(text, apps=APPS) == Release(app="hexo", version="v2.0", queue=True)


def test_break_glass_queue_reason_and_a_strategy_together() -> None:
    text = 'hexo v2.0 --queue --canary --break-glass "prod is down" --reason=\u201cfreeze, but urgent\u201d'
    assert parse(text, apps=APPS) == Release(
        app="hexo",
        version="v2.0",
        strategy=Strategy.CANARY,
        queue=True,
        break_glass="prod is down",
        reason="freeze, but urgent",
    )


@pytest.mark.parametrize(
    "text",
    [
        'hexo v2.0 --reason "hotfix for INC-42"',
        'hexo v2.0 --reason="hotfix for INC-42"',
        "hexo v2.0 --reason=\u201chotfix for INC-42\u201d",
        '--reason "hotfix for INC-42" hexo v2.0',
    ],
)
def test_release_reason_forms(text: str) -> None:
    assert parse(text, apps=APPS) == Release(app="hexo", version="v2.0", reason="hotfix for INC-42")


def test_a_one_word_reason_needs_no_quotes() -> None:
    assert parse("hexo v2.0 --break-glass outage", apps=APPS) == Release(
        app="hexo", version="v2.0", break_glass="outage"
    )
    assert parse("hexo v2.0 --reason=INC-42", apps=APPS) == Release(
        app="hexo", version="v2.0", reason="INC-42"
    )


@pytest.mark.parametrize(
    "text",
    [
        "hexo v2.0 --break-glass",
        "hexo v2.0 --break-glass=",
        'hexo v2.0 --break-glass ""',
        'hexo v2.0 --break-glass "   "',
        'hexo v2.0 --break-glass=""',
        "hexo v2.0 --break-glass --queue",  # the next option is not a reason
        "hexo v2.0 --break-glass \u2014canary",
        "status hexo --break-glass",
    ],
)
def test_break_glass_needs_a_reason(text: str) -> None:
    assert usage(text) == '`--break-glass` needs a reason, for example `--break-glass "prod is down"`.'


@pytest.mark.parametrize(
    "text", ["hexo v2.0 --reason", "hexo v2.0 --reason=", 'hexo v2.0 --reason " "', "promote hexo --reason"]
)
def test_reason_needs_a_reason(text: str) -> None:
    assert usage(text) == (
        '`--reason` needs a reason, for example `--reason "the fix for the checkout outage"`.'
    )


def test_a_reason_of_several_words_without_quotes_is_explained() -> None:
    assert usage("hexo v2.0 --break-glass prod is down") == (
        "Unexpected `is` after `/release hexo`. Put a reason of several words in quotes, "
        'for example `--break-glass "prod is down"`.'
    )
    assert "`--reason " in usage("promote hexo --reason hotfix now")


@pytest.mark.parametrize("word", ["--queue=yes", "--queue=", "--break", "--freeze"])
def test_malformed_new_options_are_unknown(word: str) -> None:
    msg = usage(f"hexo v2.0 {word}")
    assert f"Unknown option `{word}`" in msg


def test_unknown_option_lists_the_new_options() -> None:
    msg = usage("hexo v2.0 --force")
    for option in ("`--queue`", '`--break-glass "reason"`', '`--reason "why"`', "`--env E`"):
        assert option in msg


def test_a_long_unknown_option_is_cut_short() -> None:
    msg = usage("hexo v2.0 --" + "x" * 400)
    assert "--" + "x" * 37 + "\u2026`" in msg
    assert "x" * 40 not in msg


@pytest.mark.parametrize(
    "text",
    [
        'promote hexo --reason "freeze, but approved"',
        "promote --reason=\u201cfreeze, but approved\u201d hexo",
    ],
)
def test_promote_with_a_reason(text: str) -> None:
    assert parse(text, apps=APPS) == Promote(app="hexo", reason="freeze, but approved")
    assert parse("promote hexo", apps=APPS) == Promote(app="hexo", reason=None)


# --- Approvals, locks, the queue -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("deny hexo", ""),
        ("deny hexo not tested", "not tested"),
        ('deny hexo "not tested"', "not tested"),
        ("deny hexo  not \u00a0 tested ", "not tested"),
        ('deny "hexo" not tested', "not tested"),
        ("DENY hexo not tested", "not tested"),
        ('deny hexo "not" tested', "not tested"),
        ('deny hexo ""', ""),
        ("deny hexo the \u201cv2\u201d build", "the v2 build"),
        ("deny hexo 50% of pods crash (again) & no logs", "50% of pods crash (again) & no logs"),
    ],
)
def test_deny(text: str, reason: str) -> None:
    assert parse(text, apps=APPS) == Deny(app="hexo", reason=reason)


@pytest.mark.parametrize(
    "text",
    [
        'lock hexo "database migration"',
        "lock hexo database migration",
        "lock hexo \u201cdatabase migration\u201d",
        'lock "hexo" database "migration"',
        "Lock hexo database   migration",
    ],
)
def test_lock(text: str) -> None:
    assert parse(text, apps=APPS) == Lock(app="hexo", reason="database migration")


@pytest.mark.parametrize("text", ["lock hexo", 'lock hexo ""', 'lock hexo "  "', "lock \u201chexo\u201d"])
def test_lock_needs_a_reason(text: str) -> None:
    assert usage(text) == (
        '`/release lock hexo` needs a reason, for example `/release lock hexo "database migration"`.'
    )


def test_lock_checks_the_app_before_the_reason() -> None:
    assert usage("lock hexa").startswith("Unknown app `hexa`.")
    assert "is not an app name" in usage('lock Hexo "x"')


@pytest.mark.parametrize("verb", ["deny", "lock"])
def test_reason_option_on_deny_and_lock_points_to_the_words_after_the_app(verb: str) -> None:
    msg = usage(f'{verb} hexo --reason "not tested"')
    assert msg.startswith(f"`--reason` does not apply to `/release {verb}`: put the reason after the app")
    assert f'`/release {verb} <app> "' in msg


def test_an_option_inside_a_deny_reason_is_still_an_option() -> None:
    assert parse("deny hexo wrong --env prod version", apps=ENV_APPS) == Deny(
        app="hexo-prod", reason="wrong version"
    )
    assert "Unknown option `--force`" in usage("deny hexo --force is wrong")


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("approve hexo --env prod", Approve(app="hexo-prod")),
        ("approve --env=staging hexo", Approve(app="hexo-staging")),
        ("deny hexo --env prod", Deny(app="hexo-prod")),
        ("deny hexo --env prod it's broken", Deny(app="hexo-prod", reason="it's broken")),
        ('lock hexo "database migration" --env prod', Lock(app="hexo-prod", reason="database migration")),
        ("unlock hexo --env staging", Unlock(app="hexo-staging")),
        ("dequeue hexo \u2014env prod", Dequeue(app="hexo-prod")),
        ('promote hexo --env prod --reason "approved"', Promote(app="hexo-prod", reason="approved")),
        ('hexo v2.0 --env prod --queue --break-glass "down"',
         Release(app="hexo-prod", version="v2.0", queue=True, break_glass="down")),
    ],
)  # fmt: skip
def test_env_with_the_new_verbs(text: str, intent: Intent) -> None:
    assert parse(text, apps=ENV_APPS) == intent


@pytest.mark.parametrize("verb", ["approve", "deny", "unlock", "dequeue"])
def test_new_verbs_need_the_environment_of_an_app_that_has_several(verb: str) -> None:
    msg = usage(f"{verb} hexo", apps=ENV_APPS)
    assert "`--env prod`" in msg and "`--env staging`" in msg


def test_lock_without_a_reason_names_the_app_in_its_environment() -> None:
    assert usage("lock hexo --env prod", apps=ENV_APPS) == (
        "`/release lock hexo-prod` needs a reason, for example "
        '`/release lock hexo-prod "database migration"`.'
    )


def test_a_misspelt_verb_with_env_suggests_the_whole_command() -> None:
    assert usage("aprove hexo --env prod", apps=ENV_APPS) == (
        "Unknown app `aprove`. Did you mean `/release approve hexo --env prod`?"
    )
    assert "Did you mean `/release unlock hexo`?" in usage("unlok hexo", apps=ENV_APPS)


def test_new_intents_are_validated_for_shape() -> None:
    for bad in (
        lambda: Lock(app="hexo", reason=""),
        lambda: Release(app="hexo", version="v2.0", break_glass=""),
        lambda: Release(app="hexo", version="v2.0", reason=""),
        lambda: Promote(app="hexo", reason=""),
        lambda: Approve(app="hexo", reason="x"),  # type: ignore[call-arg]
    ):
        with pytest.raises(ValidationError):
            bad()
    kinds: list[Intent] = [
        Approve(app="a"),
        Deny(app="a"),
        Lock(app="a", reason="r"),
        Unlock(app="a"),
        Dequeue(app="a"),
    ]
    assert [k.kind for k in kinds] == ["approve", "deny", "lock", "unlock", "dequeue"]


# --- Fuzzing ---------------------------------------------------------------------------------------


def _check(text: str, apps: frozenset[str] | None) -> None:
    try:
        intent = parse(text, apps=apps)
    except UsageError as e:
        msg = str(e)
        assert msg, "a usage error must say something"
        assert len(msg) <= MAX_TEXT + 300, msg
        return
    assert isinstance(
        intent,
        Release
        | Status
        | History
        | Rollback
        | Promote
        | Pause
        | Resume
        | Finish
        | Abort
        | Approve
        | Deny
        | Lock
        | Unlock
        | Dequeue
        | Apps
        | Help,
    )
    if apps is not None and not isinstance(intent, Help | Apps):
        assert intent.app in apps
    if isinstance(intent, Release):
        assert classify_version(intent.version) == intent.version_kind
    for reason in _reasons(intent):  # a reason is never empty, and its words are single-spaced
        assert reason and reason == " ".join(reason.split()), reason


def _reasons(intent: Intent) -> list[str]:
    if isinstance(intent, Release):
        return [r for r in (intent.break_glass, intent.reason) if r is not None]
    if isinstance(intent, Promote):
        return [intent.reason] if intent.reason is not None else []
    if isinstance(intent, Lock) or (isinstance(intent, Deny) and intent.reason):
        return [intent.reason]
    return []


@FUZZ
@given(text=st.text(max_size=MAX_TEXT + 20), with_apps=st.booleans())
def test_parse_arbitrary_text_gives_an_intent_or_a_usage_error(text: str, with_apps: bool) -> None:
    _check(text, APPS if with_apps else None)


TOKENS = st.sampled_from(
    [
        "hexo", "hexa", "blog", "payments-api", "Hexo", "status", "promote", "pause", "resume", "finish",
        "abort", "history", "rollback", "help", "apps", "HELP", "v2.0", "v1", ".bad", "a" * 130, DIGEST,
        "registry.sword.org/hexo:v2", f"hexo@{DIGEST}", "--rolling", "--canary", "--bluegreen",
        "--blue-green", "--to-revision", "--to-revision=3", "--to-revision=", "--revision", "--revision=0",
        "--revision=x", "3", "0", "-1", "99999999999", "\u2014canary", "\u2013to-revision", "\u2212rolling",
        "-h", "--help", "-", "--", "&lt;", "&gt;", "&amp;", "&lt;!channel&gt;", "<!channel>",
        "\u00a0", "=", "--canary=1", "--x", "`", "*",
        "approve", "deny", "lock", "unlock", "dequeue", "aprove", "--queue", "--break-glass",
        "--break-glass=", "--reason", "--reason=x", '"', '""', '"prod', 'down"', '"a b"', "\u201c",
        "\u201d", "\u201cit\u2019s down\u201d", "it's", "'", "&quot;",
    ]
)  # fmt: skip


@FUZZ
@given(
    words=st.lists(TOKENS, max_size=8),
    seps=st.sampled_from([" ", "  ", "\u00a0", "\t"]),
    with_apps=st.booleans(),
)
def test_parse_plausible_token_sequences(words: list[str], seps: str, with_apps: bool) -> None:
    _check(seps.join(words), APPS if with_apps else None)


TAGS = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcxyzABCXYZ0189_"),
    st.text(alphabet="abcxyzABCXYZ0189_.-", max_size=127),
)


@FUZZ
@given(tag=TAGS, strategy=st.sampled_from(["", " --canary", " --rolling", " \u2014bluegreen"]))
def test_every_valid_tag_round_trips_as_the_release_version(tag: str, strategy: str) -> None:
    intent = parse(f"hexo {tag}{strategy}", apps=APPS)
    assert isinstance(intent, Release)
    assert intent.version == tag
    assert intent.version_kind == VersionKind.TAG
    assert (intent.strategy is None) == (strategy == "")


@FUZZ
@given(revision=st.integers(min_value=1, max_value=999_999_999), form=st.sampled_from([" ", "="]))
def test_every_revision_number_round_trips(revision: int, form: str) -> None:
    assert parse(f"rollback hexo --to-revision{form}{revision}") == Rollback(app="hexo", to_revision=revision)
    assert parse(f"history hexo --revision{form}{revision}") == History(app="hexo", revision=revision)


VERBS = st.sampled_from(
    [
        *("", "status", "promote", "rollback", "history", "abort", "help", "apps", "Pause"),
        *("approve", "deny", "lock", "unlock", "dequeue", "Lock"),
    ]
)
REVISION_VALUES = st.one_of(
    st.integers(min_value=-5, max_value=10**10).map(str),
    st.text(alphabet="0123456789-+.eE x٣", max_size=12),
)
FLAG = st.one_of(
    st.sampled_from(["--rolling", "--canary", "--bluegreen", "--blue-green", "\u2014canary", "--nope"]),
    st.sampled_from(
        ["--queue", '--break-glass "prod is down"', "--reason=x", '--reason ""', "--break-glass"]
    ),
    st.tuples(
        st.sampled_from(["--to-revision", "--revision", "\u2013to-revision"]),
        st.sampled_from([" ", "="]),
        REVISION_VALUES,
    ).map("".join),
)


@FUZZ
@given(
    verb=VERBS,
    app=st.sampled_from(["", "hexo", "hexa", "payments-api", "Bad_Name"]),
    version=st.one_of(st.just(""), TAGS, st.just(DIGEST), st.text(max_size=20)),
    flags=st.lists(FLAG, max_size=3),
    order=st.randoms(use_true_random=False),
    with_apps=st.booleans(),
)
def test_parse_structured_commands(
    verb: str, app: str, version: str, flags: list[str], order: Any, with_apps: bool
) -> None:
    words = [w for w in (verb, app, version) if w] + flags
    order.shuffle(words)
    text = " ".join(words)
    _check(text, APPS if with_apps else None)


ENV_APPS = frozenset({"hexo-staging", "hexo-prod", "web"})


@pytest.mark.parametrize(
    ("text", "app"),
    [
        ("hexo v2.0 --env prod", "hexo-prod"),
        ("hexo-prod v2.0", "hexo-prod"),
        ("status hexo --env staging", "hexo-staging"),
        ("rollback hexo --env=prod --to-revision 2", "hexo-prod"),
    ],
)
def test_env_flag_names_the_apps_environment(text: str, app: str) -> None:
    intent = parse(text, apps=ENV_APPS)
    assert isinstance(intent, Release | Status | Rollback)
    assert intent.app == app


def test_an_app_with_environments_needs_one() -> None:
    message = usage("hexo v2.0", apps=ENV_APPS)
    assert "`--env prod`" in message and "`--env staging`" in message


def test_env_flag_needs_a_valid_name() -> None:
    assert "needs an environment" in usage("hexo v2.0 --env")
    assert "not an environment name" in usage("hexo v2.0 --env Prod!", apps=ENV_APPS)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("rollbak hexo", "Did you mean `/release rollback hexo`?"),
        ("promot hexo", "Did you mean `/release promote hexo`?"),
        ("hexo v2.0 --canery", "Did you mean `--canary`?"),
        ("hexo v2.0 --blugreen", "Did you mean `--bluegreen`?"),
        ("history hexo --revison 2", "Did you mean `--revision`?"),
        ("hexp v2.0", "Did you mean `hexo`?"),
        ("aprove hexo", "Did you mean `/release approve hexo`?"),
        ("approv hexo", "Did you mean `/release approve hexo`?"),
        ("deni hexo it's broken", "Did you mean `/release deny hexo it's broken`?"),
        ('lok hexo "db migration"', 'Did you mean `/release lock hexo "db migration"`?'),
        ("unlok hexo", "Did you mean `/release unlock hexo`?"),
        ("dequeu hexo", "Did you mean `/release dequeue hexo`?"),
        ("promot hexo --reason=why", "Did you mean `/release promote hexo --reason why`?"),
        ('hexo v2.0 --break-glas "prod is down"', "Did you mean `--break-glass`?"),
        ("hexo v2.0 --breakglass=x", "Did you mean `--break-glass`?"),
        ("hexo v2.0 --queu", "Did you mean `--queue`?"),
        ("hexo v2.0 --reasn x", "Did you mean `--reason`?"),
        ("promote hexo --reaso=x", "Did you mean `--reason`?"),
    ],
)
def test_did_you_mean_for_verbs_flags_and_apps(text: str, answer: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text, apps={"hexo"})
    assert answer in str(info.value)


ENV_APPS = frozenset({"hexo-staging", "hexo-prod", "blog"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("diff hexo staging prod", Diff(app="hexo-staging", other="hexo-prod")),
        ("diff hexo-prod hexo-staging", Diff(app="hexo-prod", other="hexo-staging")),
    ],
)
def test_diff_names_two_environments_or_two_apps(text: str, expected: Diff) -> None:
    assert parse(text, apps=ENV_APPS) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("diff hexo", "needs an app and two of its environments"),
        ("diff hexo staging qa", "Unknown app `hexo-qa`"),
        ("diff hexo staging prod --env prod", "names both environments itself"),
        ("diff hexo staging prod --canary", "--canary"),
    ],
)
def test_diff_mistakes_say_what_to_type(text: str, words: str) -> None:
    with pytest.raises(UsageError, match=re.escape(words)):
        parse(text, apps=ENV_APPS)
