"""knowledge/creativity: bridge finding on RAT items and cross-domain pairs (the original's
15 and 12 and enough generated ones that every rate rests on at least 50 items), the
Guardian plausibility gate, and hidden-link recovery on a corpus concept graph.

Why this shape: the system this replaces reported random scores and a Guardian pass rate
that was 0 by construction; its successor rested surprise on one or two items, measured
it with the finder's own embedding and gated with that embedding too. Here:

* Candidates: a vocabulary built from the prepared corpora without the targets
  (forgebench.knowledge.vocabulary, whose docstring fixes the matching rule). Its size,
  the targets it misses and the chance accuracy at each k (computed, one row without an
  interval) are recorded (case ``vocabulary`` / ``chance``).
* Items: the original 15 RAT items and 12 pairs plus ``generated_rat_items`` compound RAT
  items and ``generated_cross_pairs`` pairs made from the construction half of the
  documents (forgebench.knowledge.generated_items). Ceilings (case ``ceiling``): the
  share of items whose answer is among the allowed candidates at all, with its exact
  interval; no finder can score above it.
* Finders (forgebench.knowledge.bridges): ``embedding`` (all-MiniLM-L6-v2),
  ``lm_rerank`` (the evaluation model through lm-eval's HFLM, reordering the embedding
  shortlist) and a seeded ``random`` floor.
* Judges that no finder uses, reading the judge half of the documents
  (forgebench.knowledge.cooccurrence): surprise (forgebench.knowledge.surprise, from NPMI,
  whose docstring defines the three figures) and the Guardian (forgebench.knowledge.guardian,
  PPMI context profiles, its threshold, TPR and FPR with Clopper-Pearson intervals in case
  ``guardian``).
* Metrics per item (rows with ``sample`` = item, then ``*_mean`` with its interval:
  Clopper-Pearson for 0/1 items, else bootstrap): ``rat_accuracy@1``/``@5``,
  cross-domain ``hit_rate@k`` and ``precision@k``; ``[rat_]unexpectedness@5`` (mean
  surprise of the whole top five, defined wherever the judge counts cover it) and
  ``[rat_]serendipity@5`` (share of items with a correct bridge in the top five whose
  surprise is above ``surprise_threshold``, 0 when none is correct), the headline surprise
  figures on every item; ``[rat_]correct_surprise@5`` (mean surprise of the correct bridges
  only, secondary: defined on the few items with a hit);
  ``rat_guardian_pass_rate``/``guardian_pass_rate`` (share of the top five the gate
  passes, of those it can judge). An undefined value (no correct bridge to measure
  surprise on) is a by-design "skipped" row, never a failure; how many items each mean
  rests on is its ``n``; a mean over fewer than ``min_items`` defined items is not
  reported (skipped, with the count in params): too few to decide.
* Hidden links (forgebench.knowledge.link_prediction): ``hidden_link_precision@k`` and
  ``hidden_link_auc`` per predictor, one row per repetition (a fresh hidden share each).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.knowledge import bridges, generated_items, guardian, link_prediction
from forgebench.knowledge.common import load_embedder, record_items, require_dir
from forgebench.knowledge.concept_graph import build_concept_graph
from forgebench.knowledge.cooccurrence import Counts, count_halves
from forgebench.knowledge.rat_data import (
    CROSS_DOMAIN_PAIRS,
    RAT_ITEMS,
    CrossDomainPair,
    RatItem,
    item_words,
)
from forgebench.knowledge.surprise import (
    correct_surprise_at_k,
    serendipity_at_k,
    unexpectedness_at_k,
)
from forgebench.knowledge.vocabulary import (
    Vocabulary,
    build_vocabulary,
    chance_accuracy,
    corpus_texts,
    matches,
)
from forgebench.record import Recorder

BENCHMARK_VERSION = 3  # 3: unexpectedness@5 and serendipity@5 replace surprise@5
SUITE = "knowledge"
NAME = "creativity"
KEY = "suites.knowledge.benchmarks.creativity"
FINDERS = ("embedding", "lm_rerank", "random")
RAT_KS = (1, 5)
SURPRISE_K = 5
GATE_K = 5

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": "cognate",
    "corpora": ["arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "gsm8k", "winogrande"],
    "max_unigrams": 5000,
    "max_bigrams": 1500,
    "min_count": 3,
    "finders": list(FINDERS),
    "shortlist": 10,
    "hit_k": 5,
    "precision_ks": [5, 10],
    "calibration_pairs": 300,
    "generated_rat_items": 60,
    "generated_cross_pairs": 50,
    "judge_window": 5,
    "surprise_threshold": 0.5,
    "min_items": 50,
    "graph_nodes": 600,
    "graph_window": 5,
    "graph_min_count": 3,
    "graph_degree": 10,
    "hidden_share": 0.1,
    "negative_ratio": 10,
    "link_ks": [50, 100],
    "link_repetitions": 3,
    "ppr_restart": 0.15,
    "embed_batch_size": 64,
    "lm_batch_size": 16,
    "torch_threads": 1,
    "confidence": 0.95,
    "bootstrap_resamples": 2000,
}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    s = {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"model_dir", "datasets_dir"})
    if unknown:
        raise ForgebenchError(f"{KEY}: unknown keys {unknown}; allowed: {sorted(DEFAULTS)}")
    bad = sorted(set(s["finders"]) - set(FINDERS))
    if bad:
        raise ForgebenchError(f"{KEY}.finders: unknown {bad}; allowed: {list(FINDERS)}")
    if not 0 <= float(s["surprise_threshold"]) < 1:
        raise ForgebenchError(
            f"{KEY}.surprise_threshold must be in [0, 1), got {s['surprise_threshold']}"
        )
    if not 0 < float(s["hidden_share"]) < 1:
        raise ForgebenchError(f"{KEY}.hidden_share must be in (0, 1), got {s['hidden_share']}")
    return s


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    s = _settings(cfg)
    datasets_dir = require_dir(cfg, "datasets_dir", KEY)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    scorer = None
    if "lm_rerank" in s["finders"]:
        from forgebench.knowledge.lm_scorer import LogLikelihoodScorer

        scorer = LogLikelihoodScorer(
            cfg.get("model_dir") or "", batch_size=int(s["lm_batch_size"]), key=KEY
        )
    t0 = time.perf_counter()
    texts = list(corpus_texts(datasets_dir, s["corpora"], key=KEY))
    vocab = build_vocabulary(
        texts,
        max_unigrams=int(s["max_unigrams"]),
        max_bigrams=int(s["max_bigrams"]),
        min_count=int(s["min_count"]),
    )
    log.info(
        "vocabulary: %d candidates (%d words) from %s in %.1f s",
        len(vocab),
        vocab.n_unigrams,
        vocab.sources,
        time.perf_counter() - t0,
    )
    t0 = time.perf_counter()
    items = item_sets([t for _, t in texts], vocab, s, seed)
    construction, judge, surfaces = items.construction, items.judge, items.surfaces
    rat_items, cross_pairs = items.rat_items, items.cross_pairs
    log.info(
        "co-occurrence halves of %d and %d documents; %d RAT items and %d cross-domain "
        "pairs (%.1f s)",
        construction.documents,
        judge.documents,
        len(rat_items),
        len(cross_pairs),
        time.perf_counter() - t0,
    )
    embedder = load_embedder(s)
    t0 = time.perf_counter()
    cand_vecs = embedder.encode(vocab.phrases)
    log.info("embedded %d candidates in %.1f s", len(vocab), time.perf_counter() - t0)
    _record_vocabulary(rec, vocab, s, rat_items, cross_pairs)
    gate = guardian.Judge(judge)
    calib = _calibrate(rec, gate, construction, surfaces, rat_items, cross_pairs, s, seed)
    ctx = _Context(vocab, cand_vecs, embedder, scorer, gate, calib.threshold, judge, s, seed)
    _rat(rec, ctx, rat_items)
    _cross(rec, ctx, cross_pairs)
    _links(rec, [t for _, t in texts], vocab, cand_vecs, s, seed)
    return rec.frame()


@dataclass
class ItemSets:
    """The co-occurrence halves and the items scored: the originals plus generated ones."""

    construction: Counts
    judge: Counts
    surfaces: list[str]
    rat_items: list[RatItem]
    cross_pairs: list[CrossDomainPair]


def item_sets(texts: list[str], vocab: Vocabulary, s: Mapping[str, Any], seed: int) -> ItemSets:
    """Count the halves over the candidate words and generate the items from the
    construction half (the judges read the other), as a run does."""
    uni = [i for i, k in enumerate(vocab.keys) if len(k) == 1]
    surfaces = [vocab.phrases[i] for i in uni]
    construction, judge = count_halves(
        texts, [vocab.keys[i][0] for i in uni], window=int(s["judge_window"])
    )
    rng = np.random.default_rng([seed, 6])
    excluded = item_words()
    rat_items = list(RAT_ITEMS) + generated_items.rat_items(
        construction, surfaces, int(s["generated_rat_items"]), rng, excluded=excluded
    )
    cross_pairs = list(CROSS_DOMAIN_PAIRS) + generated_items.cross_pairs(
        construction, surfaces, int(s["generated_cross_pairs"]), rng, excluded=excluded
    )
    return ItemSets(construction, judge, surfaces, rat_items, cross_pairs)


@dataclass
class _Context:
    """What every item's scoring needs."""

    vocab: Vocabulary
    cand_vecs: np.ndarray
    embedder: Any
    scorer: Any
    gate: guardian.Judge
    threshold: float
    judge: Counts
    s: Mapping[str, Any]
    seed: int

    def set_params(self, items: list, n_original: int) -> dict[str, Any]:
        return {"items": len(items), "original": n_original, "generated": len(items) - n_original}


