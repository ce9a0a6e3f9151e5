"""Tests of forgebench.stats: known answers against numpy/scipy, small-n behaviour and
seeded property checks (coverage, false-call rate, power)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from forgebench import stats
from forgebench.stats import resampling

# --------------------------------------------------------------------------- percentile


@pytest.mark.parametrize("n", range(1, 31))
def test_percentile_matches_numpy_type7(n):
    x = np.random.default_rng(n).lognormal(0.0, 0.5, n)
    for q in (0, 1, 5, 25, 50, 75, 90, 95, 99, 99.9, 100):
        assert stats.percentile(x, q) == pytest.approx(np.percentile(x, q), rel=1e-12, abs=0)


def test_percentile_single_value_is_that_value():
    assert stats.percentile([0.123], 95) == 0.123
    assert stats.percentile([7.0], 0) == 7.0


def test_p95_of_few_samples_is_not_zero():
    # the replaced system reported p95 = 0 below 20 samples
    x = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert stats.percentile(x, 95) == pytest.approx(8.8)  # 4 + 0.8 * (10 - 4)


@pytest.mark.parametrize(
    ("values", "q"),
    [([], 50), ([1.0, 2.0], -0.1), ([1.0, 2.0], 100.5), ([1.0, math.nan], 50), ([1.0], math.nan)],
)
def test_percentile_rejects_bad_input(values, q):
    with pytest.raises(ValueError):
        stats.percentile(values, q)


def test_percentile_rejects_two_dimensional_input():
    with pytest.raises(ValueError):
        stats.percentile([[1.0, 2.0], [3.0, 4.0]], 50)


# --------------------------------------------------------------------------------- mad


def test_mad_known_answer_and_scipy():
    x = [1, 1, 2, 2, 4, 6, 9]  # median 2, |dev| = 1 1 0 0 2 4 7 -> median 1
    assert stats.mad(x) == 1.0
    y = np.random.default_rng(3).normal(size=101)
    assert stats.mad(y) == pytest.approx(sps.median_abs_deviation(y, scale=1.0))


def test_mad_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        stats.mad([])
    with pytest.raises(ValueError):
        stats.mad([1.0, math.nan])


# ------------------------------------------------------------------------ bootstrap_ci


def test_bootstrap_ci_is_deterministic_per_seed():
    x = np.random.default_rng(1).lognormal(0, 0.3, 40)
    a = stats.bootstrap_ci(x, seed=5)
    assert a == stats.bootstrap_ci(x, seed=5)
    assert a != stats.bootstrap_ci(x, seed=6)


def test_bootstrap_ci_brackets_the_statistic():
    x = np.random.default_rng(2).normal(10, 1, 60)
    for statistic, fn in (("median", np.median), ("mean", np.mean), (np.median, np.median)):
        lo, hi = stats.bootstrap_ci(x, statistic)
        assert lo < fn(x) < hi
    lo99, hi99 = stats.bootstrap_ci(x, "mean", confidence=0.99)
    lo90, hi90 = stats.bootstrap_ci(x, "mean", confidence=0.90)
    assert lo99 < lo90 < hi90 < hi99


def test_bootstrap_ci_single_value():
    assert stats.bootstrap_ci([3.5]) == (3.5, 3.5)


def test_bootstrap_ci_is_vectorised():
    calls = []

    def stat(a, axis):
        calls.append(a.shape)
        return np.median(a, axis=axis)

    stats.bootstrap_ci(np.arange(10.0), stat, n_resamples=2000)
    assert calls == [(2000, 10)]


def test_bootstrap_ci_chunking_bounds_memory_without_changing_result(monkeypatch):
    x = np.random.default_rng(4).lognormal(0, 0.3, 50)
    whole = stats.bootstrap_ci(x, n_resamples=1000, seed=9)
    calls = []

    def stat(a, axis):
        calls.append(a.size)
        return np.median(a, axis=axis)

    monkeypatch.setattr(resampling, "_MAX_RESAMPLE_ELEMENTS", 5000)
    assert stats.bootstrap_ci(x, stat, n_resamples=1000, seed=9) == whole
    assert len(calls) == 10
    assert max(calls) <= 5000


def _np_median(a, axis):
    """np.median behind another name: bootstrap_ci then partitions every resample."""
    return np.median(a, axis=axis)


def _median_samples():
    rng = np.random.default_rng(11)
    for n in (*range(1, 12), 64, 101, 1000, 4095, 4096, 20001):
        yield f"lognormal-{n}", rng.lognormal(0.0, 0.5, n)
        yield f"ties-{n}", rng.integers(0, 4, n) * 0.25  # many equal values
        yield f"signed-zeros-{n}", np.where(rng.random(n) < 0.5, -0.0, 0.0)
        yield f"integers-{n}", rng.integers(-1000, 1000, n).astype(float)


@pytest.mark.parametrize(
    "tweak",
    [
        {},  # the report's settings
        {"_RANK_WINDOW_SIGMAS": 0.0},  # window of one or two ranks: most rows fall back
        {"_RANK_WINDOW_SIGMAS": 1.0, "_MAX_RESAMPLE_ELEMENTS": 7000},  # some fall back, chunks
        {"_RANK_ROW_COUNT_MIN_N": 1},  # count row by row at every n
        {"_RANK_ROW_COUNT_MIN_N": 10**9},  # one offset bincount at every n
    ],
)
def test_resampled_median_by_ranks_is_np_median_bit_for_bit(monkeypatch, tweak):
    """Must show: the rank-counting median of bootstrap resamples (_RankMedian) gives
    exactly np.median's numbers from the same draws, at every n, with ties and signed
    zeros, through the window, its fallback and both ways of counting."""
    for name, value in tweak.items():
        monkeypatch.setattr(resampling, name, value)
    for label, x in _median_samples():
        fast = resampling._resampled(x, np.median, 300, np.random.default_rng(5))
        slow = resampling._resampled(x, _np_median, 300, np.random.default_rng(5))
        assert fast.tobytes() == slow.tobytes(), label


def test_median_bootstraps_keep_their_numbers_and_compare_draws_nothing(monkeypatch):
    """Must show: bootstrap_ci and paired_bootstrap give the same intervals through the
    rank median as through np.median partitioning every resample (the numbers the report
    printed before the rank median); and compare, whose interval is exact (rank-test or t
    inversion), no longer draws a bootstrap at all: its result does not depend on a seed
    and it runs with the resampler broken."""
    rng = np.random.default_rng(3)
    for n in (2, 7, 40, 501, 5000):
        x = rng.lognormal(0.0, 0.4, n)
        for seed in (0, 1):
            assert stats.bootstrap_ci(x, "median", seed=seed) == stats.bootstrap_ci(
                x, _np_median, seed=seed
            )
    a, b = rng.lognormal(0.0, 0.2, 300), rng.lognormal(-0.1, 0.2, 300)
    fast = stats.paired_bootstrap(a, b, statistic="median", seed=4)
    orig = resampling._resampled

    def partitioned(x, fn, n_resamples, gen):
        return orig(x, _np_median if fn is np.median else fn, n_resamples, gen)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(resampling, "_resampled", partitioned)
        assert stats.paired_bootstrap(a, b, statistic="median", seed=4) == fast

    base, cand = rng.lognormal(0.0, 0.2, 300), rng.lognormal(-0.1, 0.2, 301)
    seeded = stats.compare(base, cand, higher_is_better=False, seed=4)

    def broken(*args, **kwargs):
        raise AssertionError("compare drew a bootstrap")

    monkeypatch.setattr(resampling, "_resampled", broken)
    assert stats.compare(base, cand, higher_is_better=False, seed=5) == seeded
    assert seeded.verdict == "improvement"


def test_bootstrap_ci_rejects_bad_arguments():
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], "mode")
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError):
        stats.bootstrap_ci([1.0, 2.0], lambda a, axis: a)  # does not reduce


def test_bootstrap_ci_median_coverage_lognormal():
    rng = np.random.default_rng(2024)
    true_median = 1.0  # lognormal(mu=0): median exp(0)
    trials = 200
    covered = 0
    for i in range(trials):
        x = rng.lognormal(0.0, 0.5, 50)
        lo, hi = stats.bootstrap_ci(x, "median", n_resamples=1000, seed=i)
        covered += lo <= true_median <= hi
    # nominal 95%; binomial sd at 200 trials is ~1.5 points
    assert 0.89 <= covered / trials <= 0.995


# ----------------------------------------------------------------------------- outliers


def test_planted_outlier_flagged_not_dropped():
    x = np.random.default_rng(5).lognormal(0, 0.05, 50)
    x[17] = 100.0
    by_mad = stats.outliers_mad(x)
    by_iqr = stats.outliers_iqr(x)
    assert by_mad.dtype == bool and by_mad.shape == x.shape
    assert by_mad[17] and by_iqr[17]
    assert by_mad.sum() <= 2
    s = stats.summarize(x)
    assert s.n == 50 and s.max == 100.0
    assert s.n_outliers_mad >= 1 and s.n_outliers_iqr >= 1
    assert any("outlier" in w for w in s.warnings)


def test_low_outliers_flagged_too():
    x = np.random.default_rng(22).lognormal(0, 0.05, 40)
    x[3] = 0.01
    assert stats.outliers_mad(x)[3] and stats.outliers_iqr(x)[3]


def test_outliers_mad_matches_modified_z_score():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 30.0])
    med = np.median(x)
    z = 0.6745 * np.abs(x - med) / np.median(np.abs(x - med))
    np.testing.assert_array_equal(stats.outliers_mad(x), z > 3.5)
    np.testing.assert_array_equal(stats.outliers_mad(x, threshold=100.0), np.zeros(7, bool))


def test_outliers_mad_zero_mad_fallback():
    assert stats.outliers_mad([10.0] * 9 + [11.0]).tolist() == [False] * 9 + [True]
    # a 60/40 split between two timer ticks is not an outlier pattern
    assert not stats.outliers_mad([10.0] * 6 + [11.0] * 4).any()
    assert not stats.outliers_mad([5.0] * 8).any()


def test_outliers_iqr_tukey_fences():
    x = np.random.default_rng(6).normal(size=40)
    x[0] = 8.0
    q1, q3 = np.percentile(x, [25, 75])
    expected = (x < q1 - 1.5 * (q3 - q1)) | (x > q3 + 1.5 * (q3 - q1))
    np.testing.assert_array_equal(stats.outliers_iqr(x), expected)
    assert expected[0]
    assert stats.outliers_iqr(x, k=100.0).sum() == 0


# ------------------------------------------------------------------ instability warnings


def test_stable_sample_has_no_warnings():
    x = np.random.default_rng(7).normal(1e-3, 1e-6, 50)
    assert stats.instability_warnings(x) == []


def test_warns_on_too_few_samples():
    w = stats.instability_warnings([1.0, 1.01, 0.99])
    assert len(w) == 1 and "Only 3 sample(s)" in w[0] and "20" in w[0]


def test_warns_on_wide_spread_with_number_and_advice():
    x = np.random.default_rng(8).lognormal(0, 0.5, 50)
    w = stats.instability_warnings(x)
    assert any("standard deviation" in s and "% of the mean" in s for s in w)
    assert any("median absolute deviation" in s for s in w)
    assert all(s.endswith(".") for s in w)
    assert stats.instability_warnings(x, max_rel_spread=10.0) == []


def test_warns_on_values_too_short_to_time():
    x = np.full(30, 5e-8) + np.random.default_rng(9).normal(0, 1e-10, 30)
    assert any("shortest value" in s for s in stats.instability_warnings(x))
    assert any("shortest value" in s for s in stats.instability_warnings(x * 1e3, unit="ms"))
    assert any("shortest value" in s for s in stats.instability_warnings(x * 1e9, unit="ns"))
    long = x * 1000  # 50 us
    assert not any("shortest value" in s for s in stats.instability_warnings(long))
    assert not any("shortest value" in s for s in stats.instability_warnings(long * 1e9, unit="ns"))
    # not a time: no duration check
    assert not any("shortest" in s for s in stats.instability_warnings(x, unit="accuracy"))
    assert stats.instability_warnings(x * 100, min_duration_s=1e-7) == []


def test_warns_on_identical_and_negative_durations():
    assert any("identical" in s for s in stats.instability_warnings([0.5] * 25))
    assert any("negative" in s for s in stats.instability_warnings([0.5] * 24 + [-0.1]))


def test_instability_warnings_edge_inputs():
    assert "No samples" in stats.instability_warnings([])[0]
    with pytest.raises(ValueError):
        stats.instability_warnings([1.0, math.nan])
    with pytest.raises(ValueError):
        stats.instability_warnings([1.0], unit="tokens", min_duration_s=1.0)


# ----------------------------------------------------------------------------- summarize


def test_summarize_matches_numpy():
    x = np.random.default_rng(10).lognormal(0, 0.2, 37)
    s = stats.summarize(x, seed=3)
    assert s.n == 37
    assert s.mean == pytest.approx(np.mean(x))
    assert s.std == pytest.approx(np.std(x, ddof=1))
    assert s.median == s.p50 == pytest.approx(np.median(x))
    for name, q in (("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, name) == pytest.approx(np.percentile(x, q))
    assert (s.min, s.max) == (x.min(), x.max())
    assert s.mad == pytest.approx(stats.mad(x))
    # the median's CI is the order-statistic interval: ranks 13 and 25 of 37 at 95%
    # (P(Binomial(37, 1/2) <= 12) = 1.2% per tail)
    assert stats.quantile_ranks(37, 0.5) == (13, 25)
    assert (s.ci_low, s.ci_high) == tuple(np.sort(x)[[12, 24]]) == stats.quantile_ci(x, 0.5)
    assert s.ci_low < s.median < s.ci_high
    assert s.confidence == 0.95
    assert isinstance(s.warnings, tuple)


def test_summarize_small_n():
    s = stats.summarize([0.25])
    assert s.p95 == s.p99 == s.median == 0.25
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    assert any("Only 1 sample" in w for w in s.warnings)
    s5 = stats.summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s5.p95 == pytest.approx(8.8)


@pytest.mark.parametrize("n", range(2, 6))
def test_summarize_median_ci_does_not_exist_below_six_values(n):
    """At 95% the order-statistic interval of a median needs 6 values (1 - 2 / 2^n >= 0.95
    first at n = 6); below that it is NaN, never [min, max] covering less than claimed."""
    x = np.arange(1.0, n + 1)
    s = stats.summarize(x)
    assert math.isnan(s.ci_low) and math.isnan(s.ci_high)
    assert s.median == np.median(x)


def test_summarize_median_ci_at_six_values_is_min_to_max_and_covers():
    s = stats.summarize([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    assert (s.ci_low, s.ci_high) == (1.0, 9.0)  # coverage 1 - 2 / 64 = 96.9%
    # at 99% a median needs 8 values (1 - 2 / 2^n >= 0.99): seven have no interval
    assert math.isnan(stats.summarize(np.arange(1.0, 8.0), confidence=0.99).ci_low)
    s8 = stats.summarize(np.arange(1.0, 9.0), confidence=0.99)
    assert (s8.ci_low, s8.ci_high) == (1.0, 8.0)


def test_summarize_rejects_empty_and_nan():
    with pytest.raises(ValueError):
        stats.summarize([])
    with pytest.raises(ValueError):
        stats.summarize([1.0, math.nan, 2.0])


def test_summary_as_dict_is_plain_and_serialisable():
    d = stats.summarize(np.random.default_rng(11).normal(5, 0.1, 30), unit="ms").as_dict()
    assert d["n"] == 30 and d["unit"] == "ms" and isinstance(d["warnings"], list)
    for key in ("mean", "p95", "ci_low", "ci_high", "n_outliers_mad"):
        assert key in d and type(d[key]) in (int, float)
    json.dumps(d)


# ------------------------------------------------------------------------------- compare

CALLS = ("improvement", "regression")


def _binomial_bound(rate: float, trials: int, sds: float = 3.0) -> float:
    """``rate`` plus ``sds`` binomial standard deviations at ``trials`` trials."""
    return rate + sds * math.sqrt(rate * (1.0 - rate) / trials)


def _agrees_with_interval(c: stats.Comparison) -> bool:
    """The decision rule of docs/verdicts.md, read off the comparison's own interval."""
    lo, hi = c.improvement_ci
    t = c.threshold
    beyond = lo > t or hi < -t
    expected = {
        "improvement": lo > t,
        "regression": hi < -t,
        "no change": -t < lo and hi < t,
        "inconclusive": not beyond and not (-t < lo and hi < t),  # NaN bounds: both False
    }
    if c.verdict not in expected:
        return False
    # the dual: p_value < 1 - confidence exactly when the interval lies beyond the threshold
    dual = (c.p_value < 1.0 - c.confidence) == beyond
    return expected[c.verdict] and dual and c.significant == (c.verdict in CALLS)


