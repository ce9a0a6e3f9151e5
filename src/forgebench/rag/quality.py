"""Retrieval quality of one ranked list against a query's relevant documents.

Binary relevance, one value per query; the benchmark records each query's value so the
report's bootstrap intervals run over queries. Definitions (Manning, Raghavan & Schuetze,
*Introduction to Information Retrieval*, ch. 8):

* ``recall@k``: share of the relevant documents found in the top k.
* reciprocal rank: ``1 / rank`` of the first relevant document (ranks from 1), 0 when none
  is in the retrieved list; MRR is its mean over queries. Retrieval depth caps it: a
  relevant document below the retrieved depth counts 0.
* ``nDCG@k``: ``DCG@k / IDCG@k`` with ``DCG@k = sum_{i<=k} rel_i / log2(i + 1)`` and IDCG
  the DCG of the ideal ranking (every relevant document first).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence

RECALL_KS = (1, 5, 10, 20)
NDCG_K = 10


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Share of ``relevant`` within the first ``k`` of ``ranked``."""
    if not relevant:
        raise ValueError("a query needs at least one relevant document")
    rel = set(relevant)
    return len(rel.intersection(ranked[:k])) / len(rel)


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """1 / rank of the first relevant item in ``ranked``; 0 when none is there."""
    rel = set(relevant)
    for rank, item in enumerate(ranked, start=1):
        if item in rel:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = NDCG_K) -> float:
    """Binary-relevance nDCG of the first ``k`` of ``ranked``."""
    if not relevant:
        raise ValueError("a query needs at least one relevant document")
    rel = set(relevant)
    dcg = sum(1.0 / math.log2(i + 1) for i, item in enumerate(ranked[:k], start=1) if item in rel)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(rel), k) + 1))
    return dcg / idcg


def overlap_at_k(approx: Sequence[Hashable], exact: Sequence[Hashable], k: int) -> float:
    """Share of the exact top ``k`` that the approximate top ``k`` also holds (ANN recall)."""
    truth = list(exact[:k])
    if not truth:
        raise ValueError("the exact ranking is empty")
    return len(set(truth).intersection(approx[:k])) / len(truth)


def query_metrics(
    ranked: Sequence[Hashable],
    relevant: Collection[Hashable],
    ks: Sequence[int] = RECALL_KS,
    ndcg_k: int = NDCG_K,
) -> dict[str, float]:
    """Every per-query metric the benchmark records, by metric name."""
    out = {f"recall_at_{k}": recall_at_k(ranked, relevant, k) for k in ks}
    out["reciprocal_rank"] = reciprocal_rank(ranked, relevant)
    out[f"ndcg_at_{ndcg_k}"] = ndcg_at_k(ranked, relevant, ndcg_k)
    return out
