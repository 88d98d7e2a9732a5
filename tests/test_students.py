"""Every student family behind one interface: fit -> export -> ONNX parity -> reload -> predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_distill import CLASSES, make_distill_data, small_config

from modelfab.distill.bag import (
    BagEncoder,
    BagStudentConfig,
    HashedNgramStudent,
    StaticEmbeddingStudent,
    token_vectors,
)
from modelfab.distill.base import Student
from modelfab.distill.transformer import TransformerStudent
from modelfab.errors import InputError
from modelfab.export.bundle import ExportRecipe, export_bundle
from modelfab.export.runtime import BundlePredictor
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

BAG = {"max_length": 32, "epochs": 12, "batch_size": 8, "lr": 3e-2, "head_lr": 3e-2, "min_steps": 0}


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir, one_thread) -> HFTextEncoder:
    return HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))


def make_student(family: str, teacher, tmp_path):
    if family == "transformer":
        return TransformerStudent(teacher, small_config())
    if family == "static-embedding":
        return StaticEmbeddingStudent(teacher, BagStudentConfig(**BAG), vectors_cache=tmp_path)
    return HashedNgramStudent(teacher, BagStudentConfig(buckets=97, **BAG))


@pytest.mark.parametrize("family", ["transformer", "static-embedding", "hashed-ngram"])
@pytest.mark.parametrize("quantization", ["dynamic-int8", "fp32"])
def test_family_conformance(family, quantization, teacher, tiny_texts, tmp_path):
    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels)
    student = make_student(family, teacher, tmp_path).fit(data)
    assert isinstance(student, Student) and student.family == family
    assert student.val_f1_ >= 0.6, student.history_  # it learned the tiny task
    assert student.recipe()["family"] == family

    info = export_bundle(
        student.module(),
        student.tokenizer,
        CLASSES,
        tmp_path / "bundle",
        {"name": family},
        student.max_length,
        data.val_texts,
        recipe=ExportRecipe(quantization=quantization),
    )
    assert info.parity["max_abs_diff"] <= 1e-4
    predictor = BundlePredictor(info.path)  # reload from disk, manifest verified
    probs = predictor.predict_proba(data.val_texts)
    expected = torch.softmax(torch.from_numpy(student.predict_logits(data.val_texts)), -1)
    agreement = np.mean(probs.argmax(1) == expected.numpy().argmax(1))
    assert agreement >= (1.0 if quantization == "fp32" else 0.8)
    if quantization == "fp32":
        np.testing.assert_allclose(probs, expected.numpy(), atol=1e-4)
    card = json.loads((info.path / "card.json").read_text())
    assert card["export"]["quantization"]["method"] == (
        "none" if quantization == "fp32" else "dynamic"
    )
    assert [p["label"] for p in predictor.predict(data.val_texts[:2])] == [
        CLASSES[i] for i in probs[:2].argmax(1)
    ]


def test_static_student_starts_from_the_teacher_token_vectors(teacher, tmp_path):
    vectors = token_vectors(teacher)
    tok = teacher.tokenizer
    word = tok.convert_tokens_to_ids("game")
    ids = torch.tensor([[tok.cls_token_id, word, tok.sep_token_id]])
    with torch.no_grad():
        alone = teacher.module(ids, torch.ones_like(ids))[0]
    torch.testing.assert_close(vectors[word], alone, rtol=1e-5, atol=1e-5)
    student = StaticEmbeddingStudent(teacher, BagStudentConfig(), vectors_cache=tmp_path)
    encoder = student._encoder(teacher.dim)
    torch.testing.assert_close(encoder.table.weight[word], alone, rtol=1e-5, atol=1e-5)
    assert list(tmp_path.glob("*.safetensors")), "token vectors are cached per teacher"


def test_static_student_keeps_the_teacher_width(teacher):
    student = StaticEmbeddingStudent(teacher, BagStudentConfig(dim=teacher.dim + 1))
    with pytest.raises(InputError, match="teacher's width"):
        student._encoder(teacher.dim + 1)


def test_bag_encoder_hashes_bigrams_inside_the_model():
    """Same unigrams in another order give another embedding once bigrams are on."""
    torch.manual_seed(0)
    ids_a, ids_b = torch.tensor([[5, 6, 7]]), torch.tensor([[7, 6, 5]])
    mask = torch.ones_like(ids_a)
    unigrams, bigrams = BagEncoder(10, 4), BagEncoder(10, 4, buckets=13)
    torch.testing.assert_close(unigrams(ids_a, mask), unigrams(ids_b, mask))
    assert not torch.allclose(bigrams(ids_a, mask), bigrams(ids_b, mask))


def test_bag_encoder_ignores_padding():
    torch.manual_seed(0)
    encoder = BagEncoder(10, 4, buckets=13)
    short = encoder(torch.tensor([[5, 6]]), torch.ones((1, 2), dtype=torch.long))
    padded = encoder(torch.tensor([[5, 6, 0, 0]]), torch.tensor([[1, 1, 0, 0]]))
    torch.testing.assert_close(short, padded)


def test_hashed_student_needs_buckets(teacher):
    with pytest.raises(InputError, match="buckets"):
        HashedNgramStudent(teacher, BagStudentConfig(buckets=0))


def test_small_data_gets_more_epochs_until_min_steps():
    from modelfab.distill.train import LoopSettings

    s = LoopSettings(
        epochs=3, batch_size=32, temperature=2, alpha=0.5, feature_weight=1, seed=0, min_steps=1000
    )
    assert s.epochs_for(32 * 453) == 3  # 453 steps an epoch: 3 epochs are >= 1000 steps
    assert s.epochs_for(32 * 100) == 10
    assert s.epochs_for(32 * 100 - 5) == 10  # a partial batch is a step
    capped = LoopSettings(**{**s.__dict__, "max_texts": 320})
    assert capped.epochs_for(10_000) == 100  # 10 steps an epoch when subsampling


def test_static_int8_and_graph_level_recipes(teacher, tiny_texts, tmp_path):
    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels)
    student = make_student("hashed-ngram", teacher, tmp_path).fit(data)
    made = {}
    for recipe in (ExportRecipe("static-int8"), ExportRecipe(optimization="disable")):
        info = export_bundle(
            student.module(),
            student.tokenizer,
            CLASSES,
            tmp_path / recipe.name,
            {},
            student.max_length,
            data.texts[:16],
            recipe=recipe,
        )
        made[recipe.name] = BundlePredictor(info.path).predict_proba(data.val_texts)
        preprocess = json.loads((info.path / "preprocess.json").read_text())
        assert preprocess["graph_optimization"] == recipe.optimization
    assert set(made) == {"static-int8", "int8-opt-disable"}
    expected = student.predict_logits(data.val_texts).argmax(1)
    for probs in made.values():
        assert np.mean(probs.argmax(1) == expected) >= 0.8


def test_bundle_with_unknown_graph_level_is_refused(teacher, tiny_texts, tmp_path):
    from modelfab.errors import IntegrityError
    from modelfab.export.manifest import write_manifest

    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels)
    student = make_student("hashed-ngram", teacher, tmp_path).fit(data)
    info = export_bundle(
        student.module(), student.tokenizer, CLASSES, tmp_path / "b", {}, 32, data.texts[:8]
    )
    path = info.path / "preprocess.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "graph_optimization": "turbo"}))
    write_manifest(info.path)
    with pytest.raises(IntegrityError, match="turbo"):
        BundlePredictor(info.path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizations": ("all",)}, "default"),
        ({"quantizations": ("fp32", "fp32")}, "duplicates"),
        ({"families": ("transformer", "lstm")}, "lstm"),
    ],
)
def test_students_config_rejects_bad_variant_lists(kwargs, match):
    from modelfab.pipeline.variants import StudentsConfig

    with pytest.raises(InputError, match=match):
        StudentsConfig(**kwargs)


def test_students_of_a_tuned_body_start_from_it_and_skip_the_shared_vector_cache(tmp_path):
    from types import SimpleNamespace

    from modelfab.pipeline.variants import student_source

    own, tuned = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    teacher = SimpleNamespace(module=own, id="t")
    assert student_source(teacher, own, tmp_path) == (teacher, tmp_path)
    source, cache = student_source(teacher, tuned, tmp_path)
    assert source.module is tuned and cache is None  # token vectors of the tuned body
    assert teacher.module is own and source.id == "t"  # the teacher itself is untouched
