"""Corpus co-occurrence statistics of the candidate words, counted on two disjoint halves.

Why: the creativity benchmark needs judges the bridge finders do not use. The finders rank
by a sentence embedding (all-MiniLM-L6-v2) and the evaluation model; these counts are
neither. The documents are split by position (even: ``construction``, odd: ``judge``):
items are generated from the construction half, surprise and the Guardian read the judge
half, so a judge never re-reads the statistics an item was made from.

Counted per half over the words of ``words`` (stemmed, stop words skipped, as
forgebench.knowledge.vocabulary tokenises): ``occurrences`` per word, ``window`` counts of
two words within ``window`` content words of each other (symmetric), and ``adjacent``
counts of ordered neighbours (``a`` right before ``b``), the compounds RAT items are made of.

* NPMI (Bouma 2009): ``log(p(a, b) / (p(a) p(b))) / -log p(a, b)`` over window counts, in
  [-1, 1]; -1 for a pair never seen together.
* PPMI rows: each word's row of ``max(PMI, 0)``, unit length; their cosine is a
  second-order (shared-context) similarity (Levy, Goldberg & Dagan 2015).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from forgebench.knowledge.vocabulary import STOP_WORDS, stem, tokens


@dataclass
class Counts:
    index: dict[str, int]  # stem -> row
    occurrences: np.ndarray
    window: sp.csr_matrix  # symmetric
    adjacent: sp.csr_matrix  # ordered: [a, b] = a right before b
    documents: int
    _npmi: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    @property
    def total(self) -> float:
        return max(1.0, float(self.window.sum()) / 2)

    def npmi(self, a: str, b: str) -> float:
        """NPMI of two stems over window counts; NaN when either is not counted."""
        key = (a, b) if a <= b else (b, a)
        if key not in self._npmi:
            self._npmi[key] = self._npmi_of(*key)
        return self._npmi[key]

    def _npmi_of(self, a: str, b: str) -> float:
        i, j = self.index.get(a), self.index.get(b)
        if i is None or j is None or i == j:
            return float("nan")
        joint = float(self.window[i, j])
        if joint == 0 or self.occurrences[i] == 0 or self.occurrences[j] == 0:
            return -1.0
        n = float(self.occurrences.sum())
        p_ab = joint / self.total
        pmi = np.log(p_ab / ((self.occurrences[i] / n) * (self.occurrences[j] / n)))
        return float(np.clip(pmi / -np.log(p_ab), -1.0, 1.0))

    def npmi_row(self, i: int) -> np.ndarray:
        """NPMI of word ``i`` with every word (-1 where never together, NaN for itself)."""
        n = float(self.occurrences.sum())
        joint = self.window.getrow(i).toarray().ravel()
        out = np.full(joint.size, -1.0)
        seen = (joint > 0) & (self.occurrences > 0)
        p_ab = joint[seen] / self.total
        p_a = self.occurrences[i] / n
        with np.errstate(divide="ignore", invalid="ignore"):
            pmi = np.log(p_ab / (p_a * self.occurrences[seen] / n))
            out[seen] = np.clip(pmi / -np.log(p_ab), -1.0, 1.0)
        out[i] = np.nan
        return out

    def ppmi_rows(self) -> sp.csr_matrix:
        """Rows of ``max(PMI, 0)`` over window counts, scaled to unit length (zero rows
        stay zero): a word's context profile, for second-order similarity."""
        w = self.window.tocoo()
        row_sum = np.asarray(self.window.sum(axis=1)).ravel()
        total = max(1.0, float(row_sum.sum()))
        with np.errstate(divide="ignore"):
            pmi = np.log(w.data * total / (row_sum[w.row] * row_sum[w.col]))
        keep = pmi > 0
        m = sp.csr_matrix((pmi[keep], (w.row[keep], w.col[keep])), shape=self.window.shape)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (
            sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ m
        ).tocsr()


def _pairs(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) index pairs within ``window`` positions; -1 entries never pair."""
    rows, cols = [], []
    for off in range(1, window + 1):
        a, b = ids[:-off], ids[off:]
        ok = (a >= 0) & (b >= 0) & (a != b)
        rows.append(a[ok])
        cols.append(b[ok])
    return np.concatenate(rows), np.concatenate(cols)


def count_halves(
    texts: Iterable[str], words: Sequence[str], *, window: int
) -> tuple[Counts, Counts]:
    """(construction, judge) counts of ``words`` (stems) over even and odd documents.
    Documents are joined with ``window`` gaps so no pair spans two of them; adjacency is
    read on the raw word sequence (a stop word in between breaks it)."""
    index = {w: i for i, w in enumerate(words)}
    n = len(words)
    gap = [-1] * window
    seq: list[list[int]] = [[], []]  # -2 marks a stop word
    docs = [0, 0]
    for d, text in enumerate(texts):
        half = d % 2
        docs[half] += 1
        seq[half] += [-2 if t in STOP_WORDS else index.get(stem(t), -1) for t in tokens(text)]
        seq[half] += gap
    out = []
    for half in range(2):
        all_ids = np.asarray(seq[half], dtype=np.int64)
        ids = all_ids[all_ids != -2]
        occ = np.bincount(ids[ids >= 0], minlength=n).astype(float)
        r, c = _pairs(ids, window)
        win = sp.coo_matrix((np.ones(2 * r.size), (np.r_[r, c], np.r_[c, r])), shape=(n, n))
        ar, ac = _pairs(np.where(all_ids == -2, -1, all_ids), 1)
        adj = sp.coo_matrix((np.ones(ar.size), (ar, ac)), shape=(n, n))
        out.append(Counts(index, occ, win.tocsr(), adj.tocsr(), docs[half]))
    return out[0], out[1]
