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
from forgebench.stats import vocabulary as V
from forgebench.stats.defaults import Settings

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
    is_failure = frame["status"].map(V.is_failure).to_numpy(dtype=bool)
    status = frame["status"].to_numpy(dtype=object)
    value = frame["value"].to_numpy()
    higher = frame["higher_is_better"].to_numpy()
    rows = []
    samples: list[tuple[int, np.ndarray, str]] = []  # (row, ok values, unit) to summarize
    for g, key in enumerate(keys):
        pos = order[bounds[g] : bounds[g + 1]]
        warm = warmup[pos]
        ok, failed = is_ok[pos] & ~warm, is_failure[pos] & ~warm
        row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
        row["higher_is_better"] = bool(higher[pos[0]])
        row["n_warmup"] = int(warm.sum())
        row["n_ok"] = int(ok.sum())
        row["n_failed"] = int(failed.sum())
        by_design = ~is_ok[pos] & ~is_failure[pos] & ~warm
        row["n_by_design"] = int(by_design.sum())
        planned = Counter(s for s in status[pos[by_design]] if not pd.isna(s))
        row["by_design"] = json.dumps(dict(sorted(planned.items())), sort_keys=True)
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


def _failure_count(rows: pd.DataFrame) -> int:
    """Failed operations among rows: errors, timeouts, mismatches (not by-design statuses)."""
    return int(sum(V.is_failure(s) for s in rows["status"]))


def _units(rows: pd.DataFrame) -> np.ndarray | None:
    """Repetition labels of the ok rows, or None when every row is its own repetition
    within one repetition (a single run of samples)."""
    reps = rows["repetition"].to_numpy()
    return reps if len(set(reps.tolist())) > 1 else None


def foreign_load(select: _Rows, suite: str, benchmark: str) -> float | None:
    """Mean CPU of other processes while the benchmark's job ran (percent of one core),
    from its job row; None for tables written before the sampler measured it."""
    rows = select(suite, benchmark, "job", "foreign_cpu_percent")
    ok = rows.loc[rows["status"] == "ok", "value"]
    return float(ok.max()) if len(ok) else None


def _not_measurable(entry: Mapping[str, Any]) -> str | None:
    """The declared reason a target or comparison cannot be decided at this budget."""
    spec = entry.get("not_measurable")
    if not spec:
        return None
    if isinstance(spec, str):
        return spec
    needs = f"; needs {spec['needs']}" if spec.get("needs") else ""
    if spec.get("noise_sd_log"):
        n = stats.units_needed(
            float(spec["noise_sd_log"]),
            threshold=float(spec.get("threshold", 0.05)),
            sides=1 if "statistic" in entry else 2,
        )
        units = spec.get("units", "repetitions")
        needs += (
            f"; needs about {n} {units}{' a side' if 'statistic' not in entry else ''} at the "
            f"measured noise (sd of log {float(spec['noise_sd_log']):g}, 80% power)"
        )
    return f"{spec.get('reason', 'declared in config')}{needs}"


