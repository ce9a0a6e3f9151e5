# forgebench: benchmarks of models and the systems around them.
# Entry point: config, schema validation, one include per stage, `rule all`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"


# Only the aggregation target runs on the submitting host; every other rule is a job.
localrules:
    all,


include: "rules/datasets.smk"
include: "rules/models.smk"
include: "rules/benchmarks.smk"
include: "rules/compression.smk"
include: "rules/evaluation.smk"
include: "rules/evomerge.smk"
include: "rules/report.smk"
include: "rules/history.smk"
include: "rules/hooks.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
    # One console line instead of the run's every final output.
    message:
        "all: every enabled benchmark's table, this run's history entry and the report"


onstart:
    # The plan `forgebench watch` follows (rules/hooks.smk).
    write_run_plan(log)


onsuccess:
    fw_watch.mark_ended(fw_watch.PLAN, "success")
    for line in fw_gate.workflow_summary():
        print(line)


onerror:
    # A failed job keeps the report and history rules from running: build them from the
    # tables that exist (rules/hooks.smk), then the gate's view of that partial run.
    for line in report_after_failure():
        print(line)
    fw_watch.mark_ended(fw_watch.PLAN, "a job failed")
    for line in fw_gate.workflow_summary(job_failed=True):
        print(line)
    print(
        "a job failed: its log is printed above; the report lists what did not run"
    )
