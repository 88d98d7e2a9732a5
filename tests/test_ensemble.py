"""The ensemble student: truncation inside the graph, probability averaging, ONNX parity, and
which candidates become its members."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modelfab.distill.bag import BagEncoder
from modelfab.distill.ensemble import EnsembleClassifier, truncated
from modelfab.distill.transformer import SequenceClassifier
from modelfab.errors import InputError
from modelfab.export import onnx_export
from modelfab.export.bundle import ExportRecipe
from modelfab.pipeline.variants import Variant, _ensemble

SEP = 3


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _tokenized(words: list[int], max_length: int) -> list[int]:
    """What a BERT tokenizer with truncation gives: [CLS] words [SEP], cut to max_length."""
    return [2] + words[: max_length - 2] + [SEP]


def test_truncated_matches_tokenizer_truncation():
    texts = [list(range(10, 30)), list(range(10, 14)), list(range(40, 47))]
    long_ids, long_mask = _padded([_tokenized(t, 64) for t in texts])
    want_ids, want_mask = _padded([_tokenized(t, 8) for t in texts])
    ids, mask = truncated(long_ids, long_mask, 8, SEP)
    assert torch.equal(ids, want_ids)
    assert torch.equal(mask, want_mask)


def test_truncated_leaves_short_batches_alone():
    ids, mask = _padded([_tokenized([10, 11], 64), _tokenized([12], 64)])
    got_ids, got_mask = truncated(ids, mask, 8, SEP)
    assert torch.equal(got_ids, ids) and torch.equal(got_mask, mask)


def _bag(seed: int, vocab: int = 60, n_classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    model = SequenceClassifier(BagEncoder(vocab, 8), nn.Linear(8, n_classes))
    with torch.no_grad():
        model.encoder.token_weight.weight.normal_()  # distinct token weights: position matters
    return model.eval()


def test_ensemble_is_the_mean_of_member_probabilities():
    members = [_bag(0), _bag(1)]
    ensemble = EnsembleClassifier(members, [6, 64], SEP).eval()
    ids, mask = _padded([_tokenized(list(range(10, 40)), 64), _tokenized([10, 11, 12], 64)])
    with torch.no_grad():
        short = truncated(ids, mask, 6, SEP)
        want = (
            torch.softmax(members[0](*short), -1) + torch.softmax(members[1](ids, mask), -1)
        ) / 2
        got = torch.softmax(ensemble(ids, mask), -1)
    assert torch.allclose(got, want, atol=1e-6)
    # the short member really saw fewer tokens: without truncation the result differs
    with torch.no_grad():
        untruncated = (
            torch.softmax(members[0](ids, mask), -1) + torch.softmax(members[1](ids, mask), -1)
        ) / 2
    assert not torch.allclose(got, untruncated, atol=1e-4)


def test_ensemble_onnx_matches_torch_at_any_length(tmp_path):
    ensemble = EnsembleClassifier([_bag(0), _bag(1)], [6, 64], SEP)
    path = onnx_export.export_onnx(ensemble, tmp_path / "e.onnx", ensemble.max_length)
    for words in ([10, 11], list(range(10, 25)), list(range(10, 60))):
        ids, mask = _padded([_tokenized(words, 64), _tokenized([12, 13, 14], 64)])
        inputs = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        want = onnx_export.torch_logits(ensemble, inputs)
        got = onnx_export.onnx_logits(path, inputs)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_ensemble_needs_two_members():
    with pytest.raises(InputError, match="two or more"):
        EnsembleClassifier([_bag(0)], [8], SEP)
    with pytest.raises(InputError, match="max_length"):
        EnsembleClassifier([_bag(0), _bag(1)], [1, 8], SEP)


class _Tok:
    sep_token_id = SEP

    def __init__(self, size: int = 60):
        self.size = size

    def __len__(self) -> int:
        return self.size


def _variant(name: str, family: str, parent: str | None, export: ExportRecipe, tok=None):
    return Variant(
        name=name,
        role="student",
        family=family,
        module=_bag(len(name)),
        tokenizer=tok or _Tok(),
        max_length=32 if family == "transformer" else 256,
        recipe={"family": family},
        export=export,
        parent=parent,
    )


def test_ensemble_members_are_the_bags_and_the_pruned_transformer():
    main, fp32 = ExportRecipe(), ExportRecipe("fp32")
    variants = [
        _variant("transformer-l2-int8", "transformer", None, main),
        _variant("transformer-l2-fp32", "transformer", "transformer-l2-int8", fp32),
        _variant("transformer-l2-pruned-int8", "transformer", "transformer-l2-int8", main),
        _variant("static-embedding-int8", "static-embedding", None, main),
        _variant("hashed-ngram-int8", "hashed-ngram", None, main),
    ]
    (ensemble,) = _ensemble(variants, main)
    assert ensemble.recipe["members"] == [
        "static-embedding-int8",
        "hashed-ngram-int8",
        "transformer-l2-pruned-int8",
    ]
    assert ensemble.name == "ensemble-int8" and ensemble.family == "ensemble"
    assert ensemble.max_length == 256 and ensemble.parent == "transformer-l2-pruned-int8"
    # without a pruned transformer, the main one joins
    (plain,) = _ensemble([v for v in variants if "pruned" not in v.name], main)
    assert plain.recipe["members"][-1] == "transformer-l2-int8"


def test_no_ensemble_of_one_or_of_different_tokenizers():
    main = ExportRecipe()
    assert _ensemble([_variant("hashed-ngram-int8", "hashed-ngram", None, main)], main) == []
    mixed = [
        _variant("static-embedding-int8", "static-embedding", None, main),
        _variant("hashed-ngram-int8", "hashed-ngram", None, main, tok=_Tok(99)),
    ]
    assert _ensemble(mixed, main) == []
