"""Part 3 (and the scoring of part 4): detection over histories of runs.

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
  were in;
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
from forgebench.harness.calibration.anchors import (
    Alarms,
    eval_times,
    otava_alarms,
    otava_python,
    ruptures_alarms,
)
from forgebench.harness.calibration.figures import Figures, scenario_rng
from forgebench.record import status_for

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
    for index, seen in alarms.events:
        if scenario.kind == "spike" and onset - within <= index <= onset + 1 + within:
            continue  # the spike itself: judged by the check below, not a false alarm
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
    if scenario.kind == "spike":
        at = alarms.at_check or ()
        tally.spikes_confirmed += any(onset - within <= i <= onset + 1 + within for i in at)


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


def _case(scenario: Scenario, cv: float, detector: str) -> str:
    return f"history/{scenario.label}/cv={cv:g}/{detector}"


def _common_params(cfg: Mapping[str, Any], scenario: Scenario, cv: float, replicates: int) -> dict:
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


def _series(
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


def _check_at(scenario: Scenario) -> int | None:
    """Runs in the series when a spike is judged: the spike and the next two runs."""
    return scenario.onset + 3 if scenario.kind == "spike" else None


def _tally(scenario: Scenario, alarms: Sequence[Alarms], cfg: Mapping[str, Any]) -> Tally:
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
    fig: Figures,
    cfg: Mapping[str, Any],
    anchors_cfg: Mapping[str, Any],
    *,
    seed: int,
    common: Mapping[str, Any],
) -> None:
    """Histories through forgebench's detection, the family check, then the anchors."""
    shapes = scenarios(cfg)
    replicates = int(cfg["replicates"])
    ours_flat: dict[float, float] = {}
    for cv in map(float, cfg["noise_cv"]):
        for sc in shapes:
            ys = _series(seed, cfg, sc, cv, replicates)
            alarms = [
                ours.alarms(y, check_at=_check_at(sc), cfg=cfg, threshold=common["threshold"])
                for y in ys
            ]
            tally = _tally(sc, alarms, cfg)
            params = {**_common_params(cfg, sc, cv, replicates), **ours.describe(cfg)}
            write_tally(fig, _case(sc, cv, "forgebench"), params, sc, tally)
            if sc.kind == "flat":
                ours_flat[cv] = 100.0 * tally.false_alarms / max(tally.monitored_runs, 1)
        if int(cfg.get("family_metrics") or 0) > 0:
            _family(fig, cfg, cv, seed, common)
    _anchors(fig, cfg, anchors_cfg, shapes, ours_flat, seed)


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
    params = {**_common_params(cfg, flat, cv, reps), "metrics_per_run": m, **ours.describe(cfg)}
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


def _tune(rates: Sequence[float], target: float) -> int:
    """Index of the most sensitive setting (settings ordered from most to least sensitive)
    whose false-alarm rate on the flat tuning series does not exceed ``target``; the least
    sensitive one when none does."""
    for i, rate in enumerate(rates):
        if rate <= target + 1e-12:
            return i
    return len(rates) - 1


def _anchors(
    fig: Figures,
    cfg: Mapping[str, Any],
    anchors_cfg: Mapping[str, Any],
    shapes: Sequence[Scenario],
    ours_flat: Mapping[float, float],
    seed: int,
) -> None:
    """ruptures and Otava on the first ``replicates`` of the same series, default and tuned."""
    reps, tune_reps = int(anchors_cfg["replicates"]), int(anchors_cfg["tuning_replicates"])
    flat = next(sc for sc in shapes if sc.kind == "flat")
    for cv in map(float, anchors_cfg["noise_cv"]):
        target = ours_flat.get(cv)
        tuning = _series(seed, cfg, flat, cv, tune_reps, purpose="tuning")
        evaluation = {sc.label: _series(seed, cfg, sc, cv, reps) for sc in shapes}
        for name in ("ruptures", "otava"):
            acfg = anchors_cfg[name]
            if not acfg.get("enabled", False):
                continue
            runner = _ruptures if name == "ruptures" else _otava
            try:
                runner(fig, cfg, acfg, shapes, evaluation, tuning, cv, target)
            except Exception as exc:  # one anchor failing leaves the others standing
                fig.rec.add(
                    f"history/anchor/cv={cv:g}/{name}",
                    {"part": "anchors"},
                    "figures",
                    "count",
                    True,
                    None,
                    status=status_for(exc),
                )


