"""Task-agnostic distillation of a student body: once per teacher and corpus, shared by every
scenario's transformer student.

A transformer student starts from the teacher's embeddings and lower layers, and its scenario's
distillation (a few hundred steps over that scenario's pool) has to turn what the teacher's
second layer computes into something like its last. Doing that once, over a large unlabeled
corpus and token by token, gives every scenario's student a better start: the general
distillation that TinyBERT (Jiao et al., 2020) runs before its task distillation. The body is
trained to match the teacher's last hidden state at every token (1 - cosine) and its pooled
embedding (1 - cosine, the teacher's own pooling).

A body is stored as safetensors, named by the sha256 of the teacher's weights, the corpus and
the settings (`BodyStore`), so the scenarios of a factory run and later builds reuse it: its
cost is paid once, not per scenario. `TransformerStudentConfig.body` names the file a student
starts from.

    from modelfab.distill.body import BodyConfig, BodyStore
    body = BodyStore(paths.home() / "cache" / "bodies").get(teacher, corpus, BodyConfig())
    TransformerStudentConfig(layers=2, body=str(body.path))
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from modelfab.atomic import write_bytes, write_text
from modelfab.distill.train import length_batches, pad, warmup_linear
from modelfab.errors import InputError
from modelfab.progress import track
from modelfab.teachers.hf_encoder import pool
from modelfab.torchutil import adamw

FORMAT = "modelfab-student-body/1"


@dataclass(frozen=True)
class BodyConfig:
    layers: int = 2  # the teacher's first `layers` layers, as a transformer student keeps
    max_length: int = 64  # tokens per text, for the teacher's targets and the body alike
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-4
    max_texts: int = 50_000  # a seeded sample of a larger corpus
    seed: int = 0
    # The teacher's token states are computed once and kept in memory (float16) up to this size;
    # a larger corpus gets them recomputed for every batch (slower, same result up to rounding).
    targets_gib: float = 4.0

    def __post_init__(self) -> None:
        checks = {
            "layers": self.layers >= 1,
            "max_length": 8 <= self.max_length <= 512,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "max_texts": self.max_texts >= 1,
            "targets_gib": self.targets_gib >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)}" for n in bad)
            raise InputError(f"invalid BodyConfig: {values}")


@dataclass
class Body:
    """A distilled body on disk: its safetensors file and what made it."""

    path: Path
    key: str
    meta: dict = field(default_factory=dict)
    reused: bool = False  # found in the store, not distilled by this call


def corpus(texts: list[str], config: BodyConfig) -> list[str]:
    """The distinct non-blank texts, sorted (the body does not depend on their order), and a
    seeded sample of `config.max_texts` of them when there are more."""
    unique = sorted({t for t in texts if t.strip()})
    if not unique:
        raise InputError("a body needs at least one non-blank text to distill over")
    if len(unique) > config.max_texts:
        keep = np.random.default_rng(config.seed).choice(len(unique), config.max_texts, False)
        unique = [unique[i] for i in np.sort(keep)]
    return unique


def body_key(teacher: Any, texts: list[str], config: BodyConfig) -> str:
    """sha256 of the teacher's weights, pooling and precision, the corpus and the settings."""
    digest = hashlib.sha256()
    spec = {
        "format": FORMAT,
        "teacher": teacher.weights_id,
        "pooling": teacher.module.pooling,
        "precision": teacher.config.precision,
        # targets_gib decides where the teacher's targets live, not what the body learns
        "config": {k: v for k, v in asdict(config).items() if k != "targets_gib"},
    }
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for text in corpus(texts, config):
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


