"""Small PyTorch helpers shared by training, compression, export and benchmarking."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block and give it back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
