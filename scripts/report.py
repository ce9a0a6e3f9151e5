"""Rule entry point: summary, verdicts, plots and the HTML report (see rules/report.smk)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.report import build_report  # noqa: E402

build_report(
    list(snakemake.input.measurements),
    summary_path=snakemake.output.summary,
    verdicts_path=snakemake.output.verdicts,
    provenance_path=snakemake.output.provenance,
    code_dir=snakemake.scriptdir,
    html_path=snakemake.output.html,
    plots_dir=snakemake.output.plots,
    statistics=snakemake.params.statistics,
    comparisons=snakemake.params.comparisons,
    targets=snakemake.params.targets,
    seed=snakemake.params.seed,
)
