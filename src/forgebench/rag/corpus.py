"""The retrieval corpus: BoolQ's deduplicated passages, queried with its human questions.

Why BoolQ: every question was written by a person who had one passage in mind, so the
paired passage is a known relevant document, and the question is not a span cut from
it (queries cut from passages make lexical retrieval look perfect). Several questions
share a passage; passages are deduplicated by exact text, so each question has exactly
one relevant passage id. Other passages may happen to answer a question too; they count
as non-relevant, which makes every quality figure a lower bound.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from forgebench.errors import ForgebenchError

BOOLQ_FILE = Path("boolq") / "validation.parquet"


@dataclass(frozen=True)
class Corpus:
    """Passages (``doc_ids``/``texts``) and queries with their relevant passage ids."""

    doc_ids: tuple[str, ...]
    texts: tuple[str, ...]
    query_ids: tuple[str, ...]
    queries: tuple[str, ...]
    relevant: tuple[frozenset[str], ...]  # per query, ids of its relevant passages
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.texts):
            raise ValueError("doc_ids and texts differ in length")
        if not len(self.query_ids) == len(self.queries) == len(self.relevant):
            raise ValueError("query_ids, queries and relevant differ in length")
        if len(set(self.doc_ids)) != len(self.doc_ids):
            raise ValueError("doc_ids are not unique")
        known = set(self.doc_ids)
        for qid, rel in zip(self.query_ids, self.relevant, strict=True):
            if not rel <= known:
                raise ValueError(f"query {qid} names relevant passages not in the corpus")

    @cached_property
    def _text_by_id(self) -> dict[str, str]:
        return dict(zip(self.doc_ids, self.texts, strict=True))

    def text_of(self, doc_id: str) -> str:
        """The passage text of ``doc_id``."""
        return self._text_by_id[doc_id]

    def subset(self, *, max_queries: int = 0, max_passages: int = 0, seed: int = 0) -> Corpus:
        """A seeded subset: ``max_queries`` questions (0 = all) and a pool of at most
        ``max_passages`` passages (0 = all) holding every chosen question's relevant
        passage plus randomly drawn distractors, in corpus order.

        Raises ForgebenchError when the chosen questions need more relevant passages than
        ``max_passages`` allows.
        """
        rng = np.random.default_rng(seed)
        q_idx = np.arange(len(self.queries))
        if 0 < max_queries < len(q_idx):
            q_idx = np.sort(rng.choice(q_idx, size=max_queries, replace=False))
        needed = set().union(*(self.relevant[i] for i in q_idx)) if len(q_idx) else set()
        pos = {d: i for i, d in enumerate(self.doc_ids)}
        keep = sorted(pos[d] for d in needed)
        if max_passages == 0 or max_passages >= len(self.doc_ids):
            keep = list(range(len(self.doc_ids)))
        elif len(keep) > max_passages:
            raise ForgebenchError(
                f"max_passages: {max_passages} passages cannot hold the {len(keep)} relevant "
                f"passages of {len(q_idx)} questions; raise max_passages or lower max_queries"
            )
        else:
            rest = np.setdiff1d(np.arange(len(self.doc_ids)), keep)
            extra = rng.choice(rest, size=max_passages - len(keep), replace=False)
            keep = sorted([*keep, *extra.tolist()])
        return Corpus(
            doc_ids=tuple(self.doc_ids[i] for i in keep),
            texts=tuple(self.texts[i] for i in keep),
            query_ids=tuple(self.query_ids[i] for i in q_idx),
            queries=tuple(self.queries[i] for i in q_idx),
            relevant=tuple(self.relevant[i] for i in q_idx),
            source=self.source,
        )


def passage_id(text: str) -> str:
    """A stable id for a passage: a hash of its text, so ids survive reordering."""
    return "p" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def load_boolq_corpus(datasets_dir: Path) -> Corpus:
    """BoolQ validation, as the datasets stage prepared it (sha256-checked), as a Corpus.

    Raises ForgebenchError naming the dataset job when the prepared file is missing.
    """
    import pandas as pd

    path = Path(datasets_dir) / BOOLQ_FILE
    if not path.is_file():
        raise ForgebenchError(
            f"datasets_dir: prepared BoolQ file {path} not found; the workflow's `dataset` job "
            "writes it from datasets.mirror (forgebench.datasets.prepare('boolq', ...))"
        )
    frame = pd.read_parquet(path, columns=["passage", "question", "idx"])
    doc_ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, str] = {}
    query_ids: list[str] = []
    queries: list[str] = []
    relevant: list[frozenset[str]] = []
    for passage, question, idx in frame.itertuples(index=False):
        pid = seen.get(passage)
        if pid is None:
            pid = passage_id(passage)
            seen[passage] = pid
            doc_ids.append(pid)
            texts.append(passage)
        query_ids.append(f"boolq-val-{idx}")
        queries.append(question)
        relevant.append(frozenset({pid}))
    return Corpus(
        doc_ids=tuple(doc_ids),
        texts=tuple(texts),
        query_ids=tuple(query_ids),
        queries=tuple(queries),
        relevant=tuple(relevant),
        source=str(path),
    )
