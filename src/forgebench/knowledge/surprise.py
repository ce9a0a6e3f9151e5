"""Surprise of proposed bridges by corpus statistics no finder uses: unexpectedness@k of a
top list, serendipity@k of an item, and (secondary) the surprise of the correct bridges.

Why not the finder's embedding: with embedding distance, the embedding finder's surprise
was one minus its own ranking score. Here surprise reads co-occurrence counts of the
*judge* half of the documents (forgebench.knowledge.cooccurrence).

Why three figures: the earlier ``surprise@5`` was the mean surprise of the *correct*
bridges among the first five, undefined when none is correct; with hit rates of 5-7 % it
rested on 0-5 items per finder. The recommender-systems literature keeps the two things
apart (Kaminskas & Bridge 2016, "Diversity, Serendipity, Novelty, and Coverage", ACM TiiS;
serendipity as unexpected *and* useful after Ge et al. 2010):

* A bridge ``b``'s surprise for endpoints ``e`` (the source and target of a cross-domain
  pair; the three cues of a RAT item) is the mean, over the endpoints and over the word
  pairs of ``b`` and ``e``, of ``(1 - NPMI(w_b, w_e)) / 2``: 0 for words that always occur
  together, 1/2 for independent ones, 1 for words never seen near each other. Word pairs
  the judge half did not count are left out; a bridge with none left is undefined.
* ``unexpectedness@k`` of an item: the mean surprise of *all* its first ``k`` suggestions
  with a defined surprise, correct or not (a property of the list, as in Kaminskas &
  Bridge); undefined only when the judge counts cover none of them.
* ``serendipity@k`` of an item: 1 when at least one of the first ``k`` suggestions is
  correct *and* unexpected (surprise above a threshold fixed in config before any run),
  else 0, also when nothing is correct: a proportion over all items (Clopper-Pearson
  applies). A correct bridge whose surprise is undefined is not shown to be unexpected
  and does not count.
* ``correct_surprise@k`` (secondary, the old figure): the mean surprise of the correct
  bridges among the first ``k``; NaN (a by-design "skipped" row) when none is correct.
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


def _defined_mean(values: Sequence[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return float(np.mean(kept)) if kept else math.nan


def unexpectedness_at_k(
    counts: Counts, top: Sequence[str], endpoints: Sequence[str], k: int = 5
) -> float:
    """Mean surprise of the first ``k`` suggestions, correct or not; NaN when the judge
    counts cover none of them."""
    return _defined_mean([bridge_surprise(counts, b, endpoints) for b in top[:k]])


def serendipity_at_k(
    counts: Counts,
    top: Sequence[str],
    correct: Sequence[bool],
    endpoints: Sequence[str],
    threshold: float,
    k: int = 5,
) -> float:
    """1.0 when one of the first ``k`` suggestions is correct and its surprise is above
    ``threshold``, else 0.0 (never NaN: an item with no correct bridge is a 0)."""
    for i in range(min(k, len(correct), len(top))):
        if correct[i] and bridge_surprise(counts, top[i], endpoints) > threshold:
            return 1.0
    return 0.0


def correct_surprise_at_k(
    counts: Counts,
    top: Sequence[str],
    correct: Sequence[bool],
    endpoints: Sequence[str],
    k: int = 5,
) -> float:
    """Mean surprise of the correct bridges among the first ``k``; NaN when none is
    correct or none has a defined surprise."""
    n = min(k, len(correct), len(top))
    return _defined_mean(
        [bridge_surprise(counts, top[i], endpoints) for i in range(n) if correct[i]]
    )
