"""A typed scenario spec (which text, which label, which rows, which split) and its rows.

The spec is the unit of caching and reproducibility: `fingerprint()` hashes it, and
`materialize(spec, df)` is deterministic for a given spec and dataset version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelfab.data.splitting import group_stratified_assign
from modelfab.errors import InputError, validated

MAX_TEXT_CHARS = 2000  # a text's default length cap, in characters


class DerivedLabel(BaseModel):
    """The label is the one tag of a debtags facet: facet "interface" + "interface::x11" -> x11."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["facet"] = "facet"
    field: str = "tags"
    facet: str


class OneVsRestLabel(BaseModel):
    """The label is `positive` where the field's value is (or, for a tag list, contains)
    `positive`, else "rest": one binary scenario per class of a multi-class field."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["one-vs-rest"]
    field: str
    positive: str = Field(min_length=1)
    rest: str = "rest"

    @model_validator(mode="after")
    def _distinct(self) -> OneVsRestLabel:
        if self.positive == self.rest:
            raise ValueError(f"positive and rest must differ, both are {self.rest!r}")
        return self


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_class_count: int = Field(default=1, ge=1)
    max_per_class: int | None = Field(default=None, ge=1)
    include_classes: list[str] | None = None
    exclude_classes: list[str] = Field(default_factory=list)
    min_text_chars: int = Field(default=1, ge=0)


class SplitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["stratified", "group"] = "stratified"
    group_field: str | None = None
    test_frac: float = Field(default=0.2, gt=0, lt=1)
    val_frac: float = Field(default=0.1, gt=0, lt=1)  # model selection needs validation data

    @model_validator(mode="after")
    def _check(self) -> SplitSpec:
        if self.kind == "group" and not self.group_field:
            raise ValueError("split kind 'group' needs group_field")
        if self.test_frac + self.val_frac >= 1:
            raise ValueError("test_frac + val_frac must be below 1")
        return self


class ScenarioSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dataset: str
    text_fields: list[str] = Field(min_length=1)
    label_field: str | None = None
    derived_label: DerivedLabel | OneVsRestLabel | None = None
    filters: Filters = Field(default_factory=lambda: Filters())
    split: SplitSpec = Field(default_factory=lambda: SplitSpec())
    seed: int = 0
    labels_per_class: int | None = Field(default=None, ge=1)
    unlabeled_pool: int = Field(default=0, ge=0)
    # Where the pool comes from after the scenario's own unlabeled rows: "dataset" also takes
    # the dataset's other rows (other classes, unlabeled rows), "scenario" only its own.
    unlabeled_from: Literal["dataset", "scenario"] = "dataset"
    # Rows a person labeled through `modelfab labels queue/answers`: always in train (never
    # hidden by labels_per_class), outside the split draw, so the rest keeps its split.
    answered_rows: list[int] = Field(default_factory=list)
    max_text_chars: int = Field(default=MAX_TEXT_CHARS, ge=1)

    @model_validator(mode="after")
    def _one_label(self) -> ScenarioSpec:
        if (self.label_field is None) == (self.derived_label is None):
            raise ValueError("give exactly one of label_field and derived_label")
        return self

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the spec, defaults included."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict) -> ScenarioSpec:
        """Validate `data`, turning pydantic's multi-line report into one InputError line."""
        return validated(cls, data, "scenario spec")


