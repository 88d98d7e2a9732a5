"""SetFit-style contrastive adaptation, with the whole body or LoRA adapters trained.

SetFit (Tunstall et al., 2022) fine-tunes a sentence encoder on pairs of labeled texts (same
class: cosine similarity pulled to 1; different classes: to 0), then fits a logistic-regression
head on the tuned embeddings. Here the pairs come from the same sampling (one positive and one
negative partner per example per iteration), the body is the teacher's own pooled encoder, it
reads the teacher's `max_length` tokens, and with `lora_rank > 0` only LoRA adapters on the
attention query/value projections are trained (peft) and merged back afterwards, so the result is
a plain encoder the pipeline exports like any other.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from modelfab.adapt.base import AdaptData
from modelfab.adapt.heads import LogisticHead
from modelfab.errors import InputError
from modelfab.progress import track
from modelfab.teachers.hf_encoder import encode_in_batches


def contrastive_pairs(
    y: np.ndarray, iterations: int, rng: np.random.Generator
) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: per iteration, each example with one same-class partner (target 1)
    and one other-class partner (target 0). Classes with a single example get no positive."""
    y = np.asarray(y)
    by_class = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    out: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for i, c in enumerate(y):
            same = by_class[c][by_class[c] != i]
            if len(same):
                out.append((i, int(rng.choice(same)), 1.0))
            other = np.flatnonzero(y != c)
            if len(other):
                out.append((i, int(rng.choice(other)), 0.0))
    order = rng.permutation(len(out))
    return [out[k] for k in order]


class ContrastiveAdapter:
    """Adapter "contrastive" (whole body) or "lora" (`lora_rank` > 0): pairs, then a head."""

    def __init__(
        self,
        teacher,
        iterations: int = 5,
        batch_size: int = 16,
        lr: float = 2e-5,
        lora_rank: int = 0,
        lora_lr: float = 1e-3,
        max_examples: int = 2000,
        seed: int = 0,
    ):
        if iterations < 1 or batch_size < 1:
            raise InputError("contrastive adaptation needs iterations >= 1 and batch_size >= 1")
        self.teacher = teacher
        self.iterations, self.batch_size, self.lr = iterations, batch_size, lr
        self.lora_rank, self.lora_lr, self.seed = lora_rank, lora_lr, seed
        self.max_examples = max_examples  # pairs grow with examples: cap the CPU cost
        self.name = "lora" if lora_rank else "contrastive"

    def _trainable_encoder(self) -> tuple[nn.Module, list[nn.Parameter], object]:
        encoder = copy.deepcopy(self.teacher.module).train()
        if not self.lora_rank:
            return encoder, list(encoder.parameters()), None
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=self.lora_rank,
            lora_alpha=2 * self.lora_rank,
            lora_dropout=0.1,
            target_modules=["query", "value"],
        )
        peft_model = get_peft_model(encoder.backbone, config)
        encoder.backbone = peft_model
        params = [p for p in peft_model.parameters() if p.requires_grad]
        return encoder, params, peft_model

    def fit(self, data: AdaptData) -> ContrastiveAdapter:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        encoder, params, peft_model = self._trainable_encoder()
        keep = np.sort(rng.permutation(len(data.train_y))[: self.max_examples])
        texts = [data.train_texts[i] for i in keep]
        pairs = contrastive_pairs(data.train_y[keep], self.iterations, rng)
        opt = torch.optim.AdamW(params, lr=self.lora_lr if self.lora_rank else self.lr)
        steps = -(-len(pairs) // self.batch_size)
        # SetFit's schedule: linear warm-up over the first 10 % of steps, then linear decay.
        warmup = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min((k + 1) / warmup, max(0.0, (steps - k) / max(1, steps - warmup)))
        )
        with track(f"{self.name} adaptation", steps) as advance:
            for start in range(0, len(pairs), self.batch_size):
                batch = pairs[start : start + self.batch_size]
                left = encoder(**self.teacher.tokenize([texts[i] for i, _, _ in batch]))
                right = encoder(**self.teacher.tokenize([texts[j] for _, j, _ in batch]))
                target = torch.tensor([t for _, _, t in batch])
                cos = nn.functional.cosine_similarity(left, right)
                loss = nn.functional.mse_loss(cos, target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                advance(1)
        if peft_model is not None:
            encoder.backbone = peft_model.merge_and_unload()  # type: ignore[attr-defined]
        # peft froze every base weight; students derived from this body must be able to train.
        self.encoder_ = encoder.requires_grad_(True).eval()
        self.pairs_ = len(pairs)
        encode = lambda t: encode_in_batches(  # noqa: E731
            self.encoder_, self.teacher.tokenize, t, self.teacher.dim
        )
        tuned = AdaptData(
            data.train_texts,
            encode(data.train_texts),
            data.train_y,
            data.val_texts,
            encode(data.val_texts),
            data.val_y,
            data.n_classes,
        )
        self.head_ = LogisticHead().fit(tuned)
        self.val_f1_ = self.head_.val_f1_
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits from features of the *tuned* encoder (see `encoder_`)."""
        return self.head_.logits(x)

    def head(self) -> nn.Module:
        return self.head_.head()
