"""Teacher layer on the tiny random BERT directory from conftest: encoder, cache, precision."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from modelfab.errors import InputError
from modelfab.teachers import precision
from modelfab.teachers.base import Teacher
from modelfab.teachers.cache import FeatureCache
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder, resolve_model_dir

pytestmark = pytest.mark.usefixtures("one_thread")

# Deliberately unsorted lengths, so the length-sorted batches must be put back in order.
TEXTS = [
    "text editor with syntax highlighting and vim macros for the keyboard",
    "fun game",
    "molecular biology analysis toolkit",
    "a",
    "the arcade shooter game with many levels and a classic racing mode for the player",
    "physics data",
    "emacs",
    "an unknownword puzzle",
]


def encoder(path: Path, **kwargs) -> HFTextEncoder:
    return HFTextEncoder(EncoderConfig(path=str(path), **kwargs))


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir) -> HFTextEncoder:
    return encoder(tiny_teacher_dir, max_length=32, batch_size=3)


def copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


class CountingTeacher:
    """A fake teacher: deterministic features from the text hash; records every text encoded."""

    dim = 4

    def __init__(self, teacher_id: str = "counting"):
        self.id = teacher_id
        self.seen: list[str] = []

    def encode(self, texts, progress=None):
        self.seen += list(texts)
        if progress:
            progress(len(texts))
        return np.stack([self.features(t) for t in texts]).astype(np.float32)

    @staticmethod
    def features(text: str) -> np.ndarray:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        return np.random.default_rng(seed).standard_normal(4).astype(np.float32)


# --- HFTextEncoder -----------------------------------------------------------------------


def test_encode_shape_dtype_and_unit_norm(teacher):
    feats = teacher.encode(TEXTS)
    assert teacher.dim == 32
    assert feats.shape == (len(TEXTS), 32)
    assert feats.dtype == np.float32
    assert np.all(np.isfinite(feats))
    # modules.json lists Normalize, so every row is L2-normalised.
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert teacher.module.pooling == "mean" and teacher.module.normalize


def test_encode_returns_rows_in_input_order(teacher):
    feats = teacher.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(feats[i], teacher.encode([text])[0], atol=1e-5)
    # Distinct texts give distinct rows, so a mix-up could not pass unnoticed.
    assert np.abs(feats[0] - feats[1]).max() > 1e-3


def test_encode_matches_manual_mean_pooling(teacher):
    """Features are the mean of the last hidden states over real tokens, then L2-normalised."""
    text = TEXTS[2]
    batch = teacher.tokenize([text])
    with torch.no_grad():
        hidden = teacher.module.backbone(**batch).last_hidden_state[0]  # (T, H)
    expected = hidden.mean(0)
    expected = (expected / expected.norm()).numpy()
    np.testing.assert_allclose(teacher.encode([text])[0], expected, atol=1e-5)


def test_encode_reports_progress_and_handles_empty(teacher):
    counts: list[int] = []
    teacher.encode(TEXTS, progress=counts.append)
    assert sum(counts) == len(TEXTS)
    assert len(counts) == 3  # batch_size=3 over 8 texts
    assert teacher.encode([]).shape == (0, 32)


def test_tokenize_truncates_to_max_length(teacher):
    long_text = " ".join(["game"] * 100)
    assert teacher.tokenize([long_text])["input_ids"].shape[1] == 32
    assert teacher.tokenize([long_text], max_length=8)["input_ids"].shape[1] == 8
    batch = teacher.tokenize(["fun game", "a"])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_teacher_satisfies_protocol_and_reports_size(teacher, tiny_teacher_dir):
    assert isinstance(teacher, Teacher)
    weights = tiny_teacher_dir / "model.safetensors"
    assert teacher.size_bytes == weights.stat().st_size > 0


def test_id_depends_on_max_length_and_precision(tiny_teacher_dir):
    a = encoder(tiny_teacher_dir, max_length=16)
    assert a.id == encoder(tiny_teacher_dir, max_length=16).id
    assert a.id != encoder(tiny_teacher_dir, max_length=32).id
    assert a.id != encoder(tiny_teacher_dir, max_length=16, precision="bf16").id


def test_id_is_path_independent_but_tracks_weights(tiny_teacher_dir, tmp_path):
    base = encoder(tiny_teacher_dir)
    same = copy_dir(tiny_teacher_dir, tmp_path / "same")
    assert encoder(same).id == base.id

    changed = copy_dir(tiny_teacher_dir, tmp_path / "changed")
    weights = load_file(changed / "model.safetensors")
    name = next(k for k in sorted(weights) if k.endswith("word_embeddings.weight"))
    weights[name][5, 0] += 1.0
    save_file(weights, changed / "model.safetensors", metadata={"format": "pt"})
    changed_enc = encoder(changed)
    assert changed_enc.id != base.id

    # The changed weight really was loaded.
    def cell(enc: HFTextEncoder) -> float:
        return enc.module.backbone.embeddings.word_embeddings.weight[5, 0].item()

    assert cell(changed_enc) == pytest.approx(cell(base) + 1.0)


def test_pooling_and_normalize_follow_sentence_transformers_files(tiny_teacher_dir, tmp_path):
    base = encoder(tiny_teacher_dir)

    plain = copy_dir(tiny_teacher_dir, tmp_path / "plain")
    (plain / "modules.json").unlink()
    plain_enc = encoder(plain)
    assert not plain_enc.module.normalize
    assert plain_enc.id != base.id
    norms = np.linalg.norm(plain_enc.encode(TEXTS), axis=1)
    assert np.abs(norms - 1).max() > 1e-2  # random BERT outputs are not unit-norm by chance

    cls = copy_dir(tiny_teacher_dir, tmp_path / "cls")
    cfg_path = cls / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    cfg_path.write_text(json.dumps(cfg))
    cls_enc = encoder(cls)
    assert cls_enc.module.pooling == "cls"
    assert cls_enc.id not in (base.id, plain_enc.id)
    batch = cls_enc.tokenize([TEXTS[0]])
    with torch.no_grad():
        first = cls_enc.module.backbone(**batch).last_hidden_state[0, 0]
    np.testing.assert_allclose(
        cls_enc.encode([TEXTS[0]])[0], (first / first.norm()).numpy(), atol=1e-5
    )


def test_bf16_features_close_to_fp32(tiny_teacher_dir, teacher):
    bf16 = encoder(tiny_teacher_dir, max_length=32, precision="bf16")
    a, b = teacher.encode(TEXTS), bf16.encode(TEXTS)
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.98


def test_bad_precision_is_input_error(tiny_teacher_dir):
    with pytest.raises(InputError, match="precision"):
        encoder(tiny_teacher_dir, precision="fp16")


def test_dir_without_config_is_input_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(InputError, match="config.json"):
        resolve_model_dir(tmp_path)
    with pytest.raises(InputError, match="config.json"):
        encoder(tmp_path)
    with pytest.raises(InputError):
        encoder(tmp_path / "missing")


def test_unloadable_dir_is_input_error(tiny_teacher_dir, tmp_path):
    """config.json present but no tokenizer or weights: one clear InputError, not a traceback."""
    (tmp_path / "config.json").write_bytes((tiny_teacher_dir / "config.json").read_bytes())
    with pytest.raises(InputError, match="cannot load teacher"):
        encoder(tmp_path)


# --- FeatureCache ------------------------------------------------------------------------


def test_cache_first_call_encodes_then_hits(teacher, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first, stats1 = cache.encode(teacher, TEXTS)
    assert (stats1.hits, stats1.forward_passes) == (0, len(TEXTS))
    np.testing.assert_allclose(first, teacher.encode(TEXTS), atol=1e-5)

    second, stats2 = cache.encode(teacher, TEXTS)
    assert (stats2.hits, stats2.forward_passes) == (len(TEXTS), 0)
    assert second.dtype == np.float32
    np.testing.assert_array_equal(first, second)


def test_cache_only_encodes_new_texts(tmp_path):
    fake = CountingTeacher()
    cache = FeatureCache(tmp_path)
    cache.encode(fake, ["a", "b"])
    fake.seen.clear()
    feats, stats = cache.encode(fake, ["b", "c", "a", "d"])
    assert fake.seen == ["c", "d"]
    assert (stats.hits, stats.forward_passes) == (2, 2)
    expected = np.stack([CountingTeacher.features(t) for t in ["b", "c", "a", "d"]])
    np.testing.assert_array_equal(feats, expected)


def test_cache_encodes_duplicates_once(tmp_path):
    fake = CountingTeacher()
    texts = ["x", "y", "x", "z", "y"]
    feats, stats = FeatureCache(tmp_path).encode(fake, texts)
    assert sorted(fake.seen) == ["x", "y", "z"]
    assert stats.forward_passes == 3
    assert stats.hits == 2  # repeats within a call are served from the first encoding
    assert feats.shape == (5, 4)
    np.testing.assert_array_equal(feats[0], feats[2])
    np.testing.assert_array_equal(feats[1], feats[4])
    np.testing.assert_array_equal(feats[3], CountingTeacher.features("z"))
    fake.seen.clear()
    again, stats = FeatureCache(tmp_path).encode(fake, texts)
    assert fake.seen == []
    assert (stats.hits, stats.forward_passes) == (5, 0)
    np.testing.assert_array_equal(again, feats)


def test_cache_chunks_commit_every_text(tmp_path):
    fake = CountingTeacher()
    texts = [f"t{i}" for i in range(7)]
    feats, _ = FeatureCache(tmp_path).encode(fake, texts, chunk=3)
    assert fake.seen == texts
    np.testing.assert_array_equal(feats, np.stack([CountingTeacher.features(t) for t in texts]))


def test_cache_shared_across_instances_on_same_root(tmp_path):
    fake = CountingTeacher()
    first, _ = FeatureCache(tmp_path).encode(fake, ["p", "q"])
    fake.seen.clear()
    second, stats = FeatureCache(tmp_path).encode(fake, ["q", "p"])
    assert fake.seen == []
    assert (stats.hits, stats.forward_passes) == (2, 0)
    np.testing.assert_array_equal(second, first[::-1])


def test_cache_is_keyed_by_teacher_id(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.encode(CountingTeacher("one"), ["p"])
    other = CountingTeacher("two")
    _, stats = cache.encode(other, ["p"])
    assert other.seen == ["p"] and stats.forward_passes == 1


def test_cache_empty_input(tmp_path):
    fake = CountingTeacher()
    feats, stats = FeatureCache(tmp_path).encode(fake, [])
    assert feats.shape == (0, 4) and feats.dtype == np.float32
    assert (stats.hits, stats.forward_passes) == (0, 0)
    assert fake.seen == []


# --- measure_precision -------------------------------------------------------------------

KEYS = {
    "texts",
    "fp32_s",
    "bf16_s",
    "bf16_speedup",
    "min_cosine",
    "cpu_capability",
    "choice",
    "rule",
}


def test_measure_precision_reports_and_follows_rule(teacher):
    result = precision.measure_precision(teacher, TEXTS[:4])
    assert set(result) == KEYS
    assert result["texts"] == 4
    assert result["fp32_s"] > 0 and result["bf16_s"] > 0
    assert 0.9 < result["min_cosine"] <= 1.0 + 1e-6
    rule_says_bf16 = (
        result["fp32_s"] / result["bf16_s"] >= precision.MIN_SPEEDUP
        and result["min_cosine"] >= precision.MIN_COSINE
    )
    # Rounded timings may straddle the threshold; only check when clearly on one side.
    if abs(result["bf16_speedup"] - precision.MIN_SPEEDUP) > 0.01:
        assert result["choice"] == ("bf16" if rule_says_bf16 else "fp32")
    assert result["choice"] in ("fp32", "bf16")


@pytest.mark.parametrize(
    ("t_bf16", "bf16_noise", "choice"),
    [
        (0.5, 0.0, "bf16"),  # 2x faster and identical features
        (1 / 1.2, 0.0, "bf16"),  # exactly the minimum speedup
        (0.9, 0.0, "fp32"),  # only 1.11x faster
        (2.0, 0.0, "fp32"),  # emulated bf16: slower
        (0.5, 1.0, "fp32"),  # faster but features disagree
    ],
)
def test_measure_precision_choice_branches(teacher, monkeypatch, t_bf16, bf16_noise, choice):
    feats = torch.randn(4, 32, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))

    def fake_encode(encoder, batch, bf16):
        assert set(batch) == {"input_ids", "attention_mask"}
        if bf16:
            return feats + bf16_noise * noise, t_bf16
        return feats, 1.0

    monkeypatch.setattr(precision, "_encode", fake_encode)
    result = precision.measure_precision(teacher, TEXTS[:4])
    assert result["choice"] == choice
    assert result["bf16_speedup"] == pytest.approx(1 / t_bf16, abs=1e-3)
    if bf16_noise == 0:
        assert result["min_cosine"] == pytest.approx(1.0, abs=1e-6)
    else:
        assert result["min_cosine"] < precision.MIN_COSINE
