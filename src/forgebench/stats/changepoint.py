"""Change points and rolling z-scores over a series of runs (the earlier history methods).

Each value is one run's level of one metric (the log of per-run medians, so a step is a
relative change). Binary segmentation with a calibrated max-t test (a change-point fit,
as asv's step detection) and conbench's lookback z-score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from forgebench.stats._common import _check_resamples, _plain, _sample
from forgebench.stats.resampling import _MAX_RESAMPLE_ELEMENTS

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
