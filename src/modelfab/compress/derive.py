"""Compressed variants of a trained transformer student, each recovered by a short distillation.

A variant is a new student (same tokenizer, same family) whose recipe names its parent and the
operations applied, so the registry can hold it as a model with lineage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from torch import nn

from modelfab.compress.structure import drop_layers, importance, prune_heads, prune_neurons
from modelfab.distill.base import DistillData, TokenStudent
from modelfab.distill.train import pad
from modelfab.distill.transformer import TransformerStudent, loop_settings
from modelfab.errors import InputError


@dataclass
class CompressConfig:
    keep_layers: tuple[int, ...] = (0,)  # layer dropping: layers kept; () skips the variant
    prune_heads: float = 0.5  # share of attention heads removed per layer; 0 keeps all
    keep_neurons: float = 0.5  # share of feed-forward neurons kept per layer; 0 or 1 keeps all
    recovery_epochs: int = 1
    recovery_texts: int = 4000  # texts per recovery epoch (a random subset)
    importance_texts: int = 256

    def __post_init__(self) -> None:
        if not (0 <= self.prune_heads < 1 and 0 <= self.keep_neurons <= 1):
            raise InputError("compress needs prune_heads in [0, 1) and keep_neurons in [0, 1]")
        if list(self.keep_layers) != sorted(set(self.keep_layers)) or any(
            i < 0 for i in self.keep_layers
        ):
            raise InputError(f"keep_layers must be increasing indices >= 0: {self.keep_layers}")
        if self.recovery_epochs < 1 or self.recovery_texts < 1 or self.importance_texts < 1:
            raise InputError(
                "compress needs recovery_epochs, recovery_texts, importance_texts >= 1"
            )


class DerivedStudent(TokenStudent):
    """A student made by compressing another one."""

    def __init__(self, parent: TransformerStudent, model: nn.Module, operations: dict):
        super().__init__(parent.tokenizer, parent.max_length)
        self.family = parent.family
        self.parent = parent
        self.model_ = model
        self.n_classes_ = parent.n_classes_
        self.operations = operations

    def recipe(self) -> dict:
        return {
            "family": self.family,
            **dataclasses.asdict(self.parent.config),
            "layers": len(self.model_.encoder.backbone.encoder.layer),  # type: ignore[union-attr,arg-type]
            "compression": self.operations,
            "history": self.history_,
            "epoch_selected_on": self.selected_on_,
        }


def _recover(student: DerivedStudent, data: DistillData, config: CompressConfig) -> DerivedStudent:
    parent_cfg = student.parent.config
    settings = dataclasses.replace(
        loop_settings(parent_cfg, f"recover {student.operations['name']}"),
        epochs=config.recovery_epochs,
        min_steps=0,
        max_texts=config.recovery_texts,
    )
    student.train_(data, parent_cfg.lr, parent_cfg.head_lr, settings)
    student.operations["recovery"] = {
        "epochs": config.recovery_epochs,
        "texts_per_epoch": config.recovery_texts,
        "importance_texts": config.importance_texts,
    }
    return student


def layer_dropped(
    parent: TransformerStudent, data: DistillData, config: CompressConfig
) -> DerivedStudent:
    model = drop_layers(parent.module(), list(config.keep_layers))
    ops = {"name": "layer-drop", "keep_layers": list(config.keep_layers)}
    return _recover(DerivedStudent(parent, model, ops), data, config)


def pruned(parent: TransformerStudent, data: DistillData, config: CompressConfig) -> DerivedStudent:
    """Heads and feed-forward neurons with the smallest contribution removed, then recovered."""
    # Training texts: validation drives the choice between variants and must stay unseen.
    texts = data.texts[: config.importance_texts]
    ids = parent.ids(texts)
    batches = [pad(ids[i : i + 32], parent.tokenizer.pad_token_id) for i in range(0, len(ids), 32)]
    scores = importance(parent.module(), batches)
    model = parent.module()
    ops: dict = {"name": "prune"}
    n_heads, width = scores.heads.shape[1], scores.neurons.shape[1]
    heads = min(n_heads - 1, round(n_heads * config.prune_heads))
    if heads > 0:
        model = prune_heads(model, scores.heads, heads)
        ops["pruned_heads_per_layer"] = f"{heads}/{n_heads}"
    keep = round(width * config.keep_neurons)
    if 0 < keep < width:
        model = prune_neurons(model, scores.neurons, keep)
        ops["kept_neurons_per_layer"] = f"{keep}/{width}"
    if model is parent.module():
        raise InputError("nothing to prune: the student is already at its smallest")
    return _recover(DerivedStudent(parent, model, ops), data, config)
