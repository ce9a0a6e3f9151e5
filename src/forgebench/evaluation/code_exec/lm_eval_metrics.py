"""Drop-in replacements for lm-eval's HumanEval and MBPP metrics, scored by our sandbox.

Same signatures and return types as ``lm_eval.tasks.humaneval.utils.pass_at_k`` and
``lm_eval.tasks.mbpp.utils.pass_at_1`` (lm-eval 0.4.x), without their import-time
``evaluate.load("code_eval")`` (a hub download). lm-eval calls these once per document, so on
their own they score one candidate at a time; ``prefetch`` (called from a task's filter, which
sees every completion at once) starts all of them in a pool of ``workers`` sandbox slots, and
each metric call then takes its result from there. The sandbox limits come from
``sandbox.configure`` or ``FORGEBENCH_CODE_EXEC_*`` variables.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from forgebench.evaluation.code_exec.passk import ProblemScore, pass_at_k
from forgebench.evaluation.code_exec.sandbox import ExecResult, current_config, run_program

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pending: dict[tuple[str, str], list[Future[ExecResult]]] = {}
_pool: list[ThreadPoolExecutor] = []


def prefetch(references: Sequence[str], predictions: Sequence[Sequence[str]]) -> int:
    """Start scoring every (tests, candidate) pair in the background, ``workers`` at a time;
    later metric calls for the same pair take the result. Returns how many were queued (none
    without root: the metric calls then raise ``SandboxUnavailable`` themselves)."""
    if os.geteuid() != 0:
        return 0
    cfg = current_config()
    queued = 0
    with _lock:
        if not _pool or _pool[0]._max_workers != cfg.workers:
            _pool[:] = [ThreadPoolExecutor(cfg.workers, thread_name_prefix="fb-code-exec")]
        for tests, cands in zip(references, predictions, strict=True):
            for cand in cands:
                future = _pool[0].submit(run_program, cand, tests, cfg)
                _pending.setdefault((cand, tests), []).append(future)
                queued += 1
    log.info("code execution: %d candidates queued on %d workers", queued, cfg.workers)
    return queued


def _result(cand: str, tests: str) -> ExecResult:
    with _lock:
        queue = _pending.get((cand, tests))
        future = queue.pop(0) if queue else None
        if queue == []:
            del _pending[(cand, tests)]
        unmatched = future is None and bool(_pending)
    if unmatched:  # queued under other texts than lm-eval hands the metric: scored twice
        log.warning("code execution: a candidate was not among the %d queued", len(_pending))
    return future.result() if future is not None else run_program(cand, tests)


def score(references: Sequence[str], predictions: Sequence[Sequence[str]]) -> list[ProblemScore]:
    """Like ``passk.score_problems``, taking prefetched results where there are any."""
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} prediction lists")
    scores = []
    for tests, cands in zip(references, predictions, strict=True):
        mine = tuple(_result(c, tests) for c in cands)
        scores.append(ProblemScore(len(mine), sum(r.passed for r in mine), mine))
    return scores


def humaneval_pass_at_k(
    references: list[str], predictions: list[list[str]], k: list[int] | None = None
) -> dict[str, float]:
    """``{"pass@k": mean over problems}``, like ``code_eval.compute(...)[0]``."""
    assert k is not None
    if isinstance(k, int):
        k = [k]
    return pass_at_k(score(references, predictions), k)


def mbpp_pass_at_1(references: str | list[str], predictions: str | list[list[str]]) -> float:
    """pass@1 over the given problems, accepting a bare string or flat list like lm-eval's."""
    if isinstance(references, str):
        references = [references]
    if isinstance(predictions[0], str):
        predictions = [[p] for p in predictions]
    return pass_at_k(score(references, predictions), [1])["pass@1"]
