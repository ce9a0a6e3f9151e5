"""A metric's history of runs: steps, drift and spikes, suspected versus confirmed.

Pure functions of numpy/scipy on one series of per-run values (per-run medians, oldest
first; analysed on the log scale when all are positive, so a change is relative). The
workflow (forgebench.history), the report and the calibration benchmark call the same
functions, so the verdicts the benchmark measures are the ones users get.

Public API
----------
``noise_scale(y) -> float``
    Robust noise sigma of a series from its run-to-run differences.
``detect_changes(values, *, threshold, higher_is_better, se=None, confirm_runs=2,
log_scale=None) -> list[Change]``
    Every change episode of the series as known at its last run, oldest first; a change
    only suspected at the last run comes last with ``confirmed=None``.
``current_state(values, *, threshold, higher_is_better, se=None, confirm_runs=2,
log_scale=None) -> State``
    The state at the last run: what the gate reads.
``incremental_states(values, *, threshold, higher_is_better, se=None, confirm_runs=2,
log_scale=None) -> list[State]``
    The state at every run, as reported when that run arrived (one causal pass:
    ``incremental_states(v)[i] == current_state(v[: i + 1], log_scale=...)``).
``analyse(values, *, threshold, higher_is_better, se=None, confirm_runs=2,
log_scale=None) -> tuple[list[Change], State]``
    Both of the above from one pass.
``correct_across_metrics(p_values, verdicts, *, alpha) -> list[str]``
    Benjamini-Hochberg over the new changes of one run's metrics.
``runs_to_confirm(confirm_runs=2) -> int``
    Fewest runs in which a change can be confirmed.
``relative_change(before, after, *, higher_is_better, log_scale) -> float``
    The improvement between two levels (positive = better).

``values`` are per-run values (medians), ``se`` optional per-run standard errors of the
log median, ``threshold`` the practical threshold (0.05 = 5%). Indices in :class:`Change`
and :class:`State` are run positions in the series (0 = oldest).

The rule (docs/verdicts.md has the long form). ``sigma`` is the noise of the series,
estimated from its own run-to-run differences (robust: spikes, steps and drift barely
move it), floored by the runs' standard errors where given, and widened like a Student t
while few differences back it. Runs are seen one at a time, as they arrive:

* **step**: the runs since a candidate start against the mean of up to
  ``BEFORE_WINDOW`` runs before it (all since the last change). A step is confirmed when
  Page's CUSUM of those runs, ``sum(|x - before| / sigma - CUSUM_K)``, exceeds
  ``CUSUM_H`` for some start with at least ``confirm_runs + 1`` runs after it (the
  statistic spends its false alarms on the few runs a 2-sigma step is confirmed over,
  where a z test over starts spends them on long windows too); suspected when their mean
  alone lies beyond ``Z_STEP`` standard errors.
* **outliers**: a run beyond ``CLIP`` sigma of the median of the 5 runs before it counts
  at most ``HOLD`` sigma while it is the newest run (unless the run before it was already
  off with it); once the next runs are in, it counts in full if each of them stayed out
  with it, clipped to ``CLIP`` sigma if they did on average, and for nothing if they
  fell back (a spike). So a single wild run raises a suspicion and never confirms a
  change. A step's first run that overshot and was read as a spike is read again once
  more runs are in (up to ``LOOK_AHEAD``): if they stayed off the old level by
  ``Z_KEEP`` standard errors of their mean, it counts after all, as no more than their
  mean plus ``KEEP_MARGIN`` sigma (and ``CLIP``). The runs that confirmed a change count
  unclipped against the new level and do not serve as its reference for a move back
  (they were picked for being off); outliers after them are read as any other.
* **drift**: the least-squares slope over the runs since the last change (at most
  ``DRIFT_WINDOW``), in sigma units, must exceed ``Z_DRIFT``; whether a trend or a step
  fits those runs better decides the kind (a confirmed step reads as a trend only where
  the runs slope beyond ``Z_TREND``); a trend starts where its fitted knot lies.
* **suspected**: the newest run(s) alone, fewer than ``confirm_runs + 1``, already that far
  off: "suspected regression/improvement" until the next runs confirm or retract it.
* **confirmed**: a change is confirmed once ``confirm_runs + 1`` runs carry it. Its size
  (``1 - ratio`` lower-is-better, ``ratio - 1`` higher-is-better; positive = better)
  beyond ``threshold`` makes it a regression/improvement; clearly inside it, a "shift
  below threshold"; too close to tell, it stays suspected until it is clear.
* **once**: each change is one episode, reported at the run where it began. A change in
  the same direction starting within ``MERGE_GAP`` runs of the last one, or within
  ``DRIFT_WINDOW`` runs where one trend since the last one fits as well as two steps
  (BIC), extends that episode (a drift) instead.
* **not sticky**: the state reads regression/improvement/shift below threshold only at
  the run that confirms a change; afterwards "no change since" that change. A run that
  extends a drift is judged on what it adds (a regression again only if that part alone
  exceeds the threshold).

``CUSUM_H`` and ``Z_DRIFT`` hold flat log-normal noise of any size to about 0.3 confirmed
changes per 100 runs (simulated; the calibration benchmark measures it); nothing is
tuned to a particular series. An incremental pass over 300 runs takes about 20 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats as _sps

STEP = "step"
DRIFT = "drift"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
NO_CHANGE = "no change"
INCONCLUSIVE = "inconclusive"
UNDETERMINED = "undetermined"
SUSPECTED_REGRESSION = "suspected regression"
SUSPECTED_IMPROVEMENT = "suspected improvement"
SHIFT_BELOW_THRESHOLD = "shift below threshold"
#: Every verdict a :class:`State` can carry.
VERDICTS = (
    REGRESSION,
    IMPROVEMENT,
    SUSPECTED_REGRESSION,
    SUSPECTED_IMPROVEMENT,
    SHIFT_BELOW_THRESHOLD,
    NO_CHANGE,
    INCONCLUSIVE,
    UNDETERMINED,
)

#: A step is suspected beyond this many standard errors.
Z_STEP = 3.1
#: A step is confirmed when the CUSUM of its runs, less ``CUSUM_K`` sigma a run, exceeds
#: ``CUSUM_H`` sigma: the operating point of the trade-off table in docs/performance.md.
#: k is half of a 2-sigma step, the smallest the history is asked to find within five
#: runs (Page's CUSUM is optimal for a shift of 2k); h = 2.25 holds flat series to about
#: 0.3 false alarms per 100 runs with sigma estimated from the series.
CUSUM_H = 2.25
CUSUM_K = 1.0
#: A drift is confirmed beyond this many standard errors of its slope.
Z_DRIFT = 3.5
#: A confirmed step is read as the end of a trend only where the runs it is fitted over
#: slope beyond this many standard errors (about 1% two-sided): a fresh step at the end of
#: a flat window fits a ramp from a few runs earlier about as well as a step, and would
#: otherwise be located up to ten runs before it began.
Z_TREND = 2.5
#: Runs after an outlier that can still show it began a step once more than
#: ``confirm_runs`` (and 2) of them are in ...
LOOK_AHEAD = 4
#: ... by their mean lying this many standard errors off the level before it; it then
#: counts at most this many sigma beyond their mean.
Z_KEEP = 2.0
KEEP_MARGIN = 0.5
#: Outliers lie beyond this many sigma of the runs just before them.
CLIP = 3.0
#: ... and count at most this many sigma while they are the newest run.
HOLD = 1.0
#: Runs before a candidate start that form its reference level.
BEFORE_WINDOW = 100
#: Longest stretch after a candidate start that is scanned.
AFTER_WINDOW = 10
#: Fewest runs of the current level before a change of it can be tested.
MIN_BEFORE = 3
#: Run-to-run differences behind sigma (the most recent ones).
SIGMA_WINDOW = 200
#: Runs a trend is fitted over, at most and at least.
DRIFT_WINDOW = 50
DRIFT_MIN_RUNS = 8
#: A same-direction change starting within this many runs of the last one extends it.
MERGE_GAP = 5
#: Effective degrees of freedom of sigma per run-to-run difference (simulated on normal
#: noise: the winsorised scale of differences has about 0.62 per difference).
NU_PER_DIFF = 0.75
#: Tests per run a flat series effectively gets (simulated): p-values are the two-sided
#: normal tail times this, about the chance per run of a confirmation at least as large.
EFFECTIVE_TESTS = 1.4
_RECENT = 5  # runs whose median centres the outlier check
_WINSOR = 2.5  # differences winsorised at this many MADs when estimating sigma


@dataclass(frozen=True)
class Change:
    """One change episode (indices are run positions, 0 = oldest).

    ``start``: the first run at the new level (for a drift, the first run of the trend);
    ``confirmed``: the run that confirmed it (None: only suspected at the last run);
    ``updated``: the last run that extended it; ``size``: the relative change from
    ``level_before`` to ``level_after`` (analysed scale: logs on a log scale), positive =
    better; ``z``: the mean of its runs against the level before, in standard errors
    (what suspects it, and what a drift test confirms); ``cusum``: the CUSUM in sigma
    that confirmed a step (NaN where a drift test confirmed it, or while suspected);
    ``p_value``: about the chance per run that flat noise gives such a change;
    ``increment``: the part of ``size`` confirmed at ``updated`` (all of it, unextended);
    ``increment_start``: the first run of that part (``start``, unextended): where a later
    step that extends a drift began, so it is located, not only dated.
    """

    start: int
    confirmed: int | None
    kind: str
    size: float
    p_value: float
    level_before: float
    level_after: float
    beyond_threshold: bool
    updated: int | None = None
    z: float = math.nan
    increment: float = math.nan
    increment_start: int | None = None
    cusum: float = math.nan

    @property
    def verdict(self) -> str:
        """What this change reads as at the run that confirms (or suspects) it."""
        return _verdict(self.size, self.beyond_threshold, suspected=self.confirmed is None)


@dataclass(frozen=True)
class State:
    """The state at run ``index``: what the gate reads.

    ``new``: ``change`` was confirmed or extended at this very run, or is suspected now;
    otherwise ``change`` is the last confirmed episode (None if none) and the verdict
    reads "no change" since it. ``sigma``: the noise scale (log units on a log scale).
    """

    index: int
    verdict: str
    reason: str
    new: bool
    change: Change | None
    sigma: float
    p_value: float = math.nan


# ------------------------------------------------------------------------ noise


def _scale_of_differences(d1: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Rows of lag-1 and lag-2 differences -> robust sigma of the series behind each row.

    Each lag is centred on its median (a steady drift is not noise); then a MAD start and
    the RMS of the deviations winsorised at ``_WINSOR`` MADs: as robust to a few wild
    differences (a step, a spike) as the MAD and about twice as efficient, and pooling
    two lags gains another fifth.
    """
    dev = np.concatenate(
        [
            np.abs(d1 - np.median(d1, axis=-1, keepdims=True)),
            np.abs(d2 - np.median(d2, axis=-1, keepdims=True)),
        ],
        axis=-1,
    )
    s0 = 1.482602218505602 * np.median(dev, axis=-1, keepdims=True)
    clipped = np.minimum(dev, _WINSOR * s0)
    return np.sqrt(np.mean(clipped**2, axis=-1) / _winsor_consistency() / 2.0)