@dataclasses.dataclass
class ScenarioData:
    """Splits with columns text, label, group, row_id; `unlabeled` has no label column."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    unlabeled: pd.DataFrame
    classes: list[str]
    max_text_chars: int = MAX_TEXT_CHARS


LABELED = ["text", "label", "group", "row_id"]
UNLABELED = ["text", "group", "row_id"]


def _check_fields(spec: ScenarioSpec, df: pd.DataFrame) -> None:
    needed = list(spec.text_fields)
    needed.append(spec.label_field or spec.derived_label.field)  # type: ignore[union-attr]
    if spec.split.kind == "group":
        needed.append(spec.split.group_field)  # type: ignore[arg-type]
    available = ", ".join(map(str, df.columns))
    for field in needed:
        if field not in df.columns:
            raise InputError(
                f"scenario {spec.name!r}: field {field!r} not in dataset {spec.dataset!r} "
                f"(available: {available})"
            )


def _facet_label(value: object, facet: str) -> str | None:
    """The single tag of `facet` in `value` without its prefix, or None (zero or several)."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple | np.ndarray):
        return None
    prefix = f"{facet}::"
    hits = [str(t).strip()[len(prefix) :] for t in value if str(t).strip().startswith(prefix)]
    return hits[0] if len(hits) == 1 else None


def _one_vs_rest(value: object, spec: OneVsRestLabel) -> str | None:
    """`spec.positive` where `value` is it (or a tag list holds it), `spec.rest` otherwise, and
    None where the field is empty (no label to compare)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, list | tuple | np.ndarray):
        tags = [str(t).strip() for t in value]
    else:
        text = str(value).strip()
        if not text:
            return None
        tags = [t.strip() for t in text.split(",")] if "," in text else [text]
    return spec.positive if spec.positive in tags else spec.rest


def _as_text(series: pd.Series) -> pd.Series:
    return series.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))


def texts_of(df: pd.DataFrame, fields: list[str], max_chars: int) -> list[str]:
    """Each row's text: its non-empty `fields`, stripped, one per line, cut at `max_chars`."""
    parts = [_as_text(df[f]).str.strip() for f in fields]
    return ["\n".join(p for p in row if p)[:max_chars] for row in zip(*parts, strict=True)]


def _rows(spec: ScenarioSpec, df: pd.DataFrame) -> pd.DataFrame:
    """text, label (None where underivable), group, row_id for every source row."""
    text = texts_of(df, spec.text_fields, spec.max_text_chars)
    derived = spec.derived_label
    if isinstance(derived, DerivedLabel):
        label = [_facet_label(v, derived.facet) for v in df[derived.field]]
    elif isinstance(derived, OneVsRestLabel):
        label = [_one_vs_rest(v, derived) for v in df[derived.field]]
    else:
        label = [s or None for s in _as_text(df[spec.label_field]).str.strip()]
    row_id = np.arange(len(df))
    if spec.split.group_field:
        raw = _as_text(df[spec.split.group_field]).str.strip()
        group = [g or f"row:{i}" for i, g in zip(row_id, raw, strict=True)]
    else:
        group = [str(i) for i in row_id]
    return pd.DataFrame({"text": text, "label": label, "group": group, "row_id": row_id})


def row_labels(spec: ScenarioSpec, df: pd.DataFrame) -> pd.Series:
    """Each dataset row's label under the spec (a label field or a derived facet); None where
    the row has none. Indexed by row_id."""
    return _rows(spec, df.reset_index(drop=True))["label"]


def _filter(spec: ScenarioSpec, rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows, rows dropped only by max_per_class: the first unlabeled candidates)."""
    f = spec.filters
    rows = rows[rows["label"].notna()]
    rows = rows[rows["text"].str.strip().str.len() >= f.min_text_chars]
    if f.include_classes is not None:
        rows = rows[rows["label"].isin(f.include_classes)]
    rows = rows[~rows["label"].isin(f.exclude_classes)]
    counts = rows["label"].value_counts()
    rows = rows[rows["label"].isin(counts[counts >= f.min_class_count].index)]
    if f.max_per_class is None:
        return rows, rows.iloc[:0]
    rng = np.random.default_rng(spec.seed)
    order = rows.iloc[rng.permutation(len(rows))]
    rank = order.groupby("label", sort=False).cumcount()
    kept = order[rank < f.max_per_class].sort_values("row_id")
    return kept, order[rank >= f.max_per_class]


def _few_shot(spec: ScenarioSpec, train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labels_per_class train rows per class, the rest of train, labels to be hidden)."""
    if spec.labels_per_class is None:
        return train, train.iloc[:0]
    rng = np.random.default_rng(spec.seed + 1)
    order = train.iloc[rng.permutation(len(train))]
    rank = order.groupby("label", sort=False).cumcount()
    return order[rank < spec.labels_per_class].sort_values("row_id"), order[
        rank >= spec.labels_per_class
    ]


