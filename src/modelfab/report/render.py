"""Benchmark results as a teacher-vs-student summary: terminal table, plot, Markdown and HTML.

Input is the benchmark's list of result records (one dict per scenario and variant, as in
bench-results/latest.json) and an optional `meta` dict (hardware fingerprint, precision choice,
start time, command). Everything is rendered in memory first and written last, through
`modelfab.atomic`, so a failure while rendering leaves no partial report behind.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfab.atomic import write_bytes, write_text

if TYPE_CHECKING:
    from rich.table import Table

PLOT_NAME = "accuracy_latency.png"
ASSETS_DIR = "report-assets"
ROLE_MARKERS = {"teacher": "s", "student": "o", "baseline": "^"}
MISSING = "—"


# --------------------------------------------------------------------------- numbers & format


def _num(value: Any) -> float | None:
    """A finite float, or None for missing, non-numeric, NaN or infinite values."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ratio(numerator: Any, denominator: Any) -> float | None:
    top, bottom = _num(numerator), _num(denominator)
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def fmt_f1(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.3f}"


def fmt_ms(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.2f}"


def fmt_ratio(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.2f}×"


def fmt_size(value: Any) -> str:
    """Bytes as decimal megabytes (1 MB = 10^6 bytes)."""
    v = _num(value)
    return MISSING if v is None else f"{v / 1e6:.1f} MB"


def fmt_seconds(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:.1f}"


def fmt_count(value: Any) -> str:
    v = _num(value)
    return MISSING if v is None else f"{v:,.0f}"


# --------------------------------------------------------------------------- summary


def _scenarios(records: Iterable[dict]) -> list[str]:
    """Scenario names in order of first appearance."""
    return list(dict.fromkeys(str(r.get("scenario")) for r in records))


def pick(records: Sequence[dict]) -> dict | None:
    """The record with `chosen: True` if any, else the one with the best macro-F1 (first wins)."""
    if not records:
        return None
    for record in records:
        if record.get("chosen") is True:
            return record
    return max(
        records, key=lambda r: -math.inf if _num(r.get("macro_f1")) is None else r["macro_f1"]
    )


def summary_rows(records: Sequence[dict]) -> list[dict]:
    """One row per scenario comparing its teacher with its student.

    Teacher and student are each chosen by `pick`. Ratios are student / teacher for F1 and size
    (f1_ratio 0.98 = keeps 98 % of the teacher's F1; size_ratio 0.1 = a tenth of the size) and
    teacher / student for batch-1 p50 latency (speedup 5 = five times faster). A value that is
    missing, or a ratio with a zero or missing denominator, is None.
    """
    rows = []
    for scenario in _scenarios(records):
        mine = [r for r in records if str(r.get("scenario")) == scenario]
        teacher = pick([r for r in mine if r.get("role") == "teacher"]) or {}
        student = pick([r for r in mine if r.get("role") == "student"]) or {}
        rows.append(
            {
                "scenario": scenario,
                "teacher_variant": teacher.get("variant"),
                "student_variant": student.get("variant"),
                "teacher_f1": _num(teacher.get("macro_f1")),
                "student_f1": _num(student.get("macro_f1")),
                "f1_ratio": _ratio(student.get("macro_f1"), teacher.get("macro_f1")),
                "teacher_p50_ms": _num(teacher.get("latency_b1_p50_ms")),
                "student_p50_ms": _num(student.get("latency_b1_p50_ms")),
                "speedup": _ratio(
                    teacher.get("latency_b1_p50_ms"), student.get("latency_b1_p50_ms")
                ),
                "teacher_size": _num(teacher.get("size_bytes")),
                "student_size": _num(student.get("size_bytes")),
                "size_ratio": _ratio(student.get("size_bytes"), teacher.get("size_bytes")),
                "teacher_train_cpu_s": _num(teacher.get("train_cpu_s")),
                "student_train_cpu_s": _num(student.get("train_cpu_s")),
            }
        )
    return rows


# (header, key, formatter) for the summary table in Markdown and HTML.
SUMMARY_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("Scenario", "scenario", str),
    ("Teacher", "teacher_variant", lambda v: MISSING if v is None else str(v)),
    ("Student", "student_variant", lambda v: MISSING if v is None else str(v)),
    ("Teacher F1", "teacher_f1", fmt_f1),
    ("Student F1", "student_f1", fmt_f1),
    ("F1 ratio", "f1_ratio", fmt_f1),
    ("Teacher p50 ms", "teacher_p50_ms", fmt_ms),
    ("Student p50 ms", "student_p50_ms", fmt_ms),
    ("Speed-up", "speedup", fmt_ratio),
    ("Teacher size", "teacher_size", fmt_size),
    ("Student size", "student_size", fmt_size),
    ("Size ratio", "size_ratio", fmt_f1),
    ("Teacher CPU s", "teacher_train_cpu_s", fmt_seconds),
    ("Student CPU s", "student_train_cpu_s", fmt_seconds),
]

