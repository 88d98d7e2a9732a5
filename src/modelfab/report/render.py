"""Benchmark results as a teacher-vs-student summary: terminal table, plots, Markdown and HTML.

Input is the benchmark's list of result records (one dict per scenario and variant, as in
bench-results/latest.json) and an optional `meta` dict (hardware fingerprint, precision choice,
start time, command). Besides the all-scenario accuracy/latency plot, each scenario gets its own
Pareto plot of every variant, so the chosen student can be judged against the alternatives.
Everything is rendered in memory first and written last, through
`modelfab.atomic`, so a failure while rendering leaves no partial report behind.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfab.atomic import write_bytes, write_text
from modelfab.bench.choose import finite_or_none as _num
from modelfab.bench.choose import pareto_front

if TYPE_CHECKING:
    from rich.table import Table

PLOT_NAME = "accuracy_latency.png"
PARETO_PREFIX = "pareto-"  # + scenario slug + ".png", one per scenario, next to PLOT_NAME
ASSETS_DIR = "report-assets"
ROLE_MARKERS = {"teacher": "s", "student": "o", "baseline": "^"}
ROLE_COLOURS = {"teacher": "tab:red", "student": "tab:blue", "baseline": "tab:green"}
CHOSEN_COLOUR = "gold"
FRONT_COLOUR = "dimgrey"
MISSING = "—"


# --------------------------------------------------------------------------- numbers & format


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


def fmt_percent(value: Any) -> str:
    """A fraction as a percentage with 3 significant digits: 0.0042 -> "0.42%"."""
    v = _num(value)
    return MISSING if v is None else f"{v * 100:.3g}%"


def fmt_text(value: Any) -> str:
    return MISSING if value is None else str(value)


def fmt_yes(value: Any) -> str:
    return "yes" if value is True else ""


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
                # Newer records only; the columns show when any row has them.
                "student_family": student.get("family"),
                "student_threads": _num(student.get("threads")),
                "student_peak_rss": _num(student.get("peak_rss_bytes")),
                "student_flops_fraction": _num(student.get("flops_fraction_of_peak")),
                "student_chosen": student.get("chosen") is True,
            }
        )
    return rows


Column = tuple[str, str, Callable[[Any], str]]  # (header, key, formatter)

# (header, key, formatter) for the summary table in Markdown and HTML.
SUMMARY_COLUMNS: list[Column] = [
    ("Scenario", "scenario", str),
    ("Teacher", "teacher_variant", fmt_text),
    ("Student", "student_variant", fmt_text),
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

# Appended to the summary only when some row has a value: older records lack these keys, and
# a column of dashes would only say so.
SUMMARY_OPTIONAL_COLUMNS: list[Column] = [
    ("Student family", "student_family", fmt_text),
    ("Threads", "student_threads", fmt_count),
    ("Student peak RSS", "student_peak_rss", fmt_size),
    ("Student FLOP/s of peak", "student_flops_fraction", fmt_percent),
    ("Chosen", "student_chosen", fmt_yes),
]

# The terminal table is narrower: the columns that answer "was distillation worth it?".
RICH_COLUMNS: list[Column] = [
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
VARIANT_COLUMNS: list[Column] = [
    ("Scenario", "scenario", str),
    ("Variant", "variant", str),
    ("Role", "role", str),
    ("Chosen", "chosen", fmt_yes),
    ("Macro-F1", "macro_f1", fmt_f1),
    ("Accuracy", "accuracy", fmt_f1),
    ("p50 ms", "latency_b1_p50_ms", fmt_ms),
    ("p99 ms", "latency_b1_p99_ms", fmt_ms),
    ("Texts/s (b32)", "throughput_b32", fmt_count),
    ("Size", "size_bytes", fmt_size),
    ("Train CPU s", "train_cpu_s", fmt_seconds),
    ("Notes", "notes", lambda v: "" if v is None else str(v)),
]

# Inserted before "Notes" only when some record has a value (see SUMMARY_OPTIONAL_COLUMNS).
VARIANT_OPTIONAL_COLUMNS: list[Column] = [
    ("Family", "family", fmt_text),
    ("Val macro-F1", "val_macro_f1", fmt_f1),
    ("Threads", "threads", fmt_count),
    ("Peak RSS", "peak_rss_bytes", fmt_size),
    ("FLOP/s of peak", "flops_fraction_of_peak", fmt_percent),
]


def _present(rows: Sequence[dict], key: str) -> bool:
    return any(row.get(key) not in (None, False, "") for row in rows)


def summary_columns(rows: Sequence[dict]) -> list[Column]:
    """SUMMARY_COLUMNS plus the optional ones that `rows` (from `summary_rows`) fill."""
    return SUMMARY_COLUMNS + [c for c in SUMMARY_OPTIONAL_COLUMNS if _present(rows, c[1])]


def variant_columns(records: Sequence[dict]) -> list[Column]:
    """VARIANT_COLUMNS with the optional ones that `records` fill, before the notes."""
    extra = [c for c in VARIANT_OPTIONAL_COLUMNS if _present(records, c[1])]
    return VARIANT_COLUMNS[:-1] + extra + VARIANT_COLUMNS[-1:]


def _cells(row: dict, columns: Sequence[Column]) -> list[str]:
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


# --------------------------------------------------------------------------- plots


@contextlib.contextmanager
def _figure() -> Iterator[tuple[Any, Any]]:
    """A fresh Agg figure and axes, closed however the caller leaves."""
    import matplotlib

    matplotlib.use("Agg")  # here, not at import: the package must not change global state
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        yield fig, ax
    finally:
        plt.close(fig)


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _literal(text: Any) -> str:
    """`text` for a matplotlib label: "$" would switch it into mathtext, so show it literally."""
    return str(text).replace("$", r"\$")


def _xy(record: dict) -> tuple[float, float] | None:
    """(batch-1 p50 ms, test macro-F1), or None when missing or not on a log scale."""
    x, y = _num(record.get("latency_b1_p50_ms")), _num(record.get("macro_f1"))
    if x is None or y is None or x <= 0:
        return None
    return x, y


def _plot_record(ax: Any, record: dict, colour: Any) -> bool:
    """One point, marker by role, labelled with its variant; False when it cannot be placed."""
    point = _xy(record)
    if point is None:
        return False
    marker = ROLE_MARKERS.get(str(record.get("role")), "x")
    ax.scatter([point[0]], [point[1]], color=colour, marker=marker, s=60, edgecolors="black")
    label = _literal(record.get("variant", ""))
    ax.annotate(label, point, textcoords="offset points", xytext=(5, 4), fontsize=7)
    return True


def _role_handles(roles: Iterable[str], coloured: bool = False) -> list[Any]:
    """Legend entries for role markers: grey, or in ROLE_COLOURS when colour means role."""
    from matplotlib.lines import Line2D

    return [
        Line2D(
            [],
            [],
            color=ROLE_COLOURS[role] if coloured else "grey",
            marker=ROLE_MARKERS[role],
            markeredgecolor="black" if coloured else None,
            linestyle="",
            label=role,
        )
        for role in roles
    ]


def _finish_axes(ax: Any, plotted: bool, title: str) -> None:
    if plotted:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no measured points", transform=ax.transAxes, ha="center")
    ax.set_xlabel("batch-1 p50 latency (ms, log scale)")
    ax.set_ylabel("macro-F1")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)


def accuracy_latency_png(records: Sequence[dict]) -> bytes:
    """Macro-F1 against batch-1 p50 latency (log x): colour per scenario, marker per role."""
    scenarios = _scenarios(records)
    with _figure() as (fig, ax):
        import matplotlib
        from matplotlib.lines import Line2D

        colours = matplotlib.colormaps["tab10"]
        plotted = False
        for i, scenario in enumerate(scenarios):
            for record in records:
                if str(record.get("scenario")) == scenario:
                    plotted = _plot_record(ax, record, colours(i % 10)) or plotted
        _finish_axes(ax, plotted, "Accuracy vs latency")
        handles = [
            Line2D([], [], color=colours(i % 10), marker="o", linestyle="", label=_literal(s))
            for i, s in enumerate(scenarios)
        ] + _role_handles(ROLE_MARKERS)
        ax.legend(handles=handles, fontsize=8, loc="best")
        return _png(fig)


def plot_accuracy_latency(records: Sequence[dict], path: Path) -> Path:
    """Render the accuracy/latency plot and write it to `path` as a PNG, atomically."""
    path = Path(path)
    write_bytes(path, accuracy_latency_png(records))
    return path


def pareto_png(records: Sequence[dict], title: str = "Accuracy vs latency") -> bytes:
    """One scenario's variants: test macro-F1 against batch-1 p50 latency (log x).

    Every variant is a labelled point (marker and colour by role); the Pareto front of test
    macro-F1 against latency is a dashed step line, and the `chosen` record is ringed. The front
    here is on TEST F1 because that is what the report shows; the choice itself is made on
    validation F1 (see `modelfab.bench.choose`), so the ring may sit off this front.
    """
    with _figure() as (fig, ax):
        from matplotlib.lines import Line2D

        placed = [
            r for r in records if _plot_record(ax, r, ROLE_COLOURS.get(str(r.get("role")), "grey"))
        ]
        front = pareto_front(placed, x="latency_b1_p50_ms", y="macro_f1")
        if front:
            xs = [float(r["latency_b1_p50_ms"]) for r in front]
            ys = [float(r["macro_f1"]) for r in front]
            ax.step(xs, ys, where="post", color=FRONT_COLOUR, linestyle="--", zorder=1)
        chosen = [xy for r in placed if r.get("chosen") is True and (xy := _xy(r))]
        for x, y in chosen:
            ax.scatter(
                [x],
                [y],
                s=360,
                facecolors="none",
                edgecolors=CHOSEN_COLOUR,
                linewidths=2.5,
                zorder=3,
            )
        _finish_axes(ax, bool(placed), _literal(title))
        roles = [role for role in ROLE_MARKERS if any(r.get("role") == role for r in records)]
        handles = _role_handles(roles, coloured=True)
        handles.append(Line2D([], [], color=FRONT_COLOUR, linestyle="--", label="Pareto front"))
        if chosen:
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    markersize=12,
                    markerfacecolor="none",
                    markeredgecolor=CHOSEN_COLOUR,
                    markeredgewidth=2.5,
                    linestyle="",
                    label="chosen",
                )
            )
        ax.legend(handles=handles, fontsize=8, loc="best")
        return _png(fig)


def pareto_plot_names(scenarios: Sequence[str]) -> dict[str, str]:
    """A safe, unique PNG file name per scenario: "pareto-<slug>.png" ("-2", "-3" on a clash).

    Scenario names are user text (slashes, pipes, "<script>"); a file name must not be.
    Clashes are checked case-insensitively for case-insensitive file systems.
    """
    names: dict[str, str] = {}
    taken: set[str] = set()
    for scenario in scenarios:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario).strip("-.") or "scenario"
        name, n = f"{PARETO_PREFIX}{slug}.png", 2
        while name.lower() in taken:
            name, n = f"{PARETO_PREFIX}{slug}-{n}.png", n + 1
        taken.add(name.lower())
        names[scenario] = name
    return names


def pareto_pngs(records: Sequence[dict]) -> dict[str, bytes]:
    """Scenario -> its Pareto plot, for every scenario in `records` (order of appearance)."""
    return {
        scenario: pareto_png([r for r in records if str(r.get("scenario")) == scenario], scenario)
        for scenario in _scenarios(records)
    }


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


PARETO_CAPTION = (
    "Test macro-F1 against batch-1 p50 latency (log scale) for every variant. Dashed step: "
    "the Pareto front (no variant is both faster and more accurate). Ring: the chosen student "
    "(picked on validation F1, so it may sit off this test-F1 front)."
)


def _md_inline(text: str) -> str:
    # Scenario names in headings and image alt text: no line breaks, no brackets.
    return re.sub(r"[\[\]\n\r]+", " ", text)


def render_markdown(
    records: Sequence[dict], meta: dict | None = None, title: str = "modelfab report"
) -> str:
    summary = summary_rows(records)
    summary_cols, variant_cols = summary_columns(summary), variant_columns(records)
    lines = [f"# {title}", ""]
    lines += [f"**{label}:** {text}  " for label, text in _meta_lines(meta)]
    lines += ["", "## Teacher vs student", ""]
    lines += _md_table([h for h, _, _ in summary_cols], [_cells(r, summary_cols) for r in summary])
    lines += ["", "## All variants", ""]
    lines += _md_table([h for h, _, _ in variant_cols], [_cells(r, variant_cols) for r in records])
    lines += ["", "## Accuracy vs latency", "", f"![Accuracy vs latency]({ASSETS_DIR}/{PLOT_NAME})"]
    lines += ["", "## Per scenario", "", PARETO_CAPTION]
    for scenario, name in pareto_plot_names(_scenarios(records)).items():
        heading = _md_inline(scenario)
        lines += ["", f"### {heading}", "", f"![Pareto front: {heading}]({ASSETS_DIR}/{name})"]
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
<td{% if summary_numeric[loop.index0] %} class="num"{% endif %}>{{ c }}</td>
{%- endfor %}</tr>
{% endfor %}</table>
<h2>All variants</h2>
<table>
<tr>{% for h in variant_headers %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in variants %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Accuracy vs latency</h2>
<img alt="Accuracy vs latency" src="data:image/png;base64,{{ png_b64 }}">
{% if pareto %}<h2>Per scenario</h2>
<p>{{ pareto_caption }}</p>
{% for scenario, b64 in pareto %}<h3>{{ scenario }}</h3>
<img alt="Pareto front: {{ scenario }}" src="data:image/png;base64,{{ b64 }}">
{% endfor %}{% endif %}{% if command %}<h2>How to reproduce</h2>
<pre>{{ command }}</pre>
{% endif %}</body>
</html>
"""


