"""`make bench-factory`: the benchmark recipe end to end, from a cold cache, plus the
crash-safety and engine comparisons. Writes bench-results/factory.json and the factory report.

1. Build every scenario of recipes/debian-factory.yaml in a fresh MODELFAB_HOME on the local
   engine (the reference run): one record per scenario from the ledger.
2. Resume: the first `--resume-scenarios` scenarios again, in another fresh home, through the
   CLI, killed with SIGKILL (its whole process group) at `--kills` random moments (seeded) and
   resumed each time; then compared with the reference: same model ids, same validation and
   test metrics, no orphan file (factory/orphans.py).
3. Ray: the first `--ray-scenarios` scenarios with `--engine ray` (a local Ray) in a third
   fresh home, compared with the reference the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from modelfab.atomic import write_text

REPO = Path(__file__).resolve().parents[3]


def models_and_metrics(registry, scenarios: list[str] | None = None) -> dict[str, list]:
    """{model id: [name, {split: metrics}]} (val and test only: latency is measured)."""
    out: dict[str, list] = {}
    for m in registry.list_models():
        if scenarios is not None and m.name.split("/", 1)[0] not in scenarios:
            continue
        metrics = registry.metrics(m.id)
        out[m.id] = [m.name, {k: v for k, v in metrics.items() if k in ("val", "test")}]
    return out


def compare(reference: dict, other: dict) -> dict:
    """Whether two {model id: [name, metrics]} maps agree, and where they do not."""
    missing = sorted(set(reference) - set(other))
    extra = sorted(set(other) - set(reference))
    differ = []
    for model_id in sorted(set(reference) & set(other)):
        if reference[model_id] != other[model_id]:
            differ.append(
                {"model_id": model_id, "reference": reference[model_id], "other": other[model_id]}
            )
    return {
        "identical": not (missing or extra or differ),
        "models": len(other),
        "missing_ids": missing,
        "extra_ids": extra,
        "metric_differences": differ,
    }


def _env(home: Path) -> dict:
    src = str(REPO / "src")
    env = {**os.environ, "MODELFAB_HOME": str(home), "MODELFAB_QUIET": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    env.pop("MODELFAB_REGISTRY_URL", None)
    return env


def _cli(args: list[str], home: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "modelfab.cli", *args],
        env=_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # SIGKILL to the group reaches every process of the run
    )


def _fresh(home: Path) -> Path:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    return home


def _registry(home: Path):
    from modelfab.registry import Registry

    return Registry(f"sqlite:///{home / 'registry.sqlite'}")


def resume_check(
    recipe: Path,
    scenarios: list[str],
    home: Path,
    kills: int,
    seed: int,
    reference: dict,
    window_s: tuple[float, float],
) -> dict:
    from modelfab.factory.orphans import orphan_files

    _fresh(home)
    rng = random.Random(seed)
    args = ["run", str(recipe), "--only", ",".join(scenarios)]
    moments, done_early = [], False
    started = time.perf_counter()
    with open(home.parent / f"{home.name}.log", "w") as log:
        for _ in range(kills):
            delay = rng.uniform(*window_s)
            proc = _cli(args, home, log)
            time.sleep(delay)
            if proc.poll() is not None:
                done_early = True
                break
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            moments.append(round(delay, 1))
        final = _cli(args, home, log).wait()
    registry = _registry(home)
    result = compare(reference, models_and_metrics(registry, scenarios))
    orphans = [str(p.relative_to(home)) for p in orphan_files(home, registry)]
    runs = registry.list_runs()
    factory = registry.list_factory_runs()
    registry.close()
    return {
        **result,
        "scenarios": scenarios,
        "kills": len(moments),
        "kill_moments_s": moments,
        "finished_before_all_kills": done_early,
        "final_exit_code": final,
        "orphan_files": orphans,
        "build_runs": {s: sum(r.status == s for r in runs) for s in ("succeeded", "failed")},
        "runs_left_running": sum(r.status == "running" for r in runs),
        "factory_runs": len(factory),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def ray_check(recipe: Path, scenarios: list[str], home: Path, reference: dict) -> dict:
    _fresh(home)
    started = time.perf_counter()
    args = ["run", str(recipe), "--engine", "ray", "--only", ",".join(scenarios)]
    with open(home.parent / f"{home.name}.log", "w") as log:
        code = _cli(args, home, log).wait()
    registry = _registry(home)
    result = compare(reference, models_and_metrics(registry, scenarios))
    registry.close()
    return {
        **result,
        "scenarios": scenarios,
        "exit_code": code,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelfab.factory.bench")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "debian-factory.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--work", type=Path, default=REPO / ".modelfab-bench-factory")
    parser.add_argument("--only", default=None, help="main run: just these scenarios")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--kill-window", type=float, nargs=2, default=(8.0, 60.0))
    parser.add_argument("--resume-scenarios", type=int, default=3)
    parser.add_argument("--ray-scenarios", type=int, default=2)
    parser.add_argument("--price-per-core-hour", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from modelfab.bench.hardware import fingerprint
    from modelfab.factory.ledger import ledger
    from modelfab.factory.orphans import orphan_files
    from modelfab.factory.report import write_factory_report

    started = time.time()
    main_home = _fresh(args.work / "main")
    cmd = ["run", str(args.recipe)] + (["--only", args.only] if args.only else [])
    with open(args.work / "main.log", "w") as log:
        code = _cli(cmd, main_home, log).wait()
    main_wall = time.time() - started
    registry = _registry(main_home)
    book = ledger(registry, registry.list_factory_runs()[-1], args.price_per_core_hour)
    order = [s.scenario for s in book.scenarios]
    reference = models_and_metrics(registry)
    records = [
        {
            "scenario": s.scenario,
            "order": s.order,
            "status": s.status,
            "cpu_s": round(s.cpu_s, 2),
            "task_cpu_s": None if s.task_cpu_s is None else round(s.task_cpu_s, 2),
            "wall_s": round(s.wall_s, 2),
            "task_wall_s": None if s.task_wall_s is None else round(s.task_wall_s, 2),
            "peak_rss_bytes": s.peak_rss_bytes,
            "labels_used": s.labels_used,
            "teacher_passes": s.teacher_passes,
            "cache_hits": s.cache_hits,
            "core_hours": s.core_hours,
            "cost": s.cost,
            "models": s.models,
            "chosen": s.chosen,
            "chosen_model_id": s.chosen_model_id,
            "macro_f1": s.macro_f1,
            "teacher_macro_f1": s.teacher_macro_f1,
            "meets_bar": s.meets_bar,
            "misses": s.misses,
        }
        for s in book.scenarios
    ]
    main_orphans: list[str] = [
        str(p.relative_to(main_home)) for p in orphan_files(main_home, registry)
    ]
    write_factory_report(book, args.out)
    registry.close()

    built = [s for s in order if s in {r["scenario"] for r in records if r["status"] == "built"}]
    resume = None
    if args.kills > 0 and args.resume_scenarios > 0:
        resume = resume_check(
            args.recipe,
            built[: args.resume_scenarios],
            args.work / "resume",
            args.kills,
            args.seed,
            {
                k: v
                for k, v in reference.items()
                if v[0].split("/", 1)[0] in built[: args.resume_scenarios]
            },
            tuple(args.kill_window),  # type: ignore[arg-type]
        )
    ray = None
    if args.ray_scenarios > 0:
        chosen = built[: args.ray_scenarios]
        ray = ray_check(
            args.recipe,
            chosen,
            args.work / "ray",
            {k: v for k, v in reference.items() if v[0].split("/", 1)[0] in chosen},
        )
    summary = book.summary()
    orphans = main_orphans + (resume["orphan_files"] if resume else [])
    result = {
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "command": "make bench-factory",
        "recipe": str(args.recipe.relative_to(REPO))
        if args.recipe.is_relative_to(REPO)
        else str(args.recipe),
        "main_exit_code": code,
        "main_wall_s": round(main_wall, 1),
        "within_20_minutes": main_wall <= 20 * 60,
        "summary": summary,
        "median_rest_within_25_percent": summary["rest_over_first"] is not None
        and summary["rest_over_first"] <= 0.25,
        "records": records,
        "orphan_files": orphans,
        "resume_identical": None
        if resume is None
        else resume["identical"] and not resume["orphan_files"] and resume["final_exit_code"] == 0,
        "resume": resume,
        "ray_identical": None if ray is None else ray["identical"] and ray["exit_code"] == 0,
        "ray": ray,
        "hardware": fingerprint(),
        "wall_s": round(time.time() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "factory.json", json.dumps(result, indent=2, default=str))
    print(
        f"factory bench: {len(records)} scenarios in {main_wall:.0f} s; median 2..N = "
        f"{summary['rest_over_first']}; resume_identical={result['resume_identical']}; "
        f"ray_identical={result['ray_identical']}; orphan files {len(orphans)}"
    )
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
