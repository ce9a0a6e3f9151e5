"""Upper-bound job sizes for model builds and cognate validation, for forgebench.sizing.

Light to import (no torch): Snakemake evaluates these while it plans. Compute is bounded
at 2.5e10 FLOP/s, 4x below the ~1e11 FLOP/s a 25M-parameter Llama trains at on two idle
cores (~960 tokens/s x 6 x 19M non-embedding FLOPs), so loaded machines still fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from forgebench.models.architecture import COGNATE_ARCHITECTURE, Architecture

SLOW_FLOPS = 2.5e10  # FLOP/s, the pessimistic rate for time bounds
FAST_FLOPS = 1e12  # FLOP/s, the optimistic rate for bounds on step counts (rows)
TORCH_MB = 600  # an interpreter with torch and transformers loaded


def _arch(cfg: Mapping[str, Any] | None) -> Architecture:
    return Architecture(**{**COGNATE_ARCHITECTURE, **dict(cfg or {})})


def build_estimate(spec: Mapping[str, Any]) -> tuple[float, float, int]:
    """(upper-bound seconds, upper-bound rows, extra memory MB) of materializing ``spec``."""
    if spec.get("source") == "gguf":
        return _gguf_estimate(spec)
    if spec.get("source") != "build":
        return 1800.0, 10, TORCH_MB  # a hub download or a copy: I/O bound, ten rows
    arch = _arch(spec.get("architecture"))
    t = {
        "time_budget_s": 120.0,
        "max_steps": 100000,
        "batch_size": 8,
        "seq_len": 128,
        "eval_tokens": 16384,
    }
    t.update(spec.get("training") or {})
    n = arch.param_count()
    step_tokens = t["batch_size"] * t["seq_len"]
    step_s = step_tokens * 6 * n / SLOW_FLOPS
    train_s = min(t["time_budget_s"] + step_s, t["max_steps"] * step_s)
    eval_s = 2 * t["eval_tokens"] * 2 * n / SLOW_FLOPS
    text_s = 120  # tokenizer training and packing of ~5 MB of text (~15 s measured)
    seconds = train_s + eval_s + text_s + 60  # + save, reload check, imports
    fast_steps = t["time_budget_s"] / (step_tokens * 6 * n / FAST_FLOPS) + 1
    rows = min(t["max_steps"], fast_steps) + 40
    # weights, gradients, two AdamW moments, activations and the logits of one batch
    logits = step_tokens * arch.vocab_size * 4 * 3
    extra_mb = TORCH_MB + math.ceil((16 * n + logits) / 1e6)
    return seconds, rows, extra_mb


def _gguf_estimate(spec: Mapping[str, Any]) -> tuple[float, float, int]:
    """A GGUF conversion holds the dequantised fp32 weights about three times (the loaded
    model, its state dict copy in the fresh one, the save): 1.67 GB peak RSS measured for
    the 98 MB Q4_1 file of a 135M model (~5.5x the file in fp32). Its time is reading,
    dequantising and writing: 31 CPU-seconds measured for that file, 8.5 min on a machine
    loaded 17 deep, so the bound is generous."""
    from forgebench.errors import ForgebenchError
    from forgebench.models.gguf import gguf_file

    try:
        file_mb = gguf_file(spec, "?").stat().st_size / 1e6
    except ForgebenchError:
        file_mb = 100.0  # the job itself names what is missing
    return 900.0 + 3.0 * file_mb, 12, TORCH_MB + math.ceil(12 * file_mb)


def validation_estimate(cfg: Mapping[str, Any]) -> tuple[float, float, int]:
    """(upper-bound seconds, upper-bound rows, extra memory MB) of cognate_validation."""
    arch = _arch(cfg.get("architecture"))
    n = arch.param_count()
    runs = cfg.get("warmup", 1) + cfg.get("repetitions", 5)
    seeds = cfg.get("seeds", 3)
    new = cfg.get("new_tokens", 32)
    gen_s = runs * ((cfg.get("prompt_tokens", 32) + new) * 2 * n / SLOW_FLOPS + 0.1 * new)
    fwd_s = runs * cfg.get("forward_batch_size", 4) * cfg.get("forward_seq_len", 256) * 2 * n
    train_tokens = cfg.get("train_batch_size", 8) * cfg.get("train_seq_len", 128)
    train_s = runs * cfg.get("train_steps", 2) * train_tokens * 6 * n
    load_s = cfg.get("load_repetitions", 3) * min(cfg.get("timeout_s", 120), 60.0)
    build_s = seeds * (5 + n * 2e-7)
    seconds = gen_s + (fwd_s + train_s) / SLOW_FLOPS + load_s + build_s + 30
    pairs = seeds * (seeds - 1) // 2
    rows = 5 * seeds + 2 * pairs + 2 * cfg.get("load_repetitions", 3) + 3 * runs + 1
    extra_mb = TORCH_MB + math.ceil(4 * n * (seeds + 3) / 1e6)
    return seconds, rows, extra_mb
