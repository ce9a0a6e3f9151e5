"""Rule entry point: merge one individual of the evolution from the seed models, as its
generation's plan says (forgebench.evomerge.stages), under the resource sampler."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.evomerge.stages import (  # noqa: E402
    MERGE_BENCHMARK,
    SUITE,
    VERSION,
    merge_individual,
    read_plan,
)
from forgebench.runner import run_measured  # noqa: E402

name = f"evo-g{snakemake.wildcards.generation}-i{snakemake.wildcards.index}"
seed = int(snakemake.params.seed)
plan = read_plan(snakemake.input.plan)
run_measured(
    lambda: merge_individual(
        plan, name, list(snakemake.input.seeds), snakemake.output.model, seed=seed
    ),
    suite=SUITE,
    name=MERGE_BENCHMARK,
    version=VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler},
    measurements_path=snakemake.output.record,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"model": name, "seeds": list(snakemake.params.seeds)},
    job_subject=name,
)
