"""`release-bot slack-sim`: run the Slack simulator and its channel page standalone.

Owns the command-line face of the simulator: start it on a loopback port, print where everything
is (page, API, credentials the bot must be configured with), optionally write them to a JSON file
for scripts, and stop cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from sandbox.slack.server import SlackSimulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--bot-url",
        default=None,
        help="where to send slash commands and clicks, e.g. http://127.0.0.1:3000/slack/events",
    )
    parser.add_argument("--json-file", type=Path, default=None, help="write URLs, credentials and ids here")
    parser.add_argument("--user", action="append", dest="users", metavar="NAME", help="a person (repeatable)")
    parser.add_argument(
        "--channel", action="append", dest="channels", metavar="NAME", help="a channel (repeatable)"
    )
    parser.add_argument("--signing-secret", default=None, help="fixed signing secret (default: random)")
    parser.add_argument("--bot-token", default=None, help="fixed bot token (default: random xoxb-...)")
    parser.add_argument("--no-rate-limits", action="store_true", help="never answer 429")


def describe(sim: SlackSimulator) -> dict[str, object]:
    """What a bot or a script needs to talk to `sim` (the --json-file content)."""
    return {
        "api_url": sim.api_url,
        "page_url": sim.page_url,
        "bot_token": sim.bot_token,
        "signing_secret": sim.signing_secret,
        "channels": dict(sim.channels),
        "users": dict(sim.users),
    }


async def serve(args: argparse.Namespace) -> None:
    sim = SlackSimulator(
        users=args.users or ("alice", "bob", "mallory"),
        channels=args.channels or ("releases",),
        bot_url=args.bot_url,
        rate_limits=not args.no_rate_limits,
        signing_secret=args.signing_secret,
        bot_token=args.bot_token,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.port)
    try:
        info = describe(sim)
        if args.json_file is not None:
            tmp = args.json_file.with_name(args.json_file.name + ".tmp")
            tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, args.json_file)
        print(f"Slack simulator page: {sim.page_url}")
        print(f"Web API base URL:     {sim.api_url}")
        print(f"Bot token:            {sim.bot_token}")
        print(f"Signing secret:       {sim.signing_secret}")
        print(f"Bot URL:              {sim.bot_url or '(none: pass --bot-url)'}")
        print("Ctrl-C to stop.", flush=True)
        await stop.wait()
    finally:
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.slack.cli`: the same as `release-bot slack-sim`, without the bot's CLI."""
    parser = argparse.ArgumentParser(
        prog="slack-sim", description=__doc__.splitlines()[0] if __doc__ else None
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
