"""Two models on the same documents: accuracy delta with its interval, flip rate, McNemar.

Items pair on ``doc_hash`` (lm-eval's hash of the document), never on position, so two
runs that saw the documents in another order still pair correctly; documents only one
side has are counted and left out. Each difference comes as record rows: the value, its
``_ci_low``/``_ci_high`` rows (so targets judge it with ``statistic: value``) and
``_delta_p``, the p-value of the test the interval is the dual of: the interval excludes
0 exactly when ``_delta_p`` < 1 - confidence, so the two never disagree (docs/verdicts.md).

0/1 outcomes (accuracy, exact match, greedy pass@1) use ``delta_interval``: exact, from
the discordant documents, with McNemar's exact test as its dual; the flip rates get
Clopper-Pearson intervals. Other per-document values (pass@k over several samples, F1,
the scaled rows of a suite score) use ``bootstrap_delta``, a paired percentile bootstrap
whose p-value is read off the same resamples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from forgebench import stats
from forgebench.evaluation.samples import is_binary
from forgebench.record import Recorder

SUITE = "eval_pairs"
#: 2: exact interval of 0/1 differences with McNemar as its dual; p is the dual test.
VERSION = 2
KEY = ["subtask", "doc_hash", "filter", "metric"]
#: Resampled means held in memory at once by ``bootstrap_delta``.
_CHUNK = 2_000_000


def pair_case(baseline: str, candidate: str) -> str:
    """The record's case of a comparison: ``<candidate> vs <baseline>``."""
    return f"{candidate} vs {baseline}"


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """McNemar's exact test: two-sided binomial test of ``gained`` of the ``gained + lost``
    discordant documents against 1/2. At 1/2 the binomial is symmetric, so this p (twice
    the smaller tail, at most 1) is the dual of the central Clopper-Pearson interval."""
    m = gained + lost
    if m == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(gained, lost), m, 0.5)))


def delta_interval(
    gained: int, lost: int, n: int, confidence: float
) -> tuple[float, tuple[float, float], float]:
    """Accuracy difference (candidate - baseline) of paired 0/1 outcomes, its interval
    and the p-value of McNemar's exact test (``mcnemar_exact_p``), its dual.

    ``gained``: documents the candidate gets right and the baseline wrong; ``lost``: the
    reverse; ``n``: paired documents. The difference is ``d * (2 * pi - 1)``, ``d`` the
    share of discordant documents and ``pi`` the share of those the candidate wins. Given
    the ``m`` discordant documents, ``gained`` is Binomial(m, pi) (conditional exact): pi
    gets its Clopper-Pearson interval, which excludes 1/2 exactly when McNemar's exact
    test rejects at ``1 - confidence``. ``d`` gets its own Clopper-Pearson interval, so
    the scale carries its uncertainty too (plugging in m / n under-covers badly, to about
    50% when one side never loses), and the interval is the extreme products of the two.
    Its sign is decided by pi alone (d's lower bound is above 0 once a document is
    discordant), so interval and test always agree. Coverage: at least
    ``2 * confidence - 1`` by Bonferroni; at least ``confidence`` in an exact enumeration
    over (gained, lost) probabilities for n = 10, 20, 50 (tests/test_eval_paired.py). With
    no discordant document the interval is ± d's upper bound, not [0, 0], with p = 1.
    """
    if n <= 0 or gained < 0 or lost < 0 or gained + lost > n:
        raise ValueError(f"need 0 <= gained + lost <= n and n > 0, got {gained}, {lost}, {n}")
    m = gained + lost
    pi_low, pi_high = stats.proportion_ci(gained, m, confidence) if m else (0.0, 1.0)
    t_low, t_high = 2.0 * pi_low - 1.0, 2.0 * pi_high - 1.0
    d_low, d_high = stats.proportion_ci(m, n, confidence)
    low = d_low * t_low if t_low >= 0 else d_high * t_low
    high = d_high * t_high if t_high >= 0 else d_low * t_high
    return (gained - lost) / n, (float(low), float(high)), mcnemar_exact_p(gained, lost)


