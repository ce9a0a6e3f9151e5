"""The evaluation section: each task's primary metric per model with its exact interval
against chance, suite scores, paired model comparisons, and the model build.

Why: an accuracy over 20 documents means little without its interval and the level a
guess reaches; every cell here shows both, and marks the ones that do not clear chance.
One figure shows every task at once, so the section costs one image, not one per task.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from forgebench import plots, stats
from forgebench.report.cells import Cells
from forgebench.report.format import (
    finite,
    format_interval,
    format_value,
    fraction,
    points,
    styled,
)

# Task metrics tried, in order, for a task the evaluation catalogue does not name.
_EVAL_FALLBACK = ("acc_norm", "acc", "exact_match", "pass_at_1", "f1")


def _primary_metric(task: str, metrics: set[str]) -> str | None:
    """The metric the evaluation suites score ``task`` by (forgebench.evaluation.suites'
    catalogue), else the first of :data:`_EVAL_FALLBACK` it has (a filter suffix allowed)."""
    from forgebench.evaluation.runner import metric_name
    from forgebench.evaluation.suites import CATALOG

    for ref in CATALOG.values():
        if ref.task == task and metric_name(ref.metric, ref.filter) in metrics:
            return metric_name(ref.metric, ref.filter)
    for name in _EVAL_FALLBACK:
        found = sorted(m for m in metrics if m == name or m.startswith(f"{name}."))
        found = [m for m in found if not m.endswith("_stderr")]
        if found:
            return found[0]
    return None


def _eval_cell(cells: Cells, task: str, model: str, metric: str | None) -> dict[str, str]:
    """One task × model cell: value, interval, chance, and whether the interval clears it.

    The interval is the evaluation's recorded one (Clopper-Pearson for a share of
    documents, forgebench.evaluation.runner). A record without it gets Clopper-Pearson
    from ``n_docs`` where the value is a share of them (k/n exactly; not pass@k with
    k > 1): lm-eval's value ± z·stderr, clipped, made 0/20 the certain [0, 0]. Chance is
    ``chance_acc``, the higher of the uniform and the majority-class baseline, both in the
    title."""
    key = ("eval", task, model, metric or "")
    if metric is None or not finite(cells.value(key)):
        failed = ("eval", task, model, "evaluation")
        reason = str(cells.params(failed).get("reason", "")) if cells.has(failed) else ""
        status = cells.status(failed) if cells.has(failed) else cells.status(key)
        planned_only = cells.has(key) and not cells.failures.get(key) and cells.by_design.get(key)
        flag = "not run (by design)" if planned_only else "failed"
        return {"text": status, "flag": flag, "title": reason, "how": ""}
    value = cells.value(key)
    low, high, how = cells.interval(key)
    if how == "recorded interval":
        how = str(cells.params((*key[:3], f"{metric}_ci_low")).get("interval") or how)
    n_docs = cells.value(("eval", task, model, "n_docs"))
    share = finite(n_docs) and n_docs > 0 and abs(value * n_docs - round(value * n_docs)) < 1e-6
    pass_k = re.match(r"pass_at_(\d+)(\.|$)", metric)
    if (
        how in ("", "± z·stderr", "order statistics")
        and cells.unit(key) == "fraction"
        and share
        and not (pass_k and int(pass_k.group(1)) > 1)
    ):
        n = int(n_docs)
        low, high = stats.proportion_ci(min(n, max(0, round(value * n))), n, cells.confidence)
        how = "exact binomial (Clopper-Pearson)"
    chance = cells.value(("eval", task, model, "chance_acc"))
    uniform = cells.value(("eval", task, model, "chance_uniform"))
    majority = cells.value(("eval", task, model, "chance_majority"))
    if not finite(low):
        flag = "no interval"
    elif finite(chance) and low <= chance:
        flag = "does not clear chance"
    else:
        flag = ""
    levels = (
        f" (the higher of uniform {fraction(uniform)} and majority class {fraction(majority)})"
        if finite(uniform) and finite(majority)
        else ""
    )
    return {
        "text": f"{fraction(value)} {format_interval(low, high, fraction)}".rstrip(" —"),
        "flag": flag,
        "title": f"chance {fraction(chance)}{levels}; interval: {how or 'none'}",
        "how": how,
        "chance": fraction(chance),
        "numbers": (value, low, high, chance),
    }


def evaluation_section(cells: Cells) -> dict[str, Any] | None:
    """Task × model table of each task's primary metric, suite scores, paired comparisons."""
    tasks = [
        b
        for b in cells.benchmarks("eval")
        if not b.startswith("suite_")
        and (
            _primary_metric(b, cells.metrics("eval", b)) is not None
            or "evaluation" in cells.metrics("eval", b)
        )
    ]
    suites = [b for b in cells.benchmarks("eval") if b.startswith("suite_")]
    pairs = cells.benchmarks("eval_pairs")
    if not (tasks or suites or pairs):
        return None
    models = sorted({c for t in tasks for c in cells.cases("eval", t)})
    task_rows = []
    for task in tasks:
        metric = _primary_metric(task, cells.metrics("eval", task))
        row_cells = [
            _eval_cell(cells, task, m, metric)
            if m in cells.cases("eval", task)
            else {"text": "not run", "flag": "", "title": "", "how": ""}
            for m in models
        ]
        n_flagged = sum(1 for c in row_cells if c["flag"] == "does not clear chance")
        chances = sorted({c["chance"] for c in row_cells if c.get("chance", "—") != "—"})
        task_rows.append(
            {
                "task": task,
                "metric": metric or "—",
                "chance": " / ".join(chances) or "—",
                "how": ", ".join(sorted({c["how"] for c in row_cells if c["how"]})) or "—",
                "cells": row_cells,
                "n_flagged": n_flagged,
            }
        )
    suite_rows = []
    for bench in suites:
        for model in cells.cases("eval", bench):
            key = ("eval", bench, model, "score")
            params = cells.params(key)
            low, _, _ = cells.interval(key)
            chance = cells.value(("eval", bench, model, "chance"))
            missing = [str(m) for m in params.get("missing", [])]
            suite_rows.append(
                {
                    "suite": str(params.get("suite", bench.removeprefix("suite_"))),
                    "model": model,
                    "score": cells.text(key, fraction),
                    "chance": fraction(chance),
                    "flag": "does not clear chance"
                    if finite(chance) and (not finite(low) or low <= chance)
                    else "",
                    "complete": "complete" if params.get("complete") else "incomplete",
                    "missing": ", ".join(missing) or "—",
                }
            )
    pair_rows = []
    for task in pairs:
        for case in cells.cases("eval_pairs", task):
            metrics = cells.metrics("eval_pairs", task, case)
            for delta in sorted(m for m in metrics if m.endswith("_delta")):
                name = delta[: -len("_delta")]
                named = {
                    suffix: cells.value(("eval_pairs", task, case, f"{name}_{suffix}"))
                    for suffix in ("delta_p", "flip_rate", "gained", "lost", "mcnemar_p", "items")
                }

                key = ("eval_pairs", task, case, delta)
                low, high, _ = cells.interval(key)
                pair_rows.append(
                    {
                        "task": task,
                        "pair": case,
                        "metric": name,
                        "delta": points(cells.value(key)),
                        "ci": format_interval(low, high, points),
                        "p": format_value(named["delta_p"], ""),
                        "flip_rate": fraction(named["flip_rate"]),
                        "gained": fraction(named["gained"]),
                        "lost": fraction(named["lost"]),
                        "mcnemar_p": format_value(named["mcnemar_p"], ""),
                        "n_items": format_value(named["items"], ""),
                    }
                )
    return {
        "models": models,
        "tasks": task_rows,
        "n_flagged": sum(t["n_flagged"] for t in task_rows),
        "suites": suite_rows,
        "pairs": pair_rows,
        "confidence": f"{cells.confidence:.0%}",
    }


