"""Merge genomes and the genetic operators over them.

A genome says how to merge the fixed seed models into one: the merge method and its
parameters (a weight per seed, TIES/DARE density, the SLERP pair and t). Evolution
searches that space, as mergekit-evolve and Sakana's evolutionary model merge do; every
individual is a merge of the same seeds, so no merge depends on an earlier merge's
weights, only on the earlier generation's fitness through selection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

METHODS = ("linear", "slerp", "ties", "dare_ties")
DENSITY_RANGE = (0.1, 1.0)
MUTATION_SCALE = 0.2  # standard deviation of a mutated weight, t or density


@dataclass(frozen=True)
class Genome:
    """One individual's merge recipe over ``len(weights)`` seed models."""

    method: str
    weights: tuple[float, ...]  # linear, TIES and DARE: one per seed (normalised by mergekit)
    density: float  # TIES and DARE: share of each task vector kept
    pair: tuple[int, int]  # SLERP: the two seeds interpolated...
    t: float  # ...and where between them (0 = the first)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown merge method {self.method!r}; known: {METHODS}")
        if len(self.weights) < 2:
            raise ValueError("a genome merges at least two seed models")
        if not all(0.0 <= w <= 1.0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(f"weights must lie in [0, 1] and not all be 0: {self.weights}")
        if not DENSITY_RANGE[0] <= self.density <= DENSITY_RANGE[1]:
            raise ValueError(f"density {self.density} outside {DENSITY_RANGE}")
        i, j = self.pair
        if i == j or not (0 <= i < len(self.weights) and 0 <= j < len(self.weights)):
            raise ValueError(f"SLERP pair {self.pair} must name two different seeds")
        if not 0.0 <= self.t <= 1.0:
            raise ValueError(f"t {self.t} outside [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weights"], d["pair"] = list(self.weights), list(self.pair)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Genome:
        return cls(
            method=str(d["method"]),
            weights=tuple(float(w) for w in d["weights"]),
            density=float(d["density"]),
            pair=(int(d["pair"][0]), int(d["pair"][1])),
            t=float(d["t"]),
        )

    def describe(self) -> str:
        """Only the parameters the method uses, for tables and lineage labels."""
        if self.method == "slerp":
            return f"slerp(seeds {self.pair[0]}->{self.pair[1]}, t={self.t:.2f})"
        w = ", ".join(f"{x:.2f}" for x in self.weights)
        if self.method == "linear":
            return f"linear(w=[{w}])"
        return f"{self.method}(w=[{w}], density={self.density:.2f})"


def _pair(rng: np.random.Generator, n: int) -> tuple[int, int]:
    i, j = rng.choice(n, size=2, replace=False)
    return int(i), int(j)


def random_genome(rng: np.random.Generator, n_seeds: int, methods: Sequence[str]) -> Genome:
    """A genome drawn uniformly over its space (the initial population)."""
    return Genome(
        method=str(rng.choice(list(methods))),
        weights=tuple(float(x) for x in rng.uniform(0.05, 1.0, size=n_seeds)),
        density=float(rng.uniform(*DENSITY_RANGE)),
        pair=_pair(rng, n_seeds),
        t=float(rng.uniform(0.0, 1.0)),
    )


def crossover(rng: np.random.Generator, a: Genome, b: Genome) -> Genome:
    """Uniform crossover: each gene (method, each weight, density, pair, t) from either parent."""

    def pick(x: Any, y: Any) -> Any:
        return x if rng.random() < 0.5 else y

    weights = tuple(pick(x, y) for x, y in zip(a.weights, b.weights, strict=True))
    if sum(weights) <= 0:  # cannot happen with parents' weights > 0, kept as a guard
        weights = a.weights
    return Genome(
        method=pick(a.method, b.method),
        weights=weights,
        density=pick(a.density, b.density),
        pair=pick(a.pair, b.pair),
        t=pick(a.t, b.t),
    )


def mutate(
    rng: np.random.Generator, g: Genome, rate: float, methods: Sequence[str]
) -> tuple[Genome, list[str]]:
    """Each gene changes with probability ``rate``; returns the genome and what changed."""
    changed: list[str] = []
    method, pair = g.method, g.pair
    if rng.random() < rate:
        method = str(rng.choice(list(methods)))
        changed.append("method")
    weights = list(g.weights)
    for k in range(len(weights)):
        if rng.random() < rate:
            weights[k] = float(np.clip(weights[k] + rng.normal(0, MUTATION_SCALE), 0.0, 1.0))
            changed.append(f"weight{k}")
    if sum(weights) <= 0:
        weights = list(g.weights)
    density, t = g.density, g.t
    if rng.random() < rate:
        density = float(np.clip(density + rng.normal(0, MUTATION_SCALE), *DENSITY_RANGE))
        changed.append("density")
    if rng.random() < rate:
        pair = _pair(rng, len(weights))
        changed.append("pair")
    if rng.random() < rate:
        t = float(np.clip(t + rng.normal(0, MUTATION_SCALE), 0.0, 1.0))
        changed.append("t")
    out = replace(g, method=method, weights=tuple(weights), density=density, pair=pair, t=t)
    return out, changed
