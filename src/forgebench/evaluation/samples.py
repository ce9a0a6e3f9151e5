"""lm-eval's per-sample log as a table keyed by document hash, and lm-eval's own files.

The samples table (results/raw/eval/<model>.samples.parquet) has one row per
(document, filter, metric): ``doc_hash`` is lm-eval's sha256 of the document's JSON, so
two models' rows pair up on the same documents whatever their order or index (paired
comparisons, McNemar, flip rates). For multiple-choice tasks ``n_choices`` gives the
document's uniform chance, ``1 / n_choices``, and ``gold`` the index of its right answer
(as lm-eval scores it), from which the majority-class baseline comes (``chance_levels``).

Intervals of per-document means live here too (``document_interval``), so the record
rows, suite scores and knowledge/RAG benchmarks share one rule: a share of documents gets
the exact Clopper-Pearson interval, never a normal or bootstrap one that reads 0/20 as
certainly 0.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from forgebench import stats
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
    "gold",
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
    "gold": "Int64",
}

ChoicesFn = Callable[[str, Mapping[str, Any]], int | None]
#: lm-eval's pass@k metrics: HumanEval's ``pass@1``, MBPP's ``pass_at_1``.
PASS_AT_K = re.compile(r"^pass(?:@|_at_)(\d+)$")


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
    gold: ChoicesFn | None = None,
) -> pd.DataFrame:
    """Rows of ``logged`` (lm-eval's ``results["samples"]``: subtask -> sample dicts).

    ``n_choices(subtask, doc)`` gives a multiple-choice document's number of choices
    (None for other tasks), ``gold(subtask, doc)`` the index of its right choice; without
    ``gold``, a logged target that is a choice index (``0`` .. ``n_choices - 1``) is taken.
    ``correct`` is set where the value is 0 or 1.
    """
    cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for subtask, rows in logged.items():
        for s in rows:
            k = n_choices(subtask, s["doc"]) if n_choices else None
            g = gold(subtask, s["doc"]) if gold else _index(s.get("target"), k)
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
                cols["gold"].append(g)
    return pd.DataFrame(cols).astype(_DTYPES)


def _index(target: Any, n_choices: int | None) -> int | None:
    """A logged target as a choice index, when it is one."""
    if n_choices is None or isinstance(target, bool):
        return None
    if isinstance(target, str) and target.strip().isdigit():
        target = int(target)
    if isinstance(target, int | np.integer) and 0 <= int(target) < n_choices:
        return int(target)
    return None


def empty_samples() -> pd.DataFrame:
    """The samples table with no rows (a failed or unavailable task)."""
    return pd.DataFrame({c: [] for c in COLUMNS}).astype(_DTYPES)


def chance_levels(frame: pd.DataFrame) -> dict[str, float]:
    """The accuracy a model gets without reading the question, over the evaluated documents.

    ``chance_uniform``: the mean of 1 / number of choices (guessing). ``chance_majority``:
    the share of the most frequent gold answer (always giving that answer, e.g. "yes" on
    BoolQ, whose answers are 62% "yes"; for per-document choices it is an answer position).
    ``chance_acc`` is the higher of the two, the level a model must clear: against 1/2
    alone, a BoolQ model that always answers "yes" would look well above chance. NaN where
    the task is not multiple choice; the majority is NaN where a gold answer is unknown.
    """
    docs = frame.drop_duplicates(["subtask", "doc_id"])
    k = docs["n_choices"]
    if docs.empty or k.isna().any():
        return {"chance_uniform": math.nan, "chance_majority": math.nan, "chance_acc": math.nan}
    uniform = float((1.0 / k.astype("float64")).mean())
    gold = docs["gold"] if "gold" in docs else pd.Series(pd.NA, index=docs.index)
    majority = (
        math.nan
        if gold.isna().any()
        else float(gold.astype("int64").value_counts().max() / len(docs))
    )
    best = max(uniform, majority) if math.isfinite(majority) else uniform
    return {"chance_uniform": uniform, "chance_majority": majority, "chance_acc": best}


def chance_accuracy(frame: pd.DataFrame) -> float:
    """The chance level of the evaluated documents: ``chance_levels(frame)["chance_acc"]``,
    the higher of the uniform and the majority-class baseline; NaN if not multiple choice."""
    return chance_levels(frame)["chance_acc"]


def is_binary(values: np.ndarray) -> bool:
    """Whether per-document values are 0/1 outcomes (a share of documents)."""
    return bool(values.size) and bool(np.isin(values, (0.0, 1.0)).all())


def document_interval(
    values: Sequence[float] | np.ndarray, metric: str, confidence: float
) -> tuple[float, float, str]:
    """``(low, high, how)``: a confidence interval of the mean of per-document values.

    * 0/1 values (accuracy, acc_norm, exact match, greedy pass@1): Clopper-Pearson on k of
      n, exact: 0/20 is [0, 16.8%], not the [0, 0] of value ± z·stderr or of a bootstrap.
    * pass@k (``PASS_AT_K``) whose per-problem values are not all 0/1 (k > 1, or several
      samples a problem): each problem's estimate ``v`` lies in [0, 1], so
      ``1{v = 1} <= v <= 1{v > 0}`` and pass@k lies between the share of problems at 1 and
      the share above 0 (solved at least once: 1-(1-p)^n, at least pass@k's 1-(1-p)^k).
      Both shares are 0/1 counts over problems: the interval is the Clopper-Pearson lower
      bound of the first and upper bound of the second, each one-sided at half the error,
      so it covers at the level whatever the per-problem uncertainty. It is wide when many
      problems are solved only sometimes, which is what a few samples a problem can tell;
      a bootstrap over problems would ignore that draw and read 0/20 as certainly 0.
    * other scores (TruthfulQA's mc2, F1): ``stats.mean_ci`` (Student's t), approximate,
      as lm-eval's standard error is: no exact interval exists without a bound on spread.

    NaN bounds (how ``"none"``) without values, and for t below two.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, "none"
    if is_binary(x):
        low, high = stats.proportion_ci(int(x.sum()), n, confidence)
        return low, high, "Clopper-Pearson"
    if PASS_AT_K.match(metric) and x.min() >= 0.0 and x.max() <= 1.0:
        low, _ = stats.proportion_ci(int((x >= 1.0).sum()), n, confidence)
        _, high = stats.proportion_ci(int((x > 0.0).sum()), n, confidence)
        return low, high, "Clopper-Pearson bounds of pass@k"
    if n < 2:
        return math.nan, math.nan, "none"
    low, high = stats.mean_ci(x, confidence)
    return low, high, "t (approximate)"


def mean_interval(
    values: Sequence[float] | np.ndarray, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float, str]:
    """``(low, high, how)`` of the mean of per-item values in [0, 1]: Clopper-Pearson when
    they are all 0/1 (the percentile bootstrap of all-zero items is [0, 0], which claims
    certainty); else the seeded percentile bootstrap (``stats.bootstrap_ci``), for values
    with no exact interval."""
    x = np.asarray(values, dtype=float)
    if is_binary(x):
        low, high = stats.proportion_ci(int(x.sum()), int(x.size), confidence)
        return low, high, "Clopper-Pearson"
    low, high = stats.bootstrap_ci(
        x, "mean", confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return low, high, "bootstrap"


def write_samples(frame: pd.DataFrame, path: str | Path, meta: Mapping[str, Any]) -> None:
    """Write the samples table atomically, marked as such in the forgebench metadata (a
    frame from before the ``gold`` column gets it empty)."""
    frame = frame.reindex(columns=list(COLUMNS))
    write_derived_table(frame, path, {"kind": SAMPLES_KIND, **meta})


def read_samples(path: str | Path) -> pd.DataFrame:
    """Read a samples table (checks it is one and its schema version)."""
    doc = read_metadata(path)
    if doc.get("kind") != SAMPLES_KIND:
        from forgebench.errors import ForgebenchError

        raise ForgebenchError(f"{path} holds {doc.get('kind')!r}, expected {SAMPLES_KIND!r}")
    return pq.read_table(path).to_pandas().reindex(columns=list(COLUMNS)).astype(_DTYPES)


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
