"""Few-shot guard for tasks whose offline data has no train split.

lm-eval's built-in hellaswag, boolq, piqa and winogrande draw few-shot examples from the
train split, which the offline datasets lack. Drawing them from the evaluated split instead
would give numbers that do not compare with published ones, so few-shot is refused.
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.samplers import ContextSampler

from forgebench.errors import ForgebenchError


class NoTrainSplitSampler(ContextSampler):
    """A sampler that serves zero-shot and refuses any few-shot request."""

    def sample(self, n: int, eval_doc: Any = None, df: Any = None, **kwargs: Any) -> list:
        if n == 0:
            return []
        raise ForgebenchError(
            f"num_fewshot={n}: this task's built-in lm-eval version takes few-shot examples "
            "from the train split, which the prepared dataset does not have (see "
            "forgebench.datasets.catalog); set num_fewshot to 0 for it"
        )
