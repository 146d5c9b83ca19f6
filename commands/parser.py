"""Parse the text of `/release ...` into an intent, or a UsageError that says what to type.

Slack HTML-escapes `&`, `<` and `>` in command text and some clients turn `--` into a dash and `"`
into curly quotes, so the text is undone and split into words first (`tokenise`). The parser knows
the catalog's app names only to suggest a correction.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Callable, Collection
from typing import NamedTuple

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
    Promotion,
    Release,
    Resume,
    Rollback,
    Status,
    Strategy,
    Unlock,
    VersionKind,
)

USAGE = """\
`/release <app> <version> [--rolling|--canary|--bluegreen] [--env E]`  release a version
`/release <app> <version> --dry-run`  show the plan (changes, steps, pods, warnings), change nothing
`/release <app> <version> --queue`  wait for your turn if the app is busy
`/release <app> <version> --break-glass "reason"`  an emergency: release past the app's gates
`/release <app> <version> --reason "why"`  release (or promote) during a freeze
`/release promote <app> [--reason "why"]`  next canary step, or switch traffic to green
`/release promote <app> --from <env> --to <env>`  release to one environment the image another runs
`/release rollback <app> [--to-revision N]`  go back to the previous (or a given) revision
`/release abort <app>`  stop the running release and put the old version back
`/release finish <app>`  blue-green: retire the old colour now
`/release pause <app>` / `/release resume <app>`  pause or resume the rollout
`/release approve <app>` / `/release deny <app> [reason]`  answer a release waiting for approval
`/release lock <app> "reason"` / `/release unlock <app>`  stop (or allow again) every release of an app
`/release dequeue <app>`  take your queued release off the app's queue
`/release status <app>`  what runs now
`/release history <app> [--revision N]`  the revisions, newest first
`/release diff <app> <env> <env>`  how two environments differ (images, env, resources, replicas)
`/release apps`  the apps you can release
`/release help`  this text"""

MAX_TEXT = 500

TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)"
IMAGE_RE = re.compile(
    rf"(?:{_HOST})?{_COMPONENT}(?:/{_COMPONENT})*(?::{TAG_RE.pattern})?(?:@{DIGEST_RE.pattern})?"
)
APP_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

STRATEGY_FLAGS: dict[str, Strategy] = {
    "--rolling": Strategy.ROLLING,
    "--canary": Strategy.CANARY,
    "--bluegreen": Strategy.BLUEGREEN,
    "--blue-green": Strategy.BLUEGREEN,
}
SWITCHES = ("--queue", "--dry-run", *STRATEGY_FLAGS)  # options without a value
VALUE_FLAGS = ("--to-revision", "--revision", "--env", "--break-glass", "--reason", "--from", "--to")
_REASON_EXAMPLES = {"--break-glass": "prod is down", "--reason": "the fix for the checkout outage"}
# The verbs whose only word is the app.
_APP_VERBS: dict[str, Callable[..., Intent]] = {
    "status": Status,
    "promote": Promote,
    "pause": Pause,
    "resume": Resume,
    "finish": Finish,
    "abort": Abort,
    "approve": Approve,
    "unlock": Unlock,
    "dequeue": Dequeue,
}
# The options a verb takes besides `--env` (every verb with an app takes `--env`).
_VERB_FLAGS = {"history": ("--revision",), "rollback": ("--to-revision",), "promote": ("--reason",)}
_TEXT_VERBS = {"deny": " [reason]", "lock": ' "reason"'}  # the words after the app are a reason
_TEXT_EXAMPLES = {"deny": "the tests fail", "lock": "database migration"}
_DASHES = ("\u2014", "\u2013", "\u2212")  # em dash, en dash, minus: what `--` becomes in some clients
_STRAIGHT_QUOTE = '"'
_CURLY_QUOTES = "\u201c\u201d\u201e"  # “ ” „: what `"` becomes in some clients; any of them closes


class UsageError(ValueError):
    """The text could not be understood. The message is written for the person who typed it."""


class Word(NamedTuple):
    """A word of the command. `quoted`: it begins with a quoted part, so it is text, never an option."""

    text: str
    quoted: bool = False


def tokenise(text: str) -> list[Word]:
    """Undo Slack's escaping and clients' typographic replacements, and split the text into words.

    Words are separated by whitespace, but a part in double quotes (`"..."`, or curly `“...”`) belongs
    to its word whatever it holds, without the quotes: `--reason "prod is down"` is two words and
    `--reason="a b"` one. Single quotes and apostrophes (`it's`) are ordinary characters. A leading
    dash of an unquoted word (em dash, en dash, minus) becomes `--`. An unclosed quote is a UsageError.
    """
    text = html.unescape(text).replace("\u00a0", " ")
    words: list[Word] = []
    chars: list[str] = []
    in_word = False  # `""` is a word too, an empty one
    starts_quoted = False
    closing = ""  # inside quotes: the characters that close them
    opened_at = 0
    for i, char in enumerate(text):
        if closing:
            if char in closing:
                closing = ""
            else:
                chars.append(char)
        elif char == _STRAIGHT_QUOTE or char in _CURLY_QUOTES:
            if not in_word:
                in_word, starts_quoted = True, True
            closing = _STRAIGHT_QUOTE if char == _STRAIGHT_QUOTE else _CURLY_QUOTES
            opened_at = i
        elif char.isspace():
            if in_word:
                words.append(_word("".join(chars), starts_quoted))
                chars, in_word = [], False
        else:
            if not in_word:
                in_word, starts_quoted = True, False
            chars.append(char)
    if closing:
        raise UsageError(
            f"Close the quote at `{_clip(text[opened_at:].rstrip(), 24)}`: a text in quotes needs a "
            'quote at each end, for example `/release lock hexo "database migration"`.'
        )
    if in_word:
        words.append(_word("".join(chars), starts_quoted))
    return words


def _word(text: str, quoted: bool) -> Word:
    if not quoted:
        for dash in _DASHES:
            if text.startswith(dash):
                return Word("--" + text[len(dash) :])
    return Word(text, quoted)


def _clip(text: str, limit: int) -> str:
    """`text` for an error message: a long word would drown what the message says."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_option(word: Word) -> bool:
    return not word.quoted and word.text.startswith("-") and len(word.text) > 1


