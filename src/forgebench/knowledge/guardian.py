"""The Guardian gate for proposed bridges: an explicit plausibility rule with a threshold
calibrated on generated pairs, so its pass rate is measured, not fixed by construction.

Rule: a bridge ``b`` for endpoints ``e_1..e_m`` passes when ``min_i cos(b, e_i) >= tau``:
every endpoint must be at least as related to the bridge as a typical attested word pair.

Calibration (held apart from the 27 test items: no calibration pair contains any of their
words): positives are the two words of a frequent two-word phrase of the corpus vocabulary
(words the corpora put side by side), negatives are seeded random pairs of vocabulary
words. ``tau`` is the similarity that maximises Youden's J = TPR - FPR over the observed
scores (ties: the lowest such threshold). Its TPR and FPR on the calibration pairs are
recorded beside the pass rates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from forgebench.errors import ForgebenchError
from forgebench.knowledge.vocabulary import Vocabulary


@dataclass(frozen=True)
class Calibration:
    threshold: float
    tpr: float
    fpr: float
    n_positive: int
    n_negative: int


def calibration_pairs(
    vocab: Vocabulary, excluded: set[str], n_pairs: int, rng: np.random.Generator
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(positive, negative) word pairs, none touching an ``excluded`` (stemmed) word."""
    uni = [p for p, k in zip(vocab.phrases, vocab.keys, strict=True) if len(k) == 1]
    uni = [p for p in uni if not excluded.intersection(vocab.keys[vocab.index_of(p)])]
    pos = []
    for phrase, key in zip(vocab.phrases, vocab.keys, strict=True):
        if len(key) == 2 and key[0] != key[1] and not excluded.intersection(key):
            a, b = phrase.split(" ")
            pos.append((a, b))
    if len(pos) < 10 or len(uni) < 20:
        raise ForgebenchError(
            "knowledge.creativity: too few calibration pairs for the Guardian "
            f"({len(pos)} phrases, {len(uni)} words); raise max_bigrams/max_unigrams"
        )
    pos_idx = rng.choice(len(pos), size=min(n_pairs, len(pos)), replace=False)
    positives = [pos[i] for i in sorted(pos_idx)]
    negatives = []
    while len(negatives) < len(positives):
        i, j = rng.choice(len(uni), size=2, replace=False)
        negatives.append((uni[i], uni[j]))
    return positives, negatives


def youden_threshold(pos_scores: np.ndarray, neg_scores: np.ndarray) -> Calibration:
    """The threshold maximising TPR - FPR for the rule ``score >= threshold``."""
    thresholds = np.unique(np.concatenate([pos_scores, neg_scores]))
    tpr = (pos_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    fpr = (neg_scores[None, :] >= thresholds[:, None]).mean(axis=1)
    best = int(np.argmax(tpr - fpr))
    return Calibration(
        float(thresholds[best]),
        float(tpr[best]),
        float(fpr[best]),
        pos_scores.size,
        neg_scores.size,
    )


def calibrate(
    encode: Callable[[Sequence[str]], np.ndarray],
    positives: Sequence[tuple[str, str]],
    negatives: Sequence[tuple[str, str]],
) -> Calibration:
    """Embed the pairs and choose the Youden threshold on their cosine similarities."""

    def sims(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        a = encode([p[0] for p in pairs])
        b = encode([p[1] for p in pairs])
        return np.einsum("ij,ij->i", a, b)

    return youden_threshold(sims(positives), sims(negatives))


def passes(bridge_vec: np.ndarray, endpoint_vecs: np.ndarray, threshold: float) -> bool:
    """The gate: the bridge is at least ``threshold``-similar to every endpoint."""
    return bool(np.min(endpoint_vecs @ bridge_vec) >= threshold)
