"""The distillation loop's weight average (`LoopSettings.ema_decay`), on a tiny random model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelfab.distill.base import DistillData
from modelfab.distill.train import LoopSettings, body_and_head_groups, distill_loop


class Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(20, 8)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).float()
        return (self.table(input_ids) * m).sum(1) / m.sum(1).clamp_min(1)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = Bag()
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids, mask))


def _train(ema_decay: float) -> tuple[Tiny, dict[str, torch.Tensor]]:
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(1, 20, size=int(rng.integers(2, 6)))) for _ in range(96)]
    hard = np.full(96, -1)
    hard[:12] = np.arange(12) % 3
    data = DistillData(
        texts=[""] * 96,
        hard=hard,
        teacher_logits=rng.normal(size=(96, 3)).astype(np.float32) * 3,
        val_texts=[""] * 12,
        val_y=hard[:12],
        n_classes=3,
    )
    model = Tiny()
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    settings = LoopSettings(
        epochs=3,
        batch_size=8,
        temperature=2,
        alpha=0.7,
        feature_weight=0,
        seed=0,
        ema_decay=ema_decay,
    )
    distill_loop(model, body_and_head_groups(model, 0.05, 0.05), ids, ids[:12], data, 0, settings)
    return model, start


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(sum((a[k] - b[k]).norm() for k in a))


def test_a_vanishing_decay_keeps_the_trained_weights():
    plain, _ = _train(0.0)
    averaged, _ = _train(1e-12)  # the average is the last step's weights
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(averaged.state_dict()[name], value)


def test_the_kept_weights_are_the_moving_average_not_the_last_step():
    plain, start = _train(0.0)
    held, _ = _train(1 - 1e-9)  # the average stays at the first of 36 steps' weights
    moved = _distance(plain.state_dict(), start)
    assert moved > 0.5
    assert _distance(held.state_dict(), start) < 0.3 * moved
    middle, _ = _train(0.9)  # about the last 10 steps
    assert 0.3 * moved < _distance(middle.state_dict(), start)
    assert _distance(middle.state_dict(), plain.state_dict()) > 1e-3


def test_student_configs_check_and_pass_on_the_decay():
    import pytest

    from modelfab.distill.bag import BagStudentConfig
    from modelfab.distill.transformer import TransformerStudentConfig, loop_settings
    from modelfab.errors import InputError

    for config in (TransformerStudentConfig, BagStudentConfig):
        for bad in (1.0, -0.1):
            with pytest.raises(InputError, match="ema_decay"):
                config(ema_decay=bad)
        assert loop_settings(config(ema_decay=0.99), "x").ema_decay == 0.99
        assert loop_settings(config(), "x").ema_decay == 0.0