@lru_cache(maxsize=1)
def _winsor_consistency() -> float:
    """E[min(|Z|, c)^2] for standard normal Z: makes the winsorised RMS consistent."""
    c = _WINSOR
    tail = float(_sps.norm.sf(c))
    return (1.0 - 2.0 * tail) - 2.0 * c * float(_sps.norm.pdf(c)) + 2.0 * c * c * tail


def noise_scale(y: Sequence[float] | np.ndarray) -> float:
    """Robust noise sigma of a series (units of ``y``) from its run-to-run differences:
    steps, single spikes and a steady drift barely move it, unlike the SD. NaN for fewer
    than 3 values."""
    arr = np.asarray(y, dtype=float).reshape(-1)
    if arr.size < 3:
        return math.nan
    return float(_scale_of_differences(np.diff(arr), arr[2:] - arr[:-2]))


def _row_medians(m: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Median of the first ``counts[r]`` finite values of each row (the rest are +inf)."""
    srt = np.sort(m, axis=1)
    rows = np.arange(m.shape[0])
    lo, hi = np.maximum(counts - 1, 0) // 2, counts // 2
    return (srt[rows, lo] + srt[rows, np.minimum(hi, m.shape[1] - 1)]) / 2.0


def _growing_scales(y: np.ndarray, k: int) -> np.ndarray:
    """:func:`_scale_of_differences` of runs ``0..t`` for every ``t < k``, in one pass of
    array operations over a ``(k, SIGMA_WINDOW)`` table (NaN below 3 runs)."""
    width = SIGMA_WINDOW
    t = np.arange(k)
    cols = np.arange(width)
    lag1 = np.full(width, np.inf)
    lag1[: max(0, min(width, y.size - 1))] = np.diff(y)[:width]
    lag2 = np.full(width, np.inf)
    lag2[: max(0, min(width, y.size - 2))] = (y[2:] - y[:-2])[:width]
    n1, n2 = t, np.maximum(t - 1, 0)
    m1 = np.where(cols[None, :] < n1[:, None], lag1[None, :], np.inf)
    m2 = np.where(cols[None, :] < n2[:, None], lag2[None, :], np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf in rows too short to matter
        dev = np.concatenate(
            [
                np.abs(m1 - _row_medians(m1, n1)[:, None]),
                np.abs(m2 - _row_medians(m2, n2)[:, None]),
            ],
            axis=1,
        )
    dev = np.where(np.isnan(dev), np.inf, dev)
    n = n1 + n2
    s0 = 1.482602218505602 * _row_medians(dev, n)
    clipped = np.where(np.isfinite(dev), np.minimum(dev, _WINSOR * s0[:, None]), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sqrt(np.sum(clipped**2, axis=1) / n / _winsor_consistency() / 2.0)
    out[:2] = math.nan
    return out


def _noise_track(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run t: sigma from the differences up to t (the last ``SIGMA_WINDOW`` runs) and
    how many lag-1 differences that is."""
    n, window = y.size, SIGMA_WINDOW
    sigma = np.full(n, math.nan)
    sigma[: min(n, window)] = _growing_scales(y, min(n, window))
    if n > window:
        d1, d2 = np.diff(y), y[2:] - y[:-2]
        rows1 = np.lib.stride_tricks.sliding_window_view(d1, window)[: n - window]
        rows2 = np.lib.stride_tricks.sliding_window_view(d2, window - 1)[: n - window]
        sigma[window:] = _scale_of_differences(rows1, rows2)
    return sigma, np.minimum(np.arange(n), window)


@lru_cache(maxsize=8)
def _t_inflation(z: float, max_count: int) -> np.ndarray:
    """Per difference count: the Student t quantile (``NU_PER_DIFF`` * count degrees of
    freedom) over the normal one at the tail of ``z``, so that a sigma estimated from few
    runs keeps the false-alarm rate of a known one (inf below 2 differences)."""
    counts = np.arange(max_count + 1, dtype=float)
    nu = np.maximum(NU_PER_DIFF * counts, 0.5)
    out = _sps.t.isf(float(_sps.norm.sf(z)), nu) / z
    out[:2] = math.inf
    return out


def _se_floor(se: np.ndarray, t: int) -> float:
    window = se[max(0, t - SIGMA_WINDOW) : t + 1]
    window = window[np.isfinite(window)]
    return float(np.median(window)) if window.size else math.nan


def _scales(y: np.ndarray, se: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per run: sigma (floored by the runs' standard errors and by rounding), and sigma
    widened for how few differences back it."""
    sigma, count = _noise_track(y)
    if se is not None:
        floor = np.array([_se_floor(se, t) for t in range(y.size)])
        sigma = np.where(np.isnan(floor), sigma, np.fmax(sigma, floor))
    tiny = 1e-12 * max(1.0, float(np.max(np.abs(y))) if y.size else 1.0)
    sigma = np.where(np.isnan(sigma), sigma, np.maximum(sigma, tiny))
    return sigma, sigma * _t_inflation(Z_STEP, SIGMA_WINDOW)[count]


def _centres(y: np.ndarray) -> np.ndarray:
    """Per run: the median of the ``_RECENT`` runs before it (NaN for the first 3 runs)."""
    n = y.size
    centre = np.full(n, math.nan)
    for t in range(3, min(n, _RECENT + 1)):
        centre[t] = np.median(y[max(0, t - _RECENT) : t])
    if n > _RECENT + 1:
        windows = np.lib.stride_tricks.sliding_window_view(y[:-1], _RECENT)
        centre[_RECENT + 1 :] = np.median(windows[1:], axis=1)
    return centre


# ------------------------------------------------------------------------ sizes


def relative_change(
    before: float, after: float, *, higher_is_better: bool, log_scale: bool
) -> float:
    """The improvement from level ``before`` to ``after`` (positive = better). On a log
    scale the levels are logs; otherwise the ratio of the raw levels (NaN if ``before``
    <= 0, where a ratio means nothing)."""
    if log_scale:
        ratio = math.exp(after - before)
    elif before > 0 and math.isfinite(after):
        ratio = after / before
    else:
        return math.nan
    return ratio - 1.0 if higher_is_better else 1.0 - ratio


def _verdict(size: float, beyond: bool, *, suspected: bool) -> str:
    if not math.isfinite(size):
        return UNDETERMINED
    if not beyond:
        return NO_CHANGE if suspected else SHIFT_BELOW_THRESHOLD
    if suspected:
        return SUSPECTED_IMPROVEMENT if size > 0 else SUSPECTED_REGRESSION
    return IMPROVEMENT if size > 0 else REGRESSION


def _pct(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x * 100:+.1f}%"


# ------------------------------------------------------------------------ series


@dataclass(frozen=True)
class _Series:
    y: np.ndarray  # analysed values (logs on a log scale)
    cy: np.ndarray  # cumulative sums of y, with a leading 0
    sigma: np.ndarray  # noise scale per run (from the runs up to it)
    scale: np.ndarray  # sigma widened for how few runs back it
    centre: np.ndarray  # median of the runs just before each run
    out: np.ndarray  # outliers: beyond CLIP scales of their centre
    threshold: float
    higher_is_better: bool
    log_scale: bool
    confirm_runs: int
    x: np.ndarray = field(default_factory=lambda: np.empty(0))  # runs once resolved


def _seen(s: _Series, i: int, last: int) -> float:
    """Run ``i`` as the tests read it once the runs up to ``last`` are in (:func:`_read`)."""
    return _read(s, i, last)[0]


def _spike(s: _Series, i: int, last: int) -> bool:
    """Whether run ``i`` is an outlier the runs after it (up to ``last``) fell back from."""
    return bool(s.out[i]) and _read(s, i, last)[1]


def _read(s: _Series, i: int, last: int) -> tuple[float, bool]:
    """Run ``i`` as the tests read it once the runs up to ``last`` are in, and whether it
    reads as a spike.

    A run within ``CLIP`` scales of its centre is itself. An outlier that is the newest
    run counts ``HOLD`` scales at most (``CLIP`` if the run before it was already at least
    half as far off: it is not alone). Once runs follow it (up to ``confirm_runs``), it
    is a spike, counted as its centre, if they fell back to less than half its distance
    on average; in full once each of the ``confirm_runs`` runs after it stayed at least
    that far out with it (a change began), and clipped to ``CLIP`` scales in between. A
    spike whose later runs (up to ``LOOK_AHEAD``) stayed ``Z_KEEP`` standard errors off
    counts after all (a step's first run overshot), as at most their mean plus
    ``KEEP_MARGIN`` scales: no more evidence of a step than they carry themselves.
    """
    if not s.out[i]:
        return float(s.y[i]), False
    centre, dev = float(s.centre[i]), float(s.y[i] - s.centre[i])
    after = s.y[i + 1 : min(last, i + s.confirm_runs) + 1]
    sign = math.copysign(1.0, dev)
    clipped = centre + sign * CLIP * float(s.scale[i])
    if after.size == 0:
        # The newest run: evidence in full only if the run before it already went along.
        along = i > 0 and sign * (float(s.y[i - 1]) - centre) >= abs(dev) / 2.0
        return centre + sign * (CLIP if along else HOLD) * float(s.scale[i]), False
    later = s.y[i + 1 : min(last, i + LOOK_AHEAD) + 1]
    if later.size > max(s.confirm_runs, 2):
        # More runs than a spike is judged on: the runs since stayed off with it as a new
        # level would (a step's first run overshot), or it was a spike after all.
        z_after = sign * (float(np.mean(later)) - centre) * math.sqrt(later.size)
        if z_after >= Z_KEEP * float(s.scale[i]):
            if np.all(sign * (later - centre) >= abs(dev) / 2.0):
                return float(s.y[i]), False
            # At most what the runs since show, and a little: read as a step's first run,
            # it is the new level plus noise, so it carries no more than they do.
            shown = float(np.mean(later)) + sign * KEEP_MARGIN * float(s.scale[i])
            return (min(clipped, shown) if sign > 0 else max(clipped, shown)), False
    if sign * (float(np.mean(after)) - centre) < abs(dev) / 2.0:
        return centre, True
    if after.size == s.confirm_runs and np.all(sign * (after - centre) >= abs(dev) / 2.0):
        return float(s.y[i]), False  # every run after it stayed out with it: a change began
    return clipped, False


def _prepare(
    values: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray | None,
    *,
    threshold: float,
    higher_is_better: bool,
    confirm_runs: int,
    log_scale: bool | None,
) -> _Series:
    v = np.asarray(values, dtype=float).reshape(-1)
    if not np.isfinite(v).all():
        raise ValueError("values must be finite: leave runs without a value out first")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if int(confirm_runs) != confirm_runs or confirm_runs < 1:
        raise ValueError(f"confirm_runs must be a positive integer, got {confirm_runs!r}")
    use_log = bool((v > 0).all()) if log_scale is None else bool(log_scale)
    if use_log and not (v > 0).all():
        raise ValueError("log_scale needs positive values")
    y = np.log(v) if use_log else v
    se_arr = None if se is None else np.asarray(se, dtype=float).reshape(-1)
    if se_arr is not None and se_arr.size != v.size:
        raise ValueError(f"se has {se_arr.size} values for {v.size} runs")
    sigma, scale = _scales(y, se_arr)
    centre = _centres(y)
    with np.errstate(invalid="ignore"):
        out = np.abs(y - centre) > CLIP * scale  # NaN (too early) compares False
    series = _Series(
        y=y,
        cy=np.concatenate([np.zeros(1), np.cumsum(y)]),
        sigma=sigma,
        scale=scale,
        centre=centre,
        out=out,
        threshold=float(threshold),
        higher_is_better=bool(higher_is_better),
        log_scale=use_log,
        confirm_runs=int(confirm_runs),
    )
    x = y.copy()
    for i in np.flatnonzero(out):
        x[i] = _seen(series, int(i), y.size - 1)
    return replace(series, x=x)


@dataclass
class _Tracker:
    """What one causal pass carries from run to run."""

    seg: int = 0  # first run of the current level
    ref: int = 0  # first run that is a fair reference for it (not picked for being off)
    before_runs: int = 0  # runs behind the last change's level before
    episodes: list[Change] = field(default_factory=list)
    suspect: int | None = None  # start of the suspicion standing since an earlier run


@dataclass(frozen=True)
class _Hit:
    start: int
    z: float
    p_value: float
    before: float  # level before (analysed scale)
    after: float  # level after
    kind: str
    cusum: float = math.nan  # the CUSUM that confirmed a step


def _p_value(z: float) -> float:
    return float(min(1.0, 2.0 * EFFECTIVE_TESTS * _sps.norm.sf(abs(z))))


@dataclass(frozen=True)
class _View:
    """The runs of the current level as the tests read them at run ``t``: ``x[k]`` is run
    ``lo + k``; the newest ``confirm_runs + 1`` are read as of ``t`` (:func:`_seen`)."""

    lo: int
    t: int
    x: np.ndarray
    cx: np.ndarray  # cumulative sums, with a leading 0


def _window(s: _Series, lo: int, t: int) -> np.ndarray:
    """Runs ``lo..t`` as the tests read them at run ``t``."""
    cut = max(lo, t - max(s.confirm_runs, LOOK_AHEAD))
    return np.concatenate([s.x[lo:cut], [_seen(s, i, t) for i in range(cut, t + 1)]])


def _view(s: _Series, tr: _Tracker, t: int) -> _View:
    """The current level's runs as seen at ``t``. Once a change is confirmed, the runs that
    carried it (from its start to the run that confirmed it) were outliers only against
    the old level: they count unclipped. Outliers after them are read as any other."""
    lo = max(tr.seg, t - BEFORE_WINDOW - AFTER_WINDOW)
    x = _window(s, lo, t)
    if tr.episodes:
        for i in np.flatnonzero(s.out[lo : min(t, tr.ref)]) + lo:
            if not _spike(s, int(i), t):
                x[i - lo] = s.y[i]
    return _View(lo, t, x, np.concatenate([np.zeros(1), np.cumsum(x)]))


# ------------------------------------------------------------------------ tests


def _before_start(tr: _Tracker, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First run of each candidate's reference, and whether it is fair: the runs since the
    last change that did not confirm it, or, while fewer than ``MIN_BEFORE`` of those
    exist, the whole current level (whose first runs were picked for being off)."""
    fair = c - tr.ref >= MIN_BEFORE
    return np.maximum(np.where(fair, tr.ref, tr.seg), c - BEFORE_WINDOW), fair


def _level_after(s: _Series, start: int, t: int) -> float:
    """The level of runs ``start..t``: their mean, leaving out spikes and an outlier that
    is still the newest run (the size of a change, unclipped)."""
    runs = [
        float(s.y[i])
        for i in range(start, t + 1)
        if not s.out[i] or (i < t and not _spike(s, i, t))
    ]
    return float(np.mean(runs)) if runs else float(np.median(s.y[start : t + 1]))


def _step_scan(s: _Series, v: _View, tr: _Tracker, *, suspect: bool) -> _Hit | None:
    """The best step of the current level, as seen at run ``v.t``.

    ``suspect=False``: candidate starts with at least ``confirm_runs + 1`` runs after them,
    read as :func:`_seen`; ``suspect=True``: starts among the newest ``confirm_runs`` runs,
    read raw (a wild newest run is what should raise suspicion).
    """
    t = v.t
    scale = float(s.scale[t])
    if not math.isfinite(scale):
        return None
    lo = tr.seg + MIN_BEFORE
    if suspect:
        lo, hi = max(lo, t - s.confirm_runs + 1), t
    else:
        lo, hi = max(lo, t - AFTER_WINDOW + 1), t - s.confirm_runs
    if lo > hi:
        return None
    c = np.arange(lo, hi + 1)
    b0, fair = _before_start(tr, c)
    nb, na = c - b0, t + 1 - c
    before = (v.cx[c - v.lo] - v.cx[b0 - v.lo]) / nb
    sums = s.cy[t + 1] - s.cy[c] if suspect else v.cx[t + 1 - v.lo] - v.cx[c - v.lo]
    after = sums / na
    z = (after - before) / (scale * np.sqrt(1.0 / na + 1.0 / nb))
    if tr.episodes and not fair.all():
        # Against runs picked for being off, only a further move the same way is evidence
        # of a change; a move back is measured against the level before that change, for
        # regressing to the mean brings the runs back to it, not beyond it.
        last = tr.episodes[-1]
        back = ~fair & (z * (last.level_after - last.level_before) <= 0)
        if back.any():
            nb_old = max(tr.before_runs, 1)
            old = (after - last.level_before) / (scale * np.sqrt(1.0 / na + 1.0 / nb_old))
            old = np.where(old * (last.level_after - last.level_before) < 0, old, 0.0)
            z = np.where(back, old, z)
            before = np.where(back, last.level_before, before)
            nb = np.where(back, nb_old, nb)
    if suspect:
        i = int(np.argmax(np.abs(z)))
        if abs(z[i]) <= Z_STEP:
            return None
        confirming = math.nan
    else:
        # Page's CUSUM from each candidate start, in sigma (the reference mean's own error
        # widens it): it spends the false alarms on the few runs a step is confirmed over.
        gap = np.abs(z) * np.sqrt(1.0 / na + 1.0 / nb)  # |after - before| in sigma
        cusum = (gap - CUSUM_K) * na / np.sqrt(1.0 + na / nb)
        i = _first_off(v, c, before, z, int(np.argmax(cusum)))
        if i < 0 or cusum[i] <= CUSUM_H:
            return None
        confirming = float(cusum[i])
    start = int(c[i])
    level = _level_after(s, start, t)
    return _Hit(
        start, float(z[i]), _p_value(float(z[i])), float(before[i]), level, STEP, confirming
    )


def _first_off(v: _View, c: np.ndarray, before: np.ndarray, z: np.ndarray, i: int) -> int:
    """The best candidate moved forward past runs still on the old side of the midpoint
    between the two levels: a change starts at its first run that is off, so it is not
    confirmed before ``confirm_runs + 1`` such runs. -1 if none is left."""
    after = v.cx[v.t + 1 - v.lo] - v.cx[c[i] - v.lo]
    mid = (after / (v.t + 1 - c[i]) + before[i]) / 2.0
    sign = math.copysign(1.0, float(z[i]))
    j = i
    while j < c.size and sign * (v.x[c[j] - v.lo] - mid) < 0:
        j += 1
    return j if j < c.size else -1


def _fits(
    x: np.ndarray, last_knot: int | None = None
) -> tuple[tuple[float, int, float, float], tuple[float, int, float]]:
    """Least squares on one window: the best flat-then-linear (hinge) fit as (sse, knot,
    level at the knot, level at the end), its knot at ``last_knot`` at the latest, and the
    best single step as (sse, split, level before); positions relative to the window."""
    n = x.size
    i = np.arange(n, dtype=float)
    knots = np.arange(0, n - 2 if last_knot is None else max(1, min(n - 2, last_knot + 1)))
    h = np.maximum(i[None, :] - knots[:, None], 0.0)
    hc = h - h.mean(axis=1, keepdims=True)
    b = (hc @ (x - x.mean())) / np.einsum("ij,ij->i", hc, hc)
    a = x.mean() - b * h.mean(axis=1)
    sse_h = np.sum((x[None, :] - a[:, None] - b[:, None] * h) ** 2, axis=1)
    k = int(np.argmin(sse_h))
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    sp = np.arange(1, n)
    sse_s = (c2[sp] - c1[sp] ** 2 / sp) + (c2[n] - c2[sp]) - (c1[n] - c1[sp]) ** 2 / (n - sp)
    j = int(np.argmin(sse_s))
    hinge = (float(sse_h[k]), int(knots[k]), float(a[k]), float(a[k] + b[k] * (n - 1 - k)))
    return hinge, (float(sse_s[j]), int(sp[j]), float(c1[sp[j]] / sp[j]))


def _own_runs_unclipped(s: _Series, x: np.ndarray, lo: int, start: int, t: int) -> np.ndarray:
    """``x`` (runs ``lo..t`` as seen at ``t``) with a change's own runs from ``start`` on
    unclipped: they were outliers only against the level they left, so whether they form a
    step or a trend is judged on what they were, not on their held values."""
    for i in range(max(start, lo), t + 1):
        if s.out[i] and not _spike(s, i, t):  # the newest run is never a spike yet
            x[i - lo] = s.y[i]
    return x


def _classify(s: _Series, v: _View, tr: _Tracker, hit: _Hit) -> _Hit:
    """A step or a trend, whichever fits the runs of the current level (at most
    ``DRIFT_WINDOW``) better; a trend starts at its knot and its size is the fitted change
    from the knot to the newest run."""
    w0 = max(tr.ref, v.t - DRIFT_WINDOW + 1)
    if v.t - w0 + 1 < DRIFT_MIN_RUNS:
        return hit
    x = _own_runs_unclipped(s, v.x[w0 - v.lo :].copy(), w0, hit.start, v.t)
    (sse_h, knot, at_knot, at_end), (sse_s, _, _) = _fits(x)
    trend = abs(_slope_z(x, float(s.scale[v.t]))) > Z_TREND
    if trend and sse_h < sse_s and w0 + knot < v.t - s.confirm_runs:
        return replace(hit, start=w0 + knot, before=at_knot, after=at_end, kind=DRIFT)
    return hit


def _slope_z(x: np.ndarray, scale: float) -> float:
    """The least-squares slope of ``x`` against run order, in standard errors."""
    n = x.size
    sxx = n * (n * n - 1) / 12.0
    return float((np.arange(n) - (n - 1) / 2.0) @ x) / math.sqrt(sxx) / scale


def _drift_test(s: _Series, v: _View, tr: _Tracker) -> _Hit | None:
    """A trend over the runs of the current level (at most ``DRIFT_WINDOW``)."""
    t = v.t
    w0 = max(tr.ref, t - DRIFT_WINDOW + 1)
    if t - w0 + 1 < DRIFT_MIN_RUNS or not math.isfinite(s.scale[t]):
        return None
    xw = v.x[w0 - v.lo :]
    z = _slope_z(xw, float(s.scale[t]))
    if abs(z) <= Z_DRIFT:
        return None
    (sse_h, knot, at_knot, at_end), (sse_s, split, level) = _fits(xw)
    if sse_s < sse_h:
        start = w0 + split
        if start > t - s.confirm_runs:
            return None
        return _Hit(start, z, _p_value(z), level, _level_after(s, start, t), STEP)
    return _Hit(w0 + knot, z, _p_value(z), at_knot, at_end, DRIFT)


# ------------------------------------------------------------------------- pass


def _size(s: _Series, before: float, after: float) -> float:
    return relative_change(
        before, after, higher_is_better=s.higher_is_better, log_scale=s.log_scale
    )


def _beyond(s: _Series, size: float) -> bool:
    return math.isfinite(size) and size != 0.0 and abs(size) >= s.threshold


def _clearly_inside(s: _Series, hit: _Hit, t: int) -> bool:
    """The step's size, give or take 2 standard errors, lies within the threshold: a real
    but small shift, not worth waiting for."""
    na = t + 1 - hit.start
    half = 2.0 * float(s.scale[t]) * math.sqrt(1.0 / na + 1.0 / BEFORE_WINDOW)
    ends = [_size(s, hit.before, hit.after + d) for d in (-half, half)]
    return all(math.isfinite(e) and abs(e) < s.threshold for e in ends)


def _trend_fits(s: _Series, first: int, second: int, t: int) -> bool:
    """Whether one trend, begun about when change ``first`` did, explains the runs from
    just before it to ``t`` as well as two steps (at ``first`` and ``second``) do, by
    BIC: one drift, not two changes."""
    lo = max(0, first - MERGE_GAP, t - DRIFT_WINDOW - MERGE_GAP + 1)
    if t - lo + 1 < DRIFT_MIN_RUNS:
        return True
    x = _own_runs_unclipped(s, _window(s, lo, t), lo, second, t)
    (sse_h, *_), _ = _fits(x, last_knot=first - lo + MERGE_GAP)
    parts = np.split(x, sorted({b for b in (first - lo, second - lo) if 0 < b < x.size}))
    sse_steps = sum(float(np.sum((p - p.mean()) ** 2)) for p in parts)
    # BIC: the two steps spend two more parameters than the trend.
    return sse_h <= sse_steps + 2.0 * math.log(x.size) * float(s.sigma[t]) ** 2


def _merge(s: _Series, tr: _Tracker, hit: _Hit, t: int) -> Change:
    """The episode ``hit`` opens, or the last one extended by it (same direction, and
    right after it or following a drift)."""
    size = _size(s, hit.before, hit.after)
    change = Change(
        hit.start,
        t,
        hit.kind,
        size,
        hit.p_value,
        hit.before,
        hit.after,
        _beyond(s, size),
        updated=t,
        z=hit.z,
        increment=size,
        increment_start=hit.start,
        cusum=hit.cusum,
    )
    last = tr.episodes[-1] if tr.episodes else None
    if last is None or not (math.isfinite(size) and math.isfinite(last.size)):
        return change
    since = last.updated if last.updated is not None else t
    same = (size > 0) == (last.size > 0)
    close = hit.start - since <= MERGE_GAP
    trend = t - since <= DRIFT_WINDOW
    if not (same and (close or (trend and _trend_fits(s, last.start, hit.start, t)))):
        return change
    tr.episodes.pop()
    total = _size(s, last.level_before, hit.after)
    return replace(
        last,
        kind=DRIFT,
        size=total,
        level_after=hit.after,
        beyond_threshold=_beyond(s, total),
        p_value=min(last.p_value, hit.p_value),
        updated=t,
        z=hit.z,
        increment=size,
        increment_start=hit.start,
        cusum=hit.cusum,
    )


def _confirm(s: _Series, tr: _Tracker, v: _View) -> tuple[Change | None, _Hit | None]:
    """A change confirmed at run ``v.t`` (recorded; the level restarts), or a step whose
    size is still too close to the threshold to call (returned as pending)."""
    t = v.t
    hit = _step_scan(s, v, tr, suspect=False)
    if hit is not None:
        hit = _classify(s, v, tr, hit)
        size = _size(s, hit.before, hit.after)
        if math.isfinite(size) and not _beyond(s, size) and not _clearly_inside(s, hit, t):
            return None, hit
    else:
        hit = _drift_test(s, v, tr)
        if hit is not None and not _beyond(s, _size(s, hit.before, hit.after)):
            return None, None  # a real trend, not yet worth the threshold: keep watching
    if hit is None:
        return None, None
    change = _merge(s, tr, hit, t)
    tr.episodes.append(change)
    b0, _ = _before_start(tr, np.array([hit.start]))
    tr.before_runs = int(hit.start - b0[0])
    tr.seg = hit.start if hit.kind == STEP else max(hit.start, t - s.confirm_runs)
    tr.ref = t + 1  # the runs that confirmed it were picked for being off
    return change, None


def _suspicion(s: _Series, tr: _Tracker, v: _View, pending: _Hit | None) -> Change | None:
    """What the newest run(s) alone suggest, if beyond the threshold (or a confirmed step
    too close to the threshold to call)."""
    hit = pending or _step_scan(s, v, tr, suspect=True)
    if hit is None:
        return None
    size = _size(s, hit.before, hit.after)
    if pending is None and math.isfinite(size) and not _beyond(s, size):
        return None
    return Change(
        hit.start,
        None,
        hit.kind,
        size,
        hit.p_value,
        hit.before,
        hit.after,
        _beyond(s, size),
        z=hit.z,
    )


def _describe(c: Change, s: _Series) -> str:
    verdict = _verdict(c.size, c.beyond_threshold, suspected=False)
    ext = f", extended at run {c.updated}" if c.updated not in (None, c.confirmed) else ""
    return (
        f"the {c.kind} that began at run {c.start} ({_pct(c.size)}: {verdict}, confirmed at "
        f"run {c.confirmed}{ext}; threshold ±{s.threshold:.1%})"
    )


def _state(
    s: _Series, tr: _Tracker, t: int, new: Change | None, suspect: Change | None, note: str
) -> State:
    """The state at run ``t`` from what the pass found there."""
    sigma = float(s.sigma[t])
    if new is not None:
        if new.confirmed == t:
            verdict = _verdict(new.size, new.beyond_threshold, suspected=False)
            return State(t, verdict, _describe(new, s), True, new, sigma, new.p_value)
        # A drift going on: what is new is the part confirmed now, judged on its own.
        verdict = _verdict(new.increment, _beyond(s, new.increment), suspected=False)
        why = f"{_describe(new, s)} goes on: {_pct(new.increment)} more, confirmed now"
        return State(t, verdict, why, True, new, sigma, new.p_value)
    if suspect is not None:
        verdict = _verdict(suspect.size, True, suspected=True)
        off = f"the runs since run {suspect.start} lie {_pct(suspect.size)} off the level"
        why = (
            f"not confirmed until {s.confirm_runs + 1} runs carry it"
            if suspect.beyond_threshold
            else f"too close to the ±{s.threshold:.1%} threshold to call yet"
        )
        return State(t, verdict, f"{off}: {why}", True, suspect, sigma, suspect.p_value)
    if t < MIN_BEFORE + s.confirm_runs or not math.isfinite(s.scale[t]):
        reason = f"{t + 1} run(s): too few to confirm a change{note}"
        return State(t, INCONCLUSIVE, reason, False, None, sigma)
    last = tr.episodes[-1] if tr.episodes else None
    if last is None:
        return State(t, NO_CHANGE, f"no change in {t + 1} runs{note}", False, None, sigma)
    return State(t, NO_CHANGE, f"no change since {_describe(last, s)}{note}", False, last, sigma)


def _run(s: _Series, *, keep_states: bool) -> tuple[list[Change], list[State]]:
    """One causal pass over the series: the episodes and the state at each run (all of
    them with ``keep_states``, else the last)."""
    tr = _Tracker()
    states: list[State] = []
    n = s.y.size
    for t in range(n):
        v = _view(s, tr, t)
        new, pending = _confirm(s, tr, v)
        if new is not None:
            v = _view(s, tr, t)
        suspect = None if new is not None else _suspicion(s, tr, v, pending)
        note = ""
        if suspect is not None:
            tr.suspect = suspect.start if tr.suspect is None else tr.suspect
        elif tr.suspect is not None:
            if new is None:
                note = f"; the excursion at run {tr.suspect} was not confirmed by the next runs"
            tr.suspect = None
        if keep_states or t == n - 1:
            states.append(_state(s, tr, t, new, suspect, note))
    return tr.episodes, states


# ----------------------------------------------------------------------- public


def _one_pass(
    values: Sequence[float] | np.ndarray,
    se: Sequence[float] | np.ndarray | None,
    **options: Any,
) -> tuple[list[Change], State] | None:
    """Every episode (a change still suspected at the last run last) and the last run's
    state, from one pass; None for an empty series. analyse, detect_changes and
    current_state all read this."""
    s = _prepare(values, se, **options)
    if s.y.size == 0:
        return None
    episodes, states = _run(s, keep_states=False)
    change = states[-1].change
    if change is not None and change.confirmed is None:
        episodes = [*episodes, change]
    return list(episodes), states[-1]


def runs_to_confirm(confirm_runs: int = 2) -> int:
    """Fewest runs in which a change can be confirmed at all (``MIN_BEFORE`` runs of the
    old level, then ``confirm_runs + 1`` of the new one)."""
    return MIN_BEFORE + confirm_runs + 1


def analyse(
    values: Sequence[float] | np.ndarray,
    *,
    threshold: float,
    higher_is_better: bool,
    se: Sequence[float] | np.ndarray | None = None,
    confirm_runs: int = 2,
    log_scale: bool | None = None,
) -> tuple[list[Change], State]:
    """:func:`detect_changes` and :func:`current_state` from one pass (what the workflow
    reads for each metric)."""
    found = _one_pass(
        values,
        se,
        threshold=threshold,
        higher_is_better=higher_is_better,
        confirm_runs=confirm_runs,
        log_scale=log_scale,
    )
    if found is None:
        raise ValueError("values is empty: a state needs at least one run")
    return found


def detect_changes(
    values: Sequence[float] | np.ndarray,
    *,
    threshold: float,
    higher_is_better: bool,
    se: Sequence[float] | np.ndarray | None = None,
    confirm_runs: int = 2,
    log_scale: bool | None = None,
) -> list[Change]:
    """Every change episode of a series of per-run values (oldest first), each once, at
    the run where it began; a change still only suspected at the last run comes last
    with ``confirmed=None``. ``se``: each run's standard error of its log median."""
    found = _one_pass(
        values,
        se,
        threshold=threshold,
        higher_is_better=higher_is_better,
        confirm_runs=confirm_runs,
        log_scale=log_scale,
    )
    return [] if found is None else found[0]


def current_state(
    values: Sequence[float] | np.ndarray,
    *,
    threshold: float,
    higher_is_better: bool,
    se: Sequence[float] | np.ndarray | None = None,
    confirm_runs: int = 2,
    log_scale: bool | None = None,
) -> State:
    """The state at the last run of the series: what the gate reads (see the module
    docstring for the rule)."""
    found = _one_pass(
        values,
        se,
        threshold=threshold,
        higher_is_better=higher_is_better,
        confirm_runs=confirm_runs,
        log_scale=log_scale,
    )
    if found is None:
        raise ValueError("values is empty: a state needs at least one run")
    return found[1]


def incremental_states(
    values: Sequence[float] | np.ndarray,
    *,
    threshold: float,
    higher_is_better: bool,
    se: Sequence[float] | np.ndarray | None = None,
    confirm_runs: int = 2,
    log_scale: bool | None = None,
) -> list[State]:
    """The state at every run, as the workflow reported it when that run arrived: one
    causal pass, so ``result[i] == current_state(values[: i + 1])`` (give ``log_scale``
    explicitly when comparing, since ``None`` decides on the values given)."""
    s = _prepare(
        values,
        se,
        threshold=threshold,
        higher_is_better=higher_is_better,
        confirm_runs=confirm_runs,
        log_scale=log_scale,
    )
    return _run(s, keep_states=True)[1]


def correct_across_metrics(
    p_values: Sequence[float] | np.ndarray, verdicts: Sequence[str], *, alpha: float
) -> list[str]:
    """Benjamini-Hochberg at ``alpha`` over the new changes of one run's metrics.

    ``p_values[i]`` belongs to metric i's change at this run (NaN where it has none: such
    metrics do not count in the family). A regression/improvement whose adjusted p
    exceeds ``alpha`` reads as suspected instead; other verdicts pass through.
    """
    p = np.asarray(p_values, dtype=float).reshape(-1)
    if p.size != len(verdicts):
        raise ValueError(f"{p.size} p-values for {len(verdicts)} verdicts")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    out = list(verdicts)
    tested = np.flatnonzero(np.isfinite(p))
    if tested.size == 0:
        return out
    q = np.clip(p[tested], 0.0, 1.0)
    order = np.argsort(q, kind="stable")
    scaled = q[order] * q.size / np.arange(1, q.size + 1)
    adjusted = np.empty(q.size)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    downgrade = {REGRESSION: SUSPECTED_REGRESSION, IMPROVEMENT: SUSPECTED_IMPROVEMENT}
    for i, adj in zip(tested, adjusted, strict=True):
        if adj > alpha and out[i] in downgrade:
            out[i] = downgrade[out[i]]
    return out
