"""Estimators of a shift on the log scale, each with an interval and the tests dual to it.

A verdict reads one interval; the p-value reported beside it must never disagree. So
every estimator here gives the interval *and* the one-sided p-value of "the shift is
above (below) d0" from the same null distribution: the interval at level ``1 - a`` is
exactly the set of shifts that neither one-sided test rejects at ``a / 2``.

* :class:`RankShift` over independent rows: the Hodges-Lehmann estimate (median of all
  pairwise differences) with the interval from inverting the Mann-Whitney test (Bauer
  1972); over paired rows: the median of the Walsh averages with the interval from
  inverting the Wilcoxon signed-rank test. Exact null distributions for small samples,
  normal approximations beyond; distribution-free under a shift model, and the sign of
  the estimate agrees with which side wins the majority of pairs.
* :class:`TShift` over a few independent units (repetition summaries): Welch's or the
  paired t, whose intervals do not under-cover with three to ten units the way a
  bootstrap over them does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps

#: Largest count of pairwise values materialised; beyond it order statistics are found
#: by bisection over a counting function (O(n log m) per step).
_MATERIALISE_MAX = 2_000_000
#: Largest count of pairs (m * n, or n (n + 1) / 2) for the exact null distribution.
_EXACT_MAX = 20_000


@functools.lru_cache(maxsize=128)
def _mann_whitney_counts(m: int, n: int) -> np.ndarray:
    """Null distribution of U (pairs won) for sizes m, n: P(U = u), u = 0..m*n.

    The Gaussian binomial coefficient [m+n, m]_q, built factor by factor: multiply by
    (1 - q^(n+i)), divide by (1 - q^i)."""
    if m > n:
        m, n = n, m
    size = m * n + 1
    poly = np.zeros(size)
    poly[0] = 1.0
    for i in range(1, m + 1):
        shift = n + i
        if shift < size:
            poly[shift:] = poly[shift:] - poly[:-shift].copy()
        for r in range(i):  # divide by (1 - q^i): a running sum with stride i
            poly[r::i] = np.cumsum(poly[r::i])
    poly = np.clip(poly, 0.0, None)
    return poly / poly.sum()


@functools.lru_cache(maxsize=128)
def _signed_rank_counts(n: int) -> np.ndarray:
    """Null distribution of the Wilcoxon signed-rank sum T+ for n pairs: P(T+ = t)."""
    size = n * (n + 1) // 2 + 1
    poly = np.zeros(size)
    poly[0] = 1.0
    for i in range(1, n + 1):  # multiply by (1 + q^i) / 2
        poly[i:] = poly[i:] + poly[:-i].copy()
    return poly / poly.sum()


@dataclass(frozen=True)
class _Null:
    """A symmetric null distribution of a count statistic in 0..total."""

    total: int
    pmf: np.ndarray | None  # exact, or None for the normal approximation
    sd: float

    def sf(self, u: float) -> float:
        """P(statistic >= u), conservative for half-integer u (mid-counted ties)."""
        u = math.floor(u + 1e-9)
        if self.pmf is not None:
            if u <= 0:
                return 1.0
            if u > self.total:
                return 0.0
            return float(min(1.0, self.pmf[u:].sum()))
        if self.sd == 0.0:
            return 1.0 if u <= self.total / 2 else 0.0
        return float(_sps.norm.sf((u - 0.5 - self.total / 2.0) / self.sd))

    def critical(self, tail: float) -> int | None:
        """Smallest c with P(statistic >= c) <= tail, or None when even c = total fails."""
        if self.pmf is not None:
            upper = np.cumsum(self.pmf[::-1])[::-1]  # upper[c] = P(S >= c)
            ok = np.nonzero(upper <= tail)[0]
            return int(ok[0]) if ok.size else None
        c = math.ceil(self.total / 2.0 + 0.5 + self.sd * _sps.norm.isf(tail))
        return c if c <= self.total else None


class RankShift:
    """Hodges-Lehmann shift with its rank-test interval, unpaired or paired."""

    def __init__(self, baseline: np.ndarray, candidate: np.ndarray, *, paired: bool) -> None:
        self.paired = paired
        if paired:
            d = np.asarray(candidate, float) - np.asarray(baseline, float)
            n = d.size
            i, j = np.triu_indices(n)
            self._values = np.sort((d[i] + d[j]) / 2.0)  # Walsh averages
            self.total = self._values.size
            pmf = _signed_rank_counts(n) if self.total <= _EXACT_MAX else None
            sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
            self.name = "Wilcoxon signed-rank (Hodges-Lehmann)"
            self.n_units = (n, n)
        else:
            self._b = np.sort(np.asarray(baseline, float))
            self._c = np.sort(np.asarray(candidate, float))
            m, n = self._b.size, self._c.size
            self.total = m * n
            self._values = (
                np.sort(np.subtract.outer(self._c, self._b).ravel())
                if self.total <= _MATERIALISE_MAX
                else None
            )
            pmf = _mann_whitney_counts(m, n) if self.total <= _EXACT_MAX else None
            sd = math.sqrt(m * n * (m + n + 1) / 12.0)
            self.name = "Mann-Whitney (Hodges-Lehmann)"
            self.n_units = (m, n)
        self._null = _Null(self.total, pmf, sd)
        mid = (self.total - 1) / 2.0
        self.estimate = 0.5 * (self._kth(math.floor(mid) + 1) + self._kth(math.ceil(mid) + 1))

    # pairwise values (differences or Walsh averages) below / at a shift
    def _count_le(self, d0: float) -> int:
        if self._values is not None:
            return int(np.searchsorted(self._values, d0, side="right"))
        # c_j - b_i <= d0  <=>  b_i >= c_j - d0
        return int((self._b.size - np.searchsorted(self._b, self._c - d0, side="left")).sum())

    def _count_lt(self, d0: float) -> int:
        if self._values is not None:
            return int(np.searchsorted(self._values, d0, side="left"))
        return int((self._b.size - np.searchsorted(self._b, self._c - d0, side="right")).sum())

    def _kth(self, k: int) -> float:
        """The k-th smallest pairwise value (1-based)."""
        if self._values is not None:
            return float(self._values[k - 1])
        lo = float(self._c[0] - self._b[-1])
        hi = float(self._c[-1] - self._b[0])
        for _ in range(200):  # bisection to the smallest d with count_le(d) >= k
            mid = lo + (hi - lo) / 2.0
            if mid in (lo, hi):
                break
            if self._count_le(mid) >= k:
                hi = mid
            else:
                lo = mid
        return hi

    def statistic(self, d0: float) -> float:
        """Pairwise values above ``d0``, ties counted half (U or T+ at shift ``d0``)."""
        le, lt = self._count_le(d0), self._count_lt(d0)
        return (self.total - le) + 0.5 * (le - lt)

    def p_above(self, d0: float) -> float:
        """One-sided p of "shift <= d0" (small when the shift is above ``d0``)."""
        return self._null.sf(self.statistic(d0))

    def p_below(self, d0: float) -> float:
        """One-sided p of "shift >= d0" (small when the shift is below ``d0``)."""
        return self._null.sf(self.total - self.statistic(d0))

    def interval(self, confidence: float) -> tuple[float, float]:
        """Set of shifts neither one-sided test rejects; NaN when it cannot exist."""
        c = self._null.critical((1.0 - confidence) / 2.0)
        if c is None:
            return math.nan, math.nan
        k = self.total - c + 1
        return self._kth(k), self._kth(c)


class TShift:
    """Difference of means of unit summaries (Welch) or mean of paired differences (t)."""

    def __init__(self, baseline: np.ndarray, candidate: np.ndarray, *, paired: bool) -> None:
        b, c = np.asarray(baseline, float), np.asarray(candidate, float)
        self.paired = paired
        if paired:
            d = c - b
            self.estimate = float(np.mean(d))
            self.se = float(np.std(d, ddof=1) / math.sqrt(d.size))
            self.df = float(d.size - 1)
            self.name = "paired t on repetition medians"
            self.n_units = (d.size, d.size)
        else:
            vb, vc = np.var(b, ddof=1) / b.size, np.var(c, ddof=1) / c.size
            self.estimate = float(np.mean(c) - np.mean(b))
            self.se = float(math.sqrt(vb + vc))
            denom = vb**2 / (b.size - 1) + vc**2 / (c.size - 1)
            self.df = float((vb + vc) ** 2 / denom) if denom > 0 else float(b.size + c.size - 2)
            self.name = "Welch t on repetition medians"
            self.n_units = (b.size, c.size)

    def _sf(self, d0: float) -> float:
        if self.se == 0.0:
            return 0.0 if self.estimate > d0 else 1.0
        return float(_sps.t.sf((self.estimate - d0) / self.se, self.df))

    def p_above(self, d0: float) -> float:
        """One-sided p of "shift <= d0"."""
        return self._sf(d0)

    def p_below(self, d0: float) -> float:
        """One-sided p of "shift >= d0"."""
        if self.se == 0.0:
            return 0.0 if self.estimate < d0 else 1.0
        return float(_sps.t.cdf((self.estimate - d0) / self.se, self.df))

    def interval(self, confidence: float) -> tuple[float, float]:
        """Student's t interval at ``confidence``."""
        half = float(_sps.t.ppf(0.5 + confidence / 2.0, self.df)) * self.se
        return self.estimate - half, self.estimate + half


