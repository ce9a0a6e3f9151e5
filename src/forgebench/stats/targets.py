"""A figure against a target, with the failure budget beside it.

A target is met only when its figure's interval lies on the right side of the threshold
**and** its failures are within the error budget; a figure met by the survivors of an
outage is not met. Where no interval exists at the requested level (a median of two
values, a p99 of twenty) the target is inconclusive with that reason, never judged on
the point estimate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from forgebench.stats import vocabulary as V
from forgebench.stats.defaults import CONFIDENCE, ERROR_BUDGET, MIN_UNITS
from forgebench.stats.intervals import (
    censored_quantile,
    mean_ci,
    proportion_ci,
    quantile_ci,
    quantile_ranks,
)

TARGET_OPS = ("<", "<=", ">", ">=")
_TARGET_OPS = TARGET_OPS
TARGET_VERDICTS = V.TARGET_VERDICTS
#: Units whose single value is an exact figure (a count, a size) rather than one draw of
#: something that varies (a time, a rate): only those may be judged without an interval.
_TIME_UNITS = ("s", "ms", "us", "µs", "ns", "sec", "second", "seconds", "min", "minutes", "h")
_RATE = re.compile(r"(/|\bper\s+)(s|sec|second|ms|us|µs|ns|min|minute|h|hr|hour|day)s?\b")


def check_target(
    ci_low: float | None,
    ci_high: float | None,
    *,
    op: str,
    threshold: float,
    failed: bool = False,
) -> str:
    """Target verdict from a confidence interval, so noise alone cannot pass or fail it.

    "met" if every value in ``[ci_low, ci_high]`` satisfies ``value <op> threshold``,
    "not met" if none does, "inconclusive" if the interval straddles the threshold or
    the bound that would decide does not exist (NaN: too few values at this level; the
    other bound can still decide "not met"), "not measured" if both bounds are None (no
    data). ``failed=True`` (failures over budget) makes it "not met".
    """
    if op not in _TARGET_OPS:
        raise ValueError(f"op must be one of {_TARGET_OPS}, got {op!r}")
    if failed:
        return V.NOT_MET
    if ci_low is None and ci_high is None:
        return V.NOT_MEASURED
    lo = math.nan if ci_low is None else float(ci_low)
    hi = math.nan if ci_high is None else float(ci_high)
    if lo > hi:
        raise ValueError(f"ci_low ({lo}) is above ci_high ({hi})")
    # NaN compares False, so a missing bound never decides
    if op == "<":
        met, violated = hi < threshold, lo >= threshold
    elif op == "<=":
        met, violated = hi <= threshold, lo > threshold
    elif op == ">":
        met, violated = lo > threshold, hi <= threshold
    else:
        met, violated = lo >= threshold, hi < threshold
    if met:
        return V.MET
    if violated:
        return V.NOT_MET
    return V.INCONCLUSIVE


def overall_verdict(target_verdicts: Sequence[str], *, pass_share: float = 0.8) -> dict[str, Any]:
    """The original system's overall rule over a set of target verdicts.

    "PASSED" when at least ``pass_share`` of the measured targets are met; "inconclusive"
    counts as not met; "not measured" and "not measurable at this budget" targets are
    left out of the share (and counted, so the report lists them); with nothing measured
    the result is "not measured".
    """
    unknown = set(target_verdicts) - set(TARGET_VERDICTS)
    if unknown:
        raise ValueError(f"unknown target verdicts {sorted(unknown)}")
    left_out = (V.NOT_MEASURED, V.NOT_MEASURABLE)
    measured = [v for v in target_verdicts if v not in left_out]
    met = sum(v == V.MET for v in measured)
    share = met / len(measured) if measured else math.nan
    verdict = "not measured" if not measured else "PASSED" if share >= pass_share else "FAILED"
    return {
        "verdict": verdict,
        "met": met,
        "measured": len(measured),
        "not_measured": sum(v == V.NOT_MEASURED for v in target_verdicts),
        "not_measurable": sum(v == V.NOT_MEASURABLE for v in target_verdicts),
        "share_met": share,
        "pass_share": pass_share,
    }


def budget_verdict(
    n_failed: int,
    n_total: int,
    *,
    error_budget: float = ERROR_BUDGET,
    confidence: float = CONFIDENCE,
) -> tuple[str, tuple[float, float]]:
    """Failure rate against an error budget on its Clopper-Pearson interval: "within
    budget" (upper bound at or below it), "over budget" (lower bound above it) or
    "inconclusive"; with no operations, "inconclusive" and NaN bounds."""
    if n_total <= 0:
        return V.INCONCLUSIVE, (math.nan, math.nan)
    low, high = proportion_ci(int(n_failed), int(n_total), confidence)
    if high <= error_budget:
        return V.WITHIN_BUDGET, (low, high)
    if low > error_budget:
        return V.OVER_BUDGET, (low, high)
    return V.INCONCLUSIVE, (low, high)


def with_failures(
    figure_verdict: str,
    n_failed: int,
    n_total: int,
    *,
    error_budget: float = ERROR_BUDGET,
    confidence: float = CONFIDENCE,
) -> tuple[str, str]:
    """A target's verdict once its failures are counted: ``(verdict, reason)``.

    Over budget (the whole interval above it): "not met". An observed failure rate above
    the budget without that certainty: at best "inconclusive". Otherwise the figure's
    verdict stands."""
    if n_failed <= 0:
        return figure_verdict, ""
    budget, (low, high) = budget_verdict(
        n_failed, n_total, error_budget=error_budget, confidence=confidence
    )
    rate = n_failed / n_total
    text = (
        f"{n_failed} of {n_total} operations failed ({rate:.2%}, {confidence:.0%} CI "
        f"{low:.2%} to {high:.2%}) against an error budget of {error_budget:.2%}"
    )
    if budget == V.OVER_BUDGET:
        return V.NOT_MET, f"{text}: over budget"
    if rate > error_budget and figure_verdict == V.MET:
        return V.INCONCLUSIVE, f"{text}: the observed rate exceeds the budget"
    return figure_verdict, text


def is_exact_unit(unit: str) -> bool:
    """True when one value in this unit is an exact figure (counts, sizes, ratios of
    sizes), False for times, rates and utilisations, whose single value is one draw."""
    u = str(unit or "").strip().lower()
    if u in _TIME_UNITS or u in ("%", "percent", "pct"):
        return False
    # a rate: something per unit of time (ops/s, MB/hour, tokens/s, requests per minute)
    return _RATE.search(u) is None


def statistic_interval(
    values: Sequence[float] | np.ndarray,
    statistic: str,
    *,
    units: Sequence[Hashable] | np.ndarray | None = None,
    censored: Sequence[bool] | np.ndarray | None = None,
    confidence: float = CONFIDENCE,
    min_units: int = MIN_UNITS["target"],
) -> tuple[float, float, float, str]:
    """``(estimate, low, high, how)`` of a target's statistic (``mean``, ``median`` or
    ``pNN``) with an interval that covers; NaN bounds where none exists (``how`` says why).

    Several rows per unit (repetitions): the statistic of each unit, then Student's t over
    the units. One row per unit: order statistics for quantiles (censored rows as +inf),
    t for the mean.
    """
    x = np.asarray(values, dtype=float)
    cens = np.zeros(x.size, bool) if censored is None else np.asarray(censored, dtype=bool)
    q = _quantile_of(statistic)
    if units is not None:
        lab = np.asarray(units, dtype=object)
        groups = {}
        for label, value, c in zip(lab.tolist(), x.tolist(), cens.tolist(), strict=True):
            groups.setdefault(label, []).append((value, c))
        if len(groups) >= 2 and max(len(g) for g in groups.values()) > 1:
            if any(c for g in groups.values() for _, c in g):
                return _pooled(x, cens, q, confidence, min_units, "censored rows pooled")
            per = np.array(
                [
                    np.mean([v for v, _ in g]) if q is None else np.quantile([v for v, _ in g], q)
                    for g in groups.values()
                ]
            )
            how = f"{statistic} of each of {per.size} repetitions, t interval over them"
            if per.size < min_units:
                return (
                    float(np.mean(per)),
                    math.nan,
                    math.nan,
                    (f"{per.size} repetitions: fewer than the minimum of {min_units}"),
                )
            low, high = mean_ci(per, confidence)
            return float(np.mean(per)), low, high, how
    return _pooled(x, cens, q, confidence, min_units, "rows as independent units")


def _quantile_of(statistic: str) -> float | None:
    if statistic == "mean":
        return None
    if statistic in ("median", "p50"):
        return 0.5
    if statistic.startswith("p"):
        return float(statistic[1:]) / 100.0
    raise ValueError(f"unknown statistic {statistic!r}: mean, median or pNN")


def _pooled(
    x: np.ndarray, cens: np.ndarray, q: float | None, confidence: float, min_units: int, how: str
) -> tuple[float, float, float, str]:
    n = x.size
    if n == 0:
        return math.nan, math.nan, math.nan, "no values"
    if q is None:
        if cens.any():
            return math.nan, math.nan, math.nan, "a mean of censored values is undefined"
        est = float(np.mean(x))
        if n < min_units:
            return est, math.nan, math.nan, f"{n} values: fewer than the minimum of {min_units}"
        low, high = mean_ci(x, confidence)
        return est, low, high, f"t interval of the mean over {n} {how}"
    est = censored_quantile(x, cens, q)
    low, high = quantile_ci(x, q, confidence, censored=cens if cens.any() else None)
    lr, hr = quantile_ranks(n, q, confidence)
    parts = [f"order-statistic interval over {n} {how}"]
    if lr is None or hr is None:
        parts.append(
            f"too few values for the {'lower' if lr is None else 'upper'} bound of the "
            f"{q:.0%} quantile at {confidence:.0%}"
        )
    if cens.any():
        parts.append(f"{int(cens.sum())} censored")
        if cens.mean() > 1.0 - q:
            parts.append("censored share above 1 - q: a lower bound only")
    return est, low, high, "; ".join(parts)
