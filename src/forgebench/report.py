"""Report v0: summary and verdict tables, latency CDFs and one HTML page.

Everything is computed from the raw Parquet files alone, so the report regenerates
without rerunning a benchmark, and the tables come out byte-identical for equal input.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from forgebench import analysis, plots, record
from forgebench.atomic import atomic_path, write_text_atomic
from forgebench.provenance import collect_provenance
from forgebench.runner import JOB_CASE

log = logging.getLogger(__name__)

_UNIT_SCALES = {"s": ((1e-6, "ns", 1e9), (1e-3, "µs", 1e6), (1.0, "ms", 1e3))}


def format_value(value: Any, unit: str) -> str:
    """A value with a readable unit (seconds scaled to ns/µs/ms), or an em dash if absent."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
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
    return f"{value:.4g} {unit}"


def _relative_to_results(path: str) -> str:
    """``.../raw/<suite>/<file>`` as ``raw/<suite>/<file>``: the same wherever results live."""
    parts = Path(path).parts
    return (
        Path(*parts[len(parts) - 1 - parts[::-1].index("raw") :]).as_posix()
        if "raw" in parts
        else path
    )


def _write_table(frame: pd.DataFrame, path: str | Path, inputs: Sequence[str]) -> None:
    """Write a derived table with its inputs in the metadata (no clock: reproducible)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {
        record.METADATA_KEY: json.dumps(
            {
                "schema_version": record.SCHEMA_VERSION,
                "kind": "summary",
                "inputs": [_relative_to_results(p) for p in inputs],
            },
            sort_keys=True,
        ).encode()
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _environment(paths: Sequence[str]) -> list[tuple[str, str]]:
    if not paths:
        return []
    prov = record.read_provenance(paths[0])
    keys = (
        "host",
        "slurm_node",
        "cpu_model",
        "cpu_count_logical",
        "memory_total_bytes",
        "gpus",
        "python",
        "git_commit",
        "git_dirty",
        "seed",
    )
    items = [(k, str(prov[k])) for k in keys if k in prov]
    items += [(f"package {k}", v) for k, v in sorted(prov.get("packages", {}).items())]
    return items


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


def _verdict_rows(verdicts: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for v in verdicts.to_dict("records"):
        if v["kind"] == "comparison":
            ci = v.get("improvement_ci")
            detail = (
                f"improvement {format_value(v.get('improvement'), 'fraction')} "
                f"[{format_value(ci[0], 'fraction')}, {format_value(ci[1], 'fraction')}], "
                f"speed-up {format_value(v.get('speedup'), 'x')}, "
                f"p(Mann-Whitney) {format_value(v.get('mannwhitney_p'), '')}; "
                f"failed {int(v['n_failed_baseline'])} / {int(v['n_failed_candidate'])}; "
                f"{v.get('reason', '')}"
                if ci is not None and len(ci) == 2
                else str(v.get("reason", ""))
            )
            what = (
                f"{v['candidate']} vs {v['baseline']} "
                f"({v['suite']}/{v['benchmark']}, {v['metric']})"
            )
        else:
            detail = (
                f"estimate {format_value(v.get('estimate'), '')} "
                f"CI [{format_value(v.get('ci_low'), '')}, {format_value(v.get('ci_high'), '')}] "
                f"{v['op']} {v['threshold']}; {v['evidence']}"
            )
            what = f"target: {v['statistic']} {v['op']} {v['threshold']}"
        rows.append(
            {
                "name": v["name"],
                "kind": v["kind"],
                "what": what,
                "verdict": v["verdict"],
                "detail": detail,
            }
        )
    return rows


def _summary_rows(summary: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for s in summary.to_dict("records"):
        if s["case"] == JOB_CASE:  # shown per job in the resources table
            continue
        unit = s["unit"]
        has = s["n_ok"] > 0
        rows.append(
            {
                "where": f"{s['suite']}/{s['benchmark']} v{s['benchmark_version']}",
                "case": s["case"],
                "metric": s["metric"],
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
) -> None:
    """Read every raw table, write summary and verdict Parquet, plots and index.html.

    Inputs are read in sorted order, so the same stored results give the same rows in
    the same order, and so the same seeded bootstrap intervals, however they are listed.
    """
    paths = sorted(str(p) for p in measurement_paths)
    frame = record.concat_measurements(paths)
    log.info("read %d rows from %d files", len(frame), len(paths))
    summary = analysis.summarize_measurements(frame, statistics, seed=seed)
    compared = analysis.compare_cases(frame, comparisons, statistics, seed=seed)
    checked = analysis.check_targets(targets, compared, frame, statistics, seed=seed)
    verdicts = pd.concat([compared, checked], ignore_index=True)
    if provenance_path is not None:  # where and when this report ran: kept out of the tables
        prov = collect_provenance(seed=seed, code_dir=code_dir)
        prov["inputs"] = [_relative_to_results(p) for p in paths]
        write_text_atomic(provenance_path, json.dumps(prov, indent=2, sort_keys=True) + "\n")
    _write_table(summary, summary_path, paths)
    _write_table(_flatten(verdicts), verdicts_path, paths)
    figures = plots.latency_cdfs(frame, plots_dir)
    html_dir = Path(html_path).parent
    template = jinja2.Environment(
        loader=jinja2.PackageLoader("forgebench", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    ).get_template("report.html.j2")
    text = template.render(
        verdicts=_verdict_rows(verdicts),
        summary=_summary_rows(summary),
        figures=[Path(f).resolve().relative_to(html_dir.resolve()).as_posix() for f in figures],
        environment=_environment(paths),
        resources=_resource_rows(paths),
        inputs=paths,
        statistics=statistics,
        n_rows=len(frame),
        n_failed=int((frame["status"] != "ok").sum()) if len(frame) else 0,
        escape=html.escape,
    )
    write_text_atomic(html_path, text)
    log.info("report written to %s", html_path)


def _flatten(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Tuples (CIs) as two columns, so the verdict table has plain Parquet types."""
    out = verdicts.copy()
    for col in [c for c in out.columns if c.endswith("_ci")]:
        pairs = out[col].map(
            lambda v: v if isinstance(v, (tuple, list)) and len(v) == 2 else (None, None)
        )
        out[f"{col}_low"] = [p[0] for p in pairs]
        out[f"{col}_high"] = [p[1] for p in pairs]
        out = out.drop(columns=col)
    return out


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
