# Validation first, then the functions rules use. Logic lives in forgebench.workflow.
import math
import os
from pathlib import Path

from snakemake.utils import validate

from forgebench.config import check_config, coerce_limits
from forgebench.errors import ForgebenchError
from forgebench.registry import BENCHMARKS
from forgebench import sizing
from forgebench import workflow as fw
from forgebench import gate as fw_gate

coerce_limits(config)
if workflow.non_local_exec and not config.get("limits"):
    raise ForgebenchError(
        "a cluster run needs config `limits` (profiles/slurm sets them); a --config on the "
        "command line replaces the profile's config list: repeat limits={...} there"
    )
check_config(config, Path(workflow.basedir, "config", "schema.yaml"))
validate(config, "../config/schema.yaml")
fw.check_references(config, workflow.basedir)
fw.check_model_sources(config, workflow.basedir)
fw.check_dataset_mirror(config, workflow.basedir)


wildcard_constraints:
    suite=fw.wildcard_pattern(sorted({s.suite for s in BENCHMARKS})),
    benchmark=fw.wildcard_pattern(sorted({s.name for s in BENCHMARKS})),


def get_final_output():
    return fw.final_outputs(config)


def get_benchmark_config(wildcards):
    return fw.benchmark_config(config, wildcards.suite, wildcards.benchmark)


def get_datasets_config():
    # A relative mirror is taken from the repository root, wherever --directory points,
    # and given to the job relative to the working directory: no absolute path in params.
    return fw.job_datasets_config(config["datasets"], workflow.basedir, os.getcwd())


def get_benchmark_inputs(wildcards):
    return fw.benchmark_inputs(config, wildcards.suite, wildcards.benchmark)


def get_benchmark_datasets_dir(wildcards):
    # Only a benchmark that reads the prepared datasets is told where they are.
    spec = BENCHMARKS.get(wildcards.suite, wildcards.benchmark)
    return fw.DATASETS_ROOT if "datasets" in spec.needs else None


def get_benchmark_dataset_inputs(wildcards):
    return fw.benchmark_dataset_inputs(config, wildcards.suite, wildcards.benchmark)


def get_benchmark_threads(wildcards):
    # Timing-sensitive benchmarks claim every core so nothing runs beside a timing. On a
    # cluster a node's size is limits.cpus: workflow.cores is the submitting host's.
    spec = BENCHMARKS.get(wildcards.suite, wildcards.benchmark)
    cores = None if workflow.non_local_exec else workflow.cores
    return sizing.threads(spec.timing_sensitive, cores, config["limits"])


def get_benchmark_resource(name):
    def resource(wildcards, attempt):
        key = f"{wildcards.suite}/{wildcards.benchmark}"
        cfg = fw.benchmark_config(config, wildcards.suite, wildcards.benchmark)
        return sizing.benchmark_resources(key, cfg, attempt, config["limits"])[name]

    return resource


def get_model_build_inputs(wildcards):
    return fw.model_build_inputs(config, wildcards.model, workflow.basedir, os.getcwd())


def get_model_spec(wildcards):
    return fw.model_job_spec(config, wildcards.model, workflow.basedir, os.getcwd())


def get_eval_settings(wildcards):
    # Only what this model's evaluation uses: adding a model changes no other's params.
    # Local task data (evaluation.local_data) is given relative to the working directory.
    return fw.evaluation_job_settings(
        config, wildcards.model, workflow.basedir, os.getcwd()
    )


def get_eval_local_data(wildcards):
    # The local data files of the model's built-in tasks: changing one reruns the job.
    return fw.model_local_data_files(
        config, wildcards.model, workflow.basedir, os.getcwd()
    )


def get_model_threads(wildcards):
    """Every core unless the model's spec says fewer (``threads``): its build or
    conversion, its compression jobs and (a configured model) its evaluation."""
    cores = None if workflow.non_local_exec else workflow.cores
    cores = sizing.threads(True, cores, config["limits"])
    spec = config["models"].get(wildcards.model, {})
    return min(cores, int(spec.get("threads", cores)))


def get_eval_threads(wildcards):
    """A configured model's own (it is on the critical path: the compressed variants and
    their comparisons wait for it), one for derived models (compressed variants, EvoMerge
    individuals), which run side by side."""
    if wildcards.model in config["evaluation"]["models"]:
        return get_model_threads(wildcards)
    return 1


def get_model_resource(name):
    def resource(wildcards, attempt):
        spec = config["models"][wildcards.model]
        return sizing.model_build_resources(spec, attempt, config["limits"])[name]

    return resource


def get_eval_resource(name):
    def resource(wildcards, attempt):
        tasks = fw.model_tasks(config, wildcards.model)
        return sizing.eval_resources(
            config["evaluation"], tasks, attempt, config["limits"]
        )[name]

    return resource


def get_compression_runtime(wildcards, attempt):
    # SeedLM's search dominates: ~30 ns per (block, seed) pair plus loading and scoring,
    # over the quantised layers of a 135M model (smollm2: 106M weights).
    cfg = fw.compression_method(config, wildcards.method)
    minutes = 10
    if wildcards.method == "seedlm":
        blocks = 110_000_000 / cfg.get("block_size", 8)
        minutes += math.ceil(blocks * 2 ** cfg.get("lfsr_bits", 16) * 30e-9 / 60)
    return sizing.cap_runtime(minutes * attempt, config["limits"])


def get_report_threads(wildcards):
    # Every core: the report runs alone at the end of the run (see rules/report.smk).
    cores = None if workflow.non_local_exec else workflow.cores
    return sizing.report_threads(cores, config["limits"])


def get_report_resource(name):
    def resource(wildcards, input, attempt, threads):
        return sizing.report_resources(
            input.size_mb, attempt, config["limits"], threads
        )[name]

    return resource


def get_history_resource(name):
    # Holds the current and the baseline run's rows: twice the report's input.
    def resource(wildcards, input, attempt):
        sizes = sizing.report_resources(2 * input.size_mb, attempt, config["limits"])
        return sizes[name]

    return resource


def get_planted_delay(wildcards):
    # Test-only: a regression planted on purpose, to prove the gate catches one.
    key = f"{wildcards.suite}/{wildcards.benchmark}"
    return float(config["testing"].get("planted_delay_s", {}).get(key, 0.0))


def get_fail_switch(wildcards):
    # Test-only: prove a failing job is reported as failed (tests/test_slurm.py).
    return (
        f"{wildcards.suite}/{wildcards.benchmark}"
        in config["testing"]["fail_benchmarks"]
    )
