"""Rule entry point: evaluate one model on one lm-eval task (forgebench.evaluation.runner),
under the resource sampler."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.errors import ForgebenchError  # noqa: E402
from forgebench.evaluation.runner import BENCHMARK_VERSION, SUITE, evaluate, output_paths  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

model, task = snakemake.wildcards.model, snakemake.wildcards.task
# results/eval/<model>/<task>/results.json: the results folder is three levels up.
out_dir = Path(snakemake.output.results).parents[3]
paths = output_paths(out_dir, model, task)
for key, path in {"samples": paths.samples, "results": paths.results_json}.items():
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
        task,
        cfg=snakemake.params.evaluation,
        datasets_dir=Path(snakemake.params.datasets_dir),
        out_dir=out_dir,
        seed=seed,
        threads=snakemake.threads,
        write_record=False,
        provenance_out=provenance,
    ),
    suite=SUITE,
    name=task,
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
