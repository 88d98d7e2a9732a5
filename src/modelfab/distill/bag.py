"""Attention-free students: a weighted bag of token embeddings plus a small head.

Two families share the encoder:
- "static-embedding": one vector per teacher token, initialised from the teacher itself (each
  token encoded alone, as model2vec does) so the bag starts in the teacher's embedding space,
  then distilled. No attention at inference: a gather, a weighted mean and a matmul.
- "hashed-ngram": fastText-like; token unigrams plus hashed token bigrams, trained from scratch
  on the teacher's soft labels. The bigram hash is computed inside the ONNX graph from the
  token ids, so the bundle keeps the same inputs and runtime as every other student.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelfab.distill.base import DistillData, TokenStudent
from modelfab.distill.train import pad
from modelfab.distill.transformer import (
    SequenceClassifier,
    check_distill_settings,
    loop_settings,
)
from modelfab.errors import InputError
from modelfab.progress import track

BIGRAM_PRIME = 1_000_003  # ids < 2^20, so id * prime + id stays far inside int64


class BagEncoder(nn.Module):
    """Weighted mean of token (and hashed bigram) embeddings: (B, T) ids -> (B, dim).

    Each table row also has a learned scalar weight; a token's share of the mean is
    exp(weight), so uninformative tokens ("the", [CLS]) can learn to fade out.
    """

    def __init__(self, vocab_size: int, dim: int, buckets: int = 0):
        super().__init__()
        self.vocab_size, self.buckets = vocab_size, buckets
        self.table = nn.Embedding(vocab_size + buckets, dim)
        self.token_weight = nn.Embedding(vocab_size + buckets, 1)
        nn.init.zeros_(self.token_weight.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids, mask = input_ids, attention_mask.to(torch.float32)
        if self.buckets:
            bigrams = (input_ids[:, :-1] * BIGRAM_PRIME + input_ids[:, 1:]) % self.buckets
            ids = torch.cat([ids, bigrams + self.vocab_size], dim=1)
            mask = torch.cat([mask, mask[:, :-1] * mask[:, 1:]], dim=1)
        weights = mask * torch.exp(self.token_weight(ids).squeeze(-1))
        summed = (self.table(ids) * weights.unsqueeze(-1)).sum(dim=1)
        return summed / weights.sum(dim=1, keepdim=True).clamp_min(1e-6)


@dataclass
class BagStudentConfig:
    max_length: int = 64
    dim: int = 0  # 0: the teacher's width (static-embedding) / 64 (hashed-ngram)
    buckets: int = 0  # hashed bigram buckets; 0 = unigrams only
    hidden: int = 0  # 0 = linear head; > 0 = one ReLU layer of this width (shallow MLP)
    epochs: int = 6  # at least; small scenarios get more, until min_steps optimizer steps
    min_steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    head_lr: float = 3e-3
    feature_weight: float = 1.0
    temperature: float = 2.0
    alpha: float = 0.7
    ema_decay: float = 0.0  # > 0: keep a moving average of the weights (`LoopSettings`)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 0 or self.buckets < 0 or self.hidden < 0:
            raise InputError("BagStudentConfig dim, buckets and hidden must be >= 0")
        check_distill_settings(self)


def token_vectors(teacher: Any, batch_size: int = 512) -> torch.Tensor:
    """(vocab, dim) teacher embedding of every vocabulary token encoded on its own
    ([CLS] token [SEP]), with the teacher's pooling: the static student's starting table."""
    tok = teacher.tokenizer
    vocab = len(tok)  # added tokens included
    specials = [i for i in (tok.cls_token_id, tok.sep_token_id) if i is not None]
    rows = torch.zeros((vocab, teacher.dim), dtype=torch.float32)
    module = teacher.module.eval()
    with torch.inference_mode(), track("static embeddings from the teacher", vocab) as advance:
        for start in range(0, vocab, batch_size):
            ids = [
                [specials[0], i, specials[-1]] if specials else [i]
                for i in range(start, min(vocab, start + batch_size))
            ]
            input_ids, mask = pad(ids, 0)
            rows[start : start + len(ids)] = module(input_ids, mask).float()
            advance(len(ids))
    return rows


def cached_token_vectors(teacher: Any, cache_dir: Path | None) -> torch.Tensor:
    """token_vectors(), computed once per teacher and kept as safetensors in `cache_dir`."""
    if cache_dir is None:
        return token_vectors(teacher)
    from safetensors.torch import load_file, save

    from modelfab.atomic import write_bytes

    path = Path(cache_dir) / f"{teacher.id}.safetensors"
    if path.is_file():
        return load_file(path)["vectors"]
    vectors = token_vectors(teacher)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, save({"vectors": vectors.contiguous()}))
    return vectors


def _head(dim: int, hidden: int, n_classes: int) -> nn.Module:
    if hidden:
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    return nn.Linear(dim, n_classes)


class BagStudent(TokenStudent):
    """Shared fit for both bag families; subclasses choose the table's start."""

    default_dim = 64

    def __init__(self, teacher: Any, config: BagStudentConfig | None = None):
        self.teacher = teacher
        self.config = config or BagStudentConfig()
        super().__init__(teacher.tokenizer, self.config.max_length)

    def _encoder(self, dim: int) -> BagEncoder:
        return BagEncoder(len(self.tokenizer), dim, self.config.buckets)

    def _initial_head(self, dim: int, data: DistillData) -> nn.Module:
        return _head(dim, self.config.hidden, data.n_classes)

    def fit(self, data: DistillData) -> BagStudent:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        dim = cfg.dim or self.default_dim
        self.n_classes_ = data.n_classes
        encoder = self._encoder(dim)
        self.model_ = SequenceClassifier(encoder, self._initial_head(dim, data))
        projector = None
        if data.teacher_features is not None and dim != data.teacher_features.shape[1]:
            projector = nn.Linear(dim, data.teacher_features.shape[1])
        settings = loop_settings(cfg, f"distill {self.family} student")
        self.train_(data, cfg.lr, cfg.head_lr, settings, projector=projector)
        return self


