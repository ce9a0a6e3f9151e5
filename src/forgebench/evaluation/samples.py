"""lm-eval's per-sample log as a table keyed by document hash, and lm-eval's own files.

The samples table (results/raw/eval/<model>.samples.parquet) has one row per
(document, filter, metric): ``doc_hash`` is lm-eval's sha256 of the document's JSON, so
two models' rows pair up on the same documents whatever their order or index (paired
comparisons, McNemar, flip rates). For multiple-choice tasks ``n_choices`` gives the
document's chance accuracy, ``1 / n_choices``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from forgebench.atomic import atomic_path, write_text_atomic
from forgebench.record import read_metadata, write_derived_table

SAMPLES_KIND = "eval_samples"
COLUMNS = (
    "model",
    "task",
    "subtask",
    "doc_id",
    "doc_hash",
    "prompt_hash",
    "filter",
    "metric",
    "value",
    "correct",
    "target",
    "n_choices",
)
_DTYPES = {
    "model": "string",
    "task": "string",
    "subtask": "string",
    "doc_id": "int64",
    "doc_hash": "string",
    "prompt_hash": "string",
    "filter": "string",
    "metric": "string",
    "value": "float64",
    "correct": "boolean",
    "target": "string",
    "n_choices": "Int64",
}

ChoicesFn = Callable[[str, Mapping[str, Any]], int | None]


def _number(value: Any) -> float | None:
    """A per-sample metric value as a float; None for what is not one number (e.g. the
    (reference, prediction) pairs of corpus-level metrics such as BLEU)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, np.generic) and np.ndim(value) == 0:
            return float(value)
    except (TypeError, ValueError):
        return None
    return None


def samples_frame(
    logged: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    model: str,
    task: str,
    n_choices: ChoicesFn | None = None,
) -> pd.DataFrame:
    """Rows of ``logged`` (lm-eval's ``results["samples"]``: subtask -> sample dicts).

    ``n_choices(subtask, doc)`` gives a multiple-choice document's number of choices
    (None for other tasks). ``correct`` is set where the value is 0 or 1.
    """
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for subtask, rows in logged.items():
        for s in rows:
            k = n_choices(subtask, s["doc"]) if n_choices else None
            for metric in s.get("metrics", []):
                value = _number(s.get(metric))
                if value is None:
                    continue
                cols["model"].append(model)
                cols["task"].append(task)
                cols["subtask"].append(subtask)
                cols["doc_id"].append(int(s["doc_id"]))
                cols["doc_hash"].append(s["doc_hash"])
                cols["prompt_hash"].append(s.get("prompt_hash", ""))
                cols["filter"].append(s.get("filter", "none"))
                cols["metric"].append(metric)
                cols["value"].append(value)
                cols["correct"].append(value == 1.0 if value in (0.0, 1.0) else None)
                cols["target"].append(str(s.get("target", "")))
                cols["n_choices"].append(k)
    return pd.DataFrame(cols).astype(_DTYPES)


def empty_samples() -> pd.DataFrame:
    """The samples table with no rows (a failed or unavailable task)."""
    return pd.DataFrame({c: [] for c in COLUMNS}).astype(_DTYPES)


def chance_accuracy(frame: pd.DataFrame) -> float:
    """Mean over the evaluated documents of 1 / number of choices; NaN if not multiple choice."""
    docs = frame.drop_duplicates(["subtask", "doc_id"])
    k = docs["n_choices"]
    if docs.empty or k.isna().any():
        return math.nan
    return float((1.0 / k.astype("float64")).mean())


def write_samples(frame: pd.DataFrame, path: str | Path, meta: Mapping[str, Any]) -> None:
    """Write the samples table atomically, marked as such in the forgebench metadata."""
    write_derived_table(frame.loc[:, list(COLUMNS)], path, {"kind": SAMPLES_KIND, **meta})


def read_samples(path: str | Path) -> pd.DataFrame:
    """Read a samples table (checks it is one and its schema version)."""
    doc = read_metadata(path)
    if doc.get("kind") != SAMPLES_KIND:
        from forgebench.errors import ForgebenchError

        raise ForgebenchError(f"{path} holds {doc.get('kind')!r}, expected {SAMPLES_KIND!r}")
    return pq.read_table(path).to_pandas().astype(_DTYPES)


def write_lm_eval_results(results: Mapping[str, Any], directory: str | Path) -> list[Path]:
    """lm-eval's results JSON (``results.json``) and per-sample logs
    (``samples_<subtask>.jsonl``), serialised as lm-eval's EvaluationTracker does but with
    fixed names, so a workflow rule can name them. Returns the files written."""
    from lm_eval.utils import handle_non_serializable, sanitize_list

    directory = Path(directory)
    written: list[Path] = []
    aggregated = {k: v for k, v in results.items() if k != "samples"}
    path = directory / "results.json"
    write_text_atomic(
        path,
        json.dumps(aggregated, indent=2, default=handle_non_serializable, ensure_ascii=False),
    )
    written.append(path)
    for subtask, rows in (results.get("samples") or {}).items():
        path = directory / f"samples_{subtask}.jsonl"
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            for s in rows:
                out = dict(s)
                out["arguments"] = {
                    f"gen_args_{i}": {f"arg_{j}": a for j, a in enumerate(arg)}
                    for i, arg in enumerate(s["arguments"])
                }
                out["resps"] = sanitize_list(s["resps"])
                out["filtered_resps"] = sanitize_list(s["filtered_resps"])
                out["target"] = str(s["target"])
                fh.write(
                    json.dumps(out, default=handle_non_serializable, ensure_ascii=False) + "\n"
                )
        written.append(path)
    return written
