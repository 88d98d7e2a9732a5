"""Task-agnostic body distillation (`distill.body`) on the tiny teacher from conftest."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_distill import make_distill_data

from modelfab.distill import body as body_mod
from modelfab.distill.body import (
    BodyConfig,
    BodyStore,
    body_key,
    body_loss,
    corpus,
    distill_body,
    load_body,
)
from modelfab.distill.transformer import (
    TransformerStudent,
    TransformerStudentConfig,
    truncated_backbone,
)
from modelfab.errors import InputError
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = BodyConfig(layers=2, max_length=16, epochs=15, batch_size=8, lr=2e-3)


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir, one_thread) -> HFTextEncoder:
    """The tiny teacher with its upper two layers' weights redrawn larger: the random BERT's
    last layer is otherwise nearly its second (cosine 0.9997), and there would be nothing for a
    2-layer body to learn."""
    encoder = HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=16))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in encoder.module.backbone.encoder.layer[2:]:
            for p in layer.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return encoder


@pytest.fixture(scope="module")
def trained(teacher, tiny_text_set):
    texts = list(tiny_text_set[0])
    return distill_body(teacher, texts, FAST)


def mean_loss(module, teacher, texts) -> float:
    """body_loss (token + pooled) of `module` against the teacher's last layer over `texts`."""
    batch = teacher.tokenize(texts, max_length=FAST.max_length)
    with torch.no_grad():
        target = teacher.module.backbone(**batch).last_hidden_state
        got = module(**batch).last_hidden_state
    token, pooled = body_loss(got, target, batch["attention_mask"], "mean")
    return float(token + pooled)


# --- the loss ----------------------------------------------------------------------------


def test_body_loss_is_zero_for_the_teacher_itself_and_ignores_scale():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=gen)
    mask = torch.ones(3, 5, dtype=torch.long)
    for student in (hidden.clone(), 2.5 * hidden):
        token, pooled = body_loss(student, hidden, mask, "mean")
        assert token.item() == pytest.approx(0.0, abs=1e-6)
        assert pooled.item() == pytest.approx(0.0, abs=1e-6)
    token, pooled = body_loss(-hidden, hidden, mask, "mean")
    assert token.item() == pytest.approx(2.0) and pooled.item() == pytest.approx(2.0)


def test_body_loss_ignores_padding_and_pools_as_the_teacher_does():
    gen = torch.Generator().manual_seed(1)
    teacher = torch.randn(2, 4, 3, generator=gen)
    student = teacher.clone()
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    student[0, 2:] = torch.randn(2, 3, generator=gen)  # only padding differs
    token, pooled = body_loss(student, teacher, mask, "mean")
    assert token.item() == pytest.approx(0.0, abs=1e-6)
    assert pooled.item() == pytest.approx(0.0, abs=1e-6)
    # One real token of six flipped: a token loss of 2/6; "cls" pooling sees the first token only.
    student = teacher.clone()
    student[1, 3] = -teacher[1, 3]
    token, _ = body_loss(student, teacher, mask, "mean")
    assert token.item() == pytest.approx(2 / 6, rel=1e-5)
    _, pooled_cls = body_loss(student, teacher, mask, "cls")
    assert pooled_cls.item() == pytest.approx(0.0, abs=1e-6)


# --- corpus and key ----------------------------------------------------------------------


def test_corpus_is_sorted_distinct_non_blank_and_sampled_by_seed():
    texts = ["b", "a", "b", "  ", "c", "d", "e"]
    assert corpus(texts, BodyConfig()) == ["a", "b", "c", "d", "e"]
    small = corpus(texts, BodyConfig(max_texts=3, seed=0))
    assert len(small) == 3 and small == sorted(small) and set(small) <= set("abcde")
    assert corpus(texts, BodyConfig(max_texts=3, seed=0)) == small
    other_seeds = {tuple(corpus(texts, BodyConfig(max_texts=3, seed=s))) for s in range(8)}
    assert len(other_seeds) > 1
    with pytest.raises(InputError, match="non-blank"):
        corpus(["", " \n"], BodyConfig())


