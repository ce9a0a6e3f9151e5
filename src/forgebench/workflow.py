"""What the Snakefile asks of the package: enabled benchmarks, their outputs and resources.

Kept out of rules/common.smk so that every branch has a test, and light to import (no
pandas) so that an up-to-date workflow starts in well under the 5 s budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forgebench.datasets.catalog import DATASET_NAMES
from forgebench.errors import ForgebenchError
from forgebench.registry import BENCHMARKS, BenchmarkSpec

RAW = "results/raw/{suite}/{benchmark}.parquet"
DATASET_DIR = "results/datasets/{dataset}"
DATASETS_ROOT = "results/datasets"
MODEL_DIR = "results/models/{model}"
MODEL_RAW = "results/raw/models/build/{model}.parquet"
EVAL_RAW = "results/raw/eval/{model}.parquet"  # one job per model, all its tasks
EVAL_SAMPLES = "results/raw/eval/{model}.samples.parquet"
SUITE_RAW = "results/raw/suites/{model}/{suite}.parquet"
PAIR_RAW = "results/raw/eval_pairs/{baseline}/{candidate}.parquet"
COMPRESSED = "{model}__{method}"  # the model a compression method makes of a model
COMPRESSION_RAW = "results/raw/compression/{model}/{method}.parquet"
COMPRESSION_METHODS = ("fp16", "int8", "bitnet", "seedlm", "vptq")

# The nine evaluation datasets (forgebench.datasets.catalog; pyarrow only, light) and
# those whose training split is the builder's text (eval splits never are).
TRAINING_DATASETS = ("arc_challenge", "arc_easy", "gsm8k")
EVAL_SUITES = ("coding", "general", "logic", "math", "writing")  # suites/<name>.yaml
TASK_PREFIX = "fb_"  # our lm-eval tasks over the prepared datasets (suites/tasks/)
RAW_RESOURCES = "results/raw/{suite}/{benchmark}.resources.parquet"
SUMMARY = "results/summary/summary.parquet"
RUN = "results/summary/run.json"
REPORT = "results/report/index.html"


def enabled_benchmarks(config: Mapping[str, Any]) -> Iterator[BenchmarkSpec]:
    """Specs of the benchmarks the config switches on, in config order."""
    for suite, section in config.get("suites", {}).items():
        if not section.get("enabled", True):
            continue
        for name, bench_cfg in section.get("benchmarks", {}).items():
            if bench_cfg.get("enabled", True):
                yield BENCHMARKS.get(suite, name)


def benchmark_config(config: Mapping[str, Any], suite: str, name: str) -> dict[str, Any]:
    """The config section a benchmark's ``run`` receives (without the ``enabled`` switch)."""
    section = config["suites"][suite]["benchmarks"][name]
    return {k: v for k, v in section.items() if k != "enabled"}


def benchmark_inputs(config: Mapping[str, Any], suite: str, name: str) -> dict[str, str]:
    """The model a benchmark reads (its spec ``needs`` one), as ``model_dir``."""
    if "model" not in BENCHMARKS.get(suite, name).needs:
        return {}
    return {"model_dir": MODEL_DIR.format(model=benchmark_config(config, suite, name)["model"])}


def benchmark_dataset_inputs(config: Mapping[str, Any], suite: str, name: str) -> list[str]:
    """The prepared datasets a ``datasets``-needing benchmark reads (all nine)."""
    if "datasets" not in BENCHMARKS.get(suite, name).needs:
        return []
    return [DATASET_DIR.format(dataset=d) for d in DATASET_NAMES]


def resolve_mirror(section: Mapping[str, Any], basedir: str) -> dict[str, Any]:
    """The ``datasets`` section with a relative ``mirror`` made absolute from ``basedir``."""
    out = dict(section)
    mirror = out.get("mirror")
    if mirror is not None and not Path(mirror).is_absolute():
        out["mirror"] = str((Path(basedir) / mirror).resolve())
    return out


