"""The RAG retrieval pipeline: BM25, dense (exact or HNSW) and their reciprocal rank fusion.

Public API (the HTTP service imports it; keep it stable)::

    pipe = RagPipeline.build({"datasets_dir": "results/datasets", "max_passages": 1000}, seed=0)
    hits = pipe.query("is the sky blue", k=10, mode="hybrid")  # [(doc_id, score), ...]

``build`` loads the prepared BoolQ corpus (results/datasets), keeps a seeded subset of passages
when ``max_passages`` (or ``max_queries``) is set, loads the offline embedding model and
builds every index once; passages are embedded with torch's default threads, queries then
with ``torch_threads`` (process-wide: one short query gains little from intra-op threads,
and concurrent clients bring their own). ``query`` is thread-safe: the benchmark calls it
from several client threads at once, and so may the service.

Scores by mode: ``bm25`` the BM25 score; ``dense`` the cosine similarity (normalised dot
product) from the configured ``dense_index``; ``hybrid`` the reciprocal-rank-fusion score
``sum 1 / (rrf_k + rank)`` over both rankings (ranks from 1, each cut at ``fusion_depth``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgebench.errors import ForgebenchError
from forgebench.rag.bm25 import Bm25Index
from forgebench.rag.corpus import Corpus, load_boolq_corpus
from forgebench.rag.embedder import Embedder
from forgebench.rag.fusion import reciprocal_rank_fusion
from forgebench.rag.vector_index import ExactIndex, HnswIndex, VectorIndex

MODES = ("hybrid", "bm25", "dense")
DENSE_INDEXES = ("exact", "hnsw")

#: Every key ``RagPipeline.build`` reads, with its default (the schema documents each).
PIPELINE_DEFAULTS: dict[str, Any] = {
    "datasets_dir": "results/datasets",  # the prepared datasets (the workflow injects it)
    "max_passages": 0,  # 0 = every deduplicated passage
    "max_queries": 0,  # 0 = every question; a subset keeps its relevant passages
    "dense_index": "exact",
    "rrf_k": 60,
    "fusion_depth": 100,
    "embed_batch_size": 8,
    "bm25_k1": 1.5,
    "bm25_b": 0.75,
    "hnsw_m": 16,
    "hnsw_ef_construction": 200,
    "hnsw_ef_search": 100,
    "dense": True,  # false: BM25 only, no embedding model loaded, no passage embedded
    "torch_threads": 1,  # intra-op threads for query embedding; 0 = torch's default
}


@dataclass
class BuildTimes:
    """Wall seconds of each build step, and the bytes each index holds where known."""

    model_load_s: float = float("nan")
    bm25_build_s: float = float("nan")
    passage_embed_s: float = float("nan")
    exact_build_s: float = float("nan")
    hnsw_build_s: float = float("nan")
    index_bytes: dict[str, int] = field(default_factory=dict)


def pipeline_options(cfg: Mapping[str, Any], key_prefix: str = "") -> dict[str, Any]:
    """``cfg``'s pipeline keys over the defaults; a key the pipeline does not know is an error
    (a typo would otherwise silently fall back to a default)."""
    unknown = sorted(set(cfg) - set(PIPELINE_DEFAULTS))
    if unknown:
        raise ForgebenchError(
            f"{key_prefix}{unknown[0]}: not a RAG pipeline setting; "
            f"allowed: {', '.join(PIPELINE_DEFAULTS)}"
        )
    opts = {**PIPELINE_DEFAULTS, **cfg}
    if opts["dense_index"] not in DENSE_INDEXES:
        raise ForgebenchError(
            f"{key_prefix}dense_index: {opts['dense_index']!r} is not one of {DENSE_INDEXES}"
        )
    for key in ("max_passages", "max_queries", "torch_threads"):
        if int(opts[key]) < 0:
            raise ForgebenchError(f"{key_prefix}{key}: must be >= 0 (0 = all), got {opts[key]}")
    for key in ("rrf_k", "fusion_depth", "embed_batch_size", "hnsw_m"):
        if int(opts[key]) < 1:
            raise ForgebenchError(f"{key_prefix}{key}: must be >= 1, got {opts[key]}")
    return opts


class RagPipeline:
    """A built retrieval pipeline over one corpus; see the module docstring for the API."""

    def __init__(
        self,
        corpus: Corpus,
        embedder: Embedder | None,
        bm25: Bm25Index,
        exact: ExactIndex | None,
        hnsw: HnswIndex | None,
        opts: Mapping[str, Any],
        times: BuildTimes,
    ) -> None:
        self.corpus = corpus
        self.embedder = embedder
        self.bm25 = bm25
        self.exact = exact
        self.hnsw = hnsw
        self.opts = dict(opts)
        self.build_times = times
        self._doc_ids = np.asarray(corpus.doc_ids, dtype=object)

    # ---- construction ---------------------------------------------------------------

    @classmethod
    def build(cls, cfg: Mapping[str, Any], *, seed: int) -> RagPipeline:
        """Load the BoolQ corpus from ``cfg["datasets_dir"]``, subset it (seeded), build."""
        opts = pipeline_options(cfg)
        corpus = load_boolq_corpus(Path(opts["datasets_dir"]))
        corpus = corpus.subset(
            max_queries=int(opts["max_queries"]), max_passages=int(opts["max_passages"]), seed=seed
        )
        return cls.from_corpus(corpus, opts, seed=seed)

    @classmethod
    def from_corpus(
        cls,
        corpus: Corpus,
        cfg: Mapping[str, Any],
        *,
        seed: int,
        embedder: Embedder | None = None,
        passage_vectors: np.ndarray | None = None,
    ) -> RagPipeline:
        """Build over a given corpus; an already loaded embedder (and passage vectors
        computed with it) can be passed in, so a benchmark times those steps once."""
        opts = pipeline_options({k: v for k, v in cfg.items() if k in PIPELINE_DEFAULTS})
        times = BuildTimes()
        if not opts["dense"]:
            t0 = time.perf_counter()
            bm25 = Bm25Index.build(corpus.texts, k1=float(opts["bm25_k1"]), b=float(opts["bm25_b"]))
            times.bm25_build_s = time.perf_counter() - t0
            times.index_bytes["bm25"] = bm25.nbytes
            return cls(corpus, None, bm25, None, None, opts, times)
        if embedder is None:
            t0 = time.perf_counter()
            embedder = Embedder.load(batch_size=int(opts["embed_batch_size"]))
            times.model_load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bm25 = Bm25Index.build(corpus.texts, k1=float(opts["bm25_k1"]), b=float(opts["bm25_b"]))
        times.bm25_build_s = time.perf_counter() - t0
        times.index_bytes["bm25"] = bm25.nbytes
        if passage_vectors is None:
            t0 = time.perf_counter()
            passage_vectors = embedder.encode(corpus.texts)
            times.passage_embed_s = time.perf_counter() - t0
        embedder.set_threads(int(opts["torch_threads"]))
        t0 = time.perf_counter()
        exact = ExactIndex(passage_vectors)
        times.exact_build_s = time.perf_counter() - t0
        times.index_bytes["exact"] = exact.nbytes
        hnsw = None
        if opts["dense_index"] == "hnsw":
            t0 = time.perf_counter()
            hnsw = HnswIndex(
                passage_vectors,
                m=int(opts["hnsw_m"]),
                ef_construction=int(opts["hnsw_ef_construction"]),
                ef_search=int(opts["hnsw_ef_search"]),
                seed=seed,
            )
            times.hnsw_build_s = time.perf_counter() - t0
        return cls(corpus, embedder, bm25, exact, hnsw, opts, times)

    # ---- querying -------------------------------------------------------------------

    @property
    def dense_index(self) -> VectorIndex:
        """The index dense and hybrid queries search (``dense_index`` setting)."""
        return self.hnsw if self.hnsw is not None else self.exact

    def passage(self, doc_id: str) -> str:
        """The text of a passage by id (KeyError for an unknown id)."""
        return self.corpus.text_of(doc_id)

    def query(self, text: str, k: int = 10, mode: str = "hybrid") -> list[tuple[str, float]]:
        """The top ``k`` passages for ``text`` as ``(doc_id, score)``, best first."""
        hits, _ = self.query_timed(text, k=k, mode=mode)
        return hits

    def query_timed(
        self, text: str, k: int = 10, mode: str = "hybrid"
    ) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """``query`` plus the wall seconds of each stage it ran (embed, bm25_search,
        dense_search, fuse)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "bm25" and self.embedder is None:
            raise ValueError(f"mode {mode!r} needs dense retrieval; built with dense: false")
        n_docs = len(self.corpus.doc_ids)
        if not 1 <= k <= n_docs:
            raise ValueError(f"k must be in [1, {n_docs}], got {k}")
        stages: dict[str, float] = {}
        depth = max(k, min(int(self.opts["fusion_depth"]), n_docs)) if mode == "hybrid" else k
        bm25_hits = dense_hits = None
        if mode in ("bm25", "hybrid"):
            t0 = time.perf_counter()
            idx, scores = self.bm25.search(text, depth)
            stages["bm25_search"] = time.perf_counter() - t0
            bm25_hits = (idx, scores)
        if mode in ("dense", "hybrid"):
            t0 = time.perf_counter()
            vec = self.embedder.encode([text])
            stages["embed"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            idx, scores = self.dense_index.search(vec, depth)
            stages["dense_search"] = time.perf_counter() - t0
            dense_hits = (idx[0], scores[0])
        if mode == "bm25":
            assert bm25_hits is not None
            return self._named(*bm25_hits), stages
        if mode == "dense":
            assert dense_hits is not None
            return self._named(*dense_hits), stages
        assert bm25_hits is not None and dense_hits is not None
        t0 = time.perf_counter()
        fused = reciprocal_rank_fusion(
            [list(bm25_hits[0]), list(dense_hits[0])], k=int(self.opts["rrf_k"])
        )[:k]
        stages["fuse"] = time.perf_counter() - t0
        return [(str(self._doc_ids[i]), s) for i, s in fused], stages

    def _named(self, idx: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        return [(str(self._doc_ids[i]), float(s)) for i, s in zip(idx, scores, strict=True)]
