"""Structural compression: layer dropping and head / neuron pruning remove real weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelfab.compress.structure import drop_layers, importance, prune_heads, prune_neurons
from modelfab.distill.transformer import SequenceClassifier, truncated_backbone
from modelfab.errors import InputError
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder, PooledEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model(tiny_teacher_dir, one_thread) -> SequenceClassifier:
    teacher = HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))
    torch.manual_seed(0)
    encoder = PooledEncoder(truncated_backbone(teacher, 3), "mean", normalize=False)
    return SequenceClassifier(encoder, nn.Linear(teacher.dim, 3)).eval()


def batch():
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 14, 3, 0]])
    return ids, (ids > 0).long()


def test_drop_layers_keeps_the_chosen_layers(model):
    dropped = drop_layers(model, [0, 2])
    layers = dropped.encoder.backbone.encoder.layer
    assert len(layers) == 2 and dropped.encoder.backbone.config.num_hidden_layers == 2
    original = model.encoder.backbone.encoder.layer
    torch.testing.assert_close(
        layers[1].output.dense.weight, original[2].output.dense.weight, rtol=0, atol=0
    )
    assert len(original) == 3  # the source model is untouched
    with torch.no_grad():
        assert dropped(*batch()).shape == (2, 3)


@pytest.mark.parametrize("keep", [[], [1, 0], [0, 3]])
def test_drop_layers_rejects_bad_indices(model, keep):
    with pytest.raises(InputError, match="keep"):
        drop_layers(model, keep)


def _silence_head(model, layer: int, head: int) -> SequenceClassifier:
    """A copy whose head `head` in `layer` contributes nothing (zero output columns)."""
    import copy

    out = copy.deepcopy(model)
    attention = out.encoder.backbone.encoder.layer[layer].attention
    size = attention.self.attention_head_size
    with torch.no_grad():
        attention.output.dense.weight[:, head * size : (head + 1) * size] = 0
    return out


def test_pruning_a_silent_head_changes_nothing(model):
    silent = _silence_head(model, layer=1, head=0)
    scores = importance(silent, [batch()])
    assert scores.heads.shape == (3, 2) and scores.heads[1, 0] == 0 and scores.heads[1, 1] > 0
    pruned = prune_heads(silent, scores.heads, per_layer=1)
    attention = pruned.encoder.backbone.encoder.layer[1].attention
    assert attention.self.num_attention_heads == 1
    assert attention.self.query.out_features == attention.self.attention_head_size
    assert attention.output.dense.in_features == attention.self.attention_head_size
    # per_layer applies to every layer, so the exact-output check is made on a model whose
    # pruned heads are silent in all three layers.
    all_silent = _silence_head(_silence_head(silent, 0, 1), 2, 1)
    scores_all = importance(all_silent, [batch()])
    pruned_all = prune_heads(all_silent, scores_all.heads, per_layer=1)
    with torch.no_grad():
        torch.testing.assert_close(pruned_all(*batch()), all_silent(*batch()), rtol=1e-5, atol=1e-5)


def test_pruning_silent_neurons_changes_nothing(model):
    import copy

    silent = copy.deepcopy(model)
    for layer in silent.encoder.backbone.encoder.layer:
        with torch.no_grad():
            layer.output.dense.weight[:, 32:] = 0  # neurons 32..63 contribute nothing
    scores = importance(silent, [batch()])
    assert (scores.neurons[:, 32:] == 0).all() and (scores.neurons[:, :32] > 0).all()
    pruned = prune_neurons(silent, scores.neurons, keep=32)
    layer = pruned.encoder.backbone.encoder.layer[0]
    assert layer.intermediate.dense.out_features == 32 and layer.output.dense.in_features == 32
    with torch.no_grad():
        torch.testing.assert_close(pruned(*batch()), silent(*batch()), rtol=1e-5, atol=1e-5)


def test_pruning_rejects_removing_everything(model):
    scores = importance(model, [batch()])
    with pytest.raises(InputError, match="heads"):
        prune_heads(model, scores.heads, per_layer=2)
    with pytest.raises(InputError, match="shape"):
        prune_heads(model, scores.heads[:1], per_layer=1)
    with pytest.raises(InputError, match="neurons"):
        prune_neurons(model, scores.neurons, keep=0)
