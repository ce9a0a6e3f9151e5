"""Cognate validation: the configured architecture built and measured, nothing estimated.

Parameter count of each built model against the original's 25,083,528; three seeds give
identical architectures (config and every shape hashed) and different weights (max abs
difference); memory (parameter bytes, safetensors bytes, RSS growth of a fresh process
loading the saved model); inference tokens/s (greedy generation, checked identical across
repetitions, and forward throughput); training tokens/s (timed AdamW steps).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.models.architecture import (
    TARGET_PARAMS,
    Architecture,
    build_model,
    count_parameters,
    max_abs_weight_diff,
    parameter_bytes,
    shape_signature,
)
from forgebench.models.files import quiet_progress
from forgebench.record import Recorder, status_for

BENCHMARK_VERSION = 1
SUITE = "models"
NAME = "cognate_validation"
CASE = "cognate"
SEEDS_CASE = "seeds"

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "architecture": {},
    "target_params": TARGET_PARAMS,
    "seeds": 3,
    "repetitions": 5,
    "warmup": 1,
    "prompt_tokens": 32,
    "new_tokens": 32,
    "forward_batch_size": 4,
    "forward_seq_len": 256,
    "train_batch_size": 8,
    "train_seq_len": 128,
    "train_steps": 2,
    "load_repetitions": 3,
    "timeout_s": 120.0,
    "threads": None,
}

# Run in a fresh interpreter: RSS before and after loading the saved model offline.
_LOAD_SCRIPT = r"""
import gc, json, sys, time
import psutil, torch
from transformers import AutoConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
torch.set_num_threads(int(sys.argv[2]))
# Config and model class imported first, so the delta is the load, not the code imports.
config = AutoConfig.from_pretrained(sys.argv[1], local_files_only=True)
cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
t0 = time.perf_counter()
model = cls.from_pretrained(sys.argv[1], local_files_only=True)
elapsed = time.perf_counter() - t0
gc.collect()
after = proc.memory_info().rss
# Weights may still be file-backed pages not yet read (mmap): touch every one, measure again.
with torch.no_grad():
    checksum = sum(float(p.sum()) for p in model.parameters())
n = sum(p.numel() for p in model.parameters())
touched = proc.memory_info().rss
print(json.dumps({"rss_before": before, "rss_after": after, "rss_touched": touched,
                  "load_s": elapsed, "params": n}))
