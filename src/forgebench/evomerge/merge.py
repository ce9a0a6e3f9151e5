"""Genome -> merged model, through mergekit (a maintained implementation of the operators).

mergekit runs offline against local directories given by absolute path (a relative path
is taken for a hub id). SLERP interpolates ``pair``; TIES and DARE-TIES need a base to
take task vectors from, and use the genome's first ``pair`` seed, merging the others into
it with their weights. Seeds are independently initialised models of one architecture,
so a task vector here is the difference between two seeds, not a fine-tuning delta: the
operators are the published ones, the premise that the inputs share a base is not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError
from forgebench.evomerge.genome import Genome

log = logging.getLogger(__name__)


def merge_config(genome: Genome, seeds: Sequence[str | Path]) -> dict[str, Any]:
    """The mergekit configuration (as a dict) that realises ``genome`` over ``seeds``."""
    if len(seeds) != len(genome.weights):
        raise ForgebenchError(
            f"genome has {len(genome.weights)} weights but {len(seeds)} seed models were given"
        )
    paths = [str(Path(s).resolve()) for s in seeds]
    base = paths[genome.pair[0]]
    if genome.method == "linear":
        models = [
            {"model": p, "parameters": {"weight": w}}
            for p, w in zip(paths, genome.weights, strict=True)
        ]
        return {"merge_method": "linear", "models": models, "dtype": "float32"}
    if genome.method == "slerp":
        other = paths[genome.pair[1]]
        return {
            "merge_method": "slerp",
            "base_model": base,
            "models": [{"model": base}, {"model": other}],
            "parameters": {"t": genome.t},
            "dtype": "float32",
        }
    # ties / dare_ties: the other seeds' differences from the base, sparsified and signed.
    models = [
        {"model": p, "parameters": {"weight": w, "density": genome.density}}
        for k, (p, w) in enumerate(zip(paths, genome.weights, strict=True))
        if k != genome.pair[0] and w > 0
    ]
    if not models:  # every other seed weighted 0: the merge is the base itself
        models = [{"model": base, "parameters": {"weight": 1.0, "density": 1.0}}]
    return {
        "merge_method": genome.method,
        "base_model": base,
        "models": models,
        "parameters": {"normalize": True},
        "dtype": "float32",
    }


def run_merge(config: dict[str, Any], out_dir: str | Path, *, seed: int) -> None:
    """Write the merged model (weights, config and the base's tokenizer) to ``out_dir``.

    DARE drops parameters at random; mergekit's ``random_seed`` makes that reproducible.
    """
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions
    from mergekit.merge import run_merge as mergekit_run_merge

    parsed = MergeConfiguration.model_validate(config)
    options = MergeOptions(
        copy_tokenizer=True,
        lazy_unpickle=False,
        low_cpu_memory=False,
        quiet=True,
        random_seed=seed,
        write_model_card=False,
    )
    log.info("merging with %s into %s", config["merge_method"], out_dir)
    mergekit_run_merge(parsed, out_path=str(out_dir), options=options)
