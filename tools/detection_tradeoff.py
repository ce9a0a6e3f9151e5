"""The step threshold's trade-off: false alarms, 2σ/4σ step detection and spike rejection
of forgebench's history detection at several values of ``Z_STEP``, scored exactly as the
calibration benchmark scores them (docs/performance.md, "Step detection: the operating
point"). Histories of 300 runs with lognormal noise (CV 5%; the detection works on logs,
so the CV does not change these shares), the event at run 150.

    .venv/bin/python tools/detection_tradeoff.py --replicates 200 --z 2.7,2.8,2.9,3.0,3.1,3.3
    .venv/bin/python tools/detection_tradeoff.py --family 6 --z 3.0,3.1

``--family R``: instead, the share of runs in which any of 20 flat metrics judged together
reads "regression" (R replicates of 290 monitored runs, CV 5% and 10%).
"""

from __future__ import annotations

import argparse

import numpy as np

from forgebench.harness.calibration import histories, ours, synthetic
from forgebench.stats import detection

RUNS, ONSET, WARMUP, WITHIN, CV = 300, 150, 10, 5, 0.05


def tally(kind: str, size: float, replicates: int, seed: int) -> histories.Tally:
    rng = np.random.default_rng(seed)
    ys = synthetic.history(rng, replicates, RUNS, CV, kind, onset=ONSET, size_sigma=size)
    scenario = histories.Scenario(f"{kind}{size:g}", kind, size, ONSET)
    out = histories.Tally()
    for y in ys:
        alarms = ours.alarms(y, check_at=histories.check_at_of(scenario), cfg={}, threshold=0.05)
        histories.score(out, scenario, alarms, runs=RUNS, warmup=WARMUP, within=WITHIN)
    return out


def family_share(replicates: int, cv: float, metrics: int = 20) -> float:
    raised = monitored = 0
    for r in range(replicates):
        ys = synthetic.history(
            np.random.default_rng(1000 + r), metrics, RUNS, cv, "flat", onset=ONSET
        )
        flags = ours.family_regressions(ys, warmup=WARMUP, cfg={}, threshold=0.05, alpha=0.05)
        raised += int(flags[True].sum())
        monitored += RUNS - WARMUP
    return raised / monitored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--z", default="2.7,2.8,2.9,3.0,3.1,3.3")
    parser.add_argument("--family", type=int, default=0, metavar="R")
    args = parser.parse_args()
    if args.family:
        for z in (float(v) for v in args.z.split(",")):
            detection.Z_STEP = z
            shares = [f"CV {cv:g}: {family_share(args.family, cv):.1%}" for cv in (0.05, 0.1)]
            print(
                f"Z_STEP {z:g}: runs with any false regression among 20 flat metrics, "
                + ", ".join(shares)
            )
        return
    print(
        "| Z_STEP | FA per 100 runs (flat) | 2σ within 5 | 2σ median delay | 4σ within 5 "
        "| 5σ spikes rejected | 10σ spikes rejected |"
    )
    print("|---|---|---|---|---|---|---|")
    for z in (float(v) for v in args.z.split(",")):
        detection.Z_STEP = z
        n = args.replicates
        flat = tally("flat", 0.0, 2 * n, 11)
        d2 = np.asarray(tally("step", 2.0, n, 12).delays)
        d4 = np.asarray(tally("step", 4.0, n, 13).delays)
        s5, s10 = tally("spike", 5.0, n, 14), tally("spike", 10.0, n, 15)
        fa = 100.0 * flat.false_alarms / flat.monitored_runs
        print(
            f"| {z:g} | {fa:.3f} | {(d2 <= 5).mean():.1%} | {np.median(d2):g} "
            f"| {(d4 <= 5).mean():.1%} | {1 - s5.spikes_confirmed / s5.series:.1%} "
            f"| {1 - s10.spikes_confirmed / s10.series:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
