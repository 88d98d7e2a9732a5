"""Distillation losses and the transformer student on the tiny teacher from conftest."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn

from modelfab.distill.base import DistillData, feature_loss, kd_loss
from modelfab.distill.transformer import (
    SequenceClassifier,
    TransformerStudent,
    TransformerStudentConfig,
    truncated_backbone,
)
from modelfab.errors import InputError
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")  # also requested by the module fixtures


def reference_kd(student, teacher, hard, t, alpha):
    """kd_loss written out by hand: sum p_T (log p_T - log q_T) / B * T^2 (+ CE on labeled)."""
    p = torch.softmax(teacher / t, dim=-1)
    log_q = torch.log_softmax(student / t, dim=-1)
    soft = (p * (torch.log(p) - log_q)).sum(-1).mean() * t * t
    labeled = hard >= 0
    if not labeled.any():
        return soft
    log_probs = torch.log_softmax(student[labeled], dim=-1)
    ce = -log_probs[torch.arange(int(labeled.sum())), hard[labeled]].mean()
    return alpha * soft + (1 - alpha) * ce


@pytest.fixture
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen) * 2


NO_LABELS = torch.full((6,), -1, dtype=torch.long)


# --- losses ------------------------------------------------------------------------------


def test_kd_loss_is_zero_when_student_matches_teacher(logits):
    _, teacher = logits
    loss = kd_loss(teacher.clone(), teacher, NO_LABELS, temperature=2.0, alpha=0.7)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_grows_as_student_diverges(logits):
    student, teacher = logits
    losses = [
        kd_loss(teacher + s * student, teacher, NO_LABELS, 2.0, 0.7).item() for s in (0.0, 0.5, 2.0)
    ]
    assert losses[0] < 1e-6 < losses[1] < losses[2]


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_kd_loss_matches_hand_computed_kl_times_t_squared(logits, t):
    student, teacher = logits
    got = kd_loss(student, teacher, NO_LABELS, t, alpha=0.7)
    assert got.item() == pytest.approx(reference_kd(student, teacher, NO_LABELS, t, 0.7).item())


def test_kd_loss_scales_soft_term_by_t_squared(logits):
    """At T=2 the loss is 4x the plain KL between the T=2 softened distributions."""
    student, teacher = logits
    kl_t2 = (
        nn.functional.kl_div(
            torch.log_softmax(student / 2, -1), torch.softmax(teacher / 2, -1), reduction="sum"
        )
        / 6
    )
    kl_t1 = (
        nn.functional.kl_div(
            torch.log_softmax(student, -1), torch.softmax(teacher, -1), reduction="sum"
        )
        / 6
    )
    assert kd_loss(student, teacher, NO_LABELS, 2.0, 0.5).item() == pytest.approx(
        4 * kl_t2.item(), rel=1e-5
    )
    assert kd_loss(student, teacher, NO_LABELS, 1.0, 0.5).item() == pytest.approx(
        kl_t1.item(), rel=1e-5
    )


def test_kd_loss_adds_cross_entropy_on_labeled_rows_only(logits):
    student, teacher = logits
    hard = torch.tensor([0, -1, 2, -1, 1, 1])
    alpha = 0.7
    soft = kd_loss(student, teacher, NO_LABELS, 2.0, alpha)
    ce = nn.functional.cross_entropy(student[hard >= 0], hard[hard >= 0])
    got = kd_loss(student, teacher, hard, 2.0, alpha)
    assert got.item() == pytest.approx((alpha * soft + (1 - alpha) * ce).item(), rel=1e-5)
    assert got.item() == pytest.approx(reference_kd(student, teacher, hard, 2.0, alpha).item())
    # alpha=1 ignores hard labels entirely; alpha=0 is pure cross-entropy.
    assert kd_loss(student, teacher, hard, 2.0, 1.0).item() == pytest.approx(soft.item())
    assert kd_loss(student, teacher, hard, 2.0, 0.0).item() == pytest.approx(ce.item())


def test_kd_loss_with_matching_logits_still_pays_hard_label_ce(logits):
    _, teacher = logits
    hard = teacher.argmin(-1)  # the teacher's least likely class: CE is clearly positive
    loss = kd_loss(teacher.clone(), teacher, hard, 2.0, 0.5)
    ce = nn.functional.cross_entropy(teacher, hard)
    assert loss.item() == pytest.approx(0.5 * ce.item(), rel=1e-5)
    assert loss.item() > 0.1


def test_kd_loss_gradient_flows_to_student(logits):
    student, teacher = logits
    student = student.clone().requires_grad_(True)
    kd_loss(student, teacher, torch.tensor([0, 1, 2, -1, -1, -1]), 2.0, 0.7).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_feature_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    assert feature_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(a, 3 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert feature_loss(a, -a).item() == pytest.approx(2.0)
    b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]])
    assert feature_loss(*b).item() == pytest.approx(1.0)
    # Mean over rows: one identical row (0) and one opposite row (2) -> 1.
    mixed = torch.stack([a[0], -a[1]])
    assert feature_loss(a, mixed).item() == pytest.approx(1.0)


# --- truncated_backbone ------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tiny_teacher_dir, one_thread) -> HFTextEncoder:
    return HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))


def test_truncated_backbone_keeps_first_layers_and_spares_teacher(teacher):
    teacher_state = {k: v.clone() for k, v in teacher.module.backbone.state_dict().items()}
    student = truncated_backbone(teacher, 2)
    assert len(student.encoder.layer) == 2
    assert student.config.num_hidden_layers == 2
    assert len(teacher.module.backbone.encoder.layer) == 4
    assert teacher.module.backbone.config.num_hidden_layers == 4

    student_state = student.state_dict()
    for name, value in student_state.items():
        torch.testing.assert_close(value, teacher_state[name], rtol=0, atol=0)
    assert any(k.startswith("encoder.layer.1.") for k in student_state)
    assert not any(k.startswith("encoder.layer.2.") for k in student_state)
    assert any(k.startswith("embeddings.") for k in student_state)

    # A deep copy: training the student must not move the teacher.
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    for name, value in teacher.module.backbone.state_dict().items():
        torch.testing.assert_close(value, teacher_state[name], rtol=0, atol=0)


def test_truncated_backbone_outputs_match_teacher_prefix(teacher):
    """With k layers the student computes exactly the teacher's hidden state after layer k."""
    batch = teacher.tokenize(["fun puzzle game with levels", "vim"])
    student = truncated_backbone(teacher, 2).eval()
    with torch.no_grad():
        full = teacher.module.backbone(**batch, output_hidden_states=True).hidden_states
        short = student(**batch).last_hidden_state
    torch.testing.assert_close(short, full[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layers", [0, 5])
def test_truncated_backbone_rejects_bad_layer_counts(teacher, layers):
    with pytest.raises(InputError, match="1..4"):
        truncated_backbone(teacher, layers)


@pytest.mark.parametrize(
    "bad", [{"layers": 0}, {"epochs": 0}, {"temperature": 0.0}, {"alpha": 1.5}]
)
def test_student_config_rejects_bad_values(bad):
    with pytest.raises(InputError, match=next(iter(bad))):
        TransformerStudentConfig(**bad)


# --- TransformerStudent ------------------------------------------------------------------

CLASSES = ["games", "science", "editors"]
EPOCHS = 12  # ~1 s on one thread; reaches val macro-F1 0.8-0.93 over seeds 0-4


def make_distill_data(teacher: HFTextEncoder, texts, labels, with_features=True) -> DistillData:
    """Every 4th text goes to validation; teacher logits are 4 * one-hot of the true label."""
    y = np.array([CLASSES.index(label) for label in labels])
    val = np.arange(len(texts)) % 4 == 0
    train_texts = [t for t, v in zip(texts, val, strict=True) if not v]
    train_y = y[~val]
    teacher_logits = (4.0 * np.eye(3)[train_y]).astype(np.float32)
    hard = train_y.copy()
    hard[::3] = -1  # a third of the train rows have no human label
    torch.manual_seed(0)
    return DistillData(
        texts=train_texts,
        hard=hard,
        teacher_logits=teacher_logits,
        val_texts=[t for t, v in zip(texts, val, strict=True) if v],
        val_y=y[val],
        n_classes=3,
        teacher_features=teacher.encode(train_texts) if with_features else None,
        teacher_head=nn.Linear(teacher.dim, 3),
    )


def small_config(**kwargs) -> TransformerStudentConfig:
    base = dict(
        layers=2, max_length=16, epochs=EPOCHS, batch_size=8, lr=5e-3, head_lr=5e-2, min_steps=0
    )
    return TransformerStudentConfig(**{**base, **kwargs})


@pytest.fixture(scope="module")
def fitted(teacher, tiny_text_set, one_thread):
    texts, labels = tiny_text_set
    data = make_distill_data(teacher, texts, labels)
    teacher_state = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    head_state = {k: v.clone() for k, v in data.teacher_head.state_dict().items()}
    student = TransformerStudent(teacher, small_config()).fit(data)
    return student, data, teacher_state, head_state


def test_student_learns_tiny_texts(fitted):
    student, data, _, _ = fitted
    pred = student.predict_logits(data.val_texts).argmax(-1)
    f1 = f1_score(data.val_y, pred, average="macro")
    assert f1 >= 0.6  # chance is ~0.33
    assert student.val_f1_ >= 0.6
    # Too few pool texts to hold any out: the last epoch is kept, and val_f1_ is its score.
    assert f1 == pytest.approx(student.val_f1_)
    assert student.val_f1_ == student.history_[-1]["val_macro_f1"]
    assert student.recipe()["epoch_selected_on"].startswith("last epoch")


def test_student_history_has_one_entry_per_epoch(fitted):
    student, _, _, _ = fitted
    assert [h["epoch"] for h in student.history_] == list(range(1, EPOCHS + 1))
    assert all(0.0 <= h["val_macro_f1"] <= 1.0 for h in student.history_)


def test_student_recipe_names_family_and_layers(fitted):
    student, _, _, _ = fitted
    recipe = student.recipe()
    assert recipe["family"] == "transformer"
    assert recipe["layers"] == 2
    assert recipe["epochs"] == EPOCHS
    assert recipe["history"] == student.history_


def test_student_module_shape_and_structure(fitted):
    student, _, _, _ = fitted
    model = student.module()
    assert isinstance(model, SequenceClassifier)
    assert len(model.encoder.backbone.encoder.layer) == 2
    # Same pooling as the teacher, so the student's embeddings live in the teacher's space.
    assert model.encoder.pooling == "mean" and model.encoder.normalize
    batch = student.teacher.tokenize(["fun game", "vim editor with macros"], max_length=16)
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"])
    assert out.shape == (2, 3)
    np.testing.assert_allclose(
        out.numpy(),
        student.predict_logits(["fun game", "vim editor with macros"]),
        atol=1e-5,
    )


def test_student_predict_logits_keeps_input_order(fitted):
    student, data, _, _ = fitted
    texts = data.val_texts[:6]
    together = student.predict_logits(texts, batch_size=4)
    assert together.shape == (6, 3) and together.dtype == np.float32
    for i, text in enumerate(texts):
        np.testing.assert_allclose(together[i], student.predict_logits([text])[0], atol=1e-5)


def test_student_fit_leaves_teacher_and_teacher_head_unchanged(fitted, teacher):
    _, data, teacher_state, head_state = fitted
    for name, value in teacher.module.state_dict().items():
        torch.testing.assert_close(value, teacher_state[name], rtol=0, atol=0)
    for name, value in data.teacher_head.state_dict().items():
        torch.testing.assert_close(value, head_state[name], rtol=0, atol=0)
    assert len(teacher.module.backbone.encoder.layer) == 4


def test_student_freezes_word_embeddings_by_default(fitted, teacher):
    student, _, _, _ = fitted
    student_words = student.module().encoder.backbone.embeddings.word_embeddings.weight
    teacher_words = teacher.module.backbone.embeddings.word_embeddings.weight
    torch.testing.assert_close(student_words.detach(), teacher_words.detach(), rtol=0, atol=0)
    assert not student_words.requires_grad


def test_student_fit_is_deterministic_and_works_without_features(teacher, tiny_texts):
    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels, with_features=False)
    cfg = small_config(epochs=2)
    a = TransformerStudent(teacher, cfg).fit(data)
    b = TransformerStudent(teacher, cfg).fit(data)
    assert len(a.history_) == 2
    np.testing.assert_array_equal(
        a.predict_logits(data.val_texts), b.predict_logits(data.val_texts)
    )


def test_selection_rows_come_from_the_pool_only_and_are_deterministic():
    from modelfab.distill.train import SELECTION_MAX, selection_rows

    hard = np.full(3000, -1)
    hard[::3] = 1  # 1000 labeled rows, 2000 pool rows
    rows = selection_rows(hard, seed=0)
    assert len(rows) == 200 and (hard[rows] == -1).all()
    np.testing.assert_array_equal(rows, selection_rows(hard, seed=0))
    assert not np.array_equal(rows, selection_rows(hard, seed=1))
    assert len(selection_rows(np.full(100_000, -1), seed=0)) == SELECTION_MAX
    # A pool of 999 would give 99 < SELECTION_MIN: nothing held out.
    assert len(selection_rows(np.r_[np.full(999, -1), np.zeros(5000, int)], seed=0)) == 0


def _with_held_out_pool(monkeypatch):
    """Hold out half of the tiny pool (the rule's minimum is meant for real pools)."""
    from modelfab.distill import train

    monkeypatch.setattr(train, "SELECTION_MIN", 1)
    monkeypatch.setattr(train, "SELECTION_FRACTION", 0.5)
    return train


def test_student_keeps_the_epoch_that_agrees_best_with_the_teacher(
    teacher, tiny_texts, monkeypatch
):
    """With held-out agreement peaking at epoch 2, the fitted model predicts what it did then,
    whatever the validation scores say (they peak at epoch 3)."""
    train = _with_held_out_pool(monkeypatch)
    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels, with_features=False)
    agreement = iter([0.1, 0.9, 0.2])
    monkeypatch.setattr(train, "_agreement", lambda *a, **k: next(agreement))
    val_scores = iter([0.3, 0.4, 0.95])
    monkeypatch.setattr(train, "f1_score", lambda *a, **k: next(val_scores))
    seen: list[np.ndarray] = []
    original = train.predict_logits

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(train, "predict_logits", recording)
    student = TransformerStudent(teacher, small_config(epochs=3)).fit(data)
    assert [h["selection_agreement_f1"] for h in student.history_] == [0.1, 0.9, 0.2]
    assert [h["val_macro_f1"] for h in student.history_] == [0.3, 0.4, 0.95]
    assert student.val_f1_ == 0.4  # the kept epoch's validation score, not the best one
    assert "held-out pool texts" in student.recipe()["epoch_selected_on"]
    assert len(seen) == 3 and np.abs(seen[1] - seen[2]).max() > 1e-4  # epochs really differ
    np.testing.assert_allclose(student.predict_logits(data.val_texts), seen[1], atol=1e-5)


def test_held_out_pool_texts_are_never_trained_on(teacher, tiny_texts, monkeypatch):
    train = _with_held_out_pool(monkeypatch)
    texts, labels = tiny_texts
    data = make_distill_data(teacher, texts, labels, with_features=False)
    student = TransformerStudent(teacher, small_config(epochs=2))
    ids = student.ids(data.texts)
    held_out = train.selection_rows(data.hard, seed=student.config.seed)
    assert len(held_out) > 0
    trained: list[list[int]] = []
    original = train.pad

    def recording(batch, pad_id):
        if torch.is_grad_enabled():  # training batches; predictions run under inference_mode
            trained.extend(batch)
        return original(batch, pad_id)

    monkeypatch.setattr(train, "pad", recording)
    student.fit(data)
    kept = [i for i in range(len(ids)) if i not in set(held_out.tolist())]
    expected = Counter(tuple(ids[i]) for i in kept)
    assert Counter(map(tuple, trained)) == expected + expected  # two epochs, each row once