def _record_vocabulary(
    rec: Recorder,
    vocab: Vocabulary,
    s: Mapping[str, Any],
    rat_items: list[RatItem],
    cross_pairs: list[CrossDomainPair],
) -> None:
    rat_missed = sorted({i.target for i in rat_items if not vocab.contains(i.target)})
    cross_missed = sorted({c for p in cross_pairs for c in p.connections if not vocab.contains(c)})
    n_conn = sum(len(p.connections) for p in cross_pairs)
    params = {
        "corpora": list(s["corpora"]),
        "documents": vocab.sources,
        "rat_targets_missed": rat_missed,
        "cross_connections_missed": cross_missed,
        "min_count": s["min_count"],
    }
    log.info(
        "vocabulary misses RAT targets %s and %d/%d connections: %s",
        rat_missed,
        len(cross_missed),
        n_conn,
        cross_missed,
    )
    for metric, value in (
        ("vocabulary_size", len(vocab)),
        ("vocabulary_words", vocab.n_unigrams),
        ("vocabulary_phrases", len(vocab) - vocab.n_unigrams),
        ("rat_targets_missed", len(rat_missed)),
        ("cross_connections_missed", len(cross_missed)),
        ("cross_connections_total", n_conn),
    ):
        rec.add("vocabulary", params, metric, "count", metric.startswith("vocabulary"), value)


