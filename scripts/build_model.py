"""Rule entry point: materialize one configured model at results/models/<name>/ and record
what it measured (forgebench.models.materialize), under the resource sampler."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from pathlib import Path  # noqa: E402

from forgebench.models import materialize  # noqa: E402
from forgebench.models.materialize import BENCHMARK, BUILD_VERSION, SUITE  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

name = snakemake.wildcards.model
spec = snakemake.params.spec
seed = int(snakemake.params.seed)
run_measured(
    lambda: materialize(
        name,
        spec,
        datasets_dir=Path(snakemake.params.datasets_dir),
        out_dir=Path(snakemake.output.model),
        seed=seed,
        threads=snakemake.threads,
    ),
    suite=SUITE,
    name=BENCHMARK,
    version=BUILD_VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler, "models": {name: spec}},
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"model": name, "spec": spec},
    job_subject=name,
)
