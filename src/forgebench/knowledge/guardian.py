"""The Guardian gate for proposed bridges: an explicit plausibility rule that shares nothing
with the finders, with a threshold calibrated on held-apart pairs and its calibration
recorded with exact intervals.

Why not the finder's embedding: a gate that judges with the embedding the finder ranks by
passes what the finder already liked, so its pass rate measures similarity to the
endpoints, not plausibility. This gate reads corpus co-occurrence of the *judge* half of
the documents (forgebench.knowledge.cooccurrence), which no finder uses.

Rule: a bridge ``b`` for endpoints ``e_1..e_m`` passes when ``min_i cos(v(b), v(e_i)) >=
tau``, ``v`` the unit PPMI context profile of a word (of a phrase: the normalised mean
of its words' profiles). Words the judge half never counted have no profile: the
judgement of such a bridge is undefined (NaN), not a rejection.

Calibration: positives are compounds attested in the *construction* half (two words
adjacent at least three times), negatives seeded random pairs of candidate words; none
touches a word of any test item. ``tau`` maximises Youden's J = TPR - FPR over the
observed scores (ties: the lowest such threshold); TPR and FPR are recorded with their
Clopper-Pearson intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.knowledge.cooccurrence import Counts
from forgebench.knowledge.vocabulary import normalise


@dataclass(frozen=True)
class Calibration:
    threshold: float
    tpr: float
    fpr: float
    n_positive: int
    n_negative: int

    def intervals(self, confidence: float) -> dict[str, tuple[float, float]]:
        """Clopper-Pearson intervals of TPR and FPR."""
        return {
            "tpr": stats.proportion_ci(
                round(self.tpr * self.n_positive), self.n_positive, confidence
            ),
            "fpr": stats.proportion_ci(
                round(self.fpr * self.n_negative), self.n_negative, confidence
            ),
        }


class Judge:
    """PPMI context profiles of the judge half's words (cached per phrase)."""

    def __init__(self, judge: Counts) -> None:
        self.index = judge.index
        self.rows = judge.ppmi_rows()
        self.known = np.asarray(self.rows.getnnz(axis=1) > 0)
        self._profiles: dict[str, np.ndarray | None] = {}

    def profile(self, phrase: str) -> np.ndarray | None:
        if phrase not in self._profiles:
            ids = [self.index.get(w) for w in normalise(phrase)]
            ids = [i for i in ids if i is not None and self.known[i]]
            v = np.asarray(self.rows[ids].mean(axis=0)).ravel() if ids else None
            norm = float(np.linalg.norm(v)) if v is not None else 0.0
            self._profiles[phrase] = v / norm if norm > 0 else None
        return self._profiles[phrase]

    def similarity(self, a: str, b: str) -> float:
        """Cosine of two profiles; NaN when either has none."""
        pa, pb = self.profile(a), self.profile(b)
        if pa is None or pb is None:
            return float("nan")
        return float(pa @ pb)

    def score(self, bridge: str, endpoints: Sequence[str]) -> float:
        """The gate's score: the smallest similarity of the bridge to an endpoint."""
        return float(np.min([self.similarity(bridge, e) for e in endpoints]))

    def passes(self, bridge: str, endpoints: Sequence[str], threshold: float) -> float:
        """1.0 pass, 0.0 reject, NaN undefined (a word without a profile)."""
        s = self.score(bridge, endpoints)
        return float("nan") if np.isnan(s) else float(s >= threshold)


def calibration_pairs(
    construction: Counts,
    surfaces: Sequence[str],
    excluded: set[str],
    n_pairs: int,
    rng: np.random.Generator,
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(positive, negative) word pairs, none touching an ``excluded`` (stemmed) word."""
    words = list(construction.index)
    ok = np.array([w not in excluded for w in words], dtype=bool)
    adj = construction.adjacent.tocoo()
    keep = (adj.data >= 3) & ok[adj.row] & ok[adj.col] & (adj.row != adj.col)
    pos = sorted({(int(a), int(b)) for a, b in zip(adj.row[keep], adj.col[keep], strict=True)})
    uni = np.flatnonzero(ok & (construction.occurrences > 0))
    if len(pos) < 10 or len(uni) < 20:
        raise ForgebenchError(
            "knowledge.creativity: too few calibration pairs for the Guardian "
            f"({len(pos)} compounds, {len(uni)} words); raise max_unigrams"
        )
    pick = rng.choice(len(pos), size=min(n_pairs, len(pos)), replace=False)
    positives = [(surfaces[pos[i][0]], surfaces[pos[i][1]]) for i in sorted(pick)]
    negatives = []
    while len(negatives) < len(positives):
        i, j = rng.choice(uni, size=2, replace=False)
        negatives.append((surfaces[int(i)], surfaces[int(j)]))
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
    judge: Judge,
    positives: Sequence[tuple[str, str]],
    negatives: Sequence[tuple[str, str]],
) -> Calibration:
    """Score the pairs (pairs with an undefined score are left out, counted by the
    Calibration's sizes) and choose the Youden threshold."""

    def sims(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        s = np.array([judge.similarity(a, b) for a, b in pairs])
        return s[np.isfinite(s)]

    return youden_threshold(sims(positives), sims(negatives))
