"""Structural compression of BERT-style transformer students: drop layers, prune heads.

Both act on a `SequenceClassifier` whose encoder is a `PooledEncoder` over a HF BERT-like
backbone (`backbone.encoder.layer[i].attention.self.{query,key,value}` and
`.attention.output.dense`, feed-forward `.intermediate.dense` / `.output.dense`). Pruned heads
and neurons are removed from the weight matrices, not masked, so
the exported graph really is smaller and faster. A short distillation run afterwards
(`recover`) lets the remaining weights make up for what was removed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from modelfab.errors import InputError


def _layers(model: nn.Module) -> Any:
    try:
        return model.encoder.backbone.encoder.layer  # type: ignore[union-attr]
    except AttributeError:
        raise InputError(
            "layer dropping and head pruning need a transformer student (BERT-like backbone)"
        ) from None


def drop_layers(model: nn.Module, keep: list[int]) -> nn.Module:
    """A copy of `model` keeping only the transformer layers at indices `keep` (in order)."""
    layers = _layers(model)
    if not keep or sorted(set(keep)) != list(keep) or not all(0 <= i < len(layers) for i in keep):
        raise InputError(f"keep must be increasing layer indices in 0..{len(layers) - 1}: {keep}")
    out: Any = copy.deepcopy(model)
    backbone = out.encoder.backbone
    backbone.encoder.layer = nn.ModuleList([backbone.encoder.layer[i] for i in keep])
    backbone.config.num_hidden_layers = len(keep)
    for new_index, layer in enumerate(backbone.encoder.layer):
        attention = layer.attention.self
        if hasattr(attention, "layer_idx"):
            attention.layer_idx = new_index
    return out


@dataclass
class Importance:
    heads: np.ndarray  # (layers, heads): mean norm of each head's contribution
    neurons: np.ndarray  # (layers, intermediate): mean |activation| x norm of its output weights


def importance(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Importance:
    """How much each attention head and each feed-forward neuron contributes on real inputs.

    A head's contribution is its slice of the context vectors times its slice of the output
    projection; a neuron's is its activation times its column of the down projection. Parts
    whose contribution is small matter least and are pruned first.
    """
    layers = _layers(model)
    n_heads = layers[0].attention.self.num_attention_heads
    size = layers[0].attention.self.attention_head_size
    width = layers[0].output.dense.in_features
    heads = np.zeros((len(layers), n_heads))
    neurons = np.zeros((len(layers), width))
    hooks = []

    def head_hook(index: int, dense: nn.Linear):
        def hook(_module, args):
            context = args[0]  # (B, T, heads * size)
            for h in range(n_heads):
                cols = slice(h * size, (h + 1) * size)
                part = context[..., cols] @ dense.weight[:, cols].T
                heads[index, h] += float(part.norm(dim=-1).mean())

        return hook

    def neuron_hook(index: int, dense: nn.Linear):
        def hook(_module, args):
            activation = args[0].abs().mean(dim=(0, 1))  # (intermediate,)
            neurons[index] += (activation * dense.weight.norm(dim=0)).numpy()

        return hook

    for i, layer in enumerate(layers):
        hooks.append(
            layer.attention.output.dense.register_forward_pre_hook(
                head_hook(i, layer.attention.output.dense)
            )
        )
        hooks.append(
            layer.output.dense.register_forward_pre_hook(neuron_hook(i, layer.output.dense))
        )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for input_ids, mask in batches:
                model(input_ids, mask)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    n = max(1, len(batches))
    return Importance(heads=heads / n, neurons=neurons / n)


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    new = nn.Linear(linear.in_features, len(rows), bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[rows])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[rows])
    return new


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> nn.Linear:
    new = nn.Linear(len(columns), linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, columns])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def prune_heads(model: nn.Module, importance: np.ndarray, per_layer: int) -> nn.Module:
    """A copy of `model` without the `per_layer` least important heads of every layer
    (`importance`: the (layers, heads) array of `Importance.heads`)."""
    layers = _layers(model)
    n_heads = layers[0].attention.self.num_attention_heads
    if not 0 < per_layer < n_heads:
        raise InputError(f"heads to prune per layer must be in 1..{n_heads - 1}, not {per_layer}")
    if importance.shape != (len(layers), n_heads):
        raise InputError(f"importance must have shape {(len(layers), n_heads)}")
    out: Any = copy.deepcopy(model)
    for i, layer in enumerate(_layers(out)):
        attention = layer.attention.self
        size = attention.attention_head_size
        keep = sorted(np.argsort(-importance[i], kind="stable")[: n_heads - per_layer].tolist())
        index = torch.tensor([h * size + j for h in keep for j in range(size)], dtype=torch.long)
        attention.query = _keep_rows(attention.query, index)
        attention.key = _keep_rows(attention.key, index)
        attention.value = _keep_rows(attention.value, index)
        layer.attention.output.dense = _keep_columns(layer.attention.output.dense, index)
        attention.num_attention_heads = len(keep)
        attention.all_head_size = len(keep) * size
    return out


def prune_neurons(model: nn.Module, importance: np.ndarray, keep: int) -> nn.Module:
    """A copy of `model` keeping the `keep` most important feed-forward neurons of every layer
    (`importance`: the (layers, intermediate) array of `Importance.neurons`)."""
    layers = _layers(model)
    width = layers[0].output.dense.in_features
    if not 0 < keep < width:
        raise InputError(f"feed-forward neurons to keep must be in 1..{width - 1}, not {keep}")
    if importance.shape != (len(layers), width):
        raise InputError(f"importance must have shape {(len(layers), width)}")
    out: Any = copy.deepcopy(model)
    for i, layer in enumerate(_layers(out)):
        index = torch.from_numpy(np.sort(np.argsort(-importance[i], kind="stable")[:keep]))
        layer.intermediate.dense = _keep_rows(layer.intermediate.dense, index)
        layer.output.dense = _keep_columns(layer.output.dense, index)
    return out
