"""Hybrid fusion by reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009).

``score(d) = sum over rankings r of 1 / (k + rank_r(d))``, ranks counted from 1, a
document absent from a ranking contributing nothing. RRF needs no score calibration
between BM25 and cosine similarity, which live on unrelated scales. ``k = 60`` is the
value of the original paper, where it was found robust; it damps the weight of the very
top ranks so that agreement between rankings counts more than one ranking's first place.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

RRF_K_DEFAULT = 60

T = TypeVar("T", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[T]], k: int = RRF_K_DEFAULT
) -> list[tuple[T, float]]:
    """Fuse best-first rankings into one ``[(item, rrf_score), ...]``, best first.

    Ties in fused score are broken by the best rank the item reached in any ranking, then
    by the order of the rankings given, so the output is deterministic.
    """
    if k < 1:
        raise ValueError(f"rrf k must be >= 1, got {k}")
    score: dict[T, float] = {}
    best: dict[T, tuple[int, int]] = {}
    for which, ranking in enumerate(rankings):
        for rank, item in enumerate(ranking, start=1):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
            key = (rank, which)
            if item not in best or key < best[item]:
                best[item] = key
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]]))
