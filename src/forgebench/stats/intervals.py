"""Intervals with coverage: what a verdict may claim about a population from a sample.

Every interval here is exact, distribution-free or conservative, so a verdict read off
it errs the stated share of the time at most:

* :func:`proportion_ci`: Clopper-Pearson for a share k/n (accuracies, pass rates, error
  rates). A bootstrap of 0/1 values with no successes says (0, 0); 0 of 20 supports
  anything up to 16.8%.
* :func:`quantile_ci`: order statistics (Hahn & Meeker 1991, ch. 5). The coverage holds
  for any continuous distribution; where ``n`` is too small for a bound to exist at the
  level (the upper bound of a p99 from 20 values) that bound is NaN, never the sample
  maximum. Censored values (timeouts, runs stopped at a budget) enter as +inf: a quantile
  whose censored share exceeds ``1 - q`` keeps a lower bound only.
* :func:`mean_ci`: Student's t on independent units (repetitions, seeds, runs), the
  interval for a few units; a bootstrap over fewer than about ten units under-covers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from forgebench.stats._common import _check_confidence, _sample


def proportion_ci(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) interval of a share k/n; coverage at least ``confidence``."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    _check_confidence(confidence)
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(_sps.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(_sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def quantile_ranks(n: int, q: float, confidence: float = 0.95) -> tuple[int | None, int | None]:
    """1-based ranks ``(l, u)`` of the order statistics bounding the ``q`` quantile.

    Equal-tailed: ``P(X_(l) > x_q) <= (1 - confidence) / 2`` and likewise above, from the
    Binomial(n, q) count of values below the quantile. A rank that would fall outside
    ``1..n`` is None: that bound does not exist at this level.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    cdf = _sps.binom.cdf(np.arange(n + 1), n, q)  # cdf[j] = P(#below <= j)
    # lower: largest l with P(#below <= l - 1) <= tail
    ok_low = np.nonzero(cdf[:n] <= tail)[0]
    low = int(ok_low[-1]) + 1 if ok_low.size else None
    # upper: smallest u with P(#below <= u - 1) >= 1 - tail
    ok_high = np.nonzero(cdf[:n] >= 1.0 - tail)[0]
    high = int(ok_high[0]) + 1 if ok_high.size else None
    return low, high


def min_n_for_quantile(q: float, confidence: float = 0.95) -> int:
    """Fewest values for which both bounds of the ``q`` quantile exist at ``confidence``."""
    tail = (1.0 - confidence) / 2.0
    # the upper bound needs P(all n values below x_q) = q**n <= tail; the lower (1-q)**n
    return math.ceil(math.log(tail) / math.log(max(q, 1.0 - q)))


def quantile_ci(
    values: Sequence[float] | np.ndarray,
    q: float,
    confidence: float = 0.95,
    *,
    censored: Sequence[bool] | np.ndarray | None = None,
) -> tuple[float, float]:
    """Distribution-free interval of the ``q`` quantile (``q`` in (0, 1)) from order statistics.

    A bound that does not exist at this level is NaN. ``censored`` marks values known
    only to lie at or above the recorded one (a timeout at its limit): they sort as +inf,
    so an upper bound falling on one is +inf (unbounded) and the lower bound stays valid.
    """
    x = _sample(values)
    if censored is not None:
        mask = np.asarray(censored, dtype=bool)
        if mask.shape != x.shape:
            raise ValueError("censored must have one flag per value")
        x = np.where(mask, np.inf, x)
    low_rank, high_rank = quantile_ranks(x.size, q, confidence)
    xs = np.sort(x)
    low = float(xs[low_rank - 1]) if low_rank is not None else math.nan
    high = float(xs[high_rank - 1]) if high_rank is not None else math.nan
    if math.isinf(low) and censored is not None:  # censored itself: "at least" its limit
        limits = np.asarray(values, dtype=float)[np.asarray(censored, dtype=bool)]
        low = float(np.min(limits))
    return low, high


def censored_quantile(
    values: Sequence[float] | np.ndarray, censored: Sequence[bool] | np.ndarray, q: float
) -> float:
    """The ``q`` quantile with censored values as +inf (inf when they reach it)."""
    x = np.where(np.asarray(censored, dtype=bool), np.inf, _sample(values))
    xs = np.sort(x)
    pos = q * (xs.size - 1)
    i, j = math.floor(pos), math.ceil(pos)
    if math.isinf(xs[j]):
        return math.inf
    return float(xs[i] + (xs[j] - xs[i]) * (pos - i))


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of independent units; NaN below two units."""
    x = _sample(values)
    _check_confidence(confidence)
    if x.size < 2:
        return math.nan, math.nan
    mean = float(np.mean(x))
    se = float(np.std(x, ddof=1)) / math.sqrt(x.size)
    half = float(_sps.t.ppf(0.5 + confidence / 2.0, x.size - 1)) * se
    return mean - half, mean + half


def batch_means_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, *, batches: int = 20
) -> tuple[float, float]:
    """Interval of the mean of a time-ordered series by the method of batch means.

    Consecutive requests of a load run are correlated (a queue, a GC pause), so a t or
    bootstrap interval over them treats them as more independent than they are. The
    series is cut into ``batches`` contiguous batches and Student's t is taken over the
    batch means, which are close to independent once a batch outlasts the correlation.
    NaN below two values per batch."""
    x = _sample(values)
    if x.size < 2 * batches:
        return math.nan, math.nan
    edges = np.linspace(0, x.size, batches + 1).astype(int)
    means = np.array([x[a:b].mean() for a, b in itertools.pairwise(edges)])
    return mean_ci(means, confidence)


def union_ci(
    intervals: Sequence[tuple[float, float]], weights: Sequence[float]
) -> tuple[float, float]:
    """Interval of a weighted sum from one interval per part (Bonferroni: each part's level
    must be ``1 - (1 - confidence) / parts`` for the sum to cover at ``confidence``)."""
    low = sum(w * lo for (lo, _), w in zip(intervals, weights, strict=True))
    high = sum(w * hi for (_, hi), w in zip(intervals, weights, strict=True))
    return float(low), float(high)
