"""One knowledge-distillation loop for every student family.

A student is a `SequenceClassifier`: an encoder `(input_ids, attention_mask) -> embedding` and a
head `embedding -> logits`. The loop trains it on the teacher's soft labels over labeled and
unlabeled texts (plus hard labels where a person gave one, plus an optional cosine pull of the
embedding towards the cached teacher embedding), keeps the epoch that agrees best with the
teacher on a slice of the unlabeled pool held out from training, and restores it.

The epoch is NOT picked on the validation split: validation macro-F1 is what `bench.choose`
compares students with the teacher on, and picking the best of ten epochs on it inflated a
student's validation score by several points over its test score (measured: static-embedding on
interface::, validation 0.732 against test 0.673), so the chooser took it for "within one point".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from modelfab.distill.base import DistillData, feature_loss, kd_loss
from modelfab.progress import track
from modelfab.torchutil import adamw, eval_mode


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    temperature: float
    alpha: float
    feature_weight: float
    seed: int
    label: str = "distill"
    max_texts: int | None = None  # a random subset per epoch (recovery fine-tunes)
    min_steps: int = 0  # small data: more epochs, until at least this many optimizer steps
    # > 0: every epoch is scored, and the kept one restored, as the exponential moving average
    # of the weights over the optimizer steps so far (torch's AveragedModel), not the last step.
    # Parameters only: buffers keep their starting values (no student has running statistics,
    # and torch's lerp would corrupt integer buffers such as BERT's position_ids)
    ema_decay: float = 0.0

    def epochs_for(self, n_texts: int) -> int:
        per_epoch = math.ceil(min(n_texts, self.max_texts or n_texts) / self.batch_size)
        return max(self.epochs, math.ceil(self.min_steps / max(1, per_epoch)))


@dataclass
class LoopResult:
    val_f1: float  # validation macro-F1 of the kept epoch (reported; it did not pick the epoch)
    history: list[dict] = field(default_factory=list)
    selected_on: str = ""  # what picked the kept epoch, in words


SELECTION_FRACTION = 0.1  # of the unlabeled pool, held out to pick the epoch
SELECTION_MIN, SELECTION_MAX = 100, 500  # fewer pool texts than this: keep the last epoch


def selection_rows(hard: np.ndarray, seed: int) -> np.ndarray:
    """Indices of the unlabeled texts (hard == -1) held out from training to pick the epoch:
    SELECTION_FRACTION of the pool, at most SELECTION_MAX; none when that is under SELECTION_MIN.
    """
    pool = np.flatnonzero(hard < 0)
    n = min(SELECTION_MAX, int(len(pool) * SELECTION_FRACTION))
    if n < SELECTION_MIN:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(pool, n, replace=False))


def _agreement(model: nn.Module, ids, rows, pad_id: int, data: DistillData) -> float:
    """Macro-F1 of the student's predictions against the teacher's on `rows` of `ids`."""
    pred = predict_logits(model, [ids[i] for i in rows], pad_id, data.n_classes).argmax(-1)
    target = data.teacher_logits[rows].argmax(-1)
    return float(f1_score(target, pred, average="macro"))


def warmup_linear(opt: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5 % of `total` steps, then linear decay to 0."""
    warmup = max(1, total // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min((k + 1) / warmup, max(0.0, (total - k) / max(1, total - warmup)))
    )


def pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest one: (input_ids, attention_mask), int64."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
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


