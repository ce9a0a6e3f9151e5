"""Verdicts from raw rows: failures never become improvements; families; the audit rule."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

from forgebench import analysis, stats
from forgebench.record import Recorder
from forgebench.stats import vocabulary as V

STATS = {"confidence": 0.95, "bootstrap_resamples": 500, "practical_threshold": 0.05, "alpha": 0.05}
COMPARISON = {
    "name": "pool",
    "suite": "database",
    "benchmark": "pooling",
    "metric": "latency",
    "baseline": "connect",
    "candidate": "pooled",
}
TARGET = {
    "name": "pool 50%",
    "comparison": "pool",
    "statistic": "improvement",
    "op": ">=",
    "threshold": 0.5,
}


def _frame(base: np.ndarray, cand: np.ndarray, cand_failures: int = 0) -> pd.DataFrame:
    rec = Recorder("database", "pooling", 1)
    for case, values in (("connect", base), ("pooled", cand)):
        for i, v in enumerate(values):
            rec.add(case, {}, "latency", "s", False, float(v), sample=i)
    for i in range(cand_failures):
        rec.add(
            "pooled",
            {},
            "latency",
            "s",
            False,
            None,
            sample=len(cand) + i,
            status="error:OperationalError",
        )
    return rec.frame()


def _verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    comps = analysis.compare_cases(frame, [COMPARISON], STATS, seed=0)
    targets = analysis.check_targets([TARGET], comps, frame, STATS, seed=0)
    return pd.concat([comps, targets], ignore_index=True)


def test_a_real_improvement_is_called_and_meets_its_target():
    rng = np.random.default_rng(0)
    base = rng.lognormal(np.log(1e-2), 0.1, 40)
    cand = rng.lognormal(np.log(2e-3), 0.1, 40)
    v = _verdicts(_frame(base, cand)).set_index("name")
    assert v.loc["pool", "verdict"] == "improvement"
    assert v.loc["pool 50%", "verdict"] == "met"
    table, overall = analysis.audit_table(_verdicts(_frame(base, cand)))
    assert table["target_verdict"].tolist() == ["met"]
    assert overall["verdict"] == "PASSED"


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        # 1 of 40 (2.5%): above the 1% budget, but neither surely (Clopper-Pearson 0.06% to
        # 13%) nor significantly above the baseline's 0 of 40 (Fisher p = 0.5)
        (1, "inconclusive"),
        # 3 of 40: significantly more than the baseline (Fisher p = 0.04)
        (3, "failed"),
        # 40 of 42: the failure rate's whole interval lies above the budget
        (40, "failed"),
    ],
)
def test_failed_operations_never_become_an_improvement(failures, expected):
    """A 100x faster candidate that failed some (or all but a few) queries is never an
    improvement: judged on its failure rate against the baseline's and the error budget."""
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(1e-2), 0.1, 40)
    cand = rng.lognormal(np.log(1e-4), 0.1, 40 - min(failures, 38))
    v = _verdicts(_frame(base, cand, cand_failures=failures)).set_index("name")
    assert v.loc["pool", "verdict"] == expected
    assert v.loc["pool", "n_failed_candidate"] == failures
    assert "error budget 1.00%" in v.loc["pool", "reason"]
    if expected == "failed":  # no speed figure beside a failed verdict
        assert np.isnan(v.loc["pool", "improvement"]) and np.isnan(v.loc["pool", "speedup"])
        assert v.loc["pool 50%", "verdict"] == "not met"
        _, overall = analysis.audit_table(_verdicts(_frame(base, cand, cand_failures=failures)))
        assert overall["verdict"] == "FAILED"


def test_improvement_target_counts_the_candidates_failures():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(1e-2), 0.1, 40)
    cand = rng.lognormal(np.log(1e-4), 0.1, 39)
    v = _verdicts(_frame(base, cand, cand_failures=1)).set_index("name")
    assert v.loc["pool", "verdict"] == "inconclusive"
    assert v.loc["pool 50%", "verdict"] != "met"


