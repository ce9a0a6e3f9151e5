"""Surprise@5: how far the correct bridges in a top five lie from the endpoints they join.

Definition (embeddings of all-MiniLM-L6-v2, unit length, cosine distance ``1 - cos``): for
each correct bridge ``b`` among the first five proposals, its surprise is the mean distance
from ``b`` to the endpoints (source and target of a cross-domain pair; the three cues of a
RAT item); Surprise@5 of an item is the mean over those correct bridges. It is undefined
(NaN, recorded as a skipped row) for an item with no correct bridge in its top five: a
wrong proposal's distance says nothing about creative bridging. Range [0, 2]; higher means
the correct link was less obvious from either side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bridge_surprise(bridge_vec: np.ndarray, endpoint_vecs: np.ndarray) -> float:
    """Mean cosine distance of one bridge from each endpoint."""
    return float(np.mean(1.0 - endpoint_vecs @ bridge_vec))


def surprise_at_k(
    top_vecs: np.ndarray, correct: Sequence[bool], endpoint_vecs: np.ndarray, k: int = 5
) -> float:
    """Mean surprise of the correct bridges among the first ``k``; NaN when none is correct."""
    values = [
        bridge_surprise(top_vecs[i], endpoint_vecs)
        for i in range(min(k, len(correct)))
        if correct[i]
    ]
    return float(np.mean(values)) if values else math.nan
