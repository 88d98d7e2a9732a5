"""Adaptation strategies: turn the frozen teacher into a classifier for one scenario.

Every strategy sees the same `AdaptData` (texts and cached teacher features per split) and
ends with a torch `head` mapping teacher features to logits, so the adapted teacher is always
`PooledEncoder -> head` and can be benchmarked and exported the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch import nn


@dataclass
class AdaptData:
    train_texts: list[str]
    train_x: np.ndarray  # (N, D) teacher features
    train_y: np.ndarray  # (N,) int class index
    val_texts: list[str]
    val_x: np.ndarray
    val_y: np.ndarray
    n_classes: int


class Adapter(Protocol):
    name: str

    def fit(self, data: AdaptData) -> Adapter: ...

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, C) logits from teacher features."""
        ...

    def head(self) -> nn.Module:
        """The fitted head as a torch module: (B, D) features -> (B, C) logits."""
        ...
