"""HumanEval and MBPP scoring for the fb_* tasks, offline.

lm-eval's built-in humaneval/mbpp utils load the hub metric `code_eval` at import, which
fails offline. These keep the built-ins' metric names (pass_at_k, pass_at_1), signatures
and return values, and score through forgebench.evaluation.code_exec (a sandboxed process
per candidate). The prediction filter is a copy of lm-eval 0.4.13's
lm_eval/tasks/humaneval/utils.py::build_predictions (tests check they agree).
"""

from __future__ import annotations

from typing import Any

from forgebench.evaluation.code_exec import humaneval_pass_at_k, mbpp_pass_at_1, prefetch

# MBPP's canonical few-shot examples (the original paper's prompt; lm-eval's
# mbpp/utils.py::list_fewshot_samples hard-codes these three, in this order).
MBPP_FEWSHOT_TASK_IDS = (2, 3, 4)


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | None = None):
    """lm_eval.tasks.humaneval.utils.pass_at_k, scored offline in a sandbox."""
    return humaneval_pass_at_k(references, predictions, k)


def pass_at_1(references: str | list[str], predictions: str | list[list[str]]) -> float:
    """lm_eval.tasks.mbpp.utils.pass_at_1, scored offline in a sandbox."""
    return mbpp_pass_at_1(references, predictions)


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """The HumanEval candidate program: prompt plus completion (lm-eval's, verbatim).

    Also starts scoring them all in the sandbox's worker pool (the metric is then called once
    per document and takes its result); the tests are the task's doc_to_target."""
    preds = [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs, strict=False)]
    tests = [f"{d['test']}\ncheck({d['entry_point']})" for d in docs if "entry_point" in d]
    if len(tests) == len(preds):
        prefetch(tests, preds)
    return preds


def queue_mbpp(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Pass-through filter: queues each document's first completion against its three tests
    (the task's doc_to_target) in the sandbox's worker pool; take_first follows as built-in."""
    resps = list(resps)
    tests = ["\n".join(d["test_list"][:3]) for d in docs if "test_list" in d]
    if len(tests) == len(resps) and all(resps):
        prefetch(tests, [[r[0]] for r in resps])
    return resps


def mbpp_fewshot_docs(dataset: Any) -> list[dict]:
    """The built-in's three few-shot documents, read from the prompt split (task_id 1-10)."""
    by_id = {row["task_id"]: row for row in dataset}
    return [dict(by_id[task_id], is_fewshot=True) for task_id in MBPP_FEWSHOT_TASK_IDS]