def test_body_key_follows_corpus_settings_and_teacher_not_order(teacher):
    texts = ["one text", "another text", "a third"]
    key = body_key(teacher, texts, FAST)
    assert body_key(teacher, list(reversed(texts)) + [texts[0]], FAST) == key
    assert body_key(teacher, texts[:2], FAST) != key
    in_place = BodyConfig(**{**FAST.__dict__, "targets_gib": 0.0})  # where targets live: no
    assert body_key(teacher, texts, in_place) == key
    assert body_key(teacher, texts, BodyConfig(layers=1, max_length=16)) != key

    class Other:
        weights_id = "0" * 64
        module = teacher.module
        config = teacher.config

    assert body_key(Other(), texts, FAST) != key


@pytest.mark.parametrize(
    "bad", [{"layers": 0}, {"epochs": 0}, {"lr": 0.0}, {"max_texts": 0}, {"max_length": 4}]
)
def test_body_config_rejects_bad_values(bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        BodyConfig(**bad)


# --- distillation ------------------------------------------------------------------------


def test_distilled_body_follows_the_teachers_last_layer(teacher, trained, tiny_text_set):
    body, record = trained
    texts = list(tiny_text_set[0])
    start = truncated_backbone(teacher, 2).eval()
    before, after = mean_loss(start, teacher, texts), mean_loss(body, teacher, texts)
    assert after < 0.5 * before, (before, after)
    assert record["texts"] == len(set(texts))
    assert record["targets"] == "in memory"
    first, last = record["history"][0], record["history"][-1]
    assert last["token_loss"] < first["token_loss"]
    assert len(record["history"]) == FAST.epochs


def test_distillation_keeps_word_embeddings_and_spares_the_teacher(teacher, trained):
    body, _ = trained
    torch.testing.assert_close(
        body.embeddings.word_embeddings.weight,
        teacher.module.backbone.embeddings.word_embeddings.weight,
        rtol=0,
        atol=0,
    )
    # The body started from the teacher's layer 0 and moved; the teacher's layer 0 did not.
    fresh = HFTextEncoder(EncoderConfig(path=str(teacher.model_dir), max_length=16))
    query = "encoder.layer.0.attention.self.query.weight"
    start = fresh.module.backbone.state_dict()[query]
    torch.testing.assert_close(teacher.module.backbone.state_dict()[query], start, rtol=0, atol=0)
    assert not torch.allclose(body.state_dict()[query], start, atol=1e-4)


def test_targets_recomputed_per_batch_give_the_same_training(teacher, tiny_text_set):
    texts = list(tiny_text_set[0])
    short = BodyConfig(layers=2, max_length=16, epochs=2, batch_size=8, lr=2e-3)
    _, kept = distill_body(teacher, texts, short)
    _, recomputed = distill_body(
        teacher, texts, BodyConfig(**{**short.__dict__, "targets_gib": 0.0})
    )
    assert recomputed["targets"] == "recomputed per batch"
    for a, b in zip(kept["history"], recomputed["history"], strict=True):
        assert a["token_loss"] == pytest.approx(b["token_loss"], rel=1e-2)


# --- the store and loading ---------------------------------------------------------------


def test_store_distills_once_and_reuses_the_file(teacher, tiny_text_set, tmp_path, monkeypatch):
    texts = list(tiny_text_set[0])
    config = BodyConfig(layers=2, max_length=16, epochs=1, batch_size=16)
    store = BodyStore(tmp_path / "bodies")
    first = store.get(teacher, texts, config)
    assert not first.reused and first.path.is_file()
    assert first.path == store.path(body_key(teacher, texts, config))
    with safe_open(str(first.path), framework="pt") as handle:
        tags = handle.metadata()
    assert tags == {
        "format": body_mod.FORMAT,
        "teacher": teacher.weights_id,
        "pooling": "mean",
        "layers": "2",
    }
    assert json.loads(first.path.with_suffix(".json").read_text())["texts"] == len(set(texts))

    def fail(*args, **kwargs):
        raise AssertionError("distilled again")

    monkeypatch.setattr(body_mod, "distill_body", fail)
    again = store.get(teacher, list(reversed(texts)), config)
    assert again.reused and again.path == first.path
    # A body whose record was never written (a killed run) is distilled again.
    first.path.with_suffix(".json").unlink()
    with pytest.raises(AssertionError, match="distilled again"):
        store.get(teacher, texts, config)


TAGS = {"format": body_mod.FORMAT, "pooling": "mean", "layers": "2"}


def test_load_body_checks_file_teacher_pooling_and_layers(teacher, trained, tmp_path):
    body, _ = trained
    state = {k: v.contiguous() for k, v in body.state_dict().items()}
    good = tmp_path / "body.safetensors"
    tags = {**TAGS, "teacher": teacher.weights_id}
    save_file(state, str(good), metadata=tags)
    target = truncated_backbone(teacher, 2)
    load_body(good, target, teacher)
    for name, value in target.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)

    with pytest.raises(InputError, match="no such file"):
        load_body(tmp_path / "missing.safetensors", target, teacher)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(InputError, match="not a safetensors file"):
        load_body(junk, target, teacher)
    other = tmp_path / "other.safetensors"
    save_file(state, str(other), metadata={**tags, "teacher": "f" * 64})
    with pytest.raises(InputError, match="another teacher"):
        load_body(other, target, teacher)
    cls = tmp_path / "cls.safetensors"
    save_file(state, str(cls), metadata={**tags, "pooling": "cls"})
    with pytest.raises(InputError, match="with cls pooling"):
        load_body(cls, target, teacher)
    short = tmp_path / "short.safetensors"
    save_file({k: v for k, v in state.items() if "layer.1." not in k}, str(short), tags)
    with pytest.raises(InputError, match="does not fit this teacher's layers: .*Missing key"):
        load_body(short, target, teacher)
    with pytest.raises(InputError, match="has 2 layers; the student asks for 3"):
        load_body(good, truncated_backbone(teacher, 3), teacher)
    plain = tmp_path / "plain.safetensors"
    save_file(state, str(plain))
    with pytest.raises(InputError, match="not a modelfab student body"):
        load_body(plain, target, teacher)


