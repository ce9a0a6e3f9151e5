"""Paired 0/1 outcomes of two models on the same items: flip rate and McNemar's test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from forgebench.stats._common import _bool_array

#: Discordant-pair count below which :func:`mcnemar` uses the exact binomial test.
_MCNEMAR_EXACT_BELOW = 25


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
