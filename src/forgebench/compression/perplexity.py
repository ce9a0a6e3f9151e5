"""Per-document perplexity on a fixed held-out text, with a card that says what was scored.

Why per document: a compressed model's perplexity change needs an interval, and the
documents are the independent units (tokens of one document are not). Each document is
scored on its own (BOS first where the tokenizer has one, so the first word is scored
too), in windows of ``context`` tokens where it is longer: after the first window, each
scores the next ``stride`` tokens with the ``context - stride`` before them as context,
so every token is scored once (the usual strided evaluation). A document's value is its
summed next-token NLL and its scored-token count; its log-perplexity is their quotient.

The held-out text is BoolQ's Wikipedia passages (the prepared validation split,
results/datasets/boolq), distinct passages in file order, whole passages until
``max_tokens`` scored tokens: fixed before any model is seen, never chosen by result.

The card (``PerplexityCard``) holds the text digest, tokenizer digest, context, stride,
BOS use and document/token counts. Two results pair only when their cards are equal
(``require_same_card``): otherwise the per-document differences would compare different
texts, tokenisations or windows. The change of a compressed model against its original
is ``stats.compare`` over per-document perplexities paired by document id (the shift
module's paired estimator of the log ratio; verdict words from docs/verdicts.md), so
"no change" means the whole interval lies inside ``± threshold``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from forgebench import stats
from forgebench.errors import ForgebenchError

TEXT_SOURCE = "BoolQ validation passages (results/datasets/boolq), distinct, file order"
BOOLQ_FILE = "validation.parquet"


@dataclass(frozen=True)
class PerplexityCard:
    """What a perplexity result measured; equal cards are the condition for pairing."""

    text: str
    text_digest: str
    tokenizer_digest: str
    context: int
    stride: int
    bos: bool
    documents: int
    scored_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> PerplexityCard:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__})


def boolq_passages(datasets_dir: str | Path) -> list[str]:
    """Distinct BoolQ validation passages in file order (the prepared dataset's parquet)."""
    path = Path(datasets_dir) / "boolq" / BOOLQ_FILE
    if not path.is_file():
        raise ForgebenchError(
            f"suites.compression.evaluation: held-out text {path} is missing (prepare the "
            "boolq dataset: rule dataset)"
        )
    passages = pd.read_parquet(path, columns=["passage"])["passage"].tolist()
    return list(dict.fromkeys(p.strip() for p in passages if p and p.strip()))


def text_digest(documents: Sequence[str]) -> str:
    """sha256 of the documents, each length-prefixed (so boundaries count)."""
    h = hashlib.sha256()
    for d in documents:
        b = d.encode("utf-8")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def tokenizer_digest(tok: Any) -> str:
    """sha256 of the tokenizer's full definition (vocabulary, merges, normaliser, special
    tokens): two tokenizers with equal digests cut every text the same way."""
    backend = getattr(tok, "backend_tokenizer", None)
    spec = backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)
    extra = json.dumps(
        {"bos": tok.bos_token_id, "eos": tok.eos_token_id, "cls": type(tok).__name__},
        sort_keys=True,
    )
    return hashlib.sha256((spec + extra).encode("utf-8")).hexdigest()


def encode_documents(
    tok: Any, documents: Sequence[str], max_tokens: int
) -> tuple[list[list[int]], list[str]]:
    """Token ids of whole documents (BOS first where the tokenizer has one) until their
    scored tokens (all but the first id) reach ``max_tokens``, and the texts used (those
    under two ids are skipped); at least one document."""
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    out: list[list[int]] = []
    used: list[str] = []
    scored = 0
    for text in documents:
        ids = bos + tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) < 2:
            continue
        out.append(ids)
        used.append(text)
        scored += len(ids) - 1
        if scored >= max_tokens:
            break
    if not out:
        raise ForgebenchError("held-out text gives no document of two tokens or more")
    return out, used