def predict_logits(
    model: nn.Module, ids: list[list[int]], pad_id: int, n_classes: int, batch_size: int = 64
) -> np.ndarray:
    """Logits for tokenized texts, in length order for little padding, returned in input order."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), n_classes), dtype=np.float32)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            input_ids, mask = pad([ids[i] for i in idx], pad_id)
            out[idx] = model(input_ids, mask).float().numpy()
    return out


def distill_loop(
    model: nn.Module,
    param_groups: Iterable[dict],
    ids: list[list[int]],
    val_ids: list[list[int]],
    data: DistillData,
    pad_id: int,
    settings: LoopSettings,
    projector: nn.Module | None = None,
) -> LoopResult:
    """Train `model` (with `.encoder` and `.head`) in place; keep the epoch that agrees best
    with the teacher on `selection_rows` (held out from training), or the last epoch when the
    pool is too small to hold any out. With `settings.ema_decay` the epochs are scored and kept
    as the moving average of the weights.

    `projector` maps the student embedding to the teacher's for the feature loss (identity when
    None); it is trained with the model and is not part of the exported module.
    """
    s = settings
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    groups = list(param_groups)
    if projector is not None:
        groups.append({"params": list(projector.parameters()), "lr": groups[-1]["lr"]})
    opt = adamw(groups, weight_decay=0.01)
    feats = (
        torch.from_numpy(data.teacher_features.astype(np.float32))
        if data.teacher_features is not None and s.feature_weight > 0
        else None
    )
    teacher_logits = torch.from_numpy(data.teacher_logits.astype(np.float32))
    hard = torch.from_numpy(data.hard.astype(np.int64))
    held_out = selection_rows(data.hard, s.seed)
    train_rows = np.setdiff1d(np.arange(len(ids)), held_out)
    lengths = np.array([len(ids[i]) for i in train_rows])
    per_epoch = min(len(train_rows), s.max_texts or len(train_rows))
    epochs = s.epochs_for(len(train_rows))
    total = math.ceil(per_epoch / s.batch_size) * epochs
    sched = warmup_linear(opt, total)
    encoder: Any = model.encoder
    head: Any = model.head
    best = -1.0
    kept: dict = {}
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = []
    averaged = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(s.ema_decay))
        if s.ema_decay > 0
        else None
    )
    scored: Any = averaged.module if averaged is not None else model
    with track(s.label, total) as advance:
        for epoch in range(epochs):
            model.train()
            subset = (
                rng.choice(len(train_rows), per_epoch, replace=False)
                if per_epoch < len(train_rows)
                else np.arange(len(train_rows))
            )
            for batch in length_batches(lengths[subset], s.batch_size, rng):
                rows = train_rows[subset[batch]]
                input_ids, mask = pad([ids[i] for i in rows], pad_id)
                idx = torch.from_numpy(rows)
                emb = encoder(input_ids, mask)
                loss = kd_loss(head(emb), teacher_logits[idx], hard[idx], s.temperature, s.alpha)
                if feats is not None:
                    mapped = projector(emb) if projector is not None else emb
                    loss = loss + s.feature_weight * feature_loss(mapped, feats[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                if averaged is not None:
                    averaged.update_parameters(model)
                advance(1)
            pred = predict_logits(scored, val_ids, pad_id, data.n_classes).argmax(-1)
            val = float(f1_score(data.val_y, pred, average="macro"))
            entry = {"epoch": epoch + 1, "val_macro_f1": val}
            if len(held_out):
                entry["selection_agreement_f1"] = _agreement(scored, ids, held_out, pad_id, data)
            history.append(entry)
            score = entry.get("selection_agreement_f1", float(epoch))  # none held out: last
            if score > best:
                best, kept = score, entry
                best_state = {k: v.detach().clone() for k, v in scored.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    selected_on = (
        f"teacher agreement on {len(held_out)} held-out pool texts"
        if len(held_out)
        else "last epoch (pool too small to hold texts out)"
    )
    return LoopResult(val_f1=kept["val_macro_f1"], history=history, selected_on=selected_on)


def body_and_head_groups(model: nn.Module, lr: float, head_lr: float) -> list[dict]:
    """AdamW parameter groups: trainable encoder parameters at `lr`, the head at `head_lr`."""
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [
        {"params": body, "lr": lr},
        {"params": list(model.head.parameters()), "lr": head_lr},  # type: ignore[union-attr]
    ]
