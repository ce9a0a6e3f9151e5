"""A model's evaluation on its tasks through lm-eval, and its outputs.

``evaluate`` runs lm-eval's ``simple_evaluate`` once per task (the ``hf`` backend unless
the config names another), all tasks in one process on one loaded model: a fresh
process per task spent more time importing lm-eval and loading the model than a small
evaluation spends computing. It writes:

* results/eval/<model>/tasks/<task>/results.json and samples_<subtask>.jsonl: lm-eval's
  own results and per-sample log, as its EvaluationTracker writes them (fixed names);
* results/raw/eval/<model>.parquet: the measurement record (suite ``eval``, benchmark =
  task, case = model). Each task metric is a row named ``<metric>`` (filter ``none``) or
  ``<metric>.<filter>`` (``@`` and ``-`` spelt ``_at_`` and ``_``; params keep lm-eval's
  key); its standard error is a row of its own, ``<metric>_stderr`` (lm-eval's), and a
  share of documents (accuracy, acc_norm, exact match, pass@k) has its interval from the
  per-document values, ``<metric>_ci_low``/``<metric>_ci_high``: Clopper-Pearson, exact,
  where they are 0/1 (``samples.document_interval``; 0/20 is [0, 16.8%], where value ±
  z·stderr said [0, 0]). Beside them the chance level of multiple-choice tasks
  (``samples.chance_levels``: ``chance_uniform``, the mean of 1 / choices;
  ``chance_majority``, the share of the most frequent gold answer; ``chance_acc``, the
  higher of the two), ``n_docs`` and ``wall_time`` (the task's own time; loading the
  model is logged and in the provenance). A task that cannot run is one ``evaluation``
  row with its status (``unavailable`` for missing data or hub data while offline, else
  ``error:<Class>``) and the reason in params, never an exception that stops the others;
* results/raw/eval/<model>.samples.parquet: per-document values keyed by document hash,
  with a ``task`` column (forgebench.evaluation.samples).

The default config evaluates a seeded subset of each task's documents: indices drawn
from the document count and the seed only, so every model sees the same documents.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.evaluation.samples import (
    chance_levels,
    document_interval,
    empty_samples,
    samples_frame,
    write_lm_eval_results,
    write_samples,
)
from forgebench.record import Recorder, status_for, validate_measurements, write_measurements

log = logging.getLogger(__name__)

#: 2: ``chance_acc`` is the higher of the uniform and the majority-class baseline.
BENCHMARK_VERSION = 2
SUITE = "eval"
#: The benchmark name of an evaluation job's own rows (job duration, memory).
JOB_BENCHMARK = "evaluation"
OFFLINE_PREFIX = "fb_"
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
#: lm-eval's generation length for a task that sets none (TemplateLM/HFLM max_gen_toks).
LM_EVAL_MAX_GEN_TOKS = 256
#: Where lm-eval draws few-shot examples from before it falls back to the scored documents.
_FEWSHOT_SOURCES = ("fewshot_split", "training_split", "validation_split")
#: Metrics that are proportions of documents (unit "fraction"); any other is a "score".
_FRACTIONS = re.compile(r"^(acc|acc_norm|acc_mutual_info|exact_match|em|mcc|pass@\d+|pass_at_\d+)$")


class TaskUnavailable(Exception):
    """The task's data cannot be had here (not prepared, or on the Hub while offline)."""


@dataclass(frozen=True)
class EvalSettings:
    """The ``evaluation:`` config section, checked."""

    backend: str = "hf"
    model_args: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = "cpu"
    batch_size: int | str = 16
    num_fewshot: int | None = None
    limit: int | None = None
    subset_size: int | None = None
    max_gen_toks: int | None = None
    bootstrap_iters: int = 1000
    allow_online: bool = False
    confirm_run_unsafe_code: bool = True

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> EvalSettings:
        known = {f for f in cls.__dataclass_fields__}
        settings = cls(**{k: v for k, v in cfg.items() if k in known})
        if settings.limit is not None and settings.subset_size is not None:
            raise ForgebenchError(
                "evaluation.limit and evaluation.subset_size are exclusive (first N documents "
                f"vs a seeded subset); got limit={settings.limit}, "
                f"subset_size={settings.subset_size}: set one of them to null"
            )
        for key in ("limit", "subset_size", "max_gen_toks"):
            value = getattr(settings, key)
            if value is not None and int(value) < 1:
                raise ForgebenchError(f"evaluation.{key} must be >= 1 or null, got {value}")
        if not (
            isinstance(settings.batch_size, int) or str(settings.batch_size).startswith("auto")
        ):
            raise ForgebenchError(
                f"evaluation.batch_size must be an integer or 'auto', got {settings.batch_size!r}"
            )
        return settings


