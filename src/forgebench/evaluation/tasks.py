"""The fb_* lm-eval tasks (suites/tasks/*.yaml) bound to prepared Parquet datasets, and
any lm-eval built-in task bound to the user's own files (config ``evaluation.local_data``).

The YAMLs name their data files relative to the datasets folder; the task manager built
here makes them absolute under ``datasets_dir`` when a task is loaded, so one set of YAMLs
serves any results folder and nothing is fetched from a hub. A built-in task keeps its
own config (templates, metrics) read from lm-eval's registry; only its dataset is swapped
for the `datasets` loader of the local files' format (``bind_local_data``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lm_eval.tasks as lm_eval_tasks
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
    local: Mapping[str, dict[str, Any]] | None = None,
) -> TaskManager:
    """An lm-eval TaskManager over suites/tasks with data bound under ``datasets_dir``.

    ``cache_dir`` is where `datasets` keeps its arrow cache of the Parquet files (default:
    its own, ~/.cache/huggingface/datasets). ``include_defaults`` also indexes lm-eval's
    built-in tasks (hub data, e.g. mmlu), which takes seconds. ``local`` adds built-in
    tasks by name with their configs bound to local files (``local_task_configs``).
    """
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=include_defaults, metadata=metadata
    )
    # lm-eval 0.4.13 builds every task config through this factory (TaskManager._load_spec).
    manager._factory = _BoundFactory(
        Path(datasets_dir).resolve(), Path(cache_dir) if cache_dir else None, metadata
    )
    from lm_eval.tasks._index import Entry, Kind

    for name, cfg in (local or {}).items():
        manager.task_index[name] = Entry(name, Kind.TASK, None, cfg)
    return manager


# ------------------------------------------------------------- built-in tasks, own data

#: The `datasets` loader of a local data file, by its suffix.
LOADERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")
_TEMPLATE_KEYS = ("doc_to_text", "doc_to_target", "doc_to_choice")
_BUILTIN_DIR = Path(lm_eval_tasks.__file__).parent


def _builtin_entry(name: str) -> Any:
    """lm-eval's index entry of built-in task ``name``. The folders named like the task or
    a prefix of it (``arc_easy`` is in ``arc/``) are indexed first, in milliseconds; only
    a miss indexes every built-in task (seconds)."""
    from lm_eval.tasks._index import Kind, TaskIndex

    parts = name.split("_")
    folders = [_BUILTIN_DIR / "_".join(parts[:i]) for i in range(len(parts), 0, -1)]
    entry = None
    for folder in (f for f in folders if f.is_dir()):
        entry = TaskIndex().build([folder]).get(name)
        if entry is not None:
            break
    if entry is None:
        index = TaskManager(include_defaults=True).task_index
        entry = index.get(name)
        if entry is None:
            from forgebench.config import close_names

            close = close_names(name, index)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            raise ForgebenchError(
                f"task {name!r}: lm-eval {_lm_eval_version()} has no built-in task of that "
                f"name{hint}; `lm-eval ls tasks` lists them"
            )
    if entry.kind != Kind.TASK or entry.yaml_path is None:
        raise ForgebenchError(
            f"task {name!r}: lm-eval's {name!r} is a {entry.kind.name.lower()}, not one task "
            "read from a YAML config; give local data to each of its tasks by name"
        )
    return entry


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def data_file_columns(path: Path) -> set[str]:
    """The top-level columns of a JSONL/JSON, Parquet or CSV file (its first record)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return set(pq.read_schema(path).names)
    if suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            return set(next(csv.reader(f), []))
    import json

    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:  # one JSON document (a list of records), not JSON lines
        record = json.loads(path.read_text(encoding="utf-8"))
        record = record[0] if isinstance(record, list) and record else record
    if not isinstance(record, dict):
        raise ForgebenchError(f"{path}: expected one JSON object per line (JSON lines)")
    return set(record)


