"""Vector search over unit-length embeddings: exact (normalised dot product) and HNSW.

Exact search is the reference: one matrix-vector product over every passage, so its top k
is the true top k (up to float ties). The approximate index is faiss's HNSW graph
(Malkov & Yashunin 2018) in inner-product space; its recall against the exact top k is
measured by the benchmark, not assumed. Scores are cosine similarities in both.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """What the pipeline needs from a dense index."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    if vecs.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, dim), got shape {vecs.shape}")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms == 0, 1.0, norms)


def _query_matrix(queries: np.ndarray, dim: int) -> np.ndarray:
    q = _unit_rows(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.shape[1] != dim:
        raise ValueError(f"query dimension {q.shape[1]} differs from the index's {dim}")
    return q


class ExactIndex:
    """Brute-force cosine search: every passage scored, top k by partial sort."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = _unit_rows(vectors)
        self.n, self.dim = self.vectors.shape

    @property
    def nbytes(self) -> int:
        return int(self.vectors.nbytes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (positions, cosine scores) per query row, best first; ties by position."""
        q = _query_matrix(queries, self.dim)
        k = min(k, self.n)
        scores = q @ self.vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < self.n else None
        if top is None:
            top = np.broadcast_to(np.arange(self.n), scores.shape).copy()
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        idx = np.take_along_axis(top, order, axis=1)
        return idx.astype(np.int64), np.take_along_axis(scores, idx, axis=1).astype(np.float64)


class HnswIndex:
    """faiss HNSW graph in inner-product space (on unit vectors: cosine).

    faiss-cpu ships wheels; hnswlib builds from source and would need a compiler on a
    fresh machine. The graph's level draws use faiss's fixed internal seed, so the
    ``seed`` argument is recorded, not used.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 100,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        import faiss

        vecs = _unit_rows(vectors).astype(np.float32)
        self.n, self.dim = vecs.shape
        self.m = m
        # One thread: a build with several threads inserts in a racy order, so the graph
        # (and hence results) would not repeat from run to run.
        faiss.omp_set_num_threads(num_threads)
        self._index = faiss.IndexHNSWFlat(self.dim, m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction
        self._index.add(vecs)
        self._index.hnsw.efSearch = ef_search
        self.ef_search = ef_search

    def set_ef_search(self, ef_search: int) -> None:
        """Change the query candidate list (a search-time setting: the graph stays)."""
        if ef_search < 1:
            raise ValueError(f"ef_search must be >= 1, got {ef_search}")
        self._index.hnsw.efSearch = int(ef_search)
        self.ef_search = int(ef_search)

    @property
    def nbytes(self) -> int:
        """Bytes of the index as faiss serialises it (graph links, vectors)."""
        import faiss

        return int(faiss.serialize_index(self._index).nbytes)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top ``k`` (positions, cosine scores) per query row, best first
        (faiss searches with max(efSearch, k) candidates)."""
        import faiss

        q = np.ascontiguousarray(_query_matrix(queries, self.dim), dtype=np.float32)
        k = min(k, self.n)
        faiss.omp_set_num_threads(1)
        scores, labels = self._index.search(q, k)
        return labels.astype(np.int64), scores.astype(np.float64)
