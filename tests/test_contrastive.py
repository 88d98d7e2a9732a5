"""SetFit-style contrastive adaptation (whole body and LoRA) on the tiny teacher."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelfab.adapt.base import AdaptData
from modelfab.adapt.contrastive import ContrastiveAdapter, contrastive_pairs
from modelfab.adapt.select import adapt
from modelfab.errors import InputError
from modelfab.teachers.hf_encoder import EncoderConfig, HFTextEncoder, encode_in_batches

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pairs_have_one_positive_and_one_negative_per_example_and_iteration():
    y = np.array([0, 0, 1, 1, 2])  # class 2 has a single example: no positive partner
    pairs = contrastive_pairs(y, iterations=3, rng=np.random.default_rng(0))
    pos = [(i, j) for i, j, t in pairs if t == 1.0]
    neg = [(i, j) for i, j, t in pairs if t == 0.0]
    assert len(pos) == 3 * 4 and len(neg) == 3 * 5
    assert all(y[i] == y[j] and i != j for i, j in pos)
    assert all(y[i] != y[j] for i, j in neg)


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
        teacher, iterations=4, batch_size=8, lr=1e-3, lora_rank=rank, lora_lr=1e-2
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
    adapter = ContrastiveAdapter(teacher, iterations=1, lora_rank=2)
    _, params, peft_model = adapter._trainable_encoder()
    total = sum(p.numel() for p in teacher.module.parameters())
    assert peft_model is not None and 0 < sum(p.numel() for p in params) < total / 10


def test_strategies_that_tune_the_body_need_the_teacher(setup):
    _, data = setup
    for name in ("contrastive", "lora"):
        with pytest.raises(InputError, match=f"the {name} strategy needs a teacher"):
            adapt(data, strategies=(name,), teacher=None)
    with pytest.raises(InputError, match="iterations"):
        ContrastiveAdapter(None, iterations=0)
