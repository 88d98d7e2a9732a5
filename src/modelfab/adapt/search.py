"""Hyperparameter search over adaptation strategies with Optuna, under a wall-time budget.

One study maximises validation macro-F1 over the requested strategies and their parameters
(TPE sampler, seeded). The MLP head reports its validation score every epoch, so the median
pruner stops trials that trail the ones before them at the same epoch. The study stops at
`budget_s` seconds (a trial that has started finishes: a contrastive trial can overrun) or after
`max_trials`. Every trial, pruned ones included, is returned as a plain record for the registry;
a trial that raises stops the search with its error.
"""

from __future__ import annotations

import math
from typing import Any

from modelfab.adapt.base import AdaptData, Adapter
from modelfab.adapt.contrastive import ContrastiveAdapter
from modelfab.adapt.heads import LogisticHead, MLPHead
from modelfab.adapt.select import NEEDS_TEACHER, STRATEGIES, Adaptation, resolve
from modelfab.errors import InputError

SEARCHABLE = ("logreg", "mlp", "contrastive", "lora")


def _suggest(trial: Any, strategy: str, teacher, seed: int, report) -> Adapter:
    """An unfitted adapter for `strategy` with parameters drawn by `trial`."""
    if strategy == "logreg":
        return LogisticHead(cs=(trial.suggest_float("C", 1e-2, 1e3, log=True),))
    if strategy == "mlp":
        return MLPHead(
            hidden=trial.suggest_categorical("hidden", [64, 128, 256, 512]),
            lr=trial.suggest_float("mlp_lr", 3e-4, 1e-2, log=True),
            patience=trial.suggest_int("patience", 3, 10),
            seed=seed,
            on_epoch=report,
        )
    if strategy in ("contrastive", "lora"):
        epochs = trial.suggest_int("epochs", 5, 60, log=True)
        if strategy == "lora":
            lora_lr = trial.suggest_float("lora_lr", 1e-4, 1e-2, log=True)
            return ContrastiveAdapter(
                teacher, epochs=epochs, lora_rank=8, lora_lr=lora_lr, seed=seed
            )
        body_lr = trial.suggest_float("body_lr", 5e-6, 1e-4, log=True)
        return ContrastiveAdapter(teacher, epochs=epochs, lr=body_lr, seed=seed)
    raise InputError(f"no search space for adaptation strategy {strategy!r}")


def search(
    data: AdaptData,
    strategies: tuple[str, ...],
    budget_s: float,
    seed: int = 0,
    teacher=None,
    max_trials: int = 200,
) -> Adaptation:
    """Search strategies and parameters for `budget_s` seconds; keep the best trial's adapter."""
    import optuna

    if not budget_s > 0 or not math.isfinite(budget_s):
        raise InputError(f"the search budget must be a positive number of seconds, not {budget_s}")
    strategies = resolve(strategies, data.train_y, teacher)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise InputError(f"unknown adaptation strategy {unknown}; known: {sorted(STRATEGIES)}")
    fixed = [s for s in strategies if s not in SEARCHABLE]
    if fixed:
        raise InputError(f"strategies {fixed} have no search space; searchable: {list(SEARCHABLE)}")
    if teacher is None and any(s in NEEDS_TEACHER for s in strategies):
        raise InputError(f"strategies {list(NEEDS_TEACHER)} need a teacher to tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    best: dict[str, Any] = {"score": -1.0, "adapter": None}
    scores: dict[str, float] = {}

    def objective(trial: optuna.Trial) -> float:
        strategy = trial.suggest_categorical("strategy", list(strategies))

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        adapter = _suggest(trial, strategy, teacher, seed, report)
        adapter.fit(data)
        score = float(adapter.val_f1_)  # type: ignore[attr-defined]
        scores[strategy] = max(scores.get(strategy, -1.0), score)
        if score > best["score"]:
            best.update(score=score, adapter=adapter)
        return score

    study.optimize(objective, timeout=budget_s, n_trials=max_trials)
    if best["adapter"] is None:
        raise InputError(
            f"no adaptation trial finished within {budget_s:g} s; raise the search budget"
        )
    trials = [
        {
            "number": t.number,
            "strategy": t.params.get("strategy"),
            "params": {k: v for k, v in t.params.items() if k != "strategy"},
            "state": t.state.name.lower(),
            "value": t.value,
            "duration_s": t.duration.total_seconds() if t.duration else 0.0,
        }
        for t in study.trials
    ]
    return Adaptation(best=best["adapter"], scores=scores, trials=trials)
