"""The report: summary and verdict tables, figures, index.html, summary.md and summary.json.

Everything is computed from stored Parquet alone (the raw tables, their resource samples
and, when the history rule has run, the stored history), so the report regenerates
without rerunning a benchmark. The tables and the two summaries carry no clock and are
built from sorted input with seeded bootstraps, so equal input gives equal bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats as sps

from forgebench import analysis, plots, record, stats
from forgebench.atomic import write_text_atomic
from forgebench.provenance import collect_provenance
from forgebench.runner import is_job_case

log = logging.getLogger(__name__)

SUMMARY_SCHEMA_VERSION = 1
_UNIT_SCALES = {"s": ((1e-6, "ns", 1e9), (1e-3, "µs", 1e6), (1.0, "ms", 1e3))}
_STATISTICS_DEFAULTS = stats.Settings().describe() | {
    "bootstrap_resamples": stats.Settings().bootstrap_resamples
}
_SETTINGS_KEYS = frozenset(_STATISTICS_DEFAULTS)
_HISTORY_COLUMNS = ["suite", "benchmark", "case", "metric", "unit", "value", "status", "warmup"]
# Column names accepted in regressions.parquet for "a change was detected" and "at which
# run", beside forgebench.history's own ``change_points`` (a JSON list of run ids).
CHANGE_FLAG_COLUMNS = ("change_detected", "detected", "changed")
CHANGE_RUN_COLUMNS = ("change_at", "change_run", "change_run_id", "changed_at", "at_run")
# Columns of regressions.parquet shown in the report, when present (otherwise all).
REGRESSION_SHOWN = (
    *("suite", "benchmark", "case", "metric", "method", "n_runs", "n_excluded"),
    *("change_at", "at_current_run", "level_before", "level_current", "improvement"),
    *("verdict", "reason"),
)
# Keys of run.json holding rule statements, shown with the report's own rules.
_RUN_RULES = {
    "comparability_rule": "Not comparable",
    "family_rule": "Families against the baseline run",
    "history_rule": "History",
}
# Keys of the machine-readable summary, per comparison, target and summary row.
_COMPARISON_KEYS = (
    *("name", "suite", "benchmark", "metric", "baseline", "candidate", "family", "verdict"),
    *("reason", "method", "improvement", "speedup", "ratio", "median_baseline"),
    *("median_candidate", "n_baseline", "n_candidate", "n_failed_baseline"),
    *("n_failed_candidate", "p_value", "p_no_change", "effect_size", "significant"),
    *("threshold", "higher_is_better"),
)
_TARGET_KEYS = (
    *("name", "verdict", "statistic", "op", "threshold", "estimate", "evidence"),
    *("comparison", "suite", "benchmark", "case", "metric"),
)
_SUMMARY_KEYS = (
    *("suite", "benchmark", "benchmark_version", "case", "metric", "unit"),
    *("higher_is_better", "n_ok", "n_failed", "n_warmup", "median", "mean", "std", "mad"),
    *("min", "max", "p50", "p90", "p95", "p99", "n_outliers_mad", "n_outliers_iqr"),
)
_ENV_KEYS = (
    "host",
    "slurm_node",
    "platform",
    "cpu_model",
    "cpu_count_logical",
    "cpu_count_usable",
    "memory_total_bytes",
    "gpus",
    "nvidia_driver",
    "python",
    "git_commit",
    "git_dirty",
    "seed",
    "config_hash",
)


def format_value(value: Any, unit: str) -> str:
    """A value with a readable unit (seconds scaled to ns/µs/ms), or an em dash if absent."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return "—"
    value = float(value)
    for limit, name, scale in _UNIT_SCALES.get(unit, ()):
        if abs(value) < limit:
            return f"{value * scale:.3g} {name}"
    if unit == "bytes":
        for name, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {name}"
    if unit == "fraction":
        return f"{value:.1%}"
    if 1e4 <= abs(value) < 1e9:  # counts and rates: whole numbers read better than 5.142e+04
        return f"{value:.0f} {unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()


def format_change(value: Any) -> str:
    """A relative change as a signed percentage (+12.3%), or an em dash if absent."""
    if not _finite(value):
        return "—"
    return f"{float(value) * 100:+.1f}%"


def format_interval(low: Any, high: Any, fmt: Any = format_change) -> str:
    """``[low, high]`` with each bound formatted, or an em dash if either is absent."""
    if not (_finite(low) and _finite(high)):
        return "—"
    return f"[{fmt(low)}, {fmt(high)}]"


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _relative_to_results(path: str) -> str:
    """``.../raw/<suite>/<file>`` as ``raw/<suite>/<file>``: the same wherever results live."""
    parts = Path(path).parts
    return (
        Path(*parts[len(parts) - 1 - parts[::-1].index("raw") :]).as_posix()
        if "raw" in parts
        else path
    )