def test_verdict_words():
    assert stats.VERDICTS == (
        "improvement",
        "regression",
        "no change",
        "inconclusive",
        "failed",
        "undetermined",
        "not measurable at this budget",
    )


def test_compare_known_answers_against_scipy():
    """Independent rows: Hodges-Lehmann shift of the log values (median of all pairwise
    log differences), its interval the set of shifts neither one-sided exact Mann-Whitney
    test rejects at 2.5% (checked against scipy), p_no_change scipy's exact two-sided p."""
    rng = np.random.default_rng(12)
    a = rng.lognormal(0, 0.1, 25)
    b = rng.lognormal(0.05, 0.15, 31)
    c = stats.compare(a, b, higher_is_better=False)
    la, lb = np.log(a), np.log(b)
    assert c.p_no_change == pytest.approx(sps.mannwhitneyu(b, a, method="exact").pvalue)
    assert (c.n_baseline, c.n_candidate) == (25, 31)
    assert (c.n_units_baseline, c.n_units_candidate) == (25, 31)
    assert c.design == "independent rows" and c.method == "Mann-Whitney (Hodges-Lehmann)"
    assert c.median_baseline == np.median(a) and c.median_candidate == np.median(b)
    shift = np.median(np.subtract.outer(lb, la))
    assert math.log(c.ratio) == pytest.approx(shift, rel=1e-12)
    assert c.improvement == pytest.approx(1 - c.ratio)
    assert c.speedup == pytest.approx(1 / c.ratio)
    brute = np.sign(b[:, None] - a[None, :]).mean()
    assert c.effect_size == pytest.approx(brute)
    lo, hi = (math.log(r) for r in c.ratio_ci)
    eps = 1e-9

    def p_greater(d0):  # H0: shift <= d0
        return sps.mannwhitneyu(lb - d0, la, alternative="greater", method="exact").pvalue

    def p_less(d0):  # H0: shift >= d0
        return sps.mannwhitneyu(lb - d0, la, alternative="less", method="exact").pvalue

    assert p_greater(lo - eps) <= 0.025 < p_greater(lo + eps)
    assert p_less(hi + eps) <= 0.025 < p_less(hi - eps)
    assert c.improvement_ci == pytest.approx((1 - math.exp(hi), 1 - math.exp(lo)))
    assert c.speedup_ci == pytest.approx((math.exp(-hi), math.exp(-lo)))
    assert c.improvement_ci[0] < c.improvement < c.improvement_ci[1]
    assert c.verdict == "inconclusive"  # -3.5%, CI -10.4% to +2.7%: reaches across -5%


