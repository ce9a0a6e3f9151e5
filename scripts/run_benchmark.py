"""Rule entry point: run one registered benchmark (see rules/benchmarks.smk)."""

import logging
import os
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.errors import ForgebenchError  # noqa: E402
from forgebench.network.echo_server import PLANTED_DELAY_ENV  # noqa: E402
from forgebench.runner import run_benchmark  # noqa: E402

if snakemake.params.fail:
    raise ForgebenchError("failing on purpose: config testing.fail_benchmarks names this job")
if snakemake.params.planted_delay_s:  # test-only: a regression planted on purpose
    os.environ[PLANTED_DELAY_ENV] = str(snakemake.params.planted_delay_s)

# Where the workflow outputs it reads live (model_dir, datasets_dir), beside its settings.
section = dict(snakemake.params.section)
if snakemake.params.datasets_dir is not None:
    section["datasets_dir"] = snakemake.params.datasets_dir
if hasattr(snakemake.input, "model_dir"):
    section["model_dir"] = snakemake.input.model_dir
if hasattr(snakemake.input, "compressed"):  # the compression jobs' outputs (the selector)
    section["compression_dir"] = os.path.dirname(snakemake.input.compressed[0])
if hasattr(snakemake.input, "first_stage"):  # a compression job's artifact (the pipeline)
    section["first_stage_artifact"] = snakemake.input.first_stage
config = {
    "seed": snakemake.params.seed,
    "sampler": snakemake.params.sampler,
    "alerts": snakemake.params.alerts,
    "suites": {snakemake.wildcards.suite: {"benchmarks": {snakemake.wildcards.benchmark: section}}},
}
run_benchmark(
    snakemake.wildcards.suite,
    snakemake.wildcards.benchmark,
    config,
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
)
