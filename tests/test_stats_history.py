"""Change-point detection and rolling z-score (stats.changepoint, the earlier history
methods), and the seeded simulation of the baseline-run decision rule
(forgebench.history.compare_runs). The step-and-drift detection has its own tests in
test_detection.py."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from forgebench import history, record, stats

# ------------------------------------------------------------------ change points


def test_change_point_finds_an_injected_step_at_its_position():
    rng = np.random.default_rng(7)
    found = 0
    trials = 200
    for _ in range(trials):
        y = np.r_[rng.normal(0.0, 0.02, 12), rng.normal(0.10, 0.02, 8)]  # 5 sigma step
        cp = stats.change_points(y, seed=1)
        found += 12 in cp.indices
    assert found / trials >= 0.95


def test_change_point_finds_a_step_in_the_newest_run():
    rng = np.random.default_rng(8)
    trials = 200
    found = 0
    for _ in range(trials):
        y = np.r_[rng.normal(0.0, 0.02, 15), 0.2]  # the latest run 10 sigma off
        found += stats.change_points(y, seed=1).indices[-1:] == (15,)
    assert found / trials >= 0.95


@pytest.mark.parametrize("n", [5, 10, 30])
def test_change_point_false_alarm_rate_on_flat_noise_is_bounded(n):
    """Normal noise of any size, no step: a change is found in about alpha of series."""
    rng = np.random.default_rng(100 + n)
    trials = 600
    alarms = sum(
        bool(stats.change_points(rng.normal(5.0, rng.uniform(0.01, 1.0), n), seed=3).indices)
        for _ in range(trials)
    )
    # One-sided binomial test of "rate <= alpha = 0.05" at the 1% level (Monte Carlo error).
    assert sps.binomtest(alarms, trials, 0.05, alternative="greater").pvalue > 0.01, alarms


def test_change_points_is_deterministic_and_scale_free():
    rng = np.random.default_rng(2)
    y = np.r_[rng.normal(0, 1, 10), rng.normal(3, 1, 10)]
    a = stats.change_points(y, seed=5)
    b = stats.change_points(y * 1000.0 + 7.0, seed=5)
    assert a.indices == b.indices
    assert a.top_statistic == pytest.approx(b.top_statistic)
    assert a == stats.change_points(y, seed=5)
    assert len(a.levels) == len(a.indices) + 1
    assert a.levels[-1] * 1000 + 7 == pytest.approx(b.levels[-1])


def test_change_points_constant_and_exact_levels():
    flat = stats.change_points(np.full(8, math.log(2.5)))
    assert flat.indices == () and flat.top_statistic == 0.0 and flat.top_p_value == 1.0
    steps = stats.change_points([3.0] * 6 + [4.0] * 6 + [5.0] * 3)
    assert steps.indices == (6, 12)
    assert steps.levels == (3.0, 4.0, 5.0)
    assert all(s > c for s, c in zip(steps.statistics, steps.critical_values, strict=True))
    assert math.isinf(stats.change_points([3.0] * 6 + [4.0] * 6).top_statistic)


def test_change_points_short_series_and_bad_input():
    short = stats.change_points([1.0, 2.0])
    assert short.indices == () and math.isnan(short.top_statistic)
    with pytest.raises(ValueError, match="non-finite"):
        stats.change_points([1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        stats.change_points([1.0, 2.0, 3.0], alpha=1.5)
    with pytest.raises(ValueError, match="min_size"):
        stats.change_points([1.0, 2.0, 3.0], min_size=0)
    with pytest.raises(ValueError, match="cannot be split"):
        stats.change_point_critical_value(2)


def test_critical_values_fall_with_length_and_match_simulation():
    crit = [stats.change_point_critical_value(m, seed=0) for m in (5, 8, 20)]
    assert crit[0] > crit[1] > crit[2] > 2.0
    # min_size 2 cannot isolate the last value, so its maximum is over fewer splits.
    assert stats.change_point_critical_value(8, min_size=2) < crit[1]


# ---------------------------------------------------------------- rolling z-score


def test_rolling_zscore_against_a_direct_computation():
    x = np.array([1.0, 1.2, 0.9, 1.1, 1.0, 2.0])
    z = stats.rolling_zscore(x, window=3)
    assert np.isnan(z[:2]).all()
    for i in range(2, x.size):
        prior = x[max(0, i - 3) : i]
        assert z[i] == pytest.approx((x[i] - prior.mean()) / prior.std(ddof=1))
    same = stats.rolling_zscore([2.0, 2.0, 2.0, 3.0])
    assert same[2] == 0.0 and same[3] == math.inf
    with pytest.raises(ValueError, match="window"):
        stats.rolling_zscore([1.0, 2.0, 3.0], window=1)


def test_rolling_zscore_false_alarms_follow_student_t():
    """Under normal noise, z * sqrt(w / (w + 1)) is t with w - 1 degrees of freedom."""
    rng = np.random.default_rng(4)
    w, limit, trials = 6, 3.0, 4000
    z = np.array(
        [stats.rolling_zscore(rng.normal(0, 1, w + 1), window=w)[-1] for _ in range(trials)]
    )
    expected = 2 * sps.t.sf(limit * math.sqrt(w / (w + 1)), w - 1)
    observed = float(np.mean(np.abs(z) > limit))
    assert observed == pytest.approx(expected, abs=4 * math.sqrt(expected / trials))


# ------------------------------------------------- the decision rule, simulated
#
# Lognormal samples with sigma = 0.1 (a typical spread of timings), n = 30 per side, judged
# by compare_runs (stats.compare_family: the interval of the ratio against the 5%
# threshold, Benjamini-Hochberg within the family). One run a side: a change reads
# "suspected" (run-to-run variation is not in the interval), so a call is either word.

SIGMA, N = 0.1, 30
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATISTICS = {"alpha": 0.05, "practical_threshold": 0.05, "bootstrap_resamples": 200}
PROV = {
    "run_id": "sim",
    "files": [{"benchmarks": ["sim/lognormal"], "provenance": {"host": "h", "cpu_model": "c"}}],
}


def _template(n_metrics: int) -> pd.DataFrame:
    rec = record.Recorder("sim", "lognormal", 1)
    for j in range(n_metrics):
        for i in range(N):
            rec.add("case", {}, f"m{j:02d}", "s", False, 1.0, sample=i, started_at=T0)
    return rec.frame()


def _simulate(trials: int, shifts: list[float], seed: int) -> list[pd.DataFrame]:
    """``trials`` comparisons of a family of ``len(shifts)`` metrics; metric j's candidate
    median is (1 + shifts[j]) times the baseline's (lower is better: > 0 is a regression)."""
    rng = np.random.default_rng(seed)
    template = _template(len(shifts))
    log_shift = np.repeat(np.log1p(shifts), N)
    out = []
    for _ in range(trials):
        base = template.assign(value=rng.lognormal(0.0, SIGMA, len(template)))
        cand = template.assign(value=rng.lognormal(0.0, SIGMA, len(template)) * np.exp(log_shift))
        out.append(history.compare_runs(cand, base, PROV, PROV, STATISTICS, seed=0))
    return out


