"""The student family interface and the knowledge-distillation loss.

A student is fitted on soft labels from the adapted teacher over labeled and unlabeled texts
(plus hard labels where a human gave one) and ends as a torch module
`(input_ids, attention_mask) -> logits` with a HF fast tokenizer, ready for `export_bundle`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@dataclass
class DistillData:
    texts: list[str]  # labeled train texts first, then the unlabeled pool
    hard: np.ndarray  # (N,) class index, -1 where no human label
    teacher_logits: np.ndarray  # (N, C) adapted-teacher logits (soft labels via softmax)
    val_texts: list[str]
    val_y: np.ndarray
    n_classes: int
    teacher_features: np.ndarray | None = None  # (N, D) pooled teacher embeddings, if any
    teacher_head: nn.Module | None = None  # adapted head over teacher features, if any


@runtime_checkable
class Student(Protocol):
    """A student family: `fit` on distillation data, then `module()` is the exportable
    `(input_ids, attention_mask) -> logits` model and `tokenizer` its HF fast tokenizer."""

    family: str
    max_length: int
    tokenizer: Any
    val_f1_: float
    history_: list[dict]

    def fit(self, data: DistillData) -> Student: ...

    def module(self) -> nn.Module: ...

    def predict_logits(self, texts: list[str]) -> np.ndarray: ...

    def recipe(self) -> dict: ...


class TokenStudent:
    """What every family shares: tokenization, prediction, the exported module, the recipe."""

    family = "base"
    model_: nn.Module  # set by fit()
    n_classes_: int

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.history_: list[dict] = []
        self.val_f1_ = float("nan")
        self.selected_on_ = ""

    def fit(self, data: DistillData) -> TokenStudent:
        raise NotImplementedError

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def predict_logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        from modelfab.distill.train import predict_logits

        return predict_logits(
            self.model_, self.ids(texts), self.tokenizer.pad_token_id, self.n_classes_, batch_size
        )

    def module(self) -> nn.Module:
        return self.model_

    def train_(
        self,
        data: DistillData,
        lr: float,
        head_lr: float,
        settings: Any,
        projector: nn.Module | None = None,
    ) -> None:
        """Run the shared KD loop (`distill.train`) on `self.model_` and keep its scores."""
        from modelfab.distill.train import body_and_head_groups, distill_loop

        result = distill_loop(
            self.model_,
            body_and_head_groups(self.model_, lr, head_lr),
            self.ids(data.texts),
            self.ids(data.val_texts),
            data,
            self.tokenizer.pad_token_id,
            settings,
            projector=projector,
        )
        self.val_f1_, self.history_ = result.val_f1, result.history
        self.selected_on_ = result.selected_on

    def config_dict(self) -> dict:
        return asdict(self.config)  # type: ignore[attr-defined]

    def recipe(self) -> dict:
        return {
            "family": self.family,
            **self.config_dict(),
            "history": self.history_,
            "epoch_selected_on": self.selected_on_,
        }


def feature_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """1 - cosine between student and teacher embeddings: a 384-number target per text
    carries far more signal than C class probabilities, so small data goes further."""
    return (1 - nn.functional.cosine_similarity(student_features, teacher_features, dim=-1)).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    hard: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(hard) on labeled rows.

    Hinton et al. (2015): the T^2 factor keeps soft-target gradients on the scale of the hard
    loss as T changes.
    """
    t = temperature
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(student_logits / t, dim=-1),
        nn.functional.log_softmax(teacher_logits / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)
    labeled = hard >= 0
    if labeled.any():
        ce = nn.functional.cross_entropy(student_logits[labeled], hard[labeled])
        return alpha * soft + (1 - alpha) * ce
    return soft
