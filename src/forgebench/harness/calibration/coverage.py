"""Part 2: do the intervals cover the truth as often as they claim (Monte Carlo)?

Why: every verdict is read off an interval, so an interval that covers 90% while claiming
95% turns into false calls however carefully the decision rule is written. Each trial
draws a fresh sample with a known truth and calls the interval function the workflow
calls: ``stats.quantile_ci`` (order statistics: median, p90, p99), ``stats.proportion_ci``
(Clopper-Pearson) and ``stats.compare``'s ``improvement_ci`` (the ratio), iid and with
repetitions.

Per scenario (case ``coverage/<what>/...``): ``defined_share`` (share of trials where the
interval existed: an order-statistic bound for a p99 from 20 values does not), and
``coverage`` over those trials, both with Clopper-Pearson intervals, plus
``coverage_excess`` = coverage - confidence (the over-coverage of conservative kinds).
``params.kind`` says what the interval promises: ``exact`` (distribution-free or
conservative: coverage >= confidence) or ``approximate`` (t intervals on a few
repetitions: 93-97.5% is the accepted band). Proportions also get ``coverage_exact``: the
coverage summed over every possible count with the same function, no Monte Carlo error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats as sps

from forgebench import stats
from forgebench.harness.calibration import synthetic
from forgebench.harness.calibration.figures import Figures, scenario_rng, scenario_seed

#: The accepted band of an approximate interval's coverage (verdicts.md).
APPROXIMATE_BAND = (0.93, 0.975)


def _write(
    fig: Figures,
    case: str,
    params: Mapping[str, Any],
    covered: np.ndarray,
    defined: np.ndarray,
    confidence: float,
) -> None:
    trials = int(defined.size)
    n_def = int(defined.sum())
    fig.share(case, params, "defined_share", n_def, trials, higher_is_better=True)
    k = int(covered[defined].sum())
    fig.share(case, params, "coverage", k, n_def, higher_is_better=True)
    fig.value(
        case,
        params,
        "coverage_excess",
        "fraction",
        False,
        k / n_def - confidence if n_def else None,
    )


def _quantiles(fig: Figures, cfg: Mapping[str, Any], seed: int, confidence: float) -> None:
    trials, sigma = int(cfg["trials"]), float(cfg["sigma_log"])
    for q in map(float, cfg["quantiles"]):
        truth = math.exp(sigma * sps.norm.ppf(q))
        for n in map(int, cfg["sizes"]):
            case = f"coverage/quantile/q={q:g}/n={n}"
            values = np.exp(sigma * scenario_rng(seed, case).standard_normal((trials, n)))
            bounds = np.array([stats.quantile_ci(v, q, confidence) for v in values])
            defined = np.isfinite(bounds).all(axis=1)
            covered = (bounds[:, 0] <= truth) & (truth <= bounds[:, 1])
            params = {
                "part": "coverage",
                "interval": "quantile",
                "kind": "exact",
                "q": q,
                "n": n,
                "trials": trials,
                "distribution": "iid_lognormal",
                "sigma_log": sigma,
                "confidence": confidence,
            }
            _write(fig, case, params, covered, defined, confidence)


def _proportions(fig: Figures, cfg: Mapping[str, Any], seed: int, confidence: float) -> None:
    trials = int(cfg["trials"])
    for p in map(float, cfg["proportions"]):
        for n in map(int, cfg["sizes"]):
            case = f"coverage/proportion/p={p:g}/n={n}"
            k = scenario_rng(seed, case).binomial(n, p, trials)
            # The interval depends on (k, n) only: one call per possible count.
            table = np.array([stats.proportion_ci(j, n, confidence) for j in range(n + 1)])
            hits = (table[:, 0] <= p) & (p <= table[:, 1])
            params = {
                "part": "coverage",
                "interval": "proportion",
                "kind": "exact",
                "p": p,
                "n": n,
                "trials": trials,
                "confidence": confidence,
            }
            _write(fig, case, params, hits[k], np.ones(trials, bool), confidence)
            exact = float(np.sum(sps.binom.pmf(np.arange(n + 1), n, p) * hits))
            fig.value(case, params, "coverage_exact", "fraction", True, exact)


def _ratios(fig: Figures, cfg: Mapping[str, Any], seed: int, common: Mapping[str, Any]) -> None:
    trials, sigma = int(cfg["trials"]), float(cfg["sigma_log"])
    effect = float(cfg["ratio_effect"])
    confidence = float(common["confidence"])
    opts = {k: float(common[k]) for k in ("threshold", "alpha", "confidence")}
    truth = -effect  # improvement = 1 - ratio for a lower-is-better metric
    scenarios: list[tuple[str, dict[str, Any]]] = [
        (f"coverage/ratio/iid/n={n}", {"n_per_side": n, "kind": "exact"})
        for n in map(int, cfg["ratio_sizes"])
    ]
    scenarios += [
        (f"coverage/ratio/repetitions/reps={k}", {"repetitions_per_side": k, "kind": "approximate"})
        for k in map(int, cfg["ratio_repetitions"])
    ]
    for case, extra in scenarios:
        rng = scenario_rng(seed, case)
        labels = None
        if "n_per_side" in extra:
            base, cand = synthetic.two_samples(
                rng,
                "iid_lognormal",
                trials,
                extra["n_per_side"],
                effect,
                sigma=sigma,
                timer_resolution=1.0,
            )
        else:
            per_rep = int(cfg["samples_per_repetition"])
            extra["samples_per_repetition"] = per_rep
            extra["run_sigma_log"] = float(cfg["run_sigma_log"])
            base, cand, labels = synthetic.repeated_samples(
                rng,
                trials,
                extra["repetitions_per_side"],
                per_rep,
                effect,
                sigma=sigma,
                run_sigma=extra["run_sigma_log"],
            )
        s0 = scenario_seed(seed, case)
        bounds = np.empty((trials, 2))
        for i in range(trials):
            kw: dict[str, Any] = {}
            if labels is not None:
                kw = {"baseline_units": labels, "candidate_units": labels}
            result = stats.compare(
                base[i], cand[i], higher_is_better=False, seed=s0 + i, **opts, **kw
            )
            bounds[i] = result.improvement_ci
        defined = np.isfinite(bounds).all(axis=1)
        covered = (bounds[:, 0] <= truth) & (truth <= bounds[:, 1])
        params = {
            "part": "coverage",
            "interval": "ratio",
            "effect": effect,
            "trials": trials,
            "sigma_log": sigma,
            **opts,
            **extra,
        }
        _write(fig, case, params, covered, defined, confidence)


def run_part(fig: Figures, cfg: Mapping[str, Any], *, seed: int, common: Mapping[str, Any]) -> None:
    """Quantile, proportion and ratio coverage scenarios of ``cfg``."""
    confidence = float(common["confidence"])
    _quantiles(fig, cfg, seed, confidence)
    _proportions(fig, cfg, seed, confidence)
    _ratios(fig, cfg, seed, common)
