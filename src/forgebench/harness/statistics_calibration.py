"""Calibration of forgebench's verdicts: synthetic data whose truth is known, decided by the
same pure functions the workflow and ``forgebench compare`` call.

Why: docs/verdicts.md promises that a called change is rarely false, that an interval
covers as often as it says, and that the history check neither cries wolf nor sleeps
through a step. Those promises are properties of the functions in ``forgebench.stats``
and can be measured directly: feed them thousands of synthetic cases with a known answer
and count. The figures are rows like any benchmark's, so the report shows them, the
history tracks them, and a target such as "A/A false-call rate at most 2.5%" is judged on
its Clopper-Pearson interval (``<metric>_ci_low``/``_ci_high`` rows).

Four parts, each a section of the config block (trial counts are in every row's params,
so a small default grid gives wide, honest intervals rather than false precision):

1. ``comparisons`` (``calibration.comparisons``): false-call and detection rates of
   ``stats.compare`` by true effect, size and shape (iid lognormal, bimodal, heavy tails
   with outliers, timer ties, repetitions with run-level variance).
2. ``coverage`` (``calibration.coverage``): Monte Carlo coverage of the quantile,
   proportion and ratio intervals, and how often they exist at all.
3. ``histories`` (``calibration.histories``): false alarms, delays, spike rejection and
   drift over 300-run histories fed one run at a time, and the family check across
   metrics.
4. ``anchors`` (``calibration.anchors``): ruptures and Apache Otava on the same histories,
   at their documented defaults and tuned on flat series to forgebench's false-alarm
   rate.

Everything random comes from the run seed and the scenario's name
(``figures.scenario_rng``), so a seed gives the same rows, and a scenario the same draws
in the default and the full grid. A part that raises becomes one failed row
(case = the part) and the other parts still run.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forgebench.harness.calibration import anchor_runs, comparisons, coverage, histories
from forgebench.harness.calibration.figures import Figures
from forgebench.record import Recorder, status_for
from forgebench.stats import defaults

#: 2: a spike confirmed in the runs after its check counts as confirmed (it was skipped).
BENCHMARK_VERSION = 2
SUITE = "harness"
NAME = "statistics_calibration"

log = logging.getLogger(__name__)

#: The default run's grid (config/config.yaml repeats it; config/full.yaml widens it).
DEFAULTS: dict[str, Any] = {
    "threshold": defaults.PRACTICAL_THRESHOLD,
    "alpha": defaults.ALPHA,
    "confidence": defaults.CONFIDENCE,
    "comparisons": {
        "enabled": True,
        "trials": 400,
        "sizes": [3, 10, 30, 150],
        "effects": [0.0, 0.03, 0.05, 0.1, 0.2],
        "distributions": ["iid_lognormal", "bimodal", "heavy_tailed", "ties"],
        "repetitions": [3, 5],
        "samples_per_repetition": 10,
        "sigma_log": 0.1,
        "run_sigma_log": 0.1,
        "timer_resolution": 0.05,
    },
    "coverage": {
        "enabled": True,
        "trials": 1000,
        "sizes": [5, 20, 50, 200],
        "quantiles": [0.5, 0.9, 0.99],
        "proportions": [0.5, 0.1, 0.02],
        "ratio_sizes": [10, 50],
        "ratio_repetitions": [3, 5],
        "ratio_effect": 0.1,
        "samples_per_repetition": 10,
        "sigma_log": 0.1,
        "run_sigma_log": 0.1,
    },
    "histories": {
        "enabled": True,
        "runs": 300,
        "replicates": 20,
        "noise_cv": [0.02, 0.05, 0.1],
        "spikes_sigma": [5, 10],
        "steps_sigma": [1, 2, 4],
        "drift_per_run": 0.01,
        "onset": 150,
        "drift_onset": 100,
        "warmup_runs": 10,
        "match_within": 5,
        "confirm_runs": 2,
        "family_metrics": 20,
        "family_replicates": 3,
    },
    "anchors": {
        "noise_cv": [0.05],
        "replicates": 10,
        "tuning_replicates": 10,
        "ruptures": {
            "enabled": True,
            "algorithm": "binseg",
            "stride": 5,
            "dense_runs": 20,
            "penalty_factors": [1, 1.5, 2, 3, 4, 6, 8, 12, 16],
        },
        "otava": {
            "enabled": False,
            "window_len": 50,
            "max_pvalue": 0.001,
            "min_magnitude": 0.0,
            "max_pvalues": [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0001],
            "python": None,
            "timeout_s": 3600,
            "workers": 1,
        },
    },
}


def settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` over :data:`DEFAULTS`, nested sections merged key by key."""

    def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(copy.deepcopy(DEFAULTS), cfg)


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Every enabled part of the calibration suite, as measurement rows."""
    s = settings(cfg)
    common = {k: float(s[k]) for k in ("threshold", "alpha", "confidence")}
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    fig = Figures(rec, common["confidence"])
    parts = {
        "comparisons": lambda: comparisons.run_part(
            fig, s["comparisons"], seed=seed, common=common
        ),
        "coverage": lambda: coverage.run_part(fig, s["coverage"], seed=seed, common=common),
        "histories": lambda: anchor_runs.run_part(
            fig,
            s["histories"],
            s["anchors"],
            histories.run_part(fig, s["histories"], seed=seed, common=common),
            seed=seed,
        ),
    }
    for name, part in parts.items():
        if not s[name].get("enabled", True):
            continue
        try:
            part()
        except Exception as exc:
            log.exception("calibration part %s failed", name)
            rec.add(name, {"part": name}, "figures", "count", True, None, status=status_for(exc))
    return rec.frame()
