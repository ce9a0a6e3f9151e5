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


@pytest.mark.parametrize("failures", [1, 40])
def test_failed_operations_never_become_an_improvement(failures):
    """A fast candidate that failed some (or all but a few) queries: 'failed', target not met."""
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(1e-2), 0.1, 40)
    cand = rng.lognormal(np.log(1e-4), 0.1, 40 - min(failures, 38))
    v = _verdicts(_frame(base, cand, cand_failures=failures)).set_index("name")
    assert v.loc["pool", "verdict"] == "failed"
    assert v.loc["pool", "n_failed_candidate"] == failures
    assert v.loc["pool 50%", "verdict"] == "not met"
    _, overall = analysis.audit_table(_verdicts(_frame(base, cand, cand_failures=failures)))
    assert overall["verdict"] == "FAILED"


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
        "share_met": 0.8,
        "pass_share": 0.8,
    }
    assert stats.overall_verdict(["met", "inconclusive", "not met"])["verdict"] == "FAILED"
    assert stats.overall_verdict(["not measured"])["verdict"] == "not measured"
    target = {"name": "UI under 50 ms", "statistic": "p95", "op": "<", "threshold": 0.05}
    checked = analysis.check_targets(
        [target], pd.DataFrame(), _frame(np.ones(3), np.ones(3)), STATS, seed=0
    )
    assert checked["verdict"].iloc[0] == "not measured"
    assert "no benchmark" in checked["evidence"].iloc[0]


def test_within_run_family_is_corrected():
    """Twenty A/A comparisons in one suite: BH keeps chance calls rare."""
    rng = np.random.default_rng(3)
    rec = Recorder("s", "b", 1)
    comparisons = []
    for m in range(20):
        for case in ("a", "b"):
            for i, v in enumerate(rng.lognormal(0, 0.1, 30)):
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
    comps = analysis.compare_cases(rec.frame(), comparisons, STATS, seed=0)
    assert set(comps["family"]) == {"s (within run)"}
    assert comps["reason"].str.contains("BH-adjusted").all()
    assert (comps["verdict"].isin(["improvement", "regression"])).sum() <= 1


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
        failed = measured[measured["status"] != "ok"]
        row = dict(zip(analysis.GROUP_KEYS, key, strict=True))
        row["higher_is_better"] = bool(group["higher_is_better"].iloc[0])
        row["n_warmup"] = int(group["warmup"].sum())
        row["n_ok"] = len(ok)
        row["n_failed"] = len(failed)
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
    frame = pd.concat([only_failed, frame], ignore_index=True)
    here = analysis.summarize_measurements(frame, STATS, seed=3)
    assert here[["n_ok", "n_failed", "n_warmup"]].values.tolist() == [
        [1, 0, 0], [2, 0, 0], [2996, 0, 4], [25, 3, 0], [0, 2, 0]
    ]  # fmt: skip
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