def _windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored target) of each window over ``n`` ids. Targets are
    positions 1..n-1, each scored once: the first window scores all it holds, every later
    one the next ``stride`` targets, reading ``context`` ids ending at its last target
    (``stride < context``, so the id before its first target is inside)."""
    end = min(context, n)
    out = [(0, end, 1)]
    while end < n:
        first, end = end, min(end + stride, n)
        out.append((end - context, end, first))
    return out


@torch.no_grad()
def document_nll(
    model: Any, docs: Sequence[Sequence[int]], *, context: int, stride: int, batch: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Summed next-token NLL and scored-token count of each document (float64, int64).

    Windows of every document are batched together (right-padded, masked), so short
    documents share one forward pass."""
    if not 0 < stride < context:
        raise ForgebenchError(
            f"suites.compression.evaluation: need 0 < perplexity_stride < perplexity_context "
            f"(a window reads the id before its first target), got stride {stride}, "
            f"context {context}"
        )
    jobs = [(i, *w) for i, ids in enumerate(docs) for w in _windows(len(ids), context, stride)]
    jobs.sort(key=lambda j: j[2] - j[1])  # similar lengths together: less padding
    nll = np.zeros(len(docs), dtype=np.float64)
    count = np.zeros(len(docs), dtype=np.int64)
    for k in range(0, len(jobs), batch):
        chunk = jobs[k : k + batch]
        width = max(e - b for _, b, e, _ in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (i, b, e, _) in enumerate(chunk):
            ids[r, : e - b] = torch.tensor(docs[i][b:e], dtype=torch.long)
            mask[r, : e - b] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        for r, (i, b, e, s) in enumerate(chunk):
            targets = ids[r, s - b : e - b]
            rows = logp[r, s - b - 1 : e - b - 1]
            nll[i] -= float(rows.gather(1, targets.unsqueeze(1)).sum(dtype=torch.float64))
            count[i] += e - s
    return nll, count


def score(
    model: Any,
    tok: Any,
    documents: Sequence[str],
    *,
    max_tokens: int,
    context: int,
    stride: int,
    batch: int = 8,
) -> tuple[pd.DataFrame, PerplexityCard]:
    """Per-document results (``document``, ``text_sha256``, ``nll``, ``tokens``,
    ``perplexity``) and their card."""
    ids, used = encode_documents(tok, documents, max_tokens)
    nll, count = document_nll(model, ids, context=context, stride=stride, batch=batch)
    if not np.isfinite(nll).all():
        raise FloatingPointError("a document's NLL is not finite")
    frame = pd.DataFrame(
        {
            "document": np.arange(len(ids)),
            "text_sha256": [hashlib.sha256(d.encode("utf-8")).hexdigest() for d in used],
            "nll": nll,
            "tokens": count,
            "perplexity": np.exp(nll / count),
        }
    )
    card = PerplexityCard(
        text=TEXT_SOURCE,
        text_digest=text_digest(used),
        tokenizer_digest=tokenizer_digest(tok),
        context=int(context),
        stride=int(stride),
        bos=tok.bos_token_id is not None,
        documents=len(ids),
        scored_tokens=int(count.sum()),
    )
    return frame, card


def corpus_perplexity(frame: pd.DataFrame) -> float:
    """exp(total NLL / total scored tokens) over the documents."""
    return math.exp(float(frame["nll"].sum()) / float(frame["tokens"].sum()))


def require_same_card(a: PerplexityCard, b: PerplexityCard, what: str) -> None:
    """Refuse to pair two results whose cards differ (names the fields that differ)."""
    da, db = a.as_dict(), b.as_dict()
    differ = [k for k in da if da[k] != db[k]]
    if differ:
        detail = ", ".join(f"{k}: {da[k]!r} vs {db[k]!r}" for k in differ)
        raise ForgebenchError(
            f"{what}: perplexity cards differ ({detail}); results measured on different "
            "texts, tokenizers or windows are not paired"
        )


def paired_change(
    original: pd.DataFrame,
    compressed: pd.DataFrame,
    *,
    confidence: float,
    threshold: float,
) -> stats.Comparison:
    """Compressed against original over the same documents: the typical per-document
    perplexity ratio with its paired interval and verdict (lower perplexity is better).

    Documents pair on their text digest; cards must have been checked equal first."""
    joined = original.merge(compressed, on="text_sha256", suffixes=("_a", "_b"))
    if len(joined) != len(original) or len(joined) != len(compressed):
        raise ForgebenchError(
            f"perplexity results hold different documents ({len(original)} vs "
            f"{len(compressed)}, {len(joined)} shared)"
        )
    units = joined["text_sha256"].to_numpy()
    return stats.compare(
        joined["perplexity_a"].to_numpy(float),
        joined["perplexity_b"].to_numpy(float),
        higher_is_better=False,
        threshold=threshold,
        confidence=confidence,
        baseline_units=units,
        candidate_units=units,
        paired=True,
    )


CARD_KEY = b"forgebench.perplexity_card"


def write_result(path: str | Path, frame: pd.DataFrame, card: PerplexityCard) -> None:
    """Per-document results with their card in the parquet file's metadata (one file, so
    a result never travels without the card that says what it measured)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forgebench.atomic import write_bytes_atomic

    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[CARD_KEY] = json.dumps(card.as_dict(), sort_keys=True).encode("utf-8")
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(Path(path), sink.getvalue().to_pybytes())


def read_result(path: str | Path) -> tuple[pd.DataFrame, PerplexityCard]:
    """A result written by ``write_result``; a file without a card is refused."""
    import pyarrow.parquet as pq

    table = pq.read_table(str(path))
    raw = (table.schema.metadata or {}).get(CARD_KEY)
    if raw is None:
        raise ForgebenchError(f"{path}: no perplexity card; results without one are not paired")
    return table.to_pandas(), PerplexityCard.from_mapping(json.loads(raw))
