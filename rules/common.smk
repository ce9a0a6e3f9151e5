# Validation first, then the functions rules use. Logic lives in forgebench.workflow.
from snakemake.utils import validate

from forgebench.config import check_config
from forgebench.registry import BENCHMARKS
from forgebench import workflow as fw

check_config(config, workflow.source_path("../config/schema.yaml"))
validate(config, "../config/schema.yaml")
fw.check_references(config)


wildcard_constraints:
    suite=fw.wildcard_pattern(sorted({s.suite for s in BENCHMARKS})),
    benchmark=fw.wildcard_pattern(sorted({s.name for s in BENCHMARKS})),


def get_final_output():
    return fw.final_outputs(config)


def get_benchmark_config(wildcards):
    return fw.benchmark_config(config, wildcards.suite, wildcards.benchmark)


def get_benchmark_threads(wildcards):
    # Timing-sensitive benchmarks claim every core so nothing runs beside a timing.
    spec = BENCHMARKS.get(wildcards.suite, wildcards.benchmark)
    return workflow.cores if spec.timing_sensitive else 1
