"""Rule entry point: evaluate one model on its tasks in one process (forgebench.evaluation.
runner), under the resource sampler."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.errors import ForgebenchError  # noqa: E402
from forgebench.evaluation.runner import (  # noqa: E402
    BENCHMARK_VERSION,
    JOB_BENCHMARK,
    SUITE,
    evaluate,
    output_paths,
)
from forgebench.runner import run_measured  # noqa: E402

model = snakemake.wildcards.model
# The record is <results>/raw/eval/<model>.parquet.
out_dir = Path(snakemake.output.record).parents[2]
paths = output_paths(out_dir, model)
for key, path in {
    "record": paths.record,
    "samples": paths.samples,
    "lm_eval": paths.lm_eval_root,
}.items():
    if Path(getattr(snakemake.output, key)) != path:
        raise ForgebenchError(
            f"rule output {key} is {getattr(snakemake.output, key)}, but the evaluation "
            f"writes {path}"
        )
seed = int(snakemake.params.seed)
provenance = {}
run_measured(
    lambda: evaluate(
        Path(snakemake.input.model),
        model,
        list(snakemake.params.tasks),
        cfg=snakemake.params.evaluation,
        datasets_dir=Path(snakemake.params.datasets_dir),
        out_dir=out_dir,
        seed=seed,
        confidence=float(snakemake.params.confidence),
        threads=snakemake.threads,
        write_record=False,
        provenance_out=provenance,
    ),
    suite=SUITE,
    name=JOB_BENCHMARK,
    version=BENCHMARK_VERSION,
    config={
        "seed": seed,
        "sampler": snakemake.params.sampler,
        "evaluation": snakemake.params.evaluation,
    },
    measurements_path=snakemake.output.record,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance=provenance,
    job_subject=model,
)
