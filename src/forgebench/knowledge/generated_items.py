"""RAT items and cross-domain pairs generated from the corpora, so each creativity rate
rests on enough items to decide (the original's 15 and 12 cannot).

Both are made from the *construction* half of the documents only
(forgebench.knowledge.cooccurrence); the judges (surprise, Guardian) read the other half.

* RAT items, compound style (Mednick 1962; Bowden & Jung-Beeman 2003): a target word that
  forms an attested two-word compound with at least three other candidate words (``a t``
  or ``t a`` adjacent at least ``min_compound`` times, and in at least ``min_share`` of
  the partner's occurrences, so "often" is no cue); three of those partners, drawn
  with a seed, are the cues. The finder sees only the cues and must find the target among
  the candidate words.
* Cross-domain pairs: two candidate words that never occur near each other in the
  construction half (different contexts), joined by at least one connection: a word whose
  NPMI with each of them is at least ``min_npmi`` there. The connections (up to
  ``max_connections``, strongest first) are the expected answers.

Targets, cues and endpoints are drawn from words seen at least ``min_count`` times; no
generated item uses a word of the original 27 (they stay a separate, held-apart set).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forgebench.knowledge.cooccurrence import Counts
from forgebench.knowledge.rat_data import CrossDomainPair, RatItem


def _candidates(
    counts: Counts, surfaces: Sequence[str], excluded: set[str], min_count: int
) -> np.ndarray:
    words = list(counts.index)
    ok = [
        counts.occurrences[i] >= min_count and words[i] not in excluded and surfaces[i]
        for i in range(len(words))
    ]
    return np.flatnonzero(np.asarray(ok, dtype=bool))


def rat_items(
    counts: Counts,
    surfaces: Sequence[str],
    n_items: int,
    rng: np.random.Generator,
    *,
    excluded: set[str],
    min_count: int = 5,
    min_compound: int = 3,
    min_share: float = 0.02,
) -> list[RatItem]:
    """Up to ``n_items`` compound RAT items (see the module docstring); ``surfaces[i]`` is
    the word shown for stem ``i`` of ``counts``."""
    allowed = np.zeros(len(surfaces), dtype=bool)
    allowed[_candidates(counts, surfaces, excluded, min_count)] = True
    adj = counts.adjacent
    both = (adj + adj.T).tocsr()
    targets = []
    for t in np.flatnonzero(allowed):
        row = both.getrow(int(t))
        share = row.data / np.maximum(counts.occurrences[row.indices], 1.0)
        keep = (row.data >= min_compound) & (share >= min_share) & allowed[row.indices]
        partners = row.indices[keep]
        partners = partners[partners != t]
        if partners.size >= 3:
            targets.append((int(t), np.sort(partners)))
    order = rng.permutation(len(targets))[:n_items]
    items = []
    for j in sorted(order.tolist()):
        t, partners = targets[j]
        cues = rng.choice(partners, size=3, replace=False)
        items.append(RatItem(tuple(surfaces[int(c)] for c in cues), surfaces[t], "generated"))
    return items


def cross_pairs(
    counts: Counts,
    surfaces: Sequence[str],
    n_pairs: int,
    rng: np.random.Generator,
    *,
    excluded: set[str],
    min_count: int = 20,
    min_npmi: float = 0.25,
    max_connections: int = 5,
    tries_per_pair: int = 200,
) -> list[CrossDomainPair]:
    """Up to ``n_pairs`` generated cross-domain pairs (see the module docstring), from at
    most ``tries_per_pair * n_pairs`` seeded draws."""
    pool = _candidates(counts, surfaces, excluded, min_count)
    allowed = np.zeros(len(surfaces), dtype=bool)
    allowed[pool] = True
    pairs: list[CrossDomainPair] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(tries_per_pair * n_pairs):
        if len(pairs) >= n_pairs:
            break
        a, b = (int(x) for x in rng.choice(pool, size=2, replace=False))
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        ra = counts.npmi_row(a)  # not cached: 20,000 dense rows would not fit
        if ra[b] > -1.0:  # seen together: not distant enough
            continue
        rb = counts.npmi_row(b)
        joint = np.fmin(ra, rb)
        joint[~allowed] = np.nan
        joint[[a, b]] = np.nan
        good = np.flatnonzero(np.nan_to_num(joint, nan=-2.0) >= min_npmi)
        if good.size == 0:
            continue
        best = good[np.argsort(-joint[good], kind="stable")][:max_connections]
        pairs.append(
            CrossDomainPair(surfaces[a], surfaces[b], tuple(surfaces[int(c)] for c in best))
        )
    return pairs
