"""Ranking metrics for graded relevance; binary recall@k comes from forgebench.rag.quality.

* average precision: mean of precision@rank over the ranks of the relevant items, divided
  by the number of relevant items (MAP is its mean over users).
* graded nDCG@k: ``DCG = sum_{i<=k} (2^g_i - 1) / log2(i + 1)`` over grades ``g`` (Jarvelin
  & Kekalainen 2002, the exponential gain of Burges et al. 2005), divided by the DCG of the
  ideal order. forgebench.rag.quality.ndcg_at_k is the binary special case.
* precision@k: share of the first k that is relevant.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence

from forgebench.rag.quality import recall_at_k

__all__ = ["average_precision", "graded_ndcg_at_k", "precision_at_k", "recall_at_k"]


def average_precision(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """Average precision of ``ranked`` against a non-empty set of relevant items."""
    rel = set(relevant)
    if not rel:
        raise ValueError("average precision needs at least one relevant item")
    hits, total = 0, 0.0
    for rank, item in enumerate(ranked, start=1):
        if item in rel:
            hits += 1
            total += hits / rank
    return total / len(rel)


def graded_ndcg_at_k(ranked: Sequence[Hashable], grades: Mapping[Hashable, int], k: int) -> float:
    """Exponential-gain nDCG@k; ``grades`` maps items to grades (missing = 0)."""
    gains = sorted((g for g in grades.values() if g > 0), reverse=True)
    if not gains:
        raise ValueError("nDCG needs at least one item with a positive grade")
    dcg = sum(
        (2 ** grades.get(item, 0) - 1) / math.log2(i + 1)
        for i, item in enumerate(ranked[:k], start=1)
    )
    idcg = sum((2**g - 1) / math.log2(i + 1) for i, g in enumerate(gains[:k], start=1))
    return dcg / idcg


def precision_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of the first ``k`` of ``ranked`` that is in ``relevant``."""
    if k < 1:
        raise ValueError("k must be >= 1")
    rel = set(relevant)
    return sum(1 for item in ranked[:k] if item in rel) / k