class RoundedShift:
    """A shift between values known only to a timer's resolution: each value lies within
    half a step of the recorded one, so the interval's lower bound is taken from the
    candidate moved down and the baseline moved up by half a step, and the upper bound
    the other way round. Without this, tied values put the interval's ends on the grid of
    step ratios (20/19 ticks is 5.13%, past a 5% threshold) and over-call changes."""

    def __init__(
        self,
        middle: RankShift | TShift,
        low: RankShift | TShift,
        high: RankShift | TShift,
        step: float,
    ) -> None:
        self.middle, self.low, self.high, self.step = middle, low, high, step
        self.estimate = middle.estimate
        self.n_units = middle.n_units
        self.name = f"{middle.name}, widened for resolution {step:.4g}"

    def p_above(self, d0: float) -> float:
        """One-sided p of "shift <= d0", from the least favourable rounding."""
        return self.low.p_above(d0)

    def p_below(self, d0: float) -> float:
        """One-sided p of "shift >= d0", from the least favourable rounding."""
        return self.high.p_below(d0)

    def interval(self, confidence: float) -> tuple[float, float]:
        """The lower bound of the low rounding and the upper bound of the high one."""
        return self.low.interval(confidence)[0], self.high.interval(confidence)[1]


Shift = RankShift | TShift | RoundedShift
