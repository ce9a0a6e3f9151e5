"""The report: summary and verdict tables, figures, index.html, summary.md and summary.json.

Everything is computed from stored Parquet alone (the raw tables, their resource samples
and, when the history rule has run, the stored history), so the report regenerates
without rerunning a benchmark. The tables and the two summaries carry no clock and are
built from sorted input with seeded bootstraps, so equal input gives equal bytes.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from forgebench import analysis, plots, record
from forgebench.atomic import write_text_atomic
from forgebench.provenance import collect_provenance
from forgebench.runner import is_job_case

log = logging.getLogger(__name__)

SUMMARY_SCHEMA_VERSION = 1
_UNIT_SCALES = {"s": ((1e-6, "ns", 1e9), (1e-3, "µs", 1e6), (1.0, "ms", 1e3))}
_STATISTICS_DEFAULTS = {
    "confidence": 0.95,
    "bootstrap_resamples": 2000,
    "practical_threshold": 0.05,
    "alpha": 0.05,
}
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
    *("n_failed_candidate", "mannwhitney_p", "welch_p", "effect_size", "significant"),
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
        key = (
            str(bench.get("suite", Path(path).parent.name)),
            str(bench.get("name", Path(path).name.split(".")[0])),
        )
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
    started = rows["started_at"].min() if len(rows) else pd.NaT
    info = {
        "run_id": run_id,
        "started_at": started,
        "n_rows": len(rows),
        "n_failed": int((rows["status"] != "ok").sum()),
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
        "p": format_value(v.get("mannwhitney_p"), ""),
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


def overall_line(overall: Mapping[str, Any], not_measured: Sequence[str]) -> str:
    """The audit's overall verdict in one sentence, naming the targets left out of it."""
    share = overall["share_met"]
    text = (
        f"Overall: {overall['verdict']}. {overall['met']} of {overall['measured']} measured "
        f"targets met"
        + (f" ({share:.0%})" if _finite(share) else "")
        + f"; PASSED needs at least {overall['pass_share']:.0%} met, and inconclusive counts "
        "as not met."
    )
    if not_measured:
        return text + f" Not measured, left out of the share: {', '.join(not_measured)}."
    return text + " Every audited target was measured."


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
                "p": format_value(b.get("p_adjusted", b.get("mannwhitney_p")), ""),
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
    threshold = float(statistics.get("practical_threshold", 0.05))
    alpha = float(statistics.get("alpha", 0.05))
    confidence = float(statistics.get("confidence", 0.95))
    resamples = int(statistics.get("bootstrap_resamples", 2000))
    fams = ", ".join(f"“{f}”" for f in families) or "none in this run"
    base_fams = ", ".join(f"“{f}”" for f in baseline_families)
    rules = [
        (
            "Comparison",
            f"A candidate is an improvement (or a regression) only when its median is better "
            f"(or worse) than the baseline's by more than the practical threshold of "
            f"{threshold:.0%} and the difference is significant: two-sided Mann-Whitney U "
            f"p < {alpha:g} where the sample sizes let the test reach that level, otherwise "
            f"the {confidence:.0%} bootstrap CI of the improvement ({resamples} seeded "
            "resamples) excludes 0. Otherwise “no significant change”; “undetermined” when "
            "the data cannot support a ratio (an empty side, too few values, a non-positive "
            "median).",
        ),
        (
            "Failed",
            "A comparison with any failed operation on either side (status other than ok: "
            "timeout, error, mismatch, ...) is “failed”: no speed verdict on partial work, "
            "since timings of the survivors would reward failing. Its target is “not met”. "
            "Failed operations are counted, never turned into values.",
        ),
        (
            "Target",
            f"A target is met only when its whole {confidence:.0%} confidence interval "
            "satisfies it, not met when the whole interval violates it (or its comparison "
            "failed), inconclusive when the interval straddles the threshold, and not "
            "measured when there is no interval (benchmark not run, a single value, or no "
            "benchmark measures it).",
        ),
        (
            "Families",
            "Comparisons decided by Mann-Whitney U within one family are corrected with "
            f"Benjamini-Hochberg; an improvement or regression stands only if its adjusted p "
            f"< {alpha:g}. Families in this run: {fams}."
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
            "met; inconclusive counts as not met; targets not measured are left out of the "
            "share and listed.",
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
    failed = frame[frame["status"] != "ok"] if len(frame) else frame
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
) -> dict[str, Any]:
    """Read every stored table; write summary and verdict Parquet, figures, index.html,
    summary.md and summary.json (beside index.html unless given); return the summary.

    Inputs are read in sorted order, so the same stored results give the same rows in
    the same order, and so the same seeded bootstrap intervals, however they are listed.
    Resource samples default to the ``.resources.parquet`` beside each raw table; the
    history inputs are optional and the report says "no history yet" without them.
    """
    paths = sorted(str(p) for p in measurement_paths)
    html_path = Path(html_path)
    html_dir = html_path.parent
    markdown_path = Path(markdown_path or html_dir / "summary.md")
    json_path = Path(json_path or html_dir / "summary.json")
    frame = record.concat_measurements(paths)
    log.info("read %d rows from %d files", len(frame), len(paths))
    summary = analysis.summarize_measurements(frame, statistics, seed=seed)
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
    confidence = float(statistics.get("confidence", 0.95))
    history = load_history(
        run_info_path=run_info_path,
        baseline_comparison_path=baseline_comparison_path,
        regressions_path=regressions_path,
        history_dir=history_dir,
        confidence=confidence,
    )
    figures = _figures(
        frame, summary, compared, paths, resource_paths, history, statistics, seed, plots_dir
    )
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
        links={
            "summary.md": _link(markdown_path, html_dir),
            "summary.json": _link(json_path, html_dir),
            "provenance.json": _link(provenance_path, html_dir) if provenance_path else None,
        },
    )
    write_text_atomic(markdown_path, _jinja(False).get_template("summary.md.j2").render(**context))
    text = _jinja(True).get_template("report.html.j2").render(**context)
    write_text_atomic(html_path, text)
    log.info("report written to %s (%d figures)", html_path, len(figures))
    return doc


