"""Candidate against baseline: one estimand, its interval, and the verdict read off it.

The rule (docs/verdicts.md has the long form):

* The estimand is the ratio candidate / baseline of a typical value, estimated on the
  log scale by :mod:`forgebench.stats.shift`. The unit of replication decides the
  estimator: independent rows (Hodges-Lehmann, Mann-Whitney interval), paired rows
  such as interleaved rounds (signed-rank), or repetitions that hold several rows each
  (each summarised by its median log value; Welch's t, or paired t when both sides share
  repetition ids).
* ``improvement`` is ``1 - ratio`` (lower is better) or ``ratio - 1`` (higher is
  better); positive means the candidate is better.
* improvement / regression: the whole interval lies beyond ``+threshold`` / ``-threshold``;
  no change: the whole interval lies inside ``(-threshold, +threshold)``; inconclusive:
  otherwise, or below the minimum number of units. The reported ``p_value`` is the dual
  of the decision: the p-value of "the change is not beyond the threshold", which is
  below ``1 - confidence`` exactly when the interval lies beyond it.
* failed: the candidate failed significantly more operations than the baseline, or more
  than the error budget; no speed figure is published beside it.
* Families (:func:`compare_family`): Benjamini-Hochberg over the members' ``p_value`` at
  ``alpha``; every member is then decided on its interval at the false-coverage-adjusted
  level ``1 - max(R, 1) * alpha / m`` (Benjamini & Yekutieli 2005), so the selected
  changes are exactly those whose adjusted interval lies beyond the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import stats as _sps

from forgebench.stats import vocabulary as V
from forgebench.stats._common import _check_confidence, _pct, _plain
from forgebench.stats.defaults import ALPHA, CONFIDENCE, ERROR_BUDGET, MIN_UNITS
from forgebench.stats.defaults import PRACTICAL_THRESHOLD as THRESHOLD
from forgebench.stats.intervals import proportion_ci
from forgebench.stats.shift import RankShift, RoundedShift, Shift, TShift

#: Pairs beyond which paired rows are analysed with the paired t instead of Walsh
#: averages (n (n + 1) / 2 values).
_PAIRED_RANK_MAX = 2000

VERDICTS = V.COMPARISON_VERDICTS


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline for one metric; see the module docstring.

    ``n_*`` count rows, ``n_units_*`` the independent units the interval rests on.
    ``effect_size`` (Cliff's delta) is signed candidate minus baseline, whatever the
    metric's direction. Speed figures are NaN on a failed verdict.
    """

    n_baseline: int
    n_candidate: int
    n_units_baseline: int
    n_units_candidate: int
    design: str
    median_baseline: float
    median_candidate: float
    ratio: float
    ratio_ci: tuple[float, float]
    improvement: float
    improvement_ci: tuple[float, float]
    speedup: float
    speedup_ci: tuple[float, float]
    p_value: float
    p_no_change: float
    effect_size: float
    significant: bool
    method: str
    threshold: float
    verdict: str
    reason: str
    higher_is_better: bool = False
    alpha: float = ALPHA
    confidence: float = CONFIDENCE
    family_size: int = 1
    failures_baseline: int = 0
    failures_candidate: int = 0
    failure_rate_candidate_ci: tuple[float, float] = (math.nan, math.nan)

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists; NaN kept as float NaN)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


# ------------------------------------------------------------------------- inputs


def _units(
    values: np.ndarray, labels: Sequence[Hashable] | np.ndarray | None
) -> dict[Hashable, np.ndarray] | None:
    """Values grouped by unit label, in label order; None when no labels are given."""
    if labels is None:
        return None
    lab = np.asarray(labels, dtype=object)
    if lab.shape != values.shape:
        raise ValueError(f"unit labels ({lab.size}) and values ({values.size}) differ in length")
    out: dict[Hashable, list[float]] = {}
    for label, value in zip(lab.tolist(), values.tolist(), strict=True):
        out.setdefault(label, []).append(value)
    return {k: np.asarray(out[k]) for k in sorted(out, key=repr)}


