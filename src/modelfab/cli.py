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
from typer.core import TyperGroup

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
labels_app = typer.Typer(
    help="Suspect labels, the next examples to label, and answers back in.", no_args_is_help=True
)
app.add_typer(labels_app, name="labels")
recipe_app = typer.Typer(help="Recipes: many scenarios in one YAML file.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

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
    unlabeled_pool: Annotated[
        int, typer.Option(help="texts for the teacher to label and the students to learn from")
    ] = 0,
    unlabeled_from: Annotated[
        str,
        typer.Option(
            help="fill the pool from the scenario's own unlabeled rows, then the rest of the "
            "'dataset', or only the 'scenario'"
        ),
    ] = "dataset",
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
        "unlabeled_from": unlabeled_from,
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
    max_length: Annotated[int, typer.Option(help="tokens the teacher reads")] = 64,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16")] = "auto",
    adapt: Annotated[
        str,
        typer.Option(
            help="adaptation strategies, comma-separated (logreg, mlp, contrastive, lora, "
            "finetune), or auto: contrastive for <= 16 labels per class, else logreg,mlp"
        ),
    ] = "auto",
    families: Annotated[
        str, typer.Option(help="student families: transformer,static-embedding,hashed-ngram")
    ] = "transformer,static-embedding,hashed-ngram",
    budget_s: Annotated[
        float | None,
        typer.Option(
            help="search the adaptation strategies' hyperparameters for this long (Optuna)"
        ),
    ] = None,
    layers: Annotated[int, typer.Option(help="transformer student layers")] = 2,
    student_max_length: Annotated[
        int, typer.Option(help="tokens a transformer student reads")
    ] = 32,
    epochs: Annotated[int, typer.Option(help="transformer student epochs (at least)")] = 3,
    student_body: Annotated[
        str | None,
        typer.Option(help="start the transformer student from this body (`modelfab body`)"),
    ] = None,
    compress: Annotated[
        bool, typer.Option(help="also build layer-dropped, pruned and other-precision variants")
    ] = True,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="budget: batch-1 p50 latency on this machine")
    ] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="budget: bundle size")] = None,
    min_f1: Annotated[
        float | None, typer.Option(help="budget: validation macro-F1 (default: teacher - 1 pt)")
    ] = None,
    bench: Annotated[
        bool, typer.Option(help="benchmark every variant (needed to choose under a budget)")
    ] = True,
    pool_labels: Annotated[
        str,
        typer.Option(
            help="students learn the pool from the teacher's 'soft' distributions or its "
            "'hard' labels that clear the per-class confidence threshold"
        ),
    ] = "soft",
    target_precision: Annotated[
        float, typer.Option(help="precision the teacher's accepted pool labels are held to")
    ] = 0.9,
    exclude_label_issues: Annotated[
        bool, typer.Option(help="leave out train labels cleanlab flags as likely wrong")
    ] = False,
) -> None:
    """Build the adapted teacher and candidate students, benchmark them, pick one for the budget."""
    from modelfab.factory.options import BuildOptions
    from modelfab.pipeline.build import build as run_build
    from modelfab.report.render import rich_table

    options = BuildOptions.parse(
        {
            "teacher": teacher,
            "max_length": max_length,
            "precision": precision,
            "adapt": _csv(adapt) or [],
            "budget_s": budget_s,
            "families": _csv(families) or [],
            "layers": layers,
            "student_max_length": student_max_length,
            "epochs": epochs,
            "student_body": student_body,
            "compress": compress,
            "max_latency_ms": max_latency_ms,
            "max_size_mb": max_size_mb,
            "min_f1": min_f1,
            "bench": bench,
            "pool_labels": pool_labels,
            "target_precision": target_precision,
            "exclude_label_issues": exclude_label_issues,
        }
    )
    config = options.to_config()
    result = run_build(scenario, config)
    out.print(rich_table(result.records))
    out.print(f"chosen: {result.choice.get('chosen_variant')}: {result.choice.get('reason')}")
    out.print(f"bundle: {result.bundle}", soft_wrap=True)


