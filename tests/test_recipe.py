"""Recipe files: validation with field and line, defaults, templates, unique names."""

from __future__ import annotations

import textwrap

import pytest

from modelfab.errors import InputError
from modelfab.factory.recipe import load_recipe

BASE = """
name: t
data:
  - {name: pkgs, path: data/pkgs.jsonl}
defaults:
  dataset: pkgs
  text_fields: [summary]
  split: {kind: group, group_field: source}
  filters: {min_class_count: 5}
  build: {families: [hashed-ngram], compress: false}
scenarios:
  - name: sections
    label_field: section
    filters: {max_per_class: 40}
    build: {max_latency_ms: 1.5}
templates:
  - kind: facets
    facets: [interface, use]
    name: "pkg-{facet}"
    labels_per_class: 8
  - kind: one-vs-rest
    field: section
    classes: [games, admin]
"""


def write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_scenarios_and_templates_expand_over_the_defaults(tmp_path):
    loaded = load_recipe(write(tmp_path, BASE))
    by = {p.spec.name: p for p in loaded.scenarios}
    assert list(by) == ["sections", "pkg-interface", "pkg-use", "games-vs-rest", "admin-vs-rest"]
    sections = by["sections"]
    # Nested defaults merge key by key: the scenario's filters keep min_class_count.
    assert sections.spec.filters.min_class_count == 5
    assert sections.spec.filters.max_per_class == 40
    assert sections.options.families == ["hashed-ngram"] and not sections.options.compress
    assert sections.options.max_latency_ms == 1.5
    assert by["pkg-use"].spec.derived_label.facet == "use"
    assert by["pkg-use"].spec.labels_per_class == 8
    assert by["pkg-interface"].origin == "templates[0] facet=interface"
    games = by["games-vs-rest"].spec.derived_label
    assert (games.kind, games.field, games.positive) == ("one-vs-rest", "section", "games")
    assert by["admin-vs-rest"].options.max_latency_ms is None  # the scenario's own, not shared
    assert loaded.data_path(loaded.recipe.data[0]) == (tmp_path / "data" / "pkgs.jsonl")


@pytest.mark.parametrize(
    "old, new, match",
    [
        # A bad value inside a scenario: field path and the line it is on.
        (
            "filters: {max_per_class: 40}",
            "filters: {max_per_class: 0}",
            r"scenarios\[0\]\.filters\.max_per_class \(line 14\): .*greater than or equal to 1",
        ),
        # A typo in a build option is refused, not ignored.
        (
            "build: {max_latency_ms: 1.5}",
            "build: {max_latency: 1.5}",
            r"scenarios\[0\]\.build\.max_latency \(line 15\): Extra inputs",
        ),
        # A template with an unknown kind.
        (
            "kind: one-vs-rest",
            "kind: one-vs-all",
            r"templates\[1\] \(line 21\): Input tag 'one-vs-all'.*'facets', 'one-vs-rest'",
        ),
        # A missing required recipe field.
        ("name: t\n", "", r"recipe.yaml: name \(line 2\): Field required"),
        # Two scenarios with one name.
        ('name: "pkg-{facet}"', 'name: "sections"', r"'sections' comes from both scenarios\[0\]"),
        # A name pattern with an unknown placeholder.
        ('name: "pkg-{facet}"', 'name: "pkg-{face}"', r"templates\[0\]\.name \(line 19\): bad"),
    ],
)
def test_errors_name_the_field_and_the_line(tmp_path, old, new, match):
    assert old in BASE
    with pytest.raises(InputError, match=match):
        load_recipe(write(tmp_path, BASE.replace(old, new, 1)))


def test_unreadable_or_empty_recipes_are_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match=r"not valid YAML \(line 4\)"):
        load_recipe(write(tmp_path, "name: t\nscenarios:\n  - [unclosed\n"))
    with pytest.raises(InputError, match="no scenarios and no templates"):
        load_recipe(write(tmp_path, "name: t\n"))
    with pytest.raises(InputError, match="a recipe is a mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))


def test_recipe_check_lists_the_scenarios_or_exits_2_with_the_error(tmp_path, capsys):
    from modelfab.cli import main

    assert main(["recipe", "check", str(write(tmp_path, BASE))]) == 0
    shown = capsys.readouterr().out
    assert "t: 5 scenarios" in shown and "games-vs-rest" in shown and "facet use" in shown
    bad = write(tmp_path, BASE.replace("max_per_class: 40", "max_per_class: 0"))
    assert main(["recipe", "check", str(bad)]) == 2
    assert "scenarios[0].filters.max_per_class (line 14)" in capsys.readouterr().err
