"""The history section: stored runs, this run against its baseline, detected changes and
the trends behind them.

Why this shape: after a second run every metric has a history verdict, and most say
nothing happened ("no change", or "inconclusive" on a single value a side). The main page
lists the verdicts that name a change and draws trends for those only; every row is on
pages/history.html, and ``all_trends`` draws a trend for every metric on request.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from forgebench import plots, record, stats
from forgebench.report.format import (
    format_change,
    format_interval,
    format_value,
    frame_records,
    pair,
)
from forgebench.stats import vocabulary as V

# Column names accepted in regressions.parquet for "a change was detected" and "at which
# run", beside forgebench.history's own ``change_points`` (a JSON list of run ids).
CHANGE_FLAG_COLUMNS = ("change_detected", "detected", "changed")
CHANGE_RUN_COLUMNS = ("change_at", "change_run", "change_run_id", "changed_at", "at_run")
# History verdicts that name a change: listed on the main page, with a trend figure.
CHANGE_VERDICTS = (
    V.REGRESSION,
    V.SUSPECTED_REGRESSION,
    V.FAILED,
    V.IMPROVEMENT,
    V.SUSPECTED_IMPROVEMENT,
)
# Keys of run.json holding rule statements, shown with the report's own rules.
RUN_RULES = {
    "comparability_rule": "Not comparable",
    "family_rule": "Families against the baseline run",
    "history_rule": "History",
}
HISTORY_COLUMNS = ["suite", "benchmark", "case", "metric", "unit", "value", "status", "warmup"]
#: Rows of each history table listed on the main page; the rest are on pages/history.html.
MAIN_PAGE_ROWS = 15
_KEY = ("suite", "benchmark", "case", "metric")


@dataclass
class History:
    """What the history rule stored, as far as it exists."""

    run: dict[str, Any] | None = None
    baseline: pd.DataFrame | None = None
    regressions: pd.DataFrame | None = None
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    medians: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        return (
            self.run is None
            and self.baseline is None
            and self.regressions is None
            and self.runs.empty
        )

    @property
    def marks(self) -> dict[str, str]:
        """Run id -> "this run" / "baseline", from run.json."""
        run = self.run or {}
        marks = {}
        baseline = run.get("baseline_id", run.get("baseline"))
        if isinstance(baseline, str):
            marks[baseline] = "baseline"
        if isinstance(run.get("run_id"), str):
            marks[run["run_id"]] = "this run"
        return marks


def _read_optional_table(path: str | Path | None) -> pd.DataFrame | None:
    if path is None or not Path(path).is_file():
        return None
    frame = pq.read_table(path).to_pandas()
    sort_by = [c for c in _KEY if c in frame]
    if sort_by:
        frame = frame.sort_values(sort_by, kind="stable").reset_index(drop=True)
    return frame


def _stored_run(run_dir: Path, confidence: float) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """One stored run (run_id=<id>/measurements.parquet and provenance.json): a row for
    the runs table and its per-metric medians. Rows are dropped once summarised, so a
    long history is read one run at a time."""
    path = run_dir / "measurements.parquet"
    if not path.is_file():
        return None
    record.read_metadata(path)  # refuses other schema versions
    rows = pq.read_table(path, columns=[*HISTORY_COLUMNS, "started_at"]).to_pandas()
    prov_path = run_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    run_id = run_dir.name.split("=", 1)[1]
    # when the run was made (the history rule stores it); older runs: their newest row
    started = (
        pd.Timestamp(prov["made_at"])
        if prov.get("made_at")
        else rows["started_at"].max()
        if len(rows)
        else pd.NaT
    )
    info = {
        "run_id": run_id,
        "started_at": started,
        "n_rows": len(rows),
        "n_failed": int(rows["status"].map(V.is_failure).sum()),
        "suites": ", ".join(sorted(rows["suite"].unique())),
        "host": prov.get("host"),
        "cpu_model": prov.get("cpu_model"),
        "git_commit": prov.get("git_commit"),
    }
    return info, plots.run_medians([(run_id, rows)], confidence=confidence)


def load_history(
    *,
    run_info_path: str | Path | None,
    baseline_comparison_path: str | Path | None,
    regressions_path: str | Path | None,
    history_dir: str | Path | None,
    confidence: float,
) -> History:
    """Read whatever the history rule stored; absent files leave their part empty.

    Stored runs are ordered oldest first by their earliest row, then run id (as
    forgebench.history orders them).
    """
    hist = History()
    if run_info_path is not None and Path(run_info_path).is_file():
        hist.run = json.loads(Path(run_info_path).read_text())
    hist.baseline = _read_optional_table(baseline_comparison_path)
    hist.regressions = _read_optional_table(regressions_path)
    stored = []
    if history_dir is not None and Path(history_dir).is_dir():
        for run_dir in sorted(Path(history_dir).glob("run_id=*")):
            one = _stored_run(run_dir, confidence)
            if one is not None:
                stored.append(one)
    stored.sort(key=lambda r: (r[0]["started_at"], r[0]["run_id"]))
    hist.runs = pd.DataFrame([info for info, _ in stored])
    if stored:
        medians = pd.concat([m for _, m in stored], ignore_index=True)
        order = {info["run_id"]: i for i, (info, _) in enumerate(stored)}
        hist.medians = medians.assign(run_index=medians["run_id"].map(order))
    return hist


def detected_changes(regressions: pd.DataFrame | None) -> pd.DataFrame:
    """Where regressions.parquet reports a change: suite, benchmark, case, metric, run_id.

    Read from ``change_points`` (a JSON list of run ids, as forgebench.history writes it),
    else from the first of :data:`CHANGE_RUN_COLUMNS` that holds a run id (gated by the
    first of :data:`CHANGE_FLAG_COLUMNS` when there is one). Without them nothing is marked.
    """
    columns = ["suite", "benchmark", "case", "metric", "run_id"]
    if regressions is None or regressions.empty:
        return pd.DataFrame(columns=columns)
    flag = next((c for c in CHANGE_FLAG_COLUMNS if c in regressions), None)
    run_col = next((c for c in CHANGE_RUN_COLUMNS if c in regressions), None)
    rows = []
    for r in regressions.to_dict("records"):
        key = {c: r[c] if isinstance(r.get(c), str) else "" for c in columns[:4]}
        points = r.get("change_points")
        if isinstance(points, str):
            run_ids = [p for p in json.loads(points) if isinstance(p, str)]
        elif run_col is not None and isinstance(r.get(run_col), str):
            run_ids = [r[run_col]] if flag is None or bool(r.get(flag)) else []
        else:
            run_ids = []
        rows.extend({**key, "run_id": run_id} for run_id in run_ids)
    return pd.DataFrame(rows, columns=columns)


def history_verdicts(history: History) -> dict[tuple[str, str, str, str], str]:
    """Per (suite, benchmark, case, metric): the verdict of change detection over the
    history where it has one, else this run's against the baseline run."""
    out: dict[tuple[str, str, str, str], str] = {}
    for frame in (history.baseline, history.regressions):  # the later one wins
        if frame is None or frame.empty or "verdict" not in frame:
            continue
        for r in frame.to_dict("records"):
            key = tuple(str(r.get(c, "")) for c in _KEY)
            out[key] = str(r["verdict"])  # type: ignore[index]
    return out


