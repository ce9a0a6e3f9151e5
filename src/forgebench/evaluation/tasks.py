"""The fb_* lm-eval tasks (suites/tasks/*.yaml) bound to prepared Parquet datasets.

The YAMLs name their data files relative to the datasets folder; the task manager built
here makes them absolute under ``datasets_dir`` when a task is loaded, so one set of YAMLs
serves any results folder and nothing is fetched from a hub.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval.tasks import TaskManager
from lm_eval.tasks._factory import TaskFactory

from forgebench.errors import ForgebenchError

TASKS_DIR = Path(__file__).resolve().parents[3] / "suites" / "tasks"


@dataclass(frozen=True)
class TaskInfo:
    """What a task evaluates, and which lm-eval 0.4.13 built-in task it reproduces."""

    dataset: str
    eval_split: str
    output_type: str
    builtin: str
    fewshot_split: str | None  # None: few-shot is refused (no train split offline)
    num_fewshot: int  # the built-in's default


TASKS: dict[str, TaskInfo] = {
    "fb_arc_challenge": TaskInfo(
        "arc_challenge", "test", "multiple_choice", "arc_challenge", "train", 0
    ),
    "fb_arc_easy": TaskInfo("arc_easy", "test", "multiple_choice", "arc_easy", "train", 0),
    "fb_hellaswag": TaskInfo("hellaswag", "validation", "multiple_choice", "hellaswag", None, 0),
    "fb_humaneval": TaskInfo("humaneval", "test", "generate_until", "humaneval", None, 0),
    "fb_mbpp": TaskInfo("mbpp", "test", "generate_until", "mbpp", "prompt", 3),
    "fb_gsm8k": TaskInfo("gsm8k", "test", "generate_until", "gsm8k", "train", 5),
    "fb_boolq": TaskInfo("boolq", "validation", "multiple_choice", "boolq", None, 0),
    "fb_piqa": TaskInfo("piqa", "validation", "multiple_choice", "piqa", None, 0),
    "fb_winogrande": TaskInfo("winogrande", "validation", "multiple_choice", "winogrande", None, 0),
}


def bind_data_files(
    cfg: dict[str, Any], datasets_dir: Path, cache_dir: Path | None = None
) -> dict[str, Any]:
    """``cfg`` with its relative ``dataset_kwargs.data_files`` made absolute under
    ``datasets_dir``; a ForgebenchError names the dataset to prepare if a file is missing."""
    if cfg.get("task") not in TASKS:
        return cfg
    cfg = copy.copy(cfg)
    kwargs = copy.deepcopy(cfg.get("dataset_kwargs") or {})
    files = kwargs.get("data_files") or {}
    bound = {}
    for split, rel in files.items():
        path = Path(rel) if Path(rel).is_absolute() else datasets_dir / rel
        if not path.is_file():
            dataset = TASKS[cfg["task"]].dataset
            raise ForgebenchError(
                f"task {cfg['task']}: {path} not found; prepare dataset {dataset!r} "
                f"(results/datasets/{dataset}) or point the evaluation at the folder that holds it"
            )
        bound[split] = str(path)
    kwargs["data_files"] = bound
    if cache_dir is not None:
        kwargs["cache_dir"] = str(cache_dir)
    cfg["dataset_kwargs"] = kwargs
    return cfg


class _BoundFactory(TaskFactory):
    def __init__(self, datasets_dir: Path, cache_dir: Path | None, meta: dict | None) -> None:
        super().__init__(meta=meta)
        self._datasets_dir = datasets_dir
        self._cache_dir = cache_dir

    def _load_full_config(self, entry: Any, overrides: dict[str, Any] | None = None) -> dict:
        cfg = super()._load_full_config(entry, overrides)
        return bind_data_files(cfg, self._datasets_dir, self._cache_dir)


def task_manager(
    datasets_dir: Path,
    *,
    cache_dir: Path | None = None,
    include_defaults: bool = False,
    metadata: dict[str, Any] | None = None,
) -> TaskManager:
    """An lm-eval TaskManager over suites/tasks with data bound under ``datasets_dir``.

    ``cache_dir`` is where `datasets` keeps its arrow cache of the Parquet files (default:
    its own, ~/.cache/huggingface/datasets). ``include_defaults`` also indexes lm-eval's
    built-in tasks (hub data, e.g. mmlu), which takes seconds.
    """
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=include_defaults, metadata=metadata
    )
    # lm-eval 0.4.13 builds every task config through this factory (TaskManager._load_spec).
    manager._factory = _BoundFactory(
        Path(datasets_dir).resolve(), Path(cache_dir) if cache_dir else None, metadata
    )
    return manager
