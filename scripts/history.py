"""Rule entry point: append the run to results/history/, compare it with its baseline and
detect regressions over the history (see rules/history.smk)."""

import logging
import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
)

from forgebench.history import update_history  # noqa: E402

update_history(
    list(snakemake.input.measurements),
    snakemake.params.history_root,
    run_json=snakemake.output.run,
    comparison_path=snakemake.output.comparison,
    regressions_path=snakemake.output.regressions,
    history_cfg=snakemake.params.history,
    statistics=snakemake.params.statistics,
    seed=snakemake.params.seed,
)