def test_baseline_failures_alone_leave_the_candidate_judged_on_its_figure():
    """Failures on the baseline side say nothing against the candidate (the old rule
    failed the comparison and its target for them)."""
    rng = np.random.default_rng(4)
    rec = Recorder("database", "pooling", 1)
    for case, mu in (("connect", np.log(1e-2)), ("pooled", np.log(2e-3))):
        for i, v in enumerate(rng.lognormal(mu, 0.1, 40)):
            rec.add(case, {}, "latency", "s", False, float(v), sample=i)
    rec.add("connect", {}, "latency", "s", False, None, sample=40, status="timeout")
    v = _verdicts(rec.frame()).set_index("name")
    assert v.loc["pool", "verdict"] == "improvement"
    assert (v.loc["pool", "n_failed_baseline"], v.loc["pool", "n_failed_candidate"]) == (1, 0)
    assert v.loc["pool 50%", "verdict"] == "met"


def test_by_design_rows_are_neither_values_nor_failures():
    rng = np.random.default_rng(5)
    base = rng.lognormal(np.log(1e-2), 0.1, 40)
    cand = rng.lognormal(np.log(2e-3), 0.1, 40)
    frame = _frame(base, cand)
    extra = Recorder("database", "pooling", 1)
    for i, status in enumerate(("skipped", "unavailable", "censored")):
        extra.add("pooled", {}, "latency", "s", False, None, sample=100 + i, status=status)
    v = _verdicts(pd.concat([frame, extra.frame()], ignore_index=True)).set_index("name")
    assert v.loc["pool", "verdict"] == "improvement"
    assert v.loc["pool", "n_failed_candidate"] == 0
    assert v.loc["pool", "n_by_design_candidate"] == 3
    assert v.loc["pool", "n_candidate"] == 40


def test_every_query_failing_is_undetermined_then_not_met():
    rng = np.random.default_rng(2)
    frame = _frame(rng.lognormal(np.log(1e-2), 0.1, 30), np.array([]), cand_failures=30)
    v = _verdicts(frame).set_index("name")
    assert v.loc["pool", "verdict"] == "failed"
    assert v.loc["pool 50%", "verdict"] == "not met"


def test_unmeasured_targets_are_listed_and_left_out():
    verdicts = ["met", "met", "met", "met", "inconclusive", "not measured"]
    overall = stats.overall_verdict(verdicts)
    assert overall == {
        "verdict": "PASSED",
        "met": 4,
        "measured": 5,
        "not_measured": 1,
        "not_measurable": 0,
        "share_met": 0.8,
        "pass_share": 0.8,
    }
    declared = stats.overall_verdict(["met", "not met", "not measurable at this budget"])
    assert (declared["measured"], declared["not_measurable"], declared["verdict"]) == (
        2,
        1,
        "FAILED",
    )
    assert stats.overall_verdict(["met", "inconclusive", "not met"])["verdict"] == "FAILED"
    assert stats.overall_verdict(["not measured"])["verdict"] == "not measured"
    target = {"name": "UI under 50 ms", "statistic": "p95", "op": "<", "threshold": 0.05}
    checked = analysis.check_targets(
        [target], pd.DataFrame(), _frame(np.ones(3), np.ones(3)), STATS, seed=0
    )
    assert checked["verdict"].iloc[0] == "not measured"
    assert "no benchmark" in checked["evidence"].iloc[0]


def _family_frame(factors: list[float], seed: int = 3) -> tuple[pd.DataFrame, list[dict]]:
    """One suite, one comparison per metric m<k>: candidate = factor x an A/A draw."""
    rng = np.random.default_rng(seed)
    rec = Recorder("s", "b", 1)
    comparisons = []
    for m, factor in enumerate(factors):
        base, cand = rng.lognormal(0, 0.1, 30), rng.lognormal(0, 0.1, 30) * factor
        for case, values in (("a", base), ("b", cand)):
            for i, v in enumerate(values):
                rec.add(case, {}, f"m{m}", "s", False, float(v), sample=i)
        comparisons.append(
            {
                "name": f"c{m}",
                "suite": "s",
                "benchmark": "b",
                "metric": f"m{m}",
                "baseline": "a",
                "candidate": "b",
            }
        )
    return rec.frame(), comparisons


