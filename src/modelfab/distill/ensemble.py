"""An ensemble student: several trained students over one tokenization, probabilities averaged.

Heterogeneous small students make different mistakes (a 2-layer transformer reads word order in
32 tokens, a static bag reads 256 tokens of teacher-space vectors, a hashed n-gram bag reads
phrases), so averaging their class probabilities recovers accuracy none of them has alone, at
the cost of running all of them, which for bags is a gather each. The ensemble is one torch
module and so one ONNX graph with the same inputs and output as every other student: the
bundle tokenizes once, at the longest member's length, and each member sees its own prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modelfab.errors import InputError


def truncated(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, max_length: int, sep_id: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `max_length` tokens of right-padded inputs, as the tokenizer would have
    truncated them: a text cut short ends in the separator token again.

    Only tensor ops (no Python branch on values), so the TorchScript exporter keeps it dynamic.
    """
    ids, mask = input_ids[:, :max_length], attention_mask[:, :max_length]
    if sep_id is None:
        return ids, mask
    cut = attention_mask.sum(dim=1) > max_length  # (B,) rows that lost tokens
    last = torch.where(cut, torch.full_like(ids[:, -1], sep_id), ids[:, -1])
    return torch.cat([ids[:, :-1], last.unsqueeze(1)], dim=1), mask


class EnsembleClassifier(nn.Module):
    """(input_ids, attention_mask) -> (B, C) log of the members' mean class probabilities, so
    the softmax a bundle applies gives that mean back."""

    def __init__(
        self, members: Sequence[nn.Module], max_lengths: Sequence[int], sep_id: int | None
    ):
        super().__init__()
        if len(members) < 2 or len(members) != len(max_lengths):
            raise InputError("an ensemble needs two or more members, each with its max_length")
        if min(max_lengths) < 2:
            raise InputError(f"ensemble member max_length must be >= 2, not {min(max_lengths)}")
        self.members = nn.ModuleList(members)
        self.max_lengths = [int(n) for n in max_lengths]
        self.sep_id = sep_id

    @property
    def max_length(self) -> int:
        return max(self.max_lengths)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        probs = []
        for member, length in zip(self.members, self.max_lengths, strict=True):
            if length >= self.max_length:
                ids, mask = input_ids, attention_mask
            else:
                ids, mask = truncated(input_ids, attention_mask, length, self.sep_id)
            probs.append(torch.softmax(member(ids, mask).float(), dim=-1))
        return torch.log(torch.stack(probs).mean(dim=0).clamp_min(1e-12))
