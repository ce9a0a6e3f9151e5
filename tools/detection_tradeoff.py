"""The step threshold's trade-off: false alarms, 2σ/4σ step detection and spike rejection
of forgebench's history detection at several values of ``CUSUM_H``, scored exactly as the
calibration benchmark scores them (docs/performance.md, "Step detection: the operating
point"). Histories of 300 runs with lognormal noise (CV 5%; the detection works on logs,
so the CV does not change these shares), the event at run 150.

    .venv/bin/python tools/detection_tradeoff.py --replicates 200 --h 2.0,2.25,2.5,2.75
    .venv/bin/python tools/detection_tradeoff.py --family 6 --h 2.0,2.25

``--family R``: instead, the share of runs in which any of 20 flat metrics judged together
reads "regression" (R replicates of 290 monitored runs, CV 5% and 10%).

``--bounds N``: instead, what detectors that know more than ours reach on N normal series
(sigma known, no spikes, no outlier handling), scored as the benchmark scores ours: a z
scan over starts with 3-10 runs after them against up to 100 runs since its last alarm,
and Page's CUSUM per direction with reference 1 sigma whose excursion must have lasted 3
runs (the confirmation), located where the excursion began.

    .venv/bin/python tools/detection_tradeoff.py --bounds 2000

``--estimated SEEDS``: instead, the same recursive CUSUM knowing nothing (sigma the
series' own, the level the mean of the runs since the last alarm was confirmed), with no
outlier handling and no drift test, on the calibration grid's own series (those seeds,
200 per shape, CV 5% and 10%): how far a plain detector that estimates what the benchmark
says it must estimate gets, before it rejects a spike.

    .venv/bin/python tools/detection_tradeoff.py --estimated 1,2,3 --h 2.0,2.25,2.5
    .venv/bin/python tools/detection_tradeoff.py --estimated 1,2,3 --h 2.0,2.25 --clip 3

``--clip C``: with ``--estimated``, no run counts more than C sigma (``inf`` by default).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from forgebench.harness import statistics_calibration
from forgebench.harness.calibration import histories, ours, synthetic
from forgebench.harness.calibration.anchors import Alarms
from forgebench.stats import detection

RUNS, ONSET, WARMUP, WITHIN, CV = 300, 150, 10, 5, 0.05
#: How histories.tally_of scores alarms (the calibration benchmark's settings).
SCORING = {"runs": RUNS, "warmup_runs": WARMUP, "match_within": WITHIN}


def tally(kind: str, size: float, replicates: int, seed: int) -> histories.Tally:
    rng = np.random.default_rng(seed)
    ys = synthetic.history(rng, replicates, RUNS, CV, kind, onset=ONSET, size_sigma=size)
    scenario = histories.Scenario(f"{kind}{size:g}", kind, size, ONSET)
    check_at = histories.check_at_of(scenario)
    alarms = [ours.alarms(y, check_at=check_at, cfg={}, threshold=0.05) for y in ys]
    return histories.tally_of(scenario, alarms, SCORING)


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


def _scan_events(x: np.ndarray, z_step: float, before: int = 100) -> list[tuple[int, int]]:
    """A z scan over starts with 3-10 runs after them against up to ``before`` runs since
    the last alarm: ``(located start, runs seen)`` per alarm; the level restarts there."""
    events, seg = [], 0
    cs = np.concatenate([[0.0], np.cumsum(x)])
    for t in range(WARMUP, x.size):
        best, start = 0.0, -1
        for k in range(3, 11):
            c = t + 1 - k
            if c - seg < 3:
                continue
            b0 = max(seg, c - before)
            gap = (cs[t + 1] - cs[c]) / k - (cs[c] - cs[b0]) / (c - b0)
            z = abs(gap) / np.sqrt(1 / k + 1 / (c - b0))
            if z > best:
                best, start = z, c
        if best > z_step:
            events.append((start, t + 1))
            seg = start
    return events


def _cusum_events(
    x: np.ndarray,
    h: float,
    k: float = 1.0,
    *,
    scale: np.ndarray | None = None,
    clip: float = np.inf,
) -> list[tuple[int, int]]:
    """Page's two one-sided CUSUMs (reference k sigma) alarming past h once the excursion
    has lasted 3 runs, located where the excursion began; both restart after an alarm.

    ``scale=None``: ``x`` is in sigma units around a level of 0, both known. Otherwise
    ``scale`` is sigma as estimated up to each run (``detection._scales``), and the level
    is the mean of up to ``detection.BEFORE_WINDOW`` runs since the run that confirmed the
    last alarm (the runs before it were picked for being off), frozen while an excursion
    lasts; each run's distance from it is scaled by that mean's own error too. No run is
    tested before 3 such runs exist. ``clip``: no run counts more than that many sigma
    (the plainest outlier rule)."""
    events: list[tuple[int, int]] = []
    cx = np.concatenate([[0.0], np.cumsum(x)])
    up = down = 0.0
    up_from = down_from = seg = 0
    up_level = down_level = 0.0
    for t in range(x.size):
        if scale is not None:
            if t - seg < 3 or not np.isfinite(scale[t]):
                continue
            b0 = max(seg, t - detection.BEFORE_WINDOW)
            level = (cx[t] - cx[b0]) / (t - b0)
            unit = scale[t] * np.sqrt(1.0 + 1.0 / (t - b0))
        else:
            level, unit = 0.0, 1.0
        ref_up = up_level if up > 0.0 else level
        ref_down = down_level if down > 0.0 else level
        new_up = max(0.0, up + min((x[t] - ref_up) / unit, clip) - k)
        new_down = max(0.0, down + min((ref_down - x[t]) / unit, clip) - k)
        if up == 0.0 and new_up > 0.0:
            up_from, up_level = t, level
        if down == 0.0 and new_down > 0.0:
            down_from, down_level = t, level
        up, down = new_up, new_down
        hit_up = up > h and t - up_from >= 2
        hit_down = down > h and t - down_from >= 2
        if (hit_up or hit_down) and t >= WARMUP:
            events.append((up_from if hit_up else down_from, t + 1))
            up = down = 0.0
            seg = t + 1
    return events


def _estimated_cells(
    cfg: dict, seed: int, cv: float, settings: list[tuple[float, float]]
) -> dict[tuple[float, float], tuple[str, str, str, str]]:
    """One seed's figures for ``--estimated`` per ``(clip, h)``: FA per 100 runs, 2σ within
    5, its median delay, 5σ spikes rejected. Each series' sigma is estimated once."""
    shapes = {s.label: s for s in histories.scenarios(cfg)}
    tallies: dict[tuple[float, float], dict[str, histories.Tally]] = {s: {} for s in settings}
    for label in ("flat", "step2sigma", "spike5sigma"):
        shape = shapes[label]
        check = histories.check_at_of(shape)
        ys = np.log(histories.series(seed, cfg, shape, cv, 200))
        scales = [detection._scales(y, None)[1] for y in ys]
        for clip, h in settings:
            alarms = []
            for y, scale in zip(ys, scales, strict=True):
                ev = tuple(_cusum_events(y, h, scale=scale, clip=clip))
                at_check = None if check is None else tuple(i for i, n in ev if n <= check)
                alarms.append(Alarms(ev, at_check))
            tallies[clip, h][label] = histories.tally_of(shape, alarms, cfg)
    cells = {}
    for key, tally in tallies.items():
        flat, spike = tally["flat"], tally["spike5sigma"]
        delays = np.asarray(tally["step2sigma"].delays)
        cells[key] = (
            f"{100.0 * flat.false_alarms / flat.monitored_runs:.2f}",
            f"{(delays <= 5).mean():.1%}",
            f"{np.median(delays):g}",
            f"{1 - spike.spikes_confirmed / spike.series:.1%}",
        )
    return cells


