"""Surprise@5: how unexpected the correct bridges in a top five are, by corpus statistics
no finder uses.

Why not the finder's embedding: with embedding distance, the embedding finder's surprise
was one minus its own ranking score. Here surprise reads co-occurrence counts of the
*judge* half of the documents (forgebench.knowledge.cooccurrence).

Definition: a correct bridge ``b``'s surprise is the mean, over the endpoints ``e`` (the
source and target of a cross-domain pair; the three cues of a RAT item) and over the
word pairs of ``b`` and ``e``, of ``(1 - NPMI(w_b, w_e)) / 2``: 0 for words that always
occur together, 1/2 for independent ones, 1 for words never seen near each other. Word
pairs the judge half did not count are left out; a bridge with none left is undefined.
Surprise@5 of an item is the mean over its correct bridges among the first five: undefined
(NaN, a by-design "skipped" row, never a failure) when none is correct or none is defined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from forgebench.knowledge.cooccurrence import Counts
from forgebench.knowledge.vocabulary import normalise


def bridge_surprise(counts: Counts, bridge: str, endpoints: Sequence[str]) -> float:
    """Mean ``(1 - NPMI) / 2`` of the bridge's words with each endpoint's words."""
    per_end = []
    for e in endpoints:
        vals = [counts.npmi(a, b) for a in normalise(bridge) for b in normalise(e)]
        vals = [v for v in vals if math.isfinite(v)]
        if vals:
            per_end.append(float(np.mean([(1.0 - v) / 2.0 for v in vals])))
    return float(np.mean(per_end)) if per_end else math.nan


def surprise_at_k(
    counts: Counts,
    top: Sequence[str],
    correct: Sequence[bool],
    endpoints: Sequence[str],
    k: int = 5,
) -> float:
    """Mean surprise of the correct bridges among the first ``k``; NaN when none is
    correct or none has a defined surprise."""
    values = [
        bridge_surprise(counts, top[i], endpoints)
        for i in range(min(k, len(correct), len(top)))
        if correct[i]
    ]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan
