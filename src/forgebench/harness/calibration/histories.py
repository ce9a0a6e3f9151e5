"""Part 3: detection over histories of runs (and the scoring ``anchor_runs`` shares).

Why: a history check that cries wolf every few runs is muted, one that waits twenty runs
to see a 4-sigma step is useless, and one that confirms every spike blames the wrong
commit. Each history is fed to the detector one run at a time, as the workflow sees
runs arrive; every change it reports is an alarm raised at the run count that first
showed it (:class:`~forgebench.harness.calibration.anchors.Alarms`).

Scenarios (``synthetic.history``): noise CV 2/5/10%; a single-run spike of 5 and 10
sigma; steps of 1, 2 and 4 sigma; a drift of +1%/run; all at known runs. An alarm located
within ``match_within`` runs of the true change (at or after the start of a drift) and
raised after it is a detection, any other a false alarm; false alarms within
``match_within`` runs of one already counted are the same change located again.
Figures per (scenario, detector):

* ``false_alarms_per_100_runs`` over the monitored runs (after ``warmup_runs``), with
  an exact Poisson (Garwood) interval;
* steps: ``detected_share``, ``detected_within_5_share``, ``median_delay_runs`` and
  ``p90_delay_runs`` (runs after the step until the alarm; ``censored`` where the quantile
  falls on series never detected);
* spikes: ``spike_rejected_share``: the spike was not confirmed once the next two runs
  were in, nor in the ``match_within`` runs after them (a change located at the spike
  and raised later is the same wrong verdict, one run late; located there but raised
  later still, it is a false alarm like any other);
* drift: ``drift_detected_by_run`` (median runs after the drift began) and its
  ``detected_share``;
* the family check: ``family_metrics`` flat metrics per run judged together through the
  cross-metric correction; ``any_false_regression_share`` is the share of runs in which
  at least one of them raised a regression.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from forgebench.harness.calibration import ours, synthetic
from forgebench.harness.calibration.anchors import Alarms
from forgebench.harness.calibration.figures import Figures, scenario_rng

DELAY_QUANTILES = {"median_delay_runs": 0.5, "p90_delay_runs": 0.9}


@dataclass(frozen=True)
class Scenario:
    """One history shape: its label, the synthetic kind and where its event starts."""

    label: str  # e.g. "step2sigma"
    kind: str  # flat, spike, step, drift
    size_sigma: float
    onset: int

    def params(self) -> dict[str, Any]:
        return {"history": self.kind, "size_sigma": self.size_sigma, "onset": self.onset}


def scenarios(cfg: Mapping[str, Any]) -> list[Scenario]:
    """Every history shape of ``cfg``: flat, the spikes, the steps and the drift."""
    onset = int(cfg["onset"])
    out = [Scenario("flat", "flat", 0.0, onset)]
    out += [Scenario(f"spike{s:g}sigma", "spike", float(s), onset) for s in cfg["spikes_sigma"]]
    out += [Scenario(f"step{s:g}sigma", "step", float(s), onset) for s in cfg["steps_sigma"]]
    if cfg.get("drift_per_run"):
        out.append(Scenario("drift", "drift", 0.0, int(cfg["drift_onset"])))
    return out


@dataclass
class Tally:
    """Counts of one (scenario, detector) over its replicate series."""

    false_alarms: int = 0
    monitored_runs: int = 0
    series: int = 0
    spikes_confirmed: int = 0
    delays: list[float] | None = None

    def __post_init__(self) -> None:
        self.delays = []


def score(
    tally: Tally,
    scenario: Scenario,
    alarms: Alarms,
    *,
    runs: int,
    warmup: int,
    within: int,
) -> None:
    """Add one series' alarms to ``tally`` (see the module docstring for the rules)."""
    onset = scenario.onset
    tally.series += 1
    tally.monitored_runs += runs - warmup
    first = math.inf
    counted: list[int] = []
    check = check_at_of(scenario)  # None unless the series has a spike

    def at_spike(index: int) -> bool:
        return onset - within <= index <= onset + 1 + within

    confirmed_late = False
    for index, seen in alarms.events:
        if check is not None and at_spike(index) and seen <= check + within:
            # The spike itself, judged below: confirmed at the check, or in the runs after
            # it (a spike confirmed a run late blames the same commit).
            confirmed_late |= seen > check
            continue
        true = seen > onset and (
            index >= onset - within
            if scenario.kind == "drift"
            else scenario.kind == "step" and abs(index - onset) <= within
        )
        if true:
            first = min(first, seen - onset)
        elif all(abs(index - k) > within for k in counted):  # else: one located again
            counted.append(index)
            tally.false_alarms += 1
    if scenario.kind in ("step", "drift"):
        tally.delays.append(first)
    if check is not None:
        at_check = any(at_spike(i) for i in alarms.at_check or ())
        tally.spikes_confirmed += at_check or confirmed_late