def _jsonable(value: Any) -> Any:
    """Builtin JSON values: NaN/inf as null, numpy scalars as Python ones, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if isinstance(value, list | tuple | np.ndarray) and len(value) == 2:
        return value[0], value[1]
    return None, None


# ----------------------------------------------------------------------------- inputs


def _resource_tables(
    measurement_paths: Sequence[str], resource_paths: Sequence[str] | None
) -> dict[tuple[str, str], pd.DataFrame]:
    """The sampler tables beside the raw tables, keyed by (suite, benchmark)."""
    if resource_paths is None:
        derived = [p[: -len(".parquet")] + ".resources.parquet" for p in measurement_paths]
        resource_paths = [p for p in derived if Path(p).is_file()]
    tables = {}
    for path in sorted(str(p) for p in resource_paths):
        bench = record.read_provenance(path).get("benchmark", {})
        name = str(bench.get("name", Path(path).name.split(".")[0]))
        if bench.get("job_subject"):  # one job per model of one benchmark (evaluations)
            name = f"{name} ({bench['job_subject']})"
        key = (str(bench.get("suite", Path(path).parent.name)), name)
        tables[key] = record.read_resources(path)
    return tables


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
    sort_by = [c for c in ("suite", "benchmark", "case", "metric") if c in frame]
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
    rows = pq.read_table(path, columns=[*_HISTORY_COLUMNS, "started_at"]).to_pandas()
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
        "n_failed": int(rows["status"].map(stats.vocabulary.is_failure).sum()),
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


# ----------------------------------------------------------------------------- rows


def _units(summary: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    if summary.empty:
        return {}
    return {
        (s, b, m): u
        for s, b, m, u in zip(
            summary["suite"], summary["benchmark"], summary["metric"], summary["unit"], strict=True
        )
    }


def _comparison_row(v: Mapping[str, Any], unit: str) -> dict[str, Any]:
    lo, hi = _pair(v.get("improvement_ci"))
    return {
        "name": v["name"],
        "suite": v["suite"],
        "where": f"{v['suite']}/{v['benchmark']}",
        "metric": v["metric"],
        "baseline": f"{v['baseline']}: {format_value(v.get('median_baseline'), unit)}",
        "candidate": f"{v['candidate']}: {format_value(v.get('median_candidate'), unit)}",
        "improvement": format_change(v.get("improvement")),
        "ci": format_interval(lo, hi),
        "speedup": format_value(v.get("speedup"), "x") if _finite(v.get("speedup")) else "—",
        "p": format_value(v.get("p_value", v.get("mannwhitney_p")), ""),
        "n": f"{int(v.get('n_baseline', 0))} / {int(v.get('n_candidate', 0))}",
        "failed": f"{int(v['n_failed_baseline'])} / {int(v['n_failed_candidate'])}",
        "family": v.get("family", ""),
        "verdict": v["verdict"],
        "reason": str(v.get("reason", "")),
    }


def _target_suite(t: Mapping[str, Any], comparisons: pd.DataFrame) -> str | None:
    if isinstance(t.get("suite"), str):
        return t["suite"]
    if isinstance(t.get("comparison"), str) and len(comparisons):
        match = comparisons[comparisons["name"] == t["comparison"]]
        if len(match):
            return str(match["suite"].iloc[0])
    return None


def _target_row(t: Mapping[str, Any], unit: str) -> dict[str, Any]:
    statistic = t["statistic"]
    fmt = format_change if statistic == "improvement" else (lambda x: format_value(x, unit))
    if isinstance(t.get("comparison"), str):
        what = f"improvement of comparison {t['comparison']!r}"
    elif isinstance(t.get("benchmark"), str):
        what = f"{statistic} of {t['suite']}/{t['benchmark']} {t['case']} {t['metric']}"
    else:
        what = f"{statistic} (no benchmark in this workflow measures it)"
    threshold = (
        format_change(t["threshold"])
        if statistic == "improvement"
        else format_value(t["threshold"], unit)
    )
    return {
        "name": t["name"],
        "what": what,
        "condition": f"{statistic} {t['op']} {threshold}",
        "estimate": fmt(t.get("estimate")) if _finite(t.get("estimate")) else "—",
        "ci": format_interval(t.get("ci_low"), t.get("ci_high"), fmt),
        "verdict": t["verdict"],
        "evidence": str(t.get("evidence", "")),
    }


def _summary_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for s in summary.to_dict("records"):
        if is_job_case(s["case"]):  # shown per job in the resources table
            continue
        unit = s["unit"]
        has = s["n_ok"] > 0
        rows.append(
            {
                "suite": s["suite"],
                "where": f"{s['suite']}/{s['benchmark']} v{s['benchmark_version']}",
                "case": s["case"],
                "metric": s["metric"],
                "unit": unit,
                "n_ok": s["n_ok"],
                "n_failed": s["n_failed"],
                "failures": ", ".join(f"{k}: {n}" for k, n in json.loads(s["failures"]).items()),
                "median": format_value(s.get("median"), unit) if has else "—",
                "ci": (
                    f"[{format_value(s['ci_low'], unit)}, {format_value(s['ci_high'], unit)}]"
                    if has
                    else "—"
                ),
                "p90": format_value(s.get("p90"), unit) if has else "—",
                "p99": format_value(s.get("p99"), unit) if has else "—",
                "mean": format_value(s.get("mean"), unit) if has else "—",
                "mad": format_value(s.get("mad"), unit) if has else "—",
                "outliers": f"{s.get('n_outliers_mad', 0)} / {s.get('n_outliers_iqr', 0)}"
                if has
                else "—",
                "warnings": json.loads(s["warnings"])
                if has and isinstance(s.get("warnings"), str)
                else [],
            }
        )
    return rows


def _resource_rows(paths: Sequence[str]) -> list[dict[str, str]]:
    """Per job: the sampler's peaks and memory growth, as stored in each file's provenance."""
    rows = []
    for path in paths:
        prov = record.read_provenance(path)
        res = prov.get("resources", {})
        bench = prov.get("benchmark", {})
        ci = res.get("memory_growth_ci") or (None, None)
        rows.append(
            {
                "suite": str(bench.get("suite", "?")),
                "where": f"{bench.get('suite', '?')}/{bench.get('name', Path(path).stem)}",
                "duration": format_value(res.get("duration_s"), "s"),
                "peak_rss": f"{format_value(res.get('peak_rss_bytes'), 'bytes')} "
                f"({res.get('peak_rss_source', '?')})",
                "cpu": f"{format_value(res.get('cpu_percent_mean'), '%')} mean, "
                f"{format_value(res.get('cpu_percent_max'), '%')} max",
                "growth": f"{format_value(res.get('memory_growth_mb_per_hour'), 'MB/h')} "
                f"[{format_value(ci[0], 'MB/h')}, {format_value(ci[1], 'MB/h')}]",
                "samples": str(res.get("n_samples", "—")),
            }
        )
    return rows


def _audit_rows(table: pd.DataFrame, units: Mapping[tuple[str, str, str], str]) -> list[dict]:
    rows = []
    for a in table.to_dict("records"):
        unit = units.get((a["suite"], a["benchmark"], a["metric"]), "")
        measured = isinstance(a.get("suite"), str)
        rows.append(
            {
                "optimization": a["optimization"],
                "where": f"{a['suite']}/{a['benchmark']} {a['metric']}" if measured else "—",
                "baseline": f"{a['baseline']}: {format_value(a['median_baseline'], unit)}"
                if measured
                else "—",
                "candidate": f"{a['candidate']}: {format_value(a['median_candidate'], unit)}"
                if measured
                else "—",
                "improvement": format_change(a["improvement"]),
                "ci": format_interval(a["improvement_ci_low"], a["improvement_ci_high"]),
                "failed": f"{int(a['n_failed_baseline'])} / {int(a['n_failed_candidate'])}"
                if measured
                else "—",
                "comparison_verdict": a["comparison_verdict"] or "—",
                "target": a["target"],
                "verdict": a["target_verdict"],
            }
        )
    return rows


def overall_line(
    overall: Mapping[str, Any],
    not_measured: Sequence[str],
    not_measurable: Sequence[str] = (),
) -> str:
    """The audit's overall verdict in one sentence, naming the targets left out of it."""
    share = overall["share_met"]
    text = (
        f"Overall: {overall['verdict']}. {overall['met']} of {overall['measured']} measured "
        f"targets met"
        + (f" ({share:.0%})" if _finite(share) else "")
        + f"; PASSED needs at least {overall['pass_share']:.0%} met, and inconclusive counts "
        "as not met."
    )
    if not_measurable:
        text += (
            " Not measurable at this budget (declared before the run), left out of the "
            f"share: {', '.join(not_measurable)}."
        )
    if not_measured:
        return text + f" Not measured, left out of the share: {', '.join(not_measured)}."
    return text + " Every other audited target was measured."


def _frame_records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or frame.empty:
        return []
    return [_jsonable(r) for r in frame.to_dict("records")]


def _table(frame: pd.DataFrame | None) -> dict[str, Any]:
    """Any derived table as header and formatted cells (floats to 4 significant digits)."""
    if frame is None or frame.empty:
        return {"columns": [], "rows": []}

    def cell(v: Any) -> str:
        v = _jsonable(v)
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list | dict):
            return json.dumps(v, sort_keys=True)
        return str(v)

    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [[cell(v) for v in row] for row in frame.itertuples(index=False)],
    }


def _baseline_rows(baseline: pd.DataFrame | None) -> list[dict[str, str]]:
    rows = []
    for b in _frame_records(baseline):
        lo, hi = b.get("improvement_ci_low"), b.get("improvement_ci_high")
        if lo is None and hi is None:
            lo, hi = _pair(b.get("improvement_ci"))
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


def verdict_counts(
    verdicts: pd.DataFrame,
    baseline: pd.DataFrame | None = None,
    regressions: pd.DataFrame | None = None,
) -> dict[str, dict]:
    """Counts of each verdict, by kind: comparison and target (this run), baseline
    comparison and regression detection (the history rule's tables, when present)."""
    counts: dict[str, dict[str, int]] = {}
    if not verdicts.empty:
        for kind, group in verdicts.groupby("kind", sort=True):
            counts[str(kind)] = {str(k): n for k, n in sorted(Counter(group["verdict"]).items())}
    for kind, table in (("baseline comparison", baseline), ("regression detection", regressions)):
        if table is not None and not table.empty and "verdict" in table:
            verdict = table["verdict"].astype(str)
            counts[kind] = dict(sorted(Counter(verdict).items()))
    return counts