def task_dataset(task: str) -> str | None:
    """The prepared dataset an evaluation task reads; None for a task read from the hub."""
    name = task.removeprefix(TASK_PREFIX)
    return name if task.startswith(TASK_PREFIX) and name in DATASET_NAMES else None


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Models the config defines (built, fetched or read from a path)."""
    return list(config.get("models", {}))


def model_build_inputs(config: Mapping[str, Any], model: str) -> list[str]:
    """A locally built model trains on the training datasets; others read nothing here."""
    spec = config["models"][model]
    if spec.get("source") != "build":
        return []
    return [DATASET_DIR.format(dataset=d) for d in TRAINING_DATASETS]


def evaluation_enabled(config: Mapping[str, Any]) -> bool:
    return bool(config.get("evaluation", {}).get("enabled", False))


def derived_models(config: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Models later stages make (compressed, merged), with the suites each is scored on
    and the tasks it is evaluated on (a suite's tasks, or a stage's own shorter list)."""
    out: dict[str, dict[str, list[str]]] = {}
    comp = config.get("suites", {}).get("compression", {})
    if comp.get("enabled", False):
        suites = list(comp.get("evaluate_suites", []))
        tasks = list(comp.get("evaluate_tasks", []))
        for base in comp.get("models", []):
            for method, mcfg in comp.get("methods", {}).items():
                if mcfg.get("enabled", True):
                    name = COMPRESSED.format(model=base, method=method)
                    out[name] = {"suites": suites, "tasks": tasks}
    from forgebench.evomerge.stages import fitness_models

    for model, fitness_suites in fitness_models(config).items():
        entry = out.setdefault(model, {"suites": [], "tasks": []})
        entry["suites"] = list(dict.fromkeys([*entry["suites"], *fitness_suites]))
    return out


