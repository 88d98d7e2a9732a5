"""modelfab.report: benchmark results as a teacher-vs-student report (terminal, Markdown, HTML)."""

from modelfab.report.render import (
    plot_accuracy_latency,
    rich_table,
    summary_rows,
    write_report,
)

__all__ = ["plot_accuracy_latency", "rich_table", "summary_rows", "write_report"]