"""


def _settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from forgebench.errors import ForgebenchError

    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ForgebenchError(
            f"suites.models.benchmarks.{NAME}: unknown keys {unknown}; allowed {sorted(DEFAULTS)}"
        )
    s = {**DEFAULTS, **dict(cfg)}
    key = f"suites.models.benchmarks.{NAME}"
    for name in ("seeds",):
        if int(s[name]) < 2:
            raise ForgebenchError(f"{key}.{name}: must be >= 2 to compare seeds, got {s[name]}")
    for name in ("repetitions", "prompt_tokens", "new_tokens", "forward_batch_size"):
        if int(s[name]) < 1:
            raise ForgebenchError(f"{key}.{name}: must be >= 1, got {s[name]}")
    for name in ("train_batch_size", "train_steps", "load_repetitions", "target_params"):
        if int(s[name]) < 1:
            raise ForgebenchError(f"{key}.{name}: must be >= 1, got {s[name]}")
    for name in ("forward_seq_len", "train_seq_len"):
        if int(s[name]) < 2:
            raise ForgebenchError(f"{key}.{name}: must be >= 2, got {s[name]}")
    if int(s["warmup"]) < 0:
        raise ForgebenchError(f"{key}.warmup: must be >= 0, got {s['warmup']}")
    if s["threads"] is not None and int(s["threads"]) < 1:
        raise ForgebenchError(f"{key}.threads: must be >= 1 or null, got {s['threads']}")
    s["arch"] = Architecture.from_config(s["architecture"] or {}, f"{key}.architecture")
    longest = max(s["prompt_tokens"] + s["new_tokens"], s["forward_seq_len"], s["train_seq_len"])
    if longest > s["arch"].max_positions:
        raise ForgebenchError(
            f"{key}: sequences of {longest} tokens exceed architecture.max_positions "
            f"({s['arch'].max_positions})"
        )
    return s


def _guarded(
    rec: Recorder, case: str, params: Mapping[str, Any], metrics: list[tuple[str, str, bool]]
) -> Callable[[Callable[[], None], int], None]:
    """Run a measurement; if it raises, record each of ``metrics`` as failed rows."""

    def run(fn: Callable[[], None], repetition: int = 0) -> None:
        try:
            fn()
        except Exception as exc:  # every failure becomes a row
            log.warning("%s %s failed: %r", NAME, [m[0] for m in metrics], exc)
            for metric, unit, higher in metrics:
                rec.add(
                    case,
                    params,
                    metric,
                    unit,
                    higher,
                    float("nan"),
                    repetition=repetition,
                    status=status_for(exc),
                )

    return run


def _random_ids(vocab: int, shape: tuple[int, ...], seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, shape, generator=gen)


def _measure_params(rec: Recorder, s: dict[str, Any], models: dict[int, Any]) -> None:
    arch: Architecture = s["arch"]
    formula = arch.param_count()
    target = int(s["target_params"])
    for rep, (seed, model) in enumerate(models.items()):
        params = {
            "architecture": arch.as_dict(),
            "seed": seed,
            "target_params": target,
            "formula_params": formula,
        }
        n = count_parameters(model)
        status = "ok" if n == formula else "mismatch"
        rec.add(
            CASE, params, "param_count", "count", False, float(n), repetition=rep, status=status
        )
        rec.add(
            CASE,
            params,
            "param_count_rel_diff",
            "ratio",
            False,
            (n - target) / target,
            repetition=rep,
        )
        rec.add(
            CASE,
            params,
            "param_count_abs_rel_diff",
            "ratio",
            False,
            abs(n - target) / target,
            repetition=rep,
        )
        rec.add(
            CASE,
            params,
            "parameter_bytes",
            "bytes",
            False,
            float(parameter_bytes(model)),
            repetition=rep,
        )
    log.info(
        "%s: %d parameters per model (formula %d, target %d, %+.4f%%)",
        NAME,
        count_parameters(next(iter(models.values()))),
        formula,
        target,
        100 * (formula - target) / target,
    )


def _measure_seeds(rec: Recorder, models: dict[int, Any]) -> None:
    signatures = {seed: shape_signature(m) for seed, m in models.items()}
    for i, (a, b) in enumerate(itertools.combinations(models, 2)):
        params = {"seeds": [a, b]}
        same = signatures[a] == signatures[b]
        diff = max_abs_weight_diff(models[a], models[b]) if same else float("nan")
        rec.add(
            SEEDS_CASE,
            params,
            "architecture_identical",
            "bool",
            True,
            1.0 if same else 0.0,
            sample=i,
        )
        rec.add(
            SEEDS_CASE,
            params,
            "weights_max_abs_diff",
            "abs",
            True,
            diff,
            sample=i,
            status="ok" if same else "mismatch",
        )
        log.info(
            "%s: seeds %d vs %d: architecture %s, weights max |diff| %.4g",
            NAME,
            a,
            b,
            "identical" if same else "DIFFERENT",
            diff,
        )


def _measure_load(rec: Recorder, s: dict[str, Any], model: Any, threads: int) -> None:
    params = {"load_repetitions": s["load_repetitions"], "threads": threads, "dtype": "float32"}
    tmp = Path(tempfile.mkdtemp(prefix="fb-cognate-"))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        size = sum(f.stat().st_size for f in tmp.glob("*.safetensors"))
        rec.add(CASE, params, "weights_file_bytes", "bytes", False, float(size))
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TRANSFORMERS_VERBOSITY": "error",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        metrics = [
            ("load_rss_delta", "bytes", False),
            ("resident_rss_delta", "bytes", False),
            ("load_time", "s", False),
        ]
        for rep in range(int(s["load_repetitions"])):

            def one(rep: int = rep) -> None:
                try:
                    proc = subprocess.run(
                        [sys.executable, "-c", _LOAD_SCRIPT, str(tmp), str(threads)],
                        capture_output=True,
                        text=True,
                        timeout=float(s["timeout_s"]),
                        env=env,
                        check=False,
                    )
                except subprocess.TimeoutExpired as exc:
                    raise TimeoutError(f"loading took over {s['timeout_s']} s") from exc
                if proc.returncode != 0:
                    raise RuntimeError(
                        f"load process exited {proc.returncode}: {proc.stderr.strip()[-500:]}"
                    )
                doc = json.loads(proc.stdout.strip().splitlines()[-1])
                status = "ok" if doc["params"] == count_parameters(model) else "mismatch"
                delta = float(doc["rss_after"] - doc["rss_before"])
                rec.add(
                    CASE,
                    params,
                    "load_rss_delta",
                    "bytes",
                    False,
                    delta,
                    repetition=rep,
                    status=status,
                )
                rec.add(
                    CASE,
                    params,
                    "resident_rss_delta",
                    "bytes",
                    False,
                    float(doc["rss_touched"] - doc["rss_before"]),
                    repetition=rep,
                    status=status,
                )
                rec.add(
                    CASE,
                    params,
                    "load_time",
                    "s",
                    False,
                    doc["load_s"],
                    repetition=rep,
                    status=status,
                )
                log.info(
                    "%s: load %d: RSS +%.1f MB in %.2f s", NAME, rep, delta / 1e6, doc["load_s"]
                )

            _guarded(rec, CASE, params, metrics)(one, rep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure_inference(rec: Recorder, s: dict[str, Any], model: Any, seed: int) -> None:
    import torch

    vocab = s["arch"].vocab_size
    total = int(s["warmup"]) + int(s["repetitions"])
    gen_params = {
        "prompt_tokens": s["prompt_tokens"],
        "new_tokens": s["new_tokens"],
        "batch_size": 1,
        "decoding": "greedy",
    }
    prompt = _random_ids(vocab, (1, int(s["prompt_tokens"])), seed)
    reference: list[int] | None = None
    for i in range(total):
        warm = i < int(s["warmup"])
        rep = i if warm else i - int(s["warmup"])

        def one(warm: bool = warm, rep: int = rep) -> None:
            nonlocal reference
            n_new = int(s["new_tokens"])
            with torch.no_grad():
                t0 = time.perf_counter()
                out = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=n_new,
                    min_new_tokens=n_new,
                    do_sample=False,
                    pad_token_id=0,
                    eos_token_id=0,
                )
                elapsed = time.perf_counter() - t0
            tokens = out[0, prompt.shape[1] :].tolist()
            if reference is None:
                reference = tokens
            same = len(tokens) == n_new and tokens == reference
            rec.add(
                CASE,
                gen_params,
                "generate_tokens_per_s",
                "tokens/s",
                True,
                len(tokens) / elapsed,
                repetition=rep,
                warmup=warm,
                status="ok" if same else "mismatch",
            )

        _guarded(rec, CASE, gen_params, [("generate_tokens_per_s", "tokens/s", True)])(one, rep)
    fwd_params = {"batch_size": s["forward_batch_size"], "seq_len": s["forward_seq_len"]}
    batch = _random_ids(vocab, (int(s["forward_batch_size"]), int(s["forward_seq_len"])), seed + 1)
    for i in range(total):
        warm = i < int(s["warmup"])
        rep = i if warm else i - int(s["warmup"])

        def fwd(warm: bool = warm, rep: int = rep) -> None:
            with torch.no_grad():
                t0 = time.perf_counter()
                model(input_ids=batch)
                elapsed = time.perf_counter() - t0
            rec.add(
                CASE,
                fwd_params,
                "forward_tokens_per_s",
                "tokens/s",
                True,
                batch.numel() / elapsed,
                repetition=rep,
                warmup=warm,
            )

        _guarded(rec, CASE, fwd_params, [("forward_tokens_per_s", "tokens/s", True)])(fwd, rep)
    log.info(
        "%s: inference measured (%d repetitions + %d warm-up)", NAME, s["repetitions"], s["warmup"]
    )


def _measure_training(rec: Recorder, s: dict[str, Any], model: Any, seed: int) -> None:
    import torch

    params = {
        "batch_size": s["train_batch_size"],
        "seq_len": s["train_seq_len"],
        "steps": s["train_steps"],
        "optimizer": "AdamW",
        "lr": 1e-3,
    }
    vocab = s["arch"].vocab_size
    batch = _random_ids(vocab, (int(s["train_batch_size"]), int(s["train_seq_len"])), seed + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    total = int(s["warmup"]) + int(s["repetitions"])
    for i in range(total):
        warm = i < int(s["warmup"])
        rep = i if warm else i - int(s["warmup"])

        def steps(warm: bool = warm, rep: int = rep) -> None:
            t0 = time.perf_counter()
            for _ in range(int(s["train_steps"])):
                loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - t0
            ok = bool(torch.isfinite(loss))
            tokens = batch.numel() * int(s["train_steps"])
            rec.add(
                CASE,
                params,
                "train_tokens_per_s",
                "tokens/s",
                True,
                tokens / elapsed if ok else float("nan"),
                repetition=rep,
                warmup=warm,
                status="ok" if ok else "error:NonFiniteLoss",
            )
            log.info(
                "%s: training repetition %d%s: %.0f tokens/s",
                NAME,
                rep,
                " (warm-up)" if warm else "",
                tokens / elapsed,
            )

        _guarded(rec, CASE, params, [("train_tokens_per_s", "tokens/s", True)])(steps, rep)
    model.eval()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Build ``seeds`` models of the configured architecture and measure them."""
    import torch

    s = _settings(cfg)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    quiet_progress()
    previous = torch.get_num_threads()
    if s["threads"] is not None:
        torch.set_num_threads(int(s["threads"]))
    threads = torch.get_num_threads()
    try:
        seeds = [int(seed) + i for i in range(int(s["seeds"]))]
        models = {}
        for sd in seeds:
            t0 = time.perf_counter()
            models[sd] = build_model(s["arch"], sd, bos_token_id=0, eos_token_id=0, pad_token_id=0)
            rec.add(
                CASE,
                {"seed": sd},
                "build_time",
                "s",
                False,
                time.perf_counter() - t0,
                repetition=len(models) - 1,
            )
        _measure_params(rec, s, models)
        _measure_seeds(rec, models)
        first = models[seeds[0]]
        _measure_load(rec, s, first, threads)
        _measure_inference(rec, s, first, seed)
        for sd in seeds[1:-1]:
            del models[sd]
        _measure_training(rec, s, models[seeds[-1]], seed)
    finally:
        torch.set_num_threads(previous)
    return rec.frame()
