"""Build one scenario end to end: features -> adapt -> distill every student family ->
compress -> export every variant -> evaluate -> bench on this machine -> choose under the budget.

Each stage is metered (CPU s, wall s, peak RSS, teacher passes, cache hits). Artifacts are
staged and moved into place only when complete; registry rows are written last, in one
transaction, so a failed or killed build leaves no model row and no partial bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from modelfab import paths
from modelfab.adapt.base import AdaptData
from modelfab.adapt.select import adapt
from modelfab.bench.choose import card_entry, choose
from modelfab.bench.hardware import fingerprint
from modelfab.bench.peak import peaks
from modelfab.bench.probe import measure_bundle, measure_teacher
from modelfab.bench.results import bench_rows, with_flops_fractions
from modelfab.data.scenario import ScenarioData, ScenarioSpec, class_indices, materialize
from modelfab.data.versions import DatasetStore
from modelfab.distill.base import DistillData
from modelfab.distill.body import check_body
from modelfab.distill.transformer import SequenceClassifier
from modelfab.errors import InputError
from modelfab.export.bundle import export_bundle
from modelfab.export.manifest import dir_bytes, sha256_file, write_manifest
from modelfab.pipeline.config import BuildConfig
from modelfab.pipeline.labeling import label_pool, screen_train
from modelfab.pipeline.records import (
    bench_metrics,
    bench_record,
    evaluate,
    finish_card,
)
from modelfab.pipeline.records import (
    scores as _scores,
)
from modelfab.pipeline.teacher import load_teacher
from modelfab.pipeline.variants import (
    baseline_variant,
    count_flops,
    student_source,
    student_variants,
)
from modelfab.pipeline.workspace import Workspace, sweep_orphans
from modelfab.progress import track_items
from modelfab.registry import CostRecord, Meter, Registry, ScenarioRecord
from modelfab.teachers.cache import FeatureCache


@dataclass
class BuildResult:
    scenario: str
    run_id: str
    records: list[dict] = field(default_factory=list)  # one per model variant (bench format)
    bundle: Path | None = None  # the chosen student's bundle
    choice: dict = field(default_factory=dict)  # why that student (bench.choose.card_entry)


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


def save_teacher(workspace, teacher_id, head, encoder, teacher, classes, lineage) -> Path:
    """The adapted teacher's artifact: its head (and a fine-tuned body) as safetensors."""
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
                "max_length": teacher.config.max_length,
            },
            indent=2,
        )
    )
    write_manifest(teacher_dir)
    return teacher_dir


def variant_id(key: str | None, variant: str) -> str:
    """A model's id: random without a build key; with one, sha256 of key and variant name, so
    the same build (same inputs and config) always produces the same ids."""
    if key is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{key}/{variant}".encode()).hexdigest()[:32]


def build(
    name: str,
    config: BuildConfig | None = None,
    registry: Registry | None = None,
    key: str | None = None,
) -> BuildResult:
    """Build teacher and student models for scenario `name`; return bench-format records.

    `key` (a content hash of the build's inputs and config, see factory/keys.py) makes the
    model ids deterministic: `variant_id(key, variant)`, the teacher's variant being "teacher".
    """
    config = config or BuildConfig()
    home, artifacts = paths.home(), paths.artifacts()
    registry = registry or Registry()
    spec, data, scenario = load_scenario(name, registry, home)
    _check_splits(name, data)
    sweep_orphans(artifacts, registry)
    run_id = uuid.uuid4().hex
    # Staging exists before the run row, so a build killed at any moment leaves a folder that
    # names its run: the next sweep closes that run (see workspace.sweep_orphans).
    workspace = Workspace(artifacts, run_id)
    succeeded = False
    try:
        registry.start_run(scenario.id, "build", config.to_dict(), run_id=run_id)
        result = _build(scenario, spec, data, config, registry, run_id, workspace, home, key)
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


