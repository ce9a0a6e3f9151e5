"""Survival statistics of right-censored times: Kaplan-Meier curve, median, median ratio.

Used for "time until an event" metrics such as steps to generalise, where a run that
never reached the event within its budget is censored at the budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats as _sps

from forgebench.stats._common import (
    _bool_array,
    _check_confidence,
    _check_resamples,
    _pct,
    _plain,
    _sample,
)
from forgebench.stats.defaults import MIN_UNITS
from forgebench.stats.targets import TARGET_OPS as _TARGET_OPS
from forgebench.stats.targets import check_target

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
    min_runs: int = MIN_UNITS["survival"],
) -> SurvivalComparison:
    """Improvement in a time-to-event metric from Kaplan-Meier medians, with a bootstrap CI.

    Each side is (times, events): an event time where the event happened (e.g. the step
    a run generalised), otherwise the censoring time (e.g. the step budget) with event
    False. Failed runs (errors) are neither and must be left out by the caller.

    * ``improvement = 1 - KM median(candidate) / KM median(baseline)``.
    * A censored median: when a side's curve never drops below 0.5 (more than half its
      runs censored) its median is undefined (NaN), never replaced by the budget. Then
      ``improvement`` is NaN and the verdict ``"inconclusive"``; ``improvement_bounds``
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

    Verdict (the rule of :func:`forgebench.stats.compare`): ``"undetermined"`` when a side
    has no runs; ``"inconclusive"`` below ``min_runs`` runs a side or when a median is
    undefined because of censoring;
    else ``"improvement"`` (``"regression"``) when the whole CI lies above
    ``threshold`` (below ``-threshold``), ``"no change"`` when it lies inside, and
    ``"inconclusive"`` otherwise. Targets use :func:`check_survival_target`.

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
    if min(bt.size, ct.size) < min_runs:
        return result(
            verdict="inconclusive",
            reason=f"{bt.size} vs {ct.size} runs: fewer than the minimum of {min_runs} a side "
            "(statistics.min_units.survival)",
        )
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
            verdict="inconclusive",
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
    if ci[0] > threshold:
        verdict = "improvement"
    elif ci[1] < -threshold:
        verdict = "regression"
    elif ci[0] > -threshold and ci[1] < threshold:
        verdict = "no change"
    else:
        verdict = "inconclusive"
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
