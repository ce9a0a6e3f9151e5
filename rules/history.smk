# Run history: append this run to results/history/, compare it with its baseline run and
# detect regressions over the stored runs (forgebench.history).
#
# results/history/run_id=<id>/ is written as an undeclared, append-only side effect:
# Snakemake deletes a job's declared outputs before running it, so declaring the history
# (a directory() output) would wipe every earlier run. Each run goes into its own
# directory named by a hash of its raw rows, written to a temporary directory and renamed
# into place, and an existing run is never rewritten, so rerunning the job is harmless.


rule history:
    input:
        measurements=fw.raw_outputs(config),
    output:
        run="results/summary/run.json",
        comparison="results/summary/baseline_comparison.parquet",
        regressions="results/summary/regressions.parquet",
    log:
        "logs/history/history.log",
    conda:
        "../envs/forgebench.yaml"
    threads: 1
    resources:
        mem_mb=get_history_resource("mem_mb"),
        runtime=get_history_resource("runtime"),
    params:
        history_root="results/history",
        history=config["history"],
        statistics=config["statistics"],
        seed=config["seed"],
    # One console line instead of its input list (every raw table).
    message:
        "history: this run into results/history, compared with its baseline"
    script:
        "../scripts/history.py"