def _calibrate(
    rec: Recorder,
    gate: guardian.Judge,
    construction: Counts,
    surfaces: list[str],
    rat_items: list[RatItem],
    cross_pairs: list[CrossDomainPair],
    s: Mapping[str, Any],
    seed: int,
) -> guardian.Calibration:
    """The Guardian's threshold from held-apart pairs, none touching a word of any item."""
    from forgebench.knowledge.vocabulary import normalise

    excluded = set(item_words())
    for item in rat_items:
        for w in (*item.cues, item.target):
            excluded.update(normalise(w))
    for pair in cross_pairs:
        for w in (pair.source, pair.target, *pair.connections):
            excluded.update(normalise(w))
    rng = np.random.default_rng([seed, 1])
    pos, neg = guardian.calibration_pairs(
        construction, surfaces, excluded, int(s["calibration_pairs"]), rng
    )
    calib = guardian.calibrate(gate, pos, neg)
    conf = float(s["confidence"])
    ci = calib.intervals(conf)
    params = {
        "rule": "min cosine of PPMI context profiles (judge half) to endpoints >= threshold",
        "choice": "Youden J",
        "positives": "compounds of the construction half",
        "negatives": "random word pairs",
        "shares_finder_embedding": False,
        "interval": "Clopper-Pearson",
        "confidence": conf,
        "positives_scored": calib.n_positive,
        "negatives_scored": calib.n_negative,
    }
    rec.add("guardian", params, "guardian_threshold", "cosine", False, calib.threshold)
    for name, value, higher in (("tpr", calib.tpr, True), ("fpr", calib.fpr, False)):
        metric = f"guardian_calibration_{name}"
        rec.add("guardian", params, metric, "ratio", higher, value)
        rec.add("guardian", params, f"{metric}_ci_low", "ratio", higher, ci[name][0])
        rec.add("guardian", params, f"{metric}_ci_high", "ratio", higher, ci[name][1])
    rec.add(
        "guardian",
        params,
        "guardian_calibration_pairs",
        "count",
        True,
        calib.n_positive + calib.n_negative,
    )
    log.info(
        "guardian threshold %.3f (TPR %.2f [%.2f, %.2f], FPR %.2f [%.2f, %.2f] on %d+%d pairs)",
        calib.threshold,
        calib.tpr,
        *ci["tpr"],
        calib.fpr,
        *ci["fpr"],
        calib.n_positive,
        calib.n_negative,
    )
    return calib


