"""Full fine-tuning: a copy of the teacher body and a linear head, trained end to end.

Costly on CPU (a forward and backward pass through every layer per text), so it runs on at
most `max_examples` training texts for `epochs` epochs; it is kept only when it beats the
frozen-feature heads on validation. When it wins, the pipeline re-encodes the scenario's texts
with `encoder_` and uses `head()` on those features.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from modelfab.adapt.base import AdaptData
from modelfab.progress import track
from modelfab.teachers.hf_encoder import encode_in_batches
from modelfab.torchutil import adamw


class FineTuneAdapter:
    """Adapter "finetune": every teacher weight trained with cross-entropy on the labels."""

    name = "finetune"

    def __init__(
        self,
        teacher,
        epochs: int = 1,
        max_examples: int = 2000,
        batch_size: int = 16,
        lr: float = 5e-5,
        head_lr: float = 5e-3,
        seed: int = 0,
    ):
        self.teacher = teacher
        self.epochs, self.max_examples, self.batch_size = epochs, max_examples, batch_size
        self.lr, self.head_lr, self.seed = lr, head_lr, seed

    def fit(self, data: AdaptData) -> FineTuneAdapter:
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        encoder = copy.deepcopy(self.teacher.module).train()
        head = nn.Linear(data.train_x.shape[1], data.n_classes)
        keep = rng.permutation(len(data.train_texts))[: self.max_examples]
        texts = [data.train_texts[i] for i in keep]
        labels = torch.from_numpy(data.train_y[keep]).long()
        opt = adamw(
            [
                {"params": encoder.parameters(), "lr": self.lr},
                {"params": head.parameters(), "lr": self.head_lr},
            ],
            weight_decay=0.01,
        )
        steps = self.epochs * -(-len(texts) // self.batch_size)
        with track("fine-tune teacher", steps) as advance:
            for _ in range(self.epochs):
                encoder.train()
                for batch in np.array_split(
                    rng.permutation(len(texts)), max(1, steps // self.epochs)
                ):
                    inputs = self.teacher.tokenize([texts[i] for i in batch])
                    loss = nn.functional.cross_entropy(head(encoder(**inputs)), labels[batch])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    advance(1)
        self.encoder_ = encoder.eval()
        self.head_ = head.eval()
        val_x = encode_in_batches(
            self.encoder_, self.teacher.tokenize, data.val_texts, self.teacher.dim
        )
        self.val_f1_ = float(f1_score(data.val_y, self.logits(val_x).argmax(1), average="macro"))
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits from features of the *fine-tuned* encoder (see `encoder_`)."""
        with torch.no_grad():
            return self.head_(torch.from_numpy(x)).numpy()

    def head(self) -> nn.Module:
        return self.head_