def models_section(cells: Cells) -> dict[str, Any] | None:
    """Held-out loss of each built model before and after training, beside ln|V| (the loss
    of a uniform guess over the vocabulary): a model that learned is below it."""
    rows = []
    for model in cells.cases("models", "build"):

        def v(metric: str, _model: str = model) -> float:
            return cells.value(("models", "build", _model, metric))

        if not cells.metrics("models", "build", model) & {"uniform_nll", "heldout_nll_after"}:
            continue
        before, after, uniform = v("heldout_nll_before"), v("heldout_nll_after"), v("uniform_nll")
        rows.append(
            {
                "model": model,
                "nll_before": styled(before, "nats", "num"),
                "nll_after": styled(after, "nats", "num")
                if finite(after)
                else cells.status(("models", "build", model, "heldout_nll_after")),
                "uniform": styled(uniform, "nats", "num"),
                "ppl_before": styled(math.exp(before), "", "num") if finite(before) else "—",
                "ppl_after": styled(math.exp(after), "", "num") if finite(after) else "—",
                "ppl_uniform": styled(math.exp(uniform), "", "num") if finite(uniform) else "—",
                "learned": "yes" if finite(after) and finite(uniform) and after < uniform else "no",
                "tokens_per_s": format_value(v("train_tokens_per_s"), "tokens/s"),
            }
        )
    return {"rows": rows} if rows else None


def plan_figures(
    section: dict[str, Any] | None, plots_dir: str | Path, jobs: list[plots.FigureJob]
) -> list[plots.Figure]:
    """One figure for the whole evaluation: every task's primary metric per model with
    the interval the table shows, and each task's chance level; none without a value."""
    if section is None:
        return []
    rows = []
    for task in section["tasks"]:
        for model, cell in zip(section["models"], task["cells"], strict=True):
            if "numbers" in cell:
                value, low, high, chance = cell["numbers"]
                rows.append(
                    {
                        "task": f"{task['task']} ({task['metric']})",
                        "model": model,
                        "value": value,
                        "low": low,
                        "high": high,
                        "chance": chance,
                    }
                )
    return plots.accuracy_overview(
        rows, plots_dir, suite="eval", confidence=section["confidence"], jobs=jobs
    )
