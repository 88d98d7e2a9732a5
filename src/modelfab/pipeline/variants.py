"""The candidate students of one build: trained families, their compressed variants, and the
export recipes each is turned into. Every candidate becomes a bundle and a registry model."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from modelfab.compress.derive import CompressConfig, layer_dropped, pruned
from modelfab.distill.bag import BagStudentConfig, HashedNgramStudent, StaticEmbeddingStudent
from modelfab.distill.base import DistillData, TokenStudent
from modelfab.distill.ensemble import EnsembleClassifier
from modelfab.distill.transformer import TransformerStudent, TransformerStudentConfig
from modelfab.errors import InputError
from modelfab.export.bundle import ExportRecipe
from modelfab.registry import CostRecord, Meter
from modelfab.torchutil import eval_mode

FAMILIES = ("transformer", "static-embedding", "hashed-ngram")


@dataclass
class Variant:
    """One candidate model: a torch module to export with one recipe, and where it came from."""

    name: str
    role: str  # "student" or "baseline"
    family: str
    module: nn.Module
    tokenizer: Any
    max_length: int
    recipe: dict
    export: ExportRecipe
    parent: str | None  # variant name of the parent; None: the adapted teacher
    val_f1_torch: float | None = None
    costs: list[CostRecord] = field(default_factory=list)
    model_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    path: Path | None = None  # the staged bundle, once exported

    @property
    def bundle(self) -> Path:
        if self.path is None:
            raise RuntimeError(f"variant {self.name} has not been exported yet")
        return self.path

    @property
    def compression(self) -> dict:
        ops = dict(self.recipe.get("compression") or {})
        ops.update(
            {
                "quantization": self.export.quantization,
                "ort_optimization": self.export.optimization,
                "max_length": self.max_length,
            }
        )
        if "layers" in self.recipe:
            ops["layers"] = self.recipe["layers"]
        return ops


def student_source(teacher, encoder: nn.Module, cache_dir: Path | None) -> tuple[Any, Path | None]:
    """(teacher, token-vector cache) the students start from. A body tuned by adaptation
    (`encoder` is not the teacher's own module) replaces the teacher's, and its token vectors
    are computed for it, not taken from the cache shared by every build of that teacher."""
    if encoder is teacher.module:
        return teacher, cache_dir
    tuned = copy.copy(teacher)
    tuned.module = encoder
    return tuned, None


def _student(family: str, teacher, config, transformer, cache_dir: Path | None) -> TokenStudent:
    if family == "transformer":
        return TransformerStudent(teacher, transformer)
    if family == "static-embedding":
        return StaticEmbeddingStudent(teacher, config.static, vectors_cache=cache_dir)
    if family == "hashed-ngram":
        return HashedNgramStudent(teacher, config.hashed)
    raise InputError(f"unknown student family {family!r}; known: {', '.join(FAMILIES)}")


def _variants_of(
    student: TokenStudent, base: str, parent: str | None, exports: list[ExportRecipe], costs
) -> list[Variant]:
    """One Variant per export recipe; the first is the main one, the rest hang off it."""
    out = []
    for i, export in enumerate(exports):
        out.append(
            Variant(
                name=f"{base}-{export.name}",
                role="student",
                family=student.family,
                module=student.module(),
                tokenizer=student.tokenizer,
                max_length=student.max_length,
                recipe=student.recipe(),
                export=export,
                parent=parent if i == 0 else f"{base}-{exports[0].name}",
                val_f1_torch=student.val_f1_,
                costs=list(costs) if i == 0 else [],
            )
        )
    return out


def student_variants(
    teacher,
    data: DistillData,
    config: StudentsConfig,
    transformer: TransformerStudentConfig,
    cache_dir: Path | None,
) -> list[Variant]:
    """Train every configured family, derive compressed transformers, list all export variants.

    Each family's training is metered on its own, so the cost ledger says what each candidate
    cost.
    """
    main = ExportRecipe()
    variants: list[Variant] = []
    for family in config.families:
        with Meter(f"distill:{family}") as meter:
            meter.labeled_examples = int((data.hard >= 0).sum()) + len(data.val_texts)
            student = _student(family, teacher, config, transformer, cache_dir)
            student.fit(data)
        if family == "transformer":
            base = f"transformer-l{transformer.layers}"
            exports = [main] + [
                ExportRecipe(q) for q in config.quantizations if q != main.quantization
            ]
            exports += [ExportRecipe(optimization=o) for o in config.optimizations]
            variants += _variants_of(student, base, None, exports, [meter.record])
            assert isinstance(student, TransformerStudent)
            variants += _compressed(student, data, config.compress, f"{base}-{main.name}")
        else:
            variants += _variants_of(student, family, None, [main], [meter.record])
    if config.ensemble:
        variants += _ensemble(variants, main)
    return variants


def _ensemble(variants: list[Variant], export: ExportRecipe) -> list[Variant]:
    """One candidate averaging the bag students and the smallest transformer (the pruned one
    when there is one): a few gathers on top of that transformer's cost. None when fewer than
    two members exist or their tokenizers differ."""
    mains = [v for v in variants if v.role == "student" and v.export == export]
    bags = [v for v in mains if v.family != "transformer" and v.parent is None]
    transformers = [v for v in mains if v.family == "transformer"]
    pruned = [v for v in transformers if "-pruned" in v.name]
    members = bags + (pruned or [v for v in transformers if v.parent is None])[:1]
    if len(members) < 2 or len({len(v.tokenizer) for v in members}) > 1:
        return []
    tokenizer = members[0].tokenizer
    module = EnsembleClassifier(
        [v.module for v in members], [v.max_length for v in members], tokenizer.sep_token_id
    )
    names = [v.name for v in members]
    recipe = {
        "family": "ensemble",
        "members": names,
        "combine": "mean of the members' class probabilities",
        "compression": {"ensemble": names},
    }
    return [
        Variant(
            name=f"ensemble-{export.name}",
            role="student",
            family="ensemble",
            module=module,
            tokenizer=tokenizer,
            max_length=module.max_length,
            recipe=recipe,
            export=export,
            parent=members[-1].name,
        )
    ]


def _compressed(
    student: TransformerStudent, data: DistillData, config: CompressConfig | None, parent: str
) -> list[Variant]:
    if config is None:
        return []
    out = []
    steps = []
    if config.keep_layers and len(config.keep_layers) < student.config.layers:
        steps.append(("dropped", layer_dropped))
    if config.prune_heads or 0 < config.keep_neurons < 1:
        steps.append(("pruned", pruned))
    for label, derive in steps:
        with Meter(f"compress:{label}") as meter:
            derived = derive(student, data, config)
        layers = derived.recipe()["layers"]
        out += _variants_of(
            derived, f"transformer-l{layers}-{label}", parent, [ExportRecipe()], [meter.record]
        )
    return out


@dataclass
class StudentsConfig:
    """Which candidate students a build makes (the factory benchmarks all, then picks one)."""

    families: tuple[str, ...] = FAMILIES
    # Bag students read 256 tokens: each extra token costs a gather, not a transformer layer.
    static: BagStudentConfig = field(
        default_factory=lambda: BagStudentConfig(
            max_length=256, alpha=0.3, lr=1e-2, head_lr=1e-2, epochs=6, min_steps=600
        )
    )
    hashed: BagStudentConfig = field(
        default_factory=lambda: BagStudentConfig(
            max_length=256, buckets=1 << 17, alpha=0.3, lr=3e-2, head_lr=3e-2, epochs=10
        )
    )
    compress: CompressConfig | None = field(default_factory=CompressConfig)
    quantizations: tuple[str, ...] = ("dynamic-int8", "static-int8", "fp32")
    optimizations: tuple[str, ...] = ("basic", "disable")
    ensemble: bool = True  # one more candidate: the bag students + the smallest transformer

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise InputError(f"unknown student family {unknown}; known: {', '.join(FAMILIES)}")
        for q in self.quantizations:
            ExportRecipe(quantization=q)
        for o in self.optimizations:
            ExportRecipe(optimization=o)
        if "all" in self.optimizations:
            raise InputError("optimizations lists extra levels; 'all' is every bundle's default")
        for name, values in (
            ("quantizations", self.quantizations),
            ("optimizations", self.optimizations),
        ):
            if len(set(values)) != len(values):
                raise InputError(f"{name} has duplicates: {values}")


def baseline_variant(teacher_module: nn.Module, teacher, head_name: str) -> Variant:
    """The adapted teacher itself exported as dynamic int8 ONNX: the Optimum-style baseline a
    student has to beat, measured in the same run."""
    return Variant(
        name=f"teacher-{head_name}-int8",
        role="baseline",
        family="hf-encoder+" + head_name,
        module=teacher_module,
        tokenizer=teacher.tokenizer,
        max_length=teacher.config.max_length,
        recipe={"family": "hf-encoder+" + head_name, "source": "adapted teacher"},
        export=ExportRecipe(),
        parent=None,
    )


def count_flops(variant: Variant, texts: list[str]) -> float:
    """FLOPs per text of the variant's PyTorch module on `texts` (its own tokenization)."""
    from modelfab.bench.flops import flops_per_text

    enc = variant.tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=variant.max_length,
        return_tensors="pt",
    )
    with eval_mode(variant.module):
        return flops_per_text(variant.module, enc["input_ids"], enc["attention_mask"])
