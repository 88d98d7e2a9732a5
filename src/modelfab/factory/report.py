"""`modelfab report RUN`: a factory run's marginal-cost ledger as Markdown, HTML and a plot.

The cost curve shows each scenario's CPU seconds in build order, with the running mean, and
the first scenario's cost as a reference line: the factory claim is that the curve drops
after the first model, because the teacher's work, the data and the pipeline are shared.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from modelfab.atomic import write_bytes, write_text
from modelfab.factory.ledger import Ledger
from modelfab.report.render import _figure, _png

PLOT = "factory-cost-curve.png"
COLUMNS = (
    "order",
    "scenario",
    "status",
    "models",
    "CPU s",
    "task CPU s",
    "wall s",
    "peak RSS MB",
    "labels",
    "teacher passes",
    "cache hits",
    "core-h",
    "cost",
    "chosen",
    "macro-F1",
    "bar",
)


def cost_curve_png(ledger: Ledger) -> bytes:
    built = [s for s in ledger.scenarios if s.order is not None]
    with _figure() as (fig, ax):
        x = [s.order for s in built]
        y = [s.cpu_s for s in built]
        ax.bar(x, y, color="tab:blue", label="CPU s of the scenario")
        means = [sum(y[: i + 1]) / (i + 1) for i in range(len(y))]
        ax.plot(x, means, color="tab:orange", marker="o", label="mean CPU s of the first n")
        if y:
            ax.axhline(y[0] * 0.25, color="tab:red", ls="--", label="25 % of the first")
        ax.set_xlabel("scenario, in build order")
        ax.set_ylabel("CPU seconds (all stages)")
        ax.set_title(f"{ledger.run.recipe_name}: marginal cost per scenario")
        ax.legend()
        return _png(fig)


def _row(s) -> list[str]:
    bar = "yes" if s.meets_bar else ("; ".join(s.misses) or "no")
    return [
        "-" if s.order is None else str(s.order),
        s.scenario,
        s.status,
        str(s.models),
        f"{s.cpu_s:.1f}",
        "-" if s.task_cpu_s is None else f"{s.task_cpu_s:.1f}",
        f"{s.wall_s:.1f}",
        f"{s.peak_rss_bytes / 1e6:.0f}",
        str(s.labels_used),
        str(s.teacher_passes),
        str(s.cache_hits),
        f"{s.core_hours:.4f}",
        f"{s.cost:.4f}",
        s.chosen or "-",
        "-" if s.macro_f1 is None else f"{s.macro_f1:.3f}",
        bar,
    ]


def _summary_lines(ledger: Ledger) -> list[str]:
    m = ledger.summary()
    ratio = m["rest_over_first"]
    first = m["first_cpu_s"]
    rest = m["median_rest_cpu_s"]
    return [
        f"factory run {m['factory_run']} of recipe {m['recipe']} on engine {m['engine']}: "
        f"{m['status']}; {m['built']} built, {m['skipped']} skipped, {m['failed']} failed",
        "first scenario: "
        + ("-" if first is None else f"{first:.1f} CPU s")
        + "; median of scenarios 2..N: "
        + ("-" if rest is None else f"{rest:.1f} CPU s")
        + ("" if ratio is None else f" ({100 * ratio:.1f} % of the first)")
        + (
            ""
            if m["task_rest_over_first"] is None
            else f"; counting all task CPU (data, splits, labels): "
            f"{100 * m['task_rest_over_first']:.1f} %"
        ),
        f"total: {m['total_cpu_s']:.1f} CPU s = {m['core_hours']:.4f} core-hours = "
        f"{m['cost']:.4f} {m['currency']} at {m['price_per_core_hour']} {m['currency']} "
        "per core-hour",
        f"teacher forward passes {m['teacher_passes']}, feature-cache hits {m['cache_hits']}; "
        f"{m['meets_bar']} of {m['built'] + m['skipped']} scenarios meet the student bar",
    ]


def render_markdown(ledger: Ledger) -> str:
    lines = [f"# Factory run {ledger.run.id[:12]}: {ledger.run.recipe_name}", ""]
    lines += [f"- {line}" for line in _summary_lines(ledger)]
    lines += ["", f"![cost curve](report-assets/{PLOT})", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for s in ledger.scenarios:
        cells = [c.replace("|", "\\|") for c in _row(s)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "CPU s, wall s and peak RSS are summed (peak: the maximum) over every stage of the "
        "scenario's build run (task CPU s: everything its task spent in this factory run, "
        "unmetered steps included); labels are the human labels it learned from; core-hours "
        "are CPU seconds / 3600. A skipped scenario shows the build that made its models.",
        "",
    ]
    return "\n".join(lines)


def render_html(ledger: Ledger, png: bytes) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in _row(s)) + "</tr>" for s in ledger.scenarios
    )
    items = "".join(f"<li>{e(line)}</li>" for line in _summary_lines(ledger))
    img = base64.b64encode(png).decode("ascii")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{e(ledger.run.recipe_name)}: factory run</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}</style></head><body>"
        f"<h1>Factory run {e(ledger.run.id[:12])}: {e(ledger.run.recipe_name)}</h1>"
        f"<ul>{items}</ul><img alt='cost curve' src='data:image/png;base64,{img}'>"
        f"<table><tr>{head}</tr>{body}</table></body></html>"
    )


def write_factory_report(ledger: Ledger, out_dir: Path) -> tuple[Path, Path]:
    """factory-report.md, factory-report.html and report-assets/factory-cost-curve.png."""
    out_dir = Path(out_dir)
    png = cost_curve_png(ledger)
    page, markdown = render_html(ledger, png), render_markdown(ledger)
    md, page_path = out_dir / "factory-report.md", out_dir / "factory-report.html"
    write_bytes(out_dir / "report-assets" / PLOT, png)
    write_text(page_path, page)
    write_text(md, markdown)
    return md, page_path