class StaticEmbeddingStudent(BagStudent):
    """Student family "static-embedding": teacher token vectors, weighted mean, small head."""

    family = "static-embedding"

    def __init__(
        self,
        teacher: Any,
        config: BagStudentConfig | None = None,
        vectors_cache: Path | None = None,
    ):
        super().__init__(teacher, config)
        self.vectors_cache = vectors_cache
        self.default_dim = int(teacher.dim)

    def _encoder(self, dim: int) -> BagEncoder:
        if dim != self.teacher.dim:
            raise InputError(
                f"static-embedding students keep the teacher's width {self.teacher.dim}, not {dim}"
            )
        vectors = cached_token_vectors(self.teacher, self.vectors_cache)
        encoder = BagEncoder(vectors.shape[0], dim, self.config.buckets)
        with torch.no_grad():
            encoder.table.weight[: vectors.shape[0]] = vectors
        return encoder

    def _initial_head(self, dim: int, data: DistillData) -> nn.Module:
        # The bag starts in the teacher's space, so the adapted teacher head is a good start.
        if data.teacher_head is not None and not self.config.hidden:
            import copy

            return copy.deepcopy(data.teacher_head)
        return super()._initial_head(dim, data)


class HashedNgramStudent(BagStudent):
    """Student family "hashed-ngram": fastText-like unigrams + hashed bigrams, from scratch."""

    family = "hashed-ngram"

    def __init__(self, teacher: Any, config: BagStudentConfig | None = None):
        config = config or BagStudentConfig(buckets=1 << 17, hidden=0)
        if not config.buckets:
            raise InputError("hashed-ngram students need buckets > 0")
        super().__init__(teacher, config)
