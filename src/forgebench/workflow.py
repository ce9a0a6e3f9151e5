"""What the Snakefile asks of the package: enabled benchmarks, their outputs and resources.

Kept out of rules/common.smk so that every branch has a test, and light to import (no
pandas) so that an up-to-date workflow starts in well under the 5 s budget.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forgebench.datasets.catalog import DATASET_NAMES
from forgebench.errors import ForgebenchError
from forgebench.outage import CONFIG_KEY as OUTAGE_KEY
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
    """The config section a benchmark's ``run`` receives (without the ``enabled`` switch);
    a benchmark that drives a server also gets the run's ``outage`` limits."""
    section = config["suites"][suite]["benchmarks"][name]
    out = {k: v for k, v in section.items() if k != "enabled"}
    if f"{suite}/{name}" in BENCHMARKS and BENCHMARKS.get(suite, name).drives_server:
        out[OUTAGE_KEY] = dict(config.get(OUTAGE_KEY) or {})
    return out


def benchmark_inputs(config: Mapping[str, Any], suite: str, name: str) -> dict[str, str]:
    """The model a benchmark reads (its spec ``needs`` one), as ``model_dir``; or the
    compression jobs' outputs it reads (``compressed``: the selector), as ``compressed``;
    and the compression job's artifact the pipeline's first stage reads, where one has its
    configuration, as ``first_stage``."""
    needs = BENCHMARKS.get(suite, name).needs
    if "compressed" in needs:
        from forgebench.compression.selector import inputs

        section = benchmark_config(config, suite, name)
        folder = f"results/compression/{section['model']}"
        return {"compressed": inputs(folder, [str(c) for c in section.get("candidates", [])])}
    if "model" not in needs:
        return {}
    section = benchmark_config(config, suite, name)
    out = {"model_dir": MODEL_DIR.format(model=section["model"])}
    if "first_stage" in needs:
        from forgebench.compression.method_config import first_stage_artifact

        artifact = first_stage_artifact(config, section)
        if artifact:
            out["first_stage"] = artifact
    return out


def benchmark_dataset_inputs(config: Mapping[str, Any], suite: str, name: str) -> list[str]:
    """The prepared datasets a ``datasets``-needing benchmark reads (all nine)."""
    if "datasets" not in BENCHMARKS.get(suite, name).needs:
        return []
    return [DATASET_DIR.format(dataset=d) for d in DATASET_NAMES]


def from_root(path: str, basedir: str | Path, workdir: str | Path) -> str:
    """A config path relative to the repository root (``basedir``, where the Snakefile
    is), rewritten relative to the working directory jobs run in; absolute paths stay.

    Job params hold this, never an absolute path: moving the checkout (with the working
    directory and what the path names inside or beside it) leaves the params, and so
    Snakemake's params trigger, unchanged. Symlinks in the path are kept, not resolved.
    """
    if Path(path).expanduser().is_absolute():
        return str(Path(path).expanduser())
    full = os.path.normpath(os.path.join(os.path.realpath(basedir), path))
    return os.path.relpath(full, os.path.realpath(workdir))


def job_datasets_config(
    section: Mapping[str, Any], basedir: str | Path, workdir: str | Path
) -> dict[str, Any]:
    """The ``datasets`` section a dataset job receives: a relative ``mirror`` is taken
    from the repository root and given relative to the working directory (``from_root``)."""
    out = dict(section)
    mirror = out.get("mirror")
    if mirror is not None:
        out["mirror"] = from_root(mirror, basedir, workdir)
    return out


def task_dataset(task: str) -> str | None:
    """The prepared dataset an evaluation task reads; None for a task read from the hub."""
    name = task.removeprefix(TASK_PREFIX)
    return name if task.startswith(TASK_PREFIX) and name in DATASET_NAMES else None


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Models the config defines (built, fetched or read from a path)."""
    return list(config.get("models", {}))


def used_models(config: Mapping[str, Any]) -> list[str]:
    """Models under ``models:`` that an enabled stage reads, in config order: evaluated,
    compressed, read by a benchmark, or EvoMerge seeds. Only these are built (a model
    nothing reads would cost its build and give nothing)."""
    wanted: set[str] = set()
    if evaluation_enabled(config):
        wanted.update(config["evaluation"].get("models", []))
    comp = config.get("suites", {}).get("compression", {})
    if comp.get("enabled", False):
        wanted.update(comp.get("models", []))
    for spec in enabled_benchmarks(config):
        if "model" in spec.needs:
            wanted.add(benchmark_config(config, spec.suite, spec.name).get("model"))
    from forgebench.evomerge import stages

    if stages.enabled(config):
        wanted.update(stages.section(config)["seeds"])
    return [m for m in model_names(config) if m in wanted]


def _source_files(folder: Path) -> list[str]:
    """Files under a model folder a path model references (hidden ones left out), relative
    to it, sorted."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(folder)
        out += [str(rel / f) for f in files if not f.startswith(".")]
    return sorted(out)


