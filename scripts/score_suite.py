"""Rule entry point: one model's score on one suite from its task evaluations
(forgebench.evaluation.suites), under the resource sampler."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.evaluation.suites import SUITE_RECORD, SUITE_VERSION, score_suite_files  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

stats = snakemake.params.statistics
seed = int(snakemake.params.seed)
suite, model = snakemake.wildcards.suite, snakemake.wildcards.model


def score():
    rows, table = score_suite_files(
        suite,
        model,
        [snakemake.input.record],
        [snakemake.input.samples],
        out_record=snakemake.output.record,
        out_table=snakemake.output.table,
        allow_online=bool(snakemake.params.allow_online),
        confidence=float(stats["confidence"]),
        n_resamples=int(stats["bootstrap_resamples"]),
        seed=seed,
        write_record=False,
    )
    logging.getLogger("score_suite").info("\n%s", table.to_string())
    return rows


run_measured(
    score,
    suite=SUITE_RECORD,
    name=f"suite_{suite}",
    version=SUITE_VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler},
    measurements_path=snakemake.output.record,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"eval_suite": suite, "model": model},
    job_subject=model,
)
