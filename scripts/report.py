"""Rule entry point: summary, verdicts, plots and the HTML report (see rules/report.smk)."""

import logging
import os
import sys
from pathlib import Path

# build_report draws figures and bootstraps summaries in spawned worker processes, and a
# spawned worker imports this script as its main module: only the guarded part below
# must not run there.
if __name__ == "__main__":
    sys.stderr = open(snakemake.log[0], "w", buffering=1)
    os.dup2(sys.stderr.fileno(), 2)  # the workers' warnings go to the log too
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )

    from forgebench.report import build_report
    from forgebench.report.not_run import keep_last_good

    # The history inputs exist only when rules/history.smk is included (report.smk asks
    # for them then); results/history/ is the history rule's append-only side effect.
    run_info = snakemake.input.get("run_info")
    build_report(
        list(snakemake.input.measurements),
        summary_path=snakemake.output.summary,
        verdicts_path=snakemake.output.verdicts,
        provenance_path=snakemake.output.provenance,
        code_dir=snakemake.scriptdir,
        html_path=snakemake.output.html,
        markdown_path=snakemake.output.markdown,
        json_path=snakemake.output.json,
        plots_dir=snakemake.output.plots,
        pages_dir=snakemake.output.pages,
        resource_paths=list(snakemake.input.resources),
        run_info_path=run_info,
        baseline_comparison_path=snakemake.input.get("baseline_comparison"),
        regressions_path=snakemake.input.get("regressions"),
        history_dir=snakemake.params.history_dir if run_info else None,
        statistics=snakemake.params.statistics,
        comparisons=snakemake.params.comparisons,
        targets=snakemake.params.targets,
        seed=snakemake.params.seed,
        workers=snakemake.threads,  # one process per thread: see rules/report.smk
        not_run_path=snakemake.output.not_run,  # empty: every table exists when this rule runs
    )
    # The last good copy of each table, for the report of a later run where its job fails
    # (Snakemake deletes a job's outputs before rerunning it): see forgebench.report.not_run.
    keep_last_good(snakemake.input.measurements, Path(snakemake.output.summary).parents[1])
