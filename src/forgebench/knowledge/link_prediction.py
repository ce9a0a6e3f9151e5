"""Hidden-link recovery on the concept graph: classic predictors and the embedding model.

A seeded share of the edges is hidden; the candidates are the hidden edges plus
``negative_ratio`` times as many node pairs that are not edges of the full graph. Each
predictor scores every candidate from the remaining (training) graph only, and the
ranking is scored by precision@k (share of hidden edges in the top k; ties broken by a
seeded random order, so a predictor full of ties gets no credit for list order) and AUC
(probability that a hidden edge outscores a non-edge, ties counting one half).

Predictors: common neighbours ``|N(u) & N(v)|``; Adamic-Adar ``sum 1/log deg(w)`` over
common neighbours ``w``; personalised PageRank ``pi_u(v) + pi_v(u)`` with restart
probability ``restart`` (power iteration, ``PPR_ITERATIONS`` steps); embedding cosine of
the two words (all-MiniLM-L6-v2), which never sees the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from forgebench.knowledge.concept_graph import from_edges

PPR_ITERATIONS = 40
PREDICTORS = ("common_neighbours", "adamic_adar", "personalised_pagerank", "embedding")


@dataclass
class LinkSplit:
    train: sp.csr_matrix
    pairs: np.ndarray  # (n, 2) candidates
    labels: np.ndarray  # 1 = hidden edge, 0 = non-edge


def hide_edges(
    n_nodes: int, edges: np.ndarray, share: float, negative_ratio: int, rng: np.random.Generator
) -> LinkSplit:
    """Hide ``share`` of ``edges``; sample ``negative_ratio`` non-edges per hidden edge."""
    n_hidden = max(1, round(share * len(edges)))
    perm = rng.permutation(len(edges))
    hidden, kept = edges[perm[:n_hidden]], edges[perm[n_hidden:]]
    existing = {(int(u), int(v)) for u, v in edges}
    negatives: set[tuple[int, int]] = set()
    want = n_hidden * negative_ratio
    max_pairs = n_nodes * (n_nodes - 1) // 2 - len(existing)
    want = min(want, max_pairs)
    while len(negatives) < want:
        u, v = (int(x) for x in rng.choice(n_nodes, size=2, replace=False))
        p = (min(u, v), max(u, v))
        if p not in existing:
            negatives.add(p)
    neg = np.array(sorted(negatives), dtype=np.int64).reshape(-1, 2)
    pairs = np.vstack([hidden, neg])
    labels = np.r_[np.ones(len(hidden)), np.zeros(len(neg))].astype(np.int64)
    return LinkSplit(from_edges(n_nodes, kept), pairs, labels)


def common_neighbours(adj: sp.csr_matrix, pairs: np.ndarray) -> np.ndarray:
    prod = adj[pairs[:, 0]].multiply(adj[pairs[:, 1]])
    return np.asarray(prod.sum(axis=1)).ravel()


def adamic_adar(adj: sp.csr_matrix, pairs: np.ndarray) -> np.ndarray:
    deg = np.asarray(adj.sum(axis=1)).ravel()
    weight = np.zeros_like(deg)
    ok = deg > 1
    weight[ok] = 1.0 / np.log(deg[ok])
    prod = adj[pairs[:, 0]].multiply(adj[pairs[:, 1]])
    return np.asarray(prod @ weight).ravel()


def personalised_pagerank(adj: sp.csr_matrix, pairs: np.ndarray, restart: float) -> np.ndarray:
    """``pi_u(v) + pi_v(u)``: random walks restarting at one endpoint reach the other."""
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    walk = sp.diags(inv) @ adj  # row-stochastic where deg > 0
    sources = np.unique(pairs.ravel())
    pos = {int(s): i for i, s in enumerate(sources)}
    start = np.zeros((len(sources), adj.shape[0]))
    start[np.arange(len(sources)), sources] = 1.0
    x = start.copy()
    walk_t = walk.T.tocsr()
    for _ in range(PPR_ITERATIONS):
        x = restart * start + (1.0 - restart) * (walk_t @ x.T).T
    iu = np.array([pos[int(u)] for u in pairs[:, 0]])
    iv = np.array([pos[int(v)] for v in pairs[:, 1]])
    return x[iu, pairs[:, 1]] + x[iv, pairs[:, 0]]


def embedding_cosine(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney AUC with ties counted one half."""
    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at_k(
    scores: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator
) -> float:
    """Share of hidden edges among the ``k`` best-scored candidates (ties in seeded order)."""
    tiebreak = rng.random(scores.size)
    order = np.lexsort((tiebreak, -scores))
    return float(labels[order[:k]].mean())
