"""The local builder of the cognate reference model: seeded Llama-style init, a byte-level
BPE tokenizer trained on the datasets' training text, brief training within a time budget,
saved in HF format; every figure it reports is measured on the way."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError
from forgebench.models.architecture import (
    TARGET_PARAMS,
    Architecture,
    build_model,
    count_parameters,
    parameter_bytes,
)
from forgebench.models.corpus import TRAIN_SOURCES, load_corpus
from forgebench.models.files import quiet_progress, staged_dir, write_manifest
from forgebench.models.tokenizer import EOS_TOKEN, train_tokenizer
from forgebench.models.train import TrainingSettings, pack, train
from forgebench.record import Recorder

log = logging.getLogger(__name__)

TOKENIZER_DEFAULTS: dict[str, Any] = {"min_frequency": 2}


def _tokenizer_settings(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(TOKENIZER_DEFAULTS))
    if unknown:
        raise ForgebenchError(
            f"{key}: unknown keys {unknown}; allowed: {sorted(TOKENIZER_DEFAULTS)}"
        )
    out = {**TOKENIZER_DEFAULTS, **dict(cfg)}
    if int(out["min_frequency"]) < 1:
        raise ForgebenchError(f"{key}.min_frequency: must be >= 1, got {out['min_frequency']}")
    return out


def _reload_logit_diff(model: Any, model_dir: Path, vocab: int) -> float:
    """Largest logit difference between the trained model and its saved copy loaded offline
    with AutoModelForCausalLM: 0 means what was saved is what was trained."""
    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    loaded.eval()
    ids = torch.arange(min(vocab, 64)).unsqueeze(0)
    with torch.no_grad():
        return float((model(input_ids=ids).logits - loaded(input_ids=ids).logits).abs().max())


def build_cognate(
    name: str,
    spec: Mapping[str, Any],
    *,
    datasets_dir: Path,
    out_dir: Path,
    seed: int,
    rec: Recorder,
) -> None:
    """Build, train and save model ``name`` to ``out_dir``, appending its rows to ``rec``."""
    import torch

    t_start = time.perf_counter()
    quiet_progress()
    arch = Architecture.from_config(spec.get("architecture") or {}, f"models.{name}.architecture")
    settings = TrainingSettings.from_config(spec.get("training") or {}, f"models.{name}.training")
    tok_cfg = _tokenizer_settings(spec.get("tokenizer") or {}, f"models.{name}.tokenizer")
    # The corpus split and the tokenizer follow the run's seed; init_seed varies only the
    # initial weights and the training order, so seeds of one run share a tokenizer and
    # can be merged (EvoMerge).
    init_seed = int(spec.get("init_seed", seed))
    params = {
        "source": "build",
        "seed": int(seed),
        "init_seed": init_seed,
        "architecture": arch.as_dict(),
        "training": settings.as_dict(),
        "tokenizer": tok_cfg,
        "threads": torch.get_num_threads(),
        "train_sources": list(TRAIN_SOURCES),
    }

    def add(metric: str, unit: str, higher: bool, value: float, **kw: Any) -> None:
        rec.add(name, params, metric, unit, higher, value, **kw)

    corpus = load_corpus(datasets_dir, heldout_fraction=settings.heldout_fraction, seed=seed)
    log.info(
        "model %s: %d training and %d held-out documents (%s), %.1f MB of training text",
        name,
        len(corpus.train),
        len(corpus.heldout),
        ", ".join(f"{k} {v}" for k, v in corpus.sources.items()),
        corpus.train_chars / 1e6,
    )
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(
        corpus.train,
        vocab_size=arch.vocab_size,
        model_max_length=arch.max_positions,
        min_frequency=int(tok_cfg["min_frequency"]),
    )
    add("tokenizer_train_time", "s", False, time.perf_counter() - t0)
    vocab = len(tokenizer)
    add("tokenizer_vocab_size", "count", True, float(vocab))
    log.info("model %s: tokenizer trained, %d tokens (configured %d)", name, vocab, arch.vocab_size)
    eos_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    model = build_model(
        arch, init_seed, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id
    )
    n_params = count_parameters(model)
    if n_params != arch.param_count():
        raise RuntimeError(f"built {n_params} parameters, formula says {arch.param_count()}")
    add("param_count", "count", False, float(n_params))
    add("param_count_rel_diff", "ratio", False, (n_params - TARGET_PARAMS) / TARGET_PARAMS)
    add("parameter_bytes", "bytes", False, float(parameter_bytes(model)))

    train_ids = pack(tokenizer, corpus.train, eos_id)
    heldout_ids = pack(tokenizer, corpus.heldout, eos_id)
    add("corpus_train_tokens", "count", True, float(train_ids.numel()))
    add("corpus_heldout_tokens", "count", True, float(heldout_ids.numel()))
    add("corpus_train_documents", "count", True, float(len(corpus.train)))
    add("corpus_heldout_documents", "count", True, float(len(corpus.heldout)))

    result = train(model, train_ids, heldout_ids, settings, seed=init_seed, label=f"model {name}")
    uniform = math.log(vocab)
    add("uniform_nll", "nats", False, uniform)
    add("heldout_nll_before", "nats", False, result.heldout_nll_before)
    add("heldout_ppl_before", "ppl", False, math.exp(result.heldout_nll_before))
    finite = math.isfinite(result.heldout_nll_after)
    status = "ok" if finite else "error:NonFiniteLoss"
    after = result.heldout_nll_after if finite else math.nan
    add("heldout_nll_after", "nats", False, after, status=status)
    add("heldout_ppl_after", "ppl", False, math.exp(after) if finite else math.nan, status=status)
    add("heldout_tokens_scored", "count", True, float(result.heldout_tokens))
    learned = finite and after < uniform
    add("learned_below_uniform", "bool", True, 1.0 if learned else 0.0, status=status)
    if not learned:
        log.warning(
            "model %s did NOT learn: held-out NLL %.4f is not below ln|V| = %.4f",
            name,
            result.heldout_nll_after,
            uniform,
        )
    add("train_steps", "count", True, float(result.steps))
    add("train_tokens", "count", True, float(result.tokens))
    trained = result.steps > 0
    add(
        "train_tokens_per_s",
        "tokens/s",
        True,
        result.tokens_per_s if trained else math.nan,
        status="ok" if trained else "skipped",
    )
    add("train_wall", "s", False, result.wall_s)
    for i, loss in enumerate(result.losses):
        ok = math.isfinite(loss)
        add(
            "train_loss",
            "nats",
            False,
            loss if ok else math.nan,
            sample=i,
            status="ok" if ok else "error:NonFiniteLoss",
        )
    final_ok = math.isfinite(result.final_loss)
    add(
        "final_loss",
        "nats",
        False,
        result.final_loss if final_ok else math.nan,
        status="ok" if final_ok else ("skipped" if not result.losses else "error:NonFiniteLoss"),
    )

    with staged_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        diff = _reload_logit_diff(model, tmp, vocab)
        if diff > 1e-4:
            raise RuntimeError(f"saved model differs from the trained one (max logit diff {diff})")
        write_manifest(
            tmp,
            {
                "name": name,
                "source": "build",
                "seed": int(seed),
                "architecture": arch.as_dict(),
                "param_count": n_params,
                "target_params": TARGET_PARAMS,
                "tokenizer": {"vocab_size": vocab, "eos_token": EOS_TOKEN, **tok_cfg},
                "training": {
                    **settings.as_dict(),
                    "steps": result.steps,
                    "tokens": result.tokens,
                    "stopped_by": result.stopped_by,
                    "heldout_nll_before": result.heldout_nll_before,
                    "heldout_nll_after": result.heldout_nll_after,
                    "uniform_nll": uniform,
                    "train_sources": {k: f"{k}/train.parquet" for k in corpus.sources},
                },
            },
        )
    add("reload_max_abs_logit_diff", "logit", False, diff)
    add("weights_file_bytes", "bytes", False, float((out_dir / "model.safetensors").stat().st_size))
    add("build_wall", "s", False, time.perf_counter() - t_start)
    log.info("model %s: saved to %s (%.0f s in all)", name, out_dir, time.perf_counter() - t_start)