def _ruptures(
    fig: Figures,
    cfg: Mapping[str, Any],
    acfg: Mapping[str, Any],
    shapes: Sequence[Scenario],
    evaluation: Mapping[str, np.ndarray],
    tuning: np.ndarray,
    cv: float,
    target: float | None,
) -> None:
    """ruptures, tuned over ``penalty_factors`` on the flat tuning series."""
    algorithm = str(acfg["algorithm"])
    factors = [float(f) for f in acfg["penalty_factors"]]
    runs, warmup, within = int(cfg["runs"]), int(cfg["warmup_runs"]), int(cfg["match_within"])
    stride, dense = int(acfg["stride"]), int(acfg["dense_runs"])
    flat = next(sc for sc in shapes if sc.kind == "flat")
    times_flat = eval_times(runs, warmup, [], stride)
    per_factor = list(
        zip(
            *[
                ruptures_alarms(
                    y, factors, algorithm=algorithm, times=times_flat, check_at=None, within=within
                )
                for y in tuning
            ],
            strict=True,
        )
    )
    rates = [
        false_alarms_per_100(a, runs=runs, warmup=warmup, within=within, scenario=flat)
        for a in per_factor
    ]
    chosen = factors[_tune(rates, target)] if target is not None else None
    for sc in shapes:
        window = [(sc.onset, sc.onset + dense)] if sc.kind != "flat" else []
        times = eval_times(runs, warmup, window, stride)
        use = [1.0] + ([chosen] if chosen is not None else [])
        results = [
            ruptures_alarms(
                y, use, algorithm=algorithm, times=times, check_at=_check_at(sc), within=within
            )
            for y in evaluation[sc.label]
        ]
        base = {
            **_common_params(cfg, sc, cv, len(results)),
            "detector": f"ruptures {algorithm}",
            "cost": "l2",
            "min_size": 2,
            "jump": 5,
            "penalty": "factor * 2 sigma^2 ln(n)",
            "rerun_every_runs": stride,
            "rerun_every_run_after_event": dense,
        }
        tuned_info = {
            "tuned_on": "flat series",
            "tuning_replicates": len(tuning),
            "target_false_alarms_per_100_runs": target,
            "tuning_false_alarms_per_100_runs": dict(zip(map(str, factors), rates, strict=True)),
        }
        for j, label in enumerate(["default", "tuned"][: len(use)]):
            params = {**base, "penalty_factor": use[j], **(tuned_info if label == "tuned" else {})}
            tally = _tally(sc, [r[j] for r in results], cfg)
            write_tally(fig, _case(sc, cv, f"ruptures_{algorithm}_{label}"), params, sc, tally)


def _otava(
    fig: Figures,
    cfg: Mapping[str, Any],
    acfg: Mapping[str, Any],
    shapes: Sequence[Scenario],
    evaluation: Mapping[str, np.ndarray],
    tuning: np.ndarray,
    cv: float,
    target: float | None,
) -> None:
    """Otava, tuned over ``max_pvalues`` on the flat tuning series (one subprocess a stage)."""
    python = otava_python(acfg)
    runs, warmup, within = int(cfg["runs"]), int(cfg["warmup_runs"]), int(cfg["match_within"])
    flat = next(sc for sc in shapes if sc.kind == "flat")
    if python is None:
        for sc in shapes:
            params = {
                **_common_params(cfg, sc, cv, 0),
                "detector": "otava",
                "why": "no otava environment: run tools/otava_env.sh",
            }
            fig.value(
                _case(sc, cv, "otava_default"),
                params,
                "false_alarms_per_100_runs",
                "per 100 runs",
                False,
                None,
                status="unavailable",
            )
        return
    default = {k: acfg[k] for k in ("window_len", "max_pvalue", "min_magnitude")}
    grid = [{**default, "max_pvalue": float(p)} for p in sorted(acfg["max_pvalues"], reverse=True)]
    timeout = float(acfg["timeout_s"])
    workers = int(acfg.get("workers", 1))
    tuned_alarms, version = otava_alarms(
        python,
        list(tuning),
        grid,
        start=warmup,
        check_at=[None] * len(tuning),
        within=within,
        timeout_s=timeout,
        workers=workers,
    )
    rates = [
        false_alarms_per_100(
            [row[j] for row in tuned_alarms], runs=runs, warmup=warmup, within=within, scenario=flat
        )
        for j in range(len(grid))
    ]
    chosen = grid[_tune(rates, target)] if target is not None else None
    use = [default] + ([chosen] if chosen is not None else [])
    series, checks, owner = [], [], []
    for sc in shapes:
        for y in evaluation[sc.label]:
            series.append(y)
            checks.append(_check_at(sc))
            owner.append(sc.label)
    results, version = otava_alarms(
        python,
        series,
        use,
        start=warmup,
        check_at=checks,
        within=within,
        timeout_s=timeout,
        workers=workers,
    )
    for sc in shapes:
        mine = [r for r, o in zip(results, owner, strict=True) if o == sc.label]
        base = {
            **_common_params(cfg, sc, cv, len(mine)),
            "detector": "otava e-divisive",
            "otava_version": version,
            "fed": "one run at a time (incremental)",
        }
        tuned_info = {
            "tuned_on": "flat series",
            "tuning_replicates": len(tuning),
            "target_false_alarms_per_100_runs": target,
            "tuning_false_alarms_per_100_runs": {
                str(g["max_pvalue"]): r for g, r in zip(grid, rates, strict=True)
            },
        }
        for j, label in enumerate(["default", "tuned"][: len(use)]):
            params = {**base, **use[j], **(tuned_info if label == "tuned" else {})}
            tally = _tally(sc, [r[j] for r in mine], cfg)
            write_tally(fig, _case(sc, cv, f"otava_{label}"), params, sc, tally)
