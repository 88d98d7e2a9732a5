"""Recipe files: many scenarios, one YAML file, validated with every error naming field and line.

```yaml
name: debian-factory
data:                                  # datasets to import first (paths relative to this file)
  - {name: debian, path: ../shared/data/debian-packages.jsonl.gz}
defaults:                              # merged under every scenario (scenario keys win)
  dataset: debian
  text_fields: [summary, description]
  split: {kind: group, group_field: source}
  unlabeled_pool: 3000
  build: {families: [hashed-ngram, static-embedding], compress: false}
scenarios:
  - name: sections
    label_field: section
    filters: {min_class_count: 150, max_per_class: 400}
templates:
  - kind: facets                       # one scenario per debtags facet
    facets: [interface, use]
    name: "debian-{facet}"
    filters: {min_class_count: 80}
  - kind: one-vs-rest                  # one binary scenario per class of a field
    field: section
    classes: [games, admin]
    name: "{positive}-vs-rest"
    labels_per_class: 8
```

A scenario is a `ScenarioSpec` (see data/scenario.py) plus `build:` (see factory/options.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelfab.data.scenario import ScenarioSpec
from modelfab.errors import InputError
from modelfab.factory.options import BuildOptions

M = TypeVar("M", bound=BaseModel)


class DataSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    path: str = Field(min_length=1)


class FacetTemplate(BaseModel):
    """One scenario per facet; the other keys are scenario fields shared by all of them."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["facets"]
    facets: list[str] = Field(min_length=1)
    field: str = "tags"
    name: str = "{facet}"


class OneVsRestTemplate(BaseModel):
    """One binary scenario per listed class of `field`: that class against the rest."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["one-vs-rest"]
    field: str
    classes: list[str] = Field(min_length=1)
    name: str = "{positive}-vs-rest"


Template = Annotated[FacetTemplate | OneVsRestTemplate, Field(discriminator="kind")]


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    data: list[DataSource] = Field(default_factory=list)
    defaults: dict[str, Any] = Field(default_factory=dict)
    scenarios: list[dict[str, Any]] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)


@dataclass
class PlannedScenario:
    """One scenario of a recipe: its spec, its build options, and where it came from."""

    spec: ScenarioSpec
    options: BuildOptions
    origin: str  # e.g. "scenarios[2]" or "templates[0] facet use"


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path
    scenarios: list[PlannedScenario]

    def data_path(self, source: DataSource) -> Path:
        """A data source's path, relative paths taken from the recipe's folder."""
        path = Path(source.path).expanduser()
        return path if path.is_absolute() else (self.path.parent / path).resolve()


def _line(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest node of `loc` that exists in the YAML tree."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _clean(loc: tuple, data: Any) -> tuple:
    """`loc` without the union tags pydantic inserts (a model's name, a discriminator value):
    a key that is not in the data is dropped unless it is the last one (a missing field)."""
    out: list = []
    for k, key in enumerate(loc):
        last = k == len(loc) - 1
        if isinstance(data, dict):
            if key in data:
                data = data[key]
            elif not last:
                continue
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        elif not last:
            continue
        out.append(key)
    return tuple(out)


def _where(loc: tuple) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "recipe"


def _error(path: Path, root: yaml.Node | None, loc: tuple, msg: str) -> InputError:
    line = _line(root, loc)
    at = f" (line {line})" if line else ""
    return InputError(f"{path}: {_where(loc)}{at}: {msg}")


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _validated(model: type[M], data: Any, path: Path, root, loc: tuple = (), origin: str = "") -> M:
    """`model.model_validate(data)`; its first problem as one InputError naming the field path
    (under `loc`), its YAML line and, for an expanded scenario, where it came from."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = loc + _clean(tuple(first["loc"]), data)
        msg = f"{first['msg']} ({origin})" if origin else first["msg"]
        raise _error(path, root, where, msg) from None


def _plan(values: dict, loc: tuple, origin: str, path: Path, root) -> PlannedScenario:
    values = dict(values)
    build = values.pop("build", None) or {}
    spec = _validated(ScenarioSpec, values, path, root, loc, origin)
    options = _validated(BuildOptions, build, path, root, (*loc, "build"), origin)
    return PlannedScenario(spec, options, origin)


def _expand(recipe: Recipe, path: Path, root) -> list[PlannedScenario]:
    planned: list[PlannedScenario] = []
    for i, entry in enumerate(recipe.scenarios):
        values = _merge(recipe.defaults, entry)
        planned.append(_plan(values, ("scenarios", i), f"scenarios[{i}]", path, root))
    for i, template in enumerate(recipe.templates):
        shared = dict(template.model_extra or {})
        loc = ("templates", i)
        if isinstance(template, FacetTemplate):
            items = [
                ({"facet": f}, {"derived_label": {"field": template.field, "facet": f}})
                for f in template.facets
            ]
        else:
            items = [
                (
                    {"positive": c, "field": template.field},
                    {
                        "derived_label": {
                            "kind": "one-vs-rest",
                            "field": template.field,
                            "positive": c,
                        }
                    },
                )
                for c in template.classes
            ]
        for names, label in items:
            try:
                name = template.name.format(**names)
            except (KeyError, IndexError, ValueError) as exc:
                raise _error(path, root, (*loc, "name"), f"bad name pattern: {exc}") from None
            values = _merge(_merge(recipe.defaults, shared), {"name": name, **label})
            origin = f"templates[{i}] {' '.join(f'{k}={v}' for k, v in names.items())}"
            planned.append(_plan(values, loc, origin, path, root))
    seen: dict[str, str] = {}
    for p in planned:
        if p.spec.name in seen:
            raise InputError(
                f"{path}: scenario name {p.spec.name!r} comes from both {seen[p.spec.name]} "
                f"and {p.origin}; names must be unique"
            )
        seen[p.spec.name] = p.origin
    if not planned:
        raise InputError(f"{path}: the recipe has no scenarios and no templates")
    return planned


def load_recipe(path: Path | str) -> LoadedRecipe:
    """Read, validate and expand a recipe; any problem is one InputError naming field and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"{path}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a mapping with name, scenarios and/or templates")
    recipe = _validated(Recipe, data, path, root)
    return LoadedRecipe(recipe, path, _expand(recipe, path, root))
