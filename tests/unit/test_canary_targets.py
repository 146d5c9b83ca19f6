"""Canary steps: how many pods run the new version at each pause."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.catalog import App
from bot.releases.canary import targets


def app(*steps: int | str) -> App:
    return App.model_validate(
        {
            "name": "hexo",
            "namespace": "devops",
            "deployment": "hexo",
            "container": "hexo",
            "image": "registry.sword.org/nginx",
            "strategies": ["rolling", "canary"],
            "canary": {"steps": list(steps)},
        }
    )


@pytest.mark.parametrize(("replicas", "expected"), [(6, [1, 6]), (2, [1, 2]), (1, [1])])
def test_default_is_one_pod_then_all(replicas: int, expected: list[int]) -> None:
    assert targets(app(), replicas) == expected


@pytest.mark.parametrize(
    ("steps", "replicas", "expected"),
    [
        ((1, "25%", "50%", "100%"), 6, [1, 2, 3, 6]),
        ((1, "25%", "50%", "100%"), 4, [1, 2, 4]),  # 25% of 4 is 1: deduplicated
        ((1, "25%", "50%"), 10, [1, 3, 5, 10]),  # percentages round up; ends at everything
        (("10%",), 6, [1, 6]),  # at least one pod
        ((1, 1, "10%", 2), 6, [1, 2, 6]),  # duplicates dropped
        ((3, 1, 5), 6, [3, 5, 6]),  # a step below the previous one is skipped
        ((10,), 6, [6]),  # clamped to the replicas
        ((2, 10), 6, [2, 6]),
        (("100%",), 6, [6]),
        ((1, "50%"), 1, [1]),
    ],
)
def test_steps(steps: tuple[int | str, ...], replicas: int, expected: list[int]) -> None:
    assert targets(app(*steps), replicas) == expected


STEP = st.one_of(
    st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=100).map(lambda p: f"{p}%")
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, max_size=8), replicas=st.integers(min_value=1, max_value=200))
def test_targets_increase_within_bounds_and_end_at_replicas(steps: list[int | str], replicas: int) -> None:
    out = targets(app(*steps), replicas)
    assert out[-1] == replicas
    assert all(1 <= n <= replicas for n in out)
    assert all(a < b for a, b in itertools.pairwise(out))
    # The first pause is the first step (clamped): the guide's "one canary pod" unless configured.
    first = steps[0] if steps else 1
    expected_first = first if isinstance(first, int) else -(-replicas * int(first[:-1]) // 100)
    assert out[0] == max(1, min(expected_first, replicas))


def test_zero_replicas_ends_at_zero() -> None:
    assert targets(app(), 0)[-1] == 0
