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
    "correct_family",
    "failure_verdict",
    "flip_rate",
    "instability_warnings",
    "mad",
    "mcnemar",
    "outliers_iqr",
    "outliers_mad",
    "overall_verdict",
    "paired_bootstrap",
    "percentile",
    "summarize",
]

VERDICTS = ("improvement", "regression", "no significant change", "undetermined", "failed")
TARGET_VERDICTS = ("met", "not met", "inconclusive", "not measured")
#: Values of ``Comparison.method``: how significance was decided (or that it was not).
METHODS = ("mann-whitney-u", "bootstrap-ci", "none")

#: Largest number of resampled values held in memory at once (rows x n). Chunks of 2 MB
#: stay in cache and in malloc's heap; 40 MB ones were mapped and faulted in afresh each
#: time, 10 to 30% slower (same numbers: chunking does not change the draws).
_MAX_RESAMPLE_ELEMENTS = 250_000
#: Half-width, in standard deviations of a resample median's rank (about √n / 2), of the
#: rank window in which :class:`_RankMedian` looks for a resample's middle values.
_RANK_WINDOW_SIGMAS = 16
#: Resample size from which :class:`_RankMedian` counts ranks one row at a time (cheaper
#: than offsetting every rank into one long bincount when the rows are few and long).
_RANK_ROW_COUNT_MIN_N = 4096
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
    change the result. ``np.median`` of finite float data takes :class:`_RankMedian`, which
    gives the same numbers from the same draws without partitioning every resample.
    """
    n = x.size
    rows = max(1, _MAX_RESAMPLE_ELEMENTS // n)
    out = np.empty(n_resamples, dtype=float)
    median = (
        _RankMedian(x)
        if fn is np.median and x.dtype == np.float64 and bool(np.isfinite(x).all())
        else None
    )
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        if median is not None:
            out[start:stop] = median(idx)
            continue
        res = np.asarray(fn(x[idx], axis=1), dtype=float)
        if res.shape != (stop - start,):
            raise ValueError(
                f"statistic returned shape {res.shape} for a ({stop - start}, {n}) array with "
                f"axis=1; it must reduce along axis to shape ({stop - start},)"
            )
        out[start:stop] = res
    return out


class _RankMedian:
    """``np.median(x[idx], axis=1)``, bit for bit, from ranks instead of values.

    ``x`` is sorted once; ``rank[i]`` is the position of ``x[i]`` in the sorted copy
    ``xs`` (ties broken by position), so the k-th smallest value of a resample is
    ``xs[k-th smallest rank it drew]``. That rank is found by counting how often each rank
    was drawn in a window of ±``_RANK_WINDOW_SIGMAS``·√n/2 ranks around the middle
    (``bincount``, then a cumulative sum per row); ranks below and above the window fall
    into one bucket each. A resample median's rank has a standard deviation of about
    √n/2, so a row whose middle values lie outside the window essentially never occurs;
    if one does, that row is partitioned as ``np.median`` would. The median is then
    computed as ``np.median`` finishes: ``np.mean`` of the middle value (odd n) or the two
    middle values (even n), which also gives -0.0 as 0.0 the way it does.

    Same draws, same numbers (tests/test_stats.py checks equality with ``np.median``);
    about 2.5x quicker on large samples, where partitioning each resample dominated the
    report's time (drawing the indices is now the larger part).
    """

    def __init__(self, x: np.ndarray) -> None:
        n = x.size
        order = np.argsort(x, kind="stable")
        rank = np.empty(n, dtype=np.intp)
        rank[order] = np.arange(n)
        self.x, self.xs = x, x[order]
        # the middle order statistic(s), 0-based: one for odd n, two for even n
        self.k = sorted({(n - 1) // 2, n // 2})
        half = math.ceil(_RANK_WINDOW_SIGMAS * math.sqrt(n) / 2) + 1
        self.lo = max(0, self.k[0] - half)  # first rank in the window
        width = min(n, self.k[-1] + half + 1) - self.lo
        self.buckets = width + 2
        # bucket of each original index: 0 below the window, 1..width ranks lo.., last above
        self.bucket = np.clip(rank - (self.lo - 1), 0, width + 1).astype(np.int32)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        m, w = idx.shape[0], self.buckets
        drawn = self.bucket[idx]
        if idx.shape[1] >= _RANK_ROW_COUNT_MIN_N:  # few long rows: count row by row
            counts = np.empty((m, w), dtype=np.intp)
            for i, row in enumerate(drawn):
                counts[i] = np.bincount(row, minlength=w)
        else:  # many short rows: one bincount over row-offset buckets
            drawn += (np.arange(m, dtype=drawn.dtype) * w)[:, None]
            counts = np.bincount(drawn.reshape(-1), minlength=m * w).reshape(m, w)
        cum = np.cumsum(counts, axis=1)
        found = [(cum <= k).sum(axis=1) for k in self.k]  # bucket holding order statistic k
        outside = (found[0] == 0) | (found[-1] == w - 1)
        ranks = [np.where(outside, 0, f + (self.lo - 1)) for f in found]
        # np.median's last step: the mean of the middle value(s) (which turns -0.0 into 0.0)
        out = np.mean(np.stack([self.xs[r] for r in ranks], axis=1), axis=1)
        if outside.any():
            out[outside] = np.median(self.x[idx[outside]], axis=1)
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


def proportion_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a share k/n.

    A bootstrap of 0/1 outcomes with no failures gives (0, 0): zero errors in 2,000
    requests would prove an error rate of exactly 0. The exact interval's upper bound
    (about 0.18% there) is what the sample supports.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(_sps.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(_sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


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
    complete separation, 2 / C(m+n, m), in logs so large samples do not overflow."""
    log_c = math.lgamma(m + n + 1) - math.lgamma(m + 1) - math.lgamma(n + 1)
    return min(1.0, 2.0 * math.exp(-log_c))


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


