"""Generations: the initial population, and each next one from the last one's fitness.

Generation 0 has ``population`` random genomes. Generation g >= 1 keeps the ``elitism``
fittest individuals of generation g-1 as they are (they are not merged or evaluated
again: their fitness is carried) and breeds ``population - elitism`` children by
tournament selection, crossover (with probability ``crossover_rate``) and mutation (each
gene with probability ``mutation_rate``). Every draw comes from a generator seeded by
(seed, generation), so a generation's plan depends only on the config and the fitness of
the one before: rerunning an interrupted evolution reproduces the same individuals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forgebench.evomerge.genome import Genome, crossover, mutate, random_genome


def individual_name(generation: int, index: int) -> str:
    """The model name of a bred individual (results/models/<name>)."""
    return f"evo-g{generation}-i{index}"


def children_per_generation(cfg: Mapping[str, Any], generation: int) -> int:
    """New individuals (merges to make and evaluate) in ``generation``."""
    return cfg["population"] if generation == 0 else cfg["population"] - cfg["elitism"]


@dataclass
class Individual:
    name: str
    generation: int
    genome: Genome
    origin: str  # "random", "crossover", "copy" (no crossover drawn) or "elite"
    parents: list[str] = field(default_factory=list)
    mutated: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "generation": self.generation,
            "genome": self.genome.to_dict(),
            "origin": self.origin,
            "parents": list(self.parents),
            "mutated": list(self.mutated),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Individual:
        return cls(
            name=d["name"],
            generation=int(d["generation"]),
            genome=Genome.from_dict(d["genome"]),
            origin=d["origin"],
            parents=list(d["parents"]),
            mutated=list(d["mutated"]),
        )


def _rng(seed: int, generation: int) -> np.random.Generator:
    return np.random.default_rng([seed, generation])


def initial_population(cfg: Mapping[str, Any], n_seeds: int, *, seed: int) -> list[Individual]:
    rng = _rng(seed, 0)
    return [
        Individual(individual_name(0, i), 0, random_genome(rng, n_seeds, cfg["methods"]), "random")
        for i in range(cfg["population"])
    ]


def _rank_key(fitness: float) -> float:
    """A failed evaluation (NaN fitness) ranks below every measured one."""
    return fitness if math.isfinite(fitness) else -math.inf


def tournament(
    rng: np.random.Generator, pool: Sequence[tuple[Individual, float]], size: int
) -> Individual:
    """The fittest of ``size`` individuals drawn without replacement (ties: first drawn)."""
    picks = rng.choice(len(pool), size=min(size, len(pool)), replace=False)
    best = max(picks, key=lambda k: _rank_key(pool[k][1]))
    return pool[best][0]


def next_generation(
    cfg: Mapping[str, Any],
    previous: Sequence[tuple[Individual, float]],
    generation: int,
    *,
    seed: int,
) -> tuple[list[Individual], list[Individual]]:
    """(elites carried unchanged, new children) of ``generation`` from the last population.

    ``previous`` is generation g-1's whole population (its elites included) with fitness.
    """
    if not previous:
        raise ValueError("a generation after the first needs the previous population")
    rng = _rng(seed, generation)
    ranked = sorted(previous, key=lambda p: _rank_key(p[1]), reverse=True)
    elites = [ind for ind, _ in ranked[: cfg["elitism"]]]
    children = []
    for i in range(children_per_generation(cfg, generation)):
        a = tournament(rng, previous, cfg["tournament_size"])
        if rng.random() < cfg["crossover_rate"]:
            b = tournament(rng, previous, cfg["tournament_size"])
            genome, origin, parents = crossover(rng, a.genome, b.genome), "crossover", [a.name]
            if b.name != a.name:
                parents.append(b.name)
        else:
            genome, origin, parents = a.genome, "copy", [a.name]
        genome, changed = mutate(rng, genome, cfg["mutation_rate"], cfg["methods"])
        children.append(
            Individual(individual_name(generation, i), generation, genome, origin, parents, changed)
        )
    return elites, children