def model_job_spec(
    config: Mapping[str, Any], model: str, basedir: str | Path, workdir: str | Path
) -> dict[str, Any]:
    """A model's spec as its job receives it: a path model's ``path`` given relative to the
    working directory (``from_root``), everything else as configured."""
    spec = dict(config["models"][model])
    if spec.get("source") in ("path", "gguf") and spec.get("path"):
        spec["path"] = from_root(str(spec["path"]), basedir, workdir)
    return spec


def model_build_inputs(
    config: Mapping[str, Any],
    model: str,
    basedir: str | Path = ".",
    workdir: str | Path = ".",
) -> list[str]:
    """A locally built model trains on the training datasets; a path model's job reads its
    folder's files in place (so changing them reruns it and what reads it); a hub model
    reads the hub cache, outside the workflow."""
    spec = config["models"][model]
    if spec.get("source") == "build":
        return [DATASET_DIR.format(dataset=d) for d in TRAINING_DATASETS]
    if spec.get("source") == "path":
        folder = model_job_spec(config, model, basedir, workdir)["path"]
        local = Path(workdir, folder) if not Path(folder).is_absolute() else Path(folder)
        return [os.path.join(folder, f) for f in _source_files(local)]
    if spec.get("source") == "gguf":  # the file: changing it reruns the conversion
        from forgebench.models.gguf import gguf_file

        job_spec = model_job_spec(config, model, basedir, workdir)
        if job_spec.get("path"):  # relative to the working directory jobs run in
            job_spec["path"] = str(Path(workdir, job_spec["path"]))
        found = gguf_file(job_spec, model).absolute()
        # Relative when inside the working directory (the checkout's .venv), so moving the
        # checkout changes no job's inputs.
        here = Path(workdir).absolute()
        return [os.path.relpath(found, here) if found.is_relative_to(here) else str(found)]
    return []


def check_model_sources(config: Mapping[str, Any], basedir: str | Path) -> None:
    """Every path model a stage reads is a folder now, before any job starts (its files are
    the model job's inputs)."""
    for name in used_models(config):
        spec = config["models"][name]
        if spec.get("source") == "gguf":
            from forgebench.models.gguf import gguf_file

            gguf_file({**spec, "path": _gguf_path(spec, basedir)}, name)
        if spec.get("source") != "path":
            continue
        folder = Path(str(spec["path"])).expanduser()
        folder = folder if folder.is_absolute() else Path(basedir, folder)
        if not folder.is_dir():
            raise ForgebenchError(
                f"config key 'models.{name}.path': {spec['path']!r} is not a directory "
                f"(looked for {folder}; a relative path is taken from the repository root)"
            )


def _gguf_path(spec: Mapping[str, Any], basedir: str | Path) -> str | None:
    """A gguf model's ``path`` from the repository root (None when it names a package)."""
    if not spec.get("path"):
        return None
    path = Path(str(spec["path"])).expanduser()
    return str(path if path.is_absolute() else Path(basedir, path))


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
    """A method's settings as its job receives them (without the ``enabled`` switch), with
    ``method`` (the compressor) and ``name`` (the config key: ``seedlm_3bit`` is SeedLM)."""
    section = config["suites"]["compression"]["methods"][method]
    return {
        **{k: v for k, v in section.items() if k != "enabled"},
        "method": method.split("_", 1)[0],
        "name": method,
    }


def compression_method_keys(config: Mapping[str, Any]) -> list[str]:
    """Every configured compression job key: the methods and their named variants."""
    keys = config.get("suites", {}).get("compression", {}).get("methods", {})
    return list(dict.fromkeys([*COMPRESSION_METHODS, *keys]))