def _build(scenario, spec, data, config, registry, run_id, workspace, home, key) -> BuildResult:
    name = scenario.name
    classes = data.classes
    y = {
        split: class_indices(getattr(data, split)["label"], classes)
        for split in ("train", "val", "test")
    }
    texts = {split: getattr(data, split)["text"].tolist() for split in ("train", "val", "test")}
    pool = data.unlabeled["text"].tolist()

    with Meter("teacher-features") as m_feat:
        teacher, precision = load_teacher(config.teacher, sample=texts["train"][:16], home=home)
        transformer = "transformer" in config.students.families
        if transformer and config.student.layers > teacher.n_layers:
            raise InputError(f"student layers must be in 1..{teacher.n_layers} for this teacher")
        if transformer and config.student.body is not None:
            check_body(Path(config.student.body), teacher, config.student.layers)
        cache = FeatureCache(home / "cache" / "features")
        all_texts = texts["train"] + texts["val"] + texts["test"] + pool
        feats, stats = cache.encode(teacher, all_texts, label=name)
        m_feat.add(teacher_forward_passes=stats.forward_passes, cache_hits=stats.hits)
    bounds = np.cumsum([0, len(texts["train"]), len(texts["val"]), len(texts["test"]), len(pool)])
    x = {
        s: feats[bounds[i] : bounds[i + 1]] for i, s in enumerate(("train", "val", "test", "pool"))
    }

    with Meter("adapt") as m_adapt:
        screening = screen_train(x["train"], y["train"], classes, config.labels, spec.seed)
        if not screening.keep.all():
            keep = screening.keep
            texts["train"] = [t for t, k in zip(texts["train"], keep, strict=True) if k]
            x["train"], y["train"] = x["train"][keep], y["train"][keep]
            data = dataclasses.replace(data, train=data.train[keep].reset_index(drop=True))
        m_adapt.labeled_examples = len(texts["train"]) + len(texts["val"])
        adapt_data = AdaptData(
            texts["train"], x["train"], y["train"], texts["val"], x["val"], y["val"], len(classes)
        )
        if config.adapt_budget_s is None:
            adaptation = adapt(adapt_data, config.adapt, seed=spec.seed, teacher=teacher)
        else:
            from modelfab.adapt.search import search

            adaptation = search(
                adapt_data, config.adapt, config.adapt_budget_s, seed=spec.seed, teacher=teacher
            )
            registry.add_trials(run_id, adaptation.trials)
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

    labels = label_pool(
        train=data.train,
        pool=data.unlabeled,
        classes=classes,
        val_logits=head.logits(x["val"]),
        val_y=y["val"],
        pool_logits=head.logits(x["pool"]),
        cfg=config.labels,
        home=home,
        scenario=name,
        source=(
            f"run {run_id}: human train labels and {head.name} teacher labels of the pool; "
            f"row_id indexes dataset {scenario.dataset_id}"
        ),
    )
    used = labels.targets.keep
    distill_x = np.concatenate([x["train"], x["pool"][used]])
    distill_data = DistillData(
        texts=texts["train"] + [t for t, k in zip(pool, used, strict=True) if k],
        hard=np.concatenate([y["train"], labels.targets.hard[used]]),
        teacher_logits=np.concatenate(
            [head.logits(x["train"]), labels.targets.logits[used]]
        ).astype(np.float32),
        val_texts=texts["val"],
        val_y=y["val"],
        n_classes=len(classes),
        teacher_features=distill_x,
        teacher_head=head.head(),
    )
    # Students start from the body the head was fitted on.
    student_teacher, vectors_cache = student_source(teacher, encoder, home / "cache" / "static")
    variants = student_variants(
        student_teacher, distill_data, config.students, config.student, vectors_cache
    )
    teacher_module = SequenceClassifier(encoder, head.head()).eval()
    variants.append(baseline_variant(teacher_module, teacher, head.name))

    teacher_id = variant_id(key, "teacher")
    for v in variants:
        v.model_id = variant_id(key, v.name)
    lineage = {
        "dataset_id": scenario.dataset_id,
        "scenario": name,
        "scenario_fingerprint": spec.fingerprint(),
        "teacher": {"id": teacher.id, "path": str(teacher.model_dir), "precision": precision},
        "run_id": run_id,
    }
    ids = {v.name: v.model_id for v in variants}

    def parent_id(v) -> str:
        return ids[v.parent] if v.parent else teacher_id

    flops: dict[int, float] = {}  # export variants of one student share its module

    def flops_of(v) -> float:
        if id(v.module) not in flops:
            flops[id(v.module)] = count_flops(v, flops_batch)
        return flops[id(v.module)]

    # Calibration reads train texts: validation drives the choice and must stay unseen.
    calib = texts["train"][:128]
    flops_batch = texts["test"][:32]
    for v in variants:
        with Meter(f"export:{v.name}") as meter:
            v.path = workspace.stage(v.model_id)
            export_bundle(
                v.module,
                v.tokenizer,
                classes,
                v.path,
                card={
                    "name": f"{name}/{v.name}",
                    "lineage": {
                        **lineage,
                        "model_id": v.model_id,
                        "parent": v.parent or "teacher",
                        "parent_model_id": parent_id(v),
                    },
                    "flops_per_text": flops_of(v),
                },
                max_length=v.max_length,
                calib_texts=calib,
                recipe=v.export,
                # Every scenario on this teacher body shares its encoder graphs.
                encoder_cache=home / "cache" / "onnx-encoders" if v.role == "baseline" else None,
            )
        v.costs.append(meter.record)

    with Meter("evaluate") as m_eval:
        scores = {v.name: evaluate(v.bundle, texts, y) for v in variants}

    teacher_dir = save_teacher(workspace, teacher_id, head, encoder, teacher, classes, lineage)
    teacher_dir_scores = {"test": teacher_test, "val": teacher_val}
    teacher_costs = [m_feat.record, m_adapt.record]

    benches: dict[str, dict] = {}
    with Meter("bench") as m_bench:
        if config.bench.enabled:
            opts = {
                "threads": config.bench.threads,
                "max_seconds": config.bench.max_seconds,
                "b1_calls": config.bench.b1_calls,
            }
            sample = texts["test"][:256]
            benches["teacher"] = measure_teacher(
                str(teacher.model_dir),
                teacher_dir / "head.safetensors",
                sample,
                max_length=teacher.config.max_length,
                encoder_state=(teacher_dir / "encoder.safetensors")
                if (teacher_dir / "encoder.safetensors").is_file()
                else None,
                **opts,
            )
            for v in track_items(variants, "bench variants"):
                benches[v.name] = measure_bundle(v.bundle, sample, **opts)
            peak = peaks(threads=config.bench.threads)
            benches = {k: with_flops_fractions(b, peak) for k, b in benches.items()}
    headline = config.bench.threads[0]

    teacher_record = bench_record(
        name,
        teacher_id,
        f"teacher-{head.name}-fp32",
        "teacher",
        "hf-encoder+" + head.name,
        {"quantization": "none (PyTorch fp32)", "max_length": teacher.config.max_length},
        teacher_dir_scores,
        benches.get("teacher"),
        teacher.size_bytes,
        sum(c.cpu_s for c in teacher_costs),
        threads=headline,
    )
    records = [teacher_record]
    for v in variants:
        records.append(
            bench_record(
                name,
                v.model_id,
                v.name,
                v.role,
                v.family,
                v.compression,
                scores[v.name],
                benches.get(v.name),
                dir_bytes(v.bundle),
                sum(c.cpu_s for c in v.costs),
                threads=headline,
            )
        )
    students = [r for r in records if r["role"] == "student"]
    choice = choose(students, config.budget, teacher_record)
    chosen = choice.record["variant"]
    for r in records:
        r["chosen"] = r["variant"] == chosen
    from modelfab.factory.bar import student_bar

    bar = student_bar(records)  # the students issue's bar; what missed, by how much
    for v, r in zip(variants, records[1:], strict=True):
        finish_card(
            v.bundle,
            {
                "classes": classes,
                "variant": v.name,
                "family": v.family,
                "compression": v.compression,
                "recipe": v.recipe,
                "metrics": {
                    "test": scores[v.name]["test"],
                    "val": scores[v.name]["val"],
                    "val_torch_macro_f1": v.val_f1_torch,
                    "teacher_test": teacher_test,
                },
                "bench": benches.get(v.name),
                "choice": {**card_entry(choice), "chosen": r["chosen"]},
                "bar": bar,
                "adaptation": {"chosen": head.name, "val_macro_f1": adaptation.scores},
                "cost": _cost_summary(v.costs),
                "data": {k: len(t) for k, t in texts.items()} | {"unlabeled": len(pool)},
                "labels": {**labels.card, "screening": screening.report},
            },
        )

    rows = [
        {
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
            "metrics": {**teacher_dir_scores, "bench": bench_metrics(teacher_record)},
            "costs": teacher_costs,
        }
    ]
    for v, r in zip(variants, records[1:], strict=True):
        rows.append(
            {
                "model_id": v.model_id,
                "run_id": run_id,
                "scenario_id": scenario.id,
                "name": f"{name}/{v.name}",
                "role": v.role,
                "family": v.family,
                "parent_id": parent_id(v),
                "recipe": {**v.recipe, "compression": v.compression, "chosen": r["chosen"]},
                "artifact_path": str(workspace.models / v.model_id),
                "size_bytes": r["size_bytes"],
                "metrics": {**scores[v.name], "bench": bench_metrics(r)},
                "costs": v.costs,
            }
        )
    staged = {teacher_id: teacher_dir} | {v.model_id: v.bundle for v in variants}
    finals = workspace.publish(staged)
    bench_rows_: list[dict] = []
    if benches:
        hardware = fingerprint()
        measured = [(teacher_id, benches["teacher"])] + [
            (v.model_id, benches[v.name]) for v in variants
        ]
        for model_id, measurement in measured:
            final = finals[model_id]
            # Measured in staging; stored with the published path and final manifest hash.
            published = {**measurement, "path": str(final)}
            if (final / "manifest.json").is_file() and model_id != teacher_id:
                published["artifact_sha"] = sha256_file(final / "manifest.json")
            bench_rows_ += bench_rows(model_id, published, hardware)
    registry.add_models(  # every model of the build, with its measurements, or none
        parents_first(rows),
        bench_results=bench_rows_,
        run_costs=[(run_id, "evaluate", m_eval.record), (run_id, "bench", m_bench.record)],
    )
    workspace.committed = True
    chosen_id = next(r["model_id"] for r in records if r["chosen"])
    return BuildResult(
        scenario=name,
        run_id=run_id,
        records=records,
        bundle=finals[chosen_id],
        choice=card_entry(choice),
    )


def parents_first(rows: list[dict]) -> list[dict]:
    """Registry rows ordered so that every parent comes before its children."""
    done: set[str] = set()
    ordered: list[dict] = []
    pending = list(rows)
    while pending:
        ready = [r for r in pending if r.get("parent_id") in done or not r.get("parent_id")]
        if not ready:
            raise InputError("model lineage has a cycle or a parent outside the build")
        for r in ready:
            ordered.append(r)
            done.add(r["model_id"])
        pending = [r for r in pending if r["model_id"] not in done]
    return ordered
