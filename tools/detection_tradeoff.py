"""The step threshold's trade-off: false alarms, 2σ/4σ step detection and spike rejection
of forgebench's history detection at several values of ``Z_STEP``, scored exactly as the
calibration benchmark scores them (docs/performance.md, "Step detection: the operating
point"). Histories of 300 runs with lognormal noise (CV 5%; the detection works on logs,
so the CV does not change these shares), the event at run 150.

    .venv/bin/python tools/detection_tradeoff.py --replicates 200 --z 2.7,2.8,2.9,3.0,3.1,3.3
    .venv/bin/python tools/detection_tradeoff.py --family 6 --z 3.0,3.1

``--family R``: instead, the share of runs in which any of 20 flat metrics judged together
reads "regression" (R replicates of 290 monitored runs, CV 5% and 10%).

``--bounds N``: instead, what detectors that know more than ours reach on N normal series
(sigma known, no spikes, no outlier handling): the window scan over starts with at least
3 runs against a before-window of B runs, and a one-sided CUSUM per direction with
reference 1 sigma whose excursion must have lasted 3 runs (the confirmation). False alarms
here are alarm episodes per 100 runs (a scan alarm lasting several runs counts once).

    .venv/bin/python tools/detection_tradeoff.py --bounds 2000
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


def _scan_alarms(x: np.ndarray, z_step: float, before: int) -> np.ndarray:
    """Per series and run: the best window z over starts with 3-10 runs exceeds z_step."""
    n, runs = x.shape
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(x, axis=1)], axis=1)
    out = np.zeros((n, runs), bool)
    for t in range(WARMUP + 2, runs):
        best = np.zeros(n)
        for c in range(max(3, t - 9), t - 1):
            k, b0 = t + 1 - c, max(0, c - before)
            level = (cs[:, c] - cs[:, b0]) / (c - b0)
            z = (cs[:, t + 1] - cs[:, c]) / k - level
            best = np.maximum(best, np.abs(z) / np.sqrt(1 / k + 1 / (c - b0)))
        out[:, t] = best > z_step
    return out


def _cusum_alarms(x: np.ndarray, h: float, k: float = 1.0) -> np.ndarray:
    """Per series and run: a one-sided CUSUM (either direction) past h after >= 3 runs."""
    n, runs = x.shape
    up, down = np.zeros(n), np.zeros(n)
    up_len, down_len = np.zeros(n, int), np.zeros(n, int)
    out = np.zeros((n, runs), bool)
    for t in range(runs):
        up, down = np.maximum(0, up + x[:, t] - k), np.maximum(0, down - x[:, t] - k)
        up_len, down_len = np.where(up > 0, up_len + 1, 0), np.where(down > 0, down_len + 1, 0)
        hit = ((up > h) & (up_len >= 3)) | ((down > h) & (down_len >= 3))
        out[:, t] = hit & (t >= WARMUP)
        up[hit], down[hit], up_len[hit], down_len[hit] = 0, 0, 0, 0
    return out


def bounds(n: int) -> None:
    """The bound table of ``--bounds`` (seeds 21 and 22, apart from the others)."""
    flat = np.random.default_rng(21).standard_normal((n, RUNS))
    step = np.random.default_rng(22).standard_normal((n, RUNS))
    step[:, ONSET:] += 2.0

    def row(name: str, f: np.ndarray, s: np.ndarray) -> None:
        fa = 100.0 * (f[:, 1:] & ~f[:, :-1]).sum() / (n * (RUNS - WARMUP))
        post = s[:, ONSET : ONSET + 30]
        delay = np.where(post.any(axis=1), post.argmax(axis=1) + 1, np.inf)
        print(f"| {name} | {fa:.3f} | {(delay <= WITHIN).mean():.1%} | {np.median(delay):g} |")

    print(
        "| detector (σ known, no spikes) | FA episodes per 100 runs | 2σ within 5 | median delay |"
    )
    print("|---|---|---|---|")
    for before in (30, 100):
        for z in (3.0, 3.1, 3.2):
            row(
                f"scan, B={before}, z {z:g}",
                _scan_alarms(flat, z, before),
                _scan_alarms(step, z, before),
            )
    for h in (2.0, 2.25, 2.5):
        row(f"CUSUM k=1, h={h:g}", _cusum_alarms(flat, h), _cusum_alarms(step, h))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--z", default="2.7,2.8,2.9,3.0,3.1,3.3")
    parser.add_argument("--family", type=int, default=0, metavar="R")
    parser.add_argument("--bounds", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.bounds:
        bounds(args.bounds)
        return
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
