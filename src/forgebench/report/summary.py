"""summary.json and summary.md: the verdicts for machines and for a pull-request comment.

Why this size: summary.json used to carry every summary row (4.4 MB on the default run)
and summary.md every table (373 KB; a GitHub comment takes 65,536 characters). Now
summary.json holds the verdicts, the audit, the headline figures and the history rows
that name a change, and says which Parquet files hold the full tables; summary.md puts
what is not met first and stays under :data:`MARKDOWN_LIMIT`, saying what it left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from forgebench.report.format import jsonable, pair, relative_to_results
from forgebench.report.history import History, history_document
from forgebench.report.overview import verdict_counts
from forgebench.stats import vocabulary as V

SUMMARY_SCHEMA_VERSION = 2
#: Characters summary.md may hold: below GitHub's 65,536 per comment, with room to spare.
MARKDOWN_LIMIT = 60_000
# Keys of the machine-readable summary, per comparison and target.
COMPARISON_KEYS = (
    *("name", "suite", "benchmark", "metric", "baseline", "candidate", "family", "verdict"),
    *("reason", "method", "improvement", "speedup", "ratio", "median_baseline"),
    *("median_candidate", "n_baseline", "n_candidate", "n_failed_baseline"),
    *("n_failed_candidate", "p_value", "p_no_change", "effect_size", "significant"),
    *("threshold", "higher_is_better"),
)
TARGET_KEYS = (
    *("name", "verdict", "statistic", "op", "threshold", "estimate", "evidence"),
    *("comparison", "suite", "benchmark", "case", "metric"),
)
HEADLINE_KEYS = ("benchmark", "case", "variant", "metric", "unit", "n_ok", "n_failed")


def summary_document(
    *,
    inputs: Sequence[str],
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    verdicts: pd.DataFrame,
    audit: tuple[pd.DataFrame, Mapping[str, Any]],
    history: History,
    statistics: Mapping[str, Any],
    seed: int,
    headline: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    attention: Sequence[Mapping[str, Any]] = (),
    tables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The machine-readable summary: overall verdict, what needs attention, every
    comparison and target, the audit, headline figures per suite, and the history rows
    that name a change. The full tables stay in Parquet (``tables`` names them).

    No clock and no host-specific path: equal stored results give an equal document.
    """
    comps = verdicts[verdicts["kind"] == "comparison"] if len(verdicts) else verdicts
    targs = verdicts[verdicts["kind"] == "target"] if len(verdicts) else verdicts
    comparisons = []
    for v in comps.to_dict("records"):
        row = {k: v.get(k) for k in COMPARISON_KEYS}
        row["improvement_ci"] = list(pair(v.get("improvement_ci")))
        row["speedup_ci"] = list(pair(v.get("speedup_ci")))
        for key in ("n_baseline", "n_candidate", "n_failed_baseline", "n_failed_candidate"):
            row[key] = int(row[key]) if _is_number(row[key]) else None
        comparisons.append(row)
    targets = []
    for t in targs.to_dict("records"):
        row = {k: t.get(k) for k in TARGET_KEYS}
        row["ci"] = [t.get("ci_low"), t.get("ci_high")]
        targets.append(row)
    table, overall = audit
    failed = frame[frame["status"].map(V.is_failure)] if len(frame) else frame
    by_design = frame[frame["status"].isin(V.BY_DESIGN_STATUSES)] if len(frame) else frame
    families = sorted({str(f) for f in comps.get("family", pd.Series(dtype=str)).dropna()})
    doc = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "inputs": [relative_to_results(p) for p in inputs],
        "tables": dict(tables or {}),
        "seed": int(seed),
        "statistics": dict(statistics),
        "observations": len(frame),
        "summary_rows": len(summary),
        "failed_operations": {
            "total": len(failed),
            "by_status": dict(sorted(Counter(failed["status"]).items())) if len(failed) else {},
            "by_design": dict(sorted(Counter(by_design["status"]).items()))
            if len(by_design)
            else {},
        },
        "overall": dict(overall),
        "attention": [
            {k: item[k] for k in ("kind", "name", "verdict", "suite")} for item in attention
        ],
        "verdict_counts": verdict_counts(verdicts, history.baseline, history.regressions),
        "families": families,
        "comparisons": comparisons,
        "targets": targets,
        "audit": {
            "rows": [jsonable(r) for r in table.to_dict("records")],
            "overall": dict(overall),
            "not_measured": sorted(
                table.loc[table["target_verdict"] == V.NOT_MEASURED, "target"].astype(str)
            ),
            "not_measurable": sorted(
                table.loc[table["target_verdict"] == V.NOT_MEASURABLE, "target"].astype(str)
            ),
        },
        "headline": {
            suite: [_headline_entry(r) for r in rows] for suite, rows in (headline or {}).items()
        },
        "history": history_document(history),
    }
    return jsonable(doc)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return value == value  # not NaN


def _headline_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    entry = {k: row.get(k) for k in HEADLINE_KEYS}
    entry["median"] = row.get("median_value")
    entry["ci"] = [row.get("ci_low_value"), row.get("ci_high_value")]
    return entry


_SECTION = re.compile(r"^## ", re.MULTILINE)


def fit_markdown(text: str, limit: int = MARKDOWN_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters at whole ``## `` sections (the last
    first), with a closing line naming the sections left out; unchanged when it fits."""
    if len(text) <= limit:
        return text
    starts = [m.start() for m in _SECTION.finditer(text)]
    sections = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    head = text[: starts[0]] if starts else text
    kept: list[str] = []
    dropped: list[str] = []
    note = (
        "\n---\n_Truncated to stay under {limit:,} characters (a GitHub comment takes "
        "65,536): left out {names}. index.html and summary.json have them._\n"
    )
    for section in sections:
        title = section.splitlines()[0].removeprefix("## ").strip()
        room = limit - len(head) - sum(map(len, kept)) - len(section)
        if not dropped and room >= len(note) + 200:
            kept.append(section)
        else:
            dropped.append(f"“{title}”")
    out = head + "".join(kept) + note.format(limit=limit, names=", ".join(dropped))
    if len(out) > limit:  # the head alone is too long: cut it at a line
        cut = out[: limit - 200].rsplit("\n", 1)[0]
        out = cut + "\n\n_Truncated at this line to stay under the comment limit._\n"
    return out