def flip_rate(
    a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray
) -> dict[str, float]:
    """How often two models disagree on the same items, split by direction.

    Two models with equal accuracy can still answer different items right; the flip rate
    (share of items whose correctness differs) shows that churn, which an accuracy
    difference hides. Returns ``flip_rate``, ``gained`` (b right where a was wrong) and
    ``lost`` (b wrong where a was right), each a share of all items.

    Raises:
        ValueError: empty input or sides of different length.
    """
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"flip_rate needs two equal-length non-empty 1-D arrays, got {a.shape}, {b.shape}"
        )
    n = float(a.size)
    gained = float(np.sum(~a & b)) / n
    lost = float(np.sum(a & ~b)) / n
    return {"flip_rate": gained + lost, "gained": gained, "lost": lost}


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


# =====================================================================================
# Survival statistics (right-censored times): Kaplan-Meier curve, median, median ratio.
# Appended section; used for "time until an event" metrics such as steps to generalise,
# where a run that never reached the event within its budget is censored at the budget.
# =====================================================================================

__all__ += [
    "CONF_TYPES",
    "KaplanMeier",
    "SurvivalComparison",
    "check_survival_target",
    "kaplan_meier",
    "km_median",
    "km_median_bounds",
    "km_median_ratio_ci",
]

#: Transforms of the pointwise Greenwood band: ``"log-log"`` (Kalbfleisch & Prentice 1980,
#: lifelines' default; stays inside [0, 1]) and ``"log"`` (R ``survfit``'s default).
CONF_TYPES = ("log-log", "log")
#: Survival values this close to 0.5 count as exactly 0.5 (a product of fractions such as
#: 3/4 * 2/3 is 0.5 only up to rounding).
_HALF_TOL = 1e-9


