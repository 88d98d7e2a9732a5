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
from modelfab.torchutil import eval_mode


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
    try:
        with eval_mode(model), torch.inference_mode():
            for input_ids, mask in batches:
                model(input_ids, mask)
    finally:
        for h in hooks:
            h.remove()
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


def _pruned_copy(model: nn.Module, importance: np.ndarray, units: int, keep: int, what: str):
    """Check a pruning request against the model and return (copy, indices kept per layer)."""
    layers = _layers(model)
    if not 0 < keep < units:
        raise InputError(f"{what} to keep per layer must be in 1..{units - 1}, not {keep}")
    if importance.shape != (len(layers), units):
        raise InputError(f"{what} importance must have shape {(len(layers), units)}")
    kept = [np.sort(np.argsort(-row, kind="stable")[:keep]) for row in importance]
    return copy.deepcopy(model), kept


def prune_heads(model: nn.Module, importance: np.ndarray, per_layer: int) -> nn.Module:
    """A copy of `model` without the `per_layer` least important heads of every layer
    (`importance`: the (layers, heads) array of `Importance.heads`)."""
    n_heads = _layers(model)[0].attention.self.num_attention_heads
    out, kept = _pruned_copy(model, importance, n_heads, n_heads - per_layer, "attention heads")
    for keep, layer in zip(kept, _layers(out), strict=True):
        attention = layer.attention.self
        size = attention.attention_head_size
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
    width = _layers(model)[0].output.dense.in_features
    out, kept = _pruned_copy(model, importance, width, keep, "feed-forward neurons")
    for index, layer in zip(kept, _layers(out), strict=True):
        rows = torch.from_numpy(index)
        layer.intermediate.dense = _keep_rows(layer.intermediate.dense, rows)
        layer.output.dense = _keep_columns(layer.output.dense, rows)
    return out