def compression_outputs(config: Mapping[str, Any]) -> list[str]:
    comp = config.get("suites", {}).get("compression", {})
    if not comp.get("enabled", False):
        return []
    # "original": the model's own held-out perplexity, scored once for every method.
    return [
        COMPRESSION_RAW.format(model=m, method=method)
        for m in comp.get("models", [])
        for method in ["original"]
        + [k for k, mcfg in comp.get("methods", {}).items() if mcfg.get("enabled", True)]
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
    a derived model's own task list or, for a configured model, ``evaluation.tasks`` (tasks
    no suite scores, such as ARC-Easy and PIQA)."""
    from forgebench.evaluation.suites import tasks_for

    d = _derived(config, model)
    tasks = tasks_for(
        model_suites(config, model),
        allow_online=config["datasets"]["allow_online"],
        local=local_data_tasks(config),
    )
    extra = d["tasks"] if d else list(config["evaluation"].get("tasks") or [])
    return list(dict.fromkeys([*tasks, *extra]))


def local_data_tasks(config: Mapping[str, Any]) -> list[str]:
    """lm-eval built-in tasks the config gives local data files (``evaluation.local_data``):
    they run offline like our fb_* tasks."""
    return list((config.get("evaluation") or {}).get("local_data") or {})


def model_local_data(
    config: Mapping[str, Any], model: str, basedir: str | Path = ".", workdir: str | Path = "."
) -> dict[str, dict[str, list[str]]]:
    """The local data files of the model's tasks (task -> split -> files), each taken from
    the repository root and given relative to the working directory (``from_root``)."""
    section = (config.get("evaluation") or {}).get("local_data") or {}
    return {
        t: {
            split: [from_root(p, basedir, workdir) for p in ([f] if isinstance(f, str) else f)]
            for split, f in section[t].items()
        }
        for t in model_tasks(config, model)
        if t in section
    }


def model_local_data_files(
    config: Mapping[str, Any], model: str, basedir: str | Path = ".", workdir: str | Path = "."
) -> list[str]:
    """Every local data file the model's evaluation reads: changing one reruns it."""
    data = model_local_data(config, model, basedir, workdir)
    return [p for splits in data.values() for files in splits.values() for p in files]


#: Keys of ``evaluation:`` that choose what is evaluated, not how: the job's own tasks
#: (``model_tasks``) carry what they decide for it.
_EVAL_SELECTION = ("enabled", "models", "suites", "tasks", "paired", "local_data")


def evaluation_job_settings(
    config: Mapping[str, Any], model: str, basedir: str | Path = ".", workdir: str | Path = "."
) -> dict[str, Any]:
    """The ``evaluation:`` settings one model's evaluation job receives: how to evaluate
    (backend, batch, subset, ...), ``per_task`` and ``local_data`` only for this model's
    tasks (``local_data`` relative to the working directory), and the run's
    ``allow_online``. Which models and suites are listed is left out, so adding a model or
    a pair changes no other model's params (Snakemake reruns a job whose params changed).
    """
    section = config.get("evaluation", {})
    tasks = set(model_tasks(config, model))
    out = {k: v for k, v in section.items() if k not in _EVAL_SELECTION}
    out["per_task"] = {t: o for t, o in (section.get("per_task") or {}).items() if t in tasks}
    local = model_local_data(config, model, basedir, workdir)
    if local:  # absent, not empty, without any: no other job's params change
        out["local_data"] = local
    out["allow_online"] = config["datasets"]["allow_online"]
    from forgebench.evomerge.stages import fitness_subset

    subset = fitness_subset(config, model)
    if subset is not None:  # EvoMerge's own documents per task, whatever per_task says
        out.update(subset_size=subset, limit=None)
        out["per_task"] = {
            t: {k: v for k, v in o.items() if k not in ("subset_size", "limit")}
            for t, o in out["per_task"].items()
        }
    return out


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

    return tasks_for(
        [suite], allow_online=config["datasets"]["allow_online"], local=local_data_tasks(config)
    )


def pair_tasks(config: Mapping[str, Any], baseline: str, candidate: str) -> list[str]:
    """Tasks both models of a pair were evaluated on."""
    theirs = set(model_tasks(config, baseline))
    return [t for t in model_tasks(config, candidate) if t in theirs]


