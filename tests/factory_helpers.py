"""A tiny recipe for factory tests: three scenarios over the tiny JSONL, fast bag students."""

from __future__ import annotations

from pathlib import Path

from pipeline_helpers import write_dataset

RECIPE = """\
name: tiny-factory
data:
  - {{name: tiny, path: tiny.jsonl}}
defaults:
  dataset: tiny
  text_fields: [text]
  split: {{kind: group, group_field: src}}
  unlabeled_pool: 10
  build:
    teacher: "{teacher}"
    precision: fp32
    max_length: 32
    adapt: [logreg]
    families: [hashed-ngram]
    compress: false
    bench: false
    min_steps: 0
    bag_epochs: 2
scenarios:
  - {{name: tiny-all, label_field: label}}
templates:
  - kind: one-vs-rest
    field: label
    classes: {classes}
    name: "tiny-{{positive}}"
"""


def write_recipe(folder: Path, teacher: Path, classes: tuple[str, ...] = ("games", "science")):
    """tiny.jsonl and recipe.yaml in `folder`; returns the recipe path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_dataset(folder / "tiny.jsonl")
    path = folder / "recipe.yaml"
    path.write_text(RECIPE.format(teacher=teacher, classes=list(classes)), encoding="utf-8")
    return path


def models_and_metrics(registry) -> dict[str, tuple[str, dict]]:
    """{model id: (name, {split: metrics})} for every model, benchmark figures left out
    (latency is measured, not computed, so it differs between runs)."""
    out = {}
    for m in registry.list_models():
        metrics = registry.metrics(m.id)
        out[m.id] = (m.name, {k: v for k, v in metrics.items() if k in ("val", "test")})
    return out
