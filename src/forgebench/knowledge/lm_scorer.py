"""Log-likelihood scoring through lm-eval's model API (the evaluation stage's interface).

Why lm-eval's HFLM and not a forward pass of our own: the evaluation stage scores models
through it, so a model that works there works here with the same tokenisation of context
and continuation. Requests are batched by HFLM itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)


class LogLikelihoodScorer:
    """``score(pairs)`` gives log P(continuation | context) for each (context, continuation)."""

    def __init__(self, model_dir: Path | str, *, batch_size: int, key: str) -> None:
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise ForgebenchError(
                f"{key}.model_dir: {str(path)!r} is not a Hugging Face model folder (no "
                "config.json); build the model first or set model to a built one"
            )
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(name, "1")
        from lm_eval.models.huggingface import HFLM

        self._lm: Any = HFLM(pretrained=str(path), device="cpu", batch_size=int(batch_size))
        self.tokenizer: Any = self._lm.tokenizer
        self.model_dir = path

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Summed log-probability of each continuation after its context."""
        if not pairs:
            return []
        from lm_eval.api.instance import Instance

        requests = [
            Instance("loglikelihood", doc={}, arguments=(ctx, cont), idx=i)
            for i, (ctx, cont) in enumerate(pairs)
        ]
        out = self._lm.loglikelihood(requests, disable_tqdm=True)
        return [float(lp) for lp, _ in out]

    def count_tokens(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of ``text`` (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