@dataclass(frozen=True)
class EvalPaths:
    """Where one model's evaluation writes."""

    record: Path
    samples: Path
    lm_eval_root: Path

    def lm_eval_dir(self, task: str) -> Path:
        return self.lm_eval_root / task

    def results_json(self, task: str) -> Path:
        return self.lm_eval_dir(task) / "results.json"


def output_paths(out_dir: str | Path, model: str) -> EvalPaths:
    """Paths under the results folder ``out_dir`` (normally ``results``)."""
    out = Path(out_dir)
    return EvalPaths(
        record=out / "raw" / "eval" / f"{model}.parquet",
        samples=out / "raw" / "eval" / f"{model}.samples.parquet",
        lm_eval_root=out / "eval" / model / "tasks",
    )


def metric_name(metric: str, filt: str) -> str:
    """The record's name for lm-eval's ``metric,filter`` key: ``acc``,
    ``exact_match.strict_match``, ``pass_at_1.create_test``."""
    name = metric if filt == "none" else f"{metric}.{filt}"
    return re.sub(r"[^A-Za-z0-9_.]", "_", name.replace("@", "_at_"))


def select_docs(n_docs: int, size: int | None, seed: int) -> list[int] | None:
    """Seeded document indices (sorted) from the task's document count and the seed only,
    so every model gets the same ones; None means all documents."""
    if size is None or size >= n_docs:
        return None
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_docs, size=size, replace=False))


def set_offline_env(allow_online: bool) -> None:
    """Forbid Hugging Face downloads unless going online is allowed. Read by
    huggingface_hub / datasets / transformers when first imported, so call it first."""
    for name in OFFLINE_ENV:
        if allow_online:
            os.environ.pop(name, None)
        else:
            os.environ[name] = "1"


PER_TASK_KEYS = ("limit", "subset_size", "max_gen_toks", "num_fewshot", "batch_size")


def task_config(cfg: Mapping[str, Any], task: str) -> dict[str, Any]:
    """The evaluation section with ``per_task[task]`` applied (e.g. fewer GSM8K documents,
    whose few-shot prompts cost ~5x an ARC document)."""
    override = dict((cfg.get("per_task") or {}).get(task) or {})
    unknown = sorted(set(override) - set(PER_TASK_KEYS))
    if unknown:
        raise ForgebenchError(
            f"evaluation.per_task.{task}: unknown keys {unknown}; allowed: {list(PER_TASK_KEYS)}"
        )
    if "limit" in override and "subset_size" not in override:
        override["subset_size"] = None
    if "subset_size" in override and "limit" not in override:
        override["limit"] = None
    return {**{k: v for k, v in cfg.items() if k != "per_task"}, **override}


def check_backend(name: str) -> None:
    """A ForgebenchError naming the config key if lm-eval has no such model backend."""
    from lm_eval.api.registry import get_model

    try:
        get_model(name)
    except Exception as exc:
        raise ForgebenchError(
            f"evaluation.backend: lm-eval has no model backend {name!r} ({exc}); "
            "use one of lm-eval's model types, e.g. hf, vllm, local-completions"
        ) from None


