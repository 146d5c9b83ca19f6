"""The simulator's modules import one another without a circle: the player and Socket Mode get what
they need handed to them (sandbox/slack/types.py), and never import the server."""

from __future__ import annotations

import itertools

import grimp


def test_no_import_circle_in_the_simulator() -> None:
    graph = grimp.build_graph("sandbox", include_external_packages=False)
    modules = sorted(m for m in graph.modules if m.startswith("sandbox.slack."))
    circles = [
        (a, b)
        for a, b in itertools.combinations(modules, 2)
        if graph.chain_exists(importer=a, imported=b) and graph.chain_exists(importer=b, imported=a)
    ]
    assert circles == []
    for module in ("sandbox.slack.client", "sandbox.slack.socket_mode", "sandbox.slack.types"):
        assert not graph.chain_exists(importer=module, imported="sandbox.slack.server"), module
    assert not graph.chain_exists(importer="sandbox.slack.socket_mode", imported="sandbox.slack.client")