def test_compare_paired_rows_known_answers_against_scipy():
    """Paired rows (by position, or by shared one-row labels): the median of the Walsh
    averages of the log differences, p_no_change the exact Wilcoxon signed-rank p."""
    rng = np.random.default_rng(21)
    b = rng.lognormal(0, 0.1, 15)
    c = b * np.exp(rng.normal(0.05, 0.05, 15))
    r = stats.compare(b, c, higher_is_better=False, paired=True)
    d = np.log(c) - np.log(b)
    i, j = np.triu_indices(15)
    assert r.design == "paired rows (by position)"
    assert r.method == "Wilcoxon signed-rank (Hodges-Lehmann)"
    assert math.log(r.ratio) == pytest.approx(np.median((d[i] + d[j]) / 2))
    assert r.p_no_change == pytest.approx(sps.wilcoxon(d, method="exact").pvalue)
    labels = [f"round{k}" for k in range(15)]
    by_label = stats.compare(
        b, c, higher_is_better=False, baseline_units=labels, candidate_units=labels
    )
    assert by_label.design == "paired rows (shared ids)"
    assert by_label.ratio_ci == pytest.approx(r.ratio_ci)


def test_compare_repetitions_are_the_units():
    """Several rows per repetition: each repetition is one unit (the median of its log
    values); shared repetition ids pair the sides (paired t), others are independent
    (Welch). Known answers against scipy's t tests and their intervals."""
    rng = np.random.default_rng(22)
    units = np.repeat(np.arange(4), 8)
    b = rng.lognormal(0, 0.1, 32)
    c = rng.lognormal(0.1, 0.1, 32)
    mb = [np.median(np.log(b[units == k])) for k in range(4)]
    mc = [np.median(np.log(c[units == k])) for k in range(4)]
    paired = stats.compare(
        b, c, higher_is_better=False, baseline_units=units, candidate_units=units
    )
    t = sps.ttest_rel(mc, mb)
    assert paired.design == "paired repetitions (shared ids)"
    assert (paired.n_units_baseline, paired.n_units_candidate) == (4, 4)
    assert (paired.n_baseline, paired.n_candidate) == (32, 32)
    assert paired.p_no_change == pytest.approx(t.pvalue)
    assert np.log(paired.ratio_ci) == pytest.approx(tuple(t.confidence_interval(0.95)))
    welch = stats.compare(
        b, c, higher_is_better=False, baseline_units=units, candidate_units=units + 10
    )
    t = sps.ttest_ind(mc, mb, equal_var=False)
    assert welch.design == "independent repetitions"
    assert welch.method == "Welch t on repetition medians"
    assert welch.p_no_change == pytest.approx(t.pvalue)
    assert np.log(welch.ratio_ci) == pytest.approx(tuple(t.confidence_interval(0.95)))
    refused = stats.compare(
        b, c, higher_is_better=False, baseline_units=units, candidate_units=units, paired=False
    )
    assert refused.design == "independent repetitions" and refused.ratio_ci == welch.ratio_ci


def test_compare_repetitions_below_the_minimum_are_inconclusive():
    """Two repetitions of 50 rows a side are two units a side, not 100 rows."""
    rng = np.random.default_rng(23)
    units = np.repeat([0, 1], 50)
    c = stats.compare(
        rng.lognormal(0, 0.05, 100),
        rng.lognormal(0.5, 0.05, 100),
        higher_is_better=False,
        baseline_units=units,
        candidate_units=units,
    )
    assert c.verdict == "inconclusive" and not c.significant
    assert "2 vs 2 independent units: fewer than the minimum of 3" in c.reason
    assert math.isnan(c.p_value)


def test_compare_higher_is_better_definitions():
    a = np.array([100.0, 101.0, 99.0, 100.5, 99.5, 100.2])
    b = a * 1.2
    up = stats.compare(a, b, higher_is_better=True)
    assert up.improvement == pytest.approx(0.2)
    assert up.speedup == pytest.approx(1.2)
    assert up.verdict == "improvement" and up.significant
    down = stats.compare(a, b, higher_is_better=False)
    assert down.improvement == pytest.approx(1 - 1.2)
    assert down.speedup == pytest.approx(1 / 1.2)
    assert down.verdict == "regression"