@app.command("body")
def body_cmd(
    corpus: Annotated[Path, typer.Argument(help="unlabeled texts: a jsonl, csv or parquet file")],
    fields: Annotated[str, typer.Option(help="text fields, comma-separated")] = "text",
    format: Annotated[str | None, typer.Option(help="jsonl, csv or parquet")] = None,
    teacher: Annotated[
        str | None, typer.Option(help="local HF model directory (default: all-MiniLM-L6-v2)")
    ] = None,
    layers: Annotated[int, typer.Option(help="the student's layers")] = 2,
    max_length: Annotated[int, typer.Option(help="tokens per text")] = 64,
    epochs: Annotated[int, typer.Option(help="passes over the corpus")] = 3,
    max_texts: Annotated[int, typer.Option(help="a seeded sample of a larger corpus")] = 50_000,
) -> None:
    """Distill a student body from the teacher over unlabeled texts, once for every scenario;
    `modelfab build --student-body PATH` (or a recipe's `build: {student_body: PATH}`) starts
    the transformer student from it."""
    from modelfab.distill.body import BodyConfig
    from modelfab.pipeline.api import distill_body

    config = BodyConfig(layers=layers, max_length=max_length, epochs=epochs, max_texts=max_texts)
    body = distill_body(corpus, _csv(fields) or [], config, teacher=teacher, fmt=format)
    how = "reused" if body.reused else f"distilled in {body.meta.get('wall_s')} s"
    out.print(f"body {body.key[:12]} ({body.meta.get('texts')} texts, {how})")
    out.print(f"path: {body.path}", soft_wrap=True)


@recipe_app.command("check")
def recipe_check(recipe: Annotated[Path, typer.Argument(help="recipe YAML file")]) -> None:
    """Validate a recipe and list the scenarios it expands into; builds nothing."""
    from modelfab.factory.recipe import load_recipe

    loaded = load_recipe(recipe)
    table = Table("scenario", "label", "from", "labels/class", "pool", "students")
    for p in loaded.scenarios:
        s = p.spec
        label = s.label_field or "{kind} {target}".format(
            kind=s.derived_label.kind,  # type: ignore[union-attr]
            target=getattr(s.derived_label, "facet", None)
            or getattr(s.derived_label, "positive", ""),
        )
        table.add_row(
            s.name,
            label,
            p.origin,
            str(s.labels_per_class or "all"),
            str(s.unlabeled_pool),
            ",".join(p.options.families),
        )
    out.print(table)
    sources = ", ".join(f"{d.name} ({loaded.data_path(d)})" for d in loaded.recipe.data)
    out.print(f"{loaded.recipe.name}: {len(loaded.scenarios)} scenarios; data: {sources or '-'}")


@app.command("run")
def run_cmd(
    recipe: Annotated[Path, typer.Argument(help="recipe YAML file")],
    engine: Annotated[str, typer.Option(help="local (a process pool) or ray")] = "local",
    workers: Annotated[int, typer.Option(help="scenarios built at once")] = 1,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch threads per scenario (default: cores / workers)")
    ] = None,
    teacher: Annotated[
        str | None, typer.Option(help="teacher for every scenario (a local HF model directory)")
    ] = None,
    only: Annotated[str | None, typer.Option(help="just these scenarios, comma-separated")] = None,
) -> None:
    """Build every scenario of a recipe; unchanged ones are skipped, a killed run resumes."""
    from modelfab.factory.display import FactoryDisplay
    from modelfab.factory.orchestrate import RunOptions, run_recipe

    options = RunOptions(
        engine=engine,
        workers=workers,
        address=address,
        threads=threads,
        teacher=teacher,
        only=_csv(only) or [],
    )
    run = run_recipe(recipe, options, display=FactoryDisplay())
    counts = {s: sum(i["status"] == s for i in run.scenarios) for s in ("built", "skipped")}
    failed = [i for i in run.scenarios if i["status"] == "failed"]
    out.print(
        f"factory run {run.id[:12]} {run.status}: {counts['built']} built, "
        f"{counts['skipped']} skipped, {len(failed)} failed; `modelfab report {run.id[:12]}`"
    )
    if failed:
        raise typer.Exit(1)