def rule_statements(
    statistics: Mapping[str, Any],
    families: Sequence[str],
    baseline_families: Sequence[str],
    run_info: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """How every verdict in the report is decided, in words, with this run's settings;
    the history rule's own statements (in run.json) replace or follow the generic ones."""
    settings = stats.Settings.from_config(
        {k: v for k, v in statistics.items() if k in _SETTINGS_KEYS}
    )
    threshold, alpha, confidence = (
        settings.practical_threshold,
        settings.alpha,
        settings.confidence,
    )
    minimum = settings.min_units
    fams = ", ".join(f"“{f}”" for f in families) or "none in this run"
    base_fams = ", ".join(f"“{f}”" for f in baseline_families)
    rules = [
        (
            "Comparison",
            "One estimand, one interval: the ratio candidate / baseline of a typical value "
            "on the log scale (Hodges-Lehmann with the Mann-Whitney or signed-rank interval "
            "when rows are the independent units; Welch or paired t over per-repetition "
            "medians when repetitions hold several rows). An improvement (regression) needs "
            f"the whole {confidence:.0%} interval of the improvement above +{threshold:.0%} "
            f"(below −{threshold:.0%}; per metric where statistics.metric_thresholds says); "
            f"“no change” needs it inside ±{threshold:.0%}; otherwise “inconclusive”, as is "
            f"any side with fewer than {minimum['comparison']} units. The p-value shown is "
            "the interval's dual (the change is not beyond the threshold), so they cannot "
            "disagree. “undetermined”: the data cannot carry a ratio.",
        ),
        (
            "Failed",
            "Failures are errors, timeouts and mismatches; skipped, unavailable (a planned "
            "departure) and censored (a run stopped at its budget) rows are by design and "
            "never count. A comparison is “failed” when the candidate's failure rate is "
            "significantly above the baseline's (Fisher exact) or its Clopper-Pearson "
            f"interval lies above the error budget of {settings.error_budget:.1%}; it then "
            "publishes no speed figure. Failures are counted, never turned into values.",
        ),
        (
            "Target",
            f"A target is met only when its whole {confidence:.0%} interval satisfies it and "
            "its failures are within the error budget; not met when the whole interval "
            "violates it or its failures are over budget; inconclusive when the interval "
            "straddles the threshold or cannot exist at this n (quantiles use order "
            "statistics, proportions Clopper-Pearson, means and repetitions Student's t; "
            f"fewer than {minimum['target']} units decide nothing); not measured without "
            "rows; “not measurable at this budget” when declared so in config before the run.",
        ),
        (
            "Families",
            "The comparisons of one suite form a family: Benjamini-Hochberg selects at "
            f"alpha = {alpha:g} on the interval's dual p-values, and every member is then "
            "judged on its false-coverage-adjusted interval at level 1 − max(R, 1)·alpha/m "
            f"(Benjamini-Yekutieli). Families in this run: {fams}."
            + (f" Families against the baseline run: {base_fams}." if base_fams else ""),
        ),
        (
            "Not comparable",
            "Against a stored baseline run, a metric is “not comparable” (and gets no "
            "verdict) when its benchmark version differs, or when the machine differs (host "
            "or CPU model) unless cross-machine comparison was asked for.",
        ),
        (
            "Overall",
            "The optimization audit passes when at least 80% of its measured targets are "
            "met; inconclusive counts as not met; targets not measured or not measurable at "
            "this budget are left out of the share and listed.",
        ),
    ]
    for key, name in _RUN_RULES.items():
        text = (run_info or {}).get(key)
        if isinstance(text, str) and text:
            rules = [r for r in rules if r[0] != name] + [(name, text)]
    return rules


def _environment(paths: Sequence[str]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """Keys equal across every raw table, and per table what it was run with."""
    provs = [(p, record.read_provenance(p)) for p in paths]
    common: list[tuple[str, str]] = []
    for key in _ENV_KEYS:
        values = {json.dumps(prov.get(key), sort_keys=True, default=str) for _, prov in provs}
        if len(values) == 1 and provs and key in provs[0][1]:
            common.append((key, str(provs[0][1][key])))
        elif len(values) > 1:
            common.append((key, "differs between tables (see below)"))
    if provs:
        packages = provs[0][1].get("packages", {})
        common += [(f"package {k}", str(v)) for k, v in sorted(packages.items())]
    per_input = []
    for path, prov in provs:
        bench = prov.get("benchmark", {})
        per_input.append(
            {
                "path": _relative_to_results(path),
                "benchmark": f"{bench.get('suite', '?')}/{bench.get('name', '?')} "
                f"v{bench.get('version', '?')}",
                "seed": str(prov.get("seed", "—")),
                "git": f"{prov.get('git_commit', '—')}"
                + (" (dirty)" if prov.get("git_dirty") else ""),
                "host": f"{prov.get('host', '—')} ({prov.get('cpu_model', '—')})",
                "config_hash": str(prov.get("config_hash", "—"))[:12],
                "config": json.dumps(bench.get("config", {}), sort_keys=True, indent=1),
            }
        )
    return common, per_input


# ----------------------------------------------------------------------------- suite sections

# Knowledge benchmarks' headline metrics (the mean over items where there is one), in order;
# a name ending in "@" takes every k.
KNOWLEDGE_HEADLINES: dict[str, tuple[str, ...]] = {
    "creativity": (
        *("rat_accuracy@1", "rat_accuracy@5", "hit_rate@", "precision@", "surprise@5"),
        *("guardian_pass_rate", "hidden_link_auc", "hidden_link_precision@"),
    ),
    "personalization": ("MAP", "NDCG@10", "Recall@20", "token_cost_delta"),
    "repair": (
        *("detection_precision", "detection_recall", "proposal_validity"),
        *("guardian_reject_rate", "residual_violation_rate", "new_violations_after_repair"),
        *("detection_throughput", "repair_throughput"),
    ),
}
# Cases of knowledge/repair in the headline table: overall and throughput per size.
_REPAIR_CASES = re.compile(r"^(all@\d+|patients_\d+)$")
# Compression tables: (metric, column label, style), shown where a benchmark has the metric.
# Styles: "x" a ratio, "num" a plain number, "unit" the metric's own unit.
COMPRESSION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bits_per_weight", "bits/weight (measured, quantised layers)", "num"),
    ("bits_per_weight_theoretical", "bits/weight (configured)", "num"),
    ("bits_per_weight_whole", "bits/weight (whole file)", "num"),
    ("ratio_vs_fp32_quantised", "ratio vs fp32 (quantised layers)", "x"),
    ("ratio_vs_fp32_whole", "ratio vs fp32 (whole file)", "x"),
    ("ratio", "ratio", "x"),
    ("relative_error", "relative error", "num"),
    ("perplexity_original", "perplexity (original)", "num"),
    ("perplexity", "perplexity", "num"),
    ("perplexity_delta", "perplexity delta", "num"),
    ("tokens_per_s_original", "tokens/s (original)", "unit"),
    ("tokens_per_s", "tokens/s (decompressed, dense)", "unit"),
    ("compress_time", "compress time", "unit"),
    ("decompress_time", "decompress time", "unit"),
    ("compress_throughput", "compress", "unit"),
    ("decompress_throughput", "decompress", "unit"),
)
COMPRESSION_BENCHMARKS = ("weights", "pipeline", "selector", "lossless_codecs")
# Task metrics tried, in order, for a task the evaluation catalogue does not name.
_EVAL_FALLBACK = ("acc_norm", "acc", "exact_match", "pass_at_1", "f1")
_EVOMERGE_GENERATION = re.compile(r"^gen(?P<generation>\d+):")
_SERVICE_SCENARIO_METRICS = (
    *("max_rate_meeting_sla", "pre_spike_p95", "spike_p95", "recovery_time"),
    *("memory_growth", "soak_duration", "server_peak_rss"),
)


def _sibling_bounds(metric: str) -> list[tuple[str, str]]:
    """Names of the rows that may hold ``metric``'s interval: ``<m>_ci_low``/``_ci_high``
    (``<m>_mean``'s are ``<m>_ci_low``), or ``<m>.ci_low`` as the suite scores write it."""
    bases = [metric] + ([metric[: -len("_mean")]] if metric.endswith("_mean") else [])
    return [pair for b in bases for pair in ((f"{b}_ci_low", f"{b}_ci_high"),)] + [
        (f"{b}.ci_low", f"{b}.ci_high") for b in bases
    ]


class Cells:
    """The summary table by (suite, benchmark, case, metric), for the suites' own tables:
    a value (the median of the successful rows: the value itself for a single row), its
    interval and what failed. Where params split one metric into several summary rows,
    the first with a value stands for it and failures are counted over all."""

    def __init__(self, summary: pd.DataFrame, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.failures: dict[tuple[str, str, str, str], Counter] = {}
        self.by_design: dict[tuple[str, str, str, str], Counter] = {}
        records = [] if summary.empty else summary.to_dict("records")
        for s in records:
            if is_job_case(s["case"]):
                continue
            key = (s["suite"], s["benchmark"], s["case"], s["metric"])
            prev = self.rows.get(key)
            if prev is None or (prev["n_ok"] == 0 and s["n_ok"] > 0):
                self.rows[key] = s
            self.failures.setdefault(key, Counter()).update(json.loads(s["failures"]))
            planned = s.get("by_design")
            if isinstance(planned, str):
                self.by_design.setdefault(key, Counter()).update(json.loads(planned))

    def benchmarks(self, suite: str) -> list[str]:
        return sorted({k[1] for k in self.rows if k[0] == suite})

    def cases(self, suite: str, benchmark: str) -> list[str]:
        return sorted({k[2] for k in self.rows if k[:2] == (suite, benchmark)})

    def metrics(self, suite: str, benchmark: str, case: str | None = None) -> set[str]:
        return {k[3] for k in self.rows if k[:2] == (suite, benchmark) and case in (None, k[2])}

    def has(self, key: tuple[str, str, str, str]) -> bool:
        return key in self.rows

    def value(self, key: tuple[str, str, str, str]) -> float:
        row = self.rows.get(key)
        return float(row["median"]) if row is not None and row["n_ok"] > 0 else math.nan

    def unit(self, key: tuple[str, str, str, str]) -> str:
        row = self.rows.get(key)
        return str(row["unit"]) if row is not None else ""

    def params(self, key: tuple[str, str, str, str]) -> dict[str, Any]:
        row = self.rows.get(key)
        return json.loads(row["params"]) if row is not None else {}

    def status(self, key: tuple[str, str, str, str]) -> str:
        """ "ok" when the metric has a value, else its failures ("unavailable: 1"),
        "not run" when there is no row."""
        if key not in self.rows:
            return "not run"
        if self.rows[key]["n_ok"] > 0:
            return "ok"
        failed = [f"{s}: {n}" for s, n in sorted(self.failures[key].items())]
        planned = [f"{s}: {n}" for s, n in sorted(self.by_design.get(key, {}).items())]
        return ", ".join(failed + planned) or "no value"

    def interval(self, key: tuple[str, str, str, str]) -> tuple[float, float, str]:
        """(low, high, how): the metric's own interval rows, else value ± z·stderr from a
        ``<metric>_stderr`` row, else the order-statistic CI of the median over repeated
        values; NaN bounds and "" when there is none."""
        suite, benchmark, case, metric = key
        for low_name, high_name in _sibling_bounds(metric):
            low = self.value((suite, benchmark, case, low_name))
            high = self.value((suite, benchmark, case, high_name))
            if _finite(low) and _finite(high):
                return low, high, "recorded interval"
        value = self.value(key)
        stderr = self.value((suite, benchmark, case, f"{metric}_stderr"))
        if _finite(value) and _finite(stderr):
            z = float(sps.norm.ppf(0.5 + self.confidence / 2))
            low, high = value - z * stderr, value + z * stderr
            if self.unit(key) == "fraction":
                low, high = max(low, 0.0), min(high, 1.0)
            return low, high, "± z·stderr"
        row = self.rows.get(key)
        if row is not None and row["n_ok"] >= 2 and _finite(row.get("ci_low")):
            return float(row["ci_low"]), float(row["ci_high"]), "order statistics"
        return math.nan, math.nan, ""


def _fraction(value: Any) -> str:
    return format_value(value, "fraction")


def _points(value: Any) -> str:
    """A difference of two shares in percentage points (+1.2 pp)."""
    return f"{float(value) * 100:+.1f} pp" if _finite(value) else "—"


def _styled(value: float, unit: str, style: str) -> str:
    if not _finite(value):
        return "—"
    if style == "x":
        return f"{value:.3g}×"
    if style == "num":
        return f"{value:.4g}"
    return format_value(value, unit)


def _with_interval(cells: Cells, key: tuple[str, str, str, str], fmt: Any) -> str:
    """``value [low, high]`` (the interval only where there is one), or the failures."""
    value = cells.value(key)
    if not _finite(value):
        return cells.status(key)
    low, high, _ = cells.interval(key)
    shown = fmt(value)
    return f"{shown} {format_interval(low, high, fmt)}" if _finite(low) else shown


def _primary_metric(task: str, metrics: set[str]) -> str | None:
    """The metric the evaluation suites score ``task`` by (forgebench.evaluation.suites'
    catalogue), else the first of :data:`_EVAL_FALLBACK` it has (a filter suffix allowed)."""
    from forgebench.evaluation.runner import metric_name
    from forgebench.evaluation.suites import CATALOG

    for ref in CATALOG.values():
        if ref.task == task and metric_name(ref.metric, ref.filter) in metrics:
            return metric_name(ref.metric, ref.filter)
    for name in _EVAL_FALLBACK:
        found = sorted(m for m in metrics if m == name or m.startswith(f"{name}."))
        found = [m for m in found if not m.endswith("_stderr")]
        if found:
            return found[0]
    return None


def _eval_cell(cells: Cells, task: str, model: str, metric: str | None) -> dict[str, str]:
    """One task × model cell: value, interval, chance, and whether the interval clears it.

    The interval is the evaluation's recorded one (Clopper-Pearson for a share of
    documents, forgebench.evaluation.runner). A record without it gets Clopper-Pearson
    from ``n_docs`` where the value is a share of them (k/n exactly; not pass@k with
    k > 1): lm-eval's value ± z·stderr, clipped, made 0/20 the certain [0, 0]. Chance is
    ``chance_acc``, the higher of the uniform and the majority-class baseline, both in the
    title."""
    key = ("eval", task, model, metric or "")
    if metric is None or not _finite(cells.value(key)):
        failed = ("eval", task, model, "evaluation")
        reason = str(cells.params(failed).get("reason", "")) if cells.has(failed) else ""
        status = cells.status(failed) if cells.has(failed) else cells.status(key)
        planned_only = cells.has(key) and not cells.failures.get(key) and cells.by_design.get(key)
        flag = "not run (by design)" if planned_only else "failed"
        return {"text": status, "flag": flag, "title": reason, "how": ""}
    value = cells.value(key)
    low, high, how = cells.interval(key)
    if how == "recorded interval":
        how = str(cells.params((*key[:3], f"{metric}_ci_low")).get("interval") or how)
    n_docs = cells.value(("eval", task, model, "n_docs"))
    share = _finite(n_docs) and n_docs > 0 and abs(value * n_docs - round(value * n_docs)) < 1e-6
    pass_k = re.match(r"pass_at_(\d+)(\.|$)", metric)
    if (
        how in ("", "± z·stderr", "order statistics")
        and cells.unit(key) == "fraction"
        and share
        and not (pass_k and int(pass_k.group(1)) > 1)
    ):
        n = int(n_docs)
        low, high = stats.proportion_ci(min(n, max(0, round(value * n))), n, cells.confidence)
        how = "exact binomial (Clopper-Pearson)"
    chance = cells.value(("eval", task, model, "chance_acc"))
    uniform = cells.value(("eval", task, model, "chance_uniform"))
    majority = cells.value(("eval", task, model, "chance_majority"))
    if not _finite(low):
        flag = "no interval"
    elif _finite(chance) and low <= chance:
        flag = "does not clear chance"
    else:
        flag = ""
    levels = (
        f" (the higher of uniform {_fraction(uniform)} and majority class {_fraction(majority)})"
        if _finite(uniform) and _finite(majority)
        else ""
    )
    return {
        "text": f"{_fraction(value)} {format_interval(low, high, _fraction)}".rstrip(" —"),
        "flag": flag,
        "title": f"chance {_fraction(chance)}{levels}; interval: {how or 'none'}",
        "how": how,
        "chance": _fraction(chance),
    }


def evaluation_section(cells: Cells) -> dict[str, Any] | None:
    """Task × model table of each task's primary metric, suite scores, paired comparisons."""
    tasks = [b for b in cells.benchmarks("eval") if not b.startswith("suite_")]
    suites = [b for b in cells.benchmarks("eval") if b.startswith("suite_")]
    pairs = cells.benchmarks("eval_pairs")
    if not (tasks or suites or pairs):
        return None
    models = sorted({c for t in tasks for c in cells.cases("eval", t)})
    task_rows = []
    for task in tasks:
        metric = _primary_metric(task, cells.metrics("eval", task))
        row_cells = [
            _eval_cell(cells, task, m, metric)
            if m in cells.cases("eval", task)
            else {"text": "not run", "flag": "", "title": "", "how": ""}
            for m in models
        ]
        chances = sorted({c["chance"] for c in row_cells if c.get("chance", "—") != "—"})
        task_rows.append(
            {
                "task": task,
                "metric": metric or "—",
                "chance": " / ".join(chances) or "—",
                "how": ", ".join(sorted({c["how"] for c in row_cells if c["how"]})) or "—",
                "cells": row_cells,
            }
        )
    suite_rows = []
    for bench in suites:
        for model in cells.cases("eval", bench):
            key = ("eval", bench, model, "score")
            params = cells.params(key)
            low, _, _ = cells.interval(key)
            chance = cells.value(("eval", bench, model, "chance"))
            missing = [str(m) for m in params.get("missing", [])]
            suite_rows.append(
                {
                    "suite": str(params.get("suite", bench.removeprefix("suite_"))),
                    "model": model,
                    "score": _with_interval(cells, key, _fraction),
                    "chance": _fraction(chance),
                    "flag": "does not clear chance"
                    if _finite(chance) and (not _finite(low) or low <= chance)
                    else "",
                    "complete": "complete" if params.get("complete") else "incomplete",
                    "missing": ", ".join(missing) or "—",
                }
            )
    pair_rows = []
    for task in pairs:
        for case in cells.cases("eval_pairs", task):
            metrics = cells.metrics("eval_pairs", task, case)
            for delta in sorted(m for m in metrics if m.endswith("_delta")):
                name = delta[: -len("_delta")]
                named = {
                    suffix: cells.value(("eval_pairs", task, case, f"{name}_{suffix}"))
                    for suffix in ("delta_p", "flip_rate", "gained", "lost", "mcnemar_p", "items")
                }

                key = ("eval_pairs", task, case, delta)
                low, high, _ = cells.interval(key)
                pair_rows.append(
                    {
                        "task": task,
                        "pair": case,
                        "metric": name,
                        "delta": _points(cells.value(key)),
                        "ci": format_interval(low, high, _points),
                        "p": format_value(named["delta_p"], ""),
                        "flip_rate": _fraction(named["flip_rate"]),
                        "gained": _fraction(named["gained"]),
                        "lost": _fraction(named["lost"]),
                        "mcnemar_p": format_value(named["mcnemar_p"], ""),
                        "n_items": format_value(named["items"], ""),
                    }
                )
    return {
        "models": models,
        "tasks": task_rows,
        "suites": suite_rows,
        "pairs": pair_rows,
        "confidence": f"{cells.confidence:.0%}",
    }


def models_section(cells: Cells) -> dict[str, Any] | None:
    """Held-out loss of each built model before and after training, beside ln|V| (the loss
    of a uniform guess over the vocabulary): a model that learned is below it."""
    rows = []
    for model in cells.cases("models", "build"):

        def v(metric: str, _model: str = model) -> float:
            return cells.value(("models", "build", _model, metric))

        if not cells.metrics("models", "build", model) & {"uniform_nll", "heldout_nll_after"}:
            continue
        before, after, uniform = v("heldout_nll_before"), v("heldout_nll_after"), v("uniform_nll")
        rows.append(
            {
                "model": model,
                "nll_before": _styled(before, "nats", "num"),
                "nll_after": _styled(after, "nats", "num")
                if _finite(after)
                else cells.status(("models", "build", model, "heldout_nll_after")),
                "uniform": _styled(uniform, "nats", "num"),
                "ppl_before": _styled(math.exp(before), "", "num") if _finite(before) else "—",
                "ppl_after": _styled(math.exp(after), "", "num") if _finite(after) else "—",
                "ppl_uniform": _styled(math.exp(uniform), "", "num") if _finite(uniform) else "—",
                "learned": "yes"
                if _finite(after) and _finite(uniform) and after < uniform
                else "no",
                "tokens_per_s": format_value(v("train_tokens_per_s"), "tokens/s"),
            }
        )
    return {"rows": rows} if rows else None


def _compression_notes(params: Mapping[str, Any]) -> list[str]:
    notes = []
    if params.get("inference") == "dense":
        notes.append("tokens/s of the decompressed dense float32 model: no packed-weight kernel")
    if params.get("post_training"):
        notes.append(
            "post-training ternarisation of trained weights, no quantisation-aware training"
        )
    return notes


def compression_section(cells: Cells) -> dict[str, Any] | None:
    """A table per compression benchmark: a row per method, the columns it measured."""
    tables = []
    for bench in [b for b in COMPRESSION_BENCHMARKS if b in cells.benchmarks("compression")]:
        metrics = cells.metrics("compression", bench)
        columns = [c for c in COMPRESSION_COLUMNS if c[0] in metrics]
        rows = []
        for case in cells.cases("compression", bench):
            values = []
            for metric, _, style in columns:
                key = ("compression", bench, case, metric)
                unit = cells.unit(key)
                values.append(
                    _with_interval(cells, key, lambda x, u=unit, s=style: _styled(x, u, s))
                    if cells.has(key)
                    else "—"
                )
            params = next(
                (
                    cells.params(k)
                    for k in sorted(cells.rows)
                    if k[:3] == ("compression", bench, case)
                ),
                {},
            )
            rows.append({"method": case, "cells": values, "notes": _compression_notes(params)})
        tables.append({"benchmark": bench, "columns": [c[1] for c in columns], "rows": rows})
    return {"tables": tables} if tables else None


def service_section(frame: pd.DataFrame, cells: Cells) -> dict[str, Any] | None:
    """Grades per endpoint and run (the original's label on mean latency and success) with
    the figures behind them, and the load scenarios' own results."""
    sel = (
        frame[(frame["suite"] == "service") & ~frame["warmup"].astype(bool)]
        if len(frame)
        else frame
    )
    if sel.empty:
        return None
    keys = ["benchmark", "case", "repetition"]
    latency = sel[sel["metric"].isin(["latency", "completion_latency"]) & (sel["status"] == "ok")]
    mean_latency = latency.groupby(keys, sort=True)["value"].mean().to_dict()
    grades_rows = sel[sel["metric"] == "grade"].sort_values(keys, kind="stable")
    by_run = {k: g for k, g in sel.groupby(keys, sort=True)}
    rows = []
    for g in grades_rows.to_dict("records"):
        k = (g["benchmark"], g["case"], g["repetition"])
        run = by_run[k]
        params = json.loads(g["params"])

        def first(metric: str, _run: pd.DataFrame = run) -> float:
            values = _run.loc[(_run["metric"] == metric) & (_run["status"] == "ok"), "value"]
            return float(values.iloc[0]) if len(values) else math.nan

        verdicts = sorted(
            {str(json.loads(p).get("sla_verdict")) for p in run["params"] if "sla_verdict" in p}
            - {"None"}
        )
        where = ", ".join(
            f"{name} {params[name]}" for name in ("endpoint", "users", "rate") if name in params
        )
        share = first("error_share")
        share_ci = format_interval(
            first("error_share_ci_low"), first("error_share_ci_high"), _fraction
        )
        rows.append(
            {
                "where": f"{g['benchmark']}: {g['case']}",
                "run": f"{where} (repetition {g['repetition']})" if where else str(g["repetition"]),
                "grade": str(params.get("grade", "—")),
                "mean_latency": format_value(mean_latency.get(k), "s"),
                "error_share": f"{_fraction(share)} {share_ci}" if _finite(share) else "—",
                "throughput": format_value(first("throughput"), "requests/s"),
                "sla": ", ".join(verdicts) or "—",
            }
        )
    scenario_rows = []
    for bench in cells.benchmarks("service"):
        for case in cells.cases("service", bench):
            for metric in _SERVICE_SCENARIO_METRICS:
                key = ("service", bench, case, metric)
                if not cells.has(key):
                    continue
                params = cells.params(key)
                unit = cells.unit(key)
                scenario_rows.append(
                    {
                        "where": f"{bench}: {case}",
                        "metric": metric,
                        "value": _with_interval(cells, key, lambda x, u=unit: format_value(x, u)),
                        "status": cells.status(key),
                        "verdict": str(params.get("sla_verdict", "—")),
                        "note": str(params.get("ended", "")),
                    }
                )
    if not rows and not scenario_rows:
        return None
    return {"grades": rows, "scenarios": scenario_rows}


def _headline_metrics(wanted: Sequence[str], metrics: set[str]) -> list[str]:
    """The recorded names of the headline metrics: ``<m>_mean`` where the per-item rows
    were summarised so, else ``<m>``; names ending in "@" take every k."""
    out = []
    for name in wanted:
        bases = sorted(
            {m.removesuffix("_mean") for m in metrics if m.startswith(name)}
            if name.endswith("@")
            else {name}
        )
        for base in bases:
            if base.endswith(("_ci_low", "_ci_high")):
                continue
            if f"{base}_mean" in metrics:
                out.append(f"{base}_mean")
            elif base in metrics:
                out.append(base)
    return list(dict.fromkeys(out))


def knowledge_section(cells: Cells) -> dict[str, Any] | None:
    """Headline metrics of the knowledge benchmarks, each with its interval."""
    rows = []
    for bench, wanted in KNOWLEDGE_HEADLINES.items():
        for case in cells.cases("knowledge", bench):
            if bench == "repair" and not _REPAIR_CASES.match(case):
                continue
            for metric in _headline_metrics(wanted, cells.metrics("knowledge", bench, case)):
                key = ("knowledge", bench, case, metric)
                unit = cells.unit(key)
                fmt = _fraction if unit == "ratio" else (lambda x, u=unit: format_value(x, u))
                row = cells.rows[key]
                low, high, how = cells.interval(key)
                rows.append(
                    {
                        "benchmark": bench,
                        "case": case,
                        "metric": metric.removesuffix("_mean")
                        + (" (mean)" if metric.endswith("_mean") else ""),
                        "value": fmt(cells.value(key))
                        if _finite(cells.value(key))
                        else cells.status(key),
                        "ci": format_interval(low, high, fmt),
                        "how": how or "—",
                        "n": str(int(row["n_ok"])),
                    }
                )
    return {"rows": rows} if rows else None


def evomerge_individuals(cells: Cells, lineage: Any = None) -> pd.DataFrame:
    """Every individual of every generation with its fitness and interval, origin and
    parents: from the ``fitness`` rows of suite evomerge (cases ``gen<g>:<name>``, and
    ``seed:<name>`` for the seed models, generation -1), completed from lineage.json
    where the rows say less."""
    known = _lineage_records(lineage)
    columns = ["suite", "benchmark", "generation", "name", "origin", "parents"]
    rows = []
    for bench in cells.benchmarks("evomerge"):
        for case in cells.cases("evomerge", bench):
            key = ("evomerge", bench, case, "fitness")
            if not cells.has(key):
                continue
            own = cells.params(key)
            name = str(own.get("name", case.split(":", 1)[-1]))
            params = {**known.get(name, {}), **own}
            seed = case.startswith("seed:")
            generation = params.get("generation")
            match = _EVOMERGE_GENERATION.search(case)
            if seed:
                generation = -1
            elif not isinstance(generation, int | float) and match:
                generation = int(match.group("generation"))
            low, high, _ = cells.interval(key)
            parents = params.get("parents") or []
            genome = params.get("describe", params.get("genome"))
            rows.append(
                {
                    "suite": "evomerge",
                    "benchmark": bench,
                    "generation": int(generation) if isinstance(generation, int | float) else 0,
                    "name": name,
                    "origin": "seed" if seed else str(params.get("origin", "—")),
                    "parents": [str(p) for p in parents] if isinstance(parents, list) else [],
                    "fitness": cells.value(key),
                    "ci_low": low,
                    "ci_high": high,
                    "status": cells.status(key),
                    "genome": genome
                    if isinstance(genome, str) or genome is None
                    else json.dumps(genome, sort_keys=True),
                }
            )
    frame = pd.DataFrame(
        rows, columns=[*columns, "fitness", "ci_low", "ci_high", "status", "genome"]
    )
    return frame.sort_values(["benchmark", "generation", "name"], kind="stable").reset_index(
        drop=True
    )


def _lineage_records(lineage: Any) -> dict[str, dict[str, Any]]:
    """lineage.json as name -> what it says of that individual: a mapping of name to
    object (as forgebench.evomerge.stages writes it), a list of objects with a ``name``,
    or ``{"individuals": [...]}``."""
    if isinstance(lineage, Mapping) and isinstance(lineage.get("individuals"), list):
        lineage = lineage["individuals"]
    if isinstance(lineage, list):
        return {str(r["name"]): dict(r) for r in lineage if isinstance(r, Mapping) and "name" in r}
    if isinstance(lineage, Mapping):
        return {str(k): dict(v) for k, v in lineage.items() if isinstance(v, Mapping)}
    return {}


def _fitness_text(fitness: Any, low: Any, high: Any) -> str:
    fmt = _fraction
    return f"{fmt(fitness)} {format_interval(low, high, fmt)}".removesuffix(" —")


def _best_line(cells: Cells, individuals: pd.DataFrame) -> str:
    """The fittest individual against its best parent: the evolution's own choice and
    paired comparison (case ``best_vs_parent``) where recorded, else from the fitness
    rows and the parents they name."""
    ok = individuals[np.isfinite(individuals["fitness"].to_numpy(dtype=float))]
    bred = ok[ok["generation"] >= 0]
    if bred.empty:
        return "No individual has a fitness."
    by_name = ok.drop_duplicates("name").set_index("name")
    evo = ("evomerge", "evolution", "evolution", "best_fitness")
    chosen = cells.params(evo) if cells.has(evo) else {}
    best_name = chosen.get("best")
    if best_name not in by_name.index:
        top = bred.sort_values(["fitness", "name"], ascending=[False, True], kind="stable")
        best_name = str(top.iloc[0]["name"])
    best = by_name.loc[best_name]
    text = (
        f"Best: {best_name} (generation {best['generation']}), fitness "
        f"{_fitness_text(best['fitness'], best['ci_low'], best['ci_high'])}"
    )
    parent = chosen.get("best_parent")
    if parent not in by_name.index:
        parents = [p for p in best["parents"] if p in by_name.index]
        parent = str(by_name.loc[parents]["fitness"].idxmax()) if parents else None
    if parent is None:
        return f"{text}; no parent of it has a fitness (origin {best['origin']})."
    p = by_name.loc[parent]
    text += f"; its best parent {parent}: {_fitness_text(p['fitness'], p['ci_low'], p['ci_high'])}"
    delta = ("evomerge", "evolution", "best_vs_parent", "score_delta")
    if _finite(cells.value(delta)):
        low, high, _ = cells.interval(delta)
        mcnemar = cells.value(("evomerge", "evolution", "best_vs_parent", "score_mcnemar_p"))
        p_value = cells.value(("evomerge", "evolution", "best_vs_parent", "score_delta_p"))
        return (
            f"{text}; paired on the same documents: difference {_points(cells.value(delta))} "
            f"{format_interval(low, high, _points)}, p {format_value(p_value, '')}"
            + (f", McNemar p {format_value(mcnemar, '')}" if _finite(mcnemar) else "")
            + "."
        )
    overlap = _finite(p["ci_high"]) and _finite(best["ci_low"]) and best["ci_low"] <= p["ci_high"]
    return (
        f"{text}; difference {_points(float(best['fitness']) - float(p['fitness']))}"
        + (" (intervals overlap)" if overlap else "")
        + "."
    )


def evomerge_section(cells: Cells, individuals: pd.DataFrame) -> dict[str, Any] | None:
    """Lineage table, the best individual against its best parent, the wall time."""
    if individuals.empty:
        return None
    lineage = [
        {
            "generation": "seed" if r["generation"] < 0 else str(r["generation"]),
            "name": r["name"],
            "origin": r["origin"],
            "parents": ", ".join(r["parents"]) or "—",
            "fitness": _fitness_text(r["fitness"], r["ci_low"], r["ci_high"])
            if _finite(r["fitness"])
            else r["status"],
            "genome": r["genome"] if isinstance(r["genome"], str) and r["genome"] else "—",
        }
        for r in individuals.to_dict("records")
    ]
    wall = ("evomerge", "evolution", "evolution", "wall_time")
    bred = individuals[individuals["generation"] >= 0]
    return {
        "lineage": lineage,
        "best": _best_line(cells, individuals),
        "n_individuals": int(bred["name"].nunique()),
        "n_generations": int(bred["generation"].nunique()),
        "wall_time": format_value(cells.value(wall), "s")
        if _finite(cells.value(wall))
        else (cells.status(wall) if cells.has(wall) else "—"),
    }


def default_lineage_path(paths: Sequence[str]) -> Path | None:
    """results/evomerge/lineage.json beside the raw tables' results/raw, if it exists."""
    for path in paths:
        parts = Path(path).parts
        if "raw" in parts:
            root = Path(*parts[: len(parts) - 1 - parts[::-1].index("raw")])
            candidate = root / "evomerge" / "lineage.json"
            return candidate if candidate.is_file() else None
    return None


def read_lineage(path: str | Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text())


def suite_sections(
    frame: pd.DataFrame, cells: Cells, individuals: pd.DataFrame
) -> dict[str, dict[str, Any] | None]:
    """The new suites' own tables, each None where its suite has no rows."""
    return {
        "evaluation": evaluation_section(cells),
        "models": models_section(cells),
        "compression": compression_section(cells),
        "service": service_section(frame, cells),
        "knowledge": knowledge_section(cells),
        "evomerge": evomerge_section(cells, individuals),
    }


# ----------------------------------------------------------------------------- summary


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
) -> dict[str, Any]:
    """The machine-readable summary: verdicts, targets, audit, key statistics, history.

    No clock and no host-specific path: equal stored results give an equal document.
    """
    comps = verdicts[verdicts["kind"] == "comparison"] if len(verdicts) else verdicts
    targs = verdicts[verdicts["kind"] == "target"] if len(verdicts) else verdicts
    comparisons = []
    for v in comps.to_dict("records"):
        row = {k: v.get(k) for k in _COMPARISON_KEYS}
        row["improvement_ci"] = list(_pair(v.get("improvement_ci")))
        row["speedup_ci"] = list(_pair(v.get("speedup_ci")))
        for key in ("n_baseline", "n_candidate", "n_failed_baseline", "n_failed_candidate"):
            row[key] = int(row[key]) if _finite(row[key]) else None
        comparisons.append(row)
    targets = []
    for t in targs.to_dict("records"):
        row = {k: t.get(k) for k in _TARGET_KEYS}
        row["ci"] = [t.get("ci_low"), t.get("ci_high")]
        targets.append(row)
    table, overall = audit
    summary_rows = []
    for s in summary.to_dict("records"):
        row = {k: s.get(k) for k in _SUMMARY_KEYS}
        row["params"] = json.loads(s["params"])
        row["failures"] = json.loads(s["failures"])
        row["ci"] = [s.get("ci_low"), s.get("ci_high")]
        row["warnings"] = json.loads(s["warnings"]) if isinstance(s.get("warnings"), str) else []
        summary_rows.append(row)
    failed = frame[frame["status"].map(stats.vocabulary.is_failure)] if len(frame) else frame
    by_design = (
        frame[frame["status"].isin(stats.vocabulary.BY_DESIGN_STATUSES)] if len(frame) else frame
    )
    families = sorted({str(f) for f in comps.get("family", pd.Series(dtype=str)).dropna()})
    hist: dict[str, Any] | None = None
    if not history.empty:
        hist = {
            "run": run_summary(history.run),
            "runs": list(history.runs["run_id"]) if len(history.runs) else [],
            "baseline_comparison": _frame_records(_without_times(history.baseline)),
            "regressions": _frame_records(_without_times(history.regressions)),
        }
    doc = {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "inputs": [_relative_to_results(p) for p in inputs],
        "seed": int(seed),
        "statistics": dict(statistics),
        "observations": len(frame),
        "failed_operations": {
            "total": len(failed),
            "by_status": dict(sorted(Counter(failed["status"]).items())) if len(failed) else {},
            "by_design": dict(sorted(Counter(by_design["status"]).items()))
            if len(by_design)
            else {},
        },
        "verdict_counts": verdict_counts(verdicts, history.baseline, history.regressions),
        "families": families,
        "comparisons": comparisons,
        "targets": targets,
        "audit": {
            "rows": _frame_records(table),
            "overall": dict(overall),
            "not_measured": sorted(
                table.loc[table["target_verdict"] == "not measured", "target"].astype(str)
            ),
            "not_measurable": sorted(
                table.loc[
                    table["target_verdict"] == stats.vocabulary.NOT_MEASURABLE, "target"
                ].astype(str)
            ),
        },
        "summary": summary_rows,
        "history": hist,
    }
    return _jsonable(doc)


def _without_times(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """A history table without timestamp columns: the summaries carry no clock."""
    if frame is None:
        return None
    return frame.select_dtypes(exclude=["datetime", "datetimetz"])


def run_summary(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """run.json for the summaries: without its start times (the summaries carry no
    clock, even a stored one) and without the rule statements (listed with the rules)."""
    if run is None:
        return None
    return {k: v for k, v in run.items() if not k.endswith("_at") and k not in _RUN_RULES}


def _jinja(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("forgebench", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    return env


# ----------------------------------------------------------------------------- build


def build_report(
    measurement_paths: Sequence[str],
    *,
    summary_path: str | Path,
    verdicts_path: str | Path,
    html_path: str | Path,
    plots_dir: str | Path,
    statistics: Mapping[str, Any],
    comparisons: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    seed: int,
    provenance_path: str | Path | None = None,
    code_dir: str | None = None,
    resource_paths: Sequence[str] | None = None,
    markdown_path: str | Path | None = None,
    json_path: str | Path | None = None,
    run_info_path: str | Path | None = None,
    baseline_comparison_path: str | Path | None = None,
    regressions_path: str | Path | None = None,
    history_dir: str | Path | None = None,
    lineage_path: str | Path | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Read every stored table; write summary and verdict Parquet, figures, index.html,
    summary.md and summary.json (beside index.html unless given); return the summary.

    Inputs are read in sorted order, so the same stored results give the same rows in
    the same order, and so the same seeded bootstrap intervals, however they are listed.
    Resource samples default to the ``.resources.parquet`` beside each raw table; the
    history inputs are optional and the report says "no history yet" without them.
    EvoMerge's lineage defaults to results/evomerge/lineage.json beside results/raw;
    without it the EvoMerge section shows what the fitness rows say.

    ``workers`` > 1 runs a pool of that many processes: the stored history is read, the
    summaries' bootstraps are computed and the figures are drawn in it. Every bootstrap
    has its own seeded generator and every figure is drawn by the same code from the same
    data, so the tables and PNGs are byte-identical to a one-process build.
    """
    with _process_pool(workers) as pool:
        paths = sorted(str(p) for p in measurement_paths)
        html_path = Path(html_path)
        html_dir = html_path.parent
        markdown_path = Path(markdown_path or html_dir / "summary.md")
        json_path = Path(json_path or html_dir / "summary.json")
        confidence = float(statistics.get("confidence", 0.95))
        history_args = {
            "run_info_path": run_info_path,
            "baseline_comparison_path": baseline_comparison_path,
            "regressions_path": regressions_path,
            "history_dir": history_dir,
            "confidence": confidence,
        }
        # The stored history is independent of this run's tables: read it beside them.
        history_future = pool.submit(load_history, **history_args) if pool is not None else None
        frame = record.concat_measurements(paths)
        log.info("read %d rows from %d files", len(frame), len(paths))
        finish_summary = analysis.start_summaries(frame, statistics, seed=seed, executor=pool)
        # Most figures need only the raw rows and the stored history: planned while the
        # workers compute the summaries, then drawn by them while this process compares
        # cases, checks targets and writes the tables and pages.
        early: list[plots.FigureJob] = []
        raw_figures = _raw_figures(frame, paths, resource_paths, plots_dir, early)
        history = (
            history_future.result() if history_future is not None else load_history(**history_args)
        )
        raw_figures["trend"] = _trend_figures(history, plots_dir, early)
        drawing = plots.submit(early, pool)
        summary = finish_summary()
        compared = analysis.compare_cases(frame, comparisons, statistics, seed=seed)
        checked = analysis.check_targets(targets, compared, frame, statistics, seed=seed)
        verdicts = pd.concat([compared, checked], ignore_index=True)
        audit = analysis.audit_table(verdicts)
        if provenance_path is not None:  # where and when this report ran: kept out of the tables
            prov = collect_provenance(seed=seed, code_dir=code_dir)
            prov["inputs"] = [_relative_to_results(p) for p in paths]
            write_text_atomic(provenance_path, json.dumps(prov, indent=2, sort_keys=True) + "\n")
        inputs = {"inputs": [_relative_to_results(p) for p in paths]}
        record.write_derived_table(summary, summary_path, {"kind": "summary", **inputs})
        record.write_derived_table(verdicts, verdicts_path, {"kind": "summary", **inputs})
        cells = Cells(summary, confidence)
        lineage = read_lineage(lineage_path if lineage_path else default_lineage_path(paths))
        individuals = evomerge_individuals(cells, lineage)
        late: list[plots.FigureJob] = []
        derived_figures = _derived_figures(
            frame, summary, compared, statistics, seed, plots_dir, individuals, late
        )
        drawing += plots.submit(late, pool)
        figures = _in_report_order({**raw_figures, **derived_figures})
        doc = summary_document(
            inputs=paths,
            frame=frame,
            summary=summary,
            verdicts=verdicts,
            audit=audit,
            history=history,
            statistics=statistics,
            seed=seed,
        )
        write_text_atomic(
            json_path,
            json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n",
        )
        context = _context(
            doc=doc,
            frame=frame,
            summary=summary,
            verdicts=verdicts,
            audit=audit,
            history=history,
            figures=figures,
            paths=paths,
            statistics=statistics,
            html_dir=html_dir,
            sections=suite_sections(frame, cells, individuals),
            links={
                "summary.md": _link(markdown_path, html_dir),
                "summary.json": _link(json_path, html_dir),
                "provenance.json": _link(provenance_path, html_dir) if provenance_path else None,
            },
        )
        markdown = _jinja(False).get_template("summary.md.j2").render(**context)
        text = _jinja(True).get_template("report.html.j2").render(**context)
        for future in drawing:  # every figure written before the pages that show them
            future.result()
        plots.remove_stale(plots_dir, figures)
        write_text_atomic(markdown_path, markdown)
        write_text_atomic(html_path, text)
        log.info("report written to %s (%d figures)", html_path, len(figures))
        return doc


def _warm_up() -> None:
    """A pool worker's first task: import the drawing code while the report reads tables."""
    import forgebench.plots  # noqa: F401


@contextlib.contextmanager
def _process_pool(workers: int) -> Iterator[Executor | None]:
    """A pool of ``workers`` processes (None for one: everything runs here). Spawned, not
    forked: the report process has reader threads by then (Arrow), and a fresh interpreter
    per worker is safe wherever it runs; scripts/report.py keeps its code under a
    ``__main__`` guard because spawned workers import the main script."""
    if workers <= 1:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for _ in range(workers):  # start every worker now, each importing matplotlib
            pool.submit(_warm_up)
        yield pool
    finally:  # after an error, queued figures are not drawn
        pool.shutdown(wait=True, cancel_futures=True)


def _link(path: str | Path | None, html_dir: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(html_dir.resolve()).as_posix()
    except ValueError:
        return None


def _raw_figures(
    frame: pd.DataFrame,
    paths: Sequence[str],
    resource_paths: Sequence[str] | None,
    plots_dir: str | Path,
    jobs: list[plots.FigureJob],
) -> dict[str, list[plots.Figure]]:
    """Figures of the raw rows and the resource samples, by kind; planned into ``jobs``,
    to be drawn with plots.submit."""
    return {
        "cdf": plots.latency_cdfs(frame, plots_dir, jobs=jobs),
        "resources": plots.resource_timelines(
            _resource_tables(paths, resource_paths), plots_dir, jobs=jobs
        ),
    }


def _trend_figures(
    history: History, plots_dir: str | Path, jobs: list[plots.FigureJob]
) -> list[plots.Figure]:
    """Figures of the stored history, planned into ``jobs``."""
    if history.medians.empty:
        return []
    return plots.history_trends(
        history.medians,
        detected_changes(history.regressions),
        plots_dir,
        highlight=history.marks,
        jobs=jobs,
    )


def _derived_figures(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    compared: pd.DataFrame,
    statistics: Mapping[str, Any],
    seed: int,
    plots_dir: str | Path,
    individuals: pd.DataFrame,
    jobs: list[plots.FigureJob],
) -> dict[str, list[plots.Figure]]:
    """Figures of the summary, the comparisons and EvoMerge's individuals, by kind."""
    return {
        "percentiles": plots.percentile_bars(summary, plots_dir, jobs=jobs),
        "ab": plots.comparison_boxes(frame, compared, plots_dir, jobs=jobs),
        "accuracy": plots.accuracy_plots(
            frame,
            plots_dir,
            confidence=float(statistics.get("confidence", 0.95)),
            n_resamples=int(statistics.get("bootstrap_resamples", 2000)),
            seed=seed,
            jobs=jobs,
        ),
        "compression": plots.compression_plots(summary, plots_dir, jobs=jobs),
        "scaling": plots.scaling_plots(summary, plots_dir, jobs=jobs),
        "fitness": plots.fitness_plots(individuals, plots_dir, jobs=jobs),
    }


def _in_report_order(by_kind: Mapping[str, list[plots.Figure]]) -> list[plots.Figure]:
    """Every figure, kinds in the order of plots.KINDS."""
    return [figure for kind in plots.KINDS for figure in by_kind.get(kind, [])]


def _context(
    *,
    doc: Mapping[str, Any],
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    verdicts: pd.DataFrame,
    audit: tuple[pd.DataFrame, Mapping[str, Any]],
    history: History,
    figures: Sequence[plots.Figure],
    paths: Sequence[str],
    statistics: Mapping[str, Any],
    html_dir: Path,
    links: Mapping[str, str | None],
    sections: Mapping[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """Everything the HTML and Markdown templates show, already formatted."""
    statistics = {**_STATISTICS_DEFAULTS, **statistics}
    units = _units(summary)
    comps = verdicts[verdicts["kind"] == "comparison"] if len(verdicts) else verdicts
    targs = verdicts[verdicts["kind"] == "target"] if len(verdicts) else verdicts
    comp_rows = [
        _comparison_row(v, units.get((v["suite"], v["benchmark"], v["metric"]), ""))
        for v in comps.to_dict("records")
    ]
    target_rows = []
    for t in targs.to_dict("records"):
        suite = _target_suite(t, comps)
        unit = units.get((t.get("suite"), t.get("benchmark"), t.get("metric")), "")
        target_rows.append({**_target_row(t, unit), "suite": suite})
    summary_rows = _summary_rows(summary)
    resource_rows = _resource_rows(paths)
    suite_names = sorted(
        {r["suite"] for r in summary_rows}
        | {r["suite"] for r in comp_rows}
        | {r["suite"] for r in target_rows if r["suite"]}
        | {f.suite for f in figures if f.kind != "trend"}
    )
    kind_order = list(plots.KINDS)

    def fig_rows(items: Sequence[plots.Figure]) -> list[dict[str, str]]:
        ordered = sorted(items, key=lambda f: (kind_order.index(f.kind), f.path.name))
        return [
            {
                "src": _link(f.path, html_dir) or f.path.as_posix(),
                "title": f.title,
                "caption": f.caption,
                "category": plots.KINDS[f.kind][0],
            }
            for f in ordered
        ]

    # Figures shown in a suite's own section, not again in its generic one.
    own = {"knowledge": ("knowledge", "scaling"), "evomerge": ("evomerge", "fitness")}
    sections = {k: dict(v) if v else None for k, v in sections.items()}
    placed: set[Path] = set()
    for section, (suite, kind) in own.items():
        if sections.get(section) is not None:
            mine = [f for f in figures if f.suite == suite and f.kind == kind]
            sections[section]["figures"] = fig_rows(mine)  # type: ignore[index]
            placed.update(f.path for f in mine)
    for section in ("service", "evomerge"):
        if sections.get(section) is not None:
            sections[section]["targets"] = [r for r in target_rows if r["suite"] == section]  # type: ignore[index]
    suites = []
    for name in suite_names:
        s_summary = [r for r in summary_rows if r["suite"] == name]
        suites.append(
            {
                "name": name,
                "anchor": f"suite-{name}",
                "summary": s_summary,
                "resources": [r for r in resource_rows if r["suite"] == name],
                "comparisons": [r for r in comp_rows if r["suite"] == name],
                "targets": [r for r in target_rows if r["suite"] == name],
                "figures": fig_rows(
                    [
                        f
                        for f in figures
                        if f.suite == name and f.kind != "trend" and f.path not in placed
                    ]
                ),
                "n_failed": sum(int(r["n_failed"]) for r in s_summary),
            }
        )
    table, overall = audit
    baseline_families = (
        sorted({str(f) for f in history.baseline["family"].dropna()})
        if history.baseline is not None and "family" in history.baseline
        else []
    )
    runs = []
    if not history.runs.empty:
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
    common_env, per_input = _environment(paths)
    failed = doc["failed_operations"]
    return {
        "doc": doc,
        "n_rows": len(frame),
        "n_inputs": len(paths),
        "n_failed": failed["total"],
        "failed_by_status": failed["by_status"],
        "by_design_by_status": failed.get("by_design", {}),
        "statistics": statistics,
        "counts": doc["verdict_counts"],
        "rules": rule_statements(statistics, doc["families"], baseline_families, history.run),
        "suites": suites,
        "sections": sections,
        "comparisons": comp_rows,
        "targets": target_rows,
        "unassigned_targets": [r for r in target_rows if not r["suite"]],
        "audit": _audit_rows(table, units),
        "overall": dict(overall),
        "overall_line": overall_line(
            overall, doc["audit"]["not_measured"], doc["audit"].get("not_measurable", ())
        ),
        "history": {
            "empty": history.empty,
            "run": [
                (k, json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v))
                for k, v in sorted((history.run or {}).items())
                if k not in _RUN_RULES
            ],
            "run_summary": [
                (k, json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else str(v))
                for k, v in sorted((run_summary(history.run) or {}).items())
                if v not in ("", None)
            ],
            "runs": runs,
            "baseline": _baseline_rows(history.baseline),
            "regressions": _table(
                history.regressions[[c for c in REGRESSION_SHOWN if c in history.regressions]]
                if history.regressions is not None
                and any(c in history.regressions for c in REGRESSION_SHOWN)
                else history.regressions
            ),
            "figures": fig_rows([f for f in figures if f.kind == "trend"]),
        },
        "environment": common_env,
        "per_input": per_input,
        "links": {k: v for k, v in links.items() if v},
    }


def format_summary(summary: pd.DataFrame) -> list[str]:
    """The summary as text lines for a terminal, with pyperf-style warnings under a case."""
    lines = []
    for s in _summary_rows(summary):
        lines.append(
            f"{s['where']} {s['case']} {s['metric']}: median {s['median']} CI {s['ci']}, "
            f"p90 {s['p90']}, p99 {s['p99']} (n={s['n_ok']}, failed={s['n_failed']})"
        )
        lines.extend(f"  WARNING: {w}" for w in s["warnings"])
    return lines
