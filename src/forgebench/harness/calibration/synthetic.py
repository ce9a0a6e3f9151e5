"""Seeded synthetic samples and run histories whose truth is known by construction.

Why these shapes: they are the ways real timings break the textbook assumptions the
verdicts must survive. Every sample is a positive time (lower is better) around 1.0; a
true effect ``e`` multiplies the whole candidate distribution by ``1 + e`` before any
rounding, so the ratio the comparison estimates is exactly ``1 + e`` (a pure scale
change: the Hodges-Lehmann shift of the logs and the difference of repetition medians
both estimate ``log(1 + e)``).

* ``iid_lognormal``: ``exp(sigma * Z)``, sigma of the log 0.1;
* ``bimodal``: 30% of the values in a second mode 30% slower (a cache hit/miss split);
* ``heavy_tailed``: Student-t(3) on the log scale with the same sigma, and 5% outliers
  1.6-4.5x slower (a neighbour stealing the core);
* ``ties``: the lognormal read off a coarse timer (``timer_resolution``), so values repeat;
* ``repetitions``: ``k`` repetitions a side of ``per_repetition`` values, each repetition
  shifted by its own run-level effect (sigma ``run_sigma``): the values of one repetition
  are not independent, and only the repetitions count as units.

Histories are one value per run (a run's median) with lognormal noise of CV ``cv`` and one
event at a known run: a single-run spike, a step, or a slow drift.
"""

from __future__ import annotations

import math

import numpy as np

DISTRIBUTIONS = ("iid_lognormal", "bimodal", "heavy_tailed", "ties")
HISTORY_KINDS = ("flat", "spike", "step", "drift")


def base_log_values(
    rng: np.random.Generator, kind: str, shape: tuple[int, ...], sigma: float
) -> np.ndarray:
    """Log values of the reference distribution ``kind`` (before any timer rounding)."""
    if kind in ("iid_lognormal", "ties"):
        return sigma * rng.standard_normal(shape)
    if kind == "bimodal":
        return sigma * rng.standard_normal(shape) + math.log(1.3) * (rng.random(shape) < 0.3)
    if kind == "heavy_tailed":
        logs = sigma * rng.standard_t(3, shape) / math.sqrt(3.0)
        outlier = rng.random(shape) < 0.05
        return logs + outlier * rng.uniform(math.log(1.6), math.log(4.5), shape)
    raise ValueError(f"unknown distribution {kind!r}; known: {', '.join(DISTRIBUTIONS)}")


def two_samples(
    rng: np.random.Generator,
    kind: str,
    trials: int,
    n: int,
    effect: float,
    *,
    sigma: float,
    timer_resolution: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``(baseline, candidate)``, each ``(trials, n)``; the candidate ``1 + effect`` slower."""
    base = np.exp(base_log_values(rng, kind, (trials, n), sigma))
    cand = np.exp(base_log_values(rng, kind, (trials, n), sigma)) * (1.0 + effect)
    if kind == "ties":
        base, cand = _on_timer(base, timer_resolution), _on_timer(cand, timer_resolution)
    return base, cand


def _on_timer(values: np.ndarray, resolution: float) -> np.ndarray:
    """Values as a timer of ``resolution`` reads them (never below one tick)."""
    return np.maximum(np.round(values / resolution), 1.0) * resolution


def repeated_samples(
    rng: np.random.Generator,
    trials: int,
    repetitions: int,
    per_repetition: int,
    effect: float,
    *,
    sigma: float,
    run_sigma: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(baseline, candidate, labels)``: ``(trials, k * m)`` values and their repetition
    labels ``0..k-1`` (one per value, as the record's ``repetition`` column has them)."""
    shape = (trials, repetitions, per_repetition)

    def side() -> np.ndarray:
        run_level = run_sigma * rng.standard_normal((trials, repetitions, 1))
        return np.exp(run_level + sigma * rng.standard_normal(shape)).reshape(trials, -1)

    base, cand = side(), side() * (1.0 + effect)
    labels = np.repeat(np.arange(repetitions), per_repetition)
    return base, cand, labels


def history(
    rng: np.random.Generator,
    replicates: int,
    runs: int,
    cv: float,
    kind: str,
    *,
    onset: int,
    size_sigma: float = 0.0,
    drift_per_run: float = 0.0,
) -> np.ndarray:
    """``(replicates, runs)`` run values around 1.0 with one event starting at run ``onset``.

    ``spike`` and ``step`` are ``size_sigma`` noise sigmas up (slower), the spike for one
    run only; ``drift`` grows by ``drift_per_run`` per run from ``onset`` on (compounded).
    """
    logs = cv * rng.standard_normal((replicates, runs))
    t = np.arange(runs)
    if kind == "spike":
        logs[:, onset] += size_sigma * cv
    elif kind == "step":
        logs[:, onset:] += size_sigma * cv
    elif kind == "drift":
        logs += np.where(t >= onset, (t - onset + 1) * math.log1p(drift_per_run), 0.0)
    elif kind != "flat":
        raise ValueError(f"unknown history {kind!r}; known: {', '.join(HISTORY_KINDS)}")
    return np.exp(logs)