@app.command("report")
def report_cmd(
    run: Annotated[str, typer.Argument(help="factory run id (or prefix), or a recipe name")],
    out_dir: Annotated[Path, typer.Option("--out", help="where the report goes")] = Path("."),
    price_per_core_hour: Annotated[
        float, typer.Option(help="price of one core-hour, for the cost in money")
    ] = 0.05,
    currency: str = "USD",
) -> None:
    """The marginal-cost ledger of a factory run: factory-report.md / .html and a cost curve."""
    from modelfab.factory.ledger import ledger
    from modelfab.factory.report import write_factory_report
    from modelfab.registry import Registry

    book = ledger(Registry(), run, price_per_core_hour, currency)
    md, page = write_factory_report(book, out_dir)
    summary = book.summary()
    ratio = summary["rest_over_first"]
    out.print(
        f"{summary['scenarios']} scenarios, {summary['total_cpu_s']:.1f} CPU s = "
        f"{summary['cost']:.4f} {currency}; median of 2..N = "
        + ("-" if ratio is None else f"{100 * ratio:.1f} % of the first")
    )
    out.print(f"wrote {md} and {page}", soft_wrap=True)


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


class _BenchGroup(TyperGroup):
    """`modelfab bench BUNDLE ...` means `modelfab bench run BUNDLE ...`: anything that is not a
    subcommand name (or --help) gets `run` put in front. A bundle directory that happens to be
    called like a subcommand is reached as ./history or with `bench run history`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


bench_app = typer.Typer(
    cls=_BenchGroup,
    help="Benchmark a model (`modelfab bench BUNDLE [OPTIONS]`) and query stored results.",
    no_args_is_help=True,
    subcommand_metavar="BUNDLE [OPTIONS] | COMMAND [ARGS]...",
)
app.add_typer(bench_app, name="bench")


def _threads(value: str) -> list[int]:
    try:
        threads = [int(v) for v in _csv(value) or []]
    except ValueError:
        raise InputError(f"--threads must be comma-separated integers, got {value!r}") from None
    if not threads or min(threads) < 1:
        raise InputError(f"--threads needs integers >= 1, got {value!r}")
    return threads


def _existing_registry() -> Any:
    """The registry if one exists; None where benchmarking a bundle would otherwise create one."""
    from modelfab import paths
    from modelfab.registry import Registry

    url = paths.registry_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None
    return Registry(url)


def _bench_target(bundle: str) -> tuple[str, Path, Any]:
    """(kind "bundle" or "teacher", artifact directory, registered ModelRecord or None)."""
    from modelfab.bench.probe import ADAPTER, HEAD
    from modelfab.errors import NotFoundError

    def kind_of(path: Path) -> str | None:
        if (path / HEAD).is_file() and (path / ADAPTER).is_file():
            return "teacher"
        return "bundle" if (path / "manifest.json").is_file() else None

    path = Path(bundle)
    if path.is_dir():
        registry = _existing_registry()
        resolved = path.resolve()
        record = None
        if registry is not None:
            with registry:
                record = next(
                    (
                        m
                        for m in registry.list_models()
                        if m.artifact_path and Path(m.artifact_path).resolve() == resolved
                    ),
                    None,
                )
        return kind_of(path) or "bundle", path, record  # a non-bundle fails its manifest check
    if "/" in bundle or bundle.startswith("."):
        raise NotFoundError(f"no bundle directory {bundle}")
    from modelfab.registry import Registry

    with Registry() as registry:
        record = registry.get_model(bundle)
    path = Path(record.artifact_path or "")
    kind = kind_of(path) if record.artifact_path and path.is_dir() else None
    if kind is None:
        raise InputError(f"model {record.id[:12]} ({record.role}) has no bundle or head to run")
    return kind, path, record


def _sample_texts(texts: Path | None, labels: list[str]) -> list[str]:
    """Texts from `texts` (one per line), else one generic sentence per class label."""
    if texts is None:
        return [f"a package for {label} work, with documentation and examples" for label in labels]
    try:
        sample = [t for t in texts.read_text(encoding="utf-8").splitlines() if t.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read texts from {texts}: {exc}") from None
    if not sample:
        raise InputError(f"{texts} has no texts")
    return sample


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:.1f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


@bench_app.command("run")
def bench_run(
    bundle: Annotated[
        str, typer.Argument(help="bundle directory, teacher artifact directory or model id")
    ],
    texts: Annotated[Path | None, typer.Option(help="file with one text per line")] = None,
    threads: Annotated[str, typer.Option(help="thread counts, comma-separated")] = "1,2",
    seconds: Annotated[float, typer.Option(help="timing budget per thread count")] = 6.0,
    rounds: Annotated[int, typer.Option(help="batch-1 rounds (latency: median)")] = 3,
    max_length: Annotated[
        int | None,
        typer.Option(help="teacher only: tokens per text (default: what the build used, or 128)"),
    ] = None,
    record: Annotated[
        bool, typer.Option(help="store the result if the model is registered")
    ] = True,
    peak: Annotated[
        bool, typer.Option(help="FLOP/s as a fraction of this machine's matmul peak")
    ] = True,
    json_only: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Measure a bundle or teacher in a fresh process (the default: `modelfab bench BUNDLE`).

    Batch-1 latency p50/p99 (medians over rounds), batch-32 throughput, peak RSS, load time and
    size, per thread count; stored in the results table when the model is registered.
    """
    from modelfab.bench.hardware import fingerprint
    from modelfab.bench.probe import measure_bundle, measure_teacher, teacher_artifact
    from modelfab.bench.results import hardware_id, record_bench, with_flops_fractions

    thread_list = _threads(threads)
    kind, path, model = _bench_target(bundle)
    opts: dict[str, Any] = {"threads": thread_list, "max_seconds": seconds, "rounds": rounds}
    if kind == "teacher":
        spec = teacher_artifact(path)
        sample = _sample_texts(texts, spec["classes"] or ["general"])
        measurement = measure_teacher(
            spec["teacher_dir"],
            spec["head"],
            sample,
            max_length=max_length or spec.get("max_length") or 128,
            encoder_state=spec["encoder_state"],
            **opts,
        )
    else:
        from modelfab.export.manifest import LABELS, verify_bundle

        verify_bundle(path)  # before reading labels.json
        labels = json.loads((path / LABELS).read_text(encoding="utf-8"))
        measurement = measure_bundle(path, _sample_texts(texts, [str(x) for x in labels]), **opts)
    hardware = fingerprint()
    if peak and measurement.get("flops_per_text"):
        from modelfab.bench.peak import peaks

        measurement = with_flops_fractions(measurement, peaks(threads=tuple(thread_list)))
    recorded: list[int] = []
    if model is not None and record:
        from modelfab.registry import Registry

        with Registry() as registry:
            recorded = record_bench(registry, model.id, measurement, hardware)
    hw_id = hardware_id(hardware)
    payload = {
        "bench": measurement,
        "hardware": hardware,
        "hardware_id": hw_id,
        "model_id": model and model.id,
        "recorded": recorded,
    }
    if not json_only:
        table = Table("threads", "p50 ms", "p99 ms", "b32 texts/s", "FLOP/s of fp32 peak", "calls")
        for n, entry in measurement["at_threads"].items():
            table.add_row(
                n,
                f"{entry['latency_b1_p50_ms']:.2f}",
                f"{entry['latency_b1_p99_ms']:.2f}",
                f"{entry['throughput_b32']:.1f}",
                _pct(entry.get("flops_fraction_fp32")),
                f"{entry['b1_calls']}" + (" (truncated)" if entry.get("truncated") else ""),
            )
        name = f"{model.name} {model.id[:12]}" if model else str(path)
        out.print(f"{kind} {name}", soft_wrap=True)
        out.print(table)
        out.print(
            f"load {measurement['load_s']:.2f} s, peak RSS {_mb(measurement['peak_rss_bytes'])} MB,"
            f" size {_mb(measurement['size_bytes'])} MB; hardware {hw_id[:12]}"
            f" ({hardware.get('cpu_model')})",
            soft_wrap=True,
        )
        if recorded:
            out.print(f"stored as bench results {', '.join(map(str, recorded))}")
        elif model is None:
            out.print("not stored: not a registered model")
    out.print_json(json.dumps(payload, default=str))


