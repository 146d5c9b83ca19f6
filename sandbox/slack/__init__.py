"""A faithful local Slack for tests and the sandbox.

`SlackSimulator` serves Slack's Web API (with Slack's encodings, errors, Block Kit limits and rate
limits), response_url endpoints and a live channel page on 127.0.0.1; `SlackPlayer` plays Slack
towards the bot (signed slash commands, button clicks and Events API deliveries). Modules:

- `server`: the simulator (HTTP, faults, rate limiting, read-back, the page's JSON and events)
- `workspace`: Slack's data model and method semantics (messages, threads, ephemerals, ...)
- `views`: modals and Home tabs (views.open, views.update, views.publish, submissions)
- `client`: the player (requests Slack sends to an app, signed: commands, clicks, modal actions and
  submissions, events such as app_home_opened)
- `blocks`, `ids`, `ratelimit`: pure rules (Block Kit limits, ts values, rate-limit buckets)
- `emoji`: Slack's emoji short names, for the page
- `socket_mode`: apps.connections.open and the Socket Mode envelopes, disconnects included
- `types`, `errors`: the value types and the error the others share (so none imports another's module
  for them), and `SlackSide`, the part of the simulator a player needs
- `cli`: `release-bot slack-sim`
"""

from sandbox.slack.client import CommandResponse, EventDelivery, SlackPlayer
from sandbox.slack.server import ApiCall, SlackSimulator

__all__ = ["ApiCall", "CommandResponse", "EventDelivery", "SlackPlayer", "SlackSimulator"]
