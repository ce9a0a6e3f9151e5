"""Rule entry point: the evolution's record (fitness per individual per generation, wall
time, the best individual against its best parent), its lineage and the best individual's
export (forgebench.evomerge.stages), under the resource sampler."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.evomerge.stages import EVOLUTION_BENCHMARK, SUITE, VERSION, summarize  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

stats = snakemake.params.statistics
seed = int(snakemake.params.seed)
config = {"evomerge": snakemake.params.evomerge, "datasets": snakemake.params.datasets}
run_measured(
    lambda: summarize(
        config,
        seed=seed,
        confidence=float(stats["confidence"]),
        n_resamples=int(stats["bootstrap_resamples"]),
        lineage_path=snakemake.output.lineage,
        table_path=snakemake.output.table,
        export_to=snakemake.output.best,
    ),
    suite=SUITE,
    name=EVOLUTION_BENCHMARK,
    version=VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler},
    measurements_path=snakemake.output.record,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"evomerge": snakemake.params.evomerge},
)