def raw_outputs(config: Mapping[str, Any]) -> list[str]:
    """Measurement files of every enabled benchmark and model stage: the report's inputs."""
    return [
        *(RAW.format(suite=s.suite, benchmark=s.name) for s in enabled_benchmarks(config)),
        *(MODEL_RAW.format(model=m) for m in used_models(config)),
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


def _readable_models(config: Mapping[str, Any]) -> list[str]:
    """Every name whose ``results/models/<name>`` some job makes: the models under
    ``models:``, the derived ones (compressed, merged) and EvoMerge's exported best."""
    from forgebench.evomerge import stages

    export = [stages.section(config)["export_as"]] if stages.enabled(config) else []
    return list(dict.fromkeys([*model_names(config), *derived_models(config), *export]))


def _check_model_names(config: Mapping[str, Any]) -> None:
    """Every model a stage names is one some job makes, before Snakemake would report a
    missing file for it."""
    from forgebench.config import unknown_name

    readable = _readable_models(config)
    if evaluation_enabled(config):
        for i, name in enumerate(config["evaluation"].get("models", [])):
            if name not in readable:
                raise unknown_name(f"evaluation.models.{i}", name, readable, "model")
        evaluated = evaluated_models(config)
        for i, pair in enumerate(config["evaluation"].get("paired", [])):
            for side in ("baseline", "candidate"):
                if pair[side] not in evaluated:
                    raise unknown_name(
                        f"evaluation.paired.{i}.{side}", pair[side], evaluated, "evaluated model"
                    )
    comp = config.get("suites", {}).get("compression", {})
    if comp.get("enabled", False):
        defined = model_names(config)
        for i, name in enumerate(comp.get("models", [])):
            if name not in defined:
                raise unknown_name(
                    f"suites.compression.models.{i}", name, defined, "model under `models:`"
                )
    from forgebench.evomerge import stages

    if stages.enabled(config):
        defined = model_names(config)
        for i, name in enumerate(stages.section(config)["seeds"]):
            if name not in defined:
                raise unknown_name(f"evomerge.seeds.{i}", name, defined, "model under `models:`")
    for spec in enabled_benchmarks(config):
        name = benchmark_config(config, spec.suite, spec.name).get("model")
        if "model" in spec.needs and name not in readable:
            key = f"suites.{spec.suite}.benchmarks.{spec.name}.model"
            raise unknown_name(key, str(name), readable, "model")


def _suite_keys(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config key, suite name) of every suite an enabled stage scores."""
    from forgebench.evomerge import stages

    out = []
    if evaluation_enabled(config):
        out += [(f"evaluation.suites.{i}", s) for i, s in enumerate(config["evaluation"]["suites"])]
    comp = config.get("suites", {}).get("compression", {})
    if comp.get("enabled", False):
        suites = comp.get("evaluate_suites", [])
        out += [(f"suites.compression.evaluate_suites.{i}", s) for i, s in enumerate(suites)]
    if stages.enabled(config):
        out.append(("evomerge.fitness_suite", stages.section(config)["fitness_suite"]))
    return out


def _known_tasks(config: Mapping[str, Any]) -> set[str]:
    """Task names this checkout resolves without lm-eval's index: our ``fb_*`` tasks
    (suites/tasks/*.yaml) and every task a suite file names."""
    from forgebench.evaluation.suites import SUITES_DIR, tasks_for

    ours = {p.stem for p in (SUITES_DIR / "tasks").glob("*.yaml")}
    suites = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    return ours | set(tasks_for(suites, allow_online=True))


def _lm_eval_knows(tasks: list[str]) -> list[str]:
    """Those of ``tasks`` lm-eval's own index has (built only when a name is not ours:
    indexing every built-in task takes seconds)."""
    from lm_eval.tasks import TaskManager

    names = set(TaskManager(include_defaults=True).all_tasks)
    return [t for t in tasks if t in names]


def _check_suites_and_tasks(config: Mapping[str, Any]) -> None:
    """Every suite a stage scores has its file, and every task named in the config (a
    compression stage's own tasks, ``evaluation.per_task``) exists."""
    from forgebench.evaluation.suites import load_suite

    for key, name in _suite_keys(config):
        try:
            load_suite(name)
        except ForgebenchError as exc:
            raise ForgebenchError(f"config key {key!r}: {exc}") from None
    named: list[tuple[str, str]] = []
    comp = config.get("suites", {}).get("compression", {})
    if comp.get("enabled", False):
        tasks = comp.get("evaluate_tasks", [])
        named += [(f"suites.compression.evaluate_tasks.{i}", t) for i, t in enumerate(tasks)]
    if evaluation_enabled(config):
        named += [
            (f"evaluation.per_task.{t}", t) for t in config["evaluation"].get("per_task") or {}
        ]
    if not named:
        return
    known = _known_tasks(config)
    strangers = [t for _, t in named if t not in known]
    if strangers:
        known |= set(_lm_eval_knows(strangers))
    from forgebench.config import unknown_name

    for key, task in named:
        if task not in known:
            ours = sorted(t for t in known if t.startswith(TASK_PREFIX))
            raise unknown_name(key, task, ours, "lm-eval task (ours or built in)")


def needed_datasets(config: Mapping[str, Any]) -> list[str]:
    """The prepared datasets some job of this config reads, in catalog order."""
    names: set[str] = set()
    if any("datasets" in spec.needs for spec in enabled_benchmarks(config)):
        names.update(DATASET_NAMES)
    if any(config["models"][m].get("source") == "build" for m in used_models(config)):
        names.update(TRAINING_DATASETS)
    for model in evaluated_models(config):
        names.update(task_dataset(t) or "" for t in model_tasks(config, model))
    return [n for n in DATASET_NAMES if n in names]


def check_dataset_mirror(config: Mapping[str, Any], basedir: str | Path) -> None:
    """The datasets this run reads have a source now, before any job: ``datasets.mirror``
    is a folder holding their files (a relative one taken from the repository root), or
    downloads are allowed. Otherwise the first dataset job would fail after others ran."""
    needed = needed_datasets(config)
    section = config.get("datasets", {})
    mirror, online = section.get("mirror"), bool(section.get("allow_online", False))
    if not needed or (mirror is None and online):
        return
    if mirror is None:
        raise ForgebenchError(
            "config key 'datasets.mirror': null and datasets.allow_online is false, so the "
            f"datasets this run reads ({', '.join(needed)}) have no source; set it to a folder "
            "laid out like ../shared/datasets, or set datasets.allow_online: true"
        )
    folder = Path(str(mirror)).expanduser()
    folder = folder if folder.is_absolute() else Path(basedir, folder)
    if not folder.is_dir():
        raise ForgebenchError(
            f"config key 'datasets.mirror': {mirror!r} is not a folder (looked for {folder}; "
            "a relative path is taken from the repository root); the datasets this run reads "
            f"({', '.join(needed)}) come from it"
        )
    if online:
        return  # a file missing from the mirror is downloaded
    from forgebench.datasets.catalog import get_spec
    from forgebench.datasets.fetch import with_overrides

    missing = [
        f"{name} ({src.mirror_path})"
        for name in needed
        for src in with_overrides(get_spec(name), section.get("sources")).files.values()
        if not (folder / src.mirror_path).is_file()
    ]
    if missing:
        raise ForgebenchError(
            f"config key 'datasets.mirror': {folder} lacks files this run reads and "
            f"datasets.allow_online is false: {', '.join(missing)}"
        )


#: Every job's own rows (forgebench.runner.job_case), in any benchmark's record.
JOB_CASES = ("job", "job:*")
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.]+)\}")


def _config_values(cfg: Mapping[str, Any], key: str) -> list[str]:
    """The values of a benchmark config's ``key`` as strings (a list's items, a scalar
    alone); ``list.field`` reads ``field`` of each item. Empty when the key is unset."""
    head, _, field = key.partition(".")
    value = cfg.get(head)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if field:
        items = [i.get(field) for i in items if isinstance(i, Mapping) and field in i]
    return [str(i) for i in items]


def declared_cases(config: Mapping[str, Any], suite: str, benchmark: str) -> list[str] | None:
    """The cases a benchmark writes under this config, as fnmatch patterns (its registry
    ``cases`` with each ``{key}`` replaced by every value of that key in its section, or
    ``*`` when unset); None when nothing is declared (then nothing is checked)."""
    key = f"{suite}/{benchmark}"
    if key == "compression/weights":
        methods = config.get("suites", {}).get("compression", {}).get("methods", {})
        # "original": the uncompressed model's rows, which every method is paired with
        return [*JOB_CASES, "original", *(str(m.get("name", name)) for name, m in methods.items())]
    from forgebench.evomerge import stages

    if key == f"{stages.SUITE}/{stages.EVOLUTION_BENCHMARK}":
        best, evolution = stages.BEST_CASE, stages.EVOLUTION_CASE
        return [*JOB_CASES, evolution, best, f"{best}:*", "gen*", "seed:*"]
    if key not in BENCHMARKS or not BENCHMARKS.get(suite, benchmark).cases:
        return None
    section = config.get("suites", {}).get(suite, {}).get("benchmarks", {}).get(benchmark) or {}
    out: list[str] = [*JOB_CASES]
    for pattern in BENCHMARKS.get(suite, benchmark).cases:
        expanded = [pattern]
        for name in dict.fromkeys(_PLACEHOLDER.findall(pattern)):
            values = _config_values(section, name) or ["*"]
            expanded = [e.replace(f"{{{name}}}", v) for e in expanded for v in values]
        out += expanded
    return list(dict.fromkeys(out))


def _check_case(config: Mapping[str, Any], key: str, suite: str, benchmark: str, case: Any) -> None:
    """``case`` (at config ``key``) is one the benchmark declares it writes: a misspelt case
    would otherwise leave its comparison or target quietly "not measured"."""
    from forgebench.config import unknown_name

    patterns = declared_cases(config, suite, benchmark)
    if patterns is None or any(fnmatch.fnmatchcase(str(case), p) for p in patterns):
        return
    raise unknown_name(key, str(case), patterns, f"case of {suite}/{benchmark} (as configured)")


def config_entries(config: Mapping[str, Any], key: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(config key, name, entry) of each comparison or target, whether ``key`` holds a list
    of named entries or a map of name to entry."""
    value = config.get(key) or []
    if isinstance(value, Mapping):
        return [(f"{key}.{name}", str(name), dict(e or {})) for name, e in value.items()]
    return [(f"{key}.{i}", str(e.get("name")), dict(e)) for i, e in enumerate(value)]


def _check_local_data(config: Mapping[str, Any], basedir: str | Path) -> None:
    """Each ``evaluation.local_data`` task is an lm-eval built-in task some model runs, and
    its files (relative ones from the repository root ``basedir``) exist, name the task's
    splits and hold the fields its templates read: a mistake is caught before any job."""
    if not evaluation_enabled(config) or not local_data_tasks(config):
        return
    from forgebench.evaluation.tasks import local_task_configs

    section = config["evaluation"]["local_data"]
    evaluated = set(evaluation_tasks(config))
    for task in section:
        if task not in evaluated:
            raise ForgebenchError(
                f"config key 'evaluation.local_data.{task}': no model is evaluated on {task}; "
                "list it in evaluation.tasks or name it in a suite objective (task: ...)"
            )
        try:
            local_task_configs(section, [task], Path(basedir))
        except ForgebenchError as exc:
            raise ForgebenchError(f"config key 'evaluation.local_data.{task}': {exc}") from None


def check_references(config: Mapping[str, Any], basedir: str | Path | None = None) -> None:
    """Checks the schema cannot express: the models, suites, tasks, comparisons, targets and
    cases a stage names exist (a typo is a config error naming the key, not a missing file
    mid-DAG or a verdict quietly "not measured"), and local task data files exist
    (relative to the repository root ``basedir``; default: the working directory)."""
    _check_model_names(config)
    _check_suites_and_tasks(config)
    _check_local_data(config, Path.cwd() if basedir is None else basedir)
    comparisons = {name for _, name, _ in config_entries(config, "comparisons")}
    for where, _, comp in config_entries(config, "comparisons"):
        if not _known_benchmark(comp["suite"], comp["benchmark"]):
            try:
                BENCHMARKS.get(comp["suite"], comp["benchmark"])  # raises with close matches
            except ForgebenchError as exc:
                raise ForgebenchError(f"config key '{where}.benchmark': {exc}") from None
        if comp["baseline"] == comp["candidate"]:
            raise ForgebenchError(f"config key '{where}': baseline and candidate are equal")
        for side in ("baseline", "candidate"):
            _check_case(config, f"{where}.{side}", comp["suite"], comp["benchmark"], comp[side])
    for where, _, target in config_entries(config, "targets"):
        i = where.split(".", 1)[1]
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
        else:
            if not _known_benchmark(target["suite"], target["benchmark"]):
                try:
                    BENCHMARKS.get(target["suite"], target["benchmark"])
                except ForgebenchError as exc:
                    raise ForgebenchError(f"config key '{where}.benchmark': {exc}") from None
            if "case" in target:
                _check_case(
                    config, f"{where}.case", target["suite"], target["benchmark"], target["case"]
                )


def wildcard_pattern(values: list[str]) -> str:
    """A wildcard constraint matching exactly the given names."""
    return "|".join(sorted(values))
