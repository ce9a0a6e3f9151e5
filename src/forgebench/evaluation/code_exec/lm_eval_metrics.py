"""Drop-in replacements for lm-eval's HumanEval and MBPP metrics, scored by our sandbox.

Same signatures and return types as ``lm_eval.tasks.humaneval.utils.pass_at_k`` and
``lm_eval.tasks.mbpp.utils.pass_at_1`` (lm-eval 0.4.x), without their import-time
``evaluate.load("code_eval")`` (a hub download). lm-eval calls these once per document; the
sandbox limits come from ``sandbox.configure`` or ``FORGEBENCH_CODE_EXEC_*`` variables.
"""

from __future__ import annotations

from forgebench.evaluation.code_exec.passk import pass_at_k, score_problems


def humaneval_pass_at_k(
    references: list[str], predictions: list[list[str]], k: list[int] | None = None
) -> dict[str, float]:
    """``{"pass@k": mean over problems}``, like ``code_eval.compute(...)[0]``."""
    assert k is not None
    if isinstance(k, int):
        k = [k]
    return pass_at_k(score_problems(references, predictions), k)


def mbpp_pass_at_1(references: str | list[str], predictions: str | list[list[str]]) -> float:
    """pass@1 over the given problems, accepting a bare string or flat list like lm-eval's."""
    if isinstance(references, str):
        references = [references]
    if isinstance(predictions[0], str):
        predictions = [[p] for p in predictions]
    return pass_at_k(score_problems(references, predictions), [1])["pass@1"]
