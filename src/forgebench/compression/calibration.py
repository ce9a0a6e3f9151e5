"""Calibration statistics for Hessian-aware quantisation (VPTQ): diag(X^T X) per Linear.

For a linear layer y = W x the proxy loss of a weight change dW is tr(dW H dW^T) with
H = E[x x^T] over calibration tokens (GPTQ, VPTQ). Its diagonal h_j = E[x_j^2], the mean
second moment of input feature j, says how much an error in column j of W costs. Forward
hooks on every ``torch.nn.Linear`` accumulate sum_t x_tj^2 over all calibration tokens in
float64; the result is keyed by the state-dict name of the layer's weight
(``<module>.weight``) so encoders find it by the tensor name they are given. Only the
transformer body runs (an HF model's ``base_model``), so the output head gets no
statistics: it is kept in high precision by every method.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)


@torch.no_grad()
def hessian_diagonals(
    model: torch.nn.Module, windows: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Mean of x_j^2 over every token seen by each Linear, float32 (in_features,), keyed by
    ``<module name>.weight``. ``windows``: inputs run one at a time (a 1-D token-id window
    becomes a batch of one)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], _out: Any) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float32)
            sums[name] = sums.get(name, 0) + x.square().sum(dim=0).to(torch.float64)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return fn

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(hook(f"{name}.weight")))
    was_training = model.training
    model.eval()
    # The transformer body alone: the output head's input statistics are the last
    # layer's, its logits are not needed, and skipping them saves a third of the work.
    body = getattr(model, "base_model", model)
    try:
        for ids in windows:
            if ids.numel() > 0:
                body(ids.unsqueeze(0) if ids.ndim == 1 else ids)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {k: (v / counts[k]).to(torch.float32) for k, v in sums.items()}


def token_windows(
    tok: Any, texts: Sequence[str], max_tokens: int, context: int
) -> list[torch.Tensor]:
    """The texts joined by blank lines, tokenised, cut at ``max_tokens``, in ``context``-token
    windows (the last one may be shorter)."""
    ids = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"][:max_tokens]
    t = torch.tensor(ids, dtype=torch.long)
    return [t[i : i + context] for i in range(0, t.numel(), context)]


def calibrate(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    max_tokens: int = 1024,
    context: int = 256,
    key: str = "compression.methods.vptq.calibration",
) -> tuple[dict[str, torch.Tensor], int]:
    """Hessian diagonals of every Linear of the HF model at ``model_dir`` on ``texts``, and
    the number of calibration tokens used."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    windows = token_windows(tok, texts, max_tokens, context)
    n = sum(int(w.numel()) for w in windows)
    if n < 2:
        raise ForgebenchError(
            f"{key}: calibration text gives {n} tokens; supply more text (at least a few "
            "hundred tokens) or raise max_tokens"
        )
    log.info("calibration: %d tokens through %s", n, model_dir)
    return hessian_diagonals(model, windows), n


def check_coverage(hdiag: Mapping[str, torch.Tensor], names: Sequence[str], key: str) -> None:
    """Every named weight has a diagonal (raises ForgebenchError naming the first missing)."""
    missing = [n for n in names if n not in hdiag]
    if missing:
        raise ForgebenchError(
            f"{key}: no calibration statistics for {missing[0]} ({len(missing)} tensors "
            "missing); Hessian weighting needs every quantised tensor to be an nn.Linear weight"
        )


def model_texts(
    model_dir: str | Path, datasets_dir: str | Path, seed: int, *, key: str
) -> tuple[list[str], list[str], dict[str, Any]]:
    """(calibration texts, held-out texts, where they came from) for a model.

    A model built by forgebench.models records its training seed and held-out fraction in
    ``forgebench_model.json``; the same split of the training documents is rebuilt, so
    perplexity is scored on documents the model never trained on and calibration reads
    training documents only (never the held-out ones, never an evaluation split). A model
    without that file gets the split from ``seed`` and a 2% held-out fraction."""
    import json

    from forgebench.models.corpus import TRAIN_SOURCES, load_corpus

    manifest = Path(model_dir) / "forgebench_model.json"
    fraction, split_seed, sources = 0.02, int(seed), tuple(TRAIN_SOURCES)
    origin = "run seed, held-out fraction 0.02 (no forgebench_model.json)"
    if manifest.is_file():
        doc = json.loads(manifest.read_text())
        training = doc.get("training") or {}
        fraction = float(training.get("heldout_fraction", fraction))
        split_seed = int(doc.get("seed", split_seed))
        sources = tuple(training.get("train_sources") or sources)
        origin = f"{manifest.name}: seed {split_seed}, held-out fraction {fraction}"
    if not datasets_dir or not Path(datasets_dir).is_dir():
        raise ForgebenchError(
            f"{key}.datasets_dir: {datasets_dir!r} is not a folder of prepared datasets"
        )
    corpus = load_corpus(
        Path(datasets_dir), heldout_fraction=fraction, seed=split_seed, sources=sources
    )
    info = {
        "text_split": origin,
        "sources": list(sources),
        "calibration": "training documents (shuffled)",
        "heldout_documents": len(corpus.heldout),
    }
    return corpus.train, corpus.heldout, info


def enough_texts(texts: Sequence[str], tokens: int, chars_per_token: int = 8) -> list[str]:
    """The leading texts holding about ``chars_per_token * tokens`` characters (so a long
    list is not tokenised whole when only ``tokens`` are used)."""
    out, size = [], 0
    for t in texts:
        out.append(t)
        size += len(t)
        if size >= chars_per_token * tokens:
            break
    return out
