"""Rule entry point: generation g's plan of the evolution (forgebench.evomerge.stages) from
generation g-1's plan and suite scores; generation 0 from the config and seed alone."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.evomerge.stages import plan_job  # noqa: E402

generation = int(snakemake.wildcards.generation)
inputs = dict(snakemake.input.items())
plan_job(
    {"evomerge": snakemake.params.evomerge},
    generation,
    seed=int(snakemake.params.seed),
    out=snakemake.output[0],
    previous=inputs.get("previous"),
    scores=list(inputs.get("scores", [])),
)
