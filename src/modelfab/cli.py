"""Thin command line over the public API. Every import of heavy libraries happens inside the
command that needs it, so `modelfab predict` never loads torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from modelfab.errors import InputError, ModelfabError

# typer >= 0.29 ships its own copy of click and raises that copy's exceptions.
_click: Any = getattr(typer, "_click", None) or __import__("click")

app = typer.Typer(
    help="modelfab: from a foundation model and a few labels to a small, fast, served model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Import and list datasets.", no_args_is_help=True)
scenario_app = typer.Typer(
    help="Define scenarios and see their data quality.", no_args_is_help=True
)
models_app = typer.Typer(help="Models in the registry.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(scenario_app, name="scenario")
app.add_typer(models_app, name="models")

# Wide when piped, so tables and paths are not cut for scripts and logs.
out = Console() if sys.stdout.isatty() else Console(width=200, soft_wrap=True)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@data_app.command("import")
def data_import(
    path: Path,
    format: Annotated[
        str | None, typer.Option(help="jsonl, csv, parquet, debian, debian-snapshot")
    ] = None,
    name: Annotated[str | None, typer.Option(help="dataset name (default: file stem)")] = None,
    translations: Annotated[Path | None, typer.Option(help="apt Translation-en file")] = None,
) -> None:
    """Import a file as an immutable, content-addressed dataset version."""
    from modelfab.pipeline.api import import_data

    version = import_data(path, fmt=format, name=name, translations=translations)
    columns = ", ".join(version.columns)
    out.print(f"dataset {version.name} {version.id[:12]}: {version.n_rows} rows, columns {columns}")


@data_app.command("list")
def data_list() -> None:
    """List dataset versions."""
    from modelfab.pipeline.api import list_datasets

    table = Table("id", "name", "rows", "columns", "created")
    for v in list_datasets():
        table.add_row(v.id[:12], v.name, str(v.n_rows), ", ".join(v.columns), v.created_at[:19])
    out.print(table)


@scenario_app.command("create")
def scenario_create(
    name: str,
    dataset: Annotated[str, typer.Option(help="dataset name or id")],
    text: Annotated[str, typer.Option(help="text field(s), comma-separated")] = "text",
    label: Annotated[str | None, typer.Option(help="label field")] = None,
    facet: Annotated[
        str | None, typer.Option(help="derive the label from this debtags facet")
    ] = None,
    min_class_count: int = 2,
    max_per_class: int | None = None,
    include: Annotated[str | None, typer.Option(help="only these classes, comma-separated")] = None,
    split: Annotated[str, typer.Option(help="stratified or group")] = "stratified",
    group_field: str | None = None,
    test_frac: float = 0.2,
    val_frac: float = 0.1,
    seed: int = 0,
    labels_per_class: Annotated[
        int | None, typer.Option(help="few-shot: keep this many labels")
    ] = None,
    unlabeled_pool: int = 0,
    replace: Annotated[bool, typer.Option(help="re-point an existing name at this spec")] = False,
) -> None:
    """Define a scenario over a dataset and print its data-quality report."""
    from pydantic import ValidationError

    from modelfab.data.quality import format_quality
    from modelfab.data.scenario import ScenarioSpec
    from modelfab.pipeline.api import create_scenario

    fields = {
        "name": name,
        "dataset": dataset,
        "text_fields": _csv(text),
        "label_field": label,
        "derived_label": {"kind": "facet", "facet": facet} if facet else None,
        "seed": seed,
        "filters": {
            "min_class_count": min_class_count,
            "max_per_class": max_per_class,
            "include_classes": _csv(include),
        },
        "split": {
            "kind": split,
            "group_field": group_field,
            "test_frac": test_frac,
            "val_frac": val_frac,
        },
        "labels_per_class": labels_per_class,
        "unlabeled_pool": unlabeled_pool,
    }
    try:
        spec = ScenarioSpec.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "scenario"
        raise InputError(f"invalid scenario: {where}: {err['msg']}") from None
    record, report = create_scenario(spec, replace=replace)
    out.print(f"scenario {record.name} ({record.id[:12]}) on dataset {record.dataset_id[:12]}")
    out.print(format_quality(report))


@scenario_app.command("show")
def scenario_show(name: str) -> None:
    """Show a scenario's definition and quality report."""
    from modelfab.data.quality import format_quality
    from modelfab.registry import Registry

    record = Registry().get_scenario(name)
    out.print_json(json.dumps(record.spec))
    if record.quality:
        out.print(format_quality(record.quality))


@scenario_app.command("list")
def scenario_list() -> None:
    """List scenarios."""
    from modelfab.registry import Registry

    table = Table("name", "id", "dataset", "created")
    for s in Registry().list_scenarios():
        table.add_row(s.name, s.id[:12], s.dataset_id[:12], str(s.created_at)[:19])
    out.print(table)


