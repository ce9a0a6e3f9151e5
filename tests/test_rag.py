"""RAG retrieval: metrics and fusion on hand cases, BM25/ANN behaviour on real and seeded
data, the BoolQ corpus, the embedder against sentence-transformers, and a tiny run."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO

from forgebench.errors import ForgebenchError
from forgebench.rag.bm25 import Bm25Index
from forgebench.rag.corpus import load_boolq_corpus
from forgebench.rag.fusion import reciprocal_rank_fusion
from forgebench.rag.pipeline import PIPELINE_DEFAULTS, RagPipeline
from forgebench.rag.quality import (
    ndcg_at_k,
    overlap_at_k,
    query_metrics,
    recall_at_k,
    reciprocal_rank,
)
from forgebench.rag.vector_index import ExactIndex, HnswIndex

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def test_perfect_ranking_scores_one() -> None:
    m = query_metrics(["a", "b", "c"], {"a"})
    assert m == {
        "recall_at_1": 1.0,
        "recall_at_5": 1.0,
        "recall_at_10": 1.0,
        "recall_at_20": 1.0,
        "reciprocal_rank": 1.0,
        "ndcg_at_10": 1.0,
    }


def test_relevant_at_rank_two() -> None:
    ranked = ["x", "a", "y"]
    assert reciprocal_rank(ranked, {"a"}) == 0.5
    assert recall_at_k(ranked, {"a"}, 1) == 0.0
    assert recall_at_k(ranked, {"a"}, 5) == 1.0
    assert ndcg_at_k(ranked, {"a"}, 10) == pytest.approx(1 / math.log2(3))  # 0.6309


def test_ndcg_two_relevant_by_hand() -> None:
    # relevant at ranks 1 and 3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    ranked = ["a", "x", "b", "y"]
    assert ndcg_at_k(ranked, {"a", "b"}, 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert recall_at_k(ranked, {"a", "b"}, 1) == 0.5
    # cut-off: the second relevant item lies below k = 2
    assert ndcg_at_k(ranked, {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_missing_relevant_scores_zero() -> None:
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    assert ndcg_at_k(["x", "y"], {"a"}, 10) == 0.0
    assert overlap_at_k(["a", "b", "z"], ["a", "b", "c"], 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        recall_at_k(["a"], set(), 1)


def test_rrf_hand_case() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=60)
    assert [d for d, _ in fused] == ["b", "c", "a", "d"]
    scores = dict(fused)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 62)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 63)
    # a tie in fused score goes to the better single rank, then the earlier ranking
    assert [d for d, _ in reciprocal_rank_fusion([["p", "q"], ["q", "p"]], k=1)] == ["p", "q"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], k=0)


# ------------------------------------------------------------------ indexes


def test_bm25_ranks_exact_passage_first(prepared_datasets: Path) -> None:
    corpus = load_boolq_corpus(prepared_datasets)
    texts = corpus.texts[:300]
    index = Bm25Index.build(texts)
    for j in (0, 17, 123, 299):
        idx, scores = index.search(texts[j], 5)
        assert idx[0] == j
        assert scores[0] > scores[1]
    idx, scores = index.search("zzzzqqq xxyyzz", 3)  # no known word: all zero, still k
    assert len(idx) == 3 and np.all(scores == 0)


def test_exact_search_is_brute_force_and_hnsw_agrees() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(2000, 32)).astype(np.float32)
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    exact = ExactIndex(vecs)
    idx, scores = exact.search(queries, 10)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ unit.T), axis=1)[:, :10]
    assert np.array_equal(idx, truth)
    assert np.all(np.diff(scores, axis=1) <= 0)
    hnsw = HnswIndex(vecs, m=16, ef_construction=200, ef_search=100, seed=0)
    h_idx, h_scores = hnsw.search(queries, 10)
    agreement = np.mean(
        [overlap_at_k(list(a), list(b), 10) for a, b in zip(h_idx, idx, strict=True)]
    )
    assert agreement >= 0.95
    # where both return a passage, both give it the same cosine score
    common = h_idx[:, 0] == idx[:, 0]
    assert np.allclose(h_scores[common, 0], scores[common, 0], atol=1e-5)
    assert hnsw.nbytes > vecs.nbytes  # vectors plus graph


# ------------------------------------------------------------------ corpus


def test_boolq_corpus_dedup_and_relevance(prepared_datasets: Path) -> None:
    corpus = load_boolq_corpus(prepared_datasets)
    assert len(corpus.queries) == 3270
    assert len(corpus.doc_ids) == len(set(corpus.texts)) == 2939
    # queries are the human questions, not passage text
    assert all(
        q not in corpus.text_of(next(iter(r)))
        for q, r in zip(corpus.queries, corpus.relevant, strict=True)
    )
    sub = corpus.subset(max_queries=20, max_passages=50, seed=3)
    assert len(sub.queries) == 20 and len(sub.doc_ids) == 50
    assert set().union(*sub.relevant) <= set(sub.doc_ids)
    assert sub == corpus.subset(max_queries=20, max_passages=50, seed=3)
    with pytest.raises(ForgebenchError, match="max_passages"):
        corpus.subset(max_queries=100, max_passages=10, seed=0)


def test_missing_prepared_boolq_names_the_dataset_job(tmp_path: Path) -> None:
    with pytest.raises(ForgebenchError, match="dataset"):
        load_boolq_corpus(tmp_path)


def test_schema_defaults_match_code() -> None:
    from forgebench.rag.retrieval import DEFAULTS

    schema = yaml.safe_load((REPO / "config" / "schemas" / "rag.schema.yaml").read_text())
    props = schema["properties"]["benchmarks"]["properties"]["retrieval"]["properties"]
    defaults = {k: v["default"] for k, v in props.items() if k != "enabled"}
    # datasets_dir is injected by the workflow; dense is the service's BM25-only switch
    # (the retrieval benchmark scores every method, so it always builds the dense side).
    code = {k: v for k, v in PIPELINE_DEFAULTS.items() if k not in ("datasets_dir", "dense")}
    assert defaults == {**code, **DEFAULTS}


def test_bad_settings_raise() -> None:
    from forgebench.rag.retrieval import run

    with pytest.raises(ForgebenchError, match="max_pasages"):
        RagPipeline.build({"max_pasages": 5}, seed=0)
    with pytest.raises(ForgebenchError, match=r"suites\.rag\.benchmarks\.retrieval\.fusion_depth"):
        run({"fusion_depth": 5}, seed=0)
    with pytest.raises(ForgebenchError, match="dense_index"):
        run({"dense_index": "annoy"}, seed=0)


# ------------------------------------------------------------------ model and end to end


@pytest.fixture(scope="module")
def embedder():
    from forgebench.rag.embedder import Embedder

    return Embedder.load(batch_size=4)


def test_embedder_matches_sentence_transformers(embedder) -> None:
    from sentence_transformers import SentenceTransformer

    texts = ["is the sky blue", "Ethanol fuel needs energy to produce. " * 40, "a"]
    ours = embedder.encode(texts)
    ref = SentenceTransformer(str(embedder.path), device="cpu").encode(texts)
    assert ours.shape == (3, 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.allclose(ours, ref, atol=1e-5)


def test_pipeline_api(embedder, monkeypatch: pytest.MonkeyPatch, prepared_datasets: Path) -> None:
    from forgebench.rag import pipeline

    monkeypatch.setattr(pipeline.Embedder, "load", classmethod(lambda cls, **kw: embedder))
    pipe = RagPipeline.build(
        {
            "datasets_dir": str(prepared_datasets),
            "max_queries": 5,
            "max_passages": 15,
            "dense_index": "hnsw",
        },
        seed=0,
    )
    q = pipe.corpus.queries[0]
    rel = next(iter(pipe.corpus.relevant[0]))
    for mode in ("hybrid", "bm25", "dense"):
        hits = pipe.query(q, k=10, mode=mode)
        assert len(hits) == 10 and len({d for d, _ in hits}) == 10
        assert all(isinstance(d, str) and isinstance(s, float) for d, s in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert rel in [d for d, _ in pipe.query(q, k=15, mode="hybrid")]
    assert pipe.passage(rel) in pipe.corpus.texts
    _, stages = pipe.query_timed(q, mode="hybrid")
    assert set(stages) == {"embed", "bm25_search", "dense_search", "fuse"}
    with pytest.raises(ValueError):
        pipe.query(q, mode="sparse")
    lexical = RagPipeline.build(
        {"datasets_dir": str(prepared_datasets), "max_queries": 5, "max_passages": 15,
         "dense": False},
        seed=0,
    )  # fmt: skip
    assert lexical.embedder is None
    assert lexical.query(q, k=10, mode="bm25") == pipe.query(q, k=10, mode="bm25")
    with pytest.raises(ValueError, match="dense"):
        lexical.query(q, mode="hybrid")


def test_tiny_end_to_end_run(prepared_datasets: Path) -> None:
    from forgebench.rag.retrieval import run

    cfg = {
        "datasets_dir": str(prepared_datasets),
        "max_queries": 6,
        "max_passages": 20,
        "warmup_queries": 2,
        "build_repetitions": 1,
        "concurrency": [1, 2],
        "throughput_queries": 6,
        "repetitions": 1,
        "bootstrap_resamples": 200,
    }
    frame = run(cfg, seed=1)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    got = set(zip(frame["case"], frame["metric"], strict=True))
    for method in ("bm25", "dense_exact", "dense_hnsw", "hybrid", "hybrid_hnsw"):
        for metric in (
            "recall_at_1",
            "recall_at_20",
            "reciprocal_rank",
            "ndcg_at_10",
            "mrr",
            "mrr_ci_low",
            "mrr_ci_high",
            "total_latency",
        ):
            assert (method, metric) in got
    assert ("embedder", "model_load_time") in got and ("embedder", "import_time") in got
    assert ("dense_hnsw", "ann_recall_at_10") in got
    for case in ("ann_ef16", "ann_ef64"):  # the efSearch sweep, at k = 10
        assert (case, "ann_recall_at_10_mean") in got and (case, "search_latency") in got
    assert ("ann_exact", "search_latency") in got
    fraction = frame[frame["metric"] == "relevant_fraction"]["value"].item()
    assert fraction == 6 / 20  # six questions, one relevant passage each, in a pool of 20
    assert ("embed", "latency") in got and ("hybrid", "fuse_latency") in got
    tp = frame[frame["metric"] == "throughput"]
    assert set(tp["case"]) == {"embed_passages", "hybrid_1clients", "hybrid_2clients"}
    assert (tp["value"] > 0).all()
    quality = frame[frame["metric"].isin(["recall_at_10", "ndcg_at_10", "reciprocal_rank"])]
    assert quality["value"].between(0, 1).all() and len(quality) == 5 * 3 * 6
    mrr = frame[(frame["case"] == "bm25") & (frame["metric"].str.startswith("mrr"))]
    low, mean, high = (
        mrr.loc[mrr["metric"] == m, "value"].item() for m in ("mrr_ci_low", "mrr", "mrr_ci_high")
    )
    assert low <= mean <= high
    assert (
        frame.loc[frame["warmup"], "metric"]
        .isin(["latency", "search_latency", "fuse_latency", "total_latency"])
        .all()
    )


def test_failed_query_is_a_failed_row(embedder, prepared_datasets: Path) -> None:
    """A stage that raises leaves its rows failed (NaN value, status), never dropped."""
    from forgebench.rag import retrieval
    from forgebench.record import Recorder

    corpus = load_boolq_corpus(prepared_datasets).subset(max_queries=3, max_passages=12, seed=0)
    bad_query = corpus.queries[1]

    class FailingBm25(Bm25Index):
        def search(self, text: str, k: int):
            if text == bad_query:
                raise RuntimeError("index gone")
            return super().search(text, k)

    real = Bm25Index.build(corpus.texts)
    bm25 = FailingBm25(real._tokenizer, real._retriever, real.n_docs)
    vectors = embedder.encode(corpus.texts)
    opts = {**retrieval.PIPELINE_DEFAULTS, **retrieval.DEFAULTS, "warmup_queries": 0}
    params = {m: {"m": m} for m in (*retrieval.METHODS, "embed")}
    rec = Recorder("rag", "retrieval", 1)
    retrieval._stage_pass(
        rec, corpus, embedder, bm25, ExactIndex(vectors), HnswIndex(vectors), opts, params, 0
    )
    frame = rec.frame()
    failed = frame[frame["status"] != "ok"]
    assert set(failed["status"]) == {"error:RuntimeError"}
    assert failed["value"].isna().all()
    per_query = frame[frame["metric"] == "reciprocal_rank"]
    assert len(per_query) == 5 * 3  # every method, every query, the failed one included
    assert (per_query.loc[per_query["sample"] == 1, "status"] == "error:RuntimeError").all()
    mrr = frame[(frame["metric"] == "mrr") & (frame["case"] == "bm25")]
    assert mrr["status"].item() == "ok"  # the mean over the two queries that ran


def test_ef_sweep_trades_recall_for_latency() -> None:
    """On 4,000 random 32-d vectors a sparse HNSW graph (M 4) misses neighbours at
    efSearch 10 and finds more at 200; every query has its rows, the exact side too."""
    from forgebench.rag import retrieval
    from forgebench.record import Recorder

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(4000, 32)).astype(np.float32)
    queries = {i: rng.normal(size=(1, 32)).astype(np.float32) for i in range(60)}
    exact = ExactIndex(vectors)
    hnsw = HnswIndex(vectors, m=4, ef_construction=20, ef_search=50)
    opts = {**retrieval.PIPELINE_DEFAULTS, **retrieval.DEFAULTS, "hnsw_ef_sweep": [10, 200]}
    params = {"dense_exact": {"index": "exact"}, "dense_hnsw": {"index": "hnsw"}}
    rec = Recorder("rag", "retrieval", 1)
    retrieval._ef_sweep(rec, exact, hnsw, queries, 61, opts, params, 0)
    frame = rec.frame()
    assert hnsw.ef_search == 50  # the configured setting is restored

    def mean(case: str) -> float:
        sel = frame[(frame["case"] == case) & (frame["metric"] == "ann_recall_at_10_mean")]
        return float(sel["value"].item())

    assert 0 < mean("ann_ef10") < mean("ann_ef200") <= 1.0
    assert mean("ann_ef10") < 0.95
    for case in ("ann_exact", "ann_ef10", "ann_ef200"):
        lat = frame[(frame["case"] == case) & (frame["metric"] == "search_latency")]
        assert len(lat) == 61 and (lat["status"] == "ok").sum() == 60  # query 60: no vector
    assert '"k":10' in frame.loc[frame["case"] == "ann_ef10", "params"].iloc[0]


def test_passage_embeddings_are_cached_by_digest(embedder, tmp_path: Path) -> None:
    """The first run embeds and stores; the second reads the same vectors back and says
    so (skipped rows); another passage text is another digest."""
    from forgebench.rag.corpus import Corpus
    from forgebench.rag.embedding_cache import embedding_digest
    from forgebench.rag.retrieval import _passage_vectors
    from forgebench.record import Recorder

    texts = ("the sky is blue", "grass is green", "snow is white")
    corpus = Corpus(("a", "b", "c"), texts, ("q",), ("what colour is snow",),
                    (frozenset({"c"}),))  # fmt: skip
    rec = Recorder("rag", "retrieval", 1)
    first = _passage_vectors(rec, embedder, corpus, {}, str(tmp_path))
    again = _passage_vectors(rec, embedder, corpus, {}, str(tmp_path))
    assert np.array_equal(first, again) and first.shape == (3, embedder.dim)
    frame = rec.frame()
    timed = frame[frame["metric"] == "embed_time"]
    assert list(timed["status"]) == ["ok", "skipped"]
    assert len(list(tmp_path.glob("*.npy"))) == 1
    other = embedding_digest(embedder.path, (*texts[:2], "snow is grey"))
    assert other != embedding_digest(embedder.path, texts)


def test_ann_tradeoff_figure_is_planned_from_the_summary(tmp_path: Path) -> None:
    """Two efSearch settings and exact search in the summary: one trade-off PNG."""
    import pandas as pd

    from forgebench import plots

    rows = []
    for case, lat, recall in (("ann_ef16", 40e-6, 0.95), ("ann_ef64", 90e-6, 0.99),
                              ("ann_exact", 300e-6, None)):  # fmt: skip
        rows.append((case, "search_latency", lat, lat * 0.9, lat * 1.1))
        if recall is not None:
            rows += [(case, "ann_recall_at_10_mean", recall, recall, recall),
                     (case, "ann_recall_at_10_mean_ci_low", recall - 0.01, 0, 0),
                     (case, "ann_recall_at_10_mean_ci_high", recall + 0.005, 0, 0)]  # fmt: skip
    summary = pd.DataFrame(rows, columns=["case", "metric", "median", "ci_low", "ci_high"])
    summary = summary.assign(suite="rag", benchmark="retrieval", n_ok=1)
    figures = plots.ann_tradeoff_plots(summary, tmp_path)
    assert len(figures) == 1 and figures[0].kind == "tradeoff" and figures[0].path.is_file()
    assert plots.ann_tradeoff_plots(summary[summary["case"] != "ann_ef64"], tmp_path) == []
