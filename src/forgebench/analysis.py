"""From raw measurement rows to summary statistics and verdicts (through forgebench.stats).

Summaries use successful, non-warm-up rows; failures are counted beside them, never
turned into values. Every verdict names the rows it came from (suite, benchmark, case,
metric), so it can be traced back to the raw Parquet.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats

GROUP_KEYS = ["suite", "benchmark", "benchmark_version", "case", "params", "metric", "unit"]


def _stats_options(statistics: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {
        "confidence": float(statistics.get("confidence", 0.95)),
        "n_resamples": int(statistics.get("bootstrap_resamples", 2000)),
        "seed": int(seed),
    }


def summarize_measurements(
    frame: pd.DataFrame,
    statistics: Mapping[str, Any],
    *,
    seed: int,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """One row per suite/benchmark/case/metric: counts by status and the statistics core's
    summary of the successful, non-warm-up values.

    Deterministic for equal input (seeded bootstrap, sorted groups, no clock), so the
    report regenerates byte-identically from stored results. With ``executor`` (a process
    pool) the groups' summaries are computed in its workers: every group's bootstrap has
    its own generator seeded with ``seed``, so the numbers do not depend on where or in
    which order they are computed.
    """
    return start_summaries(frame, statistics, seed=seed, executor=executor)()


def start_summaries(
    frame: pd.DataFrame,
    statistics: Mapping[str, Any],
    *,
    seed: int,
    executor: Executor | None = None,
) -> Callable[[], pd.DataFrame]:
    """:func:`summarize_measurements` in two steps: the groups are counted and their
    summaries started (in ``executor``'s workers) now; the returned function waits for
    them and returns the table. The caller can do other work in between."""
    opts = _stats_options(statistics, seed)
    grouped = frame.groupby(GROUP_KEYS, sort=True, dropna=False)
    keys = grouped.size().index  # in iteration order, as ngroup() numbers the groups
    # Row positions of each group, in frame order within it (as iterating would give).
    codes = grouped.ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(keys) + 1))
    warmup = frame["warmup"].to_numpy(dtype=bool)
    is_ok = (frame["status"] == "ok").to_numpy(dtype=bool)
    status = frame["status"].to_numpy(dtype=object)
    value = frame["value"].to_numpy()
    higher = frame["higher_is_better"].to_numpy()
    rows = []
    samples: list[tuple[int, np.ndarray, str]] = []  # (row, ok values, unit) to summarize
    for g, key in enumerate(keys):
        pos = order[bounds[g] : bounds[g + 1]]
        warm = warmup[pos]
        ok, failed = is_ok[pos] & ~warm, ~is_ok[pos] & ~warm
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        row["higher_is_better"] = bool(higher[pos[0]])
        row["n_warmup"] = int(warm.sum())
        row["n_ok"] = int(ok.sum())
        row["n_failed"] = int(failed.sum())
        counts = Counter(s for s in status[pos[failed]] if not pd.isna(s))
        row["failures"] = json.dumps(dict(sorted(counts.items())), sort_keys=True)
        if row["n_ok"]:
            samples.append((len(rows), value[pos[ok]], row["unit"]))
        rows.append(row)
    pending = _start_summaries([(v, unit) for _, v, unit in samples], opts, executor)

    def table() -> pd.DataFrame:
        for (i, _, _), summary in zip(samples, pending(), strict=True):
            values = summary.as_dict()
            values["warnings"] = json.dumps(list(summary.warnings))
            rows[i].update(values)
        return pd.DataFrame(rows)

    return table


#: Values per task when summaries are computed in a process pool: large groups go alone,
#: small ones together, so the hand-over costs little beside the bootstrap's work.
_VALUES_PER_TASK = 20_000


def _start_summaries(
    samples: Sequence[tuple[np.ndarray, str]],
    opts: Mapping[str, Any],
    executor: Executor | None,
) -> Callable[[], list[stats.Summary]]:
    """``stats.summarize`` of each (values, unit): computed here and now, or submitted to
    ``executor``'s workers; the returned function gives the summaries in order."""
    if executor is None:
        done = _summarize_batch(samples, opts)
        return lambda: done
    batches: list[list[tuple[np.ndarray, str]]] = [[]]
    size = 0
    for sample in samples:
        if batches[-1] and size + len(sample[0]) > _VALUES_PER_TASK:
            batches.append([])
            size = 0
        batches[-1].append(sample)
        size += len(sample[0]) + 100  # + the per-sample cost of a small group
    futures = [executor.submit(_summarize_batch, batch, opts) for batch in batches if batch]
    return lambda: [summary for future in futures for summary in future.result()]


def _summarize_batch(
    samples: Sequence[tuple[np.ndarray, str]], opts: Mapping[str, Any]
) -> list[stats.Summary]:
    return [stats.summarize(values, unit=unit, **opts) for values, unit in samples]


class _Rows:
    """The non-warm-up rows of a suite/benchmark/case/metric, in frame order, from an
    index built once per frame (a mask over every row per lookup took 3 s for the
    default run's comparisons and targets)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        keys = ["suite", "benchmark", "case", "metric"]
        self.index = frame.groupby(keys, sort=False).indices if len(frame) else {}

    def __call__(self, suite: str, benchmark: str, case: str, metric: str) -> pd.DataFrame:
        positions = self.index.get((suite, benchmark, case, metric), np.empty(0, dtype=np.intp))
        sel = self.frame.iloc[positions]
        return sel[~sel["warmup"]]


def compare_cases(
    frame: pd.DataFrame,
    comparisons: Sequence[Mapping[str, Any]],
    statistics: Mapping[str, Any],
    *,
    seed: int,
) -> pd.DataFrame:
    """Each configured baseline/candidate pair within the run, through stats.compare.

    A pair with failed operations on either side gets the verdict "failed" (no speed
    verdict on partial work), with the failure counts beside it; a pair with no rows on
    a side is "undetermined". The comparisons of one suite form a family, corrected with
    Benjamini-Hochberg (stats.correct_family); the ``family`` column names it.
    """
    opts = _stats_options(statistics, seed)
    alpha = float(statistics.get("alpha", 0.05))
    rows: list[dict[str, Any]] = []
    results: list[stats.Comparison] = []
    select = _Rows(frame)
    for comp in comparisons:
        base = select(comp["suite"], comp["benchmark"], comp["baseline"], comp["metric"])
        cand = select(comp["suite"], comp["benchmark"], comp["candidate"], comp["metric"])
        if comp.get("method") == "survival":
            rows.append(_survival_row(comp, base, cand, statistics, opts))
            continue
        base_ok = base.loc[base["status"] == "ok", "value"].to_numpy()
        cand_ok = cand.loc[cand["status"] == "ok", "value"].to_numpy()
        row: dict[str, Any] = {"kind": "comparison", **{k: comp[k] for k in comp}}
        row["family"] = f"{comp['suite']} (within run)"
        row["n_failed_baseline"] = int((base["status"] != "ok").sum())
        row["n_failed_candidate"] = int((cand["status"] != "ok").sum())
        higher = bool(pd.concat([base, cand])["higher_is_better"].iloc[0]) if len(base) else False
        result = stats.compare(
            base_ok,
            cand_ok,
            higher_is_better=higher,
            threshold=float(statistics.get("practical_threshold", 0.05)),
            alpha=alpha,
            **opts,
        )
        failure = stats.failure_verdict(
            len(base_ok), row["n_failed_baseline"], len(cand_ok), row["n_failed_candidate"]
        )
        if failure is not None:
            result = dataclasses.replace(result, verdict=failure[0], reason=failure[1])
        rows.append(row)
        results.append(result)
    rows, survival = [r for r in rows if "family" in r], [r for r in rows if "family" not in r]
    for family in sorted({r["family"] for r in rows}):
        members = [i for i, r in enumerate(rows) if r["family"] == family]
        corrected = stats.correct_family([results[i] for i in members], alpha=alpha)
        for i, result in zip(members, corrected, strict=True):
            results[i] = result
    for row, result in zip(rows, results, strict=True):
        row.update(result.as_dict())
    return pd.DataFrame(rows + survival)


def _survival_row(
    comp: Mapping[str, Any],
    base: pd.DataFrame,
    cand: pd.DataFrame,
    statistics: Mapping[str, Any],
    opts: Mapping[str, Any],
) -> dict[str, Any]:
    """A time-to-event comparison: ``censored`` rows are runs that did not reach the event
    within their budget (value = the budget) and enter Kaplan-Meier medians; failed runs
    are left out and counted. Runs pair up by repetition (same seed on both sides)."""
    row: dict[str, Any] = {"kind": "comparison", **dict(comp)}
    usable = {"ok", "censored"}
    row["n_failed_baseline"] = int((~base["status"].isin(usable)).sum())
    row["n_failed_candidate"] = int((~cand["status"].isin(usable)).sum())
    b = base[base["status"].isin(usable)].set_index("repetition")
    c = cand[cand["status"].isin(usable)].set_index("repetition")
    paired = sorted(set(b.index) & set(c.index))
    b, c = b.loc[paired], c.loc[paired]
    result = stats.km_median_ratio_ci(
        b["value"].to_numpy(),
        (b["status"] == "ok").to_numpy(),
        c["value"].to_numpy(),
        (c["status"] == "ok").to_numpy(),
        paired=True,
        threshold=float(statistics.get("practical_threshold", 0.05)),
        **opts,
    )
    row.update(result.as_dict())
    row["method"] = "kaplan-meier"
    return row


def _statistic_fn(statistic: str) -> Any:
    """The named statistic as ``f(array, axis)``, the form stats.bootstrap_ci vectorises."""
    if statistic in ("median", "p50"):
        return np.median
    if statistic == "mean":
        return np.mean
    q = float(statistic[1:])
    return lambda a, axis: np.percentile(a, q, axis=axis)


def check_targets(
    targets: Sequence[Mapping[str, Any]],
    comparisons: pd.DataFrame,
    frame: pd.DataFrame,
    statistics: Mapping[str, Any],
    *,
    seed: int,
) -> pd.DataFrame:
    """Each target against its confidence interval: met, not met, inconclusive, not measured.

    ``median``/``p50`` and ``mean`` use the bootstrap CI of that statistic over the
    successful rows; ``improvement`` uses the comparison's CI. Percentiles beyond the
    median (p90..p99) use their bootstrap CI too. A target whose rows do not exist in
    this run (benchmark disabled or not run) is "not measured" and says so, as is a target
    that names no benchmark at all (the original's targets that nothing here measures).
    A comparison whose operations failed makes its target "not met".
    """
    opts = _stats_options(statistics, seed)
    select = _Rows(frame)
    rows = []
    for target in targets:
        row: dict[str, Any] = {"kind": "target", **dict(target)}
        low = high = estimate = None
        failed = False
        if "comparison" not in target and "benchmark" not in target:
            row["evidence"] = "no benchmark in this workflow measures it; left out of pass rates"
        elif target["statistic"] == "improvement":
            match = (
                comparisons[comparisons["name"] == target["comparison"]]
                if len(comparisons)
                else comparisons
            )
            failed = bool(len(match)) and match["verdict"].iloc[0] == "failed"
            if len(match) and match["method"].iloc[0] == "kaplan-meier":
                survival = match.iloc[0]
                result = stats.SurvivalComparison(
                    **{
                        f.name: survival[f.name]
                        for f in dataclasses.fields(stats.SurvivalComparison)
                    }
                )
                row["evidence"] = f"comparison {target['comparison']!r}: {survival['reason']}"
                row["estimate"] = survival["improvement"]
                row["ci_low"], row["ci_high"] = survival["improvement_ci"]
                row["verdict"] = stats.check_survival_target(
                    result, op=target["op"], threshold=target["threshold"]
                )
                rows.append(row)
                continue
            if len(match) and match["verdict"].iloc[0] not in ("undetermined", "failed"):
                estimate = float(match["improvement"].iloc[0])
                low, high = (float(x) for x in match["improvement_ci"].iloc[0])
            row["evidence"] = f"comparison {target['comparison']!r}" + (
                f": {match['reason'].iloc[0]}" if failed else ""
            )
        else:
            sel = select(target["suite"], target["benchmark"], target["case"], target["metric"])
            ok = sel.loc[sel["status"] == "ok", "value"].to_numpy()
            row["evidence"] = (
                f"{target['suite']}/{target['benchmark']} case {target['case']!r} "
                f"metric {target['metric']!r}: {len(ok)} ok rows, "
                f"{int((sel['status'] != 'ok').sum())} failed"
            )
            if target["statistic"] == "value":
                estimate, low, high = _value_with_interval(select, target, ok)
                if estimate is not None and low is None:
                    row["evidence"] += "; the job left its interval undecided (censored)"
                    row.update(estimate=estimate, ci_low=None, ci_high=None)
                    row["verdict"] = "inconclusive"
                    rows.append(row)
                    continue
                if estimate is not None and low == high:
                    row["evidence"] += "; one exact value, no interval"
            # One value has no interval: the target stays "not measured", never "met".
            elif len(ok) >= 2:
                fn = _statistic_fn(target["statistic"])
                estimate = float(fn(ok, axis=None))
                low, high = stats.bootstrap_ci(ok, fn, **opts)
        row["estimate"] = estimate
        row["ci_low"] = low
        row["ci_high"] = high
        row["verdict"] = stats.check_target(
            low, high, op=target["op"], threshold=target["threshold"], failed=failed
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _value_with_interval(
    select: _Rows, target: Mapping[str, Any], ok: Any
) -> tuple[float | None, float | None, float | None]:
    """A figure a job computed once, with the interval it computed (rows ``<metric>_ci_low``
    and ``<metric>_ci_high`` of the same case) or, without those, as an exact value: for
    counts and sizes (parameters, bits per weight), not for timings that vary. Interval
    rows the job wrote as failed or censored give ``(value, None, None)``: undecided."""
    if len(ok) != 1:
        return None, None, None
    value = float(ok[0])
    bounds = []
    undecided = False
    for suffix in ("_ci_low", "_ci_high"):
        sel = select(
            target["suite"], target["benchmark"], target["case"], target["metric"] + suffix
        )
        vals = sel.loc[sel["status"] == "ok", "value"].to_numpy()
        bounds.append(float(vals[0]) if len(vals) == 1 else None)
        undecided |= bool(len(sel)) and not len(vals)
    if undecided:  # interval rows written but failed or censored: no verdict either way
        return value, None, None
    if bounds[0] is None or bounds[1] is None:
        return value, value, value
    return value, bounds[0], bounds[1]


AUDIT_COLUMNS = [
    "optimization",
    "suite",
    "benchmark",
    "metric",
    "baseline",
    "candidate",
    "median_baseline",
    "median_candidate",
    "n_failed_baseline",
    "n_failed_candidate",
    "improvement",
    "improvement_ci_low",
    "improvement_ci_high",
    "comparison_verdict",
    "target",
    "target_verdict",
]


def audit_table(verdicts: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The optimization audit: every target on a comparison, with its evidence, and the
    original's overall rule over those targets (stats.overall_verdict).

    ``verdicts`` is compare_cases and check_targets concatenated (improvement_ci as a
    pair). A comparison without a target is not an audited optimization.
    """
    if verdicts.empty or "kind" not in verdicts:
        return pd.DataFrame(columns=AUDIT_COLUMNS), stats.overall_verdict([])
    comps = verdicts[verdicts["kind"] == "comparison"].set_index("name")
    on_comparison = verdicts.get("comparison", pd.Series(index=verdicts.index, dtype=object))
    targets = verdicts[(verdicts["kind"] == "target") & on_comparison.notna()]
    rows = []
    for t in targets.to_dict("records"):
        c = comps.loc[t["comparison"]] if t["comparison"] in comps.index else None
        ci = c["improvement_ci"] if c is not None else (None, None)
        rows.append(
            {
                "optimization": t["comparison"],
                "suite": None if c is None else c["suite"],
                "benchmark": None if c is None else c["benchmark"],
                "metric": None if c is None else c["metric"],
                "baseline": None if c is None else c["baseline"],
                "candidate": None if c is None else c["candidate"],
                "median_baseline": None if c is None else c["median_baseline"],
                "median_candidate": None if c is None else c["median_candidate"],
                "n_failed_baseline": None if c is None else int(c["n_failed_baseline"]),
                "n_failed_candidate": None if c is None else int(c["n_failed_candidate"]),
                "improvement": None if c is None else c["improvement"],
                "improvement_ci_low": ci[0] if ci is not None else None,
                "improvement_ci_high": ci[1] if ci is not None else None,
                "comparison_verdict": None if c is None else c["verdict"],
                "target": f"{t['name']} (improvement {t['op']} {t['threshold']:g})",
                "target_verdict": t["verdict"],
            }
        )
    table = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    return table, stats.overall_verdict(list(table["target_verdict"]))