@dataclass(frozen=True)
class _Prepared:
    """What a comparison needs before a confidence level is chosen."""

    base: np.ndarray
    cand: np.ndarray
    shift: Shift | None
    design: str
    early: str | None  # a verdict fixed before any interval (undetermined, failed, ...)
    reason: str
    higher_is_better: bool
    threshold: float
    alpha: float
    failures: tuple[int, int]
    failure_ci: tuple[float, float]
    counts: tuple[int, int] = (0, 0)  # independent units a side


def _design(
    base: np.ndarray,
    cand: np.ndarray,
    baseline_units: Any,
    candidate_units: Any,
    paired: bool | None,
) -> tuple[Shift, str]:
    """The estimator that fits how the values were replicated, and its name."""
    bu, cu = _units(np.log(base), baseline_units), _units(np.log(cand), candidate_units)
    if bu is not None and cu is not None:
        shared = list(bu) == list(cu) and paired is not False and len(bu) >= 2
        if max(v.size for v in (*bu.values(), *cu.values())) > 1:
            b = np.array([np.median(v) for v in bu.values()])
            c = np.array([np.median(v) for v in cu.values()])
            if shared:
                return TShift(b, c, paired=True), "paired repetitions (shared ids)"
            return TShift(b, c, paired=False), "independent repetitions"
        b = np.concatenate(list(bu.values()))
        c = np.concatenate(list(cu.values()))
        if shared and b.size <= _PAIRED_RANK_MAX:
            return RankShift(b, c, paired=True), "paired rows (shared ids)"
        if shared:
            return TShift(b, c, paired=True), "paired rows (shared ids)"
        return RankShift(b, c, paired=False), "independent rows"
    if paired:
        if base.size != cand.size:
            raise ValueError(f"paired sides need equal lengths, got {base.size}, {cand.size}")
        return RankShift(np.log(base), np.log(cand), paired=True), "paired rows (by position)"
    return RankShift(np.log(base), np.log(cand), paired=False), "independent rows"


def resolution(values: np.ndarray) -> float:
    """The step of a quantised sample (a coarse timer, integer counts), or 0.

    Values are taken as quantised when some repeat exactly; the step is then the smallest
    gap between distinct values. Continuous samples (no repeats) and constant ones give 0.
    """
    if values.size < 2:
        return 0.0
    distinct = np.unique(values)
    if distinct.size == values.size or distinct.size < 2:
        return 0.0
    return float(np.min(np.diff(distinct)))


def _unit_counts(
    base: np.ndarray,
    cand: np.ndarray,
    baseline_units: Any,
    candidate_units: Any,
    paired: bool | None,
) -> tuple[int, int]:
    """Independent units a side: distinct labels when given, else rows. ValueError for
    labels that do not fit their values, whatever the count."""
    if (baseline_units is None) != (candidate_units is None):
        raise ValueError("unit labels must be given for both sides or neither")
    if baseline_units is None:
        if paired and base.size != cand.size:
            raise ValueError(f"paired sides need equal lengths, got {base.size}, {cand.size}")
        return base.size, cand.size
    counts = []
    for values, labels in ((base, baseline_units), (cand, candidate_units)):
        lab = np.asarray(labels, dtype=object).reshape(-1)
        if lab.size != values.size:
            raise ValueError(
                f"unit labels ({lab.size}) and values ({values.size}) differ in length"
            )
        counts.append(len(set(lab.tolist())))
    return counts[0], counts[1]


