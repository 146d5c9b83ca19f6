"""Test-wide setup: real systems come from the plugins in tests/fixtures/."""

from __future__ import annotations

import os

# slack_sdk honours proxy variables but not NO_PROXY; every test talks to loopback only.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_var, None)

pytest_plugins = [
    "tests.fixtures.cluster",
    "tests.fixtures.slack",
    "tests.fixtures.bot",
    "tests.fixtures.prometheus",
]
