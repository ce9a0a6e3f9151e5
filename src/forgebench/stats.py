"""Summaries, comparisons and verdicts: the only place in forgebench that decides a verdict.

Small pure functions on 1-D samples. Conventions shared by every function:

* Input is any 1-D sequence of real numbers. NaN or infinite values are rejected with
  ``ValueError`` by the descriptive functions; :func:`compare` instead returns an
  ``"undetermined"`` verdict with the reason, so one broken case cannot abort a report.
* A statistic that cannot be computed is NaN (and a verdict built on it is
  ``"undetermined"``), never a stand-in such as 0. The system this replaces reported
  ``p95 = 0`` below 20 samples; here every percentile is defined from n = 1.
* Everything random is seeded (``numpy.random.default_rng(seed)``), so equal input
  gives byte-identical output and reports regenerate exactly.
* Bootstraps are percentile bootstraps (Efron & Tibshirani 1993, ch. 13) drawn as one
  index matrix per chunk; chunks only bound memory (at most ``_MAX_RESAMPLE_ELEMENTS``
  values at a time) and do not change the result.

Designed after asv's ``asv/_stats.py`` (Mann-Whitney U only where the sample sizes let
it reach the threshold, otherwise a confidence-interval check) and pyperf's stability
checks, written afresh on numpy/scipy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats as _sps

__all__ = [
    "METHODS",
    "TARGET_VERDICTS",
    "VERDICTS",
    "Comparison",
    "Summary",
    "benjamini_hochberg",
    "bootstrap_ci",
    "check_target",
    "compare",
    "instability_warnings",
    "mad",
    "mcnemar",
    "outliers_iqr",
    "outliers_mad",
    "paired_bootstrap",
    "percentile",
    "summarize",
]

VERDICTS = ("improvement", "regression", "no significant change", "undetermined", "failed")
TARGET_VERDICTS = ("met", "not met", "inconclusive", "not measured")
#: Values of ``Comparison.method``: how significance was decided (or that it was not).
METHODS = ("mann-whitney-u", "bootstrap-ci", "none")

#: Largest number of resampled values held in memory at once (rows x n).
_MAX_RESAMPLE_ELEMENTS = 5_000_000
#: Fewest values per side for the bootstrap-CI fallback of :func:`compare`. With one or
#: two values a side the percentile bootstrap degenerates into a range-overlap check
#: whose false-call rate under "no change" is 1/3 (2 vs 2) or worse.
_MIN_FALLBACK_N = 3
#: Discordant-pair count below which :func:`mcnemar` uses the exact binomial test.
_MCNEMAR_EXACT_BELOW = 25
#: Shortest reliable duration in seconds when ``instability_warnings`` is given a time unit.
_DEFAULT_MIN_DURATION_S = 1e-6
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TARGET_OPS = ("<", "<=", ">", ">=")

Statistic = str | Callable[..., Any]


# --------------------------------------------------------------------------- helpers


def _sample(values: Any, name: str = "values", *, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a 1-D float array; ValueError on NaN/inf, other shapes or emptiness."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty: at least one value is needed")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} non-finite value(s) (NaN or inf); "
            "drop failed measurements before computing statistics"
        )
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_resamples(n_resamples: int) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")


def _statistic_fn(statistic: Statistic) -> Callable[..., Any]:
    if callable(statistic):
        return statistic
    if statistic == "median":
        return np.median
    if statistic == "mean":
        return np.mean
    raise ValueError(
        f"statistic must be 'median', 'mean' or a callable f(array, axis), got {statistic!r}"
    )


def _resampled(
    x: np.ndarray, fn: Callable[..., Any], n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``fn`` over ``n_resamples`` bootstrap resamples of ``x`` (rows of an index matrix).

    Draws in row chunks of at most ``_MAX_RESAMPLE_ELEMENTS`` values; numpy's Generator
    yields the same index stream whether drawn at once or in chunks, so chunking does not
    change the result.
    """
    n = x.size
    rows = max(1, _MAX_RESAMPLE_ELEMENTS // n)
    out = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        res = np.asarray(fn(x[idx], axis=1), dtype=float)
        if res.shape != (stop - start,):
            raise ValueError(
                f"statistic returned shape {res.shape} for a ({stop - start}, {n}) array with "
                f"axis=1; it must reduce along axis to shape ({stop - start},)"
            )
        out[start:stop] = res
    return out


def _ci_bounds(dist: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile-bootstrap bounds; NaN if any resampled statistic is not finite."""
    if not np.isfinite(dist).all():
        return (math.nan, math.nan)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(dist, [tail, 100.0 - tail])
    return (float(lo), float(hi))


def _plain(value: Any) -> Any:
    """Builtin-typed copy for ``as_dict`` (tuples become lists so YAML/JSON/pandas take them)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: float, unit: str = "") -> str:
    text = f"{value:.4g}"
    return f"{text} {unit}".rstrip()


def _pct(value: float) -> str:
    return f"{value * 100:+.1f}%"


# ----------------------------------------------------------------------- descriptive


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile by linear interpolation (Hyndman & Fan type 7, numpy default).

    Defined for every n >= 1 (n = 1 returns the value), unlike a nearest-rank rule with a
    minimum sample count; with few samples the high percentiles are interpolated between
    the largest values, so p95 of 5 values lies between the 4th and 5th largest.

    Args:
        values: 1-D finite sample, at least one value.
        q: Percentile in [0, 100].

    Returns:
        The percentile as a float.

    Raises:
        ValueError: empty input, NaN/inf values, or ``q`` outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    return float(np.percentile(_sample(values), q, method="linear"))


def mad(values: Sequence[float] | np.ndarray) -> float:
    """Median absolute deviation from the median, unscaled (multiply by 1.4826 for a
    normal-consistent sigma). Robust spread: one wild value cannot inflate it.

    Raises:
        ValueError: empty input or NaN/inf values.
    """
    x = _sample(values)
    return float(np.median(np.abs(x - np.median(x))))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Statistic = "median",
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``statistic`` (Efron & Tibshirani 1993).

    Vectorised: the resamples are rows of one index matrix (chunked only to bound memory),
    and ``statistic`` is called once per chunk as ``statistic(matrix, axis=1)``.

    Small-n limits: n = 1 gives the zero-width interval ``(v, v)``, which says nothing
    about uncertainty; below roughly 10 values the percentile bootstrap under-covers (for
    the median at n = 2 it is about [min, max], covering ~50%). Callers should not read a
    narrow interval from few samples as a precise one.

    Args:
        values: 1-D finite sample, at least one value.
        statistic: ``"median"``, ``"mean"`` or a callable ``f(array, axis)`` that reduces
            along ``axis`` (e.g. ``np.median``).
        confidence: Two-sided confidence level in (0, 1).
        n_resamples: Number of bootstrap resamples.
        seed: Seed for ``numpy.random.default_rng``; equal input and seed give equal output.

    Returns:
        ``(low, high)``; NaN bounds if the statistic produced a non-finite value on a resample.

    Raises:
        ValueError: empty input, NaN/inf values, or invalid parameters.
    """
    x = _sample(values)
    fn = _statistic_fn(statistic)
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    if x.size == 1:
        v = float(np.asarray(fn(x.reshape(1, 1), axis=1), dtype=float).reshape(-1)[0])
        return (v, v)
    rng = np.random.default_rng(seed)
    return _ci_bounds(_resampled(x, fn, int(n_resamples), rng), confidence)


def outliers_mad(values: Sequence[float] | np.ndarray, threshold: float = 3.5) -> np.ndarray:
    """Flag values whose modified z-score ``0.6745 * |x - median| / MAD`` exceeds ``threshold``
    (Iglewicz & Hoaglin 1993). Flags only; nothing is dropped.

    When MAD is 0 (more than half the values equal the median, common with coarse timers)
    the score is undefined; then the mean absolute deviation from the median, scaled by
    1.2533 to estimate the same sigma, is used instead (IBM SPSS's fallback). So a single
    stray value among identical ones is flagged, but a 60/40 split between two levels is
    not. All values identical: nothing is flagged.

    Returns:
        Boolean array, True where a value is an outlier, in input order.

    Raises:
        ValueError: empty input or NaN/inf values.
    """
    x = _sample(values)
    dev = np.abs(x - np.median(x))
    scale = float(np.median(dev)) / 0.6745
    if scale == 0.0:
        scale = 1.2533 * float(np.mean(dev))
    if scale == 0.0:
        return np.zeros(x.size, dtype=bool)
    return dev / scale > threshold


def outliers_iqr(values: Sequence[float] | np.ndarray, k: float = 1.5) -> np.ndarray:
    """Flag values outside Tukey's fences ``[Q1 - k*IQR, Q3 + k*IQR]`` (quartiles by type-7
    interpolation). Flags only; nothing is dropped. With IQR = 0 every value off the
    common level is flagged, as the rule states; quartiles of fewer than ~8 values are
    themselves unstable.

    Returns:
        Boolean array, True where a value is outside the fences, in input order.

    Raises:
        ValueError: empty input or NaN/inf values.
    """
    x = _sample(values)
    q1, q3 = np.percentile(x, [25.0, 75.0])
    iqr = q3 - q1
    return (x < q1 - k * iqr) | (x > q3 + k * iqr)


def instability_warnings(
    values: Sequence[float] | np.ndarray,
    *,
    min_samples: int = 20,
    max_rel_spread: float = 0.10,
    min_duration_s: float | None = None,
    unit: str = "s",
) -> list[str]:
    """Human-readable reasons not to trust a sample, in the spirit of pyperf's checks.

    Checks: too few samples; relative spread (std/mean and MAD/median) above
    ``max_rel_spread``; for time units (s, ms, us, ns) values shorter than
    ``min_duration_s`` (default 1 us), negative durations and all-identical values (timer
    resolution); and outliers by the MAD rule (kept, but reported).

    Args:
        values: 1-D finite sample (may be empty: that is itself reported).
        min_samples: Fewest samples considered enough for percentiles and intervals.
        max_rel_spread: Largest acceptable std/mean or MAD/median.
        min_duration_s: Shortest reliable value in seconds; needs a time ``unit``.
        unit: Unit of ``values``; a time unit enables the duration checks.

    Returns:
        List of sentences, empty when nothing looks wrong.

    Raises:
        ValueError: NaN/inf values, or ``min_duration_s`` given with a non-time unit.
    """
    x = _sample(values, allow_empty=True)
    scale_s = _TIME_UNITS.get(unit)
    if min_duration_s is not None and scale_s is None:
        raise ValueError(
            f"min_duration_s needs a time unit ({', '.join(_TIME_UNITS)}), got {unit!r}"
        )
    n = x.size
    if n == 0:
        return ["No samples: nothing was measured, so no statistic can be computed."]
    out: list[str] = []
    if n < min_samples:
        out.append(
            f"Only {n} sample(s), fewer than {min_samples}: high percentiles (p90-p99) are "
            "interpolated from the few largest values and confidence intervals are unreliable; "
            f"collect at least {min_samples} samples."
        )
    if n >= 2:
        mean, std = float(np.mean(x)), float(np.std(x, ddof=1))
        med, spread = float(np.median(x)), mad(x)
        advice = (
            "the measurement looks unstable; try more samples, a quieter machine "
            "(pin CPU frequency, isolate cores, stop background jobs) or longer runs per sample."
        )
        if mean != 0.0 and std / abs(mean) > max_rel_spread:
            out.append(
                f"The standard deviation ({_fmt(std, unit)}) is {std / abs(mean):.0%} of the mean "
                f"({_fmt(mean, unit)}), above {max_rel_spread:.0%}: {advice}"
            )
        if med != 0.0 and spread / abs(med) > max_rel_spread:
            out.append(
                f"The median absolute deviation ({_fmt(spread, unit)}) is {spread / abs(med):.0%} "
                f"of the median ({_fmt(med, unit)}), above {max_rel_spread:.0%}: {advice}"
            )
    if scale_s is not None:
        limit_s = _DEFAULT_MIN_DURATION_S if min_duration_s is None else float(min_duration_s)
        shortest_s = float(np.min(x)) * scale_s
        n_neg = int((x < 0).sum())
        if n_neg:
            out.append(
                f"{n_neg} negative duration(s): the clock is not monotonic or a start/stop "
                "pair was swapped; use time.perf_counter() and check the timing code."
            )
        elif shortest_s < limit_s:
            out.append(
                f"The shortest value is only {_fmt(shortest_s / scale_s, unit)} "
                f"(< {_fmt(limit_s / scale_s, unit)}): timer resolution and call overhead "
                "dominate; time many iterations per sample and divide by their number."
            )
        if n >= 2 and np.ptp(x) == 0.0:
            out.append(
                f"All {n} values are identical ({_fmt(float(x[0]), unit)}): the timer may be "
                "too coarse for this benchmark; time more iterations per sample."
            )
    n_out = int(outliers_mad(x).sum())
    if n_out:
        out.append(
            f"{n_out} of {n} value(s) are outliers (modified z-score > 3.5); they are kept in "
            "every statistic. Look for interference (other jobs, throttling, GC, caches)."
        )
    return out


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample; ``ci_low``/``ci_high`` bound the median.

    NaN marks a value that cannot be computed: ``std`` needs n >= 2, and so does the
    median's CI (one value says nothing about its uncertainty).
    """

    n: int
    mean: float
    std: float
    median: float
    mad: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    ci_low: float
    ci_high: float
    confidence: float
    n_outliers_mad: int
    n_outliers_iqr: int
    warnings: tuple[str, ...]
    unit: str = "s"

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists; NaN kept as float NaN)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def summarize(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    unit: str = "s",
) -> Summary:
    """Summary of one sample: centre, spread, percentiles, median CI, outlier counts, warnings.

    Outliers are counted, never removed. ``std`` uses ddof=1. The median CI is the seeded
    percentile bootstrap of :func:`bootstrap_ci`; it is NaN for n = 1 rather than the
    zero-width interval, so a target checked on it is "not measured", not "met".

    Raises:
        ValueError: empty input, NaN/inf values, or invalid parameters.
    """
    x = _sample(values)
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    n = x.size
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, [50.0, 90.0, 95.0, 99.0]))
    if n >= 2:
        ci = bootstrap_ci(x, "median", confidence=confidence, n_resamples=n_resamples, seed=seed)
    else:
        ci = (math.nan, math.nan)
    return Summary(
        n=n,
        mean=float(np.mean(x)),
        std=float(np.std(x, ddof=1)) if n >= 2 else math.nan,
        median=float(np.median(x)),
        mad=mad(x),
        min=float(np.min(x)),
        max=float(np.max(x)),
        p50=p50,
        p90=p90,
        p95=p95,
        p99=p99,
        ci_low=ci[0],
        ci_high=ci[1],
        confidence=float(confidence),
        n_outliers_mad=int(outliers_mad(x).sum()),
        n_outliers_iqr=int(outliers_iqr(x).sum()),
        warnings=tuple(instability_warnings(x, unit=unit)),
        unit=unit,
    )


