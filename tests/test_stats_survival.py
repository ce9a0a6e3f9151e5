"""Kaplan-Meier survival statistics in forgebench.stats, against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forgebench import stats
from forgebench.stats.survival import _km_median_ci

Z95 = 1.959963984540054

# R's survival::aml data set (Embury et al.): weeks to relapse, 1 = relapse, 0 = censored.
AML_MAINTAINED = ([9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161], [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0])
AML_NONMAINTAINED = ([5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45], [1, 1, 1, 1, 1, 0] + [1] * 6)


def test_kaplan_meier_textbook_example():
    # t:1 event (6 at risk), 2 censored, 3 event (4 at risk), 4 event (3), 5 censored, 6 event (1)
    km = stats.kaplan_meier([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1])
    assert km.times == (1.0, 3.0, 4.0, 6.0)
    assert km.at_risk == (6, 4, 3, 1)
    assert km.events == (1, 1, 1, 1)
    assert km.survival == pytest.approx([5 / 6, 5 / 6 * 3 / 4, 5 / 6 * 3 / 4 * 2 / 3, 0.0])
    assert (km.n, km.n_events, km.last_time) == (6, 4, 6.0)
    assert stats.km_median([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1]) == 4.0


def test_log_log_band_by_hand():
    km = stats.kaplan_meier([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1], conf_type="log-log")
    s = 5 / 6 * 3 / 4  # S(3)
    greenwood = 1 / (6 * 5) + 1 / (4 * 3)
    factor = math.exp(Z95 * math.sqrt(greenwood) / abs(math.log(s)))
    assert km.lower[1] == pytest.approx(s**factor)
    assert km.upper[1] == pytest.approx(s ** (1 / factor))
    # Where S = 0 the variance is undefined: the band keeps its previous upper value.
    assert km.lower[-1] == 0.0
    assert km.upper[-1] == km.upper[-2]


def test_log_band_by_hand():
    km = stats.kaplan_meier([1, 2, 3, 4, 5, 6], [1, 0, 1, 1, 0, 1], conf_type="log")
    s, greenwood = 5 / 6, 1 / (6 * 5)
    assert km.lower[0] == pytest.approx(s * math.exp(-Z95 * math.sqrt(greenwood)))
    assert km.upper[0] == pytest.approx(min(1.0, s * math.exp(Z95 * math.sqrt(greenwood))))


@pytest.mark.parametrize(
    ("data", "median", "ci"),
    [
        # R: survfit(Surv(time, status) ~ x, data = aml) prints median 31, 0.95LCL 18, UCL NA
        # (Maintained) and 23, 8, NA (Nonmaintained), with its default conf.type = "log".
        (AML_MAINTAINED, 31.0, (18.0, math.inf)),
        (AML_NONMAINTAINED, 23.0, (8.0, math.inf)),
    ],
)
def test_median_and_ci_match_r_survfit(data, median, ci):
    assert stats.km_median(*data) == median
    km = stats.kaplan_meier(*data, conf_type="log")
    assert _km_median_ci(km) == ci


@pytest.mark.parametrize(
    "values",
    [[7.0], [3.0, 1.0], [1, 2, 3], [4, 1, 3, 2], [1, 2, 2, 3], [1, 2, 3, 3], [5, 5, 5, 9]]
    + [list(np.random.default_rng(k).integers(1, 50, size=n)) for k, n in ((1, 9), (2, 10))],
)
def test_median_without_censoring_is_the_plain_median(values):
    assert stats.km_median(values, [True] * len(values)) == pytest.approx(np.median(values))


def test_median_undefined_when_most_runs_are_censored():
    # Budget 10: one run generalised at 5, three censored at the budget.
    assert math.isnan(stats.km_median([5, 10, 10, 10], [1, 0, 0, 0]))
    assert stats.km_median_bounds([5, 10, 10, 10], [1, 0, 0, 0]) == (10.0, math.inf)
    assert stats.km_median_bounds([10, 10], [0, 0]) == (10.0, math.inf)


def test_median_on_a_half_plateau():
    # S drops to exactly 0.5 at t=2; nothing after it but censoring: undefined, >= 2.
    assert math.isnan(stats.km_median([1, 2, 3, 4], [1, 1, 0, 0]))
    assert stats.km_median_bounds([1, 2, 3, 4], [1, 1, 0, 0]) == (2.0, math.inf)
    # A later event ends the plateau: the midpoint, as R's survfit.
    assert stats.km_median([1, 2, 3, 4], [1, 1, 0, 1]) == 3.0


def test_censored_time_tied_with_an_event_is_at_risk():
    km = stats.kaplan_meier([2, 2, 3], [1, 0, 1])
    assert km.at_risk == (3, 1)
    assert km.survival == pytest.approx([2 / 3, 0.0])


@pytest.mark.parametrize(
    ("times", "events", "match"),
    [
        ([1, math.nan], [1, 1], "non-finite"),
        ([1, -2], [1, 1], ">= 0"),
        ([1, 2], [1], "equal length"),
        ([1, 2], [1, 2], "booleans"),
    ],
)
def test_bad_input_raises(times, events, match):
    with pytest.raises(ValueError, match=match):
        stats.kaplan_meier(times, events)


def test_ratio_uncensored_identical_sides():
    t = [10, 12, 14, 16, 18]
    r = stats.km_median_ratio_ci(t, [1] * 5, t, [1] * 5, paired=True, seed=3)
    assert r.improvement == 0.0
    assert r.improvement_ci == (0.0, 0.0)  # paired resamples: the same runs on both sides
    assert r.verdict == "no change"  # the whole interval lies inside +-5%
    r = stats.km_median_ratio_ci(t, [1] * 5, t, [1] * 5, seed=3)
    assert r.improvement_ci[0] < 0.0 < r.improvement_ci[1]


def test_ratio_clear_improvement_meets_target():
    base = [1000, 1100, 1200, 1300, 1400, 1500]
    cand = [100, 110, 120, 130, 140, 150]
    r = stats.km_median_ratio_ci(base, [1] * 6, cand, [1] * 6, paired=True, seed=0)
    assert r.median_baseline == 1250.0 and r.median_candidate == 125.0
    assert r.improvement == pytest.approx(0.9)
    assert r.improvement_ci[0] <= 0.9 <= r.improvement_ci[1]
    assert r.improvement_ci[0] > 0.85
    assert r.verdict == "improvement"
    assert stats.check_survival_target(r, op=">=", threshold=0.6) == "met"
    assert stats.check_survival_target(r, op=">=", threshold=0.95) == "not met"


def test_censored_baseline_median_is_inconclusive_not_the_budget():
    """More than half the baseline runs censored: its median is undefined (never the
    budget), so the comparison was measured but cannot decide: inconclusive."""
    budget = 1500
    r = stats.km_median_ratio_ci([budget] * 3, [0] * 3, [700, 800, 900], [1] * 3, paired=True)
    assert math.isnan(r.median_baseline) and r.median_candidate == 800.0
    assert math.isnan(r.improvement)
    assert all(math.isnan(v) for v in r.improvement_ci)
    assert r.verdict == "inconclusive"
    assert "baseline median is undefined" in r.reason
    assert r.improvement_bounds == (pytest.approx(1 - 800 / budget), 1.0)
    assert stats.check_survival_target(r, op=">=", threshold=0.6) == "inconclusive"


def test_censored_resamples_widen_the_interval():
    base_t, base_e = [400, 500, 600, 1000, 1000], [1, 1, 1, 0, 0]
    cand_t, cand_e = [100, 150, 200, 250, 1000], [1, 1, 1, 1, 0]
    r = stats.km_median_ratio_ci(base_t, base_e, cand_t, cand_e, paired=True, seed=1)
    assert r.median_baseline == 600.0 and r.median_candidate == 200.0
    assert r.improvement == pytest.approx(1 - 200 / 600)
    assert r.n_resamples_undefined > 0
    lo, hi = r.improvement_ci
    assert lo <= r.improvement <= hi
    # More than 2.5% of resamples leave the baseline median undefined (at or beyond 600),
    # each contributing its whole range up to 1: the upper bound is 1, not an invented value.
    assert hi == 1.0


def test_undefined_candidate_resamples_reach_minus_infinity():
    base_t, base_e = [100, 110, 120, 130], [1, 1, 1, 1]
    cand_t, cand_e = [50, 60, 70, 500], [1, 1, 1, 0]  # one run censored at 500
    r = stats.km_median_ratio_ci(base_t, base_e, cand_t, cand_e, seed=2, n_resamples=4000)
    assert math.isfinite(r.improvement)
    assert r.improvement_ci[0] == -math.inf
    assert stats.check_survival_target(r, op=">=", threshold=0.3) == "inconclusive"


def test_ratio_is_seeded_and_validates():
    args = ([10, 20, 30, 40], [1, 1, 1, 0], [5, 9, 14, 30], [1, 1, 1, 1])
    a = stats.km_median_ratio_ci(*args, seed=7)
    assert a == stats.km_median_ratio_ci(*args, seed=7)
    with pytest.raises(ValueError, match="paired"):
        stats.km_median_ratio_ci([1, 2], [1, 1], [1], [1], paired=True)
    with pytest.raises(ValueError, match="confidence"):
        stats.km_median_ratio_ci(*args, confidence=1.5)
    empty = stats.km_median_ratio_ci([], [], [1.0], [1])
    assert empty.verdict == "undetermined"
    assert stats.check_survival_target(empty, op=">=", threshold=0.6) == "not measured"


def test_as_dict_is_plain():
    r = stats.km_median_ratio_ci([10, 20, 30], [1, 1, 1], [5, 6, 7], [1, 1, 1], n_resamples=100)
    d = r.as_dict()
    assert isinstance(d["improvement_ci"], list) and d["verdict"] == "improvement"
    assert stats.kaplan_meier([1, 2], [1, 0]).as_dict()["times"] == [1.0]


def _median_from_curve(km):
    """The median rule applied to the numpy curve of kaplan_meier, as an independent path."""
    s, t = np.asarray(km.survival), np.asarray(km.times)
    for i, v in enumerate(s):
        if abs(v - 0.5) < 1e-9:
            later = np.flatnonzero(s[i + 1 :] < 0.5 - 1e-9)
            return (t[i] + t[i + 1 + later[0]]) / 2 if later.size else math.nan
        if v < 0.5:
            return t[i]
    return math.nan


def test_median_agrees_with_the_curve_on_random_censored_data():
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        times = rng.integers(1, 8, size=n).astype(float)  # small range: many ties
        events = rng.random(n) < 0.6
        expected = _median_from_curve(stats.kaplan_meier(times, events))
        got = stats.km_median(times, events)
        assert (math.isnan(got) and math.isnan(expected)) or got == expected, (times, events)


def test_target_on_unusable_times_is_not_measured():
    r = stats.km_median_ratio_ci([0.0, 1.0], [1, 1], [1.0, 2.0], [1, 1])
    assert r.verdict == "undetermined" and "times <= 0" in r.reason
    assert stats.check_survival_target(r, op=">=", threshold=0.6) == "not measured"
    with pytest.raises(ValueError, match="op"):
        stats.check_survival_target(r, op="==", threshold=0.6)


@pytest.mark.parametrize(
    ("base", "cand", "expected"),
    [
        ([1000, 1100, 1200, 1300, 1400, 1500], [100, 110, 120, 130, 140, 150], "improvement"),
        ([100, 110, 120, 130, 140, 150], [1000, 1100, 1200, 1300, 1400, 1500], "regression"),
        ([100, 110, 120, 130, 140, 150], [101, 111, 121, 131, 141, 151], "no change"),
        ([100, 300, 120, 400, 140, 150], [120, 110, 320, 130, 380, 160], "inconclusive"),
    ],
)
def test_ratio_verdict_is_read_off_the_interval(base, cand, expected):
    """The rule of stats.compare: the whole interval beyond +-threshold, inside it, or
    neither."""
    n = len(base)
    r = stats.km_median_ratio_ci(base, [1] * n, cand, [1] * n, paired=True, seed=4)
    lo, hi = r.improvement_ci
    assert r.verdict == expected
    assert (r.verdict == "improvement") == (lo > 0.05)
    assert (r.verdict == "regression") == (hi < -0.05)
    assert (r.verdict == "no change") == (lo > -0.05 and hi < 0.05)


@pytest.mark.parametrize("runs", [1, 2])
def test_ratio_with_fewer_runs_than_the_minimum_is_inconclusive(runs):
    base, cand = [100.0, 110.0][:runs], [50.0, 52.0][:runs]
    r = stats.km_median_ratio_ci(base, [1] * runs, cand, [1] * runs, paired=True, seed=0)
    assert r.verdict == "inconclusive"
    assert stats.check_survival_target(r, op=">=", threshold=0.3) != "met"
