"""Part 1: how often ``stats.compare`` calls a change, by true effect, size and shape.

Why: a verdict is only worth reading if "regression" is rare when nothing (or less than
the threshold) changed and common when a change well beyond it did. Every trial goes
through ``stats.compare`` itself, the function the workflow and ``forgebench compare``
call, with the candidate slower by the true effect (lower is better).

Per scenario (case ``compare/<shape>/effect=<e>/n=<n>`` or
``compare/repetitions/effect=<e>/reps=<k>``):

* ``false_call_rate``: share of trials called improvement or regression when the true
  effect is within the threshold (the A/A case included), or called in the wrong
  direction when it is beyond it;
* ``detection_rate`` (true effect > 0): share called regression, the true direction;
* ``no_change_share``, ``inconclusive_share``: the other verdicts, for the power to say
  "no change" (equivalence) as much as the power to call a change.

Each share carries its Clopper-Pearson interval over the trials (``trials`` in params).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from forgebench import stats
from forgebench.harness.calibration import synthetic
from forgebench.harness.calibration.figures import Figures, scenario_rng, scenario_seed

CALLS = ("improvement", "regression")

#: The decision under test; tests replace it to show a broken rule is caught.
compare: Callable[..., Any] = stats.compare


def _verdicts(
    base: np.ndarray,
    cand: np.ndarray,
    labels: np.ndarray | None,
    *,
    threshold: float,
    alpha: float,
    confidence: float,
    seed: int,
) -> list[str]:
    """One verdict per trial (row), each from one call of the decision function."""
    out = []
    for i in range(base.shape[0]):
        kw: dict[str, Any] = {}
        if labels is not None:
            kw = {"baseline_units": labels, "candidate_units": labels}
        result = compare(
            base[i],
            cand[i],
            higher_is_better=False,
            threshold=threshold,
            alpha=alpha,
            confidence=confidence,
            seed=seed + i,
            **kw,
        )
        out.append(str(result.verdict))
    return out


def _write(
    fig: Figures, case: str, params: Mapping[str, Any], verdicts: list[str], effect: float
) -> None:
    threshold = float(params["threshold"])
    n = len(verdicts)
    calls = np.array([v in CALLS for v in verdicts])
    regress = np.array([v == "regression" for v in verdicts])
    if abs(effect) <= threshold + 1e-12:
        false = int(calls.sum())
    else:  # beyond the threshold only a call in the wrong direction is false
        false = int(np.sum([v == "improvement" for v in verdicts]))
    fig.share(case, params, "false_call_rate", false, n, higher_is_better=False)
    if effect > 0:
        fig.share(case, params, "detection_rate", int(regress.sum()), n, higher_is_better=True)
    fig.share(
        case, params, "no_change_share", verdicts.count("no change"), n, higher_is_better=True
    )
    fig.share(
        case,
        params,
        "inconclusive_share",
        verdicts.count("inconclusive"),
        n,
        higher_is_better=False,
    )


def run_part(fig: Figures, cfg: Mapping[str, Any], *, seed: int, common: Mapping[str, Any]) -> None:
    """Every (shape, effect, size) and (repetitions, effect) scenario of ``cfg``."""
    trials = int(cfg["trials"])
    sigma = float(cfg["sigma_log"])
    resolution = float(cfg["timer_resolution"])
    opts = {k: float(common[k]) for k in ("threshold", "alpha", "confidence")}
    for kind in cfg["distributions"]:
        for effect in map(float, cfg["effects"]):
            for n in map(int, cfg["sizes"]):
                case = f"compare/{kind}/effect={effect:.2f}/n={n}"
                rng = scenario_rng(seed, case)
                base, cand = synthetic.two_samples(
                    rng, kind, trials, n, effect, sigma=sigma, timer_resolution=resolution
                )
                params = {
                    "part": "comparisons",
                    "distribution": kind,
                    "effect": effect,
                    "n_per_side": n,
                    "trials": trials,
                    "sigma_log": sigma,
                    **opts,
                    **({"timer_resolution": resolution} if kind == "ties" else {}),
                }
                verdicts = _verdicts(base, cand, None, seed=scenario_seed(seed, case), **opts)
                _write(fig, case, params, verdicts, effect)
    per_rep = int(cfg["samples_per_repetition"])
    run_sigma = float(cfg["run_sigma_log"])
    for effect in map(float, cfg["effects"]):
        for reps in map(int, cfg["repetitions"]):
            case = f"compare/repetitions/effect={effect:.2f}/reps={reps}"
            rng = scenario_rng(seed, case)
            base, cand, labels = synthetic.repeated_samples(
                rng, trials, reps, per_rep, effect, sigma=sigma, run_sigma=run_sigma
            )
            params = {
                "part": "comparisons",
                "distribution": "repetitions",
                "effect": effect,
                "repetitions_per_side": reps,
                "samples_per_repetition": per_rep,
                "trials": trials,
                "sigma_log": sigma,
                "run_sigma_log": run_sigma,
                **opts,
            }
            verdicts = _verdicts(base, cand, labels, seed=scenario_seed(seed, case), **opts)
            _write(fig, case, params, verdicts, effect)