def body_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, pooling: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token loss, pooled loss): 1 - cosine between the (B, T, H) last hidden states at every
    real token, averaged; and 1 - cosine between the pooled (B, H) embeddings, averaged."""
    per_token = 1 - nn.functional.cosine_similarity(student, teacher, dim=-1)  # (B, T)
    real = mask.to(per_token.dtype)
    token = (per_token * real).sum() / real.sum().clamp(min=1)
    pooled = 1 - nn.functional.cosine_similarity(
        pool(student, mask, pooling), pool(teacher, mask, pooling), dim=-1
    )
    return token, pooled.mean()


class _Targets:
    """The teacher's (B, T, H) last hidden states for rows of the corpus: from a float16 table
    filled once when it fits `targets_gib`, else computed for each batch."""

    def __init__(self, teacher: Any, ids: list[list[int]], config: BodyConfig):
        self.backbone = teacher.module.backbone
        self.bf16 = teacher.config.precision == "bf16"
        self.pad_id = teacher.tokenizer.pad_token_id
        self.ids = ids
        width = max(len(x) for x in ids)
        self.table: torch.Tensor | None = None
        if len(ids) * width * teacher.dim * 2 <= config.targets_gib * 2**30:
            self.table = torch.zeros((len(ids), width, teacher.dim), dtype=torch.float16)
            order = np.argsort([len(x) for x in ids], kind="stable")
            with track("body: teacher targets", len(ids)) as advance:
                for start in range(0, len(order), 64):
                    rows = order[start : start + 64]
                    hidden = self._run(rows)
                    self.table[torch.from_numpy(rows), : hidden.shape[1]] = hidden.half()
                    advance(len(rows))

    def _run(self, rows: np.ndarray) -> torch.Tensor:
        input_ids, mask = pad([self.ids[i] for i in rows], self.pad_id)
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16),
        ):
            out = self.backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return out.float()

    def __call__(self, rows: np.ndarray, width: int) -> torch.Tensor:
        if self.table is None:
            return self._run(rows)
        return self.table[torch.from_numpy(rows), :width].float()


def distill_body(teacher: Any, texts: list[str], config: BodyConfig) -> tuple[nn.Module, dict]:
    """(the body, its training record): a copy of the teacher's embeddings and first
    `config.layers` layers, trained to reproduce the teacher's last hidden states over the
    corpus (`corpus(texts, config)`). The word embeddings stay the teacher's, frozen (as a
    transformer student keeps them)."""
    from modelfab.distill.transformer import truncated_backbone

    started = time.perf_counter()
    body: Any = truncated_backbone(teacher, config.layers)  # checks the depth before any work
    body.embeddings.word_embeddings.weight.requires_grad_(False)
    rng = np.random.default_rng(config.seed)
    rows_text = corpus(texts, config)
    ids = teacher.tokenizer(rows_text, truncation=True, max_length=config.max_length)["input_ids"]
    teacher.module.eval()
    targets = _Targets(teacher, ids, config)
    with torch.random.fork_rng(
        devices=[]
    ):  # dropout draws from torch's global generator: leave it as found
        torch.manual_seed(config.seed)
        history = _train(body, teacher, ids, targets, config, rng)
    record = {
        "texts": len(rows_text),
        "history": history,
        "wall_s": round(time.perf_counter() - started, 1),
        "targets": "in memory" if targets.table is not None else "recomputed per batch",
    }
    return body, record


def _train(
    body: Any,
    teacher: Any,
    ids: list[list[int]],
    targets: _Targets,
    config: BodyConfig,
    rng: np.random.Generator,
) -> list[dict]:
    """Train `body` in place on `targets`; each epoch's mean token and pooled loss."""
    opt = adamw([p for p in body.parameters() if p.requires_grad], lr=config.lr, weight_decay=0.01)
    lengths = np.array([len(x) for x in ids])
    total = math.ceil(len(ids) / config.batch_size) * config.epochs
    sched = warmup_linear(opt, total)
    pooling = teacher.module.pooling
    history = []
    body.train()
    with track(f"body: distill {config.layers}-layer", total) as advance:
        for epoch in range(config.epochs):
            sums = np.zeros(2)
            batches = length_batches(lengths, config.batch_size, rng)
            for rows in batches:
                input_ids, mask = pad([ids[i] for i in rows], teacher.tokenizer.pad_token_id)
                hidden = body(input_ids=input_ids, attention_mask=mask).last_hidden_state
                token, pooled = body_loss(
                    hidden.float(), targets(rows, input_ids.shape[1]), mask, pooling
                )
                opt.zero_grad()
                (token + pooled).backward()
                opt.step()
                sched.step()
                sums += (token.item(), pooled.item())
                advance(1)
            token_mean, pooled_mean = sums / len(batches)
            history.append(
                {"epoch": epoch + 1, "token_loss": token_mean, "pooled_loss": pooled_mean}
            )
    body.eval()
    return history


def check_body(path: Path, teacher: Any, layers: int) -> None:
    """InputError unless `path` is a body distilled from `teacher` (same weights and pooling)
    with `layers` layers; reads the file's header only, so a build checks it before any work."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"student body {path}: no such file (distill one: `modelfab body`)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise InputError(f"student body {path}: not a safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"student body {path}: not a modelfab student body")
    if meta.get("teacher") != teacher.weights_id or meta.get("pooling") != teacher.module.pooling:
        raise InputError(
            f"student body {path} was distilled from another teacher "
            f"({meta.get('teacher', '?')[:12]} with {meta.get('pooling')} pooling, not "
            f"{teacher.weights_id[:12]} with {teacher.module.pooling} pooling)"
        )
    if meta.get("layers") != str(layers):
        raise InputError(
            f"student body {path} has {meta.get('layers')} layers; the student asks for {layers}"
        )


def load_body(path: Path, backbone: nn.Module, teacher: Any) -> None:
    """Load the body at `path` into `backbone` (a `truncated_backbone` of `teacher`), in place,
    after `check_body`; InputError when its tensors do not fit the backbone.

    The body stands in for the teacher's lower layers as they were before adaptation: after
    contrastive tuning (upper half only) they are the same, after "finetune" or "lora" the
    student gives up their tuned copies and learns the tuned teacher from the body instead."""
    layers = len(backbone.encoder.layer)  # type: ignore[union-attr, arg-type]
    check_body(path, teacher, layers)
    try:
        backbone.load_state_dict(load_file(str(path)))
    except (RuntimeError, SafetensorError) as exc:
        detail = " ".join(str(exc).split())[:300]  # one line: which keys are missing or odd
        raise InputError(
            f"student body {path} does not fit this teacher's layers: {detail}"
        ) from None


class BodyStore:
    """Distilled bodies on disk, one safetensors file per `body_key` (and a JSON record beside
    it); `get` distills a body only when the store lacks it."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def get(self, teacher: Any, texts: list[str], config: BodyConfig) -> Body:
        key = body_key(teacher, texts, config)
        path, record = self.path(key), self.root / f"{key}.json"
        if path.is_file() and record.is_file():
            return Body(path, key, json.loads(record.read_text()), reused=True)
        body, meta = distill_body(teacher, texts, config)
        meta = {"config": asdict(config), "teacher": teacher.weights_id, **meta}
        tags = {
            "format": FORMAT,
            "teacher": teacher.weights_id,
            "pooling": teacher.module.pooling,
            "layers": str(config.layers),
        }
        # clones: safetensors refuses tensors that share memory (tied weights)
        state = {k: v.detach().clone().contiguous() for k, v in body.state_dict().items()}
        self.root.mkdir(parents=True, exist_ok=True)
        write_bytes(path, save(state, metadata=tags))
        write_text(record, json.dumps(meta, indent=2))  # last: a body without one is redone
        return Body(path, key, meta)
