"""Slowdown of a CPU-bound pure-Python workload under the resource sampler.

Why this shape: every benchmark runs under ``forgebench.sampler.ResourceSampler``, whose
thread shares the process (and its GIL) with the code being measured, so its cost is paid
by every result. The worst case for a same-process sampler is a CPU-bound pure-Python
workload, and that is what is timed here, from outside (``perf_counter`` around the
workload only; starting and stopping the sampler are not part of the slowdown).

Choices worth knowing when reading the results:

* The workload is a fixed number of xorshift steps on small integers: no allocation to
  speak of, no I/O, and a result that must be identical in every run (else ``mismatch``).
* Rounds are interleaved: each round runs both cases, in an order drawn from the seed, so
  drift of the machine (frequency, neighbours) falls on both cases alike.
  ``warmup_rounds`` rounds come first and are kept, flagged ``warmup``;
  ``repetition`` counts all rounds, warm-up ones included.
* Both cases carry the same params (the sampler's ``interval_s`` and the iterations), so
  they pair up as baseline and candidate of one comparison.
* Under the workflow the whole benchmark already runs under the runner's sampler, so the
  figure is the cost of one more sampler at ``interval_s``: the same thing.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forgebench.record import Recorder, status_for, utcnow
from forgebench.sampler import ResourceSampler

BENCHMARK_VERSION = 1
SUITE = "harness"
NAME = "sampler_overhead"
CASES = ("without_sampler", "with_sampler")

log = logging.getLogger(__name__)


def workload(iterations: int) -> int:
    """A deterministic CPU-bound loop (32-bit xorshift, summed); the same result every run."""
    x = 2463534242
    acc = 0
    for _ in range(iterations):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        acc = (acc + x) & 0xFFFFFFFF
    return acc


def _timed(case: str, iterations: int, interval_s: float) -> tuple[float, int]:
    """Wall time of the workload alone, with or without a sampler running around it."""
    if case == "with_sampler":
        with ResourceSampler(interval_s=interval_s):
            t0 = time.perf_counter()
            result = workload(iterations)
            elapsed = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        result = workload(iterations)
        elapsed = time.perf_counter() - t0
    return elapsed, result


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Time the workload without and with the sampler, interleaved, in random order per round.

    cfg keys: ``interval_s`` (0.1), ``rounds`` (15), ``warmup_rounds`` (2),
    ``workload_iterations`` (2 000 000).
    """
    interval_s = float(cfg.get("interval_s", 0.1))
    rounds = int(cfg.get("rounds", 15))
    warmup_rounds = int(cfg.get("warmup_rounds", 2))
    iterations = int(cfg.get("workload_iterations", 2_000_000))
    params = {"interval_s": interval_s, "workload_iterations": iterations}
    rng = random.Random(seed)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    expected: int | None = None
    for rnd in range(warmup_rounds + rounds):
        order = list(CASES)
        rng.shuffle(order)
        for case in order:
            started = utcnow()
            try:
                elapsed, result = _timed(case, iterations, interval_s)
            except Exception as exc:
                log.warning("%s round %d failed: %r", case, rnd, exc)
                value, status = float("nan"), status_for(exc)
            else:
                if expected is None:
                    expected = result
                value = elapsed
                status = "ok" if result == expected else "mismatch"
            rec.add(
                case,
                params,
                "workload_time",
                "s",
                False,
                value,
                repetition=rnd,
                sample=0,
                warmup=rnd < warmup_rounds,
                status=status,
                started_at=started,
            )
    return rec.frame()
