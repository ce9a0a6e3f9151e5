"""The summary table as cells: (suite, benchmark, case, metric) -> value, interval, status.

Why: every section shows figures a job recorded once (an accuracy, a ratio, a size) next
to their recorded interval rows (``<metric>_ci_low``/``_ci_high``), and those rows live
in the summary as metrics of their own. Cells pairs them back up, so no section has to.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pandas as pd
from scipy import stats as sps

from forgebench.report.format import finite, format_interval
from forgebench.runner import is_job_case

Key = tuple[str, str, str, str]


def sibling_bounds(metric: str) -> list[tuple[str, str]]:
    """Names of the rows that may hold ``metric``'s interval: ``<m>_ci_low``/``_ci_high``
    (``<m>_mean``'s are ``<m>_ci_low``), or ``<m>.ci_low`` as the suite scores write it."""
    bases = [metric] + ([metric[: -len("_mean")]] if metric.endswith("_mean") else [])
    return [pair for b in bases for pair in ((f"{b}_ci_low", f"{b}_ci_high"),)] + [
        (f"{b}.ci_low", f"{b}.ci_high") for b in bases
    ]


def is_bound_metric(metric: str) -> bool:
    """True for rows that hold another metric's interval or standard error."""
    return metric.endswith(("_ci_low", "_ci_high", ".ci_low", ".ci_high", "_stderr"))


class Cells:
    """The summary table by (suite, benchmark, case, metric), for the suites' own tables:
    a value (the median of the successful rows: the value itself for a single row), its
    interval and what failed. Where params split one metric into several summary rows,
    the first with a value stands for it and failures are counted over all."""

    def __init__(self, summary: pd.DataFrame, confidence: float = 0.95) -> None:
        self.confidence = confidence
        self.rows: dict[Key, dict[str, Any]] = {}
        self.failures: dict[Key, Counter] = {}
        self.by_design: dict[Key, Counter] = {}
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

    def suites(self) -> list[str]:
        return sorted({k[0] for k in self.rows})

    def benchmarks(self, suite: str) -> list[str]:
        return sorted({k[1] for k in self.rows if k[0] == suite})

    def cases(self, suite: str, benchmark: str) -> list[str]:
        return sorted({k[2] for k in self.rows if k[:2] == (suite, benchmark)})

    def metrics(self, suite: str, benchmark: str, case: str | None = None) -> set[str]:
        return {k[3] for k in self.rows if k[:2] == (suite, benchmark) and case in (None, k[2])}

    def has(self, key: Key) -> bool:
        return key in self.rows

    def value(self, key: Key) -> float:
        row = self.rows.get(key)
        return float(row["median"]) if row is not None and row["n_ok"] > 0 else math.nan

    def unit(self, key: Key) -> str:
        row = self.rows.get(key)
        return str(row["unit"]) if row is not None else ""

    def params(self, key: Key) -> dict[str, Any]:
        row = self.rows.get(key)
        return json.loads(row["params"]) if row is not None else {}

    def status(self, key: Key) -> str:
        """ "ok" when the metric has a value, else its failures ("unavailable: 1"),
        "not run" when there is no row."""
        if key not in self.rows:
            return "not run"
        if self.rows[key]["n_ok"] > 0:
            return "ok"
        failed = [f"{s}: {n}" for s, n in sorted(self.failures[key].items())]
        planned = [f"{s}: {n}" for s, n in sorted(self.by_design.get(key, {}).items())]
        return ", ".join(failed + planned) or "no value"

    def interval(self, key: Key) -> tuple[float, float, str]:
        """(low, high, how): the metric's own interval rows, else value ± z·stderr from a
        ``<metric>_stderr`` row, else the order-statistic CI of the median over repeated
        values; NaN bounds and "" when there is none."""
        suite, benchmark, case, metric = key
        for low_name, high_name in sibling_bounds(metric):
            low = self.value((suite, benchmark, case, low_name))
            high = self.value((suite, benchmark, case, high_name))
            if finite(low) and finite(high):
                return low, high, "recorded interval"
        value = self.value(key)
        stderr = self.value((suite, benchmark, case, f"{metric}_stderr"))
        if finite(value) and finite(stderr):
            z = float(sps.norm.ppf(0.5 + self.confidence / 2))
            low, high = value - z * stderr, value + z * stderr
            if self.unit(key) == "fraction":
                low, high = max(low, 0.0), min(high, 1.0)
            return low, high, "± z·stderr"
        row = self.rows.get(key)
        if row is not None and row["n_ok"] >= 2 and finite(row.get("ci_low")):
            return float(row["ci_low"]), float(row["ci_high"]), "order statistics"
        return math.nan, math.nan, ""

    def text(self, key: Key, fmt: Any) -> str:
        """``value [low, high]`` (the interval only where there is one), or the failures."""
        value = self.value(key)
        if not finite(value):
            return self.status(key)
        low, high, _ = self.interval(key)
        shown = fmt(value)
        return f"{shown} {format_interval(low, high, fmt)}" if finite(low) else shown