def _survival_data(times: Any, events: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``times`` as a finite non-negative float array, ``events`` as booleans of equal length."""
    t = _sample(times, f"{name} times", allow_empty=True)
    e = _bool_array(events, f"{name} events")
    if t.size != e.size:
        raise ValueError(f"{name}: times and events must have equal length, got {t.size}, {e.size}")
    if (t < 0).any():
        raise ValueError(f"{name} times must be >= 0")
    return t, e


@dataclass(frozen=True)
class KaplanMeier:
    """The Kaplan-Meier estimate at each distinct time with at least one event.

    ``survival[i]`` is S(t) just after ``times[i]``; S = 1 before the first event time.
    ``lower``/``upper`` are the pointwise confidence band (Greenwood variance, transformed
    by ``conf_type``); where S = 0 the variance is undefined and the band keeps its
    previous upper value (and a lower value of 0), so it never claims more certainty than
    the data before that point. ``last_time`` is the largest observed time, event or not:
    beyond it the curve says nothing.
    """

    times: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    survival: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    n: int
    n_events: int
    last_time: float
    confidence: float
    conf_type: str

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _km_steps(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct event times, number at risk and number of events at each."""
    if not e.any():
        empty = np.empty(0)
        return empty, empty.astype(int), empty.astype(int)
    event_times, d = np.unique(t[e], return_counts=True)
    t_sorted = np.sort(t)
    at_risk = t.size - np.searchsorted(t_sorted, event_times, side="left")
    return event_times, at_risk.astype(int), d.astype(int)


def kaplan_meier(
    times: Sequence[float] | np.ndarray,
    events: Sequence[bool] | np.ndarray,
    *,
    confidence: float = 0.95,
    conf_type: str = "log-log",
) -> KaplanMeier:
    """Kaplan-Meier estimate of the survival curve S(t) = P(T > t) from right-censored data.

    At each distinct event time ``t_i`` with ``n_i`` at risk (times >= t_i) and ``d_i``
    events, S drops by the factor ``1 - d_i / n_i`` (Kaplan & Meier 1958); a censored time
    equal to an event time counts as at risk there. Greenwood's variance
    ``S^2 * sum d_i / (n_i (n_i - d_i))`` gives the pointwise band, on the log(-log S)
    scale (``"log-log"``) or the log S scale (``"log"``, capped at 1).

    Args:
        times: Observed times (event or censoring), finite and >= 0.
        events: True where the time is an event, False where it is censored.
        confidence: Level of the pointwise band.
        conf_type: One of :data:`CONF_TYPES`.

    Raises:
        ValueError: NaN/inf or negative times, lengths that differ, or bad parameters.
    """
    t, e = _survival_data(times, events, "kaplan_meier")
    _check_confidence(confidence)
    if conf_type not in CONF_TYPES:
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    et, n, d = _km_steps(t, e)
    s = np.cumprod(1.0 - d / n) if et.size else np.empty(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gw = np.cumsum(d / (n * (n - d))) if et.size else np.empty(0)
    z = float(_sps.norm.ppf(0.5 + confidence / 2.0))
    lower, upper = np.zeros_like(s), np.zeros_like(s)
    prev_upper = 1.0
    for i in range(s.size):
        if s[i] <= 0.0 or not np.isfinite(gw[i]):
            lower[i], upper[i] = 0.0, prev_upper
            continue
        if s[i] >= 1.0:  # not reached with events, kept for safety
            lower[i] = upper[i] = 1.0
        elif conf_type == "log":
            half = z * math.sqrt(gw[i])
            lower[i], upper[i] = s[i] * math.exp(-half), min(1.0, s[i] * math.exp(half))
        else:
            half = z * math.sqrt(gw[i]) / abs(math.log(s[i]))
            lower[i], upper[i] = s[i] ** math.exp(half), s[i] ** math.exp(-half)
        prev_upper = upper[i]
    return KaplanMeier(
        times=tuple(float(v) for v in et),
        at_risk=tuple(int(v) for v in n),
        events=tuple(int(v) for v in d),
        survival=tuple(float(v) for v in s),
        lower=tuple(float(v) for v in lower),
        upper=tuple(float(v) for v in upper),
        n=int(t.size),
        n_events=int(e.sum()),
        last_time=float(t.max()) if t.size else math.nan,
        confidence=float(confidence),
        conf_type=conf_type,
    )


def _median_bounds(times: Sequence[float], events: Sequence[bool]) -> tuple[float, float]:
    """Core of :func:`km_median_bounds` on checked data, in plain Python: the bootstrap
    calls it thousands of times on a few runs, where numpy's per-call cost dominates."""
    pairs = sorted(zip(times, events, strict=True), key=lambda p: (p[0], not p[1]))
    n = len(pairs)
    if n == 0:
        return (0.0, math.inf)
    s, half_at, i = 1.0, math.nan, 0
    while i < n:
        t, j, d = pairs[i][0], i, 0
        while j < n and pairs[j][0] == t:
            d += bool(pairs[j][1])
            j += 1
        if d:
            s *= 1.0 - d / (n - i)
            if not math.isnan(half_at):
                if s < 0.5 - _HALF_TOL:  # the end of a plateau at exactly 0.5: midpoint
                    m = (half_at + t) / 2.0
                    return (m, m)
            elif abs(s - 0.5) <= _HALF_TOL:
                half_at = float(t)
            elif s < 0.5:
                return (float(t), float(t))
        i = j
    return (half_at if not math.isnan(half_at) else float(pairs[-1][0]), math.inf)


def km_median_bounds(
    times: Sequence[float] | np.ndarray, events: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """Where the Kaplan-Meier median lies: ``(m, m)`` when it is defined, otherwise
    ``(lowest value it can take, inf)``.

    The median is the first time S(t) <= 0.5; where S sits at exactly 0.5, the midpoint to
    the next time it drops (as R's ``survfit``, and as ``np.median`` for uncensored data).
    It is undefined when the curve never drops below 0.5 within the data. If the curve
    ends above 0.5 the median lies beyond the largest observed time; if it ends at exactly
    0.5 it lies at or beyond the time the curve reached 0.5. With no data, ``(0, inf)``.
    """
    t, e = _survival_data(times, events, "km_median_bounds")
    return _median_bounds(t.tolist(), e.tolist())


def km_median(times: Sequence[float] | np.ndarray, events: Sequence[bool] | np.ndarray) -> float:
    """Kaplan-Meier median: the first time S(t) <= 0.5 (midpoint rule where S is exactly
    0.5, so uncensored data give ``np.median``); NaN when the curve never drops below 0.5
    within the data, i.e. more than half the runs are censored before the event. That
    median is undefined, not the budget: it is never replaced by a stand-in.

    Raises:
        ValueError: as :func:`kaplan_meier`.
    """
    lo, hi = km_median_bounds(times, events)
    return lo if lo == hi else math.nan


def _km_median_ci(km: KaplanMeier) -> tuple[float, float]:
    """Brookmeyer-Crowley style interval read off the pointwise band: from the first time
    the lower band is <= 0.5 to the first time the upper band is. The upper end is inf
    when the upper band never gets there; both are NaN when neither band does."""
    times = np.asarray(km.times)
    lo = next((t for t, v in zip(times, km.lower, strict=True) if v <= 0.5), math.nan)
    hi = next((t for t, v in zip(times, km.upper, strict=True) if v <= 0.5), math.inf)
    if math.isnan(lo):
        return (math.nan, math.nan)
    return (float(lo), float(hi))


@dataclass(frozen=True)
class SurvivalComparison:
    """Candidate against baseline for a time-to-event metric (lower is better).

    ``improvement = 1 - median_candidate / median_baseline`` (Kaplan-Meier medians);
    positive means the candidate reaches the event sooner. See :func:`km_median_ratio_ci`.
    """

    n_baseline: int
    n_candidate: int
    events_baseline: int
    events_candidate: int
    median_baseline: float
    median_candidate: float
    median_baseline_ci: tuple[float, float]
    median_candidate_ci: tuple[float, float]
    ratio: float
    improvement: float
    improvement_ci: tuple[float, float]
    improvement_bounds: tuple[float, float]
    n_resamples: int
    n_resamples_undefined: int
    paired: bool
    confidence: float
    verdict: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists; NaN/inf kept as floats)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _improvement_range(base: tuple[float, float], cand: tuple[float, float]) -> tuple[float, float]:
    """Range of ``1 - c / b`` over medians ``b`` in ``base`` and ``c`` in ``cand`` (b > 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        low = 1.0 - cand[1] / base[0] if base[0] > 0 else -math.inf
        high = 1.0 - cand[0] / base[1]
    return (float(low) if not math.isnan(low) else -math.inf, float(high))


def _tail(values: np.ndarray, q: float) -> float:
    """Type-7 percentile that returns an infinite neighbour instead of NaN (inf - inf)."""
    x = np.sort(values)
    pos = q / 100.0 * (x.size - 1)
    i, j = math.floor(pos), math.ceil(pos)
    if not (math.isfinite(x[i]) and math.isfinite(x[j])):
        return float(x[i] if q < 50 else x[j])
    return float(x[i] + (x[j] - x[i]) * (pos - i))


def km_median_ratio_ci(
    base_times: Sequence[float] | np.ndarray,
    base_events: Sequence[bool] | np.ndarray,
    cand_times: Sequence[float] | np.ndarray,
    cand_events: Sequence[bool] | np.ndarray,
    *,
    paired: bool = False,
    threshold: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> SurvivalComparison:
    """Improvement in a time-to-event metric from Kaplan-Meier medians, with a bootstrap CI.

    Each side is (times, events): an event time where the event happened (e.g. the step
    a run generalised), otherwise the censoring time (e.g. the step budget) with event
    False. Failed runs (errors) are neither and must be left out by the caller.

    * ``improvement = 1 - KM median(candidate) / KM median(baseline)``.
    * A censored median: when a side's curve never drops below 0.5 (more than half its
      runs censored) its median is undefined (NaN), never replaced by the budget. Then
      ``improvement`` is NaN and the verdict ``"undetermined"``; ``improvement_bounds``
      still says what the censoring allows (e.g. a baseline median beyond a budget B and
      a candidate median c give ``1 - c / B <= improvement <= 1``), for the report's text
      only: it carries no sampling uncertainty, so no verdict is drawn from it.
    * ``improvement_ci``: seeded percentile bootstrap over runs (seeds). ``paired=True``
      resamples run indices once for both sides (runs i of both sides share a seed, data
      and initial weights, so the pairing is kept); otherwise each side is resampled on
      its own. A resample in which a median is undefined contributes the whole range its
      censoring allows (``1 - c / b`` over ``b`` in [lower bound, inf) etc.): its lowest
      value to the lower percentile and its highest to the upper one, so censoring widens
      the interval instead of being dropped or invented. ``n_resamples_undefined`` counts
      them. The interval is reported only when the observed medians are defined.

    Verdict (:data:`VERDICTS`): ``"undetermined"`` when a median is undefined or a side
    has no runs; else ``"improvement"`` if the CI lies above 0 and the improvement exceeds
    the practical ``threshold``, ``"regression"`` if the CI lies below 0 and the improvement
    is below ``-threshold``, ``"no significant change"`` otherwise (the same rule as
    :func:`compare`). Targets use :func:`check_survival_target`.

    Raises:
        ValueError: bad input (NaN/inf/negative times, lengths, parameters); ``paired``
            with sides of different length.
    """
    bt, be = _survival_data(base_times, base_events, "baseline")
    ct, ce = _survival_data(cand_times, cand_events, "candidate")
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    if paired and bt.size != ct.size:
        raise ValueError(
            f"paired needs one baseline and one candidate run per seed, got {bt.size} and "
            f"{ct.size}; drop failed runs from both sides or use paired=False"
        )
    nan2 = (math.nan, math.nan)
    b_bounds = km_median_bounds(bt, be)
    c_bounds = km_median_bounds(ct, ce)
    med_b = b_bounds[0] if b_bounds[0] == b_bounds[1] else math.nan
    med_c = c_bounds[0] if c_bounds[0] == c_bounds[1] else math.nan
    b_ci = _km_median_ci(kaplan_meier(bt, be, confidence=confidence)) if bt.size else nan2
    c_ci = _km_median_ci(kaplan_meier(ct, ce, confidence=confidence)) if ct.size else nan2

    def result(**kw: Any) -> SurvivalComparison:
        base: dict[str, Any] = {
            "n_baseline": int(bt.size),
            "n_candidate": int(ct.size),
            "events_baseline": int(be.sum()),
            "events_candidate": int(ce.sum()),
            "median_baseline": med_b,
            "median_candidate": med_c,
            "median_baseline_ci": b_ci,
            "median_candidate_ci": c_ci,
            "ratio": math.nan,
            "improvement": math.nan,
            "improvement_ci": nan2,
            "improvement_bounds": nan2,
            "n_resamples": int(n_resamples),
            "n_resamples_undefined": 0,
            "paired": bool(paired),
            "confidence": float(confidence),
            "verdict": "undetermined",
        }
        base.update(kw)
        return SurvivalComparison(**base)

    for name, times in (("baseline", bt), ("candidate", ct)):
        if times.size == 0:
            return result(reason=f"{name} has no runs: nothing to compare")
        if (times <= 0).any():
            return result(reason=f"{name} has times <= 0: a ratio of medians needs times > 0")
    bounds = _improvement_range(b_bounds, c_bounds)
    undefined = [
        f"{name} median is undefined: {int(n - ev)} of {n} runs censored, the Kaplan-Meier "
        f"curve never drops below 0.5 (median >= {lo:.4g})"
        for name, (lo, hi), n, ev in (
            ("baseline", b_bounds, bt.size, be.sum()),
            ("candidate", c_bounds, ct.size, ce.sum()),
        )
        if hi != lo
    ]
    if undefined:
        return result(
            improvement_bounds=bounds,
            reason="; ".join(undefined)
            + f"; censoring only bounds the improvement to [{bounds[0]:.3g}, {bounds[1]:.3g}]",
        )

    ratio = med_c / med_b
    improvement = 1.0 - ratio
    rng = np.random.default_rng(seed)
    lows = np.empty(int(n_resamples))
    highs = np.empty(int(n_resamples))
    n_undefined = 0
    b_t, b_e, c_t, c_e = bt.tolist(), be.tolist(), ct.tolist(), ce.tolist()
    for k in range(int(n_resamples)):
        bi = rng.integers(0, bt.size, bt.size).tolist()
        ci = bi if paired else rng.integers(0, ct.size, ct.size).tolist()
        rb = _median_bounds([b_t[i] for i in bi], [b_e[i] for i in bi])
        rc = _median_bounds([c_t[i] for i in ci], [c_e[i] for i in ci])
        lows[k], highs[k] = _improvement_range(rb, rc)
        n_undefined += rb[0] != rb[1] or rc[0] != rc[1]
    tail = (1.0 - confidence) / 2.0 * 100.0
    ci = (_tail(lows, tail), _tail(highs, 100.0 - tail))
    if ci[0] > 0.0 and improvement > threshold:
        verdict = "improvement"
    elif ci[1] < 0.0 and improvement < -threshold:
        verdict = "regression"
    else:
        verdict = "no significant change"
    text = (
        f"KM median {med_b:.4g} -> {med_c:.4g}: improvement {_pct(improvement)} "
        f"({confidence:.0%} CI {_pct(ci[0])} to {_pct(ci[1])}, "
        f"{'paired' if paired else 'independent'} bootstrap over runs"
    )
    if n_undefined:
        text += f"; {n_undefined} of {n_resamples} resamples had an undefined median"
    return result(
        ratio=ratio,
        improvement=improvement,
        improvement_ci=ci,
        improvement_bounds=(improvement, improvement),
        n_resamples_undefined=int(n_undefined),
        verdict=verdict,
        reason=text + ")",
    )


def check_survival_target(result: SurvivalComparison, *, op: str, threshold: float) -> str:
    """Target verdict for the improvement of a :class:`SurvivalComparison`.

    As :func:`check_target` on ``improvement_ci``, except that a comparison whose median
    is undefined because of censoring is ``"inconclusive"`` (it was measured, the runs
    just did not reach the event within their budget), and one with a side without runs
    (or other unusable data, e.g. times <= 0) is ``"not measured"``.
    """
    if op not in _TARGET_OPS:
        raise ValueError(f"op must be one of {_TARGET_OPS}, got {op!r}")
    if math.isnan(result.improvement):
        censored = not math.isnan(result.improvement_bounds[0])
        return "inconclusive" if censored else "not measured"
    return check_target(*result.improvement_ci, op=op, threshold=threshold)


# =====================================================================================
# History: change-point detection and rolling z-score over a series of runs.
# Appended section; used by forgebench.history for regression detection: each value is
# one run's level of one metric (the log of per-run medians, so a step is a relative
# change). Two methods, named in every result: binary segmentation with a calibrated
# max-t test (a change-point fit, as asv's step detection) and conbench's lookback z-score.
# =====================================================================================

__all__ += [
    "CHANGE_POINT_METHOD",
    "ROLLING_Z_METHOD",
    "ChangePoints",
    "change_point_critical_value",
    "change_points",
    "rolling_zscore",
]

CHANGE_POINT_METHOD = "change-point"
ROLLING_Z_METHOD = "rolling z-score"
#: Simulated null series behind each change-point critical value (p resolves to 1/2001).
_CP_SIMULATIONS = 2000
#: Null distributions already simulated, by (length, min_size, simulations, seed).
_CP_NULL_CACHE: dict[tuple[int, int, int, int], np.ndarray] = {}
_CP_CACHE_SIZE = 256


@dataclass(frozen=True)
class ChangePoints:
    """Change points of one series (see :func:`change_points`).

    ``indices`` are the first positions of each new segment, ascending; ``levels`` the
    mean of each of the ``len(indices) + 1`` segments. ``statistics``, ``critical_values``
    and ``p_values`` belong to the split that created each index, in ``indices`` order.
    ``top_*`` describe the test over the whole series, reported whether or not it split
    (NaN when the series is too short to test).
    """

    indices: tuple[int, ...]
    levels: tuple[float, ...]
    statistics: tuple[float, ...]
    critical_values: tuple[float, ...]
    p_values: tuple[float, ...]
    top_statistic: float
    top_critical_value: float
    top_p_value: float
    alpha: float
    min_size: int
    method: str = CHANGE_POINT_METHOD

    def as_dict(self) -> dict[str, Any]:
        """Field name to builtin value (tuples as lists; NaN kept as float NaN)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _split_max_t(y: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``y`` (shape (rows, m)): the largest |two-sample t| over every split into
    a left part of ``k`` and a right part of ``m - k`` values (both >= ``min_size``), with
    the variance pooled over both parts (m - 2 degrees of freedom), and the best ``k``.

    Rows are centred first, and a pooled sum of squares below 1e-12 of the row's total is
    taken as 0, so rounding cannot make a constant series look like a step. Equal means
    with zero variance give 0; different means with zero variance give inf (two exact
    levels, e.g. a deterministic count that changed, are a certain change).
    """
    rows, m = y.shape
    y = y - y.mean(axis=1, keepdims=True)
    s1 = np.cumsum(y, axis=1)
    s2 = np.cumsum(y * y, axis=1)
    k = np.arange(min_size, m - min_size + 1)
    n_left = k.astype(float)
    n_right = m - n_left
    left1, left2 = s1[:, k - 1], s2[:, k - 1]
    right1, right2 = s1[:, -1:] - left1, s2[:, -1:] - left2
    sse = (left2 - left1**2 / n_left) + (right2 - right1**2 / n_right)
    total = s2[:, -1:]
    sse = np.where(sse <= 1e-12 * total, 0.0, sse)
    diff = np.abs(right1 / n_right - left1 / n_left)
    diff = np.where(diff <= 1e-12 * np.sqrt(total), 0.0, diff)
    scale = np.sqrt(sse / (m - 2) * (1.0 / n_left + 1.0 / n_right))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(diff == 0.0, 0.0, diff / scale)
    best = np.argmax(stat, axis=1)
    return stat[np.arange(rows), best], k[best]


def _null_max_t(m: int, min_size: int, n_simulations: int, seed: int) -> np.ndarray:
    """Sorted max-t of ``n_simulations`` i.i.d. standard normal series of length ``m``.

    The statistic is invariant to location and scale, so this is its exact null
    distribution for any normal noise level, up to Monte Carlo error. Seeded by
    ``(seed, m, min_size)``: equal input gives equal critical values. Simulated in chunks
    of at most ``_MAX_RESAMPLE_ELEMENTS`` values; cached per argument tuple.
    """
    key = (m, min_size, n_simulations, seed)
    cached = _CP_NULL_CACHE.get(key)
    if cached is not None:
        return cached
    rng = np.random.default_rng([seed, m, min_size])
    rows = max(1, _MAX_RESAMPLE_ELEMENTS // m)
    parts = []
    for start in range(0, n_simulations, rows):
        stop = min(start + rows, n_simulations)
        parts.append(_split_max_t(rng.standard_normal((stop - start, m)), min_size)[0])
    null = np.sort(np.concatenate(parts))
    null.setflags(write=False)
    if len(_CP_NULL_CACHE) >= _CP_CACHE_SIZE:
        _CP_NULL_CACHE.pop(next(iter(_CP_NULL_CACHE)))
    _CP_NULL_CACHE[key] = null
    return null


def change_point_critical_value(
    m: int,
    *,
    alpha: float = 0.05,
    min_size: int = 1,
    n_simulations: int = _CP_SIMULATIONS,
    seed: int = 0,
) -> float:
    """The (1 - alpha) quantile of the max-t statistic over a normal series of length ``m``.

    Raises:
        ValueError: ``m`` too short to test (needs ``m >= max(3, 2 * min_size)``) or bad
            parameters.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if min_size < 1 or m < max(3, 2 * min_size):
        raise ValueError(f"a series of {m} values cannot be split with min_size={min_size}")
    _check_resamples(n_simulations)
    null = _null_max_t(int(m), int(min_size), int(n_simulations), int(seed))
    return float(np.quantile(null, 1.0 - alpha))


def change_points(
    values: Sequence[float] | np.ndarray,
    *,
    alpha: float = 0.05,
    min_size: int = 1,
    n_simulations: int = _CP_SIMULATIONS,
    seed: int = 0,
) -> ChangePoints:
    """Steps in the level of a series, by binary segmentation with a calibrated test.

    A piecewise-constant fit, as asv's step detection, but with the penalty replaced by
    a test of known level: a segment of ``m`` values is split where the two-sample t
    statistic (pooled variance) is largest, if that maximum exceeds the (1 - ``alpha``)
    quantile of its distribution under "no change" (Worsley 1979's likelihood-ratio test
    for one shift in a normal mean with unknown variance; the quantile is simulated,
    seeded, from ``n_simulations`` normal series of length ``m``). Both parts are then
    searched again (Vostrikova 1981). So on a series without a step, normal noise of any
    size splits it with probability ``alpha``; heavier tails than normal split it more
    often. Segments hold at least ``min_size`` values; ``min_size=1`` lets the last value
    alone form a segment, so a regression in the newest run can be found. Like all binary
    segmentation it can miss an excursion that returns to the old level within the series
    (no single split separates it well); a step into the newest level is a single split.

    Small-n limits: a series needs ``max(3, 2 * min_size)`` values to be tested at all.
    The critical value (in pooled standard deviations) is about 5.3 at 5 values, 3.9 at
    8 and 3.2 from 20 values on, so short histories find only large steps.

    Args:
        values: 1-D finite series in time order (e.g. log of per-run medians).
        alpha: Level of each split test.
        min_size: Fewest values per segment.
        n_simulations: Simulated null series per critical value.
        seed: Seed of the simulation.

    Returns:
        A :class:`ChangePoints`.

    Raises:
        ValueError: empty input, NaN/inf values or invalid parameters.
    """
    y = _sample(values)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if int(min_size) != min_size or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    _check_resamples(n_simulations)
    shortest = max(3, 2 * int(min_size))

    def test(lo: int, hi: int) -> tuple[float, int, float, float]:
        stat, split = _split_max_t(y[lo:hi].reshape(1, -1), int(min_size))
        null = _null_max_t(hi - lo, int(min_size), int(n_simulations), int(seed))
        crit = float(np.quantile(null, 1.0 - alpha))
        p = (1 + int(null.size - np.searchsorted(null, stat[0], side="left"))) / (1 + null.size)
        return float(stat[0]), lo + int(split[0]), crit, p

    top = (math.nan, 0, math.nan, math.nan)
    found: dict[int, tuple[float, float, float]] = {}
    pending = [(0, y.size)]
    while pending:
        lo, hi = pending.pop()
        if hi - lo < shortest:
            continue
        stat, split, crit, p = test(lo, hi)
        if (lo, hi) == (0, y.size):
            top = (stat, split, crit, p)
        if stat > crit:
            found[split] = (stat, crit, p)
            pending += [(lo, split), (split, hi)]
    indices = tuple(sorted(found))
    levels = tuple(float(np.mean(part)) for part in np.split(y, indices))
    return ChangePoints(
        indices=indices,
        levels=levels,
        statistics=tuple(found[i][0] for i in indices),
        critical_values=tuple(found[i][1] for i in indices),
        p_values=tuple(found[i][2] for i in indices),
        top_statistic=top[0],
        top_critical_value=top[2],
        top_p_value=top[3],
        alpha=float(alpha),
        min_size=int(min_size),
    )


def rolling_zscore(values: Sequence[float] | np.ndarray, *, window: int = 100) -> np.ndarray:
    """conbench's lookback z-score of each value against the ``window`` values before it.

    ``z[i] = (x[i] - mean(prior)) / std(prior, ddof=1)`` with ``prior`` the up to
    ``window`` values before ``i`` (conbench draws its distribution from up to 100 earlier
    commits). NaN where fewer than two values precede; with a zero prior spread, 0 if the
    value equals the prior mean and +/-inf otherwise. Under normal noise and ``w`` prior
    values, ``z * sqrt(w / (w + 1))`` follows Student's t with ``w - 1`` degrees of freedom,
    so a fixed threshold raises more false alarms on short histories.

    Returns:
        Array of z-scores in input order.

    Raises:
        ValueError: empty input, NaN/inf values, or ``window < 2``.
    """
    x = _sample(values)
    if int(window) != window or window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    out = np.full(x.size, math.nan)
    for i in range(2, x.size):
        prior = x[max(0, i - int(window)) : i]
        mean, std = float(np.mean(prior)), float(np.std(prior, ddof=1))
        if std > 0.0:
            out[i] = (x[i] - mean) / std
        elif x[i] == mean:
            out[i] = 0.0
        else:
            out[i] = math.copysign(math.inf, x[i] - mean)
    return out
