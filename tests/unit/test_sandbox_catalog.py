"""The sandbox's catalog, as `release-bot sandbox` writes it: `hexo` and its production copy
`hexo-prod`, gated by two approvals from @sre, a break-glass person and a freeze window ahead."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from bot import freeze
from bot.catalog import Action, App, Catalog
from bot.policy import decide
from commands.intents import Release
from commands.parser import parse
from sandbox import hexo
from sandbox.slack import SlackSimulator

NAMESPACE = "devops"  # the sandbox's hexo (sandbox/cli.py)


@pytest.fixture
def sim() -> SlackSimulator:
    """The simulator's default workspace (not started: only its people, groups and channels)."""
    return SlackSimulator()


def sandbox_catalog(sim: SlackSimulator, now: datetime | None = None) -> Catalog:
    """The catalog the sandbox writes, through YAML as the bot reads it."""
    data = hexo.sandbox_catalog(
        NAMESPACE, sim.users, sim.usergroups, channel=sim.channels["releases"], now=now
    )
    return Catalog.from_mapping(yaml.safe_load(yaml.safe_dump(data)))


def prod(sim: SlackSimulator, now: datetime | None = None) -> App:
    return sandbox_catalog(sim, now).apps[hexo.PROD_APP]


def test_the_default_workspace_has_carol_and_the_sre_group(sim: SlackSimulator) -> None:
    assert set(sim.users) == {"alice", "bob", "carol", "mallory"}
    assert set(sim.usergroups) == {"release-managers", "sre"}
    members = {handle: members for handle, members in sim.workspace.usergroups.values()}
    assert members == {
        "release-managers": [sim.users["alice"]],
        "sre": [sim.users["bob"], sim.users["carol"]],
    }


def test_the_catalog_has_hexo_and_hexo_prod_on_the_same_objects(sim: SlackSimulator) -> None:
    catalog = sandbox_catalog(sim)
    assert set(catalog.apps) == {"hexo", "hexo-prod"}
    assert catalog.namespaces() == {NAMESPACE, hexo.PROD_NAMESPACE} == {"devops", "prod"}
    dev, prod = catalog.apps["hexo"], catalog.apps["hexo-prod"]
    for field in ("deployment", "container", "image", "service", "strategies"):
        assert getattr(prod, field) == getattr(dev, field), field
    assert dev.approvals is None and dev.break_glass is None and dev.freeze == ()  # unchanged
    release = parse("hexo v2.0 --env prod", apps=catalog.apps)
    assert isinstance(release, Release) and release.app == "hexo-prod"


def test_hexo_prod_needs_two_approvals_from_sre(sim: SlackSimulator) -> None:
    approvals = prod(sim).approvals
    assert approvals is not None
    assert approvals.required == 2
    assert approvals.from_.usergroups == (sim.usergroups["sre"],)
    assert approvals.from_.users == ()
    assert (approvals.allow_self, approvals.expire_minutes, approvals.promote) == (False, 60, True)


def test_who_may_do_what_to_hexo_prod(sim: SlackSimulator) -> None:
    app, users, sre = prod(sim), sim.users, sim.usergroups["sre"]
    channel = sim.channels["releases"]

    def allowed(action: Action, name: str, groups: tuple[str, ...] = ()) -> bool:
        return decide(app, action, users[name], groups, channel).allowed

    assert [n for n in users if allowed(Action.RELEASE, n)] == ["alice"]
    assert [n for n in users if allowed(Action.PROMOTE, n)] == ["alice", "bob", "carol"]
    assert [n for n in users if allowed(Action.ROLLBACK, n)] == ["alice", "bob", "carol"]
    assert allowed(Action.APPROVE, "bob", (sre,)) and allowed(Action.APPROVE, "carol", (sre,))
    assert not allowed(Action.APPROVE, "alice", (sim.usergroups["release-managers"],))
    assert [n for n in users if allowed(Action.BREAK_GLASS, n)] == ["alice"]
    assert [n for n in users if allowed(Action.OVERRIDE, n)] == ["alice"]
    assert app.break_glass is not None and app.break_glass.announce_channel == channel


def test_the_freeze_window_is_not_active_and_begins_in_the_future(sim: SlackSimulator) -> None:
    now = datetime.now(UTC)
    windows = prod(sim).freeze
    assert [w.name for w in windows] == ["year-end"]
    assert freeze.active(windows, now) is None
    coming = freeze.upcoming(windows, now)
    assert coming is not None
    assert coming[1] > now
    assert windows[0].start is not None and windows[0].start.year == now.year + 1


@pytest.mark.parametrize(
    ("now", "year"),
    [
        (datetime(2030, 1, 1, 12, tzinfo=UTC), 2031),  # inside the window of the year before
        (datetime(2030, 12, 23, 23, 30, tzinfo=UTC), 2031),  # already 24 December in Paris
        (datetime(2030, 12, 31, 23, 30, tzinfo=UTC), 2032),  # already 2031 in Paris
    ],
)
def test_the_freeze_window_is_ahead_whatever_the_date(sim: SlackSimulator, now: datetime, year: int) -> None:
    windows = prod(sim, now).freeze
    assert freeze.active(windows, now) is None
    start = windows[0].next_start(now)
    assert start is not None and start > now
    assert (windows[0].start, windows[0].end) == (datetime(year, 12, 24), datetime(year + 1, 1, 2))