def test_compare_clear_improvement_and_regression():
    rng = np.random.default_rng(13)
    a = rng.lognormal(0, 0.05, 30)
    fast = rng.lognormal(np.log(0.7), 0.05, 30)
    imp = stats.compare(a, fast, higher_is_better=False)
    assert imp.verdict == "improvement" and imp.significant
    assert imp.improvement == pytest.approx(0.3, abs=0.05)
    assert imp.improvement_ci[0] > 0.2
    assert imp.p_value < 0.05 and imp.p_no_change < 0.05
    assert "improvement +" in imp.reason and "whole interval lies above +5.0%" in imp.reason
    reg = stats.compare(fast, a, higher_is_better=False)
    assert reg.verdict == "regression" and reg.improvement_ci[1] < -0.05
    assert "whole interval lies below -5.0%" in reg.reason


def test_compare_detectable_but_below_threshold_is_no_change():
    """A 2% slowdown measured to +-0.1%: distinguishable from zero (p_no_change tiny) but
    the whole interval lies inside +-5%, so "no change" (equivalence); with a 1%
    threshold the whole interval lies beyond it: "regression"."""
    rng = np.random.default_rng(14)
    a = rng.normal(1.0, 0.001, 40)
    b = a * 1.02
    c = stats.compare(a, b, higher_is_better=False, threshold=0.05)
    assert c.verdict == "no change" and not c.significant
    assert c.p_no_change < 1e-6 and c.p_value > 0.05
    assert -0.05 < c.improvement_ci[0] < c.improvement_ci[1] < 0.05
    assert "inside ±5.0%" in c.reason
    assert stats.compare(a, b, higher_is_better=False, threshold=0.01).verdict == "regression"


def test_compare_identical_samples_no_change():
    c = stats.compare([1.0] * 10, [1.0] * 10, higher_is_better=False)
    assert c.verdict == "no change" and not c.significant
    assert c.improvement == 0.0 and c.improvement_ci == (0.0, 0.0)


def test_compare_wide_interval_is_inconclusive_not_no_change():
    """No detectable difference is not evidence of none: an interval reaching across the
    threshold is inconclusive (the old rule called it "no significant change")."""
    rng = np.random.default_rng(24)
    c = stats.compare(rng.lognormal(0, 0.5, 10), rng.lognormal(0, 0.5, 10), higher_is_better=False)
    assert c.p_no_change > 0.05
    assert c.improvement_ci[0] < -0.05 or c.improvement_ci[1] > 0.05
    assert c.verdict == "inconclusive" and "reaches across" in c.reason


@pytest.mark.parametrize(
    ("base", "cand", "fragment"),
    [
        ([], [1.0, 2.0], "baseline has no values"),
        ([1.0, 2.0], [], "candidate has no values"),
        ([], [], "no values"),
        ([0.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0], "baseline has values <= 0"),
        ([1.0, 2.0, 3.0, 4.0], [1.0, -2.0, 3.0, 4.0], "candidate has values <= 0"),
        ([1.0, math.nan, 2.0], [1.0, 2.0, 3.0], "NaN"),
        ([1.0, 2.0, 3.0], [1.0, math.inf, 3.0], "NaN/inf"),
    ],
)
def test_compare_undetermined(base, cand, fragment):
    c = stats.compare(base, cand, higher_is_better=False)
    assert c.verdict == "undetermined"
    assert not c.significant
    assert fragment in c.reason
    assert all(math.isnan(v) for v in c.improvement_ci) and math.isnan(c.p_value)


def test_compare_zero_values_are_undetermined_not_an_undefined_interval():
    """A zero time has no log: the ratio is undefined, so no verdict (the old rule
    computed a point ratio of medians and left only its bootstrap interval NaN)."""
    base = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    c = stats.compare(base, [2.0] * 8, higher_is_better=False)
    assert c.verdict == "undetermined" and c.method == "none"
    assert math.isnan(c.improvement) and all(math.isnan(v) for v in c.improvement_ci)


def test_compare_without_an_interval_is_never_significant(monkeypatch):
    """If the interval cannot be computed (here: the rank inversion made to fail), the
    verdict is inconclusive and nothing is called, whatever the point estimate says."""
    from forgebench.stats import comparison

    monkeypatch.setattr(comparison.RankShift, "interval", lambda self, conf: (math.nan, math.nan))
    a = np.linspace(1.0, 1.1, 20)
    c = stats.compare(a, a * 2, higher_is_better=False)
    assert c.verdict == "inconclusive" and not c.significant
    assert "interval to exist" in c.reason
    assert c.improvement == pytest.approx(-1.0)


def test_compare_three_per_side_is_inconclusive_even_when_separated():
    """3 vs 3: Mann-Whitney's smallest two-sided p is 2 / C(6, 3) = 0.1, so no 95%
    interval of the shift exists and the data cannot decide; the old rule fell back to a
    bootstrap interval there (a range-overlap check calling 9-10% of A/A pairs) and
    called this a regression."""
    c = stats.compare([1.0, 1.01, 0.99], [2.0, 2.02, 1.98], higher_is_better=False)
    assert c.verdict == "inconclusive" and not c.significant
    assert all(math.isnan(v) for v in c.improvement_ci)
    assert c.p_value >= 0.1 and c.p_no_change == pytest.approx(0.1)
    assert "interval to exist" in c.reason
    # 4 vs 4 can reach p = 2/70 < 0.05: the interval exists and decides
    four = stats.compare([1.0, 1.01, 0.99, 1.02], [2.0, 2.02, 1.98, 2.01], higher_is_better=False)
    assert four.verdict == "regression" and four.improvement_ci[1] < -0.05
    assert four.p_value < 0.05


@pytest.mark.parametrize(("m", "n"), [(1, 5), (2, 2), (2, 30)])
def test_compare_below_the_minimum_units_is_inconclusive(m, n):
    c = stats.compare(np.linspace(1.0, 1.01, m), np.linspace(2.0, 2.02, n), higher_is_better=False)
    assert c.verdict == "inconclusive" and not c.significant
    assert f"{m} vs {n} independent units: fewer than the minimum of 3" in c.reason
    assert all(math.isnan(v) for v in c.improvement_ci) and math.isnan(c.p_value)


def test_compare_min_units_is_a_setting():
    base, cand = [1.0, 1.01, 0.99, 1.02], [2.0, 2.02, 1.98, 2.01]
    c = stats.compare(base, cand, higher_is_better=False, min_units=5)
    assert c.verdict == "inconclusive" and "minimum of 5" in c.reason


def test_compare_failures_fail_the_comparison_and_hide_the_speed():
    rng = np.random.default_rng(25)
    base, cand = rng.lognormal(0, 0.1, 40), rng.lognormal(np.log(0.1), 0.1, 30)
    c = stats.compare(base, cand, higher_is_better=False, failures=(0, 10))
    assert c.verdict == "failed" and not c.significant
    assert (c.failures_baseline, c.failures_candidate) == (0, 10)
    for name in ("improvement", "speedup", "ratio", "median_candidate", "median_baseline"):
        assert math.isnan(getattr(c, name)), name
    assert all(math.isnan(v) for v in (*c.improvement_ci, *c.speedup_ci))
    lo, hi = c.failure_rate_candidate_ci
    assert (lo, hi) == pytest.approx(stats.proportion_ci(10, 40))
    # baseline failures alone never fail the candidate
    ok = stats.compare(base, cand, higher_is_better=False, failures=(10, 0))
    assert ok.verdict == "improvement"


