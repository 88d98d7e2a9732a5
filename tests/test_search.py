"""Optuna search over adaptation strategies: budget, pruning, and trials in the registry."""

from __future__ import annotations

import pytest
from test_adapt import gaussian_data

from modelfab.adapt.search import search
from modelfab.errors import InputError, NotFoundError
from modelfab.registry import Registry

pytestmark = pytest.mark.usefixtures("one_thread")


def test_search_keeps_the_best_trial_and_reports_every_trial():
    data = gaussian_data()
    result = search(data, ("logreg", "mlp"), budget_s=30, seed=0, max_trials=6)
    assert len(result.trials) == 6
    assert {t["strategy"] for t in result.trials} <= {"logreg", "mlp"}
    done = [t for t in result.trials if t["state"] == "complete"]
    assert done and result.best.val_f1_ == max(t["value"] for t in done)
    assert result.best.val_f1_ > 0.9
    for t in result.trials:
        assert t["params"] and t["duration_s"] >= 0
        if t["strategy"] == "logreg":
            assert set(t["params"]) == {"C"}


def test_weak_mlp_trials_are_pruned(monkeypatch):
    """When the pruner says stop, an MLP trial ends at that epoch and is recorded as pruned."""
    import optuna

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    result = search(gaussian_data(), ("logreg", "mlp"), budget_s=30, seed=1, max_trials=8)
    states = {(t["strategy"], t["state"]) for t in result.trials}
    assert ("mlp", "pruned") in states and ("mlp", "complete") not in states
    assert result.best.name == "logreg"


def test_search_budget_and_strategy_errors():
    data = gaussian_data()
    with pytest.raises(InputError, match="positive number of seconds"):
        search(data, ("logreg",), budget_s=0)
    with pytest.raises(InputError, match="unknown adaptation strategy"):
        search(data, ("svm",), budget_s=1)
    with pytest.raises(InputError, match="need a teacher"):
        search(data, ("lora",), budget_s=1)


def test_trials_round_trip_in_the_registry(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path / 'r.sqlite'}")
    registry.upsert_dataset("d" * 64, "d", "src", 1, ["text"], "p")
    scenario = registry.upsert_scenario("s" * 64, "s", "d" * 64, {}, {})
    run_id = registry.start_run(scenario.id, "build")
    trials = [
        {
            "number": 0,
            "strategy": "mlp",
            "params": {"lr": 0.01},
            "state": "pruned",
            "value": None,
            "duration_s": 0.5,
        },
        {
            "number": 1,
            "strategy": "logreg",
            "params": {"C": 3.0},
            "state": "complete",
            "value": 0.8,
            "duration_s": 0.1,
        },
    ]
    assert registry.add_trials(run_id, trials) == 2
    assert registry.trials(run_id) == trials
    with pytest.raises(InputError, match="trial value"):
        good, bad = {**trials[1], "number": 2}, {**trials[1], "number": 3, "value": float("nan")}
        registry.add_trials(run_id, [good, bad])
    assert len(registry.trials(run_id)) == 2  # the bad batch left nothing behind
    with pytest.raises(NotFoundError):
        registry.add_trials("nope", trials)