def test_within_run_family_is_corrected():
    """Twenty comparisons in one suite are one family: Benjamini-Hochberg over their
    p-values, every member judged on its 1 - max(R, 1) * alpha / m interval. The first
    member, a 12% slowdown, is a regression alone at 95% (p = 0.019) but not selected
    among twenty (0.019 > 2 * 0.05 / 20): no call, while a 50% slowdown still is one.
    (The old test passed with no correction at all: twenty A/A comparisons at 30 vs 30
    make no call either way.)"""
    factors = [1.12, 1.5] + [1.0] * 18
    frame, comparisons = _family_frame(factors)
    comps = analysis.compare_cases(frame, comparisons, STATS, seed=0).set_index("name")
    assert set(comps["family"]) == {"s (within run)"}
    assert (comps["family_size"] == 20).all()
    r = stats.selected_count(comps["p_value"].to_numpy(), 0.05)
    assert r == 1
    assert np.allclose(comps["confidence"], 1 - 0.05 / 20)
    assert comps["reason"].str.contains("Benjamini-Hochberg selected 1").all()
    rows = frame.groupby(["metric", "case"])["value"].apply(np.asarray)
    alone = stats.compare(rows["m0", "a"], rows["m0", "b"], higher_is_better=False)
    assert alone.verdict == "regression" and 0.05 / 20 < alone.p_value < 0.05
    assert comps.loc["c0", "verdict"] == "inconclusive"
    at_level = stats.compare(
        rows["m0", "a"], rows["m0", "b"], higher_is_better=False, confidence=1 - 0.05 / 20
    )
    assert tuple(comps.loc["c0", "improvement_ci"]) == at_level.improvement_ci
    assert comps.loc["c1", "verdict"] == "regression"
    assert comps["verdict"].isin(["improvement", "regression"]).sum() == 1


def test_families_are_per_suite():
    frame, comparisons = _family_frame([1.12, 1.0])
    frame.loc[frame["metric"] == "m1", "suite"] = "t"
    comparisons[1]["suite"] = "t"
    comps = analysis.compare_cases(frame, comparisons, STATS, seed=0).set_index("name")
    assert comps.loc["c0", "family"] == "s (within run)" and comps.loc["c0", "family_size"] == 1
    assert comps.loc["c0", "verdict"] == "regression"  # alone in its family: 95%
    assert comps.loc["c0", "confidence"] == 0.95


def test_metric_thresholds_apply_to_their_metric_only():
    rng = np.random.default_rng(9)
    base = rng.lognormal(0.0, 0.05, 40)
    frame = _frame(base, base * 0.8)
    statistics = {**STATS, "metric_thresholds": {"database/pooling/latency": 0.3}}
    row = analysis.compare_cases(frame, [COMPARISON], statistics, seed=0).iloc[0]
    assert row["threshold"] == 0.3 and row["verdict"] == "no change"
    other = {**STATS, "metric_thresholds": {"database/pooling/throughput": 0.3}}
    row = analysis.compare_cases(frame, [COMPARISON], other, seed=0).iloc[0]
    assert row["threshold"] == 0.05 and row["verdict"] == "improvement"
    with pytest.raises(ValueError, match="metric_thresholds"):
        analysis.compare_cases(frame, [COMPARISON], {"metric_thresholds": {"x": 0.1}}, seed=0)


def test_repetitions_are_the_units_within_a_run():
    """Three repetitions of ten samples a side: three units a side (paired by their shared
    repetition ids), not thirty rows."""
    rng = np.random.default_rng(10)
    rec = Recorder("database", "pooling", 1)
    for case, mu in (("connect", 0.0), ("pooled", np.log(0.5))):
        for rep in range(3):
            for i, v in enumerate(np.exp(mu + rng.normal(0, 0.05) + rng.normal(0, 0.1, 10))):
                rec.add(case, {}, "latency", "s", False, float(v), repetition=rep, sample=i)
    row = analysis.compare_cases(rec.frame(), [COMPARISON], STATS, seed=0).iloc[0]
    assert row["design"] == "paired repetitions (shared ids)"
    assert (row["n_units_baseline"], row["n_units_candidate"]) == (3, 3)
    assert (row["n_baseline"], row["n_candidate"]) == (30, 30)
    assert row["verdict"] == "improvement"