def estimated(seeds: list[int], hs: list[float], clips: list[float]) -> None:
    """The table of ``--estimated``: the recursive CUSUM knowing nothing, on the grid's own
    series (200 per shape and seed), scored as the benchmark scores ours."""
    cfg = statistics_calibration.settings({"histories": {"replicates": 200}})["histories"]
    settings = [(clip, h) for clip in clips for h in hs]
    cells = {
        (seed, cv): _estimated_cells(cfg, seed, cv, settings)
        for cv in (0.05, 0.1)
        for seed in seeds
    }
    print(
        "| runs clipped at | CUSUM h | CV | FA per 100 runs (flat) | 2σ within 5 "
        "| 2σ median delay | 5σ spikes rejected |"
    )
    print("|---|---|---|---|---|---|---|")
    for clip, h in settings:
        for cv in (0.05, 0.1):
            per_seed = [cells[seed, cv][clip, h] for seed in seeds]
            figures = " | ".join(" / ".join(col) for col in zip(*per_seed, strict=True))
            shown = "—" if np.isinf(clip) else f"{clip:g}σ"
            print(f"| {shown} | {h:g} | {cv:.0%} | {figures} |")


def bounds(n: int) -> None:
    """The bound table of ``--bounds``: detectors that know sigma and see no spike, scored
    as the calibration benchmark scores ours (seeds 21 and 22, apart from the others)."""
    flat = np.random.default_rng(21).standard_normal((n, RUNS))
    step = np.random.default_rng(22).standard_normal((n, RUNS))
    step[:, ONSET:] += 2.0

    def row(name: str, detector: Callable[[np.ndarray], list[tuple[int, int]]]) -> None:
        tallies = [
            histories.tally_of(
                histories.Scenario(kind, kind, 2.0, ONSET),
                [Alarms(tuple(detector(x))) for x in series],
                SCORING,
            )
            for kind, series in (("flat", flat), ("step", step))
        ]
        fa = 100.0 * tallies[0].false_alarms / tallies[0].monitored_runs
        delays = np.asarray(tallies[1].delays)
        print(
            f"| {name} | {fa:.3f} | {(delays <= 5).mean():.1%} | {np.median(delays):g} |",
            flush=True,
        )

    print("| detector (σ known, no spikes) | FA per 100 runs | 2σ within 5 | median delay |")
    print("|---|---|---|---|")
    for z in (3.0, 3.1, 3.3):
        row(f"z scan over starts, B = 100, z {z:g}", lambda x, z=z: _scan_events(x, z))
    for h in (2.0, 2.25, 2.5):
        row(f"CUSUM k = 1σ, h = {h:g}, ≥ 3 runs", lambda x, h=h: _cusum_events(x, h))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--h", default="2.0,2.25,2.5,2.75")
    parser.add_argument("--family", type=int, default=0, metavar="R")
    parser.add_argument("--bounds", type=int, default=0, metavar="N")
    parser.add_argument("--estimated", default="", metavar="SEEDS")
    parser.add_argument("--clip", default="inf", help="--estimated: clip runs at (sigma)")
    args = parser.parse_args()
    if args.estimated:
        seeds = [int(v) for v in args.estimated.split(",")]
        clips = [float(v) for v in args.clip.split(",")]
        estimated(seeds, [float(v) for v in args.h.split(",")], clips)
        return
    if args.bounds:
        bounds(args.bounds)
        return
    if args.family:
        for h in (float(v) for v in args.h.split(",")):
            detection.CUSUM_H = h
            shares = [f"CV {cv:g}: {family_share(args.family, cv):.1%}" for cv in (0.05, 0.1)]
            print(
                f"CUSUM_H {h:g}: runs with any false regression among 20 flat metrics, "
                + ", ".join(shares)
            )
        return
    print(
        "| CUSUM_H | FA per 100 runs (flat) | 2σ within 5 | 2σ median delay | 4σ within 5 "
        "| 5σ spikes rejected | 10σ spikes rejected |"
    )
    print("|---|---|---|---|---|---|---|")
    for h in (float(v) for v in args.h.split(",")):
        detection.CUSUM_H = h
        n = args.replicates
        flat = tally("flat", 0.0, 2 * n, 11)
        d2 = np.asarray(tally("step", 2.0, n, 12).delays)
        d4 = np.asarray(tally("step", 4.0, n, 13).delays)
        s5, s10 = tally("spike", 5.0, n, 14), tally("spike", 10.0, n, 15)
        fa = 100.0 * flat.false_alarms / flat.monitored_runs
        print(
            f"| {h:g} | {fa:.3f} | {(d2 <= 5).mean():.1%} | {np.median(d2):g} "
            f"| {(d4 <= 5).mean():.1%} | {1 - s5.spikes_confirmed / s5.series:.1%} "
            f"| {1 - s10.spikes_confirmed / s10.series:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
