"""Training text for the cognate model: the TRAINING splits of the prepared datasets only,
in the prompt format lm-eval uses ("Question: ...\\nAnswer: ..."), with a seeded held-out
slice of those training documents for perplexity. Evaluation splits are never read."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from forgebench.errors import ForgebenchError

#: Datasets whose train split feeds the tokenizer and the training run, and the only split
#: read from each. Their evaluation splits (test/validation) are not touched.
TRAIN_SOURCES: tuple[str, ...] = ("arc_challenge", "arc_easy", "gsm8k")
TRAIN_SPLIT = "train"


def _arc_text(row: Mapping[str, Any]) -> str:
    choices = row["choices"]
    labels = [str(x) for x in choices["label"]]
    texts = [str(x) for x in choices["text"]]
    key = str(row["answerKey"])
    if key not in labels:
        raise ValueError(f"answerKey {key!r} not among labels {labels} (id {row.get('id')})")
    return f"Question: {row['question']}\nAnswer: {texts[labels.index(key)]}"


def _gsm8k_text(row: Mapping[str, Any]) -> str:
    return f"Question: {row['question']}\nAnswer: {row['answer']}"


_FORMATTERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "arc_challenge": _arc_text,
    "arc_easy": _arc_text,
    "gsm8k": _gsm8k_text,
}


@dataclass(frozen=True)
class Corpus:
    """Documents split into training and held-out slices (both from training splits)."""

    train: list[str]
    heldout: list[str]
    sources: dict[str, int]  # dataset -> documents read

    @property
    def train_chars(self) -> int:
        return sum(len(t) for t in self.train)


def read_documents(datasets_dir: Path, sources: Sequence[str] = TRAIN_SOURCES) -> dict[str, list]:
    """Documents per dataset from ``<datasets_dir>/<name>/train.parquet``."""
    import pandas as pd

    docs: dict[str, list[str]] = {}
    for name in sources:
        if name not in _FORMATTERS:
            raise ForgebenchError(
                f"models: no training-text reader for dataset {name!r}; "
                f"known: {sorted(_FORMATTERS)}"
            )
        path = Path(datasets_dir) / name / f"{TRAIN_SPLIT}.parquet"
        if not path.is_file():
            raise ForgebenchError(
                f"models: training text {path} is missing; the datasets stage "
                f"(forgebench.datasets.prepare) writes it from `datasets.mirror` or the hub"
            )
        frame = pd.read_parquet(path)
        try:
            docs[name] = [_FORMATTERS[name](row) for row in frame.to_dict("records")]
        except (KeyError, ValueError, TypeError) as exc:
            raise ForgebenchError(
                f"models: {path} does not have the Hugging Face schema expected for {name}: {exc!r}"
            ) from exc
    return docs


def load_corpus(
    datasets_dir: Path,
    *,
    heldout_fraction: float,
    seed: int,
    sources: Sequence[str] = TRAIN_SOURCES,
) -> Corpus:
    """Training documents of every source, shuffled with ``seed``; the first
    ``heldout_fraction`` of each source is held out (at least one document each)."""
    if not 0 < heldout_fraction < 1:
        raise ForgebenchError(
            f"models.<name>.training.heldout_fraction: must be in (0, 1), got {heldout_fraction}"
        )
    rng = np.random.default_rng(seed)
    train: list[str] = []
    heldout: list[str] = []
    per_source = read_documents(datasets_dir, sources)
    for name in sources:
        docs = per_source[name]
        if len(docs) < 2:
            raise ForgebenchError(f"models: {name} train split has {len(docs)} documents, need 2")
        order = rng.permutation(len(docs))
        k = min(len(docs) - 1, max(1, round(heldout_fraction * len(docs))))
        heldout.extend(docs[i] for i in order[:k])
        train.extend(docs[i] for i in order[k:])
    perm = rng.permutation(len(train))
    return Corpus(
        train=[train[i] for i in perm],
        heldout=heldout,
        sources={k: len(v) for k, v in per_source.items()},
    )