def test_kaplan_meier_comparison_counts_failed_runs():
    rng = np.random.default_rng(0)
    rec = Recorder("training", "grok", 1)
    for rep in range(10):
        rec.add("base", {}, "steps", "steps", False, float(rng.integers(900, 1100)), repetition=rep)
        if rep < 5:
            rec.add("cand", {}, "steps", "steps", False, None, repetition=rep,
                    status="error:RuntimeError")  # fmt: skip
        else:
            rec.add("cand", {}, "steps", "steps", False, float(rng.integers(300, 400)),
                    repetition=rep)  # fmt: skip
    frame = rec.frame()
    comp = {"name": "km", "suite": "training", "benchmark": "grok", "metric": "steps",
            "baseline": "base", "candidate": "cand", "method": "survival"}  # fmt: skip
    comps = analysis.compare_cases(frame, [comp], STATS, seed=0)
    target = {"name": "km 30%", "comparison": "km", "statistic": "improvement", "op": ">=",
              "threshold": 0.3}  # fmt: skip
    checked = analysis.check_targets([target], comps, frame, STATS, seed=0)
    assert comps["n_failed_candidate"].iloc[0] == 5
    assert comps["verdict"].iloc[0] in ("failed", "inconclusive")
    assert checked["verdict"].iloc[0] != "met"


def test_summary_counts_failures_and_excludes_warmup():
    rec = Recorder("n", "e", 1)
    for i in range(10):
        rec.add("c", {}, "rtt", "s", False, 1e-3 * (i + 1), sample=i)
    rec.add("c", {}, "rtt", "s", False, 5.0, sample=10, warmup=True)
    rec.add("c", {}, "rtt", "s", False, None, sample=11, status="timeout")
    summary = analysis.summarize_measurements(rec.frame(), STATS, seed=0).iloc[0]
    assert (summary["n_ok"], summary["n_failed"], summary["n_warmup"]) == (10, 1, 1)
    assert summary["max"] == pytest.approx(1e-2)
    assert summary["failures"] == '{"timeout": 1}'


