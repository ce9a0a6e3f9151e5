"""Two models on the same documents: accuracy delta with a paired interval, flip rate, McNemar.

Items pair on ``doc_hash`` (lm-eval's hash of the document), never on position, so two
runs that saw the documents in another order still pair correctly; documents only one
side has are counted and left out. Each difference comes as record rows: the value and
its ``_ci_low``/``_ci_high`` rows, so targets judge it with ``statistic: value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forgebench import stats
from forgebench.record import Recorder

SUITE = "eval_pairs"
VERSION = 1
KEY = ["subtask", "doc_hash", "filter", "metric"]


def pair_case(baseline: str, candidate: str) -> str:
    return f"{candidate} vs {baseline}"


def compare_samples(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    task: str,
    baseline_name: str,
    candidate_name: str,
    confidence: float,
    n_resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Record rows comparing ``candidate`` with ``baseline`` on ``task``, per metric."""
    rec = Recorder(SUITE, task, VERSION)
    case = pair_case(baseline_name, candidate_name)
    a = baseline.dropna(subset=["value"]).drop_duplicates(KEY)
    b = candidate.dropna(subset=["value"]).drop_duplicates(KEY)
    joined = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    for (filt, metric), g in joined.groupby(["filter", "metric"], sort=True):
        n_a = int(((a["filter"] == filt) & (a["metric"] == metric)).sum())
        n_b = int(((b["filter"] == filt) & (b["metric"] == metric)).sum())
        params: dict[str, Any] = {
            "task": task,
            "baseline": baseline_name,
            "candidate": candidate_name,
            "filter": filt,
            "metric": metric,
            "paired_items": len(g),
            "unpaired_items": n_a + n_b - 2 * len(g),
        }
        name = metric if filt in ("none", "") else f"{metric}[{filt}]"
        delta, (low, high), p = stats.paired_bootstrap(
            g["value_a"].to_numpy(float),
            g["value_b"].to_numpy(float),
            confidence=confidence,
            n_resamples=n_resamples,
            seed=seed,
        )
        for suffix, value in (("", delta), ("_ci_low", low), ("_ci_high", high)):
            rec.add(case, params, f"{name}_delta{suffix}", "fraction", True, value)
        rec.add(case, params, f"{name}_delta_p", "p", False, p if math.isfinite(p) else 1.0)
        rec.add(case, params, f"{name}_items", "docs", True, float(len(g)))
        correct_a, correct_b = g["correct_a"], g["correct_b"]
        if correct_a.notna().all() and correct_b.notna().all():
            ca = correct_a.to_numpy(bool)
            cb = correct_b.to_numpy(bool)
            for key, value in stats.flip_rate(ca, cb).items():
                rec.add(case, params, f"{name}_{key}", "fraction", False, value)
            _, p_mcnemar = stats.mcnemar(ca, cb)
            rec.add(case, params, f"{name}_mcnemar_p", "p", False, p_mcnemar)
    return rec.frame()


def pairs_for(config: Mapping[str, Any], models: list[str]) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs to compare: each configured pair, then every derived
    model (``<base>__<method>``) against the model it came from."""
    pairs = [(p["baseline"], p["candidate"]) for p in config.get("paired", [])]
    for model in models:
        base = model.split("__", 1)[0]
        if base != model and base in models and (base, model) not in pairs:
            pairs.append((base, model))
    return pairs