def classify_version(version: str) -> VersionKind:
    """Tell a bare tag from a digest or a full image reference, or raise UsageError."""
    if TAG_RE.fullmatch(version):
        return VersionKind.TAG
    if DIGEST_RE.fullmatch(version):
        return VersionKind.DIGEST
    if ("/" in version or "@" in version) and IMAGE_RE.fullmatch(version):
        return VersionKind.IMAGE
    raise UsageError(
        f"`{version}` is not a valid version. A version is an image tag: up to 128 letters, digits, "
        "`_`, `.` and `-`, not starting with `.` or `-` (for example `v2.0`)."
    )


def parse(text: str, apps: Collection[str] | None = None) -> Intent:
    """Parse command text (as Slack sends it) into an intent.

    `apps`, when given, is the set of known app names: an unknown one is refused with a suggestion.
    """
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is too long ({len(text)} characters). Type `/release help`.")
    words = tokenise(text)
    flags: dict[str, str | None] = {}
    args: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not _is_option(word):
            args.append(word.text)
            i += 1
            continue
        if word.text in ("-h", "--help"):
            return Help()
        name, eq, value = word.text.partition("=")
        if name in VALUE_FLAGS:
            if not eq:
                reason_flag = name in _REASON_EXAMPLES
                if i + 1 >= len(words) or (reason_flag and _is_option(words[i + 1])):
                    raise UsageError(_needs_value(name))
                i += 1
                value = words[i].text
            if name in _REASON_EXAMPLES:
                value = " ".join(value.split())
                if not value:
                    raise UsageError(_needs_value(name))
            flags[name] = value
        elif name in SWITCHES and not eq:
            flags[name] = None
        else:
            shown = _clip(word.text, 40)
            close = difflib.get_close_matches(name, KNOWN_FLAGS, n=1, cutoff=0.65)
            if close and close[0] != name:  # a misspelling (a known flag with a value is not)
                raise UsageError(f"Unknown option `{shown}`. Did you mean `{close[0]}`?")
            raise UsageError(
                f"Unknown option `{shown}`. Options: `--rolling`, `--canary`, `--bluegreen`, "
                '`--dry-run`, `--queue`, `--break-glass "reason"` (releases), `--reason "why"` (releases and '
                "promote, during a freeze), `--to-revision N` (rollback), `--revision N` (history), "
                "`--env E` (an app's environment), `--from E --to F` (promote between environments). "
                "Type `/release help` for more."
            )
        i += 1
    return _build(args, flags, apps)


def _needs_value(flag: str) -> str:
    if flag in _REASON_EXAMPLES:
        return f'`{flag}` needs a reason, for example `{flag} "{_REASON_EXAMPLES[flag]}"`.'
    what, example = (
        ("an environment", "prod") if flag in ("--env", "--from", "--to") else ("a revision number", "3")
    )
    return f"`{flag}` needs {what}, for example `{flag} {example}`."


