"""EvoMerge: genomes, generations and the merge operators' known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import make_tiny_llama

from forgebench.evomerge.evolution import (
    Individual,
    children_per_generation,
    initial_population,
    next_generation,
    tournament,
)
from forgebench.evomerge.genome import METHODS, Genome, crossover, mutate, random_genome
from forgebench.evomerge.merge import merge_config, run_merge

CFG = {
    "population": 4,
    "elitism": 1,
    "tournament_size": 2,
    "crossover_rate": 0.7,
    "mutation_rate": 0.1,
    "methods": list(METHODS),
}


def genome(**kw: object) -> Genome:
    base = {"method": "linear", "weights": (1.0, 0.0, 0.0), "density": 1.0, "pair": (0, 1)}
    return Genome(**{**base, "t": 0.5, **kw})  # type: ignore[arg-type]


def test_genome_rejects_values_outside_its_space() -> None:
    with pytest.raises(ValueError, match="unknown merge method"):
        genome(method="average")
    with pytest.raises(ValueError, match="weights"):
        genome(weights=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="pair"):
        genome(pair=(1, 1))
    with pytest.raises(ValueError, match="density"):
        genome(density=0.0)
    g = genome(method="ties", weights=(0.2, 0.5, 0.9))
    assert Genome.from_dict(g.to_dict()) == g


def test_crossover_takes_every_gene_from_a_parent_and_mutation_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    a, b = random_genome(rng, 3, METHODS), random_genome(rng, 3, METHODS)
    for _ in range(200):
        child = crossover(rng, a, b)
        assert child.method in (a.method, b.method)
        pairs = zip(child.weights, a.weights, b.weights, strict=True)
        assert all(w in (x, y) for w, x, y in pairs)
        assert child.t in (a.t, b.t) and child.pair in (a.pair, b.pair)
        m, changed = mutate(rng, child, 0.5, METHODS)  # validated by Genome itself
        unchanged = {"t"} - set(changed)
        if unchanged:
            assert m.t == child.t
    same, changed = mutate(rng, a, 0.0, METHODS)
    assert same == a and changed == []


def test_tournament_picks_the_fittest_drawn_and_failed_fitness_ranks_last() -> None:
    pop = initial_population(CFG, 3, seed=1)
    scored = [(pop[0], float("nan")), (pop[1], 0.2), (pop[2], 0.9), (pop[3], 0.5)]
    rng = np.random.default_rng(0)
    # a tournament over everyone always returns the best measured individual
    assert all(tournament(rng, scored, 4).name == pop[2].name for _ in range(10))
    elites, _ = next_generation(CFG, scored, 1, seed=1)
    assert [e.name for e in elites] == [pop[2].name]


def test_generations_are_seeded_and_sized_by_the_config() -> None:
    pop = initial_population(CFG, 3, seed=7)
    assert [p.name for p in pop] == [f"evo-g0-i{i}" for i in range(4)]
    assert initial_population(CFG, 3, seed=7)[0].genome == pop[0].genome
    assert initial_population(CFG, 3, seed=8)[0].genome != pop[0].genome
    scored = [(p, float(k)) for k, p in enumerate(pop)]
    elites, children = next_generation(CFG, scored, 1, seed=7)
    again = next_generation(CFG, scored, 1, seed=7)[1]
    assert [c.to_dict() for c in children] == [c.to_dict() for c in again]
    assert len(children) == children_per_generation(CFG, 1) == 3
    assert elites == [pop[3]]
    for c in children:
        assert c.generation == 1 and c.parents and set(c.parents) <= {p.name for p in pop}
        assert Individual.from_dict(c.to_dict()).to_dict() == c.to_dict()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("seeds")
    return [make_tiny_llama(root / f"seed{s}", seed=s) for s in range(3)]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_linear_with_weights_one_and_zero_returns_the_first_model(
    seeds: list[Path], tmp_path: Path
) -> None:
    run_merge(merge_config(genome(), seeds), tmp_path / "m", seed=0)
    first, merged = _weights(seeds[0]), _weights(tmp_path / "m")
    assert first.keys() == merged.keys()
    assert all(torch.equal(first[k], merged[k]) for k in first)


def test_ties_with_density_one_and_one_model_is_that_model(
    seeds: list[Path], tmp_path: Path
) -> None:
    g = genome(method="ties", weights=(1.0, 1.0, 0.0), density=1.0, pair=(0, 1))
    config = merge_config(g, seeds)
    assert [m["model"] for m in config["models"]] == [str(seeds[1].resolve())]
    run_merge(config, tmp_path / "m", seed=0)
    other, merged = _weights(seeds[1]), _weights(tmp_path / "m")
    for k in other:
        assert torch.allclose(other[k], merged[k], atol=1e-6), k


def test_slerp_halfway_between_orthogonal_tensors_keeps_their_norm(
    seeds: list[Path], tmp_path: Path
) -> None:
    # Make seed 1's tensor orthogonal to seed 0's, with the same norm: SLERP at t = 0.5
    # gives (a + b) / sqrt(2), whose norm is |a|, where a linear average gives |a| / sqrt(2).
    name = "model.layers.0.mlp.up_proj.weight"
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    for src, dst in ((seeds[0], a_dir), (seeds[1], b_dir)):
        dst.mkdir()
        for f in src.iterdir():
            (dst / f.name).write_bytes(f.read_bytes())
    a = _weights(a_dir)
    b = _weights(b_dir)
    va, vb = a[name].flatten().double(), b[name].flatten().double()
    vb = vb - (vb @ va) / (va @ va) * va
    vb = vb / vb.norm() * va.norm()
    b[name] = vb.reshape(a[name].shape).float()
    save_file(b, str(b_dir / "model.safetensors"), metadata={"format": "pt"})
    g = genome(method="slerp", pair=(0, 1), t=0.5, weights=(1.0, 1.0))
    run_merge(merge_config(g, [a_dir, b_dir]), tmp_path / "m", seed=0)
    merged = _weights(tmp_path / "m")[name].double()
    expected = ((va + b[name].flatten().double()) / math.sqrt(2)).reshape(merged.shape)
    assert float(merged.norm()) == pytest.approx(float(va.norm()), rel=1e-4)
    assert torch.allclose(merged, expected, atol=1e-5)


def test_dare_is_reproducible_from_its_seed(seeds: list[Path], tmp_path: Path) -> None:
    g = genome(method="dare_ties", weights=(1.0, 0.6, 0.4), density=0.5, pair=(0, 1))
    for out, s in (("x", 3), ("y", 3), ("z", 4)):
        run_merge(merge_config(g, seeds), tmp_path / out, seed=s)
    x, y, z = (_weights(tmp_path / o) for o in "xyz")
    key = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(x[key], y[key])
    assert not torch.equal(x[key], z[key])


@pytest.mark.parametrize("fail", [None, "fb_boolq"])
def test_a_suite_score_missing_an_objective_is_a_failed_fitness(
    fail: str | None, tmp_path: Path
) -> None:
    """A failed task leaves the mean of the other objectives, which once ranked an
    individual above its peers (0.325 to 0.400): that score is no fitness."""
    from test_suites import _logic_inputs

    from forgebench.evaluation import suites as su
    from forgebench.evomerge.stages import INCOMPLETE, read_fitness
    from forgebench.record import write_measurements

    records, samples = _logic_inputs(np.random.default_rng(4), fail=fail)
    rows, _ = su.score_suite(su.load_suite("logic"), "m", records, samples, allow_online=False)
    path = tmp_path / "m.parquet"
    write_measurements(rows, path, {})
    score = rows.set_index("metric").loc["score"]
    assert score["status"] == "ok" and score["value"] > 0.1  # a number either way
    fitness = read_fitness(path, "m", "logic")
    if fail is None:
        assert fitness.ok and fitness.rank_value() == pytest.approx(score["value"])
        return
    assert fitness.status == INCOMPLETE and not fitness.ok
    assert math.isnan(fitness.rank_value())
    # A complete individual with a far lower score is the elite, not the incomplete one.
    pop = initial_population(CFG, 3, seed=1)
    scored = [(pop[0], fitness.rank_value()), (pop[1], 0.1), (pop[2], 0.05), (pop[3], 0.01)]
    elites, _ = next_generation(CFG, scored, 1, seed=1)
    assert [e.name for e in elites] == [pop[1].name]