def plan_trends(
    history: History,
    plots_dir: str | Path,
    jobs: list[plots.FigureJob],
    *,
    all_trends: bool = False,
) -> list[plots.Figure]:
    """Trend figures of the stored history, planned into ``jobs``: one per metric with a
    history verdict in :data:`CHANGE_VERDICTS` (its flagged cases only), or of every
    metric with ``all_trends``. None until two runs are stored."""
    medians = history.medians
    if medians.empty:
        return []
    if not all_trends:
        flagged = {k for k, v in history_verdicts(history).items() if v in CHANGE_VERDICTS}
        keys = list(zip(*(medians[c].astype(str) for c in _KEY), strict=True))
        medians = medians[[k in flagged for k in keys]]
    if medians.empty:
        return []
    return plots.history_trends(
        medians,
        detected_changes(history.regressions),
        plots_dir,
        highlight=history.marks,
        jobs=jobs,
    )


def run_summary(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """run.json for the summaries: without its start times (the summaries carry no
    clock, even a stored one) and without the rule statements (listed with the rules)."""
    if run is None:
        return None
    return {k: v for k, v in run.items() if not k.endswith("_at") and k not in RUN_RULES}


def without_times(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A history table without timestamp columns: the summaries carry no clock."""
    if frame is None:
        return None
    return frame.select_dtypes(exclude=["datetime", "datetimetz"])


def _counts(frame: pd.DataFrame | None) -> dict[str, int]:
    if frame is None or frame.empty or "verdict" not in frame:
        return {}
    return dict(sorted(Counter(frame["verdict"].astype(str)).items()))


def baseline_rows(baseline: pd.DataFrame | None) -> list[dict[str, str]]:
    """This run against the baseline run, one formatted row per metric."""
    rows = []
    for b in frame_records(baseline):
        lo, hi = b.get("improvement_ci_low"), b.get("improvement_ci_high")
        if lo is None and hi is None:
            lo, hi = pair(b.get("improvement_ci"))
        rows.append(
            {
                "where": f"{b.get('suite', '?')}/{b.get('benchmark', '?')}",
                "case": str(b.get("case", "—")),
                "metric": str(b.get("metric", "—")),
                "verdict": str(b.get("verdict", "—")),
                "improvement": format_change(b.get("improvement")),
                "ci": format_interval(lo, hi),
                "p": format_value(b.get("p_value", b.get("mannwhitney_p")), ""),
                "family": str(b.get("family", "—")),
                "reason": str(b.get("reason", "")),
            }
        )
    return rows


def regression_rows(regressions: pd.DataFrame | None) -> list[dict[str, str]]:
    """Change detection over the stored runs, one formatted row per metric."""
    rows = []
    for r in frame_records(regressions):
        unit = str(r.get("unit") or "")
        rows.append(
            {
                "where": f"{r.get('suite', '?')}/{r.get('benchmark', '?')}",
                "case": str(r.get("case", "—")),
                "metric": str(r.get("metric", "—")),
                "method": str(r.get("method", "—")),
                "runs": str(r.get("n_runs", "—")),
                "change_at": str(r.get("change_at") or "—"),
                "levels": f"{format_value(r.get('level_before'), unit)} → "
                f"{format_value(r.get('level_current'), unit)}",
                "improvement": format_change(r.get("improvement")),
                "verdict": str(r.get("verdict", "—")),
                "reason": str(r.get("reason", "")),
            }
        )
    return rows


def _stored_runs(history: History) -> list[dict[str, Any]]:
    runs = []
    if history.runs.empty:
        return runs
    marks = history.marks
    for r in history.runs.to_dict("records"):
        started = r["started_at"]
        runs.append(
            {
                "run_id": r["run_id"],
                "mark": marks.get(r["run_id"], ""),
                "started": started.isoformat() if isinstance(started, pd.Timestamp) else "—",
                "n_rows": r["n_rows"],
                "n_failed": r["n_failed"],
                "suites": r["suites"],
                "machine": f"{r['host'] or '—'} ({r['cpu_model'] or '—'})",
                "git": str(r["git_commit"] or "—"),
            }
        )
    return runs


def _flagged(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows whose verdict names a change, regressions and failures first."""
    order = {v: i for i, v in enumerate(CHANGE_VERDICTS)}
    chosen = [r for r in rows if r["verdict"] in order]
    return sorted(chosen, key=lambda r: order[r["verdict"]])


def history_section(
    history: History, figures: Sequence[dict[str, str]], *, all_trends: bool = False
) -> dict[str, Any]:
    """The main page's history: run summary, verdict counts, the metrics whose verdict
    names a change (at most :data:`MAIN_PAGE_ROWS` per table) and their trends."""
    base = baseline_rows(history.baseline)
    regr = regression_rows(history.regressions)
    flagged_base, flagged_regr = _flagged(base), _flagged(regr)
    return {
        "empty": history.empty,
        "run_summary": [
            (k, json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v))
            for k, v in sorted((run_summary(history.run) or {}).items())
            if v not in ("", None) and k not in ("comparison_verdicts", "regression_verdicts")
        ],
        "n_runs": len(history.runs),
        "runs": _stored_runs(history)[-5:],
        "counts": {
            "against the baseline run": _counts(history.baseline),
            "change detection": _counts(history.regressions),
        },
        "baseline": flagged_base[:MAIN_PAGE_ROWS],
        "baseline_more": max(0, len(flagged_base) - MAIN_PAGE_ROWS),
        "regressions": flagged_regr[:MAIN_PAGE_ROWS],
        "regressions_more": max(0, len(flagged_regr) - MAIN_PAGE_ROWS),
        "n_baseline": len(base),
        "n_regressions": len(regr),
        "figures": list(figures),
        "trend_rule": "every metric (on request)"
        if all_trends
        else "metrics whose history verdict names a change (" + ", ".join(CHANGE_VERDICTS) + ")",
    }


def history_page(history: History) -> dict[str, Any]:
    """pages/history.html: every stored run and every row of both history tables."""
    return {
        "empty": history.empty,
        "run": [
            (k, json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v))
            for k, v in sorted((history.run or {}).items())
            if k not in RUN_RULES
        ],
        "runs": _stored_runs(history),
        "baseline": baseline_rows(history.baseline),
        "regressions": regression_rows(history.regressions),
    }


def history_document(history: History) -> dict[str, Any] | None:
    """summary.json's history: run summary, verdict counts and the rows naming a change
    (every row stays in baseline_comparison.parquet and regressions.parquet)."""
    if history.empty:
        return None

    def changed(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        frame = without_times(frame)
        if frame is None or frame.empty or "verdict" not in frame:
            return []
        return frame_records(frame[frame["verdict"].isin(CHANGE_VERDICTS)])

    return {
        "run": run_summary(history.run),
        "runs": list(history.runs["run_id"]) if len(history.runs) else [],
        "verdict_counts": {
            "baseline comparison": _counts(history.baseline),
            "regression detection": _counts(history.regressions),
        },
        "baseline_comparison": changed(history.baseline),
        "regressions": changed(history.regressions),
    }


def confidence_of(statistics: Mapping[str, Any]) -> float:
    """The configured confidence level (the stats default when absent)."""
    return float(statistics.get("confidence", stats.Settings().confidence))