def compare_cases(
    frame: pd.DataFrame,
    comparisons: Sequence[Mapping[str, Any]],
    statistics: Mapping[str, Any],
    *,
    seed: int,
) -> pd.DataFrame:
    """Each configured baseline/candidate pair within the run, through stats.compare_family.

    The unit of replication is the repetition when a case has several (per-repetition
    medians, paired when both cases share repetition ids); otherwise the rows. Failed
    operations (errors, timeouts, mismatches) are judged against the error budget by
    stats.failure_check; by-design rows (skipped, unavailable, censored) are neither
    values nor failures. The comparisons of one suite form a family (column
    ``family``). A comparison declared ``not_measurable`` in config keeps that verdict.
    """
    settings = Settings.from_config(statistics)
    rows: list[dict[str, Any]] = []
    members: list[tuple[int, dict[str, Any]]] = []
    select = _Rows(frame)
    for comp in comparisons:
        base = select(comp["suite"], comp["benchmark"], comp["baseline"], comp["metric"])
        cand = select(comp["suite"], comp["benchmark"], comp["candidate"], comp["metric"])
        if comp.get("method") == "survival":
            rows.append(_survival_row(comp, base, cand, settings, seed))
            continue
        row: dict[str, Any] = {"kind": "comparison", **{k: comp[k] for k in comp}}
        row["family"] = f"{comp['suite']} (within run)"
        row["n_failed_baseline"] = _failure_count(base)
        row["n_failed_candidate"] = _failure_count(cand)
        row["n_by_design_baseline"] = int(base["status"].isin(V.BY_DESIGN_STATUSES).sum())
        row["n_by_design_candidate"] = int(cand["status"].isin(V.BY_DESIGN_STATUSES).sum())
        b_ok, c_ok = base[base["status"] == "ok"], cand[cand["status"] == "ok"]
        higher = bool(pd.concat([base, cand])["higher_is_better"].iloc[0]) if len(base) else False
        b_units, c_units = _units(b_ok), _units(c_ok)
        if (b_units is None) != (c_units is None):  # one side has repetitions: label both
            b_units, c_units = b_ok["repetition"].to_numpy(), c_ok["repetition"].to_numpy()
        kwargs = {
            "baseline": b_ok["value"].to_numpy(),
            "candidate": c_ok["value"].to_numpy(),
            "higher_is_better": higher,
            "threshold": settings.threshold(comp["suite"], comp["benchmark"], comp["metric"]),
            "alpha": settings.alpha,
            "baseline_units": b_units,
            "candidate_units": c_units,
            "failures": (row["n_failed_baseline"], row["n_failed_candidate"]),
            "error_budget": float(comp.get("error_budget", settings.error_budget)),
            "min_units": settings.min_n("comparison"),
        }
        reason = _not_measurable(comp)
        if reason is not None:
            row.update(verdict=V.NOT_MEASURABLE, reason=f"declared before the run: {reason}")
        else:
            members.append((len(rows), kwargs))
        rows.append(row)
    for row in rows:
        load = foreign_load(select, row["suite"], row["benchmark"])
        row["foreign_cpu_percent"] = load
        row["noisy"] = bool(load is not None and load > settings.noisy_foreign_cpu_percent)
    families: dict[str, list[int]] = {}
    for i, _ in members:
        families.setdefault(rows[i]["family"], []).append(i)
    by_row = dict(members)
    for family in sorted(families):
        idx = families[family]
        results = stats.compare_family(
            [by_row[i] for i in idx], alpha=settings.alpha, confidence=settings.confidence
        )
        for i, result in zip(idx, results, strict=True):
            rows[i].update(result.as_dict())
    return pd.DataFrame(rows)


def _survival_row(
    comp: Mapping[str, Any],
    base: pd.DataFrame,
    cand: pd.DataFrame,
    settings: Settings,
    seed: int,
) -> dict[str, Any]:
    """A time-to-event comparison: ``censored`` rows are runs that did not reach the event
    within their budget (value = the budget) and enter Kaplan-Meier medians; failed runs
    are left out and counted. Runs pair up by repetition (same seed on both sides).
    Fewer paired runs than statistics.min_units.survival: inconclusive."""
    row: dict[str, Any] = {"kind": "comparison", **dict(comp)}
    usable = {"ok", "censored"}
    row["n_failed_baseline"] = _failure_count(base)
    row["n_failed_candidate"] = _failure_count(cand)
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
        threshold=settings.threshold(comp["suite"], comp["benchmark"], comp["metric"]),
        confidence=settings.confidence,
        n_resamples=settings.bootstrap_resamples,
        seed=seed,
        min_runs=settings.min_n("survival"),
    )
    row.update(result.as_dict())
    row["method"] = "kaplan-meier"
    reason = _not_measurable(comp)
    failure, failure_text, _ = stats.failure_check(
        len(b), row["n_failed_baseline"], len(c), row["n_failed_candidate"],
        error_budget=float(comp.get("error_budget", settings.error_budget)),
        alpha=settings.alpha, confidence=settings.confidence,
    )  # fmt: skip
    if reason is not None:
        row.update(verdict=V.NOT_MEASURABLE, reason=f"declared before the run: {reason}")
    elif failure == V.FAILED:
        row.update(
            verdict=V.FAILED,
            reason=f"{failure_text}; no verdict on the runs that survived",
            improvement=float("nan"),
            improvement_ci=(float("nan"), float("nan")),
        )
    elif failure == V.INCONCLUSIVE:
        row.update(verdict=V.INCONCLUSIVE, reason=f"{failure_text}; {row['reason']}")
    elif failure_text:
        row["reason"] = f"{row['reason']}; {failure_text}"
    return row