# The terminal table is narrower: the columns that answer "was distillation worth it?".
RICH_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("Scenario", "scenario", str),
    ("Teacher F1", "teacher_f1", fmt_f1),
    ("Student F1", "student_f1", fmt_f1),
    ("Teacher p50 ms", "teacher_p50_ms", fmt_ms),
    ("Student p50 ms", "student_p50_ms", fmt_ms),
    ("Speed-up", "speedup", fmt_ratio),
    ("Student size", "student_size", fmt_size),
    ("CPU s", "student_train_cpu_s", fmt_seconds),
]

# (header, record key, formatter) for the full per-variant table.
VARIANT_COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("Scenario", "scenario", str),
    ("Variant", "variant", str),
    ("Role", "role", str),
    ("Chosen", "chosen", lambda v: "yes" if v is True else ""),
    ("Macro-F1", "macro_f1", fmt_f1),
    ("Accuracy", "accuracy", fmt_f1),
    ("p50 ms", "latency_b1_p50_ms", fmt_ms),
    ("p99 ms", "latency_b1_p99_ms", fmt_ms),
    ("Texts/s (b32)", "throughput_b32", fmt_count),
    ("Size", "size_bytes", fmt_size),
    ("Train CPU s", "train_cpu_s", fmt_seconds),
    ("Notes", "notes", lambda v: "" if v is None else str(v)),
]


def _cells(row: dict, columns: Sequence[tuple[str, str, Callable[[Any], str]]]) -> list[str]:
    return [fmt(row.get(key)) for _, key, fmt in columns]


def rich_table(records: Sequence[dict]) -> Table:
    """The summary as a `rich` table for the terminal."""
    from rich.table import Table

    table = Table(title="Teacher vs student")
    for header, _, _ in RICH_COLUMNS:
        table.add_column(header, justify="left" if header == "Scenario" else "right")
    for row in summary_rows(records):
        table.add_row(*_cells(row, RICH_COLUMNS))
    return table


# --------------------------------------------------------------------------- plot


def accuracy_latency_png(records: Sequence[dict]) -> bytes:
    """Macro-F1 against batch-1 p50 latency (log x): colour per scenario, marker per role."""
    import matplotlib

    matplotlib.use("Agg")  # here, not at import: the package must not change global state
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    scenarios = _scenarios(records)
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        plotted = False
        for i, scenario in enumerate(scenarios):
            colour = colours(i % 10)
            for record in records:
                if str(record.get("scenario")) != scenario:
                    continue
                x, y = _num(record.get("latency_b1_p50_ms")), _num(record.get("macro_f1"))
                if x is None or y is None or x <= 0:  # log scale cannot show it
                    continue
                marker = ROLE_MARKERS.get(str(record.get("role")), "x")
                ax.scatter([x], [y], color=colour, marker=marker, s=60, edgecolors="black")
                # "$" would switch matplotlib into mathtext; show it literally.
                label = str(record.get("variant", "")).replace("$", r"\$")
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
                plotted = True
        if plotted:
            ax.set_xscale("log")
        ax.set_xlabel("batch-1 p50 latency (ms, log scale)")
        ax.set_ylabel("macro-F1")
        ax.set_title("Accuracy vs latency")
        ax.grid(True, which="both", alpha=0.3)
        handles = [
            Line2D(
                [], [], color=colours(i % 10), marker="o", linestyle="", label=s.replace("$", r"\$")
            )
            for i, s in enumerate(scenarios)
        ] + [
            Line2D([], [], color="grey", marker=m, linestyle="", label=role)
            for role, m in ROLE_MARKERS.items()
        ]
        ax.legend(handles=handles, fontsize=8, loc="best")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_accuracy_latency(records: Sequence[dict], path: Path) -> Path:
    """Render the accuracy/latency plot and write it to `path` as a PNG, atomically."""
    path = Path(path)
    write_bytes(path, accuracy_latency_png(records))
    return path


# --------------------------------------------------------------------------- Markdown & HTML


