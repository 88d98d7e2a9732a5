"""Build one scenario end to end: features -> adapt -> distill -> export -> evaluate -> bench.

Each stage is metered (CPU s, wall s, peak RSS, teacher passes, cache hits). Artifacts are
staged and moved into place only when complete; registry rows are written last, in one
transaction per model, so a failed or killed build leaves no model row and no partial bundle.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.torch import save_file
from sklearn.metrics import accuracy_score, f1_score

from modelfab import paths
from modelfab.adapt.base import AdaptData
from modelfab.adapt.select import adapt
from modelfab.data.scenario import ScenarioData, ScenarioSpec, materialize
from modelfab.data.versions import DatasetStore
from modelfab.distill.base import DistillData
from modelfab.distill.transformer import SequenceClassifier, TransformerStudent
from modelfab.errors import InputError
from modelfab.pipeline.config import BuildConfig
from modelfab.pipeline.teacher import load_teacher
from modelfab.pipeline.workspace import Workspace, sweep_orphans
from modelfab.registry import CostRecord, Meter, Registry, ScenarioRecord
from modelfab.teachers.cache import FeatureCache


@dataclass
class BuildResult:
    scenario: str
    run_id: str
    records: list[dict] = field(default_factory=list)  # one per model variant (bench format)
    bundle: Path | None = None


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro")),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def _index(labels, classes: list[str]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[str(v)] for v in labels], dtype=np.int64)


def load_scenario(
    name: str, registry: Registry, home: Path
) -> tuple[ScenarioSpec, ScenarioData, ScenarioRecord]:
    record = registry.get_scenario(name)
    spec = ScenarioSpec.from_dict(record.spec)
    frame = DatasetStore(home).load(record.dataset_id)
    return spec, materialize(spec, frame), record


def _check_splits(name: str, data: ScenarioData) -> None:
    """Refuse scenarios a build cannot learn from, before any work is spent on them."""
    if data.train["label"].nunique() < 2:
        raise InputError(f"scenario {name!r}: the train split needs at least 2 classes")
    for split in ("val", "test"):
        if len(getattr(data, split)) == 0:
            raise InputError(
                f"scenario {name!r}: the {split} split is empty; use more data or a larger fraction"
            )


def _cost_summary(records: list[CostRecord]) -> dict:
    return {r.stage: r.to_dict() for r in records}


def build(
    name: str, config: BuildConfig | None = None, registry: Registry | None = None
) -> BuildResult:
    """Build teacher and student models for scenario `name`; return bench-format records."""
    config = config or BuildConfig()
    home, artifacts = paths.home(), paths.artifacts()
    registry = registry or Registry()
    spec, data, scenario = load_scenario(name, registry, home)
    _check_splits(name, data)
    sweep_orphans(artifacts, registry)
    run_id = registry.start_run(scenario.id, "build", config.to_dict())
    workspace = Workspace(artifacts, run_id)
    succeeded = False
    try:
        result = _build(scenario, spec, data, config, registry, run_id, workspace, home)
        registry.finish_run(run_id, "succeeded")
        succeeded = True
    except BaseException as exc:
        # Keep the original error even if the registry cannot be updated now.
        with contextlib.suppress(Exception):
            registry.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        workspace.finish(succeeded)
    return result


def _build(scenario, spec, data, config, registry, run_id, workspace, home) -> BuildResult:
    name = scenario.name
    classes = data.classes
    y = {
        split: _index(getattr(data, split)["label"], classes) for split in ("train", "val", "test")
    }
    texts = {split: getattr(data, split)["text"].tolist() for split in ("train", "val", "test")}
    pool = data.unlabeled["text"].tolist()

    with Meter("teacher-features") as m_feat:
        teacher, precision = load_teacher(config.teacher, sample=texts["train"][:16], home=home)
        if config.student.layers > teacher.n_layers:
            raise InputError(f"student layers must be in 1..{teacher.n_layers} for this teacher")
        cache = FeatureCache(home / "cache" / "features")
        all_texts = texts["train"] + texts["val"] + texts["test"] + pool
        feats, stats = cache.encode(teacher, all_texts, label=name)
        m_feat.add(teacher_forward_passes=stats.forward_passes, cache_hits=stats.hits)
    bounds = np.cumsum([0, len(texts["train"]), len(texts["val"]), len(texts["test"]), len(pool)])
    x = {
        s: feats[bounds[i] : bounds[i + 1]] for i, s in enumerate(("train", "val", "test", "pool"))
    }

    with Meter("adapt") as m_adapt:
        m_adapt.labeled_examples = len(texts["train"]) + len(texts["val"])
        adaptation = adapt(
            AdaptData(
                texts["train"],
                x["train"],
                y["train"],
                texts["val"],
                x["val"],
                y["val"],
                len(classes),
            ),
            strategies=config.adapt,
            seed=spec.seed,
            teacher=teacher,
        )
        head = adaptation.best
        encoder = getattr(head, "encoder_", teacher.module)
        if encoder is not teacher.module:  # fine-tuned body: its features replace the cached ones
            from modelfab.teachers.hf_encoder import encode_in_batches

            x = {
                s: encode_in_batches(encoder, teacher.tokenize, t, teacher.dim)
                for s, t in (
                    ("train", texts["train"]),
                    ("val", texts["val"]),
                    ("test", texts["test"]),
                    ("pool", pool),
                )
            }
            m_adapt.add(teacher_forward_passes=sum(len(v) for v in x.values()))
        teacher_test = _scores(y["test"], head.logits(x["test"]).argmax(1))
        teacher_val = _scores(y["val"], head.logits(x["val"]).argmax(1))

    with Meter("distill") as m_distill:
        m_distill.labeled_examples = len(texts["train"]) + len(texts["val"])
        train_logits = head.logits(np.concatenate([x["train"], x["pool"]]))
        distill_data = DistillData(
            texts=texts["train"] + pool,
            hard=np.concatenate([y["train"], np.full(len(pool), -1)]),
            teacher_logits=train_logits,
            val_texts=texts["val"],
            val_y=y["val"],
            n_classes=len(classes),
            teacher_features=np.concatenate([x["train"], x["pool"]]),
            teacher_head=head.head(),
        )
        student = TransformerStudent(teacher, config.student).fit(distill_data)
        student_torch_test = _scores(y["test"], student.predict_logits(texts["test"]).argmax(1))

    teacher_id, student_id = uuid.uuid4().hex, uuid.uuid4().hex
    lineage = {
        "dataset_id": scenario.dataset_id,
        "scenario": name,
        "scenario_fingerprint": spec.fingerprint(),
        "teacher": {"id": teacher.id, "path": str(teacher.model_dir), "precision": precision},
        "parent_model_id": teacher_id,
        "run_id": run_id,
    }
    with Meter("export") as m_export:
        from modelfab.export.bundle import export_bundle

        staged = workspace.stage(student_id)
        export_bundle(
            student.module(),
            teacher.tokenizer,
            classes,
            staged,
            card={"name": f"{name}/student", "lineage": lineage},
            max_length=student.max_length,
            calib_texts=texts["val"][:128],
        )

    from modelfab.export.runtime import BundlePredictor

    with Meter("evaluate") as m_eval:
        probs = BundlePredictor(staged).predict_proba(texts["test"])
        student_test = _scores(y["test"], probs.argmax(1))

    bench_s = bench_t = {}
    teacher_module = SequenceClassifier(encoder, head.head()).eval()
    with Meter("bench") as m_bench:
        if config.bench.enabled:
            from modelfab.bench.latency import bench_bundle, bench_torch

            opts = {"max_seconds": config.bench.max_seconds, "b1_calls": config.bench.b1_calls}
            sample = texts["test"][:256]
            bench_s = bench_bundle(staged, sample, threads=config.bench.threads, **opts)
            bench_t = bench_torch(
                teacher_module,
                teacher.tokenizer,
                sample,
                teacher.config.max_length,
                threads=config.bench.threads,
                **opts,
            )

    teacher_costs = [m_feat.record, m_adapt.record]
    student_costs = [m_distill.record, m_export.record, m_eval.record]
    card_path = staged / "card.json"
    card = json.loads(card_path.read_text())
    card.update(
        {
            "classes": classes,
            "metrics": {
                "test": student_test,
                "test_torch_fp32": student_torch_test,
                "teacher_test": teacher_test,
                "val_history": student.history_,
            },
            "bench": bench_s,
            "teacher_bench": bench_t,
            "recipe": student.recipe(),
            "adaptation": {"chosen": head.name, "val_macro_f1": adaptation.scores},
            "cost": _cost_summary(student_costs),
            "data": {
                "train": len(texts["train"]),
                "val": len(texts["val"]),
                "test": len(texts["test"]),
                "unlabeled": len(pool),
            },
        }
    )
    from modelfab.atomic import write_text
    from modelfab.export.manifest import write_manifest

    write_text(card_path, json.dumps(card, indent=2, sort_keys=True, default=str))
    write_manifest(staged)
    size = sum(p.stat().st_size for p in staged.iterdir() if p.is_file())

    teacher_dir = workspace.stage(teacher_id)
    teacher_dir.mkdir()
    save_file(
        {k: v.contiguous() for k, v in head.head().state_dict().items()},
        teacher_dir / "head.safetensors",
    )
    if encoder is not teacher.module:
        state = {k: v.contiguous() for k, v in encoder.state_dict().items()}
        save_file(state, teacher_dir / "encoder.safetensors")
    (teacher_dir / "adapter.json").write_text(
        json.dumps(
            {
                "strategy": head.name,
                "classes": classes,
                "lineage": lineage,
                "teacher_test": teacher_test,
            },
            indent=2,
        )
    )

    write_manifest(teacher_dir)

    def bench_metrics(b: dict) -> dict:
        keys = ("latency_b1_p50_ms", "latency_b1_p99_ms", "throughput_b32")
        return {k: float(b[k]) for k in keys if k in b}

    records = []
    teacher_row = {
        "model_id": teacher_id,
        "run_id": run_id,
        "scenario_id": scenario.id,
        "name": f"{name}/teacher",
        "role": "teacher",
        "family": "hf-encoder+" + head.name,
        "recipe": {
            "teacher": lineage["teacher"],
            "strategy": head.name,
            "scores": adaptation.scores,
        },
        "artifact_path": str(workspace.models / teacher_id),
        "size_bytes": teacher.size_bytes,
        "metrics": {"test": teacher_test, "val": teacher_val, "bench": bench_metrics(bench_t)},
        "costs": teacher_costs,
    }
    student_row = {
        "model_id": student_id,
        "run_id": run_id,
        "scenario_id": scenario.id,
        "name": f"{name}/student",
        "role": "student",
        "family": student.family,
        "parent_id": teacher_id,
        "recipe": student.recipe(),
        "artifact_path": str(workspace.models / student_id),
        "size_bytes": size,
        "metrics": {
            "test": student_test,
            "val": {"macro_f1": student.val_f1_},
            "bench": bench_metrics(bench_s),
        },
        "costs": student_costs,
    }
    finals = workspace.publish({teacher_id: teacher_dir, student_id: staged})
    registry.add_models([teacher_row, student_row])  # both rows or neither
    registry.record_cost(run_id, "bench", m_bench.record)

    def record(model_id, variant, role, scores, bench, size_bytes, cpu_s) -> dict:
        return {
            "scenario": name,
            "variant": variant,
            "role": role,
            "model_id": model_id,
            **scores,
            "latency_b1_p50_ms": bench.get("latency_b1_p50_ms"),
            "latency_b1_p99_ms": bench.get("latency_b1_p99_ms"),
            "throughput_b32": bench.get("throughput_b32"),
            "size_bytes": size_bytes,
            "train_cpu_s": round(cpu_s, 2),
        }

    records.append(
        record(
            teacher_id,
            f"teacher-{head.name}-fp32",
            "teacher",
            teacher_test,
            bench_t,
            teacher.size_bytes,
            sum(c.cpu_s for c in teacher_costs),
        )
    )
    records.append(
        record(
            student_id,
            f"student-l{config.student.layers}-int8",
            "student",
            student_test,
            bench_s,
            size,
            sum(c.cpu_s for c in student_costs),
        )
    )
    return BuildResult(scenario=name, run_id=run_id, records=records, bundle=finals[student_id])