def check_targets(
    targets: Sequence[Mapping[str, Any]],
    comparisons: pd.DataFrame,
    frame: pd.DataFrame,
    statistics: Mapping[str, Any],
    *,
    seed: int,
) -> pd.DataFrame:
    """Each target against its interval, with its failures against the error budget.

    ``median``/``pNN`` use order-statistic intervals over rows (or, with repetitions,
    a t interval over per-repetition values), ``mean`` a t interval; ``improvement`` uses
    the comparison's interval; ``value`` a job's own interval rows. A target whose rows
    do not exist is "not measured"; one declared ``not_measurable`` in config is "not
    measurable at this budget" whatever its rows say. A failed comparison makes its
    target "not met"; a case's own failures over the error budget make its target
    "not met" (stats.with_failures).
    """
    del seed  # every interval here is exact or distribution-free: nothing is drawn
    settings = Settings.from_config(statistics)
    select = _Rows(frame)
    rows = []
    for target in targets:
        row: dict[str, Any] = {"kind": "target", **dict(target)}
        declared = _not_measurable(target)
        if declared is not None:
            row.update(
                verdict=V.NOT_MEASURABLE,
                evidence=f"declared before the run: {declared}",
                estimate=None,
                ci_low=None,
                ci_high=None,
            )
            rows.append(row)
            continue
        if "comparison" not in target and "benchmark" not in target:
            row["evidence"] = "no benchmark in this workflow measures it; left out of pass rates"
            row.update(estimate=None, ci_low=None, ci_high=None, verdict=V.NOT_MEASURED)
        elif target["statistic"] == "improvement":
            row.update(_improvement_target(target, comparisons, settings))
        else:
            row.update(_case_target(target, select, settings))
        rows.append(row)
    return pd.DataFrame(rows)


def _improvement_target(
    target: Mapping[str, Any], comparisons: pd.DataFrame, settings: Settings
) -> dict[str, Any]:
    """A target on a comparison's improvement, read off the comparison's own interval,
    with the candidate's failures against the error budget (stats.with_failures)."""
    budget = float(target.get("error_budget", settings.error_budget))
    match = (
        comparisons[comparisons["name"] == target["comparison"]]
        if len(comparisons) and "name" in comparisons
        else comparisons.iloc[0:0]
    )
    out: dict[str, Any] = {"estimate": None, "ci_low": None, "ci_high": None}
    if not len(match):
        out.update(evidence=f"comparison {target['comparison']!r}: no rows", verdict=V.NOT_MEASURED)
        return out
    comp = match.iloc[0]
    out["evidence"] = f"comparison {target['comparison']!r}: {comp['reason']}"
    if comp["verdict"] == V.FAILED:
        out["verdict"] = V.NOT_MET
        return out
    if comp["verdict"] == V.NOT_MEASURABLE:
        out["verdict"] = V.NOT_MEASURABLE
        return out
    if comp.get("method") == "kaplan-meier":
        result = stats.SurvivalComparison(
            **{f.name: comp[f.name] for f in dataclasses.fields(stats.SurvivalComparison)}
        )
        out["estimate"] = comp["improvement"]
        out["ci_low"], out["ci_high"] = comp["improvement_ci"]
        verdict = stats.check_survival_target(
            result, op=target["op"], threshold=target["threshold"]
        )
        out["verdict"] = V.INCONCLUSIVE if comp["verdict"] == V.INCONCLUSIVE else verdict
        return out
    if comp["verdict"] == V.UNDETERMINED:
        out["verdict"] = V.NOT_MEASURED
        return out
    low, high = (float(x) for x in comp["improvement_ci"])
    out.update(estimate=float(comp["improvement"]), ci_low=low, ci_high=high)
    verdict = stats.check_target(low, high, op=target["op"], threshold=target["threshold"])
    failed = int(comp.get("n_failed_candidate") or 0)
    total = failed + int(comp.get("n_candidate") or 0)
    verdict, failure_text = stats.with_failures(
        verdict, failed, total, error_budget=budget, confidence=settings.confidence
    )
    if failure_text:
        out["evidence"] += f"; candidate: {failure_text}"
    out["verdict"] = verdict
    return out