REGRESSIONS = ("regression", "suspected regression")
CALLS = (*REGRESSIONS, "improvement", "suspected improvement")


def _regression_share(tables: list[pd.DataFrame], metric: str = "m00") -> float:
    return float(
        np.mean([t.set_index("metric").loc[metric, "verdict"] in REGRESSIONS for t in tables])
    )


def _share_ci(k: int, n: int) -> str:
    ci = sps.binomtest(k, n).proportion_ci(0.95)
    return f"{k / n:.1%} (95% CI {ci.low:.1%} to {ci.high:.1%}, {n} trials)"


def _check_alone(trials: int, record_property) -> None:
    """A 20% regression (four times the noise's standard error at n = 30) is called: its
    whole interval lies beyond the 5% threshold in at least 90% of trials."""
    tables = _simulate(trials, [0.20], seed=2026)
    assert all(t["design"].iloc[0] == "independent rows" for t in tables)
    share = _regression_share(tables)
    k = round(share * trials)
    print(f"20% regression judged alone, n={N}: detected in {_share_ci(k, trials)}")
    record_property("power_alone", share)
    if trials >= 2000:
        assert share >= 0.90
    else:  # few trials: fail only if significantly below 90% (one-sided binomial, 1%)
        assert sps.binomtest(k, trials, 0.90, alternative="less").pvalue > 0.01


def _check_aa_family(trials: int, record_property) -> None:
    tables = _simulate(trials, [0.0] * 20, seed=2027)
    calls = sum(bool(t["verdict"].isin(CALLS).any()) for t in tables)
    assert all(t["reason"].str.contains("family of 20").all() for t in tables)
    print(f"A/A, family of 20 after BH: a change called in {_share_ci(calls, trials)}")
    record_property("aa_family_call_rate", calls / trials)
    # BH holds the rate at alpha = 5% under "no change anywhere", and the practical
    # threshold lowers it a little, so the true rate lies just under 5%; a finite number of
    # trials lands on either side. Fails if the rate is significantly above 5% (one-sided
    # binomial test at 1%).
    assert sps.binomtest(calls, trials, 0.05, alternative="greater").pvalue > 0.01


def _report_family_power(trials: int, record_property) -> None:
    tables = _simulate(trials, [0.20] + [0.0] * 19, seed=2028)
    share = _regression_share(tables)
    print(
        "20% regression among 19 unchanged metrics, after BH: detected in "
        f"{_share_ci(round(share * trials), trials)} (reported, no threshold)"
    )
    record_property("power_in_family_of_20", share)


def test_simulated_decision_rule_fast(record_property):
    _check_alone(300, record_property)
    _check_aa_family(100, record_property)
    _report_family_power(50, record_property)


@pytest.mark.slow
def test_simulated_decision_rule(record_property):
    _check_alone(2000, record_property)
    _check_aa_family(2000, record_property)
    _report_family_power(2000, record_property)