class _Loaded:
    """What one evaluation job loads once for all its tasks: the task managers and the
    lm-eval model objects (one per distinct backend setting; per-task overrides of
    ``model_args``, ``batch_size`` or ``device`` get their own)."""

    def __init__(
        self,
        model_dir: Path,
        datasets_dir: Path,
        task_manager: Any = None,
        local: Mapping[str, dict[str, Any]] | None = None,
        local_files: Mapping[str, Any] | None = None,
    ) -> None:
        self.model_dir, self.datasets_dir, self.given = model_dir, datasets_dir, task_manager
        # built-in tasks on local data: their bound configs, and their files as configured
        self.local, self.local_files = dict(local or {}), dict(local_files or {})
        self.managers: dict[bool, Any] = {}
        self.models: dict[str, Any] = {}
        self.load_s = 0.0

    def task_manager(self, task: str) -> Any:
        if self.given is not None:
            return self.given
        ours = self.offline(task)
        if ours not in self.managers:
            if ours:
                from forgebench.evaluation.tasks import task_manager

                self.managers[ours] = task_manager(self.datasets_dir, local=self.local)
            else:
                from lm_eval.tasks import TaskManager

                self.managers[ours] = TaskManager()
        return self.managers[ours]

    def offline(self, task: str) -> bool:
        """Whether the task reads local data: ours (fb_*) or a built-in given files."""
        return task.startswith(OFFLINE_PREFIX) or task in self.local

    def model_args(self, settings: EvalSettings) -> dict[str, Any]:
        return {"pretrained": str(self.model_dir), **dict(settings.model_args)}

    def lm(self, settings: EvalSettings) -> Any:
        """lm-eval's model object, built as ``simple_evaluate`` builds it from a name."""
        args = self.model_args(settings)
        extra = {
            "batch_size": settings.batch_size,
            "max_batch_size": None,
            "device": settings.device,
        }
        key = json.dumps([settings.backend, args, extra], sort_keys=True, default=str)
        if key not in self.models:
            from lm_eval.api.registry import get_model

            t0 = time.perf_counter()
            self.models[key] = get_model(settings.backend).create_from_arg_obj(args, extra)
            elapsed = time.perf_counter() - t0
            self.load_s += elapsed
            log.info("%s: model loaded in %.1f s", self.model_dir, elapsed)
        return self.models[key]


def _unavailable_cause(exc: BaseException) -> bool:
    """Whether a task-loading failure means its data is missing (not a bug)."""
    names = {"FileNotFoundError", "DatasetNotFoundError", "OfflineModeIsEnabled", "ConnectionError"}
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in names or isinstance(seen, ForgebenchError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class _Outcome:
    results: dict[str, Any]
    leaves: dict[str, Any]
    selection: dict[str, Any]
    lm_eval_s: float


def _run_lm_eval(task: str, settings: EvalSettings, seed: int, loaded: _Loaded) -> _Outcome:
    import lm_eval

    try:
        manager = loaded.task_manager(task)
        tasks = manager.load([task])
        leaves = tasks["tasks"]
        top = tasks["groups"].get(task) or leaves[task]
        n_docs = {name: len(t.eval_docs) for name, t in leaves.items()}
    except Exception as exc:
        if _unavailable_cause(exc):
            raise TaskUnavailable(f"{task}: {exc}") from exc
        raise
    samples = None
    selection: dict[str, Any] = {"mode": "all", "n_docs_total": sum(n_docs.values())}
    if settings.limit is not None:
        selection = {**selection, "mode": "limit", "limit": settings.limit}
    elif settings.subset_size is not None:
        picks = {name: select_docs(n, settings.subset_size, seed) for name, n in n_docs.items()}
        if any(p is not None for p in picks.values()):
            samples = {
                name: p if p is not None else list(range(n_docs[name])) for name, p in picks.items()
            }
            selection = {**selection, "mode": "subset", "subset_size": settings.subset_size}
    gen_kwargs = None
    if settings.max_gen_toks is not None:
        own = [
            (t.config.generation_kwargs or {}).get("max_gen_toks")
            for t in leaves.values()
            if t.config.output_type == "generate_until"
        ]
        if own:
            caps = [settings.max_gen_toks] + [int(v or LM_EVAL_MAX_GEN_TOKS) for v in own]
            gen_kwargs = {"max_gen_toks": min(caps)}
    lm = loaded.lm(settings)
    started = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm,
        model_args=loaded.model_args(settings),
        tasks=[top],
        num_fewshot=settings.num_fewshot,
        batch_size=settings.batch_size,
        device=settings.device,
        limit=settings.limit,
        samples=samples,
        bootstrap_iters=settings.bootstrap_iters,
        log_samples=True,
        gen_kwargs=gen_kwargs,
        task_manager=manager,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        confirm_run_unsafe_code=settings.confirm_run_unsafe_code,
    )
    elapsed = time.perf_counter() - started
    if results is None:
        raise RuntimeError("lm-eval returned no results (not rank 0)")
    results = dict(results)
    # A pre-built model is recorded by its class name; keep the backend's name, as a run
    # that passes the name records it.
    results["config"] = {**results.get("config", {}), "model": settings.backend}
    selection["gen_kwargs"] = gen_kwargs
    return _Outcome(results, leaves, selection, elapsed)


