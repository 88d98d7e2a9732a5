"""Export layer on a tiny random BERT classifier and a tiny WordPiece tokenizer built here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from modelfab.bench.latency import bench_bundle, bench_torch
from modelfab.errors import InputError, IntegrityError, NotFoundError
from modelfab.export import onnx_export
from modelfab.export.bundle import export_bundle, verify_bundle
from modelfab.export.manifest import MANIFEST, REQUIRED, sha256_file
from modelfab.export.runtime import BundlePredictor, softmax

MAX_LENGTH = 16
LABELS = ["negative", "neutral", "positive"]
WORDS = [
    "the",
    "a",
    "an",
    "movie",
    "film",
    "plot",
    "acting",
    "was",
    "is",
    "were",
    "great",
    "good",
    "bad",
    "terrible",
    "boring",
    "fun",
    "i",
    "you",
    "it",
    "this",
    "that",
    "loved",
    "hated",
    "liked",
    "very",
    "really",
    "not",
    "so",
    "quite",
    "story",
    "ending",
    "music",
    "actors",
    "scene",
]
TEXTS = [
    "the movie was great",
    "Bad",
    "I loved the acting and the music",
    "this film is really really really boring and the plot was not good at all, the ending "
    "was terrible and the actors were bad",  # longer than MAX_LENGTH: truncated
    "quite fun",
    "an unknownword story",
]


def make_tokenizer() -> transformers.PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + WORDS + [",", "."])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=MAX_LENGTH)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


class TinyClassifier(torch.nn.Module):
    """BertModel + mean pooling over attention_mask + linear head, like the students."""

    def __init__(self, vocab_size: int, n_labels: int = len(LABELS)):
        super().__init__()
        config = transformers.BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        self.bert = transformers.BertModel(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(32, n_labels)

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, H)
        return self.head(pooled)  # (B, C)


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return TinyClassifier(len(tokenizer)).eval()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, model, tokenizer):
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    info = export_bundle(
        model, tokenizer, LABELS, out, {"name": "tiny", "task": "sentiment"}, MAX_LENGTH, TEXTS
    )
    return info


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory, model, tokenizer):
    """A bundle whose model.onnx is the fp32 export, to test the runtime path exactly."""
    out = tmp_path_factory.mktemp("bundles") / "fp32"
    mp = pytest.MonkeyPatch()
    mp.setattr(onnx_export, "quantize_int8", lambda src, dst: Path(shutil.copy(src, dst)))
    try:
        export_bundle(model, tokenizer, LABELS, out, {}, MAX_LENGTH, TEXTS)
    finally:
        mp.undo()
    return out


def torch_proba(model, tokenizer, texts) -> np.ndarray:
    enc = tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np"
    )
    return softmax(onnx_export.torch_logits(model, enc))


def copy_bundle(info, tmp_path) -> Path:
    return Path(shutil.copytree(info.path, tmp_path / "copy"))


def test_bundle_files_manifest_and_card(bundle):
    path = bundle.path
    names = {p.name for p in path.iterdir()}
    assert names == set(REQUIRED) | {MANIFEST}
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest == {name: sha256_file(path / name) for name in REQUIRED}
    assert verify_bundle(path) == manifest
    assert bundle.size_bytes == sum((path / n).stat().st_size for n in names)
    assert bundle.int8_size == (path / "model.onnx").stat().st_size
    assert bundle.int8_size < bundle.fp32_size
    assert json.loads((path / "labels.json").read_text()) == LABELS
    assert json.loads((path / "preprocess.json").read_text())["max_length"] == MAX_LENGTH

    card = json.loads((path / "card.json").read_text())
    assert card["name"] == "tiny" and card["task"] == "sentiment"
    export = card["export"]
    parity = export["parity_fp32_vs_torch"]
    assert parity["atol"] == 1e-4
    assert parity["max_abs_diff"] == bundle.parity["max_abs_diff"] <= 1e-4
    assert 0.0 <= export["int8_vs_fp32"]["argmax_agreement"] <= 1.0
    assert export["sizes"] == {
        "fp32_onnx_bytes": bundle.fp32_size,
        "int8_onnx_bytes": bundle.int8_size,
        "int8_ratio": bundle.int8_size / bundle.fp32_size,
    }
    # No leftovers from staging or quantization next to the bundle.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_int8_model_quantizes_matmuls_and_word_embeddings(bundle, tokenizer):
    graph = onnx.load(str(bundle.path / "model.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert "MatMulInteger" in ops
    # ORT quantizes Gather tables to uint8 (its activation type), MatMul weights to int8.
    one_byte = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    int8 = {i.name for i in graph.initializer if i.data_type in one_byte}
    assert any("word_embeddings" in name for name in int8), sorted(int8)
    float_tables = [
        i.name
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and list(i.dims) == [len(tokenizer), 32]
    ]
    assert float_tables == []


def test_export_onnx_parity_on_padded_batch(tmp_path, model, tokenizer):
    path = onnx_export.export_onnx(model, tmp_path / "m.onnx", MAX_LENGTH)
    # Batch sizes and lengths unlike the export example, with padding.
    for texts in (TEXTS, TEXTS[:1]):
        enc = tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np"
        )
        result = onnx_export.check_parity(model, path, enc, atol=1e-4)
        assert result["passes"] and result["max_abs_diff"] <= 1e-4
        assert result["n_samples"] == len(texts)

    # A model that no longer matches the export fails the check.
    changed = TinyClassifier(len(tokenizer)).eval()
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.head.bias += 0.01
    with pytest.raises(IntegrityError, match="differs from PyTorch"):
        onnx_export.check_parity(changed, path, enc, atol=1e-4)


def test_predictor_matches_torch_on_fp32_bundle(fp32_bundle, model, tokenizer):
    expected = torch_proba(model, tokenizer, TEXTS)
    predictor = BundlePredictor(fp32_bundle, threads=1)
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), expected, atol=1e-5)
    # Chunking into batches (different padding) does not change results.
    small = BundlePredictor(fp32_bundle, batch_size=2)
    np.testing.assert_allclose(small.predict_proba(TEXTS), expected, atol=1e-5)
    predictions = predictor.predict(TEXTS)
    assert [p["label"] for p in predictions] == [LABELS[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([p["score"] for p in predictions], expected.max(1), atol=1e-5)
    assert predictor.predict_proba([]).shape == (0, len(LABELS))
    with pytest.raises(InputError):
        predictor.predict_proba("not a list")


def test_int8_predictor_agreement_matches_card(bundle, model, tokenizer):
    predictor = BundlePredictor(bundle.path, threads=1)
    proba = predictor.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(LABELS))
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    expected = torch_proba(model, tokenizer, TEXTS)
    card = json.loads((bundle.path / "card.json").read_text())["export"]["int8_vs_fp32"]
    agreement = float(np.mean(proba.argmax(1) == expected.argmax(1)))
    assert agreement == pytest.approx(card["argmax_agreement"])
    assert np.abs(proba - expected).max() == pytest.approx(card["max_prob_diff"], abs=1e-5)


@pytest.mark.parametrize(
    "tamper, name",
    [
        (lambda p: (p / "labels.json").write_text('["a", "b", "c"]'), "labels.json"),
        (
            lambda p: (p / "model.onnx").write_bytes((p / "model.onnx").read_bytes() + b"\0"),
            "model.onnx",
        ),
        (lambda p: (p / "tokenizer.json").unlink(), "tokenizer.json"),
        (lambda p: (p / "model.onnx.data").write_bytes(b"weights"), "model.onnx.data"),
        (lambda p: (p / MANIFEST).unlink(), MANIFEST),
    ],
    ids=["modified", "modified-model", "deleted", "extra-file", "no-manifest"],
)
def test_tampered_bundle_is_refused(bundle, tmp_path, tamper, name):
    path = copy_bundle(bundle, tmp_path)
    verify_bundle(path)
    tamper(path)
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")) as excinfo:
        verify_bundle(path)
    assert "\n" not in str(excinfo.value)
    with pytest.raises(IntegrityError):
        BundlePredictor(path)


def test_missing_bundle_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        verify_bundle(tmp_path / "nope")


def test_failed_export_leaves_nothing(tmp_path, model, tokenizer, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(onnx_export, "quantize_int8", boom)
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="quantizer crashed"):
        export_bundle(model, tokenizer, LABELS, out, {}, MAX_LENGTH, TEXTS)
    assert list(tmp_path.iterdir()) == []


def test_failed_reexport_keeps_previous_bundle(bundle, tmp_path, model, tokenizer):
    path = copy_bundle(bundle, tmp_path)
    before = verify_bundle(path)
    with pytest.raises(IntegrityError, match="int8 model agrees"):
        export_bundle(
            model, tokenizer, LABELS, path, {}, MAX_LENGTH, TEXTS, min_int8_agreement=1.01
        )
    assert verify_bundle(path) == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_label_count_must_match_model(tmp_path, model, tokenizer):
    with pytest.raises(InputError, match="3 outputs but 2 labels"):
        export_bundle(model, tokenizer, ["a", "b"], tmp_path / "b", {}, MAX_LENGTH, TEXTS)
    with pytest.raises(InputError):
        export_bundle(model, tokenizer, ["a", "a", "b"], tmp_path / "b", {}, MAX_LENGTH, TEXTS)
    with pytest.raises(InputError):
        export_bundle(model, tokenizer, LABELS, tmp_path / "b", {}, MAX_LENGTH, [])
    assert list(tmp_path.iterdir()) == []


def test_runtime_does_not_import_torch_or_transformers(bundle):
    code = (
        "import sys; from modelfab.export.runtime import BundlePredictor; "
        f"p = BundlePredictor({str(bundle.path)!r}); p.predict(['x']); "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bench_bundle_and_torch_smoke(bundle, model, tokenizer):
    fast = {"warmup": 1, "repeats": 2, "b1_calls": 5, "max_seconds": 2.0}
    result = bench_bundle(bundle.path, TEXTS, threads=1, **fast)
    assert result["b1_calls"] == 5 and result["b32_repeats"] == 2
    assert result["throughput_b32"] > 0 and result["latency_b1_p50_ms"] > 0

    seen = []
    original_forward = model.forward

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original_forward(*args, **kwargs)

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model.forward = spy
        result = bench_torch(model, tokenizer, TEXTS, MAX_LENGTH, threads=1, **fast)
        assert torch.get_num_threads() == 2
    finally:
        del model.forward
        torch.set_num_threads(previous)
    assert seen and set(seen) == {1}
    assert result["backend"] == "torch-fp32" and result["throughput_b32"] > 0