def _unlabeled_pool(
    spec: ScenarioSpec, every: pd.DataFrame, rows: pd.DataFrame, own: pd.DataFrame
) -> pd.DataFrame:
    """Up to `spec.unlabeled_pool` rows for the teacher to label and the students to learn from.

    The scenario's own unlabeled rows (`own`: max_per_class overflow, hidden few-shot labels)
    come first; with `unlabeled_from="dataset"` the dataset's other rows follow in one seeded
    order over the whole dataset, so scenarios carved from one dataset share most of their pool
    and the teacher encodes each text once. Groups and texts of validation and test rows are
    never in the pool.
    """
    held_out = rows[rows["split"] != "train"]
    parts = [own]
    if spec.unlabeled_from == "dataset":
        rank = np.empty(len(every), dtype=np.int64)
        rank[np.random.default_rng(spec.seed).permutation(len(every))] = np.arange(len(every))
        taken = set(rows["row_id"]) | set(own["row_id"])
        rest = every[~every["row_id"].isin(taken)]
        rest = rest[rest["text"].str.strip().str.len() >= max(1, spec.filters.min_text_chars)]
        parts.append(rest.iloc[np.argsort(rank[rest["row_id"].to_numpy()], kind="stable")])
    pool = pd.concat(parts)
    pool = pool[~pool["group"].isin(set(held_out["group"])) & ~pool["text"].isin(held_out["text"])]
    return pool.drop_duplicates("text").head(spec.unlabeled_pool)


def class_indices(labels, classes: list[str]) -> np.ndarray:
    """(N,) int64 index of each label in `classes`."""
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[str(v)] for v in labels], dtype=np.int64)


def materialize(spec: ScenarioSpec, df: pd.DataFrame) -> ScenarioData:
    """Build the scenario's train/val/test/unlabeled frames from a dataset's rows."""
    _check_fields(spec, df)
    every = _rows(spec, df.reset_index(drop=True))
    is_answered = every["row_id"].isin(spec.answered_rows) & every["label"].notna()
    rows, overflow = _filter(spec, every[~is_answered])
    if len(rows) == 0:
        raise InputError(f"scenario {spec.name!r}: no rows left after label derivation/filters")
    counts = rows["label"].value_counts()
    if (counts < 2).any():
        rare = sorted(counts[counts < 2].index)
        raise InputError(
            f"scenario {spec.name!r}: class {rare[0]!r} has fewer than 2 examples "
            f"({len(rare)} such classes); raise filters.min_class_count to drop them"
        )
    fracs = {
        "train": 1 - spec.split.test_frac - spec.split.val_frac,
        "val": spec.split.val_frac,
        "test": spec.split.test_frac,
    }
    rows = rows.assign(
        split=group_stratified_assign(
            rows["label"].tolist(), rows["group"].tolist(), fracs, spec.seed
        )
    )
    train, moved = _few_shot(spec, rows[rows["split"] == "train"])
    answered = every[is_answered & every["label"].isin(rows["label"].unique())]
    train = pd.concat([train, answered.assign(split="train")]).sort_values("row_id")
    pool = _unlabeled_pool(
        spec, every, pd.concat([rows, answered.assign(split="train")]), pd.concat([overflow, moved])
    )

    def labeled(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[LABELED].reset_index(drop=True)

    return ScenarioData(
        train=labeled(train),
        val=labeled(rows[rows["split"] == "val"]),
        test=labeled(rows[rows["split"] == "test"]),
        unlabeled=pool[UNLABELED].reset_index(drop=True),
        classes=sorted(rows["label"].unique().tolist()),
        max_text_chars=spec.max_text_chars,
    )