def n_choices_fn(leaves: Mapping[str, Any]) -> Any:
    def n_choices(subtask: str, doc: Mapping[str, Any]) -> int | None:
        t = leaves.get(subtask)
        if t is None or t.config.output_type != "multiple_choice":
            return None
        return len(t.doc_to_choice(doc))

    return n_choices


def gold_fn(leaves: Mapping[str, Any]) -> Any:
    """The index of a multiple-choice document's right answer, found as lm-eval's
    ``process_results`` finds it (``doc_to_text`` for multiple-input tasks such as
    WinoGrande, else ``doc_to_target``; a string is looked up among the choices); None
    where there is no one index (not multiple choice, several golds, out of range)."""

    def gold(subtask: str, doc: Mapping[str, Any]) -> int | None:
        t = leaves.get(subtask)
        if t is None or t.config.output_type != "multiple_choice":
            return None
        choices = t.doc_to_choice(doc)
        g = t.doc_to_text(doc) if getattr(t, "multiple_input", 0) else t.doc_to_target(doc)
        if isinstance(g, str):
            return choices.index(g) if g in choices else None
        if isinstance(g, int | np.integer) and not isinstance(g, bool) and 0 <= g < len(choices):
            return int(g)
        return None

    return gold


def _metric_rows(
    rec: Recorder,
    model: str,
    task: str,
    results: Mapping[str, Any],
    base: Mapping[str, Any],
    started_at: Any,
    samples: pd.DataFrame | None = None,
    confidence: float = 0.95,
) -> int:
    """Rows for every numeric metric lm-eval reports for ``task`` (and their stderr); for
    a share of documents, its interval from ``samples`` (``_interval_rows``)."""
    res = results["results"][task]
    hib = results.get("higher_is_better", {}).get(task, {})
    count = 0
    for key, value in res.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        if metric.endswith("_stderr") or not isinstance(value, int | float):
            continue
        name = metric_name(metric, filt)
        unit = "fraction" if _FRACTIONS.match(metric) else "score"
        params = {**base, "lm_eval_key": key, "filter": filt}
        rec.add(
            model,
            params,
            name,
            unit,
            bool(hib.get(metric, True)),
            float(value),
            started_at=started_at,
        )
        count += 1
        stderr = res.get(f"{metric}_stderr,{filt}")
        if isinstance(stderr, int | float) and math.isfinite(stderr):
            rec.add(
                model, params, f"{name}_stderr", unit, False, float(stderr), started_at=started_at
            )
        if unit == "fraction" and samples is not None:
            sel = samples[(samples["metric"] == metric) & (samples["filter"] == filt)]
            _interval_rows(rec, model, name, float(value), sel, params, confidence, started_at)
    return count