def bootstrap_delta(
    a: np.ndarray, b: np.ndarray, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, tuple[float, float], float]:
    """Mean of ``b - a`` over paired documents, its percentile-bootstrap interval and the
    p-value that is the interval's dual, all from the same seeded resamples.

    For values that are not 0/1 there is no exact interval. With ``s_le`` and ``s_ge`` the
    shares of resampled means at or below and at or above 0, ``p = min(1, 2 * min(s_le,
    s_ge))``; the bounds are the resampled means at which those shares reach
    ``(1 - confidence) / 2`` from either end, so the interval excludes 0 exactly when
    ``p < 1 - confidence``. Below about ten documents the bootstrap under-covers; equal
    values on both sides give a zero-width interval at 0 (nothing was seen to vary).
    """
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.isfinite(d).all():
        raise ValueError("need equal-length, non-empty, finite paired values")
    observed = float(d.mean())
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK // d.size)
    means = np.concatenate(
        [
            d[rng.integers(0, d.size, (min(step, n_resamples - i), d.size))].mean(axis=1)
            for i in range(0, n_resamples, step)
        ]
    )
    means.sort()
    r = means.size
    tail = (1.0 - confidence) / 2.0
    # low: the smallest mean with at least `tail` of the resamples at or below it;
    # high: the largest with at least `tail` at or above it.
    low = float(means[max(0, math.ceil(tail * r) - 1)])
    high = float(means[r - max(1, math.ceil(tail * r))])
    s_le = float(np.count_nonzero(means <= 0.0)) / r
    s_ge = float(np.count_nonzero(means >= 0.0)) / r
    return observed, (low, high), min(1.0, 2.0 * min(s_le, s_ge))


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
    """Record rows comparing ``candidate`` with ``baseline`` on ``task``, per metric:
    ``<m>_delta`` with ``_ci_low``/``_ci_high`` and ``_delta_p`` (its dual test), and for
    0/1 outcomes ``<m>_flip_rate``/``_gained``/``_lost`` (each with Clopper-Pearson
    ``_ci_low``/``_ci_high``) and ``<m>_mcnemar_p`` (exact; equal to ``_delta_p``)."""
    rec = Recorder(SUITE, task, VERSION)
    case = pair_case(baseline_name, candidate_name)
    a = baseline.dropna(subset=["value"]).drop_duplicates(KEY)
    b = candidate.dropna(subset=["value"]).drop_duplicates(KEY)
    joined = a.merge(b, on=KEY, suffixes=("_a", "_b"))
    for (filt, metric), g in joined.groupby(["filter", "metric"], sort=True):
        n_a = int(((a["filter"] == filt) & (a["metric"] == metric)).sum())
        n_b = int(((b["filter"] == filt) & (b["metric"] == metric)).sum())
        va, vb = g["value_a"].to_numpy(float), g["value_b"].to_numpy(float)
        binary = is_binary(va) and is_binary(vb)
        params: dict[str, Any] = {
            "task": task,
            "baseline": baseline_name,
            "candidate": candidate_name,
            "filter": filt,
            "metric": metric,
            "paired_items": len(g),
            "unpaired_items": n_a + n_b - 2 * len(g),
            "confidence": confidence,
            "interval": "exact conditional (McNemar dual)" if binary else "paired bootstrap",
        }
        name = metric if filt in ("none", "") else f"{metric}[{filt}]"
        if binary:
            ca, cb = va == 1.0, vb == 1.0
            gained, lost = int(np.sum(cb & ~ca)), int(np.sum(ca & ~cb))
            delta, (low, high), p = delta_interval(gained, lost, len(g), confidence)
        else:
            delta, (low, high), p = bootstrap_delta(
                va, vb, confidence=confidence, n_resamples=n_resamples, seed=seed
            )
        for suffix, value in (("", delta), ("_ci_low", low), ("_ci_high", high)):
            rec.add(case, params, f"{name}_delta{suffix}", "fraction", True, value)
        rec.add(case, params, f"{name}_delta_p", "p", False, p)
        rec.add(case, params, f"{name}_items", "docs", True, float(len(g)))
        if binary:
            counts = {"flip_rate": gained + lost, "gained": gained, "lost": lost}
            for key, k in counts.items():
                share_low, share_high = stats.proportion_ci(k, len(g), confidence)
                for suffix, value in (("", k / len(g)), ("_ci_low", share_low),
                                      ("_ci_high", share_high)):  # fmt: skip
                    rec.add(case, params, f"{name}_{key}{suffix}", "fraction", False, value)
            rec.add(case, params, f"{name}_mcnemar_p", "p", False, p)
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