def _rankings(
    finder: str,
    scores: np.ndarray,
    mask: np.ndarray,
    prompt: str,
    vocab: Vocabulary,
    scorer: Any,
    cache: dict[int, float],
    shortlist: int,
    rng: np.random.Generator,
) -> np.ndarray:
    if finder == "random":
        return bridges.random_ranking(mask, rng)
    ranked = bridges.rank(scores, mask)
    if finder == "embedding":
        return ranked
    return bridges.lm_rerank(scorer, prompt, list(ranked[:shortlist]), vocab, cache)


def gate_pass_rate(
    gate: guardian.Judge, top: list[str], endpoints: list[str], threshold: float
) -> float:
    """Share of ``top`` the Guardian passes, of those it can judge (NaN if none): it sees
    the bridges and endpoints only, never a finder's score."""
    judged = [gate.passes(b, endpoints, threshold) for b in top]
    judged = [j for j in judged if np.isfinite(j)]
    return float(np.mean(judged)) if judged else float("nan")


@dataclass
class _Surprise:
    """Per-item surprise figures of one finder (forgebench.knowledge.surprise)."""

    unexpectedness: list[float]
    serendipity: list[float]
    correct: list[float]

    @classmethod
    def empty(cls) -> _Surprise:
        return cls([], [], [])

    def add(self, ctx: _Context, top: list[str], correct: list[bool], ends: list[str]) -> None:
        k, judge = SURPRISE_K, ctx.judge
        threshold = float(ctx.s["surprise_threshold"])
        self.unexpectedness.append(unexpectedness_at_k(judge, top, ends, k))
        self.serendipity.append(serendipity_at_k(judge, top, correct, ends, threshold, k))
        self.correct.append(correct_surprise_at_k(judge, top, correct, ends, k))

    def record(self, rec: Recorder, ctx: _Context, case: str, params: dict, prefix: str) -> None:
        threshold = {**params, "surprise_threshold": ctx.s["surprise_threshold"]}
        for name, values, p in (
            ("unexpectedness", self.unexpectedness, params),
            ("serendipity", self.serendipity, threshold),
            ("correct_surprise", self.correct, params),
        ):
            metric = f"{prefix}{name}@{SURPRISE_K}"
            record_items(rec, case, p, metric, values, ctx.s, ctx.seed)

    def defined(self) -> str:
        """How many items each figure is defined on, for the log."""
        return ", ".join(
            f"{name} {int(np.isfinite(v).sum())}"
            for name, v in (
                ("unexpectedness", self.unexpectedness),
                ("serendipity", self.serendipity),
                ("correct_surprise", self.correct),
            )
        )


def _analytic(rec: Recorder, params: dict, metric: str, values: list[float]) -> None:
    """Chance, computed not sampled: one row, the mean over items, with no interval (a
    resampled interval of computed values would only show how the items differ)."""
    rec.add("chance", {**params, "analytic": True}, metric, "ratio", True, float(np.mean(values)))


def _ceiling(rec: Recorder, ctx: _Context, case_params: dict, metric: str, reach: list) -> None:
    params = {**case_params, "definition": "answer among the allowed candidates"}
    record_items(rec, "ceiling", params, metric, [float(r) for r in reach], ctx.s, ctx.seed)


