"""knowledge/personalization: recommendation quality against graded relevance from a
seeded generator with latent preferences (forgebench.knowledge.personalization_data).

Why this shape: the system this replaces scored Recall@20 over a pool of 20 items, 1.0 by
construction. Here each user's pool is every item outside their history (at least 1,000),
relevance follows from latent preferences the approaches never see, and a random floor and
a latent-oracle ceiling bracket every approach (the oracle's Recall@20 is below 1 when a
user has more than 20 relevant items, which shows the metric's reachable range).

Every approach gets the same histories (base retrieval's BM25 query holds the stated
preferences and the history's texts). Standard baselines
(forgebench.knowledge.standard_recommenders: popularity with recency, content item-kNN,
truncated-SVD matrix factorisation) have their stated grids searched on a validation split
(each user's last ``validation_holdout`` interactions hidden; rows ``<name>/validation``),
while the approach under test (``compared``) is fixed in config. Ties are broken by a
seeded random key. The compared approach is set against the baseline with the best
validation MAP, paired over users (case ``compared_vs_strongest_baseline``, the two named
in params: improvement of the per-user MAP and NDCG@10 ratio with its signed-rank
interval, stats.compare's verdict in params).

Rows: per user (``sample`` = user) ``MAP`` (average precision; its mean is MAP),
``NDCG@10`` (graded), ``Recall@20`` for each approach, then ``*_mean`` with a bootstrap
interval over users; ``context_tokens`` and ``token_cost_delta`` (tokens the approach
sends to a model minus base retrieval's, counted by the evaluation model's tokenizer;
for ``in_context`` this includes its rescoring requests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.knowledge import recommenders as R
from forgebench.knowledge import standard_recommenders as S
from forgebench.knowledge.common import record_items
from forgebench.knowledge.personalization_data import generate
from forgebench.knowledge.ranking_metrics import average_precision, graded_ndcg_at_k, recall_at_k
from forgebench.record import Recorder

BENCHMARK_VERSION = 2
SUITE = "knowledge"
NAME = "personalization"
KEY = "suites.knowledge.benchmarks.personalization"
APPROACHES = (
    "random",
    "base_retrieval",
    *S.BASELINES,
    "personalised_pagerank",
    "alpha_rescoring",
    "in_context",
    "latent_oracle",
)
MODEL_APPROACHES = ("base_retrieval", "personalised_pagerank", "alpha_rescoring", "in_context")
MIN_POOL = 1000
DOWNSTREAM_TOP = 10

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "model": "cognate",
    "users": 40,
    "items": 1200,
    "history_len": 15,
    "stated_topics": 2,
    "alpha": 0.5,
    "shortlist": 10,
    "approaches": list(APPROACHES),
    "compared": "personalised_pagerank",
    "validation_holdout": 3,
    "lm_batch_size": 16,
    "torch_threads": 1,
    "confidence": 0.95,
    "bootstrap_resamples": 2000,
}


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"model_dir", "datasets_dir"})
    if unknown:
        raise ForgebenchError(f"{KEY}: unknown keys {unknown}; allowed: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}
    bad = sorted(set(s["approaches"]) - set(APPROACHES))
    if bad:
        raise ForgebenchError(f"{KEY}.approaches: unknown {bad}; allowed: {list(APPROACHES)}")
    if int(s["items"]) - int(s["history_len"]) < MIN_POOL:
        raise ForgebenchError(
            f"{KEY}.items: the pool (items - history_len = "
            f"{int(s['items']) - int(s['history_len'])}) must hold at least {MIN_POOL} items"
        )
    if s["compared"] not in set(s["approaches"]) - set(S.BASELINES) - {"random", "latent_oracle"}:
        raise ForgebenchError(
            f"{KEY}.compared: {s['compared']!r} must be one of the listed approaches other "
            "than the standard baselines, the random floor and the oracle"
        )
    if not 1 <= int(s["validation_holdout"]) < int(s["history_len"]):
        raise ForgebenchError(f"{KEY}.validation_holdout must be in [1, history_len)")
    if not 0.0 <= float(s["alpha"]) <= 1.0:
        raise ForgebenchError(f"{KEY}.alpha must be in [0, 1], got {s['alpha']}")
    return s


def user_metrics(ranked: np.ndarray, grades: np.ndarray) -> dict[str, float]:
    """MAP (this user's AP), NDCG@10 and Recall@20 of one ranking; binary relevance is
    grade >= 2."""
    relevant = set(np.flatnonzero(grades >= 2).tolist())
    graded = {int(i): int(g) for i, g in enumerate(grades) if g > 0}
    items = ranked.tolist()
    return {
        "MAP": average_precision(items, relevant),
        "NDCG@10": graded_ndcg_at_k(items, graded, 10),
        "Recall@20": recall_at_k(items, relevant, 20),
    }


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    s = _settings(cfg)
    approaches = list(s["approaches"])
    from forgebench.knowledge.lm_scorer import LogLikelihoodScorer

    scorer = LogLikelihoodScorer(
        cfg.get("model_dir") or "", batch_size=int(s["lm_batch_size"]), key=KEY
    )
    if int(s["torch_threads"]) > 0:
        import torch

        torch.set_num_threads(int(s["torch_threads"]))
    rng = np.random.default_rng([seed, 10])
    obs, latent = generate(
        int(s["users"]),
        int(s["items"]),
        history_len=int(s["history_len"]),
        stated_topics=int(s["stated_topics"]),
        rng=rng,
    )
    n_rel = (latent.grades >= 2).sum(axis=1)
    log.info(
        "generated %d users, %d items; %.1f relevant items per user",
        len(obs.histories),
        len(obs.item_texts),
        float(n_rel.mean()),
    )
    bm25 = R.Bm25Scorer(obs)
    tuned = _tune_baselines(obs, [a for a in approaches if a in S.BASELINES], s, seed)
    ppr = R.PprScorer(obs) if "personalised_pagerank" in approaches else None
    hist = R.HistoryScorer(obs)
    rank_rng = np.random.default_rng([seed, 11])
    per = {a: {"MAP": [], "NDCG@10": [], "Recall@20": []} for a in approaches}
    tokens = {a: [] for a in approaches if a in MODEL_APPROACHES}
    unconditional: dict[int, float] = {}
    times = {a: 0.0 for a in approaches}
    for u in range(len(obs.histories)):
        cand = R.pool(obs, u)
        bm = bm25.scores(R.stated_query(obs, u))
        alpha_rank = R.order_pool(
            R.alpha_scores(bm, hist.scores(u), cand, float(s["alpha"])), cand, rank_rng
        )
        for a in approaches:
            t0 = time.perf_counter()
            extra = 0
            if a == "random":
                ranked = R.random_ranking(obs, u, rank_rng)
            elif a == "latent_oracle":
                ranked = R.oracle_ranking(obs, latent, u)
            elif a == "base_retrieval":
                ranked = R.order_pool(bm25.scores(R.history_query(obs, u)), cand, rank_rng)
            elif a in tuned:
                ranked = R.order_pool(tuned[a][0](u), cand, rank_rng)
            elif a == "personalised_pagerank":
                ranked = R.order_pool(ppr.scores(u), cand, rank_rng)
            elif a == "alpha_rescoring":
                ranked = alpha_rank
            else:
                ranked, extra = _in_context(
                    scorer, obs, u, alpha_rank, int(s["shortlist"]), unconditional
                )
            times[a] += time.perf_counter() - t0
            for metric, value in user_metrics(ranked, latent.grades[u]).items():
                per[a][metric].append(value)
            if a in tokens:
                prompt = R.downstream_prompt(obs, u, ranked[:DOWNSTREAM_TOP])
                tokens[a].append(scorer.count_tokens(prompt) + extra)
        if u % 20 == 0:
            log.info(
                "user %d/%d ranked by %d approaches", u + 1, len(obs.histories), len(approaches)
            )
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    gen = {
        "users": s["users"],
        "items": s["items"],
        "history_len": s["history_len"],
        "stated_topics": s["stated_topics"],
        "relevance": "grade >= 2",
    }
    rec.add("generator", gen, "relevant_per_user", "count", True, float(n_rel.mean()))
    rec.add("generator", gen, "pool_size", "count", True, float(len(R.pool(obs, 0))))
    for a in approaches:
        params = {**gen, "approach": a, "alpha": s["alpha"], "shortlist": s["shortlist"]}
        if a in tuned:
            params = {**gen, "approach": a, "tuned": tuned[a][1], "grid": S.GRIDS[a]}
        for metric, values in per[a].items():
            record_items(rec, a, params, metric, values, s, seed)
        rec.add(a, params, "ranking_time_per_user", "s", False, times[a] / len(obs.histories))
        if a in tokens:
            record_items(
                rec,
                a,
                params,
                "context_tokens",
                tokens[a],
                s,
                seed,
                unit="tokens",
                higher_is_better=False,
            )
            if "base_retrieval" in tokens:
                delta = np.asarray(tokens[a], float) - np.asarray(tokens["base_retrieval"], float)
                record_items(
                    rec,
                    a,
                    params,
                    "token_cost_delta",
                    delta,
                    s,
                    seed,
                    unit="tokens",
                    higher_is_better=False,
                )
        log.info(
            "%s: MAP %.3f NDCG@10 %.3f Recall@20 %.3f",
            a,
            np.mean(per[a]["MAP"]),
            np.mean(per[a]["NDCG@10"]),
            np.mean(per[a]["Recall@20"]),
        )
    _record_tuning(rec, gen, tuned, s)
    _paired_against_strongest(rec, gen, per, tuned, s)
    return rec.frame()


def _tune_baselines(
    obs: Any, names: list[str], s: Mapping[str, Any], seed: int
) -> dict[str, tuple[Any, dict[str, Any], list[tuple[dict[str, Any], float]]]]:
    """Each standard baseline's grid searched on the validation split, then refitted on the
    whole histories: name -> (scorer, chosen params, grid table)."""
    out = {}
    for name in names:
        best, table = S.tune(
            name, obs.histories, obs.item_texts, holdout=int(s["validation_holdout"]), seed=seed
        )
        out[name] = (S.fit(name, obs.histories, obs.item_texts, best), best, table)
        log.info("%s tuned on validation: %s (grid %s)", name, best, S.GRIDS[name])
    return out


def _record_tuning(rec: Recorder, gen: Mapping[str, Any], tuned: Mapping, s: Mapping) -> None:
    for name, (_, best, table) in tuned.items():
        for i, (point, value) in enumerate(table):
            params = {
                **gen,
                "approach": name,
                "point": point,
                "chosen": point == best,
                "holdout": s["validation_holdout"],
            }
            rec.add(f"{name}/validation", params, "validation_MAP", "ratio", True, value, sample=i)


def _paired_against_strongest(
    rec: Recorder, gen: Mapping[str, Any], per: Mapping, tuned: Mapping, s: Mapping
) -> None:
    """The approach fixed in config against the standard baseline with the best validation
    MAP (chosen before the test ranking is scored), paired over users: stats.compare with
    the users as shared units (Wilcoxon signed-rank interval of the per-user MAP ratio)."""
    compared = s["compared"]
    if not tuned or compared not in per:
        return
    strongest = max(tuned, key=lambda n: max(v for _, v in tuned[n][2]))
    users = np.arange(len(per[compared]["MAP"]))
    case = "compared_vs_strongest_baseline"  # a fixed name config targets can refer to
    for metric in ("MAP", "NDCG@10"):
        base = np.asarray(per[strongest][metric], float)
        cand = np.asarray(per[compared][metric], float)
        keep = (base > 0) & (cand > 0)  # the ratio is taken on the log scale
        result = stats.compare(
            base[keep],
            cand[keep],
            higher_is_better=True,
            baseline_units=users[keep],
            candidate_units=users[keep],
            confidence=float(s["confidence"]),
        )
        params = {
            **gen,
            "baseline": strongest,
            "candidate": compared,
            "strongest_by": "validation MAP",
            "design": result.design,
            "verdict": result.verdict,
            "users_paired": int(keep.sum()),
            "users_left_out_zero": int((~keep).sum()),
            "confidence": s["confidence"],
        }
        for suffix, value in (
            ("", result.improvement),
            ("_ci_low", result.improvement_ci[0]),
            ("_ci_high", result.improvement_ci[1]),
        ):
            ok = bool(np.isfinite(value))  # an undetermined comparison has no interval
            rec.add(
                case,
                params,
                f"{metric}_paired_improvement{suffix}",
                "ratio",
                True,
                value if ok else None,
                status="ok" if ok else "skipped",
            )
        log.info(
            "%s vs %s %s: %+.3f [%+.3f, %+.3f] over %d users: %s",
            compared,
            strongest,
            metric,
            result.improvement,
            *result.improvement_ci,
            int(keep.sum()),
            result.verdict,
        )


def _in_context(
    scorer: Any,
    obs: Any,
    u: int,
    alpha_rank: np.ndarray,
    shortlist: int,
    unconditional: dict[int, float],
) -> tuple[np.ndarray, int]:
    """Alpha ranking with its head reordered by the model; also the tokens it sent."""
    head = [int(i) for i in alpha_rank[:shortlist]]
    missing = [i for i in head if i not in unconditional]
    uncond_pairs = [(R.UNCONDITIONAL_CONTEXT, " " + obs.item_texts[i]) for i in missing]
    for i, lp in zip(missing, scorer.score(uncond_pairs), strict=True):
        unconditional[i] = lp
    pairs = R.rescoring_requests(obs, u, head)
    cond = scorer.score(pairs)
    pmi = np.array([c - unconditional[i] for c, i in zip(cond, head, strict=True)])
    new_head = np.asarray(head)[np.argsort(-pmi, kind="stable")]
    sent = sum(scorer.count_tokens(c + x) for c, x in pairs + uncond_pairs)
    return np.concatenate([new_head, alpha_rank[shortlist:]]), sent