def poisson_ci(k: int, exposure: float, confidence: float) -> tuple[float, float]:
    """Exact (Garwood) interval of a Poisson rate ``k / exposure``."""
    a = 1.0 - confidence
    low = 0.0 if k == 0 else float(sps.chi2.ppf(a / 2, 2 * k)) / 2.0
    high = float(sps.chi2.ppf(1 - a / 2, 2 * k + 2)) / 2.0
    return low / exposure, high / exposure


def write_tally(
    fig: Figures, case: str, params: Mapping[str, Any], scenario: Scenario, tally: Tally
) -> None:
    """The figures of one (scenario, detector), as rows of ``case``."""
    per100 = tally.monitored_runs / 100.0
    if per100 > 0:
        low, high = poisson_ci(tally.false_alarms, per100, fig.confidence)
        metric = "false_alarms_per_100_runs"
        fig.value(case, params, metric, "per 100 runs", False, tally.false_alarms / per100)
        fig.value(case, params, metric + "_ci_low", "per 100 runs", False, low)
        fig.value(case, params, metric + "_ci_high", "per 100 runs", False, high)
    delays = np.asarray(tally.delays, dtype=float)
    n = tally.series
    if scenario.kind == "step":
        fig.share(
            case, params, "detected_share", int(np.isfinite(delays).sum()), n, higher_is_better=True
        )
        fig.share(
            case,
            params,
            "detected_within_5_share",
            int((delays <= 5).sum()),
            n,
            higher_is_better=True,
        )
        fig.censored_quantiles(case, params, delays, DELAY_QUANTILES, "runs")
    elif scenario.kind == "drift":
        fig.share(
            case, params, "detected_share", int(np.isfinite(delays).sum()), n, higher_is_better=True
        )
        fig.censored_quantiles(case, params, delays, {"drift_detected_by_run": 0.5}, "runs")
    elif scenario.kind == "spike":
        fig.share(
            case,
            params,
            "spike_rejected_share",
            n - tally.spikes_confirmed,
            n,
            higher_is_better=True,
        )


def false_alarms_per_100(
    alarms: Sequence[Alarms], *, runs: int, warmup: int, within: int, scenario: Scenario
) -> float:
    """False alarms per 100 monitored runs over flat (tuning) series."""
    tally = Tally()
    for a in alarms:
        score(tally, scenario, a, runs=runs, warmup=warmup, within=within)
    return 100.0 * tally.false_alarms / max(tally.monitored_runs, 1)


# ----------------------------------------------------------------------------- driver


def case_name(scenario: Scenario, cv: float, detector: str) -> str:
    return f"history/{scenario.label}/cv={cv:g}/{detector}"


def common_params(cfg: Mapping[str, Any], scenario: Scenario, cv: float, replicates: int) -> dict:
    return {
        "part": "histories",
        **scenario.params(),
        "noise_cv": cv,
        "runs": int(cfg["runs"]),
        "replicates": replicates,
        "warmup_runs": int(cfg["warmup_runs"]),
        "match_within": int(cfg["match_within"]),
        **({"drift_per_run": float(cfg["drift_per_run"])} if scenario.kind == "drift" else {}),
    }


