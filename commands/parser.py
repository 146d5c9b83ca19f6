"""Parse the text of `/release ...` into an intent, or a UsageError that says what to type.

Slack HTML-escapes `&`, `<` and `>` in command text and some clients turn `--` into a dash, so the
text is normalised first. The parser knows the catalog's app names only to suggest a correction.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Callable, Collection

from commands.intents import (
    Abort,
    Apps,
    Finish,
    Help,
    History,
    Intent,
    Pause,
    Promote,
    Release,
    Resume,
    Rollback,
    Status,
    Strategy,
    VersionKind,
)

USAGE = """\
`/release <app> <version> [--rolling|--canary|--bluegreen] [--env E]`  release a version
`/release promote <app>`  next canary step, or switch traffic to green
`/release rollback <app> [--to-revision N]`  go back to the previous (or a given) revision
`/release abort <app>`  stop the running release and put the old version back
`/release finish <app>`  blue-green: retire the old colour now
`/release pause <app>` / `/release resume <app>`  pause or resume the rollout
`/release status <app>`  what runs now
`/release history <app> [--revision N]`  the revisions, newest first
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
_APP_VERBS: dict[str, Callable[..., Intent]] = {
    "status": Status,
    "promote": Promote,
    "pause": Pause,
    "resume": Resume,
    "finish": Finish,
    "abort": Abort,
}
_DASHES = ("\u2014", "\u2013", "\u2212")  # em dash, en dash, minus: what `--` becomes in some clients


class UsageError(ValueError):
    """The text could not be understood. The message is written for the person who typed it."""


def normalise(text: str) -> str:
    """Undo Slack's escaping and clients' typographic replacements."""
    text = html.unescape(text).replace("\u00a0", " ")
    tokens = []
    for tok in text.split():
        for dash in _DASHES:
            if tok.startswith(dash):
                tok = "--" + tok[len(dash) :]
                break
        tokens.append(tok)
    return " ".join(tokens)


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
    words = normalise(text).split()
    flags: dict[str, str | None] = {}
    args: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-h", "--help"):
            return Help()
        if word.startswith("-") and len(word) > 1:
            name, eq, value = word.partition("=")
            if name in ("--to-revision", "--revision", "--env"):
                if not eq:
                    if i + 1 >= len(words):
                        what = "an environment" if name == "--env" else "a revision number"
                        example = "prod" if name == "--env" else "3"
                        raise UsageError(f"`{name}` needs {what}, for example `{name} {example}`.")
                    i += 1
                    value = words[i]
                flags[name] = value
            elif name in STRATEGY_FLAGS and not eq:
                flags[name] = None
            else:
                close = difflib.get_close_matches(name, KNOWN_FLAGS, n=1, cutoff=0.6)
                if close and close[0] != name:  # a misspelling (a known flag with a value is not)
                    raise UsageError(f"Unknown option `{word}`. Did you mean `{close[0]}`?")
                raise UsageError(
                    f"Unknown option `{word}`. Options: `--rolling`, `--canary`, `--bluegreen` "
                    "(releases), `--to-revision N` (rollback), `--revision N` (history), "
                    "`--env E` (an app's environment). "
                    "Type `/release help` for more."
                )
        else:
            args.append(word)
        i += 1
    return _build(args, flags, apps)


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
    if verb in _APP_VERBS or verb in ("history", "rollback"):
        allowed = {"history": ("--revision",), "rollback": ("--to-revision",)}.get(verb, ())
        _no_flags(verb, flags, allowed)
        if not rest:
            raise UsageError(f"`/release {verb}` needs an app. Type `/release {verb} <app>`.")
        _no_extra(verb, rest, 1)
        app = _app(rest[0], apps, env)
        if verb == "history":
            return History(app=app, revision=_revision(flags.get("--revision"), "--revision"))
        if verb == "rollback":
            return Rollback(app=app, to_revision=_revision(flags.get("--to-revision"), "--to-revision"))
        return _APP_VERBS[verb](app=app)
    # `/release <app> <version> [strategy]`
    if apps is not None and verb not in apps:
        meant = difflib.get_close_matches(verb, VERBS, n=1, cutoff=0.75)
        if meant and (not rest or rest[0] in apps):
            typed = " ".join([meant[0], *rest])
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
    _no_extra(app, rest, 1)
    version = rest[0]
    kind = classify_version(version)
    strategy = STRATEGY_FLAGS[strategies[0]] if strategies else None
    return Release(app=app, version=version, version_kind=kind, strategy=strategy)


# Every verb of the language and every option, for "did you mean" answers.
VERBS = ("help", "apps", "history", "rollback", *_APP_VERBS)
KNOWN_FLAGS = ("--help", "--to-revision", "--revision", "--env", *STRATEGY_FLAGS)


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
            raise UsageError(f"`{flag}` does not apply to `/release {verb}`. Type `/release help`.")


def _no_extra(verb: str, rest: list[str], expected: int) -> None:
    if len(rest) > expected:
        raise UsageError(f"Unexpected `{rest[expected]}` after `/release {verb}`. Type `/release help`.")