def template_columns(cfg: Mapping[str, Any]) -> dict[str, set[str]]:
    """The document fields each of the task's templates reads: the variables of a Jinja
    template, or the field a bare name selects (lm-eval's ``doc_to_text: question_stem``).
    Functions and constants read nothing checkable here."""
    from jinja2 import meta
    from lm_eval.utils import env

    out: dict[str, set[str]] = {}
    for key in _TEMPLATE_KEYS:
        value = cfg.get(key)
        if not isinstance(value, str):
            continue
        if "{{" in value or "{%" in value:
            names = meta.find_undeclared_variables(env.parse(value)) - set(env.globals)
        else:
            names = {value} if value.isidentifier() else set()
        if names:
            out[key] = set(names)
    return out


def _as_files(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def bind_local_data(
    name: str, cfg: dict[str, Any], data_files: Mapping[str, str | Sequence[str]], base: Path
) -> dict[str, Any]:
    """Built-in task ``name``'s config ``cfg`` reading ``data_files`` (split name -> file(s),
    relative ones under ``base``) through the `datasets` loader for their format instead of
    its hub dataset. Checked here, each a ForgebenchError naming the task: the split names
    are the task's, it has one of its evaluation splits, every file exists and has one
    format, and its columns hold every field the task's templates read."""
    splits = {cfg.get(k) for k in _SPLIT_KEYS} - {None}
    unknown = sorted(set(data_files) - splits)
    if unknown:
        raise ForgebenchError(
            f"task {name!r}: no split named {unknown} in its lm-eval config; its splits: "
            f"{sorted(splits)}"
        )
    evaluated = [cfg.get(k) for k in ("test_split", "validation_split") if cfg.get(k)]
    if not any(s in data_files for s in evaluated):
        raise ForgebenchError(
            f"task {name!r}: local data has no split it evaluates ({' or '.join(evaluated)}); "
            f"got {sorted(data_files)}"
        )
    files: dict[str, list[str]] = {}
    for split, value in data_files.items():
        paths = [Path(p) if Path(p).is_absolute() else base / p for p in _as_files(value)]
        for path in paths:
            if not path.is_file():
                raise ForgebenchError(
                    f"task {name!r}: data file of split {split!r} {path} not found"
                )
        files[split] = [str(p) for p in paths]
    suffixes = {Path(p).suffix.lower() for ps in files.values() for p in ps}
    loaders = {LOADERS.get(s) for s in suffixes}
    if None in loaders or len(loaders) != 1:
        raise ForgebenchError(
            f"task {name!r}: data files must all be one format of {sorted(LOADERS)}, "
            f"got {sorted(suffixes)}"
        )
    if "process_docs" not in cfg:  # else the templates read the processed documents
        needs = template_columns(cfg)
        for path in (Path(p) for ps in files.values() for p in ps):
            have = data_file_columns(path)
            missing = {k: sorted(v - have) for k, v in needs.items() if v - have}
            if missing:
                raise ForgebenchError(
                    f"task {name!r}: {path} lacks fields the task's templates read: "
                    + "; ".join(f"{k} reads {v}" for k, v in missing.items())
                    + f" (the file has {sorted(have)})"
                )
    cfg = copy.copy(cfg)
    for key in _SPLIT_KEYS:  # a split without a file is no split: lm-eval would index it
        if cfg.get(key) is not None and cfg[key] not in files:
            cfg[key] = None
    cfg["dataset_path"] = loaders.pop()
    cfg["dataset_name"] = None
    cfg["dataset_kwargs"] = {"data_files": files}
    return cfg


def local_task_configs(
    local_data: Mapping[str, Mapping[str, str | Sequence[str]]] | None,
    tasks: Sequence[str],
    base: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """The bound config (``bind_local_data``) of each of ``tasks`` that ``local_data``
    (config ``evaluation.local_data``) gives files for; relative paths are under ``base``
    (default: the working directory, which the workflow's jobs run in)."""
    from lm_eval.tasks._factory import TaskFactory

    base = Path.cwd() if base is None else Path(base)
    out = {}
    for name in (t for t in tasks if t in (local_data or {})):
        if name.startswith("fb_"):
            raise ForgebenchError(
                f"evaluation.local_data.{name}: fb_* tasks read the prepared datasets; "
                "local data is for lm-eval's built-in tasks"
            )
        raw = TaskFactory()._load_full_config(_builtin_entry(name))
        out[name] = bind_local_data(name, raw, local_data[name], base)
    return out
