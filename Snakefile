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


rule all:
    default_target: True
    input:
        get_final_output(),


onsuccess:
    for line in fw_gate.workflow_summary():
        print(line)


onerror:
    for line in fw_gate.workflow_summary():
        print(line)
    print(
        "a job failed: its log is printed above; verdicts above are from the last report"
    )
