"""Rule entry point: run one registered benchmark (see rules/benchmarks.smk)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.errors import ForgebenchError  # noqa: E402
from forgebench.runner import run_benchmark  # noqa: E402

if snakemake.params.fail:
    raise ForgebenchError("failing on purpose: config testing.fail_benchmarks names this job")

config = {
    "seed": snakemake.params.seed,
    "sampler": snakemake.params.sampler,
    "suites": {
        snakemake.wildcards.suite: {
            "benchmarks": {snakemake.wildcards.benchmark: snakemake.params.section}
        }
    },
}
run_benchmark(
    snakemake.wildcards.suite,
    snakemake.wildcards.benchmark,
    config,
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
)
