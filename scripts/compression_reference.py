"""Rule entry point: the original model's per-document held-out perplexity, scored once
with its card, for every compressed variant of it to pair with (forgebench.compression)."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.compression.compress_model import (  # noqa: E402
    BENCHMARK_VERSION,
    NAME,
    SUITE,
    reference_perplexity,
)
from forgebench.compression.perplexity import boolq_passages  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

model = snakemake.wildcards.model
seed = int(snakemake.params.seed)
run_measured(
    lambda: reference_perplexity(
        Path(snakemake.input.model),
        boolq_passages(Path(snakemake.input.heldout).parent),
        snakemake.params.evaluation,
        out_quality=snakemake.output.quality,
    ),
    suite=SUITE,
    name=NAME,
    version=BENCHMARK_VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler},
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"model": model, "method": "original"},
    job_subject=f"{model} (original)",
)
