"""The chart's README (helm/release-bot/README.md): its values table is what tests/chart_readme.py
generates from values.schema.json and values.yaml, so it cannot fall behind the chart."""

from __future__ import annotations

import json

import pytest
import yaml

from tests import chart_readme


def test_the_readme_values_table_is_current() -> None:
    current = chart_readme.README.read_text(encoding="utf-8")
    wanted = chart_readme.with_table(current, chart_readme.generated_table())
    assert current == wanted, (
        "helm/release-bot/README.md is not current: run `.venv/bin/python -m tests.chart_readme`"
    )
    assert chart_readme.main(["--check"]) == 0


def test_every_value_of_values_yaml_has_a_row() -> None:
    schema = json.loads((chart_readme.CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((chart_readme.CHART / "values.yaml").read_text(encoding="utf-8"))
    keys = {row.key for row in chart_readme.rows(schema, values)}

    def leaves(node: object, prefix: str = "") -> set[str]:
        if isinstance(node, dict) and node and prefix.rstrip(".") not in keys:
            return set().union(*(leaves(v, f"{prefix}{k}.") for k, v in node.items()))
        return {prefix.rstrip(".")}

    undocumented = {
        leaf
        for leaf in leaves(values)
        if leaf not in keys and not any(k.startswith(f"{leaf}.") for k in keys)
    }
    assert undocumented == set()


def test_a_changed_schema_makes_the_check_fail() -> None:
    schema = json.loads((chart_readme.CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((chart_readme.CHART / "values.yaml").read_text(encoding="utf-8"))
    schema["properties"]["replicaCount"]["description"] = "something else"
    current = chart_readme.README.read_text(encoding="utf-8")
    assert chart_readme.with_table(current, chart_readme.table(schema, values)) != current


def test_a_value_without_a_description_is_an_error() -> None:
    schema = {
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}, "description": "A"}}
    }
    with pytest.raises(chart_readme.ReadmeError, match=r"a\.b has no description"):
        chart_readme.rows(schema, {"a": {"b": ""}})


def test_the_table_shows_types_defaults_and_the_rules_checked_together() -> None:
    schema = {
        "properties": {
            "mode": {"type": "string", "enum": ["x", "y"], "description": "which | one"},
            "list": {"type": "array", "items": {"type": "string"}, "description": "L"},
        },
        "allOf": [{"description": "x needs y.", "if": {}, "then": {}}],
    }
    text = chart_readme.table(schema, {"mode": "x", "list": []})
    assert '| `mode` | string ("x", "y") | `"x"` | which \\| one |' in text
    assert "| `list` | array of string | `[]` | L |" in text
    assert text.endswith("- x needs y.")


def test_markers_are_required() -> None:
    with pytest.raises(chart_readme.ReadmeError, match="values-table:begin"):
        chart_readme.with_table("# no table here\n", "| a |")
