"""The service section: the original system's grade of every run beside the figures
behind it, and the load scenarios' own results (stress limit, spike, soak).

Why: a grade is a label; the mean latency, error share with its exact interval and
throughput next to it let a reader check it, and the SLA verdicts come from targets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench import plots
from forgebench.report.cells import Cells
from forgebench.report.format import finite, format_interval, format_value, fraction

_SERVICE_SCENARIO_METRICS = (
    *("max_rate_meeting_sla", "pre_spike_p95", "spike_p95", "recovery_time"),
    *("memory_growth", "soak_duration", "soak_needed_s", "server_peak_rss"),
    *("max_n_meeting_sla", "ops_per_minute", "failure_share"),  # connections, batch
)


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
            first("error_share_ci_low"), first("error_share_ci_high"), fraction
        )
        rows.append(
            {
                "where": f"{g['benchmark']}: {g['case']}",
                "run": f"{where} (repetition {g['repetition']})" if where else str(g["repetition"]),
                "grade": str(params.get("grade", "—")),
                "mean_latency": format_value(mean_latency.get(k), "s"),
                "error_share": f"{fraction(share)} {share_ci}" if finite(share) else "—",
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
                        "value": cells.text(key, lambda x, u=unit: format_value(x, u)),
                        "status": cells.status(key),
                        "verdict": str(params.get("sla_verdict", "—")),
                        "note": str(params.get("ended", "")) or _soak_note(params),
                    }
                )
    scaling = scaling_points(sel)
    if not rows and not scenario_rows and not scaling:
        return None
    return {"grades": rows, "scenarios": scenario_rows, "scaling": scaling}


def _soak_note(params: Mapping[str, Any]) -> str:
    """Which bound set ``soak_needed_s``: the RSS noise or one heap arena at the SLA rate."""
    if "ruled_by" not in params:
        return ""
    return (
        f"ruled by the {params['ruled_by']}: noise {params['noise_needed_s']:.0f} s (residual sd "
        f"{params['residual_sd_mb']:.2f} MB, lag-1 autocorrelation {params['lag1_autocorr']:.2f}),"
        f" heap arena {params['arena_floor_s']:.0f} s"
    )


#: service/scaling's figures per point: (metric, what the table and figure call it).
_SCALING_METRICS = (("throughput", "saturation throughput"), ("latency_p99", "p99 at fixed rate"))


def scaling_points(sel: pd.DataFrame) -> list[dict[str, Any]]:
    """service/scaling per point: mean of each repetition's throughput and p99 with its t
    interval over repetitions (``stats.mean_ci``), service and generator CPU, and the
    commonest bottleneck the job named; failed rows counted, not averaged."""
    from forgebench import stats

    rows = sel[sel["benchmark"] == "scaling"]
    out = []
    for case, group in rows.groupby("case", sort=False):
        thr = group[group["metric"] == "throughput"]
        if thr.empty:
            continue
        first = json.loads(thr["params"].iloc[0])
        point: dict[str, Any] = {
            "case": str(case),
            "axis": first["axis"],
            "x": int(first["workers"] if first["axis"] == "horizontal" else first["threads"]),
            "workers": int(first["workers"]),
            "threads": int(first["threads"]),
        }
        for metric, _ in _SCALING_METRICS:
            m = group[group["metric"] == metric]
            ok = m[m["status"].isin(["ok", "censored"])]["value"].to_numpy(dtype=float)
            low, high = stats.mean_ci(ok) if ok.size >= 2 else (math.nan, math.nan)
            point[metric] = {
                "mean": float(ok.mean()) if ok.size else math.nan,
                "low": low,
                "high": high,
                "n": int(ok.size),
                "failed": int(len(m) - ok.size),
                "censored": int((m["status"] == "censored").sum()),
            }
        for metric in ("service_cpu_percent", "generator_cpu_percent", "other_cpu_percent"):
            values = group[(group["metric"] == metric) & (group["status"] == "ok")]["value"]
            point[metric] = float(values.mean()) if len(values) else math.nan
        causes = [json.loads(p).get("bottleneck", "") for p in thr["params"]]
        point["bottleneck"] = max(set(causes), key=causes.count) if causes else ""
        point["text"] = {  # ">=": a censored p99 (timeouts reach it) is a lower bound
            metric: (
                (">= " if point[metric]["censored"] else "")
                + format_value(point[metric]["mean"], unit)
                + " "
                + format_interval(point[metric]["low"], point[metric]["high"],
                                  lambda x, u=unit: format_value(x, u))
                + f" (n={point[metric]['n']})"
            )
            for metric, unit in (("throughput", "requests/s"), ("latency_p99", "s"))
        }  # fmt: skip
        out.append(point)
    return sorted(out, key=lambda p: (p["axis"], p["x"]))


def plan_figures(
    section: Mapping[str, Any] | None, plots_dir: str | Path, jobs: list[plots.FigureJob]
) -> list[plots.Figure]:
    """service/scaling: saturation throughput and p99 against workers (horizontal) and
    threads per worker (vertical), means with their intervals; none without two points."""
    points = list((section or {}).get("scaling") or [])
    writer = plots._Writer(plots_dir, jobs)
    title = "service/scaling: throughput and p99 against workers and threads per worker"
    writer.add(
        "workers", "service", ["scaling"], title, _draw_scaling, points=points, title=title,
        n_points=len(points) if len(points) >= 2 else 0,
    )  # fmt: skip
    return writer.done()


def _draw_scaling(points: Sequence[Mapping[str, Any]], title: str) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.2), dpi=100)
    for ax, (metric, label) in zip(axes, _SCALING_METRICS, strict=True):
        scale = 1e3 if metric == "latency_p99" else 1.0
        for i, axis in enumerate(("horizontal", "vertical")):
            pts = sorted((p for p in points if p["axis"] == axis), key=lambda p: p["x"])
            if not pts:
                continue
            x = [p["x"] for p in pts]
            y = [p[metric]["mean"] * scale for p in pts]
            low = [p[metric]["low"] * scale for p in pts]
            high = [p[metric]["high"] * scale for p in pts]
            err = [
                [max(a - b, 0.0) if math.isfinite(b) else 0.0 for a, b in zip(y, low, strict=True)],
                [
                    max(b - a, 0.0) if math.isfinite(b) else 0.0
                    for a, b in zip(y, high, strict=True)
                ],
            ]
            name = "worker processes (one port)" if axis == "horizontal" else "threads, 1 worker"
            ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, color=f"C{i}", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p["x"] for p in points}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("workers or threads per worker")
        ax.set_ylabel(f"{label} ({'ms' if scale != 1.0 else 'requests/s'}), mean and CI")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig
