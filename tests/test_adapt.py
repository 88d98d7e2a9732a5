"""Adaptation heads on synthetic, well-separated Gaussian features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from modelfab.adapt.base import AdaptData
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.adapt.select import adapt, resolve
from modelfab.errors import InputError

DIM = 8
pytestmark = pytest.mark.usefixtures("one_thread")


def gaussian_data(
    n_classes: int = 3,
    train_classes: tuple[int, ...] | None = None,
    per_class: int = 40,
    seed: int = 0,
) -> AdaptData:
    """Class k is a unit Gaussian around 4 * e_k: easily separable, not trivially."""
    rng = np.random.default_rng(seed)
    train_classes = tuple(range(n_classes)) if train_classes is None else train_classes

    def split(classes, n):
        y = np.repeat(np.array(classes, dtype=np.int64), n)
        centers = 4.0 * np.eye(DIM, dtype=np.float32)[y]
        x = (centers + rng.standard_normal((len(y), DIM))).astype(np.float32)
        return x, y

    train_x, train_y = split(train_classes, per_class)
    val_x, val_y = split(train_classes, per_class // 2)
    return AdaptData(
        train_texts=[f"t{i}" for i in range(len(train_y))],
        train_x=train_x,
        train_y=train_y,
        val_texts=[f"v{i}" for i in range(len(val_y))],
        val_x=val_x,
        val_y=val_y,
        n_classes=n_classes,
    )


@pytest.fixture(scope="module")
def data() -> AdaptData:
    return gaussian_data()


def small_mlp(seed: int = 0) -> MLPHead:
    return MLPHead(hidden=32, epochs=20, lr=5e-3, seed=seed)


def macro_f1(head, data: AdaptData) -> float:
    pred = head.logits(data.val_x).argmax(-1)
    return float(f1_score(data.val_y, pred, average="macro"))


@pytest.mark.parametrize("make", [LogisticHead, small_mlp], ids=["logreg", "mlp"])
def test_heads_learn_separable_classes(data, make):
    head = make().fit(data)
    assert macro_f1(head, data) >= 0.9
    assert head.val_f1_ >= 0.9
    assert head.logits(data.val_x).shape == (len(data.val_y), 3)


@pytest.mark.parametrize("make", [LogisticHead, small_mlp], ids=["logreg", "mlp"])
def test_torch_head_matches_logits(data, make):
    head = make().fit(data)
    module = head.head()
    assert isinstance(module, torch.nn.Module)
    module.eval()
    x = np.concatenate([data.val_x, data.train_x[:5]])
    with torch.no_grad():
        torch_out = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(torch_out, head.logits(x), atol=1e-4, rtol=1e-5)


def test_logistic_picks_c_on_validation_f1():
    """With a 40:5:5 train set, a tiny C leaves only the intercepts: majority class everywhere
    (macro-F1 1/6). Validation must pick C=1, whichever order the Cs come in."""
    data = gaussian_data()
    keep = np.concatenate(
        [np.flatnonzero(data.train_y == k)[: 40 if k == 0 else 5] for k in range(3)]
    )
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    for cs in [(1e-4, 1.0), (1.0, 1e-4)]:
        head = LogisticHead(cs=cs).fit(data)
        assert head.c_ == 1.0
        assert head.val_f1_ >= 0.9
        assert head.val_f1_ == pytest.approx(macro_f1(head, data))


def test_class_missing_from_train_is_never_predicted():
    data = gaussian_data(n_classes=4, train_classes=(0, 1, 3))
    head = LogisticHead().fit(data)
    assert head.weight_.shape == (4, DIM)
    assert head.bias_[2] == pytest.approx(-1e4)
    assert not head.weight_[2].any()
    # Even points sitting on where class 2 "would" be go to a class seen in training.
    rng = np.random.default_rng(1)
    probe = np.concatenate(
        [
            data.val_x,
            (4.0 * np.eye(DIM)[[2] * 20] + rng.standard_normal((20, DIM))).astype(np.float32),
            rng.standard_normal((50, DIM)).astype(np.float32) * 10,
        ]
    )
    pred = head.logits(probe).argmax(-1)
    assert 2 not in set(pred.tolist())
    assert macro_f1(head, data) >= 0.9
    with torch.no_grad():
        torch_pred = head.head()(torch.from_numpy(probe)).argmax(-1)
    assert 2 not in set(torch_pred.tolist())


def test_logistic_binary_train_matches_sklearn_decision():
    """Two classes seen in train: sklearn keeps one coefficient row; the head must expand it."""
    data = gaussian_data(n_classes=3, train_classes=(0, 2))
    head = LogisticHead(cs=(1.0,)).fit(data)
    ref = LogisticRegression(C=1.0, max_iter=1000).fit(data.train_x, data.train_y)
    logits = head.logits(data.val_x)
    np.testing.assert_allclose(
        logits[:, 2] - logits[:, 0], ref.decision_function(data.val_x), atol=1e-3, rtol=1e-4
    )
    assert logits.argmax(-1).tolist() == ref.predict(data.val_x).tolist()
    assert head.bias_[1] == pytest.approx(-1e4)


def test_mlp_is_deterministic_for_a_seed(data):
    a = small_mlp(seed=3).fit(data).logits(data.val_x)
    b = small_mlp(seed=3).fit(data).logits(data.val_x)
    np.testing.assert_array_equal(a, b)


def fake_fit(score: float):
    def fit(self, data):
        self.val_f1_ = score
        return self

    return fit


@pytest.mark.parametrize(
    ("logreg_score", "mlp_score", "winner"),
    [(0.3, 0.8, MLPHead), (0.8, 0.3, LogisticHead)],
)
def test_adapt_keeps_the_best_strategy(data, monkeypatch, logreg_score, mlp_score, winner):
    monkeypatch.setattr(LogisticHead, "fit", fake_fit(logreg_score))
    monkeypatch.setattr(MLPHead, "fit", fake_fit(mlp_score))
    result = adapt(data, ("logreg", "mlp"), seed=7)
    assert isinstance(result.best, winner)
    assert result.scores == {"logreg": logreg_score, "mlp": mlp_score}


def test_adapt_passes_seed_to_mlp(data, monkeypatch):
    monkeypatch.setattr(MLPHead, "fit", fake_fit(0.5))
    assert adapt(data, ("mlp",), seed=7).best.seed == 7


def test_adapt_with_real_fits_reports_each_score(data, monkeypatch):
    original = MLPHead.fit

    def crippled(self, d):
        original(self, d)
        self.val_f1_ = 0.1
        return self

    monkeypatch.setattr(MLPHead, "fit", crippled)
    result = adapt(data)
    assert set(result.scores) == {"logreg", "mlp"}
    assert result.scores["logreg"] >= 0.9
    assert result.scores["mlp"] == 0.1
    assert isinstance(result.best, LogisticHead)
    assert macro_f1(result.best, data) >= 0.9


@pytest.mark.parametrize("strategies", [("svm",), ("logreg", "nope"), ()])
def test_unknown_strategy_is_input_error(data, strategies):
    with pytest.raises(InputError, match="strategy"):
        adapt(data, strategies)


def test_mlp_keeps_the_best_epoch(data, monkeypatch):
    """Early stopping: with validation scores peaking at epoch 2, the kept net is the one after
    epoch 2, i.e. what a 2-epoch run with the same seed gives."""
    from modelfab.adapt import heads

    def scripted(scores):
        it = iter(scores)
        monkeypatch.setattr(heads, "f1_score", lambda *a, **k: next(it))

    scripted([0.1, 0.9, 0.2, 0.3, 0.5])
    long = small_mlp(seed=1)
    long.epochs = 5
    long.fit(data)
    assert long.val_f1_ == 0.9

    scripted([0.1, 0.9])
    short = small_mlp(seed=1)
    short.epochs = 2
    short.fit(data)
    np.testing.assert_allclose(long.logits(data.val_x), short.logits(data.val_x), atol=1e-6)


def test_auto_tunes_the_body_for_few_labels_per_class_and_fits_heads_otherwise():
    few, many = np.repeat(np.arange(3), 8), np.repeat(np.arange(3), 40)
    teacher = object()
    assert resolve(("auto",), few, teacher) == ("contrastive",)
    assert resolve(("auto",), many, teacher) == ("logreg", "mlp")
    assert resolve(("auto",), few, None) == ("logreg", "mlp")  # no body to tune
    at, above = np.repeat(np.arange(3), 16), np.repeat(np.arange(3), 17)  # the median decides
    assert resolve(("auto",), at, teacher) == ("contrastive",)
    assert resolve(("auto",), above, teacher) == ("logreg", "mlp")
    assert resolve(("logreg",), few, teacher) == ("logreg",)  # explicit choices stand
    with pytest.raises(InputError, match="alone"):
        resolve(("auto", "mlp"), few, teacher)


def test_build_config_takes_auto_alone_and_by_default():
    from modelfab.pipeline.config import BuildConfig

    assert BuildConfig().adapt == ("auto",)
    assert BuildConfig(adapt=("auto",), adapt_budget_s=5).adapt_budget_s == 5
    with pytest.raises(InputError, match="alone"):
        BuildConfig(adapt=("auto", "mlp"))
