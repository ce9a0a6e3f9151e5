"""The calibration section: how often forgebench's own verdicts err, from the rows of
harness/statistics_calibration, with their intervals and the targets set on them.

Why: every verdict in the report leans on the promises of docs/verdicts.md (a called
change is rarely false, an interval covers as often as it says, the history check
neither cries wolf nor sleeps through a step). The calibration benchmark measures those
promises on synthetic data with a known truth; this section shows them compactly:

* comparisons: a matrix of scenarios (shape and size) by true effect, each cell the
  false-call rate where the effect is within the threshold and the detection rate where
  it is beyond it, with its Clopper-Pearson interval;
* coverage: each interval's Monte Carlo coverage by sample size, against the nominal level;
* histories (and any other part): cases as rows, metrics as columns.

Every cell carries the verdict of a target set on it. Rows are read generically (cases
as rows, metrics as columns, ``<metric>_ci_low``/``_ci_high`` rows as intervals), so a
new scenario or metric shows up without a change here; the two matrices are built from
the params each row carries and fall back to the generic table without them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from forgebench.report.cells import Cells, is_bound_metric
from forgebench.report.format import finite, format_interval, format_value, fraction

SUITE, BENCHMARK = "harness", "statistics_calibration"
#: Rows of a generic table shown before the rest is collapsed.
VISIBLE_ROWS = 15
_PART_TITLES = {
    "comparisons": "Comparisons: false calls and detection",
    "coverage": "Coverage of the intervals",
    "histories": "History checks: false alarms, spikes, steps and drift",
}


def _fmt(unit: str) -> Any:
    return fraction if unit == "fraction" else (lambda x: format_value(x, unit))


def _part(cells: Cells, case: str) -> str:
    metrics = sorted(cells.metrics(SUITE, BENCHMARK, case))
    params = cells.params((SUITE, BENCHMARK, case, metrics[0])) if metrics else {}
    part = params.get("part")
    if isinstance(part, str) and part:
        return part
    head = case.split("/", 1)[0]
    return {"compare": "comparisons", "history": "histories"}.get(head, head)


def _targets_by_cell(targets: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for t in targets:
        if t.get("suite") == SUITE and t.get("benchmark") == BENCHMARK:
            out[(str(t.get("case")), str(t.get("metric")))].append(dict(t))
    return out


def _cell(
    cells: Cells, case: str, metric: str, marks: Mapping[tuple[str, str], list[dict]]
) -> dict[str, Any]:
    key = (SUITE, BENCHMARK, case, metric)
    if not cells.has(key):
        return {"text": "", "verdict": "", "title": ""}
    unit = cells.unit(key)
    fmt = _fmt(unit)
    value = cells.value(key)
    low, high, _ = cells.interval(key)
    text = (
        f"{fmt(value)} {format_interval(low, high, fmt)}".removesuffix(" —")
        if finite(value)
        else cells.status(key)
    )
    targeted = marks.get((case, metric), [])
    verdict = targeted[0]["verdict"] if targeted else ""
    title = "; ".join(f"{t['name']}: {t['verdict']}" for t in targeted)
    return {"text": text, "verdict": verdict, "title": title}


def _generic(
    cells: Cells, cases: Sequence[str], marks: Mapping[tuple[str, str], list[dict]]
) -> dict[str, Any]:
    metrics = sorted(
        {m for c in cases for m in cells.metrics(SUITE, BENCHMARK, c) if not is_bound_metric(m)}
    )
    return {
        "columns": metrics,
        "rows": [
            {"label": case, "cells": [_cell(cells, case, m, marks) for m in metrics]}
            for case in cases
        ],
    }


def _number(params: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _comparison_matrix(
    cells: Cells, cases: Sequence[str], marks: Mapping[tuple[str, str], list[dict]]
) -> dict[str, Any] | None:
    """Scenario (shape, size) × true effect; within the threshold the false-call rate,
    beyond it the detection rate (a call in the wrong direction is counted false there
    too, and shown when it happened)."""
    grid: dict[tuple[str, float], dict[float, str]] = defaultdict(dict)
    thresholds = set()
    for case in cases:
        params = cells.params((SUITE, BENCHMARK, case, "false_call_rate"))
        effect = _number(params, "effect")
        size = _number(params, "n_per_side", "repetitions_per_side")
        shape = params.get("distribution")
        if effect is None or size is None or not isinstance(shape, str):
            return None
        thresholds.add(_number(params, "threshold"))
        grid[(shape, size)][effect] = case
    if len(thresholds) != 1 or None in thresholds:
        return None
    threshold = float(next(iter(thresholds)))  # type: ignore[arg-type]
    effects = sorted({e for row in grid.values() for e in row})
    columns = [
        f"{e:+.0%}: " + ("false calls" if abs(e) <= threshold + 1e-12 else "detected")
        for e in effects
    ]
    rows = []
    for shape, size in sorted(grid, key=lambda k: (k[0] == "repetitions", k[0], k[1])):
        unit = "repetitions" if shape == "repetitions" else "per side"
        row_cells = []
        for e in effects:
            case = grid[(shape, size)].get(e)
            if case is None:
                row_cells.append({"text": "", "verdict": "", "title": ""})
                continue
            within = abs(e) <= threshold + 1e-12
            cell = _cell(cells, case, "false_call_rate" if within else "detection_rate", marks)
            wrong = cells.value((SUITE, BENCHMARK, case, "false_call_rate"))
            if not within and finite(wrong) and wrong > 0:
                cell["text"] += f"; wrong way {fraction(wrong)}"
            row_cells.append(cell)
        rows.append({"label": f"{shape}, {size:g} {unit}", "cells": row_cells})
    return {"columns": columns, "rows": rows, "threshold": threshold}


def _coverage_matrix(
    cells: Cells, cases: Sequence[str], marks: Mapping[tuple[str, str], list[dict]]
) -> dict[str, Any] | None:
    """Interval (and its quantile or proportion) × sample size: the coverage with its
    interval, and how often the interval exists at all where not always."""
    grid: dict[str, dict[float, str]] = defaultdict(dict)
    nominal = set()
    for case in cases:
        metric = "coverage" if cells.has((SUITE, BENCHMARK, case, "coverage")) else "defined_share"
        params = cells.params((SUITE, BENCHMARK, case, metric))
        size = _number(params, "n", "n_per_side", "repetitions_per_side")
        interval = params.get("interval")
        if size is None or not isinstance(interval, str):
            return None
        nominal.add(_number(params, "confidence"))
        detail = next(
            (f"{k} = {params[k]:g}" for k in ("q", "p") if isinstance(params.get(k), int | float)),
            "repetitions per side"
            if "repetitions_per_side" in params
            else "values per side"
            if "n_per_side" in params
            else "",
        )
        grid[f"{interval}, {detail}" if detail else interval][size] = case
    sizes = sorted({s for row in grid.values() for s in row})
    rows = []
    for label in sorted(grid):
        row_cells = []
        for size in sizes:
            case = grid[label].get(size)
            if case is None:
                row_cells.append({"text": "", "verdict": "", "title": ""})
                continue
            cell = _cell(cells, case, "coverage", marks)
            defined = cells.value((SUITE, BENCHMARK, case, "defined_share"))
            covered = cells.value((SUITE, BENCHMARK, case, "coverage"))
            if finite(defined) and not finite(covered):
                cell["text"] = f"no interval at this n (exists in {fraction(defined)})"
            elif finite(defined) and defined < 1:
                cell["text"] += f"; exists in {fraction(defined)}"
            row_cells.append(cell)
        rows.append({"label": label, "cells": row_cells})
    level = next(iter(nominal)) if len(nominal) == 1 else None
    return {
        "columns": [f"n = {s:g}" for s in sizes],
        "rows": rows,
        "nominal": fraction(level) if level is not None else "",
    }


def calibration_section(
    cells: Cells, target_rows: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """The calibration tables (see the module docstring), None without its rows.

    ``targets`` are the configured targets' verdict records (suite, benchmark, case,
    metric, name, verdict); ``target_rows`` the same targets formatted for the table."""
    if BENCHMARK not in cells.benchmarks(SUITE):
        return None
    marks = _targets_by_cell(targets)
    by_part: dict[str, list[str]] = defaultdict(list)
    for case in cells.cases(SUITE, BENCHMARK):
        by_part[_part(cells, case)].append(case)
    parts = []
    for name in sorted(
        by_part, key=lambda p: (list(_PART_TITLES).index(p) if p in _PART_TITLES else 9, p)
    ):
        cases = by_part[name]
        matrix = None
        if name == "comparisons":
            matrix = _comparison_matrix(cells, cases, marks)
        elif name == "coverage":
            matrix = _coverage_matrix(cells, cases, marks)
        table = matrix or _generic(cells, cases, marks)
        trials = sorted(
            {
                int(t)
                for c in cases
                for m in cells.metrics(SUITE, BENCHMARK, c)
                if isinstance(t := cells.params((SUITE, BENCHMARK, c, m)).get("trials"), int)
            }
        )
        parts.append(
            {
                "name": name,
                "title": _PART_TITLES.get(name, name),
                "kind": "matrix" if matrix else "table",
                "n_cases": len(cases),
                "trials": ", ".join(map(str, trials)),
                **table,
            }
        )
    mine = [
        r
        for r in target_rows
        if (r.get("suite"), r.get("benchmark")) == (SUITE, BENCHMARK)
        or BENCHMARK in str(r.get("what", ""))
    ]
    return {
        "suite": SUITE,
        "parts": parts,
        "targets": mine,
        "n_met": sum(r["verdict"] == "met" for r in mine),
        "visible_rows": VISIBLE_ROWS,
    }