def hardware_line(meta: dict | None) -> str:
    """One line: CPU model, logical cores and the SIMD/AMX flags present."""
    if not meta:
        return "unknown"
    hw: dict = meta["hardware"] if isinstance(meta.get("hardware"), dict) else meta
    parts = []
    if hw.get("cpu_model"):
        parts.append(str(hw["cpu_model"]))
    if hw.get("logical_cores") is not None:
        parts.append(f"{hw['logical_cores']} logical cores")
    flags = hw.get("flags")
    if isinstance(flags, dict):
        present = [name for name, on in flags.items() if on]
        parts.append("flags: " + (", ".join(present) if present else "none of those checked"))
    return " · ".join(parts) or "unknown"


def _meta_lines(meta: dict | None) -> list[tuple[str, str]]:
    """(label, text) lines shown under the title."""
    lines = [("Hardware", hardware_line(meta))]
    if meta:
        choice = meta.get("precision_choice")
        if isinstance(choice, dict) and choice:
            lines.append(("Precision", ", ".join(f"{k}={v}" for k, v in choice.items())))
        if meta.get("started_at"):
            lines.append(("Started", str(meta["started_at"])))
    return lines


def _md_cell(text: str) -> str:
    # A "|" or newline inside a cell would break the Markdown table.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(
    records: Sequence[dict], meta: dict | None = None, title: str = "modelfab report"
) -> str:
    summary = summary_rows(records)
    lines = [f"# {title}", ""]
    lines += [f"**{label}:** {text}  " for label, text in _meta_lines(meta)]
    lines += ["", "## Teacher vs student", ""]
    lines += _md_table(
        [h for h, _, _ in SUMMARY_COLUMNS], [_cells(r, SUMMARY_COLUMNS) for r in summary]
    )
    lines += ["", "## All variants", ""]
    lines += _md_table(
        [h for h, _, _ in VARIANT_COLUMNS], [_cells(r, VARIANT_COLUMNS) for r in records]
    )
    lines += ["", "## Accuracy vs latency", "", f"![Accuracy vs latency]({ASSETS_DIR}/{PLOT_NAME})"]
    if meta and meta.get("command"):
        lines += ["", "## How to reproduce", "", "```", str(meta["command"]), "```"]
    return "\n".join(lines) + "\n"


_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 80rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% for label, text in meta_lines %}<p><strong>{{ label }}:</strong> {{ text }}</p>
{% endfor %}
<h2>Teacher vs student</h2>
<table>
<tr>{% for h in summary_headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in summary %}<tr>{% for c in row %}
<td{% if loop.index > 3 %} class="num"{% endif %}>{{ c }}</td>
{%- endfor %}</tr>
{% endfor %}</table>
<h2>All variants</h2>
<table>
<tr>{% for h in variant_headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in variants %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Accuracy vs latency</h2>
<img alt="Accuracy vs latency" src="data:image/png;base64,{{ png_b64 }}">
{% if command %}<h2>How to reproduce</h2>
<pre>{{ command }}</pre>
{% endif %}</body>
</html>
"""


def render_html(
    records: Sequence[dict],
    png: bytes,
    meta: dict | None = None,
    title: str = "modelfab report",
) -> str:
    """A single self-contained page: inline CSS, the plot as a data URI, every string escaped."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_HTML).render(
        title=title,
        meta_lines=_meta_lines(meta),
        summary_headers=[h for h, _, _ in SUMMARY_COLUMNS],
        summary=[_cells(r, SUMMARY_COLUMNS) for r in summary_rows(records)],
        variant_headers=[h for h, _, _ in VARIANT_COLUMNS],
        variants=[_cells(r, VARIANT_COLUMNS) for r in records],
        png_b64=base64.b64encode(png).decode("ascii"),
        command=str(meta["command"]) if meta and meta.get("command") else "",
    )


def write_report(
    records: Sequence[dict],
    out_dir: Path,
    meta: dict | None = None,
    title: str = "modelfab report",
) -> tuple[Path, Path]:
    """Write report.md, report.html and report-assets/accuracy_latency.png under `out_dir`.

    All three are rendered in memory before any is written, so a failure while rendering
    leaves nothing new behind (and an older report untouched). report.md is written last.
    Returns (report.md, report.html).
    """
    records = list(records)
    out_dir = Path(out_dir)
    png = accuracy_latency_png(records)
    html = render_html(records, png, meta, title)
    markdown = render_markdown(records, meta, title)

    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_bytes(out_dir / ASSETS_DIR / PLOT_NAME, png)
    write_text(html_path, html)
    write_text(md_path, markdown)
    return md_path, html_path
