"""Report rendering on hand-built result records: summary numbers, files, escaping, atomicity."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest
from rich.console import Console

from modelfab.report import render
from modelfab.report.render import plot_accuracy_latency, rich_table, summary_rows, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rec(scenario, variant, role, f1, p50, size, cpu, **extra):
    return {
        "scenario": scenario,
        "variant": variant,
        "role": role,
        "macro_f1": f1,
        "accuracy": f1 + 0.01,
        "latency_b1_p50_ms": p50,
        "latency_b1_p99_ms": p50 * 2,
        "throughput_b32": 32_000 / p50,
        "size_bytes": size,
        "train_cpu_s": cpu,
        **extra,
    }


def records(second="reviews"):
    """Two scenarios: teacher, baseline and two students each.

    In "tickets" the chosen student is NOT the best-F1 one; in the second scenario nothing is
    chosen, so the best-F1 student should be picked.
    """
    return [
        _rec("tickets", "teacher-fp32", "teacher", 0.90, 40.0, 400_000_000, 1200.0),
        _rec("tickets", "tfidf-logreg", "baseline", 0.70, 0.5, 2_000_000, 3.0),
        _rec("tickets", "student-l4-fp32", "student", 0.88, 8.0, 90_000_000, 300.0),
        _rec("tickets", "student-l2-int8", "student", 0.85, 4.0, 20_000_000, 250.0, chosen=True),
        _rec(second, "teacher-fp32", "teacher", 0.91, 50.0, 400_000_000, 1500.0),
        _rec(second, "tfidf-logreg", "baseline", 0.75, 0.4, 3_000_000, 2.0),
        _rec(second, "student-l2-int8", "student", 0.80, 5.0, 20_000_000, 200.0),
        _rec(second, "student-l4-int8", "student", 0.82, 10.0, 45_000_000, 260.0),
    ]


META = {
    "hardware": {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "logical_cores": 16,
        "flags": {"avx2": True, "avx512f": True, "amx_int8": False},
    },
    "precision_choice": {"tickets": "int8"},
    "started_at": "2025-01-01T00:00:00Z",
    "command": "modelfab bench --scenario tickets",
}


def _summary_section(markdown: str) -> str:
    return markdown.split("## Teacher vs student", 1)[1].split("## All variants", 1)[0]


def test_summary_rows_picks_chosen_student_and_computes_ratios():
    rows = {row["scenario"]: row for row in summary_rows(records())}
    assert list(rows) == ["tickets", "reviews"]

    tickets = rows["tickets"]  # chosen student-l2-int8 despite lower F1 than student-l4-fp32
    assert tickets["student_variant"] == "student-l2-int8"
    assert tickets["teacher_variant"] == "teacher-fp32"
    assert tickets["student_f1"] == pytest.approx(0.85)
    assert tickets["f1_ratio"] == pytest.approx(0.85 / 0.90)
    assert tickets["speedup"] == pytest.approx(10.0)  # 40 ms / 4 ms
    assert tickets["size_ratio"] == pytest.approx(0.05)  # 20 MB / 400 MB
    assert tickets["student_train_cpu_s"] == pytest.approx(250.0)
    assert tickets["teacher_train_cpu_s"] == pytest.approx(1200.0)

    reviews = rows["reviews"]  # no chosen student: best macro-F1 wins
    assert reviews["student_variant"] == "student-l4-int8"
    assert reviews["f1_ratio"] == pytest.approx(0.82 / 0.91)
    assert reviews["speedup"] == pytest.approx(5.0)  # 50 ms / 10 ms


def test_summary_rows_missing_teacher_gives_none_not_a_crash():
    recs = [r for r in records() if not (r["scenario"] == "reviews" and r["role"] == "teacher")]
    reviews = summary_rows(recs)[1]
    assert reviews["student_f1"] == pytest.approx(0.82)
    assert reviews["teacher_f1"] is None and reviews["speedup"] is None
    assert reviews["f1_ratio"] is None and reviews["size_ratio"] is None
    md = render.render_markdown(recs)
    assert "| reviews | — |" in _summary_section(md)


def test_rich_table_has_the_summary_columns_and_values():
    table = rich_table(records())
    assert [c.header for c in table.columns] == [
        "Scenario",
        "Teacher F1",
        "Student F1",
        "Teacher p50 ms",
        "Student p50 ms",
        "Speed-up",
        "Student size",
        "CPU s",
    ]
    console = Console(record=True, width=200)
    console.print(table)
    text = console.export_text()
    tickets = next(line for line in text.splitlines() if "tickets" in line)
    for cell in ("0.900", "0.850", "40.00", "4.00", "10.00×", "20.0 MB", "250.0"):
        assert cell in tickets


def test_write_report_creates_markdown_html_and_png(tmp_path):
    md_path, html_path = write_report(records(), tmp_path / "out", meta=META, title="Nightly")
    assert md_path == tmp_path / "out" / "report.md"
    assert html_path == tmp_path / "out" / "report.html"
    png = (tmp_path / "out" / "report-assets" / "accuracy_latency.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and png.rstrip().endswith(b"IEND\xaeB`\x82")
    assert html_path.read_text(encoding="utf-8").startswith("<!doctype html>")
    # No temporary files left next to the results.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report-assets",
        "report.html",
        "report.md",
    ]


def test_markdown_has_scenarios_student_f1_hardware_plot_and_command(tmp_path):
    md_path, _ = write_report(records(), tmp_path, meta=META, title="Nightly")
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# Nightly\n")
    summary = _summary_section(md)
    tickets = next(line for line in summary.splitlines() if line.startswith("| tickets |"))
    reviews = next(line for line in summary.splitlines() if line.startswith("| reviews |"))
    assert "| 0.850 |" in tickets and "| 10.00× |" in tickets
    assert "| 0.820 |" in reviews and "| 5.00× |" in reviews
    # Full per-variant table lists every variant, including the baselines.
    variants = md.split("## All variants", 1)[1]
    assert variants.count("tfidf-logreg") == 2 and variants.count("student-l4-fp32") == 1
    assert "Intel(R) Xeon(R) Platinum 8480+" in md and "16 logical cores" in md
    assert "flags: avx2, avx512f" in md and "amx_int8" not in md  # only flags present
    assert "](report-assets/accuracy_latency.png)" in md
    assert "modelfab bench --scenario tickets" in md.split("## How to reproduce", 1)[1]


def test_markdown_without_command_has_no_reproduce_section():
    md = render.render_markdown(records(), meta={"cpu_model": "Some CPU", "logical_cores": 4})
    assert "How to reproduce" not in md
    assert "Some CPU · 4 logical cores" in md  # a bare fingerprint as meta works too


def test_markdown_escapes_pipes_in_cells():
    md = render.render_markdown(records(second="a|b"))
    assert "| a\\|b |" in _summary_section(md)


def test_html_escapes_strings(tmp_path):
    meta = dict(META, command="run <b>now</b> & later")
    _, html_path = write_report(records(second="<script>"), tmp_path, meta=meta)
    html = html_path.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "run &lt;b&gt;now&lt;/b&gt; &amp; later" in html


def test_html_embeds_the_plot_as_data_uri(tmp_path):
    _, html_path = write_report(records(), tmp_path)
    html = html_path.read_text(encoding="utf-8")
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert match, "no embedded PNG"
    embedded = base64.b64decode(match.group(1))
    assert embedded == (tmp_path / "report-assets" / "accuracy_latency.png").read_bytes()
    assert 'src="report-assets' not in html  # self-contained: no relative image links


def test_failure_while_rendering_leaves_no_report(tmp_path, monkeypatch):
    def boom(_records):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(render, "accuracy_latency_png", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(records(), tmp_path / "out")
    assert not (tmp_path / "out" / "report.md").exists()
    assert not (tmp_path / "out" / "report.html").exists()
    assert not (tmp_path / "out" / "report-assets" / "accuracy_latency.png").exists()


def test_failure_in_html_keeps_previous_report_intact(tmp_path, monkeypatch):
    write_report(records(), tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def boom(*args, **kwargs):
        raise RuntimeError("html failed")

    monkeypatch.setattr(render, "render_html", boom)
    with pytest.raises(RuntimeError, match="html failed"):
        write_report(records(second="changed"), tmp_path)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_plot_accuracy_latency_writes_png(tmp_path):
    path = plot_accuracy_latency(records(), tmp_path / "deep" / "plot.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["plot.png"]
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, modelfab.report, modelfab.report.render;print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- per-scenario Pareto


def _pareto_png(tmp_path, name):
    return (tmp_path / "report-assets" / name).read_bytes()


def test_one_pareto_png_per_scenario_referenced_under_its_heading(tmp_path):
    md_path, html_path = write_report(records(), tmp_path, meta=META)
    names = render.pareto_plot_names(["tickets", "reviews"])
    assert names == {"tickets": "pareto-tickets.png", "reviews": "pareto-reviews.png"}
    for name in names.values():
        assert _pareto_png(tmp_path, name).startswith(PNG_MAGIC)

    md = md_path.read_text(encoding="utf-8")
    per_scenario = md.split("## Per scenario", 1)[1].split("## How to reproduce", 1)[0]
    tickets = per_scenario.split("### tickets", 1)[1].split("### reviews", 1)[0]
    reviews = per_scenario.split("### reviews", 1)[1]
    assert "](report-assets/pareto-tickets.png)" in tickets
    assert "](report-assets/pareto-reviews.png)" in reviews

    html = html_path.read_text(encoding="utf-8")
    for scenario, name in names.items():
        section = html.split(f"<h3>{scenario}</h3>", 1)[1]
        match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', section)
        assert match and base64.b64decode(match.group(1)) == _pareto_png(tmp_path, name)


def test_pareto_file_names_are_safe_and_unique(tmp_path):
    names = render.pareto_plot_names(["a|b", "a/b", "<script>", "A-B", "..", "ok.v2"])
    assert names == {
        "a|b": "pareto-a-b.png",
        "a/b": "pareto-a-b-2.png",
        "<script>": "pareto-script.png",
        "A-B": "pareto-A-B-3.png",  # clashes case-insensitively with a-b
        "..": "pareto-scenario.png",
        "ok.v2": "pareto-ok.v2.png",
    }
    write_report(records(second="<script>"), tmp_path)
    assert sorted(p.name for p in (tmp_path / "report-assets").iterdir()) == [
        "accuracy_latency.png",
        "pareto-script.png",
        "pareto-tickets.png",
    ]


def test_pareto_plot_front_is_on_latency_and_test_f1_per_scenario(monkeypatch):
    calls = []
    real = render.pareto_front

    def spy(recs, x, y):
        calls.append(([r["variant"] for r in recs], x, y))
        return real(recs, x=x, y=y)

    monkeypatch.setattr(render, "pareto_front", spy)
    pngs = render.pareto_pngs(records())
    assert list(pngs) == ["tickets", "reviews"]
    assert all(png.startswith(PNG_MAGIC) for png in pngs.values())
    assert [(x, y) for _, x, y in calls] == [("latency_b1_p50_ms", "macro_f1")] * 2
    assert calls[0][0] == ["teacher-fp32", "tfidf-logreg", "student-l4-fp32", "student-l2-int8"]


def test_pareto_plot_survives_unplottable_records():
    recs = [
        {"scenario": "s", "variant": "no-latency", "role": "student", "macro_f1": 0.5},
        {
            "scenario": "s",
            "variant": "zero",
            "role": "teacher",
            "macro_f1": 0.6,
            "latency_b1_p50_ms": 0.0,
        },
    ]
    assert render.pareto_png(recs, "s $1").startswith(PNG_MAGIC)


def test_failure_in_a_pareto_plot_leaves_no_report(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("pareto failed")

    monkeypatch.setattr(render, "pareto_png", boom)
    with pytest.raises(RuntimeError, match="pareto failed"):
        write_report(records(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- optional columns


NEW_KEYS = ("Student family", "Threads", "Student peak RSS", "Student FLOP/s of peak", "Chosen")


def test_old_records_render_without_the_new_columns(tmp_path):
    old = [{k: v for k, v in r.items() if k != "chosen"} for r in records()]
    md_path, html_path = write_report(old, tmp_path)
    md = md_path.read_text(encoding="utf-8")
    header = _summary_section(md).strip().splitlines()[0]
    assert header.endswith("| Student CPU s |")
    variants = md.split("## All variants", 1)[1].split("\n\n", 2)[1].splitlines()[0]
    for absent in ("Family", "Val macro-F1", "Threads", "Peak RSS", "FLOP/s"):
        assert absent not in header and absent not in variants
    assert "Student family" not in html_path.read_text(encoding="utf-8")


def test_new_keys_add_summary_and_variant_columns(tmp_path):
    recs = records()
    recs[3].update(  # tickets' chosen student-l2-int8
        family="transformer",
        threads=2,
        peak_rss_bytes=312_000_000,
        flops_fraction_of_peak=0.0421,
        val_macro_f1=0.84,
        compression={"quantization": "dynamic-int8", "layers": 2},
    )
    recs[7]["family"] = "static-embedding"  # reviews' best-F1 student, not chosen
    md = write_report(recs, tmp_path)[0].read_text(encoding="utf-8")
    lines = _summary_section(md).strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[-len(NEW_KEYS) :] == list(NEW_KEYS)
    tickets = next(line for line in lines if line.startswith("| tickets |"))
    assert tickets.endswith("| transformer | 2 | 312.0 MB | 4.21% | yes |")
    reviews = next(line for line in lines if line.startswith("| reviews |"))
    assert reviews.endswith("| static-embedding | — | — | — |  |")

    variants = md.split("## All variants", 1)[1]
    assert "| Family | Val macro-F1 | Threads | Peak RSS | FLOP/s of peak | Notes |" in variants
    row = next(
        line for line in variants.splitlines() if "student-l2-int8" in line and "tickets" in line
    )
    assert "| transformer | 0.840 | 2 | 312.0 MB | 4.21% |" in row
