"""Descriptive statistics of one sample: centre, spread, percentiles, outliers, warnings.

NaN or infinite values are rejected with ``ValueError``; a statistic that cannot be
computed is NaN, never a stand-in such as 0. Every percentile is defined from n = 1
(type-7 interpolation), unlike the system this replaces, which reported ``p95 = 0``
below 20 samples. Outlier rules flag values and never drop them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from forgebench.stats._common import _check_confidence, _fmt, _plain, _sample
from forgebench.stats.intervals import quantile_ci

#: Shortest reliable duration in seconds when ``instability_warnings`` is given a time unit.
_DEFAULT_MIN_DURATION_S = 1e-6
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


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

    Outliers are counted, never removed. ``std`` uses ddof=1. The median CI is the
    distribution-free order-statistic interval (:func:`quantile_ci`); below 6 values it
    does not exist at 95% and is NaN, never a narrow interval read from too few values.
    ``n_resamples`` and ``seed`` are accepted for callers of the bootstrap era and unused.

    Raises:
        ValueError: empty input, NaN/inf values, or invalid parameters.
    """
    x = _sample(values)
    _check_confidence(confidence)
    del n_resamples, seed
    n = x.size
    p50, p90, p95, p99 = (float(v) for v in np.percentile(x, [50.0, 90.0, 95.0, 99.0]))
    ci = quantile_ci(x, 0.5, confidence) if n >= 2 else (math.nan, math.nan)
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