def _link(path: str | Path | None, html_dir: Path) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(html_dir.resolve()).as_posix()
    except ValueError:
        return None


def _figures(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    compared: pd.DataFrame,
    paths: Sequence[str],
    resource_paths: Sequence[str] | None,
    history: History,
    statistics: Mapping[str, Any],
    seed: int,
    plots_dir: str | Path,
) -> list[plots.Figure]:
    figures = [
        *plots.latency_cdfs(frame, plots_dir),
        *plots.percentile_bars(summary, plots_dir),
        *plots.comparison_boxes(frame, compared, plots_dir),
        *plots.resource_timelines(_resource_tables(paths, resource_paths), plots_dir),
        *plots.accuracy_plots(
            frame,
            plots_dir,
            confidence=float(statistics.get("confidence", 0.95)),
            n_resamples=int(statistics.get("bootstrap_resamples", 2000)),
            seed=seed,
        ),
        *plots.compression_plots(summary, plots_dir),
    ]
    if not history.medians.empty:
        figures += plots.history_trends(
            history.medians,
            detected_changes(history.regressions),
            plots_dir,
            highlight=history.marks,
        )
    plots.remove_stale(plots_dir, figures)
    return figures


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
                "figures": fig_rows([f for f in figures if f.suite == name and f.kind != "trend"]),
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
        "statistics": statistics,
        "counts": doc["verdict_counts"],
        "rules": rule_statements(statistics, doc["families"], baseline_families, history.run),
        "suites": suites,
        "comparisons": comp_rows,
        "targets": target_rows,
        "unassigned_targets": [r for r in target_rows if not r["suite"]],
        "audit": _audit_rows(table, units),
        "overall": dict(overall),
        "overall_line": overall_line(overall, doc["audit"]["not_measured"]),
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