def _build(args: list[str], flags: dict[str, str | None], apps: Collection[str] | None) -> Intent:
    strategies = [f for f in flags if f in STRATEGY_FLAGS]
    env = flags.pop("--env", None)
    if not args:
        if flags:
            raise UsageError("Which app? Type `/release <app> <version>`, for example `/release hexo v2.0`.")
        return Help()
    verb, rest = args[0].lower(), args[1:]
    if verb in ("help", "apps"):
        _no_flags(verb, flags, ())
        _no_extra(verb, rest, 0)
        return Help() if verb == "help" else Apps()
    if verb == "diff":
        return _diff(rest, flags, apps, env)
    if verb == "promote" and ("--from" in flags or "--to" in flags):
        return _promotion(rest, flags, apps, env, strategies)
    for flag in ("--from", "--to"):
        if flag in flags:
            raise UsageError(f"`{flag}` belongs to `/release promote <app> --from <env> --to <env>`.")
    if verb in _APP_VERBS or verb in _TEXT_VERBS or verb in ("history", "rollback"):
        _no_flags(verb, flags, _VERB_FLAGS.get(verb, ()))
        if not rest:
            raise UsageError(
                f"`/release {verb}` needs an app. Type `/release {verb} <app>{_TEXT_VERBS.get(verb, '')}`."
            )
        if verb not in _TEXT_VERBS:
            _no_extra(verb, rest, 1, flags)
        app = _app(rest[0], apps, env)
        reason = " ".join(" ".join(rest[1:]).split())
        if verb == "history":
            return History(app=app, revision=_revision(flags.get("--revision"), "--revision"))
        if verb == "rollback":
            return Rollback(app=app, to_revision=_revision(flags.get("--to-revision"), "--to-revision"))
        if verb == "promote":
            return Promote(app=app, reason=flags.get("--reason"))
        if verb == "deny":
            return Deny(app=app, reason=reason)
        if verb == "lock":
            if not reason:
                raise UsageError(
                    f"`/release lock {app}` needs a reason, for example "
                    f'`/release lock {app} "database migration"`.'
                )
            return Lock(app=app, reason=reason)
        return _APP_VERBS[verb](app=app)
    # `/release <app> <version> [options]`
    if apps is not None and verb not in apps:
        meant = difflib.get_close_matches(verb, VERBS, n=1, cutoff=0.75)
        if meant and (not rest or _names_an_app(rest[0], apps, env)):
            typed_flags = {**flags, **({"--env": env} if env is not None else {})}
            options = [f"{f} {_quoted(v)}" if v is not None else f for f, v in typed_flags.items()]
            typed = " ".join([meant[0], *map(_quoted, rest), *options])
            raise UsageError(f"Unknown app `{args[0]}`. Did you mean `/release {typed}`?")
    if "--to-revision" in flags or "--revision" in flags:
        name = "--to-revision" if "--to-revision" in flags else "--revision"
        raise UsageError(
            f"`{name}` belongs to `/release {'rollback' if name == '--to-revision' else 'history'} <app>`."
        )
    if len(strategies) > 1:
        given = " and ".join(f"`{s}`" for s in strategies)
        raise UsageError(f"Choose one strategy: {given} were both given.")
    app = _app(args[0], apps, env)
    if len(rest) == 0:
        raise UsageError(
            f"`/release {app}` needs a version. Type `/release {app} <version>`, "
            f"for example `/release {app} v2.0`."
        )
    _no_extra(app, rest, 1, flags)
    version = rest[0]
    kind = classify_version(version)
    strategy = STRATEGY_FLAGS[strategies[0]] if strategies else None
    return Release(
        app=app,
        version=version,
        version_kind=kind,
        strategy=strategy,
        queue="--queue" in flags,
        break_glass=flags.get("--break-glass"),
        reason=flags.get("--reason"),
        dry_run="--dry-run" in flags,
    )


def _diff(
    rest: list[str], flags: dict[str, str | None], apps: Collection[str] | None, env: str | None
) -> Diff:
    """`diff <app> <env> <env>`, or `diff <app> <app>` (two full app names)."""
    _no_flags("diff", flags, ())
    example = "for example `/release diff hexo staging prod`"
    if env is not None:
        raise UsageError(f"`/release diff` names both environments itself, {example}.")
    if len(rest) == 3:
        return Diff(app=_app(rest[0], apps, rest[1]), other=_app(rest[0], apps, rest[2]))
    if len(rest) == 2:
        return Diff(app=_app(rest[0], apps), other=_app(rest[1], apps))
    raise UsageError(f"`/release diff` needs an app and two of its environments, {example}.")


