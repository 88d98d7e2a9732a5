"""Transformer student: the teacher's embeddings and lower layers, fine-tuned by distillation."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from modelfab.distill.base import DistillData, feature_loss, kd_loss
from modelfab.errors import InputError
from modelfab.progress import track
from modelfab.teachers.hf_encoder import HFTextEncoder, PooledEncoder


class SequenceClassifier(nn.Module):
    """Pooled encoder + linear head: (input_ids, attention_mask) -> (B, C) logits."""

    def __init__(self, encoder: PooledEncoder, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, attention_mask))


@dataclass
class TransformerStudentConfig:
    layers: int = 2
    max_length: int = 64
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-4
    head_lr: float = 1e-3
    feature_weight: float = 1.0  # weight of the embedding-matching loss when features exist
    temperature: float = 2.0
    alpha: float = 0.7
    freeze_word_embeddings: bool = True  # half of MiniLM's weights; freezing speeds AdamW up
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "layers": self.layers >= 1,
            "max_length": 8 <= self.max_length <= 512,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "temperature": self.temperature > 0,
            "alpha": 0 <= self.alpha <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)}" for n in bad)
            raise InputError(f"invalid student config: {values}")


def truncated_backbone(teacher: HFTextEncoder, layers: int) -> nn.Module:
    """A copy of the teacher backbone keeping its embeddings and first `layers` layers."""
    backbone: Any = copy.deepcopy(teacher.module.backbone)
    total = len(backbone.encoder.layer)
    if not 1 <= layers <= total:
        raise InputError(f"student layers must be in 1..{total} for this teacher, not {layers}")
    backbone.encoder.layer = nn.ModuleList(list(backbone.encoder.layer)[:layers])
    backbone.config.num_hidden_layers = layers
    return backbone


def _batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths (bucketing keeps padding small)."""
    order = rng.permutation(len(lengths))
    bucket = batch_size * 50
    batches = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


class TransformerStudent:
    """Student family "transformer": fewer layers of the teacher, trained on its soft labels."""

    family = "transformer"

    def __init__(self, teacher: HFTextEncoder, config: TransformerStudentConfig | None = None):
        self.teacher = teacher
        self.config = config or TransformerStudentConfig()
        self.tokenizer = teacher.tokenizer
        self.max_length = self.config.max_length

    def _ids(self, texts: list[str]) -> list[list[int]]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return enc["input_ids"]

    def predict_logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        ids = self._ids(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.zeros((len(texts), self.n_classes_), dtype=np.float32)
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                input_ids, mask = _pad([ids[i] for i in idx], self.tokenizer.pad_token_id)
                out[idx] = self.model_(input_ids, mask).numpy()
        return out

    def fit(self, data: DistillData) -> TransformerStudent:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        backbone: Any = truncated_backbone(self.teacher, cfg.layers)
        # Same pooling as the teacher, so the student's embedding lives in the teacher's space
        # and the teacher's adapted head is a good starting point for its own head.
        teacher_pool = self.teacher.module
        encoder = PooledEncoder(
            backbone, pooling=teacher_pool.pooling, normalize=teacher_pool.normalize
        )
        self.n_classes_ = data.n_classes
        head = (
            copy.deepcopy(data.teacher_head)
            if data.teacher_head is not None
            else nn.Linear(self.teacher.dim, data.n_classes)
        )
        self.model_ = SequenceClassifier(encoder, head)
        for p in self.model_.head.parameters():
            p.requires_grad_(True)
        feats = (
            torch.from_numpy(data.teacher_features.astype(np.float32))
            if data.teacher_features is not None and cfg.feature_weight > 0
            else None
        )
        word_embeddings = backbone.embeddings.word_embeddings
        word_embeddings.weight.requires_grad_(not cfg.freeze_word_embeddings)
        body = [
            p
            for n, p in self.model_.named_parameters()
            if p.requires_grad and not n.startswith("head.")
        ]
        opt = torch.optim.AdamW(
            [
                {"params": body, "lr": cfg.lr},
                {"params": self.model_.head.parameters(), "lr": cfg.head_lr},
            ],
            weight_decay=0.01,
        )
        ids = self._ids(data.texts)
        lengths = np.array([len(x) for x in ids])
        teacher_logits = torch.from_numpy(data.teacher_logits.astype(np.float32))
        hard = torch.from_numpy(data.hard.astype(np.int64))
        steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        warmup = max(1, total // 20)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
        )
        best_score, best_state, self.history_ = -1.0, None, []
        with track(f"distill {cfg.layers}-layer student", total) as advance:
            for epoch in range(cfg.epochs):
                self.model_.train()
                for batch in _batches(lengths, cfg.batch_size, rng):
                    input_ids, mask = _pad([ids[i] for i in batch], self.tokenizer.pad_token_id)
                    idx = torch.from_numpy(batch)
                    emb = self.model_.encoder(input_ids, mask)
                    loss = kd_loss(
                        self.model_.head(emb),
                        teacher_logits[idx],
                        hard[idx],
                        cfg.temperature,
                        cfg.alpha,
                    )
                    if feats is not None:
                        loss = loss + cfg.feature_weight * feature_loss(emb, feats[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    advance(1)
                pred = self.predict_logits(data.val_texts).argmax(-1)
                score = float(f1_score(data.val_y, pred, average="macro"))
                self.history_.append({"epoch": epoch + 1, "val_macro_f1": score})
                if score > best_score:
                    best_score = score
                    best_state = {
                        k: v.detach().clone() for k, v in self.model_.state_dict().items()
                    }
        assert best_state is not None
        self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.val_f1_ = best_score
        return self

    def module(self) -> nn.Module:
        return self.model_

    def recipe(self) -> dict:
        return {"family": self.family, **asdict(self.config), "history": self.history_}
