"""The data loop over a scenario: suspect labels, the next examples to label, answers back in.

Each call encodes the scenario's texts with the teacher (cached: a text is encoded once per
teacher, whichever scenario asks) and fits the adapted teacher's head on the human labels, the
same way a build does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from modelfab import paths
from modelfab.adapt.base import AdaptData
from modelfab.adapt.select import adapt
from modelfab.data.scenario import ScenarioData, ScenarioSpec, class_indices, row_labels
from modelfab.data.versions import DatasetStore, DatasetVersion
from modelfab.errors import InputError
from modelfab.labels import active
from modelfab.labels.calibrate import Calibration
from modelfab.labels.quality import label_issues
from modelfab.pipeline.config import TeacherConfig
from modelfab.pipeline.teacher import load_teacher
from modelfab.registry import Registry
from modelfab.teachers.cache import FeatureCache


@dataclass
class ScenarioView:
    spec: ScenarioSpec
    data: ScenarioData
    classes: list[str]
    x: dict[str, np.ndarray]  # teacher features per split: train, val, test, pool
    y: dict[str, np.ndarray]  # class indices per labeled split


def view(
    name: str, registry: Registry | None = None, teacher: TeacherConfig | None = None
) -> ScenarioView:
    """The scenario's splits with cached teacher features."""
    from modelfab.pipeline.build import load_scenario

    home = paths.home()
    spec, data, _ = load_scenario(name, registry or Registry(), home)
    sample = data.train["text"].tolist()[:16]
    model, _ = load_teacher(teacher or TeacherConfig(), sample=sample, home=home)
    _, x, y = split_features(data, model, FeatureCache(home / "cache" / "features"), name)
    return ScenarioView(spec, data, data.classes, x, y)


def split_features(
    data: ScenarioData, teacher, cache: FeatureCache, label: str
) -> tuple[dict[str, list[str]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(texts, cached teacher features, class indices) per split; "pool" has no labels."""
    texts = {s: getattr(data, s)["text"].tolist() for s in ("train", "val", "test")}
    texts["pool"] = data.unlabeled["text"].tolist()
    x = {s: cache.encode(teacher, t, label=f"{label} {s}")[0] for s, t in texts.items()}
    y = {
        s: class_indices(getattr(data, s)["label"], data.classes) for s in ("train", "val", "test")
    }
    return texts, x, y


def _head(v: ScenarioView, seed: int):
    d = AdaptData(
        v.data.train["text"].tolist(),
        v.x["train"],
        v.y["train"],
        v.data.val["text"].tolist(),
        v.x["val"],
        v.y["val"],
        len(v.classes),
    )
    return adapt(d, seed=seed).best


def suspect_labels(
    name: str,
    seed: int = 0,
    registry: Registry | None = None,
    teacher: TeacherConfig | None = None,
) -> pd.DataFrame:
    """Every human train label ranked by cleanlab, worst first, with row_id and text."""
    v = view(name, registry, teacher)
    ranked = label_issues(v.x["train"], v.y["train"], v.classes, seed=seed)
    train = v.data.train.reset_index(drop=True)
    ranked.insert(1, "row_id", train["row_id"].to_numpy()[ranked["index"]])
    ranked.insert(2, "text", train["text"].to_numpy()[ranked["index"]])
    return ranked.drop(columns="index")


def labeling_queue(
    name: str,
    k: int,
    strategy: str = active.DEFAULT_STRATEGY,
    seed: int = 0,
    registry: Registry | None = None,
    teacher: TeacherConfig | None = None,
) -> pd.DataFrame:
    """The `k` unlabeled pool texts most worth labeling next, with the teacher's calibrated
    suggestion. Pool rows that already carry a label in the dataset are never queued."""
    v = view(name, registry, teacher)
    frame = DatasetStore(paths.home()).load(v.spec.dataset)
    pool = v.data.unlabeled
    unlabeled = row_labels(v.spec, frame).iloc[pool["row_id"].to_numpy()].isna().to_numpy()
    if not unlabeled.any():
        raise InputError(
            f"scenario {name!r} has no unlabeled row in its pool to pick from; raise "
            "unlabeled_pool or add unlabeled rows to the dataset"
        )
    head = _head(v, seed)
    train_classes = np.unique(v.y["train"])
    cal = Calibration.fit(head.logits(v.x["val"]), v.y["val"], train_classes=train_classes)
    rows = np.flatnonzero(unlabeled)
    probs = cal.probs(head.logits(v.x["pool"][rows]))
    picks = active.select(probs, v.x["pool"][rows], k, strategy, seed=seed)
    return active.queue_frame(
        pool["row_id"].to_numpy()[rows],
        [pool["text"].iloc[i] for i in rows],
        probs,
        v.classes,
        picks,
    )


def import_answers(
    name: str, answers_path: Path, registry: Registry | None = None
) -> tuple[DatasetVersion, int]:
    """Write answered labels into a new version of the scenario's dataset and point the
    scenario at it; returns (the new version, the number of answers)."""
    from modelfab.pipeline.api import create_scenario
    from modelfab.pipeline.build import load_scenario

    registry = registry or Registry()
    home = paths.home()
    spec, data, record = load_scenario(name, registry, home)
    if spec.label_field is None:
        raise InputError(
            f"scenario {name!r} derives its label from a facet; answers need a scenario with a "
            "label field to write into"
        )
    store = DatasetStore(home)
    answers = active.read_answers(answers_path, classes=data.classes)
    if answers.empty:
        raise InputError(f"answers file {answers_path} has no answered rows")
    base = store.get(record.dataset_id)
    frame = active.apply_answers(store.load(base.id), spec.label_field, answers)
    version = store.import_frame(frame, base.name, f"{base.source} + answers {answers_path}")
    answered = sorted(set(spec.answered_rows) | set(answers["row_id"].tolist()))
    update = {"dataset": version.id, "answered_rows": answered}
    create_scenario(spec.model_copy(update=update), registry, replace=True)
    return version, len(answers)