def series(
    seed: int,
    cfg: Mapping[str, Any],
    scenario: Scenario,
    cv: float,
    n: int,
    *,
    purpose: str = "evaluation",
) -> np.ndarray:
    """The replicate histories of one scenario (tuning series have their own seeds)."""
    rng = scenario_rng(seed, "history", purpose, scenario.label, f"{cv:g}")
    return synthetic.history(
        rng,
        n,
        int(cfg["runs"]),
        cv,
        scenario.kind,
        onset=scenario.onset,
        size_sigma=scenario.size_sigma,
        drift_per_run=float(cfg.get("drift_per_run") or 0.0),
    )


def check_at_of(scenario: Scenario) -> int | None:
    """Runs in the series when a spike is judged: the spike and the next two runs."""
    return scenario.onset + 3 if scenario.kind == "spike" else None


def tally_of(scenario: Scenario, alarms: Sequence[Alarms], cfg: Mapping[str, Any]) -> Tally:
    tally = Tally()
    for a in alarms:
        score(
            tally,
            scenario,
            a,
            runs=int(cfg["runs"]),
            warmup=int(cfg["warmup_runs"]),
            within=int(cfg["match_within"]),
        )
    return tally


def run_part(
    fig: Figures, cfg: Mapping[str, Any], *, seed: int, common: Mapping[str, Any]
) -> dict[float, float]:
    """Histories through forgebench's detection and the family check; returns the false
    alarms per 100 runs on flat series by noise CV, the rate the anchors are tuned to."""
    shapes = scenarios(cfg)
    replicates = int(cfg["replicates"])
    ours_flat: dict[float, float] = {}
    for cv in map(float, cfg["noise_cv"]):
        for sc in shapes:
            ys = series(seed, cfg, sc, cv, replicates)
            alarms = [
                ours.alarms(y, check_at=check_at_of(sc), cfg=cfg, threshold=common["threshold"])
                for y in ys
            ]
            tally = tally_of(sc, alarms, cfg)
            params = {**common_params(cfg, sc, cv, replicates), **ours.describe(cfg)}
            write_tally(fig, case_name(sc, cv, "forgebench"), params, sc, tally)
            if sc.kind == "flat":
                ours_flat[cv] = 100.0 * tally.false_alarms / max(tally.monitored_runs, 1)
        if int(cfg.get("family_metrics") or 0) > 0:
            _family(fig, cfg, cv, seed, common)
    return ours_flat


def _family(
    fig: Figures, cfg: Mapping[str, Any], cv: float, seed: int, common: Mapping[str, Any]
) -> None:
    """``family_metrics`` flat metrics judged together after every run."""
    m, reps = int(cfg["family_metrics"]), int(cfg["family_replicates"])
    runs, warmup = int(cfg["runs"]), int(cfg["warmup_runs"])
    flat = Scenario("flat", "flat", 0.0, int(cfg["onset"]))
    case = f"history/family{m}/cv={cv:g}/forgebench"
    raised = {True: 0, False: 0}
    monitored = 0
    for r in range(reps):
        rng = scenario_rng(seed, "history", "family", f"{cv:g}", r)
        ys = synthetic.history(rng, m, runs, cv, "flat", onset=flat.onset)
        for corrected, any_false in ours.family_regressions(
            ys, warmup=warmup, cfg=cfg, threshold=common["threshold"], alpha=common["alpha"]
        ).items():
            raised[corrected] += int(any_false.sum())
        monitored += runs - warmup
    params = {**common_params(cfg, flat, cv, reps), "metrics_per_run": m, **ours.describe(cfg)}
    fig.share(
        case, params, "any_false_regression_share", raised[True], monitored, higher_is_better=False
    )
    fig.share(
        case,
        params,
        "any_false_regression_share_uncorrected",
        raised[False],
        monitored,
        higher_is_better=False,
    )
