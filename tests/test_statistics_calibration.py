"""The calibration benchmark: valid rows, seeded, sensitive to a broken decision rule,
one run at a time, and the Otava anchor in its own environment."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from forgebench import sizing
from forgebench.harness import statistics_calibration as sc
from forgebench.harness.calibration import anchors, comparisons, histories, ours
from forgebench.record import COLUMNS, validate_measurements
from forgebench.registry import BENCHMARKS

TINY = {
    "comparisons": {
        "trials": 40,
        "sizes": [3, 10],
        "effects": [0.0, 0.2],
        "distributions": ["iid_lognormal", "ties"],
        "repetitions": [3],
    },
    "coverage": {
        "trials": 50,
        "sizes": [5, 50],
        "quantiles": [0.5, 0.99],
        "proportions": [0.1],
        "ratio_sizes": [10],
        "ratio_repetitions": [3],
    },
    "histories": {
        "runs": 80,
        "replicates": 2,
        "noise_cv": [0.05],
        "spikes_sigma": [10],
        "steps_sigma": [4],
        "onset": 40,
        "drift_onset": 30,
        "family_metrics": 3,
        "family_replicates": 1,
    },
    "anchors": {
        "noise_cv": [0.05],
        "replicates": 1,
        "tuning_replicates": 1,
        "ruptures": {"stride": 10, "penalty_factors": [1, 4]},
        "otava": {"enabled": False},
    },
}


def _only(part: str) -> dict:
    parts = ("comparisons", "coverage", "histories")
    return {**TINY, **{p: {**TINY[p], "enabled": p == part} for p in parts}}


def _figures(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(r.case, r.metric): r.value for r in frame.itertuples()}


@pytest.fixture(scope="module")
def tiny_rows() -> pd.DataFrame:
    return sc.run(TINY, seed=7)


def test_rows_are_valid_and_every_part_writes_its_figures(tiny_rows):
    frame = tiny_rows
    assert list(frame.columns) == list(COLUMNS)
    validate_measurements(frame)
    assert (frame["suite"] == "harness").all()
    assert (frame["benchmark"] == "statistics_calibration").all()
    assert not frame["status"].str.startswith("error").any(), frame[frame["status"] != "ok"]
    fig = _figures(frame)
    # comparisons: every share with its Clopper-Pearson interval around it
    case = "compare/iid_lognormal/effect=0.00/n=10"
    low, rate, high = (fig[case, f"false_call_rate{s}"] for s in ("_ci_low", "", "_ci_high"))
    assert 0.0 <= low <= rate <= high <= 1.0
    assert ("compare/ties/effect=0.20/n=10", "detection_rate") in fig
    assert ("compare/repetitions/effect=0.00/reps=3", "false_call_rate") in fig
    params = json.loads(frame.loc[frame["case"] == case, "params"].iloc[0])
    assert params["trials"] == 40 and params["n_per_side"] == 10 and params["effect"] == 0.0
    # coverage: a p99 from 50 values has no interval; it says so instead of a number
    assert fig["coverage/quantile/q=0.99/n=50", "defined_share"] == 0.0
    p99 = frame[
        (frame["case"] == "coverage/quantile/q=0.99/n=50") & (frame["metric"] == "coverage")
    ]
    assert p99["status"].tolist() == ["skipped"]
    assert fig["coverage/quantile/q=0.5/n=50", "defined_share"] == 1.0
    assert 0.8 <= fig["coverage/proportion/p=0.1/n=50", "coverage_exact"] <= 1.0
    assert ("coverage/ratio/repetitions/reps=3", "coverage") in fig
    # histories and the ruptures anchor on the same series
    for detector in ("forgebench", "ruptures_binseg_default", "ruptures_binseg_tuned"):
        assert (f"history/flat/cv=0.05/{detector}", "false_alarms_per_100_runs") in fig
        assert (f"history/spike10sigma/cv=0.05/{detector}", "spike_rejected_share") in fig
        assert (f"history/step4sigma/cv=0.05/{detector}", "detected_within_5_share") in fig
        assert (f"history/drift/cv=0.05/{detector}", "drift_detected_by_run") in fig
    assert fig["history/step4sigma/cv=0.05/forgebench", "detected_share"] == 1.0
    assert ("history/family3/cv=0.05/forgebench", "any_false_regression_share") in fig


def test_the_same_seed_gives_the_same_rows(tiny_rows):
    again = sc.run(TINY, seed=7)
    keep = [c for c in COLUMNS if c != "started_at"]
    pd.testing.assert_frame_equal(tiny_rows[keep], again[keep])
    other = sc.run(_only("comparisons"), seed=8)
    mine = tiny_rows[tiny_rows["case"].str.startswith("compare/")]
    assert not np.array_equal(mine["value"].to_numpy(), other["value"].to_numpy())


def test_a_decision_on_the_point_estimate_alone_shows_as_false_calls(monkeypatch):
    """Calling whenever the ratio of medians is beyond the threshold ignores the noise;
    the benchmark's rows must show it (and show the real rule within 2.5%)."""

    class Verdict:
        def __init__(self, verdict: str) -> None:
            self.verdict = verdict

    def point_estimate_only(baseline, candidate, *, threshold, **_):
        ratio = float(np.median(candidate) / np.median(baseline))
        if ratio > 1 + threshold:
            return Verdict("regression")
        return Verdict("improvement" if ratio < 1 - threshold else "no change")

    cfg = _only("comparisons")
    cfg["comparisons"] = {**TINY["comparisons"], "trials": 200, "distributions": ["iid_lognormal"]}
    honest = _figures(sc.run(cfg, seed=3))
    monkeypatch.setattr(comparisons, "compare", point_estimate_only)
    broken = _figures(sc.run(cfg, seed=3))
    for n in (3, 10):
        case = f"compare/iid_lognormal/effect=0.00/n={n}"
        assert broken[case, "false_call_rate_ci_low"] > 0.025, broken[case, "false_call_rate"]
        assert honest[case, "false_call_rate"] <= 0.025


