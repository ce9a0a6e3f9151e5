"""Held-out perplexity: strided windows score every token once, batching changes nothing,
cards must match before results pair, and the paired interval's verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_models import TEXT, make_tiny_llama

from forgebench.compression import perplexity
from forgebench.errors import ForgebenchError


@pytest.mark.parametrize(
    ("n", "context", "stride"), [(2, 4, 3), (10, 4, 3), (10, 4, 1), (9, 5, 3), (30, 8, 4)]
)
def test_windows_score_every_target_once(n: int, context: int, stride: int) -> None:
    scored: list[int] = []
    for begin, end, first in perplexity._windows(n, context, stride):
        assert end - begin <= context and begin < first <= end
        scored += range(first, end)
    assert scored == list(range(1, n))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = make_tiny_llama(tmp_path_factory.mktemp("ppl") / "m", max_positions=64)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def _naive_nll(model, ids: list[int]) -> float:
    logits = model(torch.tensor([ids])).logits[0, :-1]
    return float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))


def test_batched_padded_scoring_equals_one_document_at_a_time(tiny) -> None:
    model, tok = tiny
    docs, _ = perplexity.encode_documents(
        tok, [" ".join(TEXT[i : i + 1 + i % 3]) for i in range(6)], 10**6
    )
    nll, count = perplexity.document_nll(model, docs, context=64, stride=32, batch=4)
    for i, ids in enumerate(docs):
        assert count[i] == len(ids) - 1
        assert nll[i] == pytest.approx(_naive_nll(model, ids), rel=1e-4)
    # short windows: every token still scored once, batched as one at a time
    nll_s, count_s = perplexity.document_nll(model, docs, context=8, stride=4, batch=3)
    assert (count_s == count).all()
    one = [perplexity.document_nll(model, [d], context=8, stride=4, batch=1)[0][0] for d in docs]
    assert np.allclose(nll_s, one, rtol=1e-4)


def test_card_mismatch_is_refused_and_roundtrips(tiny, tmp_path: Path) -> None:
    model, tok = tiny
    frame, card = perplexity.score(model, tok, TEXT[:10], max_tokens=60, context=16, stride=8)
    assert card.scored_tokens == int(frame["tokens"].sum()) >= 60
    assert card.documents == len(frame)
    perplexity.write_result(tmp_path / "r.parquet", frame, card)
    back, card2 = perplexity.read_result(tmp_path / "r.parquet")
    assert card2 == card
    pd.testing.assert_frame_equal(back, frame)
    _, other = perplexity.score(model, tok, TEXT[:10], max_tokens=60, context=16, stride=12)
    with pytest.raises(ForgebenchError, match="stride: 8 vs 12"):
        perplexity.require_same_card(card, other, "test")
    _, fewer = perplexity.score(model, tok, TEXT[:10], max_tokens=30, context=16, stride=8)
    with pytest.raises(ForgebenchError, match="text_digest"):
        perplexity.require_same_card(card, fewer, "test")
    frame.to_parquet(tmp_path / "bare.parquet")
    with pytest.raises(ForgebenchError, match="no perplexity card"):
        perplexity.read_result(tmp_path / "bare.parquet")


def _docs(ppl: np.ndarray) -> pd.DataFrame:
    tokens = np.full(ppl.size, 100)
    return pd.DataFrame(
        {"text_sha256": [f"d{i}" for i in range(ppl.size)], "nll": np.log(ppl) * tokens,
         "tokens": tokens, "perplexity": ppl}
    )  # fmt: skip


def test_paired_change_verdicts() -> None:
    rng = np.random.default_rng(0)
    base = np.exp(rng.normal(3.0, 0.5, 40))  # documents differ a lot from each other ...
    small = base * np.exp(rng.normal(0.001, 0.003, 40))  # ... the change per document little
    c = perplexity.paired_change(_docs(base), _docs(small), confidence=0.95, threshold=0.01)
    assert c.verdict == "no change" and 0.99 < c.ratio_ci[0] <= c.ratio_ci[1] < 1.01
    worse = base * np.exp(rng.normal(0.2, 0.05, 40))
    c = perplexity.paired_change(_docs(base), _docs(worse), confidence=0.95, threshold=0.01)
    assert c.verdict == "regression" and c.ratio_ci[0] > 1.15
    # unpaired, the same small change could not be told from the spread between documents
    wide = perplexity.stats.compare(base, small, higher_is_better=False, threshold=0.01)
    assert wide.verdict == "inconclusive"
    with pytest.raises(ForgebenchError, match="different documents"):
        perplexity.paired_change(_docs(base), _docs(small[:-1]), confidence=0.95, threshold=0.01)