_TEXT_FORMATTERS = (str, fmt_text, fmt_yes)


def render_html(
    records: Sequence[dict],
    png: bytes,
    meta: dict | None = None,
    title: str = "modelfab report",
    pareto: Mapping[str, bytes] | None = None,
) -> str:
    """A single self-contained page: inline CSS, plots as data URIs, every string escaped.

    `pareto` maps scenario -> its Pareto PNG (`pareto_pngs`); scenarios without one get no
    per-scenario plot.
    """
    import jinja2

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    summary = summary_rows(records)
    summary_cols, variant_cols = summary_columns(summary), variant_columns(records)
    pareto = pareto or {}
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_HTML).render(
        title=title,
        meta_lines=_meta_lines(meta),
        summary_headers=[h for h, _, _ in summary_cols],
        summary_numeric=[fmt not in _TEXT_FORMATTERS for _, _, fmt in summary_cols],
        summary=[_cells(r, summary_cols) for r in summary],
        variant_headers=[h for h, _, _ in variant_cols],
        variants=[_cells(r, variant_cols) for r in records],
        png_b64=b64(png),
        pareto=[(s, b64(pareto[s])) for s in _scenarios(records) if s in pareto],
        pareto_caption=PARETO_CAPTION,
        command=str(meta["command"]) if meta and meta.get("command") else "",
    )


def write_report(
    records: Sequence[dict],
    out_dir: Path,
    meta: dict | None = None,
    title: str = "modelfab report",
) -> tuple[Path, Path]:
    """Write report.md, report.html and, under report-assets/, accuracy_latency.png and one
    pareto-<scenario>.png per scenario (names from `pareto_plot_names`).

    Everything is rendered in memory before anything is written, so a failure while rendering
    leaves nothing new behind (and an older report untouched). report.md is written last.
    Pareto plots of scenarios no longer in `records` are left in place, not deleted.
    Returns (report.md, report.html).
    """
    records = list(records)
    out_dir = Path(out_dir)
    png = accuracy_latency_png(records)
    pareto = pareto_pngs(records)
    html = render_html(records, png, meta, title, pareto=pareto)
    markdown = render_markdown(records, meta, title)

    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    write_bytes(out_dir / ASSETS_DIR / PLOT_NAME, png)
    for scenario, name in pareto_plot_names(list(pareto)).items():
        write_bytes(out_dir / ASSETS_DIR / name, pareto[scenario])
    write_text(html_path, html)
    write_text(md_path, markdown)
    return md_path, html_path
