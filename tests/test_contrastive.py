"""SetFit-style contrastive adaptation (whole body and LoRA) on the tiny teacher."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modelfab.adapt.base import AdaptData
from modelfab.adapt.contrastive import ContrastiveAdapter, batches, freeze_lower, pair_loss
from modelfab.adapt.select import adapt
from modelfab.errors import InputError
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder, encode_in_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pair_loss_weights_same_and_different_class_pairs_equally():
    y = torch.tensor([0, 0, 1, 2, 3])
    # Perfect embeddings: same class identical, different classes orthogonal -> zero loss.
    perfect = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert pair_loss(perfect, y).item() == pytest.approx(0.0, abs=1e-6)
    # All five texts identical: the 1 same-class pair is right, the 9 others all wrong (cos 1
    # instead of 0). Balanced: 0 + 1; an unbalanced mean would give 18/20.
    same = torch.ones(5, 4)
    assert pair_loss(same, y).item() == pytest.approx(1.0)
    # Only one class in the batch: the different-class term is absent, not a division by zero.
    assert pair_loss(same[:2], y[:2]).item() == pytest.approx(0.0, abs=1e-6)


def test_batches_cover_every_example_once_per_epoch_and_never_hold_one_text():
    y = np.arange(10)
    out = batches(y, batch_size=3, steps=6, rng=np.random.default_rng(0))
    assert len(out) == 6
    first_epoch = out[:3]  # 3 + 3 + 4: the lone last example joins the batch before it
    assert [len(b) for b in first_epoch] == [3, 3, 4]
    assert sorted(np.concatenate(first_epoch).tolist()) == list(range(10))
    assert all(len(b) >= 2 for b in out)


def test_steps_are_epochs_of_batches_capped_by_max_steps():
    adapter = ContrastiveAdapter(None, epochs=10, batch_size=32, max_steps=300)
    assert adapter.steps_for(32) == 10
    assert adapter.steps_for(120) == 40  # 4 batches per epoch
    assert adapter.steps_for(33) == 10  # the 33rd example joins the first batch: 1 per epoch
    assert adapter.steps_for(34) == 20
    assert adapter.steps_for(10_000) == 300


@pytest.fixture(scope="module")
def setup(tiny_teacher_dir, tiny_text_set):
    teacher = HFTextEncoder(EncoderConfig(path=str(tiny_teacher_dir), max_length=32))
    texts, labels = tiny_text_set
    classes = sorted(set(labels))
    y = np.array([classes.index(label) for label in labels])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    train, val = order[: len(order) // 2], order[len(order) // 2 :]
    x = teacher.encode(list(texts))

    def part(idx):
        return [texts[i] for i in idx], x[idx], y[idx]

    data = AdaptData(*part(train), *part(val), n_classes=len(classes))
    return teacher, data


def separation(encoder, teacher, texts, y) -> float:
    """Mean cosine within classes minus mean cosine across classes."""
    e = torch.nn.functional.normalize(
        torch.from_numpy(encode_in_batches(encoder, teacher.tokenize, texts, teacher.dim)), dim=1
    )
    sim = (e @ e.T).numpy()
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    return float(sim[same & off].mean() - sim[~same].mean())


@pytest.mark.parametrize("rank", [0, 4])
def test_contrastive_training_pulls_classes_apart(setup, rank):
    teacher, data = setup
    before = separation(teacher.module, teacher, data.val_texts, data.val_y)
    original = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    adapter = ContrastiveAdapter(
        teacher, epochs=8, batch_size=8, lr=1e-3, lora_rank=rank, lora_lr=1e-2
    ).fit(data)
    after = separation(adapter.encoder_, teacher, data.val_texts, data.val_y)
    assert after > before + 0.05  # held-out texts: the tuned body separates the classes more
    assert adapter.name == ("lora" if rank else "contrastive")
    assert adapter.val_f1_ > 0.6
    # The teacher itself is untouched; a LoRA result is a plain merged encoder.
    for k, v in teacher.module.state_dict().items():
        assert torch.equal(v, original[k]), k
    names = [n for n, _ in adapter.encoder_.named_modules()]
    assert not any("lora" in n for n in names)
    assert set(adapter.encoder_.state_dict()) == set(original)
    # Students derived from the tuned body train it: peft's frozen flags must not leak out.
    assert all(p.requires_grad for p in adapter.encoder_.parameters())
    logits = adapter.logits(np.zeros((2, teacher.dim), dtype=np.float32))
    assert logits.shape == (2, data.n_classes)


def test_lora_trains_only_adapters(setup):
    teacher, data = setup
    adapter = ContrastiveAdapter(teacher, epochs=1, lora_rank=2)
    _, params, peft_model = adapter._trainable_encoder()
    total = sum(p.numel() for p in teacher.module.parameters())
    assert peft_model is not None and 0 < sum(p.numel() for p in params) < total / 10


def test_strategies_that_tune_the_body_need_the_teacher(setup):
    _, data = setup
    for name in ("contrastive", "lora"):
        with pytest.raises(InputError, match=f"the {name} strategy needs a teacher"):
            adapt(data, strategies=(name,), teacher=None)
    with pytest.raises(InputError, match="epochs"):
        ContrastiveAdapter(None, epochs=0)
    with pytest.raises(InputError, match="LoRA freezes"):
        ContrastiveAdapter(None, lora_rank=4, freeze_layers=2)
    with pytest.raises(InputError, match="freezes every layer"):
        ContrastiveAdapter(setup[0], freeze_layers=setup[0].n_layers).fit(data)
    one_class = AdaptData(
        data.train_texts[:2],
        data.train_x[:2],
        np.zeros(2, dtype=int),
        data.val_texts,
        data.val_x,
        data.val_y,
        data.n_classes,
    )
    with pytest.raises(InputError, match="at least 2 classes"):
        ContrastiveAdapter(setup[0]).fit(one_class)


def test_freezing_lower_layers_trains_only_the_upper_ones_and_unfreezes_the_result(setup):
    teacher, data = setup
    encoder = copy.deepcopy(teacher.module)
    freeze_lower(encoder, 1)
    frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad}
    assert frozen and all("embeddings" in n or ".layer.0." in n for n in frozen)
    assert any(".layer.1." in n for n, p in encoder.named_parameters() if p.requires_grad)
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    assert ContrastiveAdapter(teacher).freeze_layers == teacher.n_layers // 2  # the default
    assert ContrastiveAdapter(teacher, lora_rank=4).freeze_layers == 0
    adapter = ContrastiveAdapter(teacher, epochs=2, batch_size=8, lr=1e-3, freeze_layers=1)
    adapter.fit(data)
    after = adapter.encoder_.state_dict()
    for k in before:
        moved = not torch.equal(before[k], after[k])
        if "embeddings" in k or ".layer.0." in k:
            assert not moved, k
    assert any(not torch.equal(before[k], after[k]) for k in before if ".layer.1." in k)
    assert all(p.requires_grad for p in adapter.encoder_.parameters())