def test_student_starts_from_the_body_the_store_wrote(teacher, tiny_texts, tmp_path):
    """With a learning rate too small to move anything, the fitted student's layers are those
    of the body `BodyStore` wrote, not the teacher's."""
    config = BodyConfig(layers=2, max_length=16, epochs=3, batch_size=8, lr=2e-3)
    path = BodyStore(tmp_path).get(teacher, tiny_texts[0], config).path
    data = make_distill_data(teacher, *tiny_texts)
    config = TransformerStudentConfig(
        layers=2, epochs=1, min_steps=0, lr=1e-12, head_lr=1e-12, max_length=16, body=str(path)
    )
    student = TransformerStudent(teacher, config).fit(data)
    got = student.module().encoder.backbone.state_dict()
    saved = load_file(str(path))
    name = "encoder.layer.1.output.dense.weight"
    torch.testing.assert_close(got[name], saved[name], rtol=0, atol=1e-8)
    assert not np.allclose(
        got[name].numpy(), teacher.module.backbone.state_dict()[name].numpy(), atol=1e-3
    )


def test_a_body_deeper_than_the_teacher_is_refused_before_the_teacher_runs(teacher, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran")

    monkeypatch.setattr(body_mod, "_Targets", fail)
    with pytest.raises(InputError, match="1..4"):
        distill_body(teacher, ["a text"], BodyConfig(layers=5, max_length=16))


def test_distillation_leaves_torchs_global_generator_as_it_found_it(teacher):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    distill_body(teacher, ["fun game", "vim editor"], BodyConfig(layers=1, max_length=16))
    torch.testing.assert_close(torch.rand(3), expected)
