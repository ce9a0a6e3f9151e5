"""The soak length a memory-growth verdict needs, from measured RSS noise (sampler.soak_needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forgebench.record import Recorder
from forgebench.sampler import growth_rate, soak_needed
from forgebench.service.scenarios import add_soak_needed_row

MIB = 2**20


def _ar1(rng: np.random.Generator, n: int, sd: float, rho: float) -> np.ndarray:
    """Stationary AR(1) noise with marginal sd ``sd``."""
    e = rng.normal(0.0, sd * math.sqrt(1 - rho * rho), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def _points(noise_mb: np.ndarray, dt: float, slope_mb_per_h: float = 0.0) -> list:
    t = np.arange(noise_mb.size) * dt
    rss = 80.0 + slope_mb_per_h * t / 3600.0 + noise_mb
    return list(zip(t.tolist(), (rss * MIB).tolist(), strict=True))


@pytest.mark.parametrize("rho", [0.0, 0.7])
def test_needed_length_gives_the_promised_half_width(rho: float) -> None:
    """At the computed length the slope's real spread (over simulated soaks) matches the
    margin: z * sd(slope) = margin with power 0.5. Ignoring the autocorrelation would
    make the length too short by (1 + rho) / (1 - rho) ** (1/3), and this would fail."""
    rng = np.random.default_rng(7)
    dt, sd, margin = 1.0, 0.3, 1.0
    short = soak_needed(_points(_ar1(rng, 400, sd, rho), dt), margin, power=0.5)
    assert short is not None
    assert short.residual_sd_mb == pytest.approx(sd, rel=0.2)
    assert short.lag1_autocorr == pytest.approx(rho, abs=0.1)
    n = int(short.needed_s / dt)
    t = np.arange(n) * dt
    slopes = []
    for _ in range(300):
        y = _ar1(rng, n, sd, rho)
        slopes.append(np.polyfit(t, y, 1)[0] * 3600.0)
    half = 1.96 * float(np.std(slopes))
    assert half == pytest.approx(margin, rel=0.25)


def test_more_noise_or_smaller_margin_needs_longer() -> None:
    rng = np.random.default_rng(1)
    noise = _ar1(rng, 200, 0.2, 0.0)
    base = soak_needed(_points(noise, 0.25), 1.0)
    louder = soak_needed(_points(noise * 4, 0.25), 1.0)
    finer = soak_needed(_points(noise, 0.25), 0.25)
    assert base and louder and finer
    # T scales as (sd / margin) ** (2/3)
    assert louder.needed_s == pytest.approx(base.needed_s * 4 ** (2 / 3), rel=1e-6)
    assert finer.needed_s == pytest.approx(base.needed_s * 4 ** (2 / 3), rel=1e-6)
    # a trend is fitted away: it does not count as noise
    trended = soak_needed(_points(noise, 0.25, slope_mb_per_h=500.0), 1.0)
    assert trended and trended.needed_s == pytest.approx(base.needed_s, rel=1e-6)


def test_too_few_points_and_flat_series() -> None:
    assert soak_needed([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)], 1.0) is None
    flat = soak_needed([(float(i), 5.0 * MIB) for i in range(10)], 1.0)
    assert flat is not None and flat.needed_s == 0.0


def test_row_takes_the_heap_arena_floor_and_says_which_ruled() -> None:
    rng = np.random.default_rng(3)
    rec = Recorder("service", "load_scenarios", 1)
    pts = _points(_ar1(rng, 40, 0.25, 0.5), 0.25)
    needed = add_soak_needed_row(
        rec, {"scenario": "endurance"}, pts, {"growth_granularity_mb": 1.0}
    )
    frame = rec.frame()
    row = frame[frame.metric == "soak_needed_s"].iloc[0]
    assert needed == row.value == 3600.0  # one 1 MiB arena at 1 MB/hour
    assert '"ruled_by":"heap arena"' in row.params
    loud = _points(_ar1(rng, 40, 50.0, 0.5), 0.25)
    needed = add_soak_needed_row(rec, {}, loud, {"growth_granularity_mb": 1.0})
    assert needed > 3600.0
    assert '"ruled_by":"noise"' in rec.frame().params.iloc[-1]
    assert math.isnan(add_soak_needed_row(rec, {}, pts[:3], {"growth_granularity_mb": 1.0}))


def test_growth_interval_covers_under_autocorrelated_noise() -> None:
    """The sampler's growth CI must hold its 95% on RSS-like (autocorrelated) noise; an
    iid interval (the slope SE without the AR(1) inflation) covers about half as often."""
    rng = np.random.default_rng(11)
    covered = 0
    trials = 200
    for _ in range(trials):
        pts = _points(_ar1(rng, 240, 0.5, 0.8), 0.25, slope_mb_per_h=100.0)
        _, (low, high) = growth_rate(pts)
        covered += low <= 100.0 <= high
    assert covered / trials >= 0.88
