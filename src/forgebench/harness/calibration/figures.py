"""Figures as rows, and one seed per scenario.

Every figure is one row (case = the scenario, params = its settings). A proportion also
gets ``<metric>_ci_low`` / ``<metric>_ci_high`` rows from Clopper-Pearson, which is how
forgebench's value targets read an interval, so a target such as "A/A false-call rate at
most 2.5%" is met only when the interval says so, whatever the trial count.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from forgebench import stats
from forgebench.record import Recorder
from forgebench.stats.intervals import censored_quantile


def scenario_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator that depends on the run seed and the scenario's name only.

    Why: a scenario's draws stay the same when the grid around it changes (the default
    run and config/full.yaml share the cases they have in common, trial for trial).
    """
    key = zlib.crc32("|".join(map(str, parts)).encode())
    return np.random.default_rng(np.random.SeedSequence(entropy=int(seed), spawn_key=(key,)))


def scenario_seed(seed: int, *parts: object) -> int:
    """An integer seed for functions that take one (the bootstrap inside a comparison)."""
    return int(scenario_rng(seed, "int-seed", *parts).integers(0, 2**31 - 1))


class Figures:
    """Writes figures into a :class:`Recorder`; proportions carry their interval."""

    def __init__(self, rec: Recorder, confidence: float = 0.95) -> None:
        self.rec = rec
        self.confidence = confidence

    def value(
        self,
        case: str,
        params: Mapping[str, Any],
        metric: str,
        unit: str,
        higher_is_better: bool,
        value: float | None,
        *,
        status: str = "ok",
    ) -> None:
        """One figure; a missing or non-finite value is written as ``skipped`` (by design)."""
        if value is None or not math.isfinite(value):
            value, status = math.nan, status if status != "ok" else "skipped"
        self.rec.add(case, params, metric, unit, higher_is_better, value, status=status)

    def share(
        self,
        case: str,
        params: Mapping[str, Any],
        metric: str,
        k: int,
        n: int,
        *,
        higher_is_better: bool,
    ) -> None:
        """``k / n`` with its Clopper-Pearson interval; no trials gives three skipped rows."""
        if n <= 0:
            for suffix in ("", "_ci_low", "_ci_high"):
                self.value(case, params, metric + suffix, "fraction", higher_is_better, None)
            return
        low, high = stats.proportion_ci(int(k), int(n), self.confidence)
        self.value(case, params, metric, "fraction", higher_is_better, k / n)
        self.value(case, params, metric + "_ci_low", "fraction", higher_is_better, low)
        self.value(case, params, metric + "_ci_high", "fraction", higher_is_better, high)

    def censored_quantiles(
        self,
        case: str,
        params: Mapping[str, Any],
        values: Sequence[float] | np.ndarray,
        quantiles: Mapping[str, float],
        unit: str,
        *,
        higher_is_better: bool = False,
    ) -> None:
        """Quantiles of values where +inf means "never happened within the series".

        A quantile that falls on a never is not a number: its row is ``censored``.
        """
        x = np.asarray(values, dtype=float)
        for metric, q in quantiles.items():
            if x.size == 0:
                self.value(case, params, metric, unit, higher_is_better, None)
                continue
            v = _quantile_with_never(x, q)
            if math.isinf(v):
                self.value(case, params, metric, unit, higher_is_better, None, status="censored")
            else:
                self.value(case, params, metric, unit, higher_is_better, v)


def _quantile_with_never(x: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile where +inf ("never") sorts last; inf if it reaches one."""
    never = np.isinf(x)
    return censored_quantile(np.where(never, 0.0, x), never, q)