def _interval_rows(
    rec: Recorder,
    model: str,
    name: str,
    value: float,
    sel: pd.DataFrame,
    params: Mapping[str, Any],
    confidence: float,
    started_at: Any,
) -> None:
    """``<name>_ci_low``/``_ci_high`` from the metric's per-document rows ``sel``
    (``document_interval``). None where lm-eval's figure is not their mean (a group whose
    aggregate is not weighted by size): an interval of another figure would mislead."""
    metric = str(params.get("lm_eval_key", "")).split(",", 1)[0]
    values = sel.drop_duplicates(["subtask", "doc_id"])["value"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    if abs(float(values.mean()) - value) > 1e-9:
        log.warning(
            "%s: %s is %.6g but its documents' mean is %.6g: no interval recorded",
            params.get("task"), name, value, float(values.mean()),
        )  # fmt: skip
        return
    low, high, how = document_interval(values, metric, confidence)
    if not (math.isfinite(low) and math.isfinite(high)):
        return
    ci_params = {**params, "interval": how, "confidence": confidence, "n": int(values.size)}
    for suffix, bound in (("_ci_low", low), ("_ci_high", high)):
        rec.add(model, ci_params, name + suffix, "fraction", True, bound, started_at=started_at)


def evaluate(
    model_dir: str | Path,
    model_name: str,
    tasks: str | Sequence[str],
    *,
    cfg: Mapping[str, Any],
    datasets_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    task_manager: Any = None,
    provenance: Mapping[str, Any] | None = None,
    threads: int | None = None,
    write_record: bool = True,
    provenance_out: dict[str, Any] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Evaluate ``model_dir`` on ``tasks``, in order, loading the model once; write the
    outputs (``output_paths``); return the measurement rows. With ``write_record=False``
    the caller writes the rows (the workflow job adds its resource rows first) and
    ``provenance_out`` receives their provenance. ``cfg`` is the ``evaluation:`` section;
    ``task_manager`` overrides the default (suites/tasks over ``datasets_dir`` for fb_*
    tasks and the built-ins ``cfg["local_data"]`` gives files for, bound to them; lm-eval's
    built-ins otherwise). ``threads`` caps torch's CPU threads (the job's
    share of the cores: more threads than cores slows a CPU evaluation several-fold).
    ``confidence`` is the level of the recorded intervals (``statistics.confidence``).
    Only config mistakes raise; a task that cannot run becomes failed rows.
    """
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if not tasks or len(set(tasks)) != len(tasks):
        raise ForgebenchError(f"evaluation of {model_name}: tasks must be distinct, got {tasks}")
    settings = {t: EvalSettings.from_cfg(task_config(cfg, t)) for t in tasks}
    for s in settings.values():
        check_backend(s.backend)
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
    paths = output_paths(out_dir, model_name)
    from forgebench.evaluation.tasks import local_task_configs

    local = local_task_configs(cfg.get("local_data"), tasks)  # a mistake raises, before any task
    for task, bound in local.items():
        shots = settings[task].num_fewshot
        shots = (bound.get("num_fewshot") or 0) if shots is None else shots
        if shots and not any(bound.get(k) for k in _FEWSHOT_SOURCES):
            raise ForgebenchError(
                f"evaluation.local_data.{task}: {shots}-shot prompts need its training (or "
                "validation) split: with only the evaluated split lm-eval would draw the "
                "examples from the documents it scores; add one or set num_fewshot: 0"
            )
    files = {t: (cfg.get("local_data") or {})[t] for t in local}
    loaded = _Loaded(Path(model_dir), Path(datasets_dir), task_manager, local, files)
    frames, samples, lm_config = [], [], {}
    for task in tasks:
        rows, task_samples, results = _evaluate_task(
            loaded, model_name, task, settings[task], seed, threads, paths, confidence
        )
        frames.append(rows)
        samples.append(task_samples)
        if results:
            lm_config[task] = json.loads(json.dumps(results.get("config", {}), default=str))
    frame = pd.concat(frames, ignore_index=True)
    write_samples(
        pd.concat(samples, ignore_index=True),
        paths.samples,
        {"model": model_name, "tasks": tasks},
    )
    prov = dict(provenance or {})
    prov.update(
        {
            "evaluation": {
                t: {**asdict(s), "model_args": dict(s.model_args)} for t, s in settings.items()
            },
            "tasks": tasks,
            "model": model_name,
            "model_dir": str(model_dir),
            "model_load_s": loaded.load_s,
            "datasets_dir": str(datasets_dir),
            "seed": seed,
            "confidence": confidence,
            "lm_eval_config": lm_config,
            "local_data": {t: local_data_provenance(c) for t, c in local.items()},
        }
    )
    if provenance_out is not None:
        provenance_out.update(prov)
    if not write_record:
        return validate_measurements(frame)
    return write_measurements(frame, paths.record, prov)


def _evaluate_task(
    loaded: _Loaded,
    model_name: str,
    task: str,
    settings: EvalSettings,
    seed: int,
    threads: int | None,
    paths: EvalPaths,
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """One task's rows, per-document samples and lm-eval results (empty if it failed);
    writes lm-eval's own files (or a status file saying why there are none)."""
    from forgebench.record import utcnow

    set_offline_env(settings.allow_online)
    rec = Recorder(SUITE, task, BENCHMARK_VERSION)
    base = {
        "threads": threads,
        "task": task,
        "backend": settings.backend,
        "batch_size": settings.batch_size,
        "num_fewshot": settings.num_fewshot,
        "seed": seed,
    }
    if task in loaded.local:  # as configured: rows of two checkouts stay comparable
        base["data_files"] = loaded.local_files[task]
    started_at = utcnow()
    t0 = time.perf_counter()
    load_before = loaded.load_s
    frame_samples = empty_samples()
    lm_results: dict[str, Any] = {}
    try:
        if not loaded.offline(task) and not settings.allow_online:
            raise TaskUnavailable(
                f"{task} has no offline data (evaluation.local_data can give its files) and "
                "datasets.allow_online is false"
            )
        log.info("%s on %s: evaluating (%s backend)", model_name, task, settings.backend)
        out = _run_lm_eval(task, settings, seed, loaded)
        lm_results = out.results
        frame_samples = samples_frame(
            out.results.get("samples") or {},
            model=model_name,
            task=task,
            n_choices=n_choices_fn(out.leaves),
            gold=gold_fn(out.leaves),
        )
        n_docs = int(frame_samples.drop_duplicates(["subtask", "doc_id"]).shape[0])
        params = {
            **base,
            **out.selection,
            "n_docs": n_docs,
            "lm_eval_version": out.results.get("lm_eval_version"),
        }
        if not _metric_rows(
            rec, model_name, task, out.results, params, started_at, frame_samples, confidence
        ):
            raise RuntimeError(f"lm-eval reported no numeric metric for {task}")
        for key, chance in chance_levels(frame_samples).items():
            if math.isfinite(chance):
                rec.add(model_name, params, key, "fraction", True, chance, started_at=started_at)
        rec.add(model_name, params, "n_docs", "docs", True, float(n_docs), started_at=started_at)
        rec.add(
            model_name, params, "lm_eval_time", "s", False, out.lm_eval_s, started_at=started_at
        )
        # The task's own time: loading the model (once per job) is not part of it.
        wall = time.perf_counter() - t0 - (loaded.load_s - load_before)
        rec.add(model_name, params, "wall_time", "s", False, wall, started_at=started_at)
        log.info("%s on %s: %d docs in %.1f s", model_name, task, n_docs, wall)
    except TaskUnavailable as exc:
        rec = Recorder(SUITE, task, BENCHMARK_VERSION)
        _failed(rec, model_name, base, "unavailable", exc, started_at)
    except Exception as exc:  # a failing task is a failed row, never a crashed suite
        log.exception("%s on %s failed", model_name, task)
        rec = Recorder(SUITE, task, BENCHMARK_VERSION)
        _failed(rec, model_name, base, status_for(exc), exc, started_at)
        frame_samples = empty_samples()
        lm_results = {}
    frame = rec.frame()
    if lm_results:
        write_lm_eval_results(lm_results, paths.lm_eval_dir(task))
    else:
        from forgebench.atomic import write_text_atomic

        reason = json.loads(frame["params"].iloc[0]).get("reason", "")
        write_text_atomic(
            paths.results_json(task),
            json.dumps({"forgebench_status": frame["status"].iloc[0], "reason": reason}, indent=2),
        )
    return frame, frame_samples, lm_results


def local_data_provenance(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Which files a local task read: each split's files with their size and SHA-256, so a
    record says which copy of the data its figures came from."""
    from forgebench.datasets.fetch import sha256_bytes

    def described(path: str) -> dict[str, Any]:
        data = Path(path).read_bytes()
        return {"path": path, "bytes": len(data), "sha256": sha256_bytes(data)}

    return {
        split: [described(p) for p in ps]
        for split, ps in cfg["dataset_kwargs"]["data_files"].items()
    }


def _failed(
    rec: Recorder, model: str, base: Mapping[str, Any], status: str, exc: BaseException, at: Any
) -> None:
    reason = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
    log.warning("%s: %s (%s)", base["task"], status, reason)
    rec.add(
        model,
        {**base, "reason": reason},
        "evaluation",
        "run",
        True,
        math.nan,
        status=status,
        started_at=at,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of one evaluation job (the overhead benchmark runs it as a process)."""
    p = argparse.ArgumentParser(prog="python -m forgebench.evaluation.runner")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--model", required=True, help="model name (the record's case)")
    p.add_argument("--task", required=True, nargs="+", help="one or more tasks, in order")
    p.add_argument("--config", required=True, help="the evaluation: section as JSON")
    p.add_argument("--datasets-dir", required=True)
    p.add_argument("--out-dir", required=True, help="results folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--confidence", type=float, default=0.95, help="level of the intervals")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    frame = evaluate(
        args.model_dir,
        args.model,
        args.task,
        cfg=json.loads(args.config),
        datasets_dir=args.datasets_dir,
        out_dir=args.out_dir,
        seed=args.seed,
        threads=args.threads,
        confidence=args.confidence,
    )
    return 0 if (frame["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