def _summaries_group_by_group(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The summary table as summarize_measurements built it before it worked on arrays:
    one pandas group at a time."""
    rows = []
    opts = analysis._stats_options(STATS, seed)
    for key, group in frame.groupby(analysis.GROUP_KEYS, sort=True, dropna=False):
        measured = group[~group["warmup"]]
        ok = measured[measured["status"] == "ok"]
        failed = measured[measured["status"].map(V.is_failure)]
        row = dict(zip(analysis.GROUP_KEYS, key, strict=True))
        row["higher_is_better"] = bool(group["higher_is_better"].iloc[0])
        row["n_warmup"] = int(group["warmup"].sum())
        row["n_ok"] = len(ok)
        row["n_failed"] = len(failed)
        by_design = measured[(measured["status"] != "ok") & ~measured["status"].map(V.is_failure)]
        row["n_by_design"] = len(by_design)
        row["by_design"] = json.dumps(
            by_design["status"].value_counts().sort_index().to_dict(), sort_keys=True
        )
        row["failures"] = json.dumps(
            failed["status"].value_counts().sort_index().to_dict(), sort_keys=True
        )
        if len(ok):
            summary = stats.summarize(ok["value"].to_numpy(), unit=row["unit"], **opts)
            values = summary.as_dict()
            values["warnings"] = json.dumps(list(summary.warnings))
            row.update(values)
        rows.append(row)
    return pd.DataFrame(rows)


def test_summary_table_is_the_same_in_a_process_pool_and_group_by_group():
    """Must show: the summary table is identical (values, types, row and column order)
    whether computed on arrays here, in a process pool, or one pandas group at a time."""
    rng = np.random.default_rng(8)
    frame = pd.concat(
        [
            _frame(rng.lognormal(0, 0.3, 3000), rng.lognormal(0, 0.3, 25), cand_failures=3),
            _frame(rng.lognormal(0, 0.3, 1), rng.lognormal(0, 0.3, 2)).assign(suite="a"),
        ],
        ignore_index=True,
    )
    frame.loc[frame.index[:4], "warmup"] = True
    only_failed = _frame(np.array([]), np.array([]), cand_failures=2).assign(benchmark="z")
    planned = Recorder("database", "pooling", 1)
    for i, status in enumerate(("skipped", "censored", "skipped")):
        planned.add("pooled", {}, "latency", "s", False, None, sample=900 + i, status=status)
    frame = pd.concat([only_failed, frame, planned.frame()], ignore_index=True)
    here = analysis.summarize_measurements(frame, STATS, seed=3)
    assert here[["n_ok", "n_failed", "n_warmup"]].values.tolist() == [
        [1, 0, 0], [2, 0, 0], [2996, 0, 4], [25, 3, 0], [0, 2, 0]
    ]  # fmt: skip
    # skipped and censored rows are by design: counted apart, never as failures
    assert here["n_by_design"].tolist() == [0, 0, 0, 3, 0]
    assert here["by_design"].iloc[3] == '{"censored": 1, "skipped": 2}'
    pd.testing.assert_frame_equal(here, _summaries_group_by_group(frame, 3), check_exact=True)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = analysis.summarize_measurements(frame, STATS, seed=3, executor=pool)
    pd.testing.assert_frame_equal(here, pooled, check_exact=True)


def test_value_targets_use_the_jobs_own_interval_or_an_exact_value():
    rec = Recorder("service", "soak", 1)
    rec.add("server", {}, "memory_growth", "MB/hour", False, 0.4)
    rec.add("server", {}, "memory_growth_ci_low", "MB/hour", False, -0.5)
    rec.add("server", {}, "memory_growth_ci_high", "MB/hour", False, 2.0)
    rec.add("model", {}, "parameters", "count", True, 25_083_000.0)
    frame = rec.frame()
    growth = {"suite": "service", "benchmark": "soak", "case": "server", "metric": "memory_growth"}
    params = {"suite": "service", "benchmark": "soak", "case": "model", "metric": "parameters"}
    targets = [
        {"name": "growth", **growth, "statistic": "value", "op": "<", "threshold": 1.0},
        {"name": "growth loose", **growth, "statistic": "value", "op": "<", "threshold": 5.0},
        {"name": "size", **params, "statistic": "value", "op": ">=", "threshold": 2.5e7},
        {"name": "size big", **params, "statistic": "value", "op": ">=", "threshold": 2.6e7},
    ]
    v = analysis.check_targets(targets, pd.DataFrame(), frame, STATS, seed=0).set_index("name")
    assert v.loc["growth", "verdict"] == "inconclusive"  # the interval straddles 1 MB/h
    assert (v.loc["growth", "ci_low"], v.loc["growth", "ci_high"]) == (-0.5, 2.0)
    assert v.loc["growth loose", "verdict"] == "met"
    assert v.loc["size", "verdict"] == "met"
    assert "one exact value" in v.loc["size", "evidence"]
    assert v.loc["size big", "verdict"] == "not met"


def test_audit_of_targets_none_of_which_is_on_a_comparison_is_empty():
    targets = [{"name": "t", "statistic": "p95", "op": "<", "threshold": 1.0}]
    checked = analysis.check_targets(
        targets, pd.DataFrame(), _frame(np.ones(3), np.ones(3)), STATS, seed=0
    )
    table, overall = analysis.audit_table(checked)
    assert table.empty and overall["verdict"] == "not measured"


def test_value_target_with_censored_interval_rows_is_inconclusive():
    rec = Recorder("service", "soak", 1)
    rec.add("server", {}, "memory_growth", "MB/hour", False, -200.0)
    for m in ("memory_growth_ci_low", "memory_growth_ci_high"):
        rec.add("server", {}, m, "MB/hour", False, None, status="censored")
    target = {
        "name": "growth", "suite": "service", "benchmark": "soak", "case": "server",
        "metric": "memory_growth", "statistic": "value", "op": "<", "threshold": 1.0,
    }  # fmt: skip
    v = analysis.check_targets([target], pd.DataFrame(), rec.frame(), STATS, seed=0).iloc[0]
    assert v["verdict"] == "inconclusive" and "undecided" in v["evidence"]


def test_audit_of_a_target_on_a_comparison_declared_not_measurable():
    """A comparison declared "not measurable at this budget" has no interval (NaN, not a
    pair); the audit lists its target without one instead of failing the report."""
    declared = {**COMPARISON, "not_measurable": "declared for the test"}
    frame = _frame(np.ones(3), np.ones(3))
    comps = analysis.compare_cases(frame, [declared], STATS, seed=0)
    targets = analysis.check_targets([TARGET], comps, frame, STATS, seed=0)
    table, _ = analysis.audit_table(pd.concat([comps, targets], ignore_index=True))
    assert table["target_verdict"].tolist() == ["not measurable at this budget"]
    assert table["improvement_ci_low"].isna().all()
