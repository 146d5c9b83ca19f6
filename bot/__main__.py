"""The `release-bot` command line: serve, ctl, catalog, manifest, sandbox, cluster, slack-sim.

Each subcommand lives with the code it drives; this module only wires argparse to them and turns
errors meant for the user into a message and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
_SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bot.cli_serve", "run the bot against Slack (HTTP or Socket Mode) and Kubernetes"),
    "catalog": ("bot.cli_catalog", "check an app catalog file (and, with a kubeconfig, the cluster)"),
    "ctl": ("bot.cli_ctl", "release from a terminal or a CI job, with your kubeconfig's rights"),
    "sandbox": ("sandbox.cli", "run everything locally: control plane, Slack simulator and the bot"),
    "cluster": ("sandbox.controlplane.cli", "start, stop or inspect a local Kubernetes control plane"),
    "slack-sim": ("sandbox.slack.cli", "run the local Slack simulator and its channel page"),
    "manifest": ("bot.manifest", "print the Slack app manifest that creates this app"),
}


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser; only the chosen subcommand's module is imported (they pull in heavy libraries)."""
    parser = argparse.ArgumentParser(prog="release-bot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"release-bot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in _SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = import_module(module)
            mod.add_arguments(sp)
            runner: Callable[[argparse.Namespace], int] = mod.run
            sp.set_defaults(_run=runner)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("release-bot")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in _SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    from bot.errors import UserError

    try:
        code: int = args._run(args)
    except UserError as e:
        print(f"release-bot: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
