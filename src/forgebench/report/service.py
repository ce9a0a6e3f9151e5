"""The service section: the original system's grade of every run beside the figures
behind it, and the load scenarios' own results (stress limit, spike, soak).

Why: a grade is a label; the mean latency, error share with its exact interval and
throughput next to it let a reader check it, and the SLA verdicts come from targets.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from forgebench.report.cells import Cells
from forgebench.report.format import finite, format_interval, format_value, fraction

_SERVICE_SCENARIO_METRICS = (
    *("max_rate_meeting_sla", "pre_spike_p95", "spike_p95", "recovery_time"),
    *("memory_growth", "soak_duration", "server_peak_rss"),
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
                        "note": str(params.get("ended", "")),
                    }
                )
    if not rows and not scenario_rows:
        return None
    return {"grades": rows, "scenarios": scenario_rows}