def _rat(rec: Recorder, ctx: _Context, items: list[RatItem]) -> None:
    vocab, s = ctx.vocab, ctx.s
    rng = np.random.default_rng([ctx.seed, 2])
    cache: dict[int, float] = {}
    masks = [bridges.allowed_mask(vocab, i.cues, unigrams_only=True) for i in items]
    ends_all = [ctx.embedder.encode(list(item.cues)) for item in items]
    sizes = ctx.set_params(items, len(RAT_ITEMS))
    chance = {k: [] for k in RAT_KS}
    reach = []
    for item, mask in zip(items, masks, strict=True):
        i = vocab.index_of(item.target)
        reach.append(i is not None and bool(mask[i]))
        for k in RAT_KS:
            chance[k].append(chance_accuracy(int(mask.sum()), k, reach[-1]))
    cparams = {"task": "rat", "definition": "k / allowed candidates when the target is reachable"}
    for k in RAT_KS:
        _analytic(rec, {**cparams, **sizes}, f"rat_accuracy@{k}", chance[k])
    _ceiling(rec, ctx, {"task": "rat", **sizes}, "rat_accuracy@5", reach)
    for finder in s["finders"]:
        t0 = time.perf_counter()
        acc = {k: [] for k in RAT_KS}
        surprise, gate, short_recall = _Surprise.empty(), [], []
        for item, mask, ends in zip(items, masks, ends_all, strict=True):
            scores = bridges.embedding_scores(ctx.cand_vecs, ends)
            ranked = _rankings(
                finder,
                scores,
                mask,
                bridges.rat_prompt(item.cues),
                vocab,
                ctx.scorer,
                cache,
                int(s["shortlist"]),
                rng,
            )
            correct = [matches(vocab.phrases[i], item.target) for i in ranked[:10]]
            for k in RAT_KS:
                acc[k].append(float(any(correct[:k])))
            top = [vocab.phrases[i] for i in ranked[:SURPRISE_K]]
            surprise.add(ctx, top, correct, list(item.cues))
            gate.append(gate_pass_rate(ctx.gate, top[:GATE_K], list(item.cues), ctx.threshold))
            if finder == "lm_rerank":
                short = bridges.rank(scores, mask)[: int(s["shortlist"])]
                short_recall.append(
                    float(any(matches(vocab.phrases[i], item.target) for i in short))
                )
        params = {"task": "rat", "finder": finder, "shortlist": s["shortlist"], **sizes}
        for k in RAT_KS:
            record_items(rec, finder, params, f"rat_accuracy@{k}", acc[k], s, ctx.seed)
        surprise.record(rec, ctx, finder, params, "rat_")
        record_items(rec, finder, params, "rat_guardian_pass_rate", gate, s, ctx.seed)
        if short_recall:
            record_items(rec, finder, params, "rat_shortlist_recall", short_recall, s, ctx.seed)
        log.info(
            "rat %s: accuracy@1 %.2f, @5 %.2f over %d items; defined on: %s (%.1f s)",
            finder,
            np.mean(acc[1]),
            np.mean(acc[5]),
            len(items),
            surprise.defined(),
            time.perf_counter() - t0,
        )