# ------------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline for one metric; see :func:`compare` for every definition.

    ``effect_size`` (Cliff's delta) and ``cohens_d`` are signed candidate minus baseline
    (positive: candidate values larger), whatever the metric's direction.
    """

    n_baseline: int
    n_candidate: int
    median_baseline: float
    median_candidate: float
    improvement: float
    improvement_ci: tuple[float, float]
    speedup: float
    speedup_ci: tuple[float, float]
    ratio: float
    mannwhitney_p: float
    welch_p: float
    effect_size: float
    cohens_d: float
    significant: bool
    method: str
    threshold: float
    verdict: str
    reason: str
    higher_is_better: bool = False
    alpha: float = 0.05
    confidence: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists; NaN kept as float NaN)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _cliffs_delta(base: np.ndarray, cand: np.ndarray) -> float:
    """P(cand > base) - P(cand < base) over all pairs, in O((m+n) log m) via sorting."""
    b = np.sort(base)
    below = np.searchsorted(b, cand, side="left").sum()  # baseline values < each candidate
    above = (b.size - np.searchsorted(b, cand, side="right")).sum()
    return float((below - above) / (b.size * cand.size))


def _cohens_d(base: np.ndarray, cand: np.ndarray) -> float:
    m, n = base.size, cand.size
    if m < 2 or n < 2:
        return math.nan
    pooled = ((m - 1) * np.var(base, ddof=1) + (n - 1) * np.var(cand, ddof=1)) / (m + n - 2)
    if pooled <= 0.0:
        return math.nan
    return float((np.mean(cand) - np.mean(base)) / math.sqrt(pooled))


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run a scipy test with its numerical warnings silenced (its NaN result says enough)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return fn()


def _mwu_p(base: np.ndarray, cand: np.ndarray) -> tuple[float, str]:
    """Two-sided Mann-Whitney U p (scipy 'auto': exact if small and tie-free, else normal
    approximation with tie and continuity correction), or NaN with the error."""
    try:
        p = float(_quiet(lambda: _sps.mannwhitneyu(base, cand, alternative="two-sided").pvalue))
    except Exception as exc:  # any failure is reported, never turned into a value
        return math.nan, f"{type(exc).__name__}: {exc}"
    return p, "" if math.isfinite(p) else "returned NaN"


def _welch_p(base: np.ndarray, cand: np.ndarray) -> float:
    if base.size < 2 or cand.size < 2:
        return math.nan
    try:
        return float(_quiet(lambda: _sps.ttest_ind(base, cand, equal_var=False).pvalue))
    except Exception:
        return math.nan


def _mwu_min_p(m: int, n: int) -> float:
    """Smallest two-sided p the exact Mann-Whitney U test can give for sizes m, n (no ties):
    complete separation, 2 / C(m+n, m)."""
    return min(1.0, 2.0 / math.comb(m + n, m))


def compare(
    baseline: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    *,
    higher_is_better: bool,
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare two independent samples of one metric and give a verdict.

    Definitions (medians, so single outliers cannot move them):

    * ``ratio = median(candidate) / median(baseline)``.
    * ``improvement = 1 - ratio`` when lower is better, ``ratio - 1`` when higher is better;
      positive always means "candidate better".
    * ``speedup`` is the factor by which the candidate is better: ``1 / ratio`` when lower
      is better (baseline time / candidate time), ``ratio`` when higher is better. It is
      reported beside ``improvement``, never instead of it.
    * ``improvement_ci``/``speedup_ci``: seeded percentile bootstrap of the ratio of
      medians, both sides resampled independently (vectorised); NaN if a resampled baseline
      median is <= 0.

    Significance (``method`` records which):

    * ``"mann-whitney-u"``: two-sided Mann-Whitney U (``scipy.stats.mannwhitneyu``),
      significant if p < alpha. Used when the sizes let p reach alpha at all, i.e. the
      complete-separation p ``2 / C(m+n, m)`` is below alpha (for alpha = 0.05: both
      sides >= 4, or 3 vs >= 5, 2 vs >= 8, 1 vs >= 40).
    * ``"bootstrap-ci"``: otherwise, as asv does, significant if the improvement CI excludes
      0. Needs >= 3 values a side; at 3 vs 3 it behaves like a range-overlap test whose
      false-call rate under no change is about 2 / C(6, 3) = 10%, so treat it as a hint.
    * ``"none"``: no test could be run; the verdict is "undetermined".

    Welch's t p (``scipy.stats.ttest_ind(equal_var=False)``), Cliff's delta and Cohen's d
    are reported, not used.

    Verdict rule:

    * ``"undetermined"`` (with ``reason``) if a side is empty or has NaN/inf, the baseline
      median is <= 0 or the candidate median < 0 (a ratio is meaningless there), the
      sizes are too small for either test, or the deciding test failed. A failed test is
      never called significant.
    * ``"improvement"`` if ``improvement > threshold`` and significant.
    * ``"regression"`` if ``improvement < -threshold`` and significant.
    * ``"no significant change"`` otherwise.

    Args:
        baseline: Values of the reference.
        candidate: Values of the variant under test.
        higher_is_better: Direction of the metric (False for times, True for throughput).
        threshold: Smallest relative change that counts (0.05 = 5%).
        alpha: Significance level of the test.
        confidence: Level of the bootstrap intervals.
        n_resamples: Bootstrap resamples per side.
        seed: Seed of the bootstrap.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: invalid parameters (data problems give "undetermined" instead).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    nan2 = (math.nan, math.nan)
    base = np.asarray(baseline, dtype=float).reshape(-1)
    cand = np.asarray(candidate, dtype=float).reshape(-1)

    def result(**kw: Any) -> Comparison:
        defaults: dict[str, Any] = {
            "n_baseline": int(base.size),
            "n_candidate": int(cand.size),
            "median_baseline": math.nan,
            "median_candidate": math.nan,
            "improvement": math.nan,
            "improvement_ci": nan2,
            "speedup": math.nan,
            "speedup_ci": nan2,
            "ratio": math.nan,
            "mannwhitney_p": math.nan,
            "welch_p": math.nan,
            "effect_size": math.nan,
            "cohens_d": math.nan,
            "significant": False,
            "method": "none",
            "threshold": float(threshold),
            "verdict": "undetermined",
            "higher_is_better": bool(higher_is_better),
            "alpha": float(alpha),
            "confidence": float(confidence),
        }
        defaults.update(kw)
        return Comparison(**defaults)

    for name, arr in (("baseline", base), ("candidate", cand)):
        if arr.size == 0:
            return result(reason=f"{name} has no values: nothing to compare")
        n_bad = int((~np.isfinite(arr)).sum())
        if n_bad:
            return result(reason=f"{name} has {n_bad} NaN/inf value(s): drop failed runs first")

    med_b, med_c = float(np.median(base)), float(np.median(cand))
    mwu_p, mwu_err = _mwu_p(base, cand)
    common: dict[str, Any] = {
        "median_baseline": med_b,
        "median_candidate": med_c,
        "mannwhitney_p": mwu_p,
        "welch_p": _welch_p(base, cand),
        "effect_size": _cliffs_delta(base, cand),
        "cohens_d": _cohens_d(base, cand),
    }
    if med_b <= 0.0 or med_c < 0.0:
        return result(
            **common,
            reason=(
                f"median baseline {med_b:.4g} / median candidate {med_c:.4g}: a relative "
                "change needs a positive baseline median and a non-negative candidate median"
            ),
        )

    ratio = med_c / med_b
    improvement = ratio - 1.0 if higher_is_better else 1.0 - ratio
    with np.errstate(divide="ignore"):
        speedup = ratio if higher_is_better else (1.0 / ratio if ratio > 0 else math.inf)

    rng = np.random.default_rng(seed)
    boot_b = _resampled(base, np.median, int(n_resamples), rng)
    boot_c = _resampled(cand, np.median, int(n_resamples), rng)
    if (boot_b > 0).all():
        r_lo, r_hi = _ci_bounds(boot_c / boot_b, confidence)
    else:
        r_lo = r_hi = math.nan
    if higher_is_better:
        imp_ci, sp_ci = (r_lo - 1.0, r_hi - 1.0), (r_lo, r_hi)
    else:
        with np.errstate(divide="ignore"):
            inv = [1.0 / r if r != 0 else math.inf for r in (r_hi, r_lo)]
        imp_ci, sp_ci = (1.0 - r_hi, 1.0 - r_lo), (inv[0], inv[1])
    common.update(
        improvement=improvement,
        improvement_ci=imp_ci,
        speedup=speedup,
        speedup_ci=sp_ci,
        ratio=ratio,
    )

    m, n = base.size, cand.size
    ci_text = f"{confidence:.0%} CI {_pct(imp_ci[0])} to {_pct(imp_ci[1])}"
    change = f"improvement {_pct(improvement)} (positive = candidate better; {ci_text})"
    if _mwu_min_p(m, n) < alpha:
        method = "mann-whitney-u"
        if mwu_err:
            return result(**common, method=method, reason=f"Mann-Whitney U test failed ({mwu_err})")
        significant = mwu_p < alpha
        evidence = f"Mann-Whitney U p={mwu_p:.3g} {'<' if significant else '>='} alpha={alpha:g}"
    elif min(m, n) >= _MIN_FALLBACK_N:
        method = "bootstrap-ci"
        if not all(math.isfinite(v) for v in imp_ci):
            return result(
                **common,
                method=method,
                reason="bootstrap CI of the improvement is undefined (a resampled baseline "
                "median was <= 0) and the samples are too small for Mann-Whitney U",
            )
        significant = imp_ci[0] > 0.0 or imp_ci[1] < 0.0
        evidence = (
            f"samples too small for Mann-Whitney U to reach alpha={alpha:g} "
            f"({m} vs {n}); the CI {'excludes' if significant else 'includes'} 0"
        )
    else:
        return result(
            **common,
            reason=(
                f"too few values ({m} vs {n}): Mann-Whitney U cannot reach p < {alpha:g} "
                f"(smallest possible p {_mwu_min_p(m, n):.3g}) and the bootstrap fallback needs "
                f">= {_MIN_FALLBACK_N} values per side; collect more samples"
            ),
        )

    if significant and improvement > threshold:
        verdict = "improvement"
    elif significant and improvement < -threshold:
        verdict = "regression"
    else:
        verdict = "no significant change"
    if verdict == "no significant change" and significant:
        why = f"significant but within the ±{threshold:.1%} threshold"
    elif verdict == "no significant change":
        why = "not significant"
    else:
        why = f"significant and beyond the ±{threshold:.1%} threshold"
    return result(
        **common,
        significant=bool(significant),
        method=method,
        verdict=verdict,
        reason=f"{change}; {evidence}; {why}",
    )


# ------------------------------------------------------------------- paired / counts


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    statistic: Statistic = "mean",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, tuple[float, float], float]:
    """Paired bootstrap of ``statistic(b - a)`` over items (e.g. per-document scores of two
    models on the same documents). Pairs are resampled together, keeping their correlation.

    The p-value is two-sided by the shift method (Efron & Tibshirani 1993, sec. 16.4;
    Berg-Kirkpatrick et al. 2012): the share of resampled statistics at least ``|observed|``
    away from the observed one, ``(1 + count) / (1 + n_resamples)``, so it is never 0 and is
    resolved only to ``1 / (n_resamples + 1)``. With n = 1 the p-value is NaN (one pair
    carries no information about variability) and the CI is ``(d, d)``; below ~10 pairs the
    interval under-covers.

    Returns:
        ``(observed statistic of b - a, (ci_low, ci_high), p_value)``.

    Raises:
        ValueError: empty input, NaN/inf values, unequal lengths or invalid parameters.
    """
    xa, xb = _sample(a, "a"), _sample(b, "b")
    if xa.size != xb.size:
        raise ValueError(f"a and b must be paired (same length), got {xa.size} and {xb.size}")
    fn = _statistic_fn(statistic)
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    d = xb - xa
    observed = float(np.asarray(fn(d.reshape(1, -1), axis=1), dtype=float).reshape(-1)[0])
    if d.size == 1:
        return observed, (observed, observed), math.nan
    dist = _resampled(d, fn, int(n_resamples), np.random.default_rng(seed))
    ci = _ci_bounds(dist, confidence)
    if not np.isfinite(dist).all():
        return observed, ci, math.nan
    extreme = int((np.abs(dist - observed) >= abs(observed)).sum())
    return observed, ci, (1 + extreme) / (1 + int(n_resamples))


def _bool_array(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def mcnemar(
    a_correct: Sequence[bool] | np.ndarray,
    b_correct: Sequence[bool] | np.ndarray,
    *,
    exact: bool | None = None,
) -> tuple[float, float]:
    """McNemar's test of two classifiers on the same items (McNemar 1947).

    Only discordant items count: ``n01`` = a right and b wrong, ``n10`` = a wrong and b
    right. Exact version (default when ``n01 + n10 < 25``, or ``exact=True``): statistic
    ``min(n01, n10)``, p the two-sided binomial test with p = 0.5
    (``scipy.stats.binomtest``). Otherwise: chi-square with Edwards' continuity correction,
    ``max(|n01 - n10| - 1, 0)**2 / (n01 + n10)`` on 1 degree of freedom. With no
    discordant items there is no evidence of a difference and both give ``(0.0, 1.0)``.

    Returns:
        ``(statistic, p_value)``.

    Raises:
        ValueError: arrays not 1-D, not boolean/0-1, or of different lengths.
    """
    a = _bool_array(a_correct, "a_correct")
    b = _bool_array(b_correct, "b_correct")
    if a.size != b.size:
        raise ValueError(
            f"a_correct and b_correct must have equal length, got {a.size} and {b.size}"
        )
    n01 = int((a & ~b).sum())
    n10 = int((~a & b).sum())
    n_disc = n01 + n10
    if n_disc == 0:
        return 0.0, 1.0
    use_exact = n_disc < _MCNEMAR_EXACT_BELOW if exact is None else exact
    if use_exact:
        k = min(n01, n10)
        return float(k), float(_sps.binomtest(k, n_disc, 0.5).pvalue)
    stat = max(abs(n01 - n10) - 1, 0) ** 2 / n_disc
    return float(stat), float(_sps.chi2.sf(stat, 1))


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; BH 1995): ``p_(i) * m / i``
    made monotone from the largest down and capped at 1. Same values as
    ``scipy.stats.false_discovery_control(p, method='bh')``; compare each to the FDR level.

    Returns:
        Adjusted p-values in input order (empty in, empty out).

    Raises:
        ValueError: not 1-D, NaN, or values outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    if p.size == 0:
        return p.copy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("pvalues must be in [0, 1] without NaN")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m, dtype=float)
    out[order] = adjusted
    return out


def correct_family(comparisons: Sequence[Comparison], *, alpha: float = 0.05) -> list[Comparison]:
    """Benjamini-Hochberg across one family of comparisons, verdicts re-judged on it.

    A family is the metrics of one suite in one comparison: testing 20 metrics at
    alpha = 0.05 would otherwise call about one change per run by chance. Comparisons
    decided by Mann-Whitney keep "improvement"/"regression" only if their adjusted p is
    below alpha (the practical threshold still applies, as it did before); those decided
    by the bootstrap CI (samples too small for the test) and "undetermined"/"failed" ones
    are left as they were. Returns new Comparisons with ``p_adjusted`` in their reason.
    """
    tested = [i for i, c in enumerate(comparisons) if c.method == "mann-whitney-u"]
    adjusted = benjamini_hochberg([comparisons[i].mannwhitney_p for i in tested]) if tested else []
    out = list(comparisons)
    for i, p_adj in zip(tested, adjusted, strict=True):
        c = comparisons[i]
        significant = bool(p_adj < alpha)
        verdict = c.verdict
        reason = f"{c.reason}; BH-adjusted p={p_adj:.3g} over a family of {len(comparisons)}"
        if c.verdict in ("improvement", "regression") and not significant:
            verdict = "no significant change"
            reason += f" >= alpha={alpha}: not significant after correction"
        out[i] = dataclasses.replace(c, significant=significant, verdict=verdict, reason=reason)
    return out


def overall_verdict(target_verdicts: Sequence[str], *, pass_share: float = 0.8) -> dict[str, Any]:
    """The original system's overall rule over a set of target verdicts.

    "PASSED" when at least ``pass_share`` of the measured targets are met; "inconclusive"
    counts as not met; "not measured" targets are left out of the share (and counted, so
    the report lists them); with nothing measured the result is "not measured".
    """
    unknown = set(target_verdicts) - set(TARGET_VERDICTS)
    if unknown:
        raise ValueError(f"unknown target verdicts {sorted(unknown)}")
    measured = [v for v in target_verdicts if v != "not measured"]
    met = sum(v == "met" for v in measured)
    share = met / len(measured) if measured else math.nan
    verdict = "not measured" if not measured else "PASSED" if share >= pass_share else "FAILED"
    return {
        "verdict": verdict,
        "met": met,
        "measured": len(measured),
        "not_measured": len(target_verdicts) - len(measured),
        "share_met": share,
        "pass_share": pass_share,
    }


# ---------------------------------------------------------------------------- failures


def failure_verdict(
    n_ok_baseline: int, n_failed_baseline: int, n_ok_candidate: int, n_failed_candidate: int
) -> tuple[str, str] | None:
    """``("failed", reason)`` when either side of a comparison had failed operations.

    A side that failed some of its work did not do the same work as the other, so no
    speed verdict is given: timings of the survivors would reward failing (the system we
    replace scored a pool whose every query failed as a 98.8% improvement). None when
    both sides completed everything.
    """
    if n_failed_baseline == 0 and n_failed_candidate == 0:
        return None
    parts = []
    for side, ok, failed in (
        ("baseline", n_ok_baseline, n_failed_baseline),
        ("candidate", n_ok_candidate, n_failed_candidate),
    ):
        if failed:
            parts.append(f"{side} failed {failed} of {ok + failed} operations")
    return "failed", "; ".join(parts) + ": no speed verdict on partial work"


# ---------------------------------------------------------------------------- targets


def check_target(
    ci_low: float | None,
    ci_high: float | None,
    *,
    op: str,
    threshold: float,
    failed: bool = False,
) -> str:
    """Target verdict from a confidence interval, so noise alone cannot pass or fail it.

    ``"met"`` if every value in ``[ci_low, ci_high]`` satisfies ``value <op> threshold``,
    ``"not met"`` if none does, ``"inconclusive"`` if the interval straddles the threshold,
    ``"not measured"`` if a bound is None or NaN.

    Args:
        ci_low: Lower CI bound (None or NaN when nothing was measured).
        ci_high: Upper CI bound.
        op: One of ``"<"``, ``"<="``, ``">"``, ``">="``.
        threshold: The target value.
        failed: The evidence had failed operations (see :func:`failure_verdict`): the
            target is "not met" whatever the interval says.

    Returns:
        One of :data:`TARGET_VERDICTS`.

    Raises:
        ValueError: unknown ``op`` or ``ci_low > ci_high``.
    """
    if op not in _TARGET_OPS:
        raise ValueError(f"op must be one of {_TARGET_OPS}, got {op!r}")
    if failed:
        return "not met"
    if ci_low is None or ci_high is None:
        return "not measured"
    lo, hi = float(ci_low), float(ci_high)
    if math.isnan(lo) or math.isnan(hi):
        return "not measured"
    if lo > hi:
        raise ValueError(f"ci_low ({lo}) is above ci_high ({hi})")
    if op == "<":
        met, violated = hi < threshold, lo >= threshold
    elif op == "<=":
        met, violated = hi <= threshold, lo > threshold
    elif op == ">":
        met, violated = lo > threshold, hi <= threshold
    else:
        met, violated = lo >= threshold, hi < threshold
    if met:
        return "met"
    if violated:
        return "not met"
    return "inconclusive"
