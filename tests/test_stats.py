"""Tests of forgebench.stats: known answers against numpy/scipy, small-n behaviour and
seeded property checks (coverage, false-call rate, power)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from forgebench import stats

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

    monkeypatch.setattr(stats, "_MAX_RESAMPLE_ELEMENTS", 5000)
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
        monkeypatch.setattr(stats, name, value)
    for label, x in _median_samples():
        fast = stats._resampled(x, np.median, 300, np.random.default_rng(5))
        slow = stats._resampled(x, _np_median, 300, np.random.default_rng(5))
        assert fast.tobytes() == slow.tobytes(), label


def test_median_bootstrap_and_compare_keep_their_numbers():
    """Must show: bootstrap_ci and compare give the same intervals through the rank
    median as through np.median partitioning every resample (the numbers the report
    printed before the rank median)."""
    rng = np.random.default_rng(3)
    for n in (2, 7, 40, 501, 5000):
        x = rng.lognormal(0.0, 0.4, n)
        for seed in (0, 1):
            assert stats.bootstrap_ci(x, "median", seed=seed) == stats.bootstrap_ci(
                x, _np_median, seed=seed
            )
    base, cand = rng.lognormal(0.0, 0.2, 300), rng.lognormal(-0.1, 0.2, 301)
    fast = stats.compare(base, cand, higher_is_better=False, seed=4)
    orig = stats._resampled

    def partitioned(x, fn, n_resamples, gen):
        return orig(x, _np_median if fn is np.median else fn, n_resamples, gen)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stats, "_resampled", partitioned)
        slow = stats.compare(base, cand, higher_is_better=False, seed=4)
    assert fast == slow


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
    assert (s.ci_low, s.ci_high) == stats.bootstrap_ci(x, "median", seed=3)
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


def test_compare_known_answers_against_scipy():
    rng = np.random.default_rng(12)
    a = rng.lognormal(0, 0.1, 25)
    b = rng.lognormal(0.05, 0.15, 31)
    c = stats.compare(a, b, higher_is_better=False)
    assert c.mannwhitney_p == pytest.approx(sps.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert c.welch_p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)
    assert (c.n_baseline, c.n_candidate) == (25, 31)
    assert c.median_baseline == np.median(a) and c.median_candidate == np.median(b)
    ratio = np.median(b) / np.median(a)
    assert c.ratio == pytest.approx(ratio)
    assert c.improvement == pytest.approx(1 - ratio)
    assert c.speedup == pytest.approx(1 / ratio)
    brute = np.sign(b[:, None] - a[None, :]).mean()
    assert c.effect_size == pytest.approx(brute)
    pooled = ((24 * a.var(ddof=1) + 30 * b.var(ddof=1)) / 54) ** 0.5
    assert c.cohens_d == pytest.approx((b.mean() - a.mean()) / pooled)
    lo, hi = c.improvement_ci
    assert lo < c.improvement < hi
    slo, shi = c.speedup_ci
    assert slo < c.speedup < shi
    assert c.method == "mann-whitney-u"


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
    assert "improvement +" in imp.reason and "p=" in imp.reason
    reg = stats.compare(fast, a, higher_is_better=False)
    assert reg.verdict == "regression"


def test_compare_significant_but_below_threshold_is_no_change():
    rng = np.random.default_rng(14)
    a = rng.normal(1.0, 0.001, 40)
    b = a * 1.02
    c = stats.compare(a, b, higher_is_better=False, threshold=0.05)
    assert c.significant and c.verdict == "no significant change"
    assert "threshold" in c.reason
    assert stats.compare(a, b, higher_is_better=False, threshold=0.01).verdict == "regression"


def test_compare_identical_samples_no_change():
    c = stats.compare([1.0] * 10, [1.0] * 10, higher_is_better=False)
    assert c.verdict == "no significant change" and not c.significant
    assert c.improvement == 0.0


@pytest.mark.parametrize(
    ("base", "cand", "fragment"),
    [
        ([], [1.0, 2.0], "baseline has no values"),
        ([1.0, 2.0], [], "candidate has no values"),
        ([], [], "no values"),
        ([0.0, 0.0, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0], "positive baseline median"),
        ([1.0, math.nan, 2.0], [1.0, 2.0, 3.0], "NaN"),
        ([1.0], [2.0, 2.1, 2.2, 2.3, 2.4], "too few values"),
    ],
)
def test_compare_undetermined(base, cand, fragment):
    c = stats.compare(base, cand, higher_is_better=False)
    assert c.verdict == "undetermined"
    assert not c.significant
    assert fragment in c.reason


def test_compare_failed_test_is_never_significant(monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("boom")

    monkeypatch.setattr(stats._sps, "mannwhitneyu", broken)
    a = np.linspace(1.0, 1.1, 20)
    c = stats.compare(a, a * 2, higher_is_better=False)
    assert c.verdict == "undetermined" and not c.significant
    assert "Mann-Whitney U test failed" in c.reason and "boom" in c.reason
    assert math.isnan(c.mannwhitney_p)


def test_compare_small_samples_fall_back_to_bootstrap_ci():
    # 3 vs 3: the smallest two-sided Mann-Whitney p is 2/C(6,3) = 0.1 > alpha
    c = stats.compare([1.0, 1.01, 0.99], [2.0, 2.02, 1.98], higher_is_better=False)
    assert c.method == "bootstrap-ci"
    assert c.significant and c.verdict == "regression"
    assert c.improvement_ci[1] < 0
    same = stats.compare([1.0, 1.1, 0.9], [1.05, 0.95, 1.0], higher_is_better=False)
    assert same.method == "bootstrap-ci" and not same.significant
    # 4 vs 4 can reach p < 0.05 (2/70), so the rank test decides
    four = stats.compare([1.0, 1.01, 0.99, 1.02], [2.0, 2.02, 1.98, 2.01], higher_is_better=False)
    assert four.method == "mann-whitney-u" and four.verdict == "regression"


def test_compare_two_per_side_is_undetermined_even_when_separated():
    # with 2 vs 2 the bootstrap CI is a range-overlap check: 1/3 false calls under no change
    c = stats.compare([1.0, 1.01], [2.0, 2.02], higher_is_better=False)
    assert c.verdict == "undetermined" and c.method == "none"
    assert "too few values" in c.reason


def test_compare_ci_undefined_when_resampled_baseline_median_hits_zero():
    base = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    c = stats.compare(base, [2.0] * 8, higher_is_better=False)
    assert all(math.isnan(v) for v in c.improvement_ci)
    assert c.method == "mann-whitney-u" and c.improvement == -1.0


def test_compare_is_deterministic_and_serialisable():
    rng = np.random.default_rng(15)
    a, b = rng.lognormal(0, 0.1, 20), rng.lognormal(0, 0.1, 20)
    c1 = stats.compare(a, b, higher_is_better=False, seed=1)
    assert c1 == stats.compare(a, b, higher_is_better=False, seed=1)
    d = c1.as_dict()
    assert d["verdict"] in stats.VERDICTS and isinstance(d["improvement_ci"], list)
    json.dumps(d)


def test_compare_rejects_bad_parameters():
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, alpha=0.0)
    with pytest.raises(ValueError):
        stats.compare([1.0], [1.0], higher_is_better=False, threshold=-0.1)


def test_compare_false_call_rate_a_a():
    rng = np.random.default_rng(16)
    trials = 400
    calls = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 30),
            rng.lognormal(0, 0.1, 30),
            higher_is_better=False,
            n_resamples=200,
        ).verdict
        != "no significant change"
        for _ in range(trials)
    )
    # expected ~4% (3.9% over 3000 trials); binomial sd at 400 trials is ~1 point
    assert calls / trials <= 0.065


def test_compare_detects_injected_regression():
    rng = np.random.default_rng(17)
    trials = 400
    hits = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 30),
            rng.lognormal(np.log(1.1), 0.1, 30),
            higher_is_better=False,
            n_resamples=200,
        ).verdict
        == "regression"
        for _ in range(trials)
    )
    # true power ~91% (3000 trials): the 5% threshold on a median ratio with sd ~3% caps it
    assert hits / trials >= 0.87


@pytest.mark.slow
def test_compare_power_at_least_90_percent_many_trials():
    rng = np.random.default_rng(18)
    trials = 3000
    hits = sum(
        stats.compare(
            rng.lognormal(0, 0.1, 30),
            rng.lognormal(np.log(1.1), 0.1, 30),
            higher_is_better=False,
            n_resamples=100,
        ).verdict
        == "regression"
        for _ in range(trials)
    )
    assert hits / trials >= 0.90


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
        stats.benjamini_hochberg([0.1, math.nan])


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
        ((1.0, None), "<", 3.0, "not measured"),
        ((math.nan, math.nan), ">", 3.0, "not measured"),
    ],
)
def test_check_target(ci, op, threshold, expected):
    assert stats.check_target(*ci, op=op, threshold=threshold) == expected
    assert expected in stats.TARGET_VERDICTS


def test_check_target_rejects_bad_input():
    with pytest.raises(ValueError):
        stats.check_target(1.0, 2.0, op="==", threshold=1.0)
    with pytest.raises(ValueError):
        stats.check_target(2.0, 1.0, op="<", threshold=1.0)


def test_summary_ci_of_one_value_is_not_measured_target():
    s = stats.summarize([0.1])
    assert stats.check_target(s.ci_low, s.ci_high, op="<", threshold=1.0) == "not measured"


def test_compare_handles_large_samples_without_overflow():
    """10^4 values per side (a pooling run) must not overflow the exact-p bound."""
    rng = np.random.default_rng(0)
    result = stats.compare(rng.random(10_000) + 1, rng.random(10_000), higher_is_better=False)
    assert result.verdict == "improvement"
    assert result.method == "mann-whitney-u"


def test_flip_rate_counts_changed_items_by_direction():
    a = [True, True, False, False, True]
    b = [True, False, True, False, True]
    assert stats.flip_rate(a, b) == {"flip_rate": 0.4, "gained": 0.2, "lost": 0.2}
    assert stats.flip_rate(a, a)["flip_rate"] == 0.0
    with pytest.raises(ValueError, match="equal-length"):
        stats.flip_rate([True], [True, False])


def test_proportion_ci_is_exact_and_never_zero_width_at_zero_failures():
    low, high = stats.proportion_ci(0, 2000)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 2000), rel=1e-9)
    low, high = stats.proportion_ci(5, 10)
    assert low < 0.5 < high and low == pytest.approx(1 - high)
    assert stats.proportion_ci(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        stats.proportion_ci(3, 2)