def _promotion(
    rest: list[str],
    flags: dict[str, str | None],
    apps: Collection[str] | None,
    env: str | None,
    strategies: list[str],
) -> Promotion:
    """`promote <app> --from <env> --to <env> [--rolling|--canary|--bluegreen] [--reason "why"]`."""
    example = "for example `/release promote hexo --from staging --to prod`"
    source, target = flags.pop("--from", None), flags.pop("--to", None)
    _no_flags("promote", {f: v for f, v in flags.items() if f not in STRATEGY_FLAGS}, ("--reason",))
    if source is None or target is None or env is not None:
        raise UsageError(f"A promotion names both environments with `--from` and `--to`, {example}.")
    if not rest:
        raise UsageError(f"Which app? {example[0].upper()}{example[1:]}.")
    _no_extra("promote", rest, 1, flags)
    if len(strategies) > 1:
        raise UsageError(
            "Choose one strategy: " + " and ".join(f"`{s}`" for s in strategies) + " were both given."
        )
    from_app, to_app = _app(rest[0], apps, source), _app(rest[0], apps, target)
    if from_app == to_app:
        raise UsageError(f"`--from` and `--to` are the same environment, {example}.")
    return Promotion(
        app=to_app,
        source=from_app,
        strategy=STRATEGY_FLAGS[strategies[0]] if strategies else None,
        reason=flags.get("--reason"),
    )


def _quoted(word: str) -> str:
    """`word` as it is typed: in quotes if it is empty or holds whitespace."""
    return word if word and word == "".join(word.split()) else f'"{word}"'


def _names_an_app(name: str, apps: Collection[str], env: str | None) -> bool:
    """Whether `name` (with `--env`, or in some environment) is one of `apps`."""
    if env is not None:
        return f"{name}-{env}" in apps
    return name in apps or any(a.startswith(f"{name}-") for a in apps)


# Every verb of the language and every option, for "did you mean" answers.
VERBS = ("help", "apps", "history", "rollback", "diff", *_APP_VERBS, *_TEXT_VERBS)
KNOWN_FLAGS = ("--help", *VALUE_FLAGS, *SWITCHES)


def _app(name: str, apps: Collection[str] | None, env: str | None = None) -> str:
    """The catalog's name for `name` (in environment `env`: `<name>-<env>`), or a UsageError."""
    if not APP_RE.fullmatch(name):
        raise UsageError(
            f"`{name}` is not an app name. Type `/release apps` to see the apps you can release."
        )
    if env is not None:
        if not APP_RE.fullmatch(env):
            raise UsageError(f"`{env}` is not an environment name (for example `--env prod`).")
        name = f"{name}-{env}"
    if apps is not None and name not in apps:
        envs = sorted(a.removeprefix(f"{name}-") for a in apps if a.startswith(f"{name}-"))
        if envs and env is None:
            options = ", ".join(f"`--env {e}`" for e in envs)
            raise UsageError(f"`{name}` has several environments: add one of {options}.")
        close = difflib.get_close_matches(name, sorted(apps), n=1, cutoff=0.6)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(f"Unknown app `{name}`.{hint} Type `/release apps` to see the apps you can release.")
    return name


def _revision(value: str | None, flag: str) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) < 1:
        raise UsageError(f"`{flag}` needs a revision number (1 or more), not `{value}`.")
    return int(value)


def _no_flags(verb: str, flags: dict[str, str | None], allowed: tuple[str, ...]) -> None:
    for flag in flags:
        if flag not in allowed:
            if flag == "--reason" and verb in _TEXT_VERBS:  # the reason is the words after the app
                raise UsageError(
                    f"`--reason` does not apply to `/release {verb}`: put the reason after the app, "
                    f'for example `/release {verb} <app> "{_TEXT_EXAMPLES[verb]}"`.'
                )
            raise UsageError(f"`{flag}` does not apply to `/release {verb}`. Type `/release help`.")


def _no_extra(verb: str, rest: list[str], expected: int, flags: Collection[str] = ()) -> None:
    if len(rest) > expected:
        extra = _clip(rest[expected], 40)
        given = [f for f in _REASON_EXAMPLES if f in flags]
        if given:  # most likely a reason of several words, not in quotes
            raise UsageError(
                f"Unexpected `{extra}` after `/release {verb}`. Put a reason of several words in "
                f'quotes, for example `{given[0]} "{_REASON_EXAMPLES[given[0]]}"`.'
            )
        raise UsageError(f"Unexpected `{extra}` after `/release {verb}`. Type `/release help`.")
