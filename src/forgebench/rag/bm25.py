"""Lexical retrieval with BM25 from the maintained ``bm25s`` package (Lucene variant).

Tokenisation is bm25s's own (lower case, words of two or more characters, English stop
words removed, no stemming). Query tokenisation never changes the vocabulary, so one
index serves many threads; words the corpus never saw are dropped, and a query left with
no known word scores every passage 0 (ties broken by corpus order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Bm25Index:
    """A BM25 index over ``texts``; ``search`` returns corpus positions and scores."""

    def __init__(self, tokenizer: object, retriever: object, n_docs: int) -> None:
        self._tokenizer = tokenizer
        self._retriever = retriever
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> Bm25Index:
        """Tokenise and index ``texts`` (BM25 Lucene with ``k1`` and ``b``)."""
        import bm25s

        tokenizer = bm25s.tokenization.Tokenizer(lower=True, stopwords="en")
        tokens = tokenizer.tokenize(list(texts), return_as="tuple", show_progress=False)
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index(tokens, show_progress=False)
        return cls(tokenizer, retriever, len(texts))

    @property
    def nbytes(self) -> int:
        """Bytes of the sparse score matrix (data, indices, indptr)."""
        scores = self._retriever.scores
        return int(sum(scores[k].nbytes for k in ("data", "indices", "indptr")))

    def search(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (positions, scores) for one query, best first."""
        ids = self._tokenizer.tokenize(
            [text], update_vocab="never", return_as="ids", show_progress=False
        )
        docs, scores = self._retriever.retrieve(
            ids, k=min(k, self.n_docs), show_progress=False, n_threads=0
        )
        return np.asarray(docs[0], dtype=np.int64), np.asarray(scores[0], dtype=np.float64)