def _cross(rec: Recorder, ctx: _Context, pairs: list[CrossDomainPair]) -> None:
    vocab, s = ctx.vocab, ctx.s
    rng = np.random.default_rng([ctx.seed, 3])
    cache: dict[int, float] = {}
    ks = sorted({int(s["hit_k"]), *map(int, s["precision_ks"])})
    depth = max([*ks, SURPRISE_K])
    masks = [bridges.allowed_mask(vocab, (p.source, p.target), unigrams_only=False) for p in pairs]
    ends_all = [ctx.embedder.encode([p.source, p.target]) for p in pairs]
    sizes = ctx.set_params(pairs, len(CROSS_DOMAIN_PAIRS))
    chance = {k: [] for k in s["precision_ks"]}
    reach = []
    for pair, mask in zip(pairs, masks, strict=True):
        idx = [vocab.index_of(c) for c in pair.connections]
        reachable = sum(i is not None and bool(mask[i]) for i in idx)
        reach.append(reachable > 0)
        for k in s["precision_ks"]:
            chance[k].append(reachable / max(1, int(mask.sum())))
    cparams = {"task": "cross_domain", "definition": "reachable connections / allowed candidates"}
    for k in s["precision_ks"]:
        _analytic(rec, {**cparams, **sizes}, f"precision@{k}", chance[k])
    _ceiling(rec, ctx, {"task": "cross_domain", **sizes}, f"hit_rate@{s['hit_k']}", reach)
    for finder in s["finders"]:
        t0 = time.perf_counter()
        hits, prec = [], {k: [] for k in s["precision_ks"]}
        surprise, gate = _Surprise.empty(), []
        for pair, mask, ends in zip(pairs, masks, ends_all, strict=True):
            scores = bridges.embedding_scores(ctx.cand_vecs, ends)
            ranked = _rankings(
                finder,
                scores,
                mask,
                bridges.cross_prompt(pair.source, pair.target),
                vocab,
                ctx.scorer,
                cache,
                int(s["shortlist"]),
                rng,
            )
            correct = [
                any(matches(vocab.phrases[i], c) for c in pair.connections) for i in ranked[:depth]
            ]
            hits.append(float(any(correct[: int(s["hit_k"])])))
            for k in s["precision_ks"]:
                prec[k].append(float(np.mean(correct[:k])) if len(correct) >= k else float("nan"))
            endpoints = [pair.source, pair.target]
            top = [vocab.phrases[i] for i in ranked[:SURPRISE_K]]
            surprise.add(ctx, top, correct, endpoints)
            gate.append(gate_pass_rate(ctx.gate, top[:GATE_K], endpoints, ctx.threshold))
        params = {"task": "cross_domain", "finder": finder, "shortlist": s["shortlist"], **sizes}
        record_items(rec, finder, params, f"hit_rate@{s['hit_k']}", hits, s, ctx.seed)
        for k in s["precision_ks"]:
            record_items(rec, finder, params, f"precision@{k}", prec[k], s, ctx.seed)
        surprise.record(rec, ctx, finder, params, "")
        record_items(rec, finder, params, "guardian_pass_rate", gate, s, ctx.seed)
        log.info(
            "cross-domain %s: hit rate %.2f over %d pairs; defined on: %s (%.1f s)",
            finder,
            np.mean(hits),
            len(hits),
            surprise.defined(),
            time.perf_counter() - t0,
        )


def _links(rec, texts, vocab, cand_vecs, s, seed) -> None:
    words = [i for i, k in enumerate(vocab.keys) if len(k) == 1][: int(s["graph_nodes"])]
    t0 = time.perf_counter()
    graph = build_concept_graph(
        texts,
        [vocab.phrases[i] for i in words],
        window=int(s["graph_window"]),
        min_count=int(s["graph_min_count"]),
        degree=int(s["graph_degree"]),
    )
    edges = graph.edges()
    log.info(
        "concept graph: %d nodes, %d edges (%.1f s)",
        len(words),
        len(edges),
        time.perf_counter() - t0,
    )
    gparams = {
        "nodes": len(words),
        "window": s["graph_window"],
        "min_count": s["graph_min_count"],
        "degree": s["graph_degree"],
    }
    rec.add("concept_graph", gparams, "graph_edges", "count", True, len(edges))
    if len(edges) < 10:
        raise ForgebenchError(
            f"{KEY}.graph_nodes: the concept graph has only {len(edges)} edges; "
            "raise graph_nodes or lower graph_min_count"
        )
    vecs = cand_vecs[words]
    chance = 1.0 / (1 + int(s["negative_ratio"]))
    for r in range(int(s["link_repetitions"])):
        rng = np.random.default_rng([seed, 4, r])
        split = link_prediction.hide_edges(
            len(words), edges, float(s["hidden_share"]), int(s["negative_ratio"]), rng
        )
        scores = {
            "common_neighbours": link_prediction.common_neighbours(split.train, split.pairs),
            "adamic_adar": link_prediction.adamic_adar(split.train, split.pairs),
            "personalised_pagerank": link_prediction.personalised_pagerank(
                split.train, split.pairs, float(s["ppr_restart"])
            ),
            "embedding": link_prediction.embedding_cosine(vecs, split.pairs),
        }
        for name, sc in scores.items():
            params = {
                "task": "hidden_links",
                "predictor": name,
                "hidden_share": s["hidden_share"],
                "negative_ratio": s["negative_ratio"],
                "chance_precision": chance,
            }
            for k in s["link_ks"]:
                p = link_prediction.precision_at_k(
                    sc, split.labels, int(k), np.random.default_rng([seed, 5, r])
                )
                rec.add(name, params, f"hidden_link_precision@{k}", "ratio", True, p, repetition=r)
            value = link_prediction.auc(sc, split.labels)
            rec.add(name, params, "hidden_link_auc", "ratio", True, value, repetition=r)
            log.info("hidden links rep %d %s: AUC %.3f", r, name, value)