@app.command()
def build(
    scenario: str,
    teacher: Annotated[
        str | None, typer.Option(help="local HF model directory (default: all-MiniLM-L6-v2)")
    ] = None,
    max_length: int = 64,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16")] = "auto",
    adapt: Annotated[
        str, typer.Option(help="adaptation strategies, comma-separated")
    ] = "logreg,mlp",
    layers: Annotated[int, typer.Option(help="student transformer layers")] = 2,
    epochs: int = 3,
    bench: Annotated[
        bool, typer.Option(help="benchmark teacher and student after the build")
    ] = True,
) -> None:
    """Build the adapted teacher and a distilled int8 student for a scenario."""
    from modelfab.distill.transformer import TransformerStudentConfig
    from modelfab.pipeline.build import build as run_build
    from modelfab.pipeline.config import BenchConfig, BuildConfig, TeacherConfig
    from modelfab.report.render import rich_table

    config = BuildConfig(
        teacher=TeacherConfig(path=teacher, max_length=max_length, precision=precision),
        adapt=tuple(_csv(adapt) or ()),
        student=TransformerStudentConfig(layers=layers, epochs=epochs, max_length=max_length),
        bench=BenchConfig(enabled=bench),
    )
    result = run_build(scenario, config)
    out.print(rich_table(result.records))
    out.print(f"bundle: {result.bundle}", soft_wrap=True)


@models_app.command("list")
def models_list(scenario: Annotated[str | None, typer.Option()] = None) -> None:
    """List models, newest last."""
    from modelfab.registry import Registry

    registry = Registry()
    table = Table("id", "name", "role", "family", "parent", "test macro-F1", "size MB")
    for m in registry.list_models(scenario=scenario):
        f1 = registry.metrics(m.id).get("test", {}).get("macro_f1")
        table.add_row(
            m.id[:12],
            m.name,
            m.role,
            m.family,
            (m.parent_id or "")[:12],
            f"{f1:.3f}" if f1 is not None else "",
            f"{(m.size_bytes or 0) / 1e6:.1f}",
        )
    out.print(table)


@models_app.command("show")
def models_show(model: str) -> None:
    """Show a model: metrics, lineage and cost ledger."""
    from dataclasses import asdict

    from modelfab.registry import Registry

    registry = Registry()
    record = registry.get_model(model)
    info = {
        "model": asdict(record),
        "metrics": registry.metrics(record.id),
        "lineage": [f"{m.id[:12]} {m.name} ({m.role})" for m in registry.lineage(record.id)],
        "costs": [c.to_record().to_dict() for c in registry.costs(model_id=record.id)],
    }
    out.print_json(json.dumps(info, default=str))


def _bundle_path(bundle: str) -> Path:
    path = Path(bundle)
    if path.is_dir():
        return path
    if "/" in bundle or bundle.startswith("."):
        from modelfab.errors import NotFoundError

        raise NotFoundError(f"no bundle directory {bundle}")
    from modelfab.registry import Registry

    record = Registry().get_model(bundle)
    if not record.artifact_path or not (Path(record.artifact_path) / "manifest.json").is_file():
        raise InputError(f"model {record.id[:12]} ({record.role}) has no bundle to run")
    return Path(record.artifact_path)


@app.command()
def predict(
    bundle: Annotated[str, typer.Argument(help="bundle directory or model id")],
    texts: Annotated[list[str], typer.Argument(help="texts to classify")],
    threads: int | None = None,
) -> None:
    """Classify texts with a bundle (onnxruntime + tokenizers only; the manifest is verified)."""
    from modelfab.export.runtime import BundlePredictor

    predictor = BundlePredictor(_bundle_path(bundle), threads=threads)
    for text, pred in zip(texts, predictor.predict(texts), strict=True):
        out.print(
            json.dumps({"text": text, "label": pred["label"], "score": round(pred["score"], 4)})
        )


@app.command("bench")
def bench_cmd(
    bundle: Annotated[str, typer.Argument(help="bundle directory or model id")],
    texts: Annotated[Path | None, typer.Option(help="file with one text per line")] = None,
    threads: int = 1,
    seconds: float = 6.0,
) -> None:
    """Measure a bundle's batch-1 latency (p50/p99) and batch-32 throughput on this machine."""
    from modelfab.bench.hardware import fingerprint
    from modelfab.bench.latency import bench_bundle

    path = _bundle_path(bundle)
    if texts is not None:
        try:
            sample = [t for t in texts.read_text(encoding="utf-8").splitlines() if t.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read texts from {texts}: {exc}") from None
        if not sample:
            raise InputError(f"{texts} has no texts")
    else:
        from modelfab.export.runtime import BundlePredictor

        labels = BundlePredictor(path).labels_  # verifies the manifest before reading anything
        sample = [
            f"a package for {label} work, with documentation and examples" for label in labels
        ]
    result = bench_bundle(path, sample, threads=threads, max_seconds=seconds)
    out.print_json(json.dumps({"bench": result, "hardware": fingerprint()}, default=str))


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option(help="where report.md/html go")] = Path("."),
) -> None:
    """Build three scenarios from this machine's Debian package index and print the report."""
    from modelfab.demo import run_demo

    run_demo(out_dir, console=out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ModelfabError -> one line on stderr and its exit code."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="modelfab", standalone_mode=False)
    except ModelfabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except _click.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        return exc.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script wrapper: exit with main()'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
