"""`release-bot ctl`: the terminal front end (`bot/ctl/`), wired here with the Slack reporter for
`--slack-channel`, so the two front ends stay independent of each other."""

from __future__ import annotations

import argparse
import contextlib
import os

import aiohttp

from bot.ctl import cli
from bot.errors import ConfigError
from bot.releases.ports import Reporter
from bot.slack.app import web_client
from bot.slack.reporter import SlackReporter

add_arguments = cli.add_arguments


async def slack_reporter(stack: contextlib.AsyncExitStack) -> Reporter:
    token = os.environ.get("SLACK_BOT_TOKEN", "")
    if not token:
        raise ConfigError("set SLACK_BOT_TOKEN to post the card with --slack-channel")
    session = await stack.enter_async_context(aiohttp.ClientSession())
    reporter = SlackReporter(web_client(token, session, os.environ.get("SLACK_API_URL")), 1.0)
    stack.push_async_callback(reporter.close)
    return reporter


def run(args: argparse.Namespace) -> int:
    return cli.run(args, slack_reporter)
