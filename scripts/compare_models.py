"""Rule entry point: a candidate model against its baseline on the same documents of every
task both were evaluated on (forgebench.evaluation.paired), under the resource sampler."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

import pandas as pd  # noqa: E402

from forgebench.evaluation.paired import SUITE, VERSION, compare_samples  # noqa: E402
from forgebench.evaluation.samples import read_samples  # noqa: E402
from forgebench.runner import run_measured  # noqa: E402

stats = snakemake.params.statistics
seed = int(snakemake.params.seed)
baseline, candidate = snakemake.wildcards.baseline, snakemake.wildcards.candidate


def compare():
    frames = []
    a, b = read_samples(snakemake.input.baseline), read_samples(snakemake.input.candidate)
    for task in snakemake.params.tasks:
        frames.append(
            compare_samples(
                a[a["task"] == task],
                b[b["task"] == task],
                task=task,
                baseline_name=baseline,
                candidate_name=candidate,
                confidence=float(stats["confidence"]),
                n_resamples=int(stats["bootstrap_resamples"]),
                seed=seed,
            )
        )
    return pd.concat(frames, ignore_index=True)


run_measured(
    compare,
    suite=SUITE,
    name="pairs",
    version=VERSION,
    config={"seed": seed, "sampler": snakemake.params.sampler},
    measurements_path=snakemake.output.measurements,
    resources_path=snakemake.output.resources,
    code_dir=snakemake.scriptdir,
    extra_provenance={"baseline": baseline, "candidate": candidate},
    job_subject=f"{candidate} vs {baseline}",
)
