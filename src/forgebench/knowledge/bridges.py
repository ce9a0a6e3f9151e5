"""Bridge finders: rank vocabulary candidates as the link between given endpoints.

* ``embedding``: a candidate's score is the mean cosine similarity of its embedding
  (all-MiniLM-L6-v2) to the endpoints' embeddings; every candidate is ranked.
* ``lm_rerank``: the evaluation model reorders the embedding finder's top ``shortlist``
  by domain-conditional PMI, ``log P(c | prompt) - log P(c | "Answer:")`` (Holtzman et al.
  2021): the bare log-likelihood would favour frequent words whatever the prompt says.
  Its accuracy can never exceed the shortlist's recall, which is recorded too.
* ``random``: a seeded uniform ranking, the measured floor beside the analytic chance.

Candidates that share a word with an endpoint are excluded (a cue is not its own bridge);
RAT items rank single words only, since their targets are single words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forgebench.knowledge.lm_scorer import LogLikelihoodScorer
from forgebench.knowledge.vocabulary import Vocabulary, normalise

UNCONDITIONAL_CONTEXT = "Answer:"


def rat_prompt(cues: Sequence[str]) -> str:
    return f"One word that goes with each of {', '.join(cues)}: the word is"


def cross_prompt(source: str, target: str) -> str:
    return f"A concept that connects {source} and {target} is"


def allowed_mask(vocab: Vocabulary, endpoints: Sequence[str], *, unigrams_only: bool) -> np.ndarray:
    """Candidates that share no word with any endpoint (and are single words if asked)."""
    banned = {w for e in endpoints for w in normalise(e)}
    return np.array(
        [(not unigrams_only or len(k) == 1) and not banned.intersection(k) for k in vocab.keys],
        dtype=bool,
    )


def embedding_scores(cand_vecs: np.ndarray, endpoint_vecs: np.ndarray) -> np.ndarray:
    """Mean cosine similarity of each candidate to the endpoints (vectors are unit length)."""
    return (cand_vecs @ endpoint_vecs.T).mean(axis=1)


def rank(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Indices of allowed candidates, best first (stable: ties keep vocabulary order)."""
    idx = np.flatnonzero(mask)
    return idx[np.argsort(-scores[idx], kind="stable")]


def random_ranking(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.flatnonzero(mask))


def lm_rerank(
    scorer: LogLikelihoodScorer,
    prompt: str,
    shortlist: Sequence[int],
    vocab: Vocabulary,
    unconditional: dict[int, float],
) -> np.ndarray:
    """``shortlist`` reordered by PMI under the model; ``unconditional`` caches
    log P(c | "Answer:") per candidate across items."""
    missing = [i for i in shortlist if i not in unconditional]
    for i, lp in zip(
        missing,
        scorer.score([(UNCONDITIONAL_CONTEXT, " " + vocab.phrases[i]) for i in missing]),
        strict=True,
    ):
        unconditional[i] = lp
    cond = scorer.score([(prompt, " " + vocab.phrases[i]) for i in shortlist])
    pmi = np.array([c - unconditional[i] for c, i in zip(cond, shortlist, strict=True)])
    order = np.argsort(-pmi, kind="stable")
    return np.asarray(shortlist, dtype=np.int64)[order]