def failure_check(
    n_ok_baseline: int,
    n_failed_baseline: int,
    n_ok_candidate: int,
    n_failed_candidate: int,
    *,
    error_budget: float = ERROR_BUDGET,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> tuple[str | None, str, tuple[float, float]]:
    """The failure side of a comparison: ``(verdict or None, reason, candidate rate CI)``.

    "failed" when the candidate's failure rate is significantly above the baseline's
    (one-sided Fisher exact test at ``alpha``) or its Clopper-Pearson interval lies above
    ``error_budget``; "inconclusive" when its observed rate exceeds the budget without
    either; None when the failures leave the speed verdict standing. Baseline failures
    alone never fail the candidate.
    """
    n_c = n_ok_candidate + n_failed_candidate
    n_b = n_ok_baseline + n_failed_baseline
    ci = proportion_ci(n_failed_candidate, n_c, confidence) if n_c else (math.nan, math.nan)
    if n_failed_candidate == 0 and n_failed_baseline == 0:
        return None, "", ci
    rate = n_failed_candidate / n_c if n_c else math.nan
    text = (
        f"candidate failed {n_failed_candidate} of {n_c} ({rate:.2%}, {confidence:.0%} CI "
        f"{ci[0]:.2%} to {ci[1]:.2%}), baseline {n_failed_baseline} of {n_b}; error budget "
        f"{error_budget:.2%}"
    )
    p = math.nan
    if n_b and n_c:
        table = [[n_failed_candidate, n_ok_candidate], [n_failed_baseline, n_ok_baseline]]
        p = float(_sps.fisher_exact(table, alternative="greater").pvalue)
    if ci[0] > error_budget:
        return V.FAILED, f"{text}: the failure rate is above the budget", ci
    if p < alpha:
        return V.FAILED, f"{text}: significantly more than the baseline (Fisher p={p:.3g})", ci
    if rate > error_budget:
        return V.INCONCLUSIVE, f"{text}: the observed rate exceeds the budget", ci
    return None, f"{text}: within the budget", ci


def _prepare(
    baseline: Any,
    candidate: Any,
    *,
    higher_is_better: bool,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    baseline_units: Any = None,
    candidate_units: Any = None,
    paired: bool | None = None,
    failures: tuple[int, int] = (0, 0),
    error_budget: float = ERROR_BUDGET,
    min_units: int = MIN_UNITS["comparison"],
    confidence: float = CONFIDENCE,
) -> _Prepared:
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    base = np.asarray(baseline, dtype=float).reshape(-1)
    cand = np.asarray(candidate, dtype=float).reshape(-1)
    kw = {
        "base": base,
        "cand": cand,
        "shift": None,
        "design": "none",
        "higher_is_better": bool(higher_is_better),
        "threshold": float(threshold),
        "alpha": float(alpha),
        "failures": (int(failures[0]), int(failures[1])),
        "counts": (0, 0),
    }
    fail, fail_text, fail_ci = failure_check(
        base.size,
        failures[0],
        cand.size,
        failures[1],
        error_budget=error_budget,
        alpha=alpha,
        confidence=confidence,
    )
    kw["failure_ci"] = fail_ci
    if fail == V.FAILED:
        return _Prepared(**kw, early=V.FAILED, reason=fail_text + "; no speed verdict")
    for name, arr in (("baseline", base), ("candidate", cand)):
        if arr.size == 0:
            return _Prepared(**kw, early=V.UNDETERMINED, reason=f"{name} has no values")
        if not np.isfinite(arr).all():
            return _Prepared(**kw, early=V.UNDETERMINED, reason=f"{name} has NaN/inf values")
        if (arr <= 0).any():
            return _Prepared(
                **kw,
                early=V.UNDETERMINED,
                reason=f"{name} has values <= 0: a ratio needs positive values",
            )
    counts = _unit_counts(base, cand, baseline_units, candidate_units, paired)
    kw["counts"] = counts
    if min(counts) < max(min_units, 2):
        return _Prepared(
            **kw,
            early=V.INCONCLUSIVE,
            reason=f"{counts[0]} vs {counts[1]} independent units: fewer than the minimum of "
            f"{max(min_units, 2)} a side (statistics.min_units.comparison)",
        )
    shift, design = _design(base, cand, baseline_units, candidate_units, paired)
    step = resolution(np.concatenate([base, cand]))
    if step > 0 and float(min(base.min(), cand.min())) > step / 2:
        half = step / 2
        low, _ = _design(base + half, cand - half, baseline_units, candidate_units, paired)
        high, _ = _design(base - half, cand + half, baseline_units, candidate_units, paired)
        shift = RoundedShift(shift, low, high, step)
    kw.update(shift=shift, design=design)
    if fail == V.INCONCLUSIVE:
        return _Prepared(**kw, early=V.INCONCLUSIVE, reason=fail_text)
    return _Prepared(**kw, early=None, reason=fail_text)


def _band(threshold: float) -> tuple[float, float]:
    """The "no change" band of the log ratio."""
    return math.log1p(-threshold), math.log1p(threshold)


def _p_beyond(prep: _Prepared) -> float:
    """p of "the change is not beyond the threshold" (the decision's dual); NaN if untested."""
    if prep.shift is None or prep.early is not None:
        return math.nan
    low, high = _band(prep.threshold)
    return min(1.0, 2.0 * min(prep.shift.p_above(high), prep.shift.p_below(low)))


def _improvement(log_ratio: float, higher_is_better: bool) -> float:
    ratio = math.exp(log_ratio)
    return ratio - 1.0 if higher_is_better else 1.0 - ratio


def _decide(prep: _Prepared, confidence: float, family_size: int = 1) -> Comparison:
    """The verdict of a prepared comparison on its interval at ``confidence``."""
    nan2 = (math.nan, math.nan)
    shift = prep.shift
    failed = prep.early == V.FAILED
    fields_: dict[str, Any] = {
        "n_baseline": int(prep.base.size),
        "n_candidate": int(prep.cand.size),
        "n_units_baseline": int(shift.n_units[0]) if shift else int(prep.counts[0]),
        "n_units_candidate": int(shift.n_units[1]) if shift else int(prep.counts[1]),
        "design": prep.design,
        "median_baseline": float(np.median(prep.base)) if prep.base.size else math.nan,
        "median_candidate": float(np.median(prep.cand)) if prep.cand.size else math.nan,
        "ratio": math.nan,
        "ratio_ci": nan2,
        "improvement": math.nan,
        "improvement_ci": nan2,
        "speedup": math.nan,
        "speedup_ci": nan2,
        "p_value": math.nan,
        "p_no_change": math.nan,
        "effect_size": math.nan,
        "significant": False,
        "method": shift.name if shift else "none",
        "threshold": prep.threshold,
        "higher_is_better": prep.higher_is_better,
        "alpha": prep.alpha,
        "confidence": float(confidence),
        "family_size": int(family_size),
        "failures_baseline": prep.failures[0],
        "failures_candidate": prep.failures[1],
        "failure_rate_candidate_ci": prep.failure_ci,
    }
    if failed:
        fields_["median_baseline"] = fields_["median_candidate"] = math.nan
        return Comparison(**fields_, verdict=V.FAILED, reason=prep.reason)
    if shift is None:
        return Comparison(**fields_, verdict=prep.early or V.UNDETERMINED, reason=prep.reason)
    hib = prep.higher_is_better
    est = shift.estimate
    lo, hi = shift.interval(confidence)
    imp_bounds = (
        sorted((_improvement(lo, hib), _improvement(hi, hib))) if not math.isnan(lo) else nan2
    )
    ratio = math.exp(est)
    ratio_ci = (math.exp(lo), math.exp(hi)) if not math.isnan(lo) else nan2
    speed = ratio if hib else 1.0 / ratio
    speed_ci = (
        (ratio_ci if hib else (1.0 / ratio_ci[1], 1.0 / ratio_ci[0]))
        if not math.isnan(lo)
        else nan2
    )
    fields_.update(
        ratio=ratio,
        ratio_ci=ratio_ci,
        improvement=_improvement(est, hib),
        improvement_ci=(float(imp_bounds[0]), float(imp_bounds[1])),
        speedup=speed,
        speedup_ci=speed_ci,
        p_value=_p_beyond(prep) if prep.early is None else math.nan,
        p_no_change=min(1.0, 2.0 * min(shift.p_above(0.0), shift.p_below(0.0))),
        effect_size=_cliffs_delta(prep.base, prep.cand),
    )
    t = prep.threshold
    ci_text = (
        f"{confidence:.1%} CI {_pct(imp_bounds[0])} to {_pct(imp_bounds[1])}"
        if not math.isnan(lo)
        else f"no {confidence:.1%} interval"
    )
    head = (
        f"improvement {_pct(fields_['improvement'])} ({ci_text}; {shift.name}, "
        f"{shift.n_units[0]} vs {shift.n_units[1]} units, {prep.design})"
    )
    extra = f"; {prep.reason}" if prep.reason and prep.early is None else ""
    if prep.early is not None:
        return Comparison(**fields_, verdict=prep.early, reason=f"{head}; {prep.reason}")
    if math.isnan(lo):
        verdict, why = V.INCONCLUSIVE, (f"too few units for a {confidence:.1%} interval to exist")
    elif imp_bounds[0] > t:
        verdict, why = V.IMPROVEMENT, f"the whole interval lies above +{t:.1%}"
    elif imp_bounds[1] < -t:
        verdict, why = V.REGRESSION, f"the whole interval lies below -{t:.1%}"
    elif imp_bounds[0] > -t and imp_bounds[1] < t:
        verdict, why = V.NO_CHANGE, f"the whole interval lies inside ±{t:.1%}"
    else:
        verdict, why = V.INCONCLUSIVE, f"the interval reaches across ±{t:.1%}"
    fields_["significant"] = verdict in (V.IMPROVEMENT, V.REGRESSION)
    return Comparison(**fields_, verdict=verdict, reason=f"{head}: {why}{extra}")


def _cliffs_delta(base: np.ndarray, cand: np.ndarray) -> float:
    """P(cand > base) - P(cand < base) over all pairs, in O((m+n) log m) via sorting."""
    b = np.sort(base)
    below = np.searchsorted(b, cand, side="left").sum()
    above = (b.size - np.searchsorted(b, cand, side="right")).sum()
    return float((below - above) / (b.size * cand.size))


def compare(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    baseline_units: Sequence[Hashable] | np.ndarray | None = None,
    candidate_units: Sequence[Hashable] | np.ndarray | None = None,
    paired: bool | None = None,
    failures: tuple[int, int] = (0, 0),
    error_budget: float = ERROR_BUDGET,
    min_units: int = MIN_UNITS["comparison"],
    **_ignored: Any,
) -> Comparison:
    """Compare the successful values of two sides of one metric; see the module docstring.

    ``*_units`` label each value with its repetition (or run, or seed); when both sides
    carry the same labels they are paired (``paired=False`` refuses that). ``failures``
    are the failed operations of each side, judged by :func:`failure_check`.
    Data problems give "undetermined"; invalid parameters raise ValueError.
    """
    _check_confidence(confidence)
    prep = _prepare(
        baseline,
        candidate,
        higher_is_better=higher_is_better,
        threshold=threshold,
        alpha=alpha,
        baseline_units=baseline_units,
        candidate_units=candidate_units,
        paired=paired,
        failures=failures,
        error_budget=error_budget,
        min_units=min_units,
        confidence=confidence,
    )
    return _decide(prep, confidence)


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (BH 1995), in input order.

    NaN entries (a test that could not run) stay NaN and do not count in the family.
    Same values as ``scipy.stats.false_discovery_control(p, method='bh')`` otherwise.
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    out = np.full(p.size, math.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    if ((q < 0) | (q > 1)).any():
        raise ValueError("pvalues must be in [0, 1]")
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    res = np.empty(m)
    res[order] = adjusted
    out[ok] = res
    return out


def selected_count(pvalues: Sequence[float] | np.ndarray, alpha: float) -> int:
    """R: how many hypotheses Benjamini-Hochberg rejects at ``alpha`` (NaN left out)."""
    adjusted = benjamini_hochberg(pvalues)
    return int(np.sum(adjusted[~np.isnan(adjusted)] <= alpha))


def compare_family(
    members: Sequence[Mapping[str, Any]],
    *,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> list[Comparison]:
    """Compare every member (each the keyword arguments of :func:`compare`, with
    ``baseline`` and ``candidate``) as one family, as the module docstring states.

    Members decided before any interval (failed, undetermined, too small) keep that
    verdict and do not count in ``m``.
    """
    _check_confidence(confidence)
    preps = [_prepare(confidence=confidence, **dict(m)) for m in members]
    pvalues = [_p_beyond(p) for p in preps]
    tested = [p for p in pvalues if not math.isnan(p)]
    m = len(tested)
    if m <= 1:
        return [_decide(p, confidence) for p in preps]
    r = selected_count(pvalues, alpha)
    level = 1.0 - max(r, 1) * alpha / m
    out = []
    for prep, p in zip(preps, pvalues, strict=True):
        if math.isnan(p):
            out.append(_decide(prep, confidence))
            continue
        c = _decide(prep, level, family_size=m)
        note = (
            f"; family of {m}: Benjamini-Hochberg selected {r} at alpha={alpha:g}, so every "
            f"member is judged on its {level:.2%} interval (Benjamini-Yekutieli)"
        )
        out.append(replace(c, reason=c.reason + note))
    return out
