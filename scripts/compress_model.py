"""Rule entry point: compress one model with one method, decompress it into a model the
evaluation stage can score, and record what it cost and its held-out perplexity paired
with the original's (forgebench.compression)."""

import logging
import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.compression.calibration import model_texts  # noqa: E402
from forgebench.compression.compress_model import (  # noqa: E402
    BENCHMARK_VERSION,
    NAME,
    SUITE,
    compress_model,
)
from forgebench.compression.perplexity import TEXT_SOURCE, boolq_passages  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

model, method = snakemake.wildcards.model, snakemake.wildcards.method
seed = int(snakemake.params.seed)
model_dir = Path(snakemake.input.model)
# Calibration (VPTQ) reads training documents (the model's own split where it was built
# here); perplexity reads the fixed held-out text, BoolQ's passages.
datasets_dir = Path(snakemake.input.heldout).parent  # results/datasets
calibration, _, text_info = model_texts(model_dir, datasets_dir, seed, key="suites.compression")
text_info["heldout"] = TEXT_SOURCE
method_cfg = dict(snakemake.params.method)  # with method and name (fw.compression_method)
run_measured(
    lambda: compress_model(
        model_dir,
        method_cfg,
        out_artifact=snakemake.output.artifact,
        out_model_dir=snakemake.output.model,
        heldout_documents=boolq_passages(datasets_dir),
        reference_quality=snakemake.input.reference,
        out_quality=snakemake.output.quality,
        calibration_texts=calibration,
        seed=seed,
        confidence=float(snakemake.params.confidence),
        **snakemake.params.evaluation,
    ),
    suite=SUITE,
    name=NAME,
    version=BENCHMARK_VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler, "method": method_cfg},
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"model": model, "method": method, "texts": text_info},
    job_subject=f"{model}__{method}",
)