def test_compare_is_deterministic_and_serialisable():
    rng = np.random.default_rng(15)
    a, b = rng.lognormal(0, 0.1, 20), rng.lognormal(0, 0.1, 20)
    c1 = stats.compare(a, b, higher_is_better=False)
    assert c1 == stats.compare(a, b, higher_is_better=False)
    d = c1.as_dict()
    assert d["verdict"] in stats.VERDICTS and isinstance(d["improvement_ci"], list)
    json.dumps(d)


def test_compare_rejects_bad_parameters():
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, alpha=0.0)
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, threshold=-0.1)
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, threshold=1.0)
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, confidence=1.0)
    with pytest.raises(ValueError, match="equal lengths"):
        stats.compare([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0], higher_is_better=False, paired=True)
    with pytest.raises(ValueError, match="labels"):
        stats.compare(
            [1.0, 2.0, 3.0, 4.0],
            [1.0, 2.0, 3.0, 4.0],
            higher_is_better=False,
            baseline_units=[0, 1, 2],
            candidate_units=[0, 1, 2, 3],
        )


def test_compare_rejects_mislabelled_units_whatever_their_count():
    with pytest.raises(ValueError, match="labels"):
        stats.compare(
            [1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0],
            higher_is_better=False,
            baseline_units=[0, 1],
            candidate_units=[0, 1, 2],
        )
    with pytest.raises(ValueError, match="equal lengths"):
        stats.compare([1.0, 2.0, 3.0], [1.0, 2.0], higher_is_better=False, paired=True)


def _designs(rng: np.random.Generator, k: int) -> dict:
    """Keyword arguments of one random comparison, cycling through every design."""
    shift = rng.choice([0.0, 0.03, 0.05, 0.08, 0.15, -0.1])
    kind = k % 4
    n = int(rng.integers(4, 40))
    if kind == 0:  # independent rows
        b, c = rng.lognormal(0, 0.1, n), rng.lognormal(shift, 0.1, int(rng.integers(4, 40)))
        return {"baseline": b, "candidate": c}
    if kind == 1:  # paired rows
        b = rng.lognormal(0, 0.1, n)
        return {"baseline": b, "candidate": b * np.exp(rng.normal(shift, 0.05, n)), "paired": True}
    reps = int(rng.integers(3, 7))
    units = np.repeat(np.arange(reps), 5)
    b = np.exp(np.repeat(rng.normal(0, 0.05, reps), 5) + rng.normal(0, 0.05, units.size))
    c = np.exp(np.repeat(rng.normal(shift, 0.05, reps), 5) + rng.normal(0, 0.05, units.size))
    other = units + (100 if kind == 3 else 0)  # kind 3: independent repetitions
    return {"baseline": b, "candidate": c, "baseline_units": units, "candidate_units": other}


def test_verdict_never_contradicts_its_interval_and_p_value_is_its_dual():
    """Over 400 random comparisons of every design (independent rows, paired rows, paired
    and independent repetitions), true changes inside, at and beyond the threshold: the
    verdict is what the interval says, and p_value < 1 - confidence exactly when the
    interval lies beyond the threshold."""
    rng = np.random.default_rng(26)
    bad = []
    seen = set()
    for k in range(400):
        kwargs = _designs(rng, k)
        hib = bool(k % 3 == 0)
        conf = (0.95, 0.9, 0.99)[k % 3]
        c = stats.compare(**kwargs, higher_is_better=hib, confidence=conf)
        seen.add((c.design, c.verdict))
        if not _agrees_with_interval(c):
            bad.append((k, c.design, c.verdict, c.improvement_ci, c.p_value))
    assert bad == []
    verdicts = {v for _, v in seen}
    assert {"improvement", "regression", "no change", "inconclusive"} <= verdicts
    assert len({d for d, _ in seen}) == 4


def test_compare_false_call_rate_a_a():
    """A/A at 30 vs 30: a call needs the whole interval beyond +-5%, which the rule bounds
    at 2.5% a side even for a true change at the threshold (0 calls in 4000 trials)."""
    rng = np.random.default_rng(16)
    trials = 400
    verdicts = [
        stats.compare(
            rng.lognormal(0, 0.1, 30), rng.lognormal(0, 0.1, 30), higher_is_better=False
        ).verdict
        for _ in range(trials)
    ]
    calls = sum(v in CALLS for v in verdicts)
    assert calls / trials <= _binomial_bound(0.025, trials)
    assert set(verdicts) <= {"no change", "inconclusive"} | set(CALLS)


@pytest.mark.parametrize(("true_change", "seed"), [(0.03, 31), (0.05, 32)])
def test_compare_change_at_or_inside_the_threshold_is_called_at_most_2_5_percent(true_change, seed):
    """A true slowdown inside (3%) or exactly at (5%) the threshold: "regression" is
    claimed only when the whole interval lies below -5%, so at most 2.5% of the time (the
    one-sided error of a 95% interval); measured 0.4% and 2.7% (+-0.25%) over 4000
    trials."""
    rng = np.random.default_rng(seed)
    trials = 1000
    calls = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 30),
            rng.lognormal(np.log1p(true_change), 0.1, 30),
            higher_is_better=False,
        ).verdict
        == "regression"
        for _ in range(trials)
    )
    assert calls / trials <= _binomial_bound(0.025, trials)


def test_compare_detects_injected_regression():
    """A true 20% slowdown at 30 vs 30 (sigma 0.1): power 99.85% over 2000 trials."""
    rng = np.random.default_rng(17)
    trials = 400
    hits = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 30),
            rng.lognormal(np.log(1.2), 0.1, 30),
            higher_is_better=False,
        ).verdict
        == "regression"
        for _ in range(trials)
    )
    assert hits / trials >= 0.9985 - 3 * math.sqrt(0.9985 * 0.0015 / trials)


@pytest.mark.slow
def test_compare_power_at_least_90_percent_many_trials():
    """A true 10% slowdown beyond a 5% threshold needs about 120 values a side for 90%
    power (the interval must clear -5%, not 0): measured 94.2% over 2000 trials."""
    rng = np.random.default_rng(18)
    trials = 3000
    hits = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 120),
            rng.lognormal(np.log(1.1), 0.1, 120),
            higher_is_better=False,
        ).verdict
        == "regression"
        for _ in range(trials)
    )
    assert hits / trials >= 0.90


def test_compare_handles_large_samples_without_overflow():
    """10^4 values per side (a pooling run): 10^8 pairwise differences are counted by
    bisection, not materialised, and the null is the normal approximation."""
    rng = np.random.default_rng(0)
    result = stats.compare(rng.random(10_000) + 1, rng.random(10_000) + 0.5, higher_is_better=False)
    assert result.verdict == "improvement"
    assert result.method == "Mann-Whitney (Hodges-Lehmann)"
    assert result.improvement_ci[0] < result.improvement < result.improvement_ci[1]


# ------------------------------------------------------------------------ compare_family


def _family_members(rng: np.random.Generator) -> list[dict]:
    members = [
        {
            "baseline": rng.lognormal(0, 0.1, 30),
            "candidate": rng.lognormal(0, 0.1, 30),
            "higher_is_better": False,
        }
        for _ in range(18)
    ]
    members.append(
        {
            "baseline": rng.lognormal(0, 0.1, 30),
            "candidate": rng.lognormal(np.log(1.5), 0.1, 30),
            "higher_is_better": False,
        }
    )
    members.append(
        {"baseline": [1.0, 1.1, 1.2], "candidate": [2.0, 2.1], "higher_is_better": False}
    )
    members.append(
        {"baseline": [0.0, 1.0, 1.0], "candidate": [1.0, 1.0, 1.0], "higher_is_better": False}
    )
    return members