@bench_app.command("history")
def bench_history(
    model: Annotated[str | None, typer.Option(help="model id or prefix")] = None,
    scenario: Annotated[str | None, typer.Option(help="scenario name or id")] = None,
    hardware: Annotated[str | None, typer.Option(help="hardware id or prefix")] = None,
    limit: Annotated[int, typer.Option(help="newest rows to show")] = 50,
    json_only: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """Stored benchmark results (model by hardware), newest first."""
    from dataclasses import asdict

    from modelfab.registry import Registry

    with Registry() as registry:
        rows = registry.bench_history(
            model=model, scenario=scenario, hardware=hardware, limit=limit
        )
    if json_only:
        out.print_json(json.dumps([asdict(r) for r in rows], default=str))
        return
    table = Table(
        "model",
        "scenario",
        "hardware",
        "threads",
        "p50 ms",
        "p99 ms",
        "b32/s",
        "RSS MB",
        "load s",
        "% fp32 peak",
        "date",
    )
    for r in rows:
        table.add_row(
            f"{r.model_name} {r.model_id[:12]}" if r.model_id else Path(r.artifact).name,
            r.scenario_name or "",
            f"{r.hardware_id[:12]} {r.hardware.get('cpu_model', '')}",
            str(r.threads),
            f"{r.latency_b1_p50_ms:.2f}",
            f"{r.latency_b1_p99_ms:.2f}",
            f"{r.throughput_b32:.1f}",
            _mb(r.peak_rss_bytes),
            "" if r.load_s is None else f"{r.load_s:.2f}",
            _pct(r.flops_fraction_of_peak),
            str(r.created_at)[:19],
        )
    out.print(table)
    if not rows:
        out.print("no benchmark results match")


@bench_app.command("peak")
def bench_peak(
    threads: Annotated[str, typer.Option(help="thread counts, comma-separated")] = "1,2",
    refresh: Annotated[bool, typer.Option(help="measure again")] = False,
) -> None:
    """This machine's matmul peak (fp32, bf16), measured once and cached in MODELFAB_HOME."""
    from modelfab.bench.peak import peaks

    entry = peaks(threads=tuple(_threads(threads)), refresh=refresh)
    table = Table("dtype", "threads", "GFLOP/s")
    for dtype in ("fp32", "bf16"):
        by_threads = entry["flops"].get(dtype, {})
        for n, value in sorted(by_threads.items(), key=lambda kv: int(kv[0])):
            table.add_row(dtype, n, f"{value / 1e9:.1f}")
    out.print(f"hardware {entry['hardware_id'][:12]}, torch {entry['torch']}")
    out.print(table)


TEACHER_HELP = "local HF model directory the scenario is built with (default: all-MiniLM-L6-v2)"


def _write_table(frame: Any, path: Path) -> None:
    from modelfab.labels.active import write_queue

    write_queue(frame, path)
    out.print(f"wrote {len(frame)} rows to {path}")


@labels_app.command("issues")
def labels_issues(
    scenario: str,
    top: Annotated[int, typer.Option(help="rows to print")] = 20,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="write the full ranking (.csv or .jsonl)")
    ] = None,
    seed: int = 0,
    teacher: Annotated[str | None, typer.Option(help=TEACHER_HELP)] = None,
) -> None:
    """Rank the scenario's human train labels by how likely they are wrong (cleanlab)."""
    from modelfab.pipeline.config import TeacherConfig
    from modelfab.pipeline.loop import suspect_labels

    ranked = suspect_labels(scenario, seed=seed, teacher=TeacherConfig(path=teacher))
    table = Table("row_id", "given", "suggested", "quality", "flagged", "text")
    for r in ranked.head(top).itertuples():
        table.add_row(
            str(r.row_id),
            r.given,
            r.suggested,
            f"{r.quality:.3f}",
            "yes" if r.is_issue else "",
            r.text[:60].replace("\n", " "),
        )
    out.print(table)
    out.print(f"{int(ranked['is_issue'].sum())} of {len(ranked)} labels flagged")
    if out_file is not None:
        _write_table(ranked, out_file)