def _case_target(target: Mapping[str, Any], select: _Rows, settings: Settings) -> dict[str, Any]:
    """A target on one case's rows: its statistic's interval, then its failures."""
    sel = select(target["suite"], target["benchmark"], target["case"], target["metric"])
    ok_rows = sel[sel["status"] == "ok"]
    ok = ok_rows["value"].to_numpy()
    n_failed = _failure_count(sel)
    n_censored = int((sel["status"] == "censored").sum())
    evidence = (
        f"{target['suite']}/{target['benchmark']} case {target['case']!r} "
        f"metric {target['metric']!r}: {len(ok)} ok rows, {n_failed} failed"
        + (f", {n_censored} censored" if n_censored else "")
    )
    out: dict[str, Any] = {"estimate": None, "ci_low": None, "ci_high": None}
    if not len(sel):
        out.update(evidence=evidence + "; no rows in this run", verdict=V.NOT_MEASURED)
        return out
    if target["statistic"] == "value":
        estimate, low, high = _value_with_interval(select, target, ok)
        if estimate is not None and low is None:
            out.update(
                estimate=estimate,
                evidence=evidence + "; the job left its interval undecided (censored)",
                verdict=V.INCONCLUSIVE,
            )
            return out
        unit = str(sel["unit"].iloc[0])
        if estimate is not None and low == high and not stats.is_exact_unit(unit):
            out.update(
                estimate=estimate,
                evidence=evidence + f"; one measurement in {unit!r} "
                "has no interval: one draw of something that varies",
                verdict=V.INCONCLUSIVE,
            )
            return out
        if estimate is not None and low == high:
            evidence += "; one exact value, no interval"
        how = ""
    else:
        usable = sel[sel["status"].isin(["ok", "censored"])]
        if not len(usable):
            out.update(evidence=evidence, verdict=V.NOT_MET if n_failed else V.NOT_MEASURED)
            return out
        reps = usable["repetition"].to_numpy()
        estimate, low, high, how = stats.statistic_interval(
            usable["value"].to_numpy(),
            target["statistic"],
            units=reps if len(set(reps.tolist())) > 1 else None,
            censored=(usable["status"] == "censored").to_numpy(),
            confidence=settings.confidence,
            min_units=settings.min_n("target"),
        )
        low = None if low is None else float(low)
        high = None if high is None else float(high)
    out.update(estimate=estimate, ci_low=low, ci_high=high)
    figure = (
        stats.check_target(
            np.nan if low is None else low,
            np.nan if high is None else high,
            op=target["op"],
            threshold=target["threshold"],
        )
        if estimate is not None
        else V.NOT_MEASURED
    )
    budget = float(target.get("error_budget", settings.error_budget))
    verdict, failure_text = stats.with_failures(
        figure, n_failed, len(ok) + n_failed, error_budget=budget, confidence=settings.confidence
    )
    out["evidence"] = "; ".join(p for p in (evidence, how, failure_text) if p)
    out["verdict"] = verdict
    total = len(ok) + n_failed
    if total:
        fv, (flo, fhi) = stats.budget_verdict(
            n_failed, total, error_budget=budget, confidence=settings.confidence
        )
        out.update(failure_verdict=fv, failure_rate=n_failed / total, failure_ci_low=flo,
                   failure_ci_high=fhi)  # fmt: skip
    return out


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


def _field(row: pd.Series | None, key: str) -> Any:
    """A comparison's field, None where there is no comparison or no such column (a
    comparison declared "not measurable" has no medians or interval)."""
    return None if row is None else row.get(key)


def _count(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


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
        ci = c.get("improvement_ci") if c is not None else None
        if not isinstance(ci, (tuple, list, np.ndarray)) or len(ci) != 2:
            ci = None  # no interval: a declared "not measurable", or too few units

        rows.append(
            {
                "optimization": t["comparison"],
                **{k: _field(c, k) for k in ("suite", "benchmark", "metric", "baseline")},
                **{
                    k: _field(c, k)
                    for k in ("candidate", "median_baseline", "median_candidate", "improvement")
                },
                "n_failed_baseline": _count(_field(c, "n_failed_baseline")),
                "n_failed_candidate": _count(_field(c, "n_failed_candidate")),
                "improvement_ci_low": ci[0] if ci is not None else None,
                "improvement_ci_high": ci[1] if ci is not None else None,
                "comparison_verdict": _field(c, "verdict"),
                "target": f"{t['name']} (improvement {t['op']} {t['threshold']:g})",
                "target_verdict": t["verdict"],
            }
        )
    table = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    return table, stats.overall_verdict(list(table["target_verdict"]))
