"""Part 4's driver: ruptures and Otava over the histories part's own series.

Why apart from ``histories``: the anchors see the same series (same seeds, the first
``anchors.replicates`` of each scenario) and are scored by the same rules, but are tuned
to the false-alarm rate forgebench's detection showed there, so they run after it. See
``anchors`` for what each anchor is and how it is fed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forgebench.harness.calibration.anchors import (
    eval_times,
    otava_alarms,
    otava_python,
    ruptures_alarms,
)
from forgebench.harness.calibration.figures import Figures
from forgebench.harness.calibration.histories import (
    Scenario,
    case_name,
    check_at_of,
    common_params,
    false_alarms_per_100,
    scenarios,
    series,
    tally_of,
    write_tally,
)
from forgebench.record import status_for


def run_part(
    fig: Figures,
    cfg: Mapping[str, Any],
    anchors_cfg: Mapping[str, Any],
    ours_flat: Mapping[float, float],
    *,
    seed: int,
) -> None:
    """Every enabled anchor at every ``anchors.noise_cv``, default and tuned."""
    _anchors(fig, cfg, anchors_cfg, scenarios(cfg), ours_flat, seed)


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
        tuning = series(seed, cfg, flat, cv, tune_reps, purpose="tuning")
        evaluation = {sc.label: series(seed, cfg, sc, cv, reps) for sc in shapes}
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
                y, use, algorithm=algorithm, times=times, check_at=check_at_of(sc), within=within
            )
            for y in evaluation[sc.label]
        ]
        base = {
            **common_params(cfg, sc, cv, len(results)),
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
            tally = tally_of(sc, [r[j] for r in results], cfg)
            write_tally(fig, case_name(sc, cv, f"ruptures_{algorithm}_{label}"), params, sc, tally)


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
                **common_params(cfg, sc, cv, 0),
                "detector": "otava",
                "why": "no otava environment: run tools/otava_env.sh",
            }
            fig.value(
                case_name(sc, cv, "otava_default"),
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
            checks.append(check_at_of(sc))
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
            **common_params(cfg, sc, cv, len(mine)),
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
            tally = tally_of(sc, [r[j] for r in mine], cfg)
            write_tally(fig, case_name(sc, cv, f"otava_{label}"), params, sc, tally)
