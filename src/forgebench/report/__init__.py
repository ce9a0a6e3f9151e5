"""The report: summary and verdict tables, figures, index.html (with its linked pages),
summary.md and summary.json.

Everything is computed from stored Parquet alone (the raw tables, their resource samples
and, when the history rule has run, the stored history), so the report regenerates
without rerunning a benchmark. The tables and the two summaries carry no clock and are
built from sorted input with seeded bootstraps, so equal input gives equal bytes.

One module per part of the page, each turning tables into its section and planning the
figures it shows: :mod:`.overview` (overall verdict, what needs attention, counts,
rules, audit), :mod:`.evaluation` (tasks, suite scores, pairs, model build),
:mod:`.compression`, :mod:`.service`, :mod:`.knowledge`, :mod:`.evomerge`,
:mod:`.calibration`, :mod:`.suites` (every other suite, warnings, headline tables),
:mod:`.history`, :mod:`.environment`; :mod:`.summary` writes summary.json and
summary.md, :mod:`.build` puts it together (:func:`build_report`). :mod:`.cells` and
:mod:`.format` are the shared reading and writing of figures.
"""

from __future__ import annotations

from forgebench.report.build import build_report, suite_sections
from forgebench.report.calibration import calibration_section
from forgebench.report.cells import Cells
from forgebench.report.compression import (
    COMPRESSION_BENCHMARKS,
    COMPRESSION_COLUMNS,
    compression_section,
)
from forgebench.report.evaluation import _eval_cell, evaluation_section, models_section
from forgebench.report.evomerge import (
    default_lineage_path,
    evomerge_individuals,
    evomerge_section,
    read_lineage,
)
from forgebench.report.format import format_change, format_interval, format_value
from forgebench.report.history import (
    CHANGE_FLAG_COLUMNS,
    CHANGE_RUN_COLUMNS,
    History,
    detected_changes,
    load_history,
    run_summary,
)
from forgebench.report.knowledge import KNOWLEDGE_HEADLINES, knowledge_section
from forgebench.report.overview import overall_line, rule_statements, verdict_counts
from forgebench.report.service import service_section
from forgebench.report.suites import format_summary
from forgebench.report.summary import SUMMARY_SCHEMA_VERSION, fit_markdown, summary_document

__all__ = [
    "CHANGE_FLAG_COLUMNS",
    "CHANGE_RUN_COLUMNS",
    "COMPRESSION_BENCHMARKS",
    "COMPRESSION_COLUMNS",
    "KNOWLEDGE_HEADLINES",
    "SUMMARY_SCHEMA_VERSION",
    "Cells",
    "History",
    "_eval_cell",
    "build_report",
    "calibration_section",
    "compression_section",
    "default_lineage_path",
    "detected_changes",
    "evaluation_section",
    "evomerge_individuals",
    "evomerge_section",
    "fit_markdown",
    "format_change",
    "format_interval",
    "format_summary",
    "format_value",
    "knowledge_section",
    "load_history",
    "models_section",
    "overall_line",
    "read_lineage",
    "rule_statements",
    "run_summary",
    "service_section",
    "suite_sections",
    "summary_document",
    "verdict_counts",
]