def test_compare_family_is_benjamini_hochberg_with_adjusted_intervals():
    """Each member's p_value goes through Benjamini-Hochberg at alpha; every tested member
    is then judged on its 1 - max(R, 1) * alpha / m interval (Benjamini-Yekutieli), so the
    calls are exactly the selected members. Members decided before any interval (too few
    units, undetermined) keep their verdict and do not count in m."""
    members = _family_members(np.random.default_rng(27))
    alone = [stats.compare(**m) for m in members]
    family = stats.compare_family(members, alpha=0.05)
    tested = [i for i, c in enumerate(alone) if not math.isnan(c.p_value)]
    m = len(tested)
    assert m == 19
    r = stats.selected_count([alone[i].p_value for i in tested], 0.05)
    level = 1 - max(r, 1) * 0.05 / m
    adjusted = stats.benjamini_hochberg([alone[i].p_value for i in tested])
    for i, p_adj in zip(tested, adjusted, strict=True):
        f = family[i]
        assert f.confidence == pytest.approx(level) and f.family_size == m
        at_level = stats.compare(**members[i], confidence=level)
        assert f.improvement_ci == at_level.improvement_ci
        assert (f.verdict in CALLS) == (p_adj <= 0.05)
        assert "Benjamini-Hochberg" in f.reason
    assert family[18].verdict == "regression"
    assert (family[19].verdict, family[20].verdict) == ("inconclusive", "undetermined")
    assert family[19] == alone[19] and family[20] == alone[20]


def test_compare_family_withholds_a_call_the_family_does_not_select():
    """A 12% slowdown called alone at 95% (p = 0.019) is one of 20 comparisons: BH does
    not select it (0.019 > 2 * 0.05 / 20), so its 99.75% interval reaches across -5%."""
    rng = np.random.default_rng(3)
    base, cand = rng.lognormal(0, 0.1, 30), rng.lognormal(0, 0.1, 30) * 1.12
    alone = stats.compare(base, cand, higher_is_better=False)
    assert alone.verdict == "regression" and 0.05 / 20 < alone.p_value < 0.05
    members = [{"baseline": base, "candidate": cand, "higher_is_better": False}]
    members += [
        {
            "baseline": rng.lognormal(0, 0.1, 30),
            "candidate": rng.lognormal(0, 0.1, 30) * (1.5 if k == 0 else 1.0),
            "higher_is_better": False,
        }
        for k in range(19)
    ]
    family = stats.compare_family(members)
    assert family[0].verdict == "inconclusive" and family[0].confidence == pytest.approx(0.9975)
    assert family[1].verdict == "regression"
    assert sum(c.verdict in CALLS for c in family) == 1


def test_compare_family_of_one_is_compare():
    member = {"baseline": [1.0, 1.1, 1.2, 1.3], "candidate": [2.0, 2.1, 2.2, 2.3]}
    (only,) = stats.compare_family([{**member, "higher_is_better": False}])
    assert only == stats.compare(**member, higher_is_better=False)


def test_compare_family_a_a_false_calls_are_rare():
    """Twenty A/A comparisons per family, 50 families: the family-wise rule keeps the
    share of families with any call at most alpha = 5% (0 of 1000 measured)."""
    rng = np.random.default_rng(28)
    families = 50
    with_calls = 0
    for _ in range(families):
        members = [
            {
                "baseline": rng.lognormal(0, 0.1, 20),
                "candidate": rng.lognormal(0, 0.1, 20),
                "higher_is_better": False,
            }
            for _ in range(20)
        ]
        with_calls += any(c.verdict in CALLS for c in stats.compare_family(members))
    assert with_calls / families <= _binomial_bound(0.05, families)


# ---------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_detects_shift_and_is_seeded():
    rng = np.random.default_rng(19)
    a = rng.normal(0.6, 0.2, 80)
    b = a + 0.05 + rng.normal(0, 0.02, 80)  # correlated pairs: small shift, clear
    diff, (lo, hi), p = stats.paired_bootstrap(a, b)
    assert diff == pytest.approx(np.mean(b - a))
    assert lo < diff < hi and lo > 0
    assert p < 0.01
    assert stats.paired_bootstrap(a, b) == (diff, (lo, hi), p)
    med, _, _ = stats.paired_bootstrap(a, b, statistic="median")
    assert med == pytest.approx(np.median(b - a))


def test_paired_bootstrap_null_calibration():
    rng = np.random.default_rng(20)
    trials = 200
    rejections = 0
    for i in range(trials):
        a = rng.normal(0, 1, 40)
        b = a + rng.normal(0, 0.3, 40)
        rejections += stats.paired_bootstrap(a, b, n_resamples=500, seed=i)[2] < 0.05
    assert rejections / trials <= 0.10


def test_paired_bootstrap_agrees_with_paired_t_for_normal_data():
    rng = np.random.default_rng(21)
    a = rng.normal(0, 1, 200)
    b = a + 0.08 + rng.normal(0, 0.5, 200)
    _, _, p = stats.paired_bootstrap(a, b, n_resamples=4000)
    assert p == pytest.approx(sps.ttest_rel(b, a).pvalue, abs=0.03)


def test_paired_bootstrap_p_value_is_never_zero():
    a = np.zeros(30)
    b = np.linspace(1.0, 1.3, 30)
    assert stats.paired_bootstrap(a, b, n_resamples=100)[2] == pytest.approx(1 / 101)


def test_paired_bootstrap_edge_cases():
    d, ci, p = stats.paired_bootstrap([1.0], [1.5])
    assert d == 0.5 and ci == (0.5, 0.5) and math.isnan(p)
    assert stats.paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[2] == 1.0
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        stats.paired_bootstrap([], [])


# ------------------------------------------------------------------------------ mcnemar


def _pairs(n01: int, n10: int, n11: int = 5, n00: int = 3) -> tuple[np.ndarray, np.ndarray]:
    a = [True] * n01 + [False] * n10 + [True] * n11 + [False] * n00
    b = [False] * n01 + [True] * n10 + [True] * n11 + [False] * n00
    return np.array(a), np.array(b)


@pytest.mark.parametrize(("n01", "n10"), [(0, 5), (2, 9), (7, 7), (12, 3), (1, 23)])
def test_mcnemar_exact_matches_binomtest(n01, n10):
    a, b = _pairs(n01, n10)
    stat, p = stats.mcnemar(a, b)
    assert stat == min(n01, n10)
    assert p == pytest.approx(sps.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue)


def test_mcnemar_chi_square_above_25_discordant():
    a, b = _pairs(30, 12)
    stat, p = stats.mcnemar(a, b)
    assert stat == pytest.approx((18 - 1) ** 2 / 42)
    assert p == pytest.approx(sps.chi2.sf((18 - 1) ** 2 / 42, 1))
    stat_e, p_e = stats.mcnemar(a, b, exact=True)
    assert stat_e == 12 and p_e == pytest.approx(sps.binomtest(12, 42, 0.5).pvalue)
    stat_c, _ = stats.mcnemar(*_pairs(3, 5), exact=False)
    assert stat_c == pytest.approx((2 - 1) ** 2 / 8)


def test_mcnemar_edge_cases():
    a = np.array([True, False, True])
    assert stats.mcnemar(a, a) == (0.0, 1.0)
    assert stats.mcnemar([1, 0, 1], [1, 0, 1]) == (0.0, 1.0)
    with pytest.raises(ValueError):
        stats.mcnemar([True, False], [True])
    with pytest.raises(ValueError):
        stats.mcnemar([0.5, 1.0], [1.0, 1.0])


# ------------------------------------------------------------------- benjamini-hochberg