def compression_method(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A method's settings as its job receives them (without the ``enabled`` switch)."""
    section = config["suites"]["compression"]["methods"][method]
    return {k: v for k, v in section.items() if k != "enabled"}


def compression_outputs(config: Mapping[str, Any]) -> list[str]:
    comp = config.get("suites", {}).get("compression", {})
    if not comp.get("enabled", False):
        return []
    return [
        COMPRESSION_RAW.format(model=m, method=method)
        for m in comp.get("models", [])
        for method, mcfg in comp.get("methods", {}).items()
        if mcfg.get("enabled", True)
    ]


def evomerge_outputs(config: Mapping[str, Any]) -> list[str]:
    from forgebench.evomerge.stages import raw_outputs as evolution_outputs

    return evolution_outputs(config)


def evaluated_models(config: Mapping[str, Any]) -> list[str]:
    """Every model the evaluation stage scores, in config order, without repeats."""
    if not evaluation_enabled(config):
        return []
    derived = [m for m, d in derived_models(config).items() if d["suites"] or d["tasks"]]
    return list(dict.fromkeys([*config["evaluation"]["models"], *derived]))


def _derived(config: Mapping[str, Any], model: str) -> dict[str, list[str]] | None:
    derived = derived_models(config)
    if model in derived and model not in config["evaluation"]["models"]:
        return derived[model]
    return None


def model_suites(config: Mapping[str, Any], model: str) -> list[str]:
    """Suites ``model`` is scored on: the evaluation's for configured models, its own
    stage's for a derived one (a smaller set keeps the default run in budget)."""
    d = _derived(config, model)
    return list(config["evaluation"]["suites"]) if d is None else d["suites"]


def model_task_datasets(config: Mapping[str, Any], model: str) -> list[str]:
    """The prepared datasets a model's evaluation reads."""
    names = [task_dataset(t) for t in model_tasks(config, model)]
    return [DATASET_DIR.format(dataset=d) for d in dict.fromkeys(n for n in names if n)]


def model_tasks(config: Mapping[str, Any], model: str) -> list[str]:
    """Distinct tasks of the model's suites (a task several suites share runs once), plus
    a derived model's own task list."""
    from forgebench.evaluation.suites import tasks_for

    d = _derived(config, model)
    tasks = tasks_for(model_suites(config, model), allow_online=config["datasets"]["allow_online"])
    return list(dict.fromkeys([*tasks, *(d["tasks"] if d else [])]))


def evaluation_tasks(config: Mapping[str, Any]) -> list[str]:
    """Every task some evaluated model runs."""
    if not evaluation_enabled(config):
        return []
    tasks = [t for m in evaluated_models(config) for t in model_tasks(config, m)]
    return list(dict.fromkeys(tasks))


def eval_outputs(config: Mapping[str, Any]) -> list[str]:
    """Measurement files of every model's evaluation, every (model, suite) score and every
    paired comparison of a model with its baseline."""
    from forgebench.evaluation.paired import pairs_for

    models = evaluated_models(config)
    out = []
    for m in models:
        out.append(EVAL_RAW.format(model=m))
        out += [SUITE_RAW.format(model=m, suite=s) for s in model_suites(config, m)]
    for baseline, candidate in pairs_for(config.get("evaluation", {}), models):
        out.append(PAIR_RAW.format(baseline=baseline, candidate=candidate))
    return out


def suite_tasks(config: Mapping[str, Any], suite: str) -> list[str]:
    """Tasks a suite's score reads (those with data under the config's online setting)."""
    from forgebench.evaluation.suites import tasks_for

    return tasks_for([suite], allow_online=config["datasets"]["allow_online"])


def pair_tasks(config: Mapping[str, Any], baseline: str, candidate: str) -> list[str]:
    """Tasks both models of a pair were evaluated on."""
    theirs = set(model_tasks(config, baseline))
    return [t for t in model_tasks(config, candidate) if t in theirs]


def raw_outputs(config: Mapping[str, Any]) -> list[str]:
    """Measurement files of every enabled benchmark and model stage: the report's inputs."""
    return [
        *(RAW.format(suite=s.suite, benchmark=s.name) for s in enabled_benchmarks(config)),
        *(MODEL_RAW.format(model=m) for m in model_names(config)),
        *compression_outputs(config),
        *eval_outputs(config),
        *evomerge_outputs(config),
    ]


def final_outputs(config: Mapping[str, Any]) -> list[str]:
    """Targets of ``rule all``: the raw results of each enabled suite, the run's entry in
    the history and the report."""
    return [*raw_outputs(config), SUMMARY, RUN, REPORT]


# Records the workflow's own stages write (not registered benchmarks): targets and
# comparisons may name them. Suites whose benchmark is a task name match any benchmark.
STAGE_BENCHMARKS = {"compression/weights", "models/build", "evomerge/evolution"}
STAGE_SUITES = {"eval", "eval_pairs"}


def _known_benchmark(suite: str, benchmark: str) -> bool:
    key = f"{suite}/{benchmark}"
    return key in BENCHMARKS or key in STAGE_BENCHMARKS or suite in STAGE_SUITES


def check_references(config: Mapping[str, Any]) -> None:
    """Checks the schema cannot express: comparisons and targets name things that exist."""
    comparisons = {c["name"] for c in config.get("comparisons", [])}
    for i, comp in enumerate(config.get("comparisons", [])):
        if not _known_benchmark(comp["suite"], comp["benchmark"]):
            BENCHMARKS.get(comp["suite"], comp["benchmark"])  # raises with close matches
        if comp["baseline"] == comp["candidate"]:
            raise ForgebenchError(f"config key 'comparisons.{i}': baseline and candidate are equal")
    for i, target in enumerate(config.get("targets", [])):
        if "comparison" in target and (
            "benchmark" in target or target["statistic"] != "improvement"
        ):
            raise ForgebenchError(
                f"config key 'targets.{i}': a target on a comparison has statistic "
                "'improvement' and no suite/benchmark/case/metric"
            )
        if "benchmark" in target and target["statistic"] == "improvement":
            raise ForgebenchError(
                f"config key 'targets.{i}': 'improvement' needs a 'comparison', not a benchmark"
            )
        if "comparison" not in target and "benchmark" not in target:
            continue  # a target nothing measures: reported as "not measured"
        if "comparison" in target:
            if target["comparison"] not in comparisons:
                raise ForgebenchError(
                    f"config key 'targets.{i}.comparison': no comparison named "
                    f"{target['comparison']!r}; defined: {sorted(comparisons)}"
                )
        elif not _known_benchmark(target["suite"], target["benchmark"]):
            BENCHMARKS.get(target["suite"], target["benchmark"])


def wildcard_pattern(values: list[str]) -> str:
    """A wildcard constraint matching exactly the given names."""
    return "|".join(sorted(values))
