"""A concept graph built from the corpora: words linked when they occur close together.

Nodes are the ``n_nodes`` most frequent single words of the vocabulary. Two nodes
co-occur when they appear within ``window`` content words of each other (stop words
skipped); among the pairs seen at least ``min_count`` times, each node keeps its
``degree`` partners of highest pointwise mutual information, and a pair is an edge when
either end keeps it. Without the PMI cut frequent words link to nearly everything (half of
all pairs), which leaves nothing to predict. Undirected, unweighted, no self-loops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from forgebench.knowledge.vocabulary import STOP_WORDS, stem, tokens


@dataclass
class ConceptGraph:
    nodes: list[str]  # surface forms
    adjacency: sp.csr_matrix  # symmetric, 0/1 float64

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.nnz // 2)

    def edges(self) -> np.ndarray:
        """(E, 2) array of node pairs with u < v."""
        coo = sp.triu(self.adjacency, k=1).tocoo()
        return np.column_stack([coo.row, coo.col]).astype(np.int64)


def from_edges(n: int, edges: np.ndarray) -> sp.csr_matrix:
    """Symmetric 0/1 adjacency of ``edges`` over ``n`` nodes."""
    u, v = edges[:, 0], edges[:, 1]
    data = np.ones(2 * len(edges))
    adj = sp.coo_matrix((data, (np.r_[u, v], np.r_[v, u])), shape=(n, n)).tocsr()
    adj.data[:] = 1.0
    return adj


def build_concept_graph(
    texts: Iterable[str],
    node_words: Sequence[str],
    *,
    window: int,
    min_count: int,
    degree: int,
) -> ConceptGraph:
    """Co-occurrence graph of ``node_words`` over ``texts`` (see the module docstring)."""
    index = {stem(w): i for i, w in enumerate(node_words)}
    pairs: Counter[tuple[int, int]] = Counter()
    occurrences = np.zeros(len(node_words))
    for text in texts:
        ids = [index.get(stem(w), -1) for w in tokens(text) if w not in STOP_WORDS]
        for pos, a in enumerate(ids):
            if a < 0:
                continue
            occurrences[a] += 1
            for b in ids[pos + 1 : pos + 1 + window]:
                if b >= 0 and b != a:
                    pairs[(a, b) if a < b else (b, a)] += 1
    total = max(1.0, float(sum(pairs.values())))
    best: dict[int, list[tuple[float, int]]] = {}
    for (a, b), c in pairs.items():
        if c < min_count:
            continue
        pmi = float(np.log(c * total / (occurrences[a] * occurrences[b])))
        best.setdefault(a, []).append((pmi, b))
        best.setdefault(b, []).append((pmi, a))
    kept = set()
    for a, cands in best.items():
        for _, b in sorted(cands, key=lambda t: (-t[0], t[1]))[:degree]:
            kept.add((min(a, b), max(a, b)))
    edges = np.array(sorted(kept), dtype=np.int64).reshape(-1, 2)
    return ConceptGraph(list(node_words), from_edges(len(node_words), edges))