@labels_app.command("queue")
def labels_queue(
    scenario: str,
    out_file: Annotated[Path, typer.Option("--out", help="queue file (.csv or .jsonl)")],
    k: Annotated[int, typer.Option(help="examples to pick")] = 40,
    strategy: Annotated[
        str,
        typer.Option(help="balanced, uncertainty-diversity, uncertainty, diversity or random"),
    ] = "balanced",
    seed: int = 0,
    teacher: Annotated[str | None, typer.Option(help=TEACHER_HELP)] = None,
) -> None:
    """Pick the next pool texts worth labeling; fill their `label` column, then `answers`."""
    from modelfab.pipeline.config import TeacherConfig
    from modelfab.pipeline.loop import labeling_queue

    queue = labeling_queue(scenario, k, strategy, seed=seed, teacher=TeacherConfig(path=teacher))
    _write_table(queue, out_file)


@labels_app.command("answers")
def labels_answers(scenario: str, answers: Path) -> None:
    """Import a filled-in queue as a new dataset version and point the scenario at it."""
    from modelfab.pipeline.loop import import_answers

    version, n = import_answers(scenario, answers)
    out.print(f"{n} answers -> dataset {version.name} version {version.id[:12]}")
    out.print(
        f"scenario {scenario} now uses it; `modelfab build {scenario}` reuses cached features"
    )


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option(help="where report.md/html go")] = Path("."),
) -> None:
    """Build three scenarios from this machine's Debian package index and print the report."""
    from modelfab.demo import run_demo

    run_demo(out_dir, console=out)


