"""Part 4: established change-point detectors on the same histories, as anchors.

Why: "one false alarm per 100 runs and a median delay of 3 runs" means little alone; the
same figures for tools people already use say whether forgebench's detection is worth its
rules. Each anchor sees the history grow a run at a time, as a CI job running it after
every run would, and every change point it reports is an alarm, raised when it was first
reported (:class:`Alarms`).

* ``ruptures`` (Truong et al. 2020): binary segmentation (``Binseg``) or ``Pelt`` with the
  l2 cost at the library's constructor defaults (``min_size=2``, ``jump=5``). ruptures has no
  default penalty; its documented choice for the l2 cost is the BIC penalty
  ``2 * sigma^2 * ln(n)`` (Yao 1988), with sigma estimated from the run-to-run differences
  (MAD, so a step does not inflate it). Tuned: the smallest multiple of that penalty on
  ``penalty_factors`` whose false alarms on flat tuning series (seeds apart from the
  evaluation's) do not exceed forgebench's.
* ``otava`` (Apache Otava 0.8.0, E-divisive means with Hunter's windowed split/merge,
  Fleming et al. 2023) at its documented defaults (window 50, max p-value 0.001,
  magnitude 0) and tuned the same way on ``max_pvalues``. It runs in its own environment
  (``tools/otava_env.sh``) as ``otava_runner.py`` with the series as JSON on stdin.

Locations are kept: an alarm whose index lies near the true change is a detection, any
other a false alarm (``histories.score``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RUNNER = Path(__file__).with_name("otava_runner.py")
#: Where tools/otava_env.sh puts the environment, relative to the repository root.
OTAVA_ENV = Path(".venv") / "otava"
OTAVA_DEFAULTS = {"window_len": 50, "max_pvalue": 0.001, "min_magnitude": 0.0}


@dataclass(frozen=True)
class Alarms:
    """One series' alarms: ``(index of the change, runs seen when first reported)`` for
    every index ever reported, ordered by the second, and the change indices reported at
    the spike check (the spike plus the next two runs), or None where the series has no
    spike. The same change located again a few runs off is merged when scored."""

    events: tuple[tuple[int, int], ...]
    at_check: tuple[int, ...] | None = None


def reports(first_seen: Mapping[int, int]) -> tuple[tuple[int, int], ...]:
    """``{index: first seen}`` as alarms ordered by when they were raised."""
    return tuple(
        (int(i), int(t)) for i, t in sorted(first_seen.items(), key=lambda kv: (kv[1], kv[0]))
    )


def robust_sigma(y: np.ndarray) -> float:
    """Noise sigma from run-to-run differences (MAD, normal-consistent): steps barely move it."""
    d = np.diff(y)
    s = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2.0)
    return s if s > 0 else float(np.std(y)) or 1e-12


def eval_times(runs: int, start: int, dense: Sequence[tuple[int, int]], stride: int) -> list[int]:
    """Lengths at which an offline detector is rerun: every ``stride`` runs, and every run
    inside the ``dense`` windows (after an event, where the delay is measured)."""
    times = set(range(start, runs + 1, max(1, stride))) | {runs}
    for lo, hi in dense:
        times |= set(range(max(start, lo), min(runs, hi) + 1))
    return sorted(times)


def ruptures_alarms(
    y: np.ndarray,
    factors: Sequence[float],
    *,
    algorithm: str,
    times: Sequence[int],
    check_at: int | None,
    within: int,
) -> list[Alarms]:
    """ruptures rerun on each prefix length in ``times``, one :class:`Alarms` per penalty
    factor (a multiple of the BIC penalty); one fit per prefix serves every factor."""
    import ruptures as rpt

    cls = {"binseg": rpt.Binseg, "pelt": rpt.Pelt}[algorithm]
    seen: list[dict[int, int]] = [{} for _ in factors]
    checks: list[tuple[int, ...] | None] = [None for _ in factors]
    for t in times:
        prefix = y[:t]
        algo = cls(model="l2").fit(prefix)
        bic = 2.0 * robust_sigma(prefix) ** 2 * math.log(t)
        for j, f in enumerate(factors):
            bkps = algo.predict(pen=f * bic)[:-1]
            for b in bkps:
                seen[j].setdefault(int(b), t)
            if t == check_at:
                checks[j] = tuple(int(b) for b in bkps)
    return [
        Alarms(reports(s), c if check_at is not None else None)
        for s, c in zip(seen, checks, strict=True)
    ]


def otava_python(cfg: Mapping[str, Any]) -> Path | None:
    """The otava environment's interpreter: ``FORGEBENCH_OTAVA_PYTHON``, ``cfg["python"]``, or
    ``.venv/otava`` under the repository; None when it does not exist."""
    explicit = os.environ.get("FORGEBENCH_OTAVA_PYTHON") or cfg.get("python")
    if explicit:
        path = Path(explicit)
    else:
        repo = Path(__file__).resolve().parents[4]
        path = repo / OTAVA_ENV / "bin" / "python"
    return path if path.exists() else None


def otava_alarms(
    python: Path,
    series: Sequence[np.ndarray],
    settings: Sequence[Mapping[str, Any]],
    *,
    start: int,
    check_at: Sequence[int | None],
    within: int,
    timeout_s: float,
    workers: int = 1,
) -> tuple[list[list[Alarms]], str]:
    """Otava over every series and setting: ``(alarms[series][setting], otava's version)``.

    The series are split over ``workers`` runner processes (Otava is pure Python and
    single-threaded). Raises on a failed or timed-out runner.
    """
    chunks = [list(range(i, len(series), max(1, workers))) for i in range(max(1, workers))]
    chunks = [c for c in chunks if c]

    def one(chunk: list[int]) -> dict[str, Any]:
        request = {
            "series": [np.asarray(series[i], dtype=float).tolist() for i in chunk],
            "settings": [dict(s) for s in settings],
            "start": int(start),
            "check_at": [check_at[i] for i in chunk],
        }
        proc = subprocess.run(
            [str(python), str(RUNNER)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise RuntimeError(f"otava runner exited {proc.returncode}: {proc.stderr[-500:]}")
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        replies = list(pool.map(one, chunks))
    out: list[list[Alarms]] = [[] for _ in series]
    for chunk, reply in zip(chunks, replies, strict=True):
        for i, per_series in zip(chunk, reply["results"], strict=True):
            for res in per_series:
                first = {int(k): int(t) for k, t in res["first"]}
                at = tuple(int(k) for k in res["at_check"]) if check_at[i] is not None else None
                out[i].append(Alarms(reports(first), at))
    return out, str(replies[0]["otava"]) if replies else ""
