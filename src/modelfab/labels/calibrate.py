"""Confidence the teacher can be held to: temperature scaling and per-class thresholds.

A classifier's softmax is rarely a probability: heads fitted to few labels are over- or
under-confident. Temperature scaling (Guo et al., 2017) fits one scalar T on validation logits
by minimising the negative log-likelihood; softmax(logits / T) is then calibrated without
changing any prediction. Per-class thresholds then say, for a target precision, how confident
the teacher must be before its label is accepted for that class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from modelfab.errors import InputError


def _check(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    if logits.ndim != 2 or len(logits) != len(y) or len(y) == 0:
        raise InputError(
            f"calibration needs (N, C) logits and N labels, got {logits.shape} and {y.shape}"
        )
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise InputError(f"labels must be class indices in 0..{logits.shape[1] - 1}")
    return logits, y.astype(np.int64)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under softmax(logits / T)."""
    logits, y = _check(logits, y)
    logp = log_softmax(logits / temperature, axis=1)
    return float(-logp[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds=(0.05, 20.0)) -> float:
    """The T in `bounds` that minimises validation NLL (a bounded 1-D search over log T)."""
    logits, y = _check(logits, y)
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    res = minimize_scalar(
        lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=(lo, hi), method="bounded"
    )
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width confidence bins, by bin weight."""
    probs, y = np.asarray(probs), np.asarray(y)
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return float(ece)


def class_thresholds(
    probs: np.ndarray, y: np.ndarray, target_precision: float, min_support: int = 3
) -> np.ndarray:
    """(C,) the lowest confidence at which each class's predictions reach `target_precision`.

    For class c, validation rows predicted as c are sorted by confidence; the threshold is the
    smallest confidence t such that the rows predicted c with confidence >= t are at least
    `target_precision` correct and number at least `min_support`. A class that never gets
    there has threshold inf: its teacher labels are never accepted automatically.
    """
    if not 0 < target_precision <= 1:
        raise InputError(f"target precision must be in (0, 1], not {target_precision}")
    probs, y = np.asarray(probs), np.asarray(y)
    conf, pred = probs.max(1), probs.argmax(1)
    out = np.full(probs.shape[1], np.inf)
    for c in range(probs.shape[1]):
        rows = np.flatnonzero(pred == c)
        if len(rows) < min_support:
            continue
        order = rows[np.argsort(-conf[rows], kind="stable")]
        precision = np.cumsum(y[order] == c) / np.arange(1, len(order) + 1)
        ok = np.flatnonzero(
            (precision >= target_precision) & (np.arange(len(order)) >= min_support - 1)
        )
        if len(ok):
            out[c] = conf[order[ok.max()]]  # the most rows kept while precise enough
    return out


@dataclass
class Calibration:
    """A fitted temperature and per-class acceptance thresholds for one adapted teacher."""

    temperature: float
    thresholds: np.ndarray  # (C,) confidence needed per predicted class; inf = never
    target_precision: float
    ece_before: float
    ece_after: float

    @classmethod
    def fit(
        cls,
        val_logits: np.ndarray,
        val_y: np.ndarray,
        target_precision: float = 0.9,
        train_classes: np.ndarray | None = None,
    ) -> Calibration:
        """Fit on validation rows. With `train_classes`, rows of classes the model never saw
        are left out: it cannot predict them, and their near-zero probabilities would drive T
        to its bound and flatten every probability."""
        val_logits, val_y = np.asarray(val_logits), np.asarray(val_y)
        if train_classes is not None:
            seen = np.isin(val_y, train_classes)
            if not seen.any():
                raise InputError("no validation row belongs to a class the model was trained on")
            val_logits, val_y = val_logits[seen], val_y[seen]
        t = fit_temperature(val_logits, val_y)
        before = softmax(np.asarray(val_logits, dtype=np.float64), axis=1)
        after = softmax(np.asarray(val_logits, dtype=np.float64) / t, axis=1)
        return cls(
            temperature=t,
            thresholds=class_thresholds(after, val_y, target_precision),
            target_precision=target_precision,
            ece_before=expected_calibration_error(before, val_y),
            ece_after=expected_calibration_error(after, val_y),
        )

    def probs(self, logits: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature, axis=1)

    def to_dict(self) -> dict:
        return {
            "temperature": self.temperature,
            "thresholds": [None if not np.isfinite(t) else float(t) for t in self.thresholds],
            "target_precision": self.target_precision,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
        }
