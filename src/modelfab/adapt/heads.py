"""Heads on frozen teacher features: logistic regression and a small MLP."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from torch import nn

from modelfab.adapt.base import AdaptData
from modelfab.torchutil import adamw


class LogisticHead:
    """Multinomial logistic regression; C is picked on validation macro-F1."""

    name = "logreg"

    def __init__(self, cs: tuple[float, ...] = (1.0, 10.0, 100.0), max_iter: int = 1000):
        self.cs = cs
        self.max_iter = max_iter

    def fit(self, data: AdaptData) -> LogisticHead:
        best = None
        for c in self.cs:
            clf = LogisticRegression(C=c, max_iter=self.max_iter)
            clf.fit(data.train_x, data.train_y)
            score = f1_score(data.val_y, clf.predict(data.val_x), average="macro")
            if best is None or score > best[0]:
                best = (score, c, clf)
        assert best is not None
        self.val_f1_, self.c_, clf = best
        # Classes missing from train get a very negative bias so they are never predicted.
        weight = np.zeros((data.n_classes, data.train_x.shape[1]), dtype=np.float32)
        bias = np.full(data.n_classes, -1e4, dtype=np.float32)
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # sklearn stores one row for binary problems
            coef, intercept = (
                np.vstack([-coef, coef]) / 2,
                np.array([-intercept[0], intercept[0]]) / 2,
            )
        weight[clf.classes_] = coef
        bias[clf.classes_] = intercept
        self.weight_, self.bias_ = weight, bias
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight_.T + self.bias_

    def head(self) -> nn.Module:
        linear = nn.Linear(self.weight_.shape[1], self.weight_.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(self.weight_))
            linear.bias.copy_(torch.from_numpy(self.bias_))
        return linear


class MLPHead:
    """One hidden layer, trained with AdamW and early stopping on validation macro-F1."""

    name = "mlp"

    def __init__(
        self,
        hidden: int = 256,
        epochs: int = 60,
        lr: float = 2e-3,
        patience: int = 5,
        seed: int = 0,
        on_epoch: Callable[[int, float], None] | None = None,
    ):
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed
        self.patience = patience  # epochs without a better validation score before stopping
        self.on_epoch = on_epoch  # (epoch, validation macro-F1); may raise to stop (pruning)

    def fit(self, data: AdaptData) -> MLPHead:
        torch.manual_seed(self.seed)
        dim = data.train_x.shape[1]
        net = nn.Sequential(
            nn.Linear(dim, self.hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(self.hidden, data.n_classes),
        )
        opt = adamw(net.parameters(), lr=self.lr, weight_decay=1e-2)
        x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y).long()
        xv = torch.from_numpy(data.val_x)
        gen = torch.Generator().manual_seed(self.seed)
        best_score, best_state, stale = -1.0, None, 0
        for epoch in range(self.epochs):
            net.train()
            for idx in torch.randperm(len(x), generator=gen).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                pred = net(xv).argmax(-1).numpy()
            score = f1_score(data.val_y, pred, average="macro")
            if self.on_epoch is not None:
                self.on_epoch(epoch, float(score))
            if score > best_score:
                best_score, stale = score, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        assert best_state is not None
        net.load_state_dict(best_state)
        self.net_, self.val_f1_ = net.eval(), best_score
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.net_(torch.from_numpy(x)).numpy()

    def head(self) -> nn.Module:
        return self.net_
