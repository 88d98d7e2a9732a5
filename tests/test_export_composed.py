"""export_bundle(encoder_cache=...): the encoder graph is exported once and joined to each head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modelfab.bench.hardware import _cpuinfo
from modelfab.export import composed, onnx_export
from modelfab.export.bundle import ExportRecipe, export_bundle
from modelfab.export.runtime import BundlePredictor
from tests.test_export import (
    LABELS,
    MAX_LENGTH,
    TEXTS,
    TinyClassifier,
    make_tokenizer,
    torch_proba,
)


class Encoder(torch.nn.Module):
    def __init__(self, vocab_size: int, pooling: str = "mean"):
        super().__init__()
        self.bert = TinyClassifier(vocab_size).bert  # the export tests' tiny BERT
        self.pooling = pooling

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class Classifier(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, input_ids, attention_mask):
        return self.head(self.encoder(input_ids, attention_mask))


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def encoder(tokenizer):
    torch.manual_seed(0)
    return Encoder(len(tokenizer)).eval()


def head(seed: int, hidden: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    if hidden:
        return torch.nn.Sequential(
            torch.nn.Linear(32, 16), torch.nn.GELU(), torch.nn.Linear(16, len(LABELS))
        ).eval()
    return torch.nn.Linear(32, len(LABELS)).eval()


def export(model, tokenizer, out, cache, recipe=None):
    return export_bundle(
        model, tokenizer, LABELS, out, {}, MAX_LENGTH, TEXTS, encoder_cache=cache, recipe=recipe
    )


def test_joined_bundle_predicts_like_the_whole_model_export(tmp_path, encoder, tokenizer):
    model = Classifier(encoder, head(1))
    cache = tmp_path / "cache"
    joined = export(model, tokenizer, tmp_path / "joined", cache)
    whole = export(model, tokenizer, tmp_path / "whole", None)
    card = json.loads((joined.path / "card.json").read_text())["export"]
    assert "encoder graph from the cache" in card["exporter"]
    assert "cache" not in json.loads((whole.path / "card.json").read_text())["export"]["exporter"]
    assert joined.parity["max_abs_diff"] <= 1e-4
    a = BundlePredictor(joined.path).predict_proba(TEXTS)
    b = BundlePredictor(whole.path).predict_proba(TEXTS)
    # int8 graphs: on a CPU without VNNI onnxruntime's u8s8 kernels saturate, and the joined and
    # whole graphs (quantized separately) then differ by up to 0.0074 here (AVX2 only).
    flags = _cpuinfo()[1]
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    np.testing.assert_allclose(a, b, atol=2e-3 if vnni else 1e-2)
    np.testing.assert_allclose(a, torch_proba(model, tokenizer, TEXTS), atol=5e-2)
    # One fp32 and one int8 encoder graph in the cache, no temporary files.
    assert sorted(p.name.split(".", 1)[1] for p in cache.iterdir()) == ["fp32.onnx", "int8.onnx"]


def test_second_head_reuses_the_cached_encoder(tmp_path, encoder, tokenizer, monkeypatch):
    cache = tmp_path / "cache"
    export(Classifier(encoder, head(1)), tokenizer, tmp_path / "first", cache)
    files = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}

    def no_export(*args, **kwargs):
        raise AssertionError("the encoder was exported again")

    monkeypatch.setattr(onnx_export, "export_onnx", no_export)
    monkeypatch.setattr(onnx_export, "quantize_int8", no_export)
    for i, mlp in enumerate([False, True]):
        model = Classifier(encoder, head(2 + i, hidden=mlp))
        info = export(model, tokenizer, tmp_path / f"second-{i}", cache)
        got = BundlePredictor(info.path).predict_proba(TEXTS)
        np.testing.assert_allclose(got, torch_proba(model, tokenizer, TEXTS), atol=5e-2)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == files


def test_other_recipes_and_plain_models_export_whole(tmp_path, encoder, tokenizer):
    cache = tmp_path / "cache"
    model = Classifier(encoder, head(1))
    info = export(model, tokenizer, tmp_path / "fp32", cache, ExportRecipe(quantization="fp32"))
    assert "cache" not in json.loads((info.path / "card.json").read_text())["export"]["exporter"]
    plain = TinyClassifier(len(tokenizer)).eval()  # a head, but no `.encoder`
    info = export(plain, tokenizer, tmp_path / "plain", cache)
    assert "cache" not in json.loads((info.path / "card.json").read_text())["export"]["exporter"]
    assert not cache.exists()


def test_encoder_key_follows_weights_settings_and_export_length(tokenizer):
    torch.manual_seed(0)
    a = Encoder(len(tokenizer))
    torch.manual_seed(0)
    same = Encoder(len(tokenizer))
    key = composed.encoder_key(a, MAX_LENGTH, 17)
    assert composed.encoder_key(same, MAX_LENGTH, 17) == key
    assert composed.encoder_key(a, MAX_LENGTH + 1, 17) != key
    same.pooling = "cls"
    assert composed.encoder_key(same, MAX_LENGTH, 17) != key
    with torch.no_grad():
        a.bert.encoder.layer[0].output.dense.bias[0] += 1e-6
    assert composed.encoder_key(a, MAX_LENGTH, 17) != key
