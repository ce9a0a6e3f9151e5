"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", eq. 1 and its numerically stable product form), and scoring of candidates."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from forgebench.evaluation.code_exec.sandbox import ExecResult, SandboxConfig, run_programs


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n is correct), c correct.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so that large n does
    not overflow.
    """
    if not (isinstance(n, int | np.integer) and isinstance(c, int | np.integer)):
        raise TypeError(f"n and c must be integers, got {n!r}, {c!r}")
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass(frozen=True)
class ProblemScore:
    n: int
    correct: int
    results: tuple[ExecResult, ...]


def build_program(candidate: str, test: str) -> tuple[str, str]:
    """What HF ``code_eval`` runs as one program (candidate, newline, tests), kept as its two
    parts: the sandbox runs the tests in a judge process apart from the candidate."""
    return candidate, test


def score_problems(
    references: Sequence[str],
    predictions: Sequence[Sequence[str]],
    config: SandboxConfig | None = None,
) -> list[ProblemScore]:
    """Run every candidate of every problem (all in one parallel batch) against its tests."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} prediction lists")
    pairs = zip(references, predictions, strict=True)
    programs = [build_program(c, ref) for ref, cands in pairs for c in cands]
    results = iter(run_programs(programs, config))
    scores = []
    for cands in predictions:
        mine = tuple(next(results) for _ in cands)
        scores.append(ProblemScore(len(mine), sum(r.passed for r in mine), mine))
    return scores


def pass_at_k(scores: Iterable[ProblemScore], ks: Iterable[int]) -> dict[str, float]:
    """Mean estimator over problems, for each k that every problem has enough samples for
    (the keys and the rule HF ``code_eval`` uses)."""
    scores = list(scores)
    out = {}
    for k in ks:
        if scores and all(s.n >= k for s in scores):
            estimates = [estimate_pass_at_k(s.n, s.correct, k) for s in scores]
            out[f"pass@{k}"] = float(np.mean(estimates))
    return out