@pytest.mark.parametrize("seed", range(5))
def test_benjamini_hochberg_matches_scipy(seed):
    p = np.random.default_rng(seed).uniform(0, 1, 30) ** 3
    p[:3] = [0.0, 1.0, p[5]]  # bounds and a tie
    adj = stats.benjamini_hochberg(p)
    np.testing.assert_allclose(adj, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and adj.max() <= 1.0


def test_benjamini_hochberg_known_answer_and_edges():
    adj = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(adj, [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert stats.benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError):
        stats.benjamini_hochberg([0.1, 1.2])
    with pytest.raises(ValueError):
        stats.benjamini_hochberg([[0.1, 0.2]])


@pytest.mark.parametrize("seed", range(3))
def test_benjamini_hochberg_leaves_nan_out_of_the_family(seed):
    """A test that could not run (p = NaN) stays NaN and does not count in m: the others
    are adjusted exactly as a family without it."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, 12) ** 3
    nan_at = rng.choice(12, size=4, replace=False)
    p[nan_at] = math.nan
    adj = stats.benjamini_hochberg(p)
    ran = ~np.isnan(p)
    assert np.isnan(adj[~ran]).all()
    np.testing.assert_allclose(adj[ran], sps.false_discovery_control(p[ran]), rtol=1e-12)
    assert stats.selected_count(p, 0.05) == int((adj[ran] <= 0.05).sum())
    assert np.isnan(stats.benjamini_hochberg([math.nan, math.nan])).all()
    np.testing.assert_allclose(stats.benjamini_hochberg([0.01, math.nan, 0.04, 0.03])[[0, 2, 3]],
                               [0.03, 0.04, 0.04])  # fmt: skip


# ---------------------------------------------------------------------------- targets


@pytest.mark.parametrize(
    ("ci", "op", "threshold", "expected"),
    [
        ((1.0, 2.0), "<", 3.0, "met"),
        ((1.0, 2.0), "<", 2.0, "inconclusive"),
        ((1.0, 2.0), "<=", 2.0, "met"),
        ((3.0, 4.0), "<", 3.0, "not met"),
        ((3.0, 4.0), "<=", 3.0, "inconclusive"),
        ((1.0, 5.0), "<", 3.0, "inconclusive"),
        ((4.0, 5.0), ">", 3.0, "met"),
        ((3.0, 5.0), ">", 3.0, "inconclusive"),
        ((3.0, 5.0), ">=", 3.0, "met"),
        ((1.0, 2.0), ">=", 3.0, "not met"),
        ((1.0, 3.0), ">", 3.0, "not met"),
        ((1.0, 5.0), ">=", 3.0, "inconclusive"),
        ((None, None), "<", 3.0, "not measured"),
        # a NaN (or missing) bound does not exist at this level: it never decides, the
        # other bound still can
        ((math.nan, math.nan), ">", 3.0, "inconclusive"),
        ((1.0, None), "<", 3.0, "inconclusive"),
        ((1.0, math.nan), "<", 3.0, "inconclusive"),
        ((4.0, math.nan), "<", 3.0, "not met"),
        ((4.0, math.nan), ">", 3.0, "met"),
        ((4.0, math.inf), ">=", 3.0, "met"),
        ((math.nan, 2.0), "<", 3.0, "met"),
        ((math.nan, 2.0), ">=", 3.0, "not met"),
        ((math.nan, 4.0), "<", 3.0, "inconclusive"),
    ],
)
def test_check_target(ci, op, threshold, expected):
    assert stats.check_target(*ci, op=op, threshold=threshold) == expected
    assert expected in stats.TARGET_VERDICTS


def test_check_target_rejects_bad_input_and_failed_is_not_met():
    with pytest.raises(ValueError):
        stats.check_target(1.0, 2.0, op="==", threshold=1.0)
    with pytest.raises(ValueError):
        stats.check_target(2.0, 1.0, op="<", threshold=1.0)
    assert stats.check_target(1.0, 2.0, op="<", threshold=3.0, failed=True) == "not met"


def test_summary_ci_of_few_values_is_an_inconclusive_target():
    """One value (or five: a median needs six at 95%) has no interval; a target on it
    was measured, so it is "inconclusive", never "met" and no longer "not measured"."""
    for values in ([0.1], [0.1, 0.11, 0.12, 0.13, 0.14]):
        s = stats.summarize(values)
        assert stats.check_target(s.ci_low, s.ci_high, op="<", threshold=1.0) == "inconclusive"


def test_statistic_interval_over_rows():
    rng = np.random.default_rng(30)
    x = rng.lognormal(0, 0.3, 50)
    est, lo, hi, how = stats.statistic_interval(x, "median")
    assert est == pytest.approx(np.median(x)) and (lo, hi) == stats.quantile_ci(x, 0.5)
    assert "order-statistic interval over 50 rows" in how
    est, lo, hi, _ = stats.statistic_interval(x, "p90")
    assert est == pytest.approx(np.percentile(x, 90)) and (lo, hi) == stats.quantile_ci(x, 0.9)
    est, lo, hi, how = stats.statistic_interval(x, "mean")
    t = sps.ttest_1samp(x, 0.0).confidence_interval(0.95)
    assert est == pytest.approx(np.mean(x)) and (lo, hi) == pytest.approx(tuple(t))
    assert "t interval of the mean" in how
    with pytest.raises(ValueError, match="unknown statistic"):
        stats.statistic_interval(x, "mode")


def test_statistic_interval_p99_from_20_rows_has_no_upper_bound():
    x = np.random.default_rng(31).lognormal(0, 0.5, 20)
    est, lo, hi, how = stats.statistic_interval(x, "p99")
    assert math.isfinite(est) and math.isfinite(lo) and math.isnan(hi)
    assert "too few values for the upper bound" in how
    assert stats.check_target(lo, hi, op="<", threshold=1e9) == "inconclusive"
    assert stats.check_target(lo, hi, op="<", threshold=lo / 2) == "not met"


def test_statistic_interval_with_repetitions_is_a_t_interval_over_them():
    rng = np.random.default_rng(32)
    units = np.repeat(np.arange(5), 20)
    x = np.exp(np.repeat(rng.normal(0, 0.2, 5), 20) + rng.normal(0, 0.05, 100))
    est, lo, hi, how = stats.statistic_interval(x, "median", units=units)
    per = [np.median(x[units == k]) for k in range(5)]
    t = sps.ttest_1samp(per, 0.0).confidence_interval(0.95)
    assert est == pytest.approx(np.mean(per)) and (lo, hi) == pytest.approx(tuple(t))
    assert "each of 5 repetitions" in how
    # two repetitions are two units, below the minimum of three: no interval
    two = np.repeat([0, 1], 50)
    _, lo, hi, how = stats.statistic_interval(x, "median", units=two)
    assert math.isnan(lo) and math.isnan(hi) and "fewer than the minimum of 3" in how


def test_statistic_interval_with_censored_rows():
    x = np.arange(1.0, 11.0)
    cens = np.zeros(10, bool)
    cens[-3:] = True  # three runs stopped at their budget
    est, lo, hi, how = stats.statistic_interval(x, "median", censored=cens)
    assert (lo, hi) == (2.0, math.inf) and est == pytest.approx(5.5)
    assert "3 censored" in how
    cens[4:] = True  # six of ten censored: the median itself is censored
    est, lo, hi, how = stats.statistic_interval(x, "median", censored=cens)
    assert math.isinf(est) and lo == 2.0 and math.isinf(hi)
    assert "a lower bound only" in how
    assert stats.check_target(lo, hi, op=">", threshold=1.0) == "met"
    est, lo, hi, how = stats.statistic_interval(x, "mean", censored=cens)
    assert math.isnan(est) and "undefined" in how


@pytest.mark.parametrize(
    ("failed", "total", "expected"),
    [(0, 1000, "within budget"), (20, 1000, "over budget"), (2, 100, "inconclusive"),
     (0, 100, "inconclusive"), (0, 0, "inconclusive")],
)  # fmt: skip
def test_budget_verdict_reads_the_clopper_pearson_interval(failed, total, expected):
    verdict, (lo, hi) = stats.budget_verdict(failed, total, error_budget=0.01)
    assert verdict == expected
    if total:
        assert (lo, hi) == pytest.approx(stats.proportion_ci(failed, total))
    else:
        assert math.isnan(lo) and math.isnan(hi)


def test_with_failures():
    assert stats.with_failures("met", 0, 100) == ("met", "")
    verdict, why = stats.with_failures("met", 20, 30)
    assert verdict == "not met" and "over budget" in why and "20 of 30" in why
    verdict, why = stats.with_failures("met", 2, 100)  # 2%: above 1%, not surely
    assert verdict == "inconclusive" and "exceeds the budget" in why
    assert stats.with_failures("not met", 2, 100)[0] == "not met"
    assert stats.with_failures("met", 1, 10_000)[0] == "met"  # 0.01%: within budget
    assert stats.with_failures("met", 2, 100, error_budget=0.05)[0] == "met"


def test_failure_check():
    verdict, why, ci = stats.failure_check(100, 0, 100, 0)
    assert (verdict, why) == (None, "") and ci == pytest.approx(stats.proportion_ci(0, 100))
    assert stats.failure_check(100, 5, 100, 0)[0] is None  # baseline failures alone
    verdict, why, ci = stats.failure_check(100, 0, 80, 20)
    assert verdict == "failed" and "above the budget" in why
    assert ci == pytest.approx(stats.proportion_ci(20, 100))
    # 6 of 1000 against 0 of 1000: Fisher p = 0.016, rate 0.6% inside the 1% budget
    verdict, why, _ = stats.failure_check(1000, 0, 994, 6)
    assert verdict == "failed" and "significantly more than the baseline" in why
    verdict, why, _ = stats.failure_check(100, 1, 98, 2)  # 2%, neither certain
    assert verdict == "inconclusive" and "exceeds the budget" in why
    verdict, why, _ = stats.failure_check(10_000, 0, 9_999, 1)
    assert verdict is None and "within the budget" in why


# -------------------------------------------------------------------------- intervals


def test_proportion_ci_is_exact_and_never_zero_width_at_zero_failures():
    low, high = stats.proportion_ci(0, 2000)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 2000), rel=1e-9)
    low, high = stats.proportion_ci(5, 10)
    assert low < 0.5 < high and low == pytest.approx(1 - high)
    assert stats.proportion_ci(10, 10)[1] == 1.0
    assert stats.proportion_ci(0, 20)[1] == pytest.approx(0.1684, abs=1e-4)  # HumanEval-like
    with pytest.raises(ValueError):
        stats.proportion_ci(3, 2)
    with pytest.raises(ValueError):
        stats.proportion_ci(0, 0)


@pytest.mark.parametrize(("k", "n"), [(0, 20), (1, 20), (7, 31), (50, 100), (99, 100), (3, 500)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_proportion_ci_matches_scipy_clopper_pearson(k, n, confidence):
    exact = sps.binomtest(k, n).proportion_ci(confidence, method="exact")
    assert stats.proportion_ci(k, n, confidence) == pytest.approx((exact.low, exact.high))


@pytest.mark.parametrize(("n", "q"), [(6, 0.5), (20, 0.5), (37, 0.5), (50, 0.9), (400, 0.99)])
def test_quantile_ranks_cover_by_the_binomial(n, q):
    """[X_(l), X_(u)] covers x_q with probability P(l <= B <= u - 1), B ~ Binomial(n, q),
    for every continuous distribution; each tail is at most 2.5%."""
    lo, hi = stats.quantile_ranks(n, q)
    below = sps.binom.cdf(lo - 1, n, q)  # P(X_(l) > x_q)
    above = sps.binom.sf(hi - 1, n, q)  # P(X_(u) < x_q)
    assert below <= 0.025 and above <= 0.025
    # and the ranks are the tightest: one step inward breaks a tail
    assert sps.binom.cdf(lo, n, q) > 0.025 or lo == hi
    assert sps.binom.sf(hi - 2, n, q) > 0.025 or lo == hi


@pytest.mark.parametrize(("n", "q"), [(20, 0.5), (60, 0.9), (400, 0.99)])
def test_quantile_ci_coverage_monte_carlo(n, q):
    """Coverage of the true quantile over 1000 seeded lognormal samples is at least the
    binomial coverage of the ranks minus three binomial sds of 1000 trials."""
    rng = np.random.default_rng(int(n * q))
    truth = math.exp(0.5 * sps.norm.ppf(q))
    trials = 1000
    covered = 0
    for _ in range(trials):
        lo, hi = stats.quantile_ci(rng.lognormal(0.0, 0.5, n), q)
        covered += lo <= truth <= hi
    lo_rank, hi_rank = stats.quantile_ranks(n, q)
    exact = sps.binom.cdf(hi_rank - 1, n, q) - sps.binom.cdf(lo_rank - 1, n, q)
    assert exact >= 0.95
    assert covered / trials >= exact - 3 * math.sqrt(exact * (1 - exact) / trials)


def test_quantile_ci_bounds_that_do_not_exist_are_nan():
    x = np.random.default_rng(33).lognormal(0, 0.5, 20)
    lo, hi = stats.quantile_ci(x, 0.99)
    # P(Binomial(20, 0.99) <= 18) = 1.7%: the lower bound is the 19th of 20; the upper
    # does not exist (0.99^20 = 82% > 2.5%), and is never the sample maximum
    assert math.isnan(hi) and lo == np.sort(x)[18]
    lo, hi = stats.quantile_ci(x, 0.01)
    assert math.isnan(lo) and math.isfinite(hi)
    assert all(math.isnan(v) for v in stats.quantile_ci(x[:5], 0.5))
    n99 = stats.min_n_for_quantile(0.99)
    assert n99 == math.ceil(math.log(0.025) / math.log(0.99)) == 368
    assert all(math.isfinite(v) for v in stats.quantile_ci(np.arange(1.0, n99 + 1), 0.99))
    assert math.isnan(stats.quantile_ci(np.arange(1.0, n99), 0.99)[1])
    assert stats.min_n_for_quantile(0.5) == 6
    with pytest.raises(ValueError):
        stats.quantile_ci(x, 1.0)


def test_quantile_ci_with_censored_values():
    x = np.arange(1.0, 11.0)
    cens = np.array([False] * 7 + [True] * 3)
    assert stats.quantile_ci(x, 0.5, censored=cens) == (2.0, math.inf)
    all_cens = np.ones(10, bool)
    lo, hi = stats.quantile_ci(x, 0.5, censored=all_cens)
    assert lo == 1.0 and math.isinf(hi)  # at least the smallest limit
    assert stats.censored_quantile(x, cens, 0.5) == 5.5
    assert math.isinf(stats.censored_quantile(x, all_cens, 0.5))
    with pytest.raises(ValueError):
        stats.quantile_ci(x, 0.5, censored=cens[:5])


def test_mean_ci_is_students_t():
    x = np.random.default_rng(34).normal(10, 2, 7)
    t = sps.ttest_1samp(x, 0.0).confidence_interval(0.9)
    assert stats.mean_ci(x, 0.9) == pytest.approx(tuple(t))
    assert all(math.isnan(v) for v in stats.mean_ci([1.0]))


def test_is_exact_unit():
    for unit in ("count", "MB", "bits/weight", "ratio", "x", "perplexity"):
        assert stats.is_exact_unit(unit), unit
    for unit in ("s", "ms", "us", "ns", "ops/s", "tokens/s", "%", "GFLOP/s", "1/h"):
        assert not stats.is_exact_unit(unit), unit


def test_is_exact_unit_knows_the_projects_own_units():
    assert stats.is_exact_unit("bytes")
    assert not stats.is_exact_unit("MB/hour")
    assert not stats.is_exact_unit("percent")


def test_flip_rate_counts_changed_items_by_direction():
    a = [True, True, False, False, True]
    b = [True, False, True, False, True]
    assert stats.flip_rate(a, b) == {"flip_rate": 0.4, "gained": 0.2, "lost": 0.2}
    assert stats.flip_rate(a, a)["flip_rate"] == 0.0
    with pytest.raises(ValueError, match="equal-length"):
        stats.flip_rate([True], [True, False])