def test_histories_are_judged_one_run_at_a_time():
    """The alarms equal what the state at each prefix said: nothing looks ahead."""
    d = ours._detection()
    rng = np.random.default_rng(11)
    y = np.exp(0.05 * rng.standard_normal(60))
    y[30:] *= math.exp(0.3)
    cfg = {"confirm_runs": 2}
    alarms = ours.alarms(y, check_at=None, cfg=cfg, threshold=0.05)
    opts = {"threshold": 0.05, "higher_is_better": False, "log_scale": True}
    prefixes = {}
    for t in range(1, y.size + 1):
        st = d.current_state(y[:t], **opts)
        if st.new and st.change is not None and st.change.confirmed is not None:
            prefixes.setdefault(st.change.start, t)
    assert alarms.events == tuple(sorted(prefixes.items(), key=lambda kv: (kv[1], kv[0])))
    assert any(abs(start - 30) <= 2 for start, _ in alarms.events)


def test_a_spike_confirmed_after_its_check_counts_against_rejection():
    """A change located at the spike and raised in the runs after the check is the same
    wrong verdict one run late: it was skipped (neither a confirmed spike nor a false
    alarm), so a detector that confirmed spikes a run late scored as rejecting them."""
    spike = histories.Scenario("spike10sigma", "spike", 10.0, 150)
    check = histories.check_at_of(spike)

    def tally(*events):
        t = histories.Tally()
        alarms = anchors.Alarms(tuple(events), at_check=())
        histories.score(t, spike, alarms, runs=300, warmup=10, within=5)
        return t.spikes_confirmed, t.false_alarms

    assert tally() == (0, 0)
    assert tally((150, check + 1)) == (1, 0)  # confirmed one run after the check
    assert tally((150, check + 5)) == (1, 0)
    assert tally((150, check + 40)) == (0, 1)  # much later: a false alarm like any other
    assert tally((40, 43)) == (0, 1)


def test_registered_and_sized():
    spec = BENCHMARKS.get("harness", "statistics_calibration")
    fn, version = spec.load()
    assert fn is sc.run and version == sc.BENCHMARK_VERSION
    seconds, rows = sizing.ESTIMATES["harness/statistics_calibration"](sc.settings({}))
    assert 60 < seconds < 600 and rows > 0


def test_otava_anchor_runs_in_its_own_environment():
    python = anchors.otava_python({})
    if python is None:
        pytest.skip("no otava environment (.venv/otava): run `bash tools/otava_env.sh`")
    cfg = _only("histories")
    cfg["histories"] = {**TINY["histories"], "runs": 100, "onset": 60, "family_metrics": 0}
    cfg["anchors"] = {
        **TINY["anchors"],
        "ruptures": {"enabled": False},
        "otava": {"enabled": True, "max_pvalues": [0.05, 0.001], "timeout_s": 300},
    }
    frame = sc.run(cfg, seed=5)
    validate_measurements(frame)
    otava = frame[frame["case"].str.contains("/otava_")]
    assert not otava.empty and (otava["status"].isin(["ok", "censored"])).all(), otava
    fig = _figures(frame)
    assert fig["history/step4sigma/cv=0.05/otava_default", "detected_share"] == 1.0
    params = json.loads(otava["params"].iloc[0])
    assert params["otava_version"] == "0.8.0" and params["window_len"] == 50
    tuned = json.loads(otava.loc[otava["case"].str.endswith("otava_tuned"), "params"].iloc[0])
    assert tuned["max_pvalue"] in (0.05, 0.001) and "tuning_false_alarms_per_100_runs" in tuned
