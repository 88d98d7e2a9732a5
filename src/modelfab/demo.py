"""`make demo`: three scenarios from this machine's Debian package index, end to end.

Package section, the `interface::` facet and the `game::` facet, each built into an adapted
teacher and three int8 students (transformer, static-embedding, hashed-ngram), benchmarked, one
picked per scenario, then a table and report.md / report.html.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rich.console import Console

from modelfab import paths
from modelfab.data.connectors import debian_index_paths
from modelfab.data.scenario import DerivedLabel, Filters, ScenarioSpec, SplitSpec
from modelfab.distill.bag import BagStudentConfig
from modelfab.distill.transformer import TransformerStudentConfig
from modelfab.errors import EnvironmentProblem
from modelfab.pipeline.api import create_scenario, import_data
from modelfab.pipeline.build import build
from modelfab.pipeline.config import BenchConfig, BuildConfig
from modelfab.pipeline.variants import StudentsConfig
from modelfab.report.render import rich_table, write_report

APT_UPDATE = "apt-get update -o Acquire::Languages=en"


def _try_apt_update(console: Console) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    console.print(f"fetching the package index with English descriptions: {APT_UPDATE}")
    subprocess.run(APT_UPDATE.split(), check=False, capture_output=True, timeout=600)


def find_index(console: Console) -> tuple[Path | None, Path | None]:
    """(Packages file, Translation-en file); fetched with apt-get when missing and allowed."""
    packages, translations = debian_index_paths()
    if not packages or not translations:
        _try_apt_update(console)
        packages, translations = debian_index_paths()
    if not packages or not translations:
        console.print(
            f"[yellow]no English package descriptions here; to get them run: sudo {APT_UPDATE}"
        )
    return pick_index(packages, translations)


def pick_index(packages: list[Path], translations: list[Path]) -> tuple[Path | None, Path | None]:
    """The largest Packages file (the main suite, not -updates or -security) and the
    Translation-en file of the same suite and component, if any."""
    if not packages:
        return None, None
    main = max(packages, key=lambda p: p.stat().st_size)
    suite = main.name.split("_binary-")[0]
    same = [t for t in translations if t.name.split("_i18n_")[0] == suite]
    return main, (same[0] if same else None)


def demo_scenarios(dataset: str) -> list[tuple[ScenarioSpec, int]]:
    """(scenario, student epochs); sizes chosen so the demo runs in minutes on 2 cores."""
    common: dict[str, Any] = {
        "dataset": dataset,
        "text_fields": ["summary", "description"],
        "split": SplitSpec(kind="group", group_field="source"),
        "seed": 0,
        "unlabeled_pool": 800,
    }
    return [
        (
            ScenarioSpec(
                name="demo-section",
                label_field="section",
                filters=Filters(min_class_count=150, max_per_class=60),
                **common,
            ),
            4,
        ),
        (
            ScenarioSpec(
                name="demo-interface",
                derived_label=DerivedLabel(kind="facet", facet="interface"),
                filters=Filters(min_class_count=50, max_per_class=200, exclude_classes=["TODO"]),
                **common,
            ),
            3,
        ),
        (
            ScenarioSpec(
                name="demo-game",
                derived_label=DerivedLabel(kind="facet", facet="game"),
                filters=Filters(min_class_count=20, max_per_class=100, exclude_classes=["TODO"]),
                **common,
            ),
            6,
        ),
    ]


def run_demo(out_dir: Path, console: Console | None = None) -> list[dict]:
    console = console or Console()
    packages, translations = find_index(console)
    if packages is not None:
        version = import_data(packages, fmt="debian", name="apt-index", translations=translations)
    elif paths.debian_snapshot().is_file():
        console.print(f"no apt package index; using the snapshot {paths.debian_snapshot()}")
        version = import_data(paths.debian_snapshot(), name="debian-snapshot")
    else:
        raise EnvironmentProblem(f"no Debian package index found; run: sudo {APT_UPDATE}")
    console.print(f"dataset {version.name} {version.id[:12]}: {version.n_rows} packages")
    records: list[dict] = []
    for spec, epochs in demo_scenarios(version.id):
        record, _ = create_scenario(spec, replace=True)
        console.print(f"[bold]building {spec.name}[/bold]")
        config = BuildConfig(
            student=TransformerStudentConfig(epochs=epochs, min_steps=0),
            # Every family, no compression variants: `make bench` shows those.
            students=StudentsConfig(
                static=BagStudentConfig(max_length=256, alpha=0.3, epochs=3 * epochs, min_steps=0),
                hashed=BagStudentConfig(
                    max_length=256,
                    buckets=1 << 17,
                    alpha=0.3,
                    lr=3e-2,
                    head_lr=3e-2,
                    epochs=3 * epochs,
                    min_steps=0,
                ),
                compress=None,
                quantizations=("dynamic-int8",),
                optimizations=(),
            ),
            bench=BenchConfig(threads=(1,), max_seconds=2.0, b1_calls=100),
        )
        records += build(spec.name, config).records
    console.print(rich_table(records))
    md, html = write_report(records, out_dir, meta={"command": "make demo"}, title="modelfab demo")
    console.print(f"report: {md} and {html}")
    return records
