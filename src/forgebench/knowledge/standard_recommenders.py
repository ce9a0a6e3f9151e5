"""Standard recommender baselines, tuned on a validation split, given the same histories as
the approaches they are compared with.

Why: a personalization figure means little against a baseline that sees no history. These
are the textbook baselines (scikit-learn only):

* ``popularity_recency``: an item's score is the sum, over every user's history, of
  ``0.5 ** (age / half_life)`` where ``age`` is how many interactions ago the user saw it
  (newest = 0); not personal, the usual non-trivial floor.
* ``item_knn``: content item-kNN. Items are TF-IDF vectors of their texts; each item keeps
  its ``k`` most cosine-similar items; a candidate's score is the summed similarity to the
  user's history items among whose neighbours it is, each history item weighted by
  ``0.5 ** (age / half_life)`` (``half_life`` 0 = no weighting).
* ``matrix_factorisation``: truncated SVD of the (users x items) interaction matrix with
  ``components`` factors; a user's score of an item is the reconstruction.

Tuning (``tune``): every user's last ``holdout`` interactions are hidden; each grid point
is fitted on the rest and scored by mean average precision of the hidden items over all
items outside the shortened history. The grid is fixed here (``GRIDS``) and recorded; the
best point is refitted on the whole histories for the test ranking. The approaches these
are compared with are fixed in config, never tuned.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from forgebench.knowledge.ranking_metrics import average_precision
from forgebench.knowledge.recommenders import order_pool

Scorer = Callable[[int], np.ndarray]

#: The stated hyperparameter grids (validation MAP picks one point per baseline).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "popularity_recency": {"half_life": [1.0, 4.0, 16.0, 1e9]},
    "item_knn": {"k": [10, 50, 200, 1000], "half_life": [0.0, 4.0]},
    "matrix_factorisation": {"components": [2, 4, 8, 16]},
}
BASELINES = tuple(GRIDS)


def _ages(history: np.ndarray) -> np.ndarray:
    """Interactions ago each history item was seen (the last one is 0)."""
    return np.arange(len(history))[::-1].astype(float)


def _decay(history: np.ndarray, half_life: float) -> np.ndarray:
    if half_life <= 0:
        return np.ones(len(history))
    return 0.5 ** (_ages(history) / half_life)


def popularity_recency(
    histories: Sequence[np.ndarray], n_items: int, texts: Sequence[str], *, half_life: float
) -> Scorer:
    scores = np.zeros(n_items)
    for h in histories:
        np.add.at(scores, h, _decay(h, half_life))
    return lambda u: scores


def item_knn(
    histories: Sequence[np.ndarray],
    n_items: int,
    texts: Sequence[str],
    *,
    k: int,
    half_life: float,
) -> Scorer:
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(token_pattern=r"[a-z]+").fit_transform(list(texts))
    sim = (x @ x.T).toarray()
    np.fill_diagonal(sim, 0.0)
    keep = min(int(k), n_items - 1)
    cut = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
    knn = np.zeros_like(sim)
    rows = np.arange(n_items)[:, None]
    knn[rows, cut] = sim[rows, cut]

    def scores(u: int) -> np.ndarray:
        h = histories[u]
        return _decay(h, half_life) @ knn[h]

    return scores


def matrix_factorisation(
    histories: Sequence[np.ndarray], n_items: int, texts: Sequence[str], *, components: int
) -> Scorer:
    from sklearn.decomposition import TruncatedSVD

    rows = np.concatenate([np.full(len(h), u) for u, h in enumerate(histories)])
    cols = np.concatenate(list(histories))
    m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(histories), n_items))
    m.data[:] = 1.0
    n = max(1, min(int(components), min(m.shape) - 1))
    svd = TruncatedSVD(n_components=n, random_state=0)
    user_f = svd.fit_transform(m)
    recon = user_f @ svd.components_
    return lambda u: recon[u]


FIT: dict[str, Callable[..., Scorer]] = {
    "popularity_recency": popularity_recency,
    "item_knn": item_knn,
    "matrix_factorisation": matrix_factorisation,
}


def grid_points(name: str) -> list[dict[str, Any]]:
    grid = GRIDS[name]
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def validation_map(
    fitted: Scorer, train: Sequence[np.ndarray], held: Sequence[np.ndarray], n_items: int, seed: int
) -> float:
    """Mean AP of the held-out interactions over every item outside the training history."""
    rng = np.random.default_rng([seed, 21])
    aps = []
    for u, (h, target) in enumerate(zip(train, held, strict=True)):
        cand = np.setdiff1d(np.arange(n_items), h)
        ranked = order_pool(fitted(u), cand, rng).tolist()
        aps.append(average_precision(ranked, set(target.tolist())))
    return float(np.mean(aps))


def tune(
    name: str,
    histories: Sequence[np.ndarray],
    texts: Sequence[str],
    *,
    holdout: int,
    seed: int,
) -> tuple[dict[str, Any], list[tuple[dict[str, Any], float]]]:
    """The grid point with the best validation MAP (first on ties) and every point's score."""
    n_items = len(texts)
    train = [h[:-holdout] for h in histories]
    held = [h[-holdout:] for h in histories]
    table = [
        (p, validation_map(FIT[name](train, n_items, texts, **p), train, held, n_items, seed))
        for p in grid_points(name)
    ]
    best = max(range(len(table)), key=lambda i: (table[i][1], -i))
    return table[best][0], table


def fit(
    name: str, histories: Sequence[np.ndarray], texts: Sequence[str], params: Mapping[str, Any]
) -> Scorer:
    return FIT[name](histories, len(texts), texts, **params)
