"""Personalization approaches. Each sees only ``Observed`` (item texts and tags, histories,
stated preferences), never the generator's latent mixtures; the oracle alone reads
``Latent`` and is the ceiling, the random ranking the floor.

* ``base_retrieval``: BM25 (forgebench.rag.bm25) over item texts, queried with the stated
  preferences and the texts of the user's history (``history_query``).
* ``personalised_pagerank``: random walk with restart at the user over the graph of users,
  items (history edges) and topic tags (each item linked to its tag); restart ``PPR_RESTART``.
* ``alpha_rescoring``: ``alpha * bm25 + (1 - alpha) * history`` with both scores scaled to
  [0, 1] over the pool; ``history`` is the cosine between an item's word counts and the
  summed word counts of the user's history. ``alpha`` is fixed in config, not tuned.
* ``in_context``: the evaluation model reorders alpha-rescoring's top ``shortlist`` by
  ``log P(item | user context) - log P(item | "Next item:")`` (lm-eval's HFLM), the rest
  keeps alpha order. The context lists the stated preferences and recent history.

Every ranking covers the whole pool minus the user's history; ties are broken by a seeded
random key. The standard baselines (popularity with recency, item-kNN, matrix
factorisation) are in forgebench.knowledge.standard_recommenders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from forgebench.knowledge.personalization_data import Latent, Observed

PPR_RESTART = 0.15
PPR_ITERATIONS = 40
UNCONDITIONAL_CONTEXT = "Next item:"
CONTEXT_HISTORY = 5


def pool(obs: Observed, u: int) -> np.ndarray:
    """Candidate items of user ``u``: everything not in the history."""
    return np.setdiff1d(np.arange(len(obs.item_texts)), obs.histories[u])


def order_pool(scores: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``candidates`` best first by ``scores`` (indexed by item); ties broken by a seeded
    random key, never by item order (BM25 on topic names gives a few distinct scores, and
    item order would decide the rest)."""
    tie = rng.random(len(candidates))
    return candidates[np.lexsort((tie, -scores[candidates]))]


def random_ranking(obs: Observed, u: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(pool(obs, u))


def oracle_ranking(obs: Observed, latent: Latent, u: int) -> np.ndarray:
    return order_pool(latent.affinity[u], pool(obs, u), np.random.default_rng(u))


class Bm25Scorer:
    """BM25 scores of every item for a user's stated preferences."""

    def __init__(self, obs: Observed) -> None:
        from forgebench.rag.bm25 import Bm25Index

        self.n = len(obs.item_texts)
        self.index = Bm25Index.build(obs.item_texts)

    def scores(self, query: str) -> np.ndarray:
        ids, sc = self.index.search(query, self.n)
        out = np.zeros(self.n)
        out[ids] = sc
        return out


def stated_query(obs: Observed, u: int) -> str:
    return " ".join(obs.stated[u])


def history_query(obs: Observed, u: int) -> str:
    """Stated preferences and the texts of the whole history: base retrieval gets the same
    history as every other approach."""
    return " ".join([*obs.stated[u], *(obs.item_texts[i] for i in obs.histories[u])])


class PprScorer:
    """Personalised PageRank over users + items + tags."""

    def __init__(self, obs: Observed) -> None:
        n_users, n_items = len(obs.histories), len(obs.item_texts)
        n_tags = int(obs.item_tags.max()) + 1
        self.n_users, self.n_items = n_users, n_items
        rows, cols = [], []
        for u, hist in enumerate(obs.histories):
            rows += [u] * len(hist)
            cols += [n_users + int(i) for i in hist]
        rows += list(range(n_users, n_users + n_items))
        cols += [n_users + n_items + int(t) for t in obs.item_tags]
        n = n_users + n_items + n_tags
        a = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
        a = ((a + a.T) > 0).astype(float)
        deg = np.asarray(a.sum(axis=1)).ravel()
        inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
        self.walk_t = (sp.diags(inv) @ a).T.tocsr()
        self.n = n

    def scores(self, u: int) -> np.ndarray:
        start = np.zeros(self.n)
        start[u] = 1.0
        x = start.copy()
        for _ in range(PPR_ITERATIONS):
            x = PPR_RESTART * start + (1 - PPR_RESTART) * (self.walk_t @ x)
        return x[self.n_users : self.n_users + self.n_items]


class HistoryScorer:
    """Cosine between item word counts and the user's summed history word counts."""

    def __init__(self, obs: Observed) -> None:
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for i, text in enumerate(obs.item_texts):
            for w in text.replace(":", " ").split():
                rows.append(i)
                cols.append(vocab.setdefault(w, len(vocab)))
        m = sp.coo_matrix(
            (np.ones(len(rows)), (rows, cols)), shape=(len(obs.item_texts), len(vocab))
        )
        m = m.tocsr()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        self.m = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m
        self.obs = obs

    def scores(self, u: int) -> np.ndarray:
        profile = np.asarray(self.m[self.obs.histories[u]].sum(axis=0)).ravel()
        norm = np.linalg.norm(profile)
        return self.m @ (profile / norm) if norm > 0 else np.zeros(self.m.shape[0])


def minmax(x: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] over ``candidates`` (constant scores become 0)."""
    lo, hi = x[candidates].min(), x[candidates].max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def alpha_scores(
    bm25: np.ndarray, hist: np.ndarray, candidates: np.ndarray, alpha: float
) -> np.ndarray:
    return alpha * minmax(bm25, candidates) + (1 - alpha) * minmax(hist, candidates)


def user_context(obs: Observed, u: int) -> str:
    """What the in-context approach tells the model about the user."""
    recent = [obs.item_texts[i] for i in obs.histories[u][-CONTEXT_HISTORY:]]
    return (
        f"The user likes {', '.join(obs.stated[u])}. Recently read: "
        + "; ".join(recent)
        + ". Next item:"
    )


def rescoring_requests(obs: Observed, u: int, shortlist: Sequence[int]) -> list[tuple[str, str]]:
    ctx = user_context(obs, u)
    return [(ctx, " " + obs.item_texts[i]) for i in shortlist]


def downstream_prompt(obs: Observed, u: int, top: Sequence[int]) -> str:
    """The context every approach would pass to a generator: stated preferences and its
    top items (the token-cost baseline common to all approaches)."""
    return f"The user likes {', '.join(obs.stated[u])}. Recommended: " + "; ".join(
        obs.item_texts[i] for i in top
    )