@app.command("export-head")
def export_head(
    teachers: Annotated[list[str], typer.Argument(help="adapted teacher model ids (logreg/mlp)")],
) -> None:
    """Register a teacher's head as a head model over a shared backbone (exported once per
    encoder): `modelfab serve` then runs that backbone once per batch for all such heads."""
    from modelfab.export.shared import register_teacher_head

    for teacher in teachers:
        model_id, backbone = register_teacher_head(teacher)
        out.print(f"head model {model_id[:12]} over backbone {backbone.name[:12]}")


@app.command()
def serve(
    models: Annotated[
        str | None, typer.Option(help="comma-separated served names or model ids (default: all)")
    ] = None,
    bundles_dir: Annotated[
        Path | None, typer.Option(help="serve the bundle folders under this directory instead")
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: int = 8080,
    max_batch: Annotated[int, typer.Option(help="texts per micro-batch")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="wait for a batch to fill")] = 2.0,
    queue_size: Annotated[int, typer.Option(help="queued requests per batcher (then 503)")] = 256,
    max_concurrency: Annotated[
        int, typer.Option(help="in-flight requests per model (then 429)")
    ] = 128,
    timeout_s: Annotated[float, typer.Option(help="request timeout (then 504)")] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(help="larger bodies get 413")] = 1 << 20,
    max_texts: Annotated[int, typer.Option(help="texts per request (then 413)")] = 256,
    refresh_s: Annotated[
        float, typer.Option(help="rescan for new models every N s; 0: never")
    ] = 5.0,
    threads: Annotated[int, typer.Option(help="threads running batches")] = 2,
    log_level: str = "info",
) -> None:
    """Serve models over HTTP: KServe v2 (Open Inference Protocol), /v1 JSON, /metrics.

    Load/unload/reload need the bearer token in the MODELFAB_SERVE_TOKEN environment variable
    (they are disabled without it); see docs/serving.md."""
    from modelfab.serve.config import BatchConfig, ServeConfig
    from modelfab.serve.server import serve as run_server

    batch = BatchConfig(max_batch, max_wait_ms, queue_size, max_concurrency, timeout_s)
    config = ServeConfig(
        host=host,
        port=port,
        bundles_dir=bundles_dir,
        models=tuple(_csv(models) or ()),
        batch=batch,
        max_body_bytes=max_body_bytes,
        max_texts=max_texts,
        admin_token=ServeConfig.token_from_env(),
        refresh_s=refresh_s,
        inference_threads=threads,
    )
    run_server(config, log_level)


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
