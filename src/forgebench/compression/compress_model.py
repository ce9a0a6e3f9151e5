"""Compress an HF causal-LM directory with one method, decompress it, and measure everything.

``compress_model`` is the entry the workflow calls once per (model, method): it writes the
artifact (forgebench.compression.artifact) whose bytes every ratio comes from, decodes it
back into a dense float32 model saved in HF format (so the evaluation stage treats it as
any other model), and returns measurement rows: sizes, bits per weight, ratios,
reconstruction errors, perplexity before and after on held-out text, compress and
decompress wall time and peak RSS (forgebench.sampler), and generation tokens/s of the
original and the decompressed model. The decompressed model is dense: no packed-weight
kernel runs, so tokens/s says nothing about inference on packed weights (params:
``inference: dense``).
"""

from __future__ import annotations

import logging
import math
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from forgebench.compression import baselines, bitnet, metrics, seedlm, vptq
from forgebench.compression.artifact import (
    Artifact,
    ArtifactError,
    TensorRecord,
    read_artifact,
    write_artifact,
)
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow
from forgebench.sampler import ResourceSampler

BENCHMARK_VERSION = 1
SUITE = "compression"
NAME = "weights"
WEIGHTS_FILE = "model.safetensors"

log = logging.getLogger(__name__)

Encoder = Callable[[str, torch.Tensor, Mapping[str, Any]], TensorRecord]


def _seedlm_bits(cfg: Mapping[str, Any], shape: tuple[int, ...]) -> float:
    return seedlm.theoretical_bits(cfg, shape)


# method -> (encoder, theoretical bits of one tensor)
METHODS: dict[str, tuple[Encoder, Callable[[Mapping[str, Any], tuple[int, ...]], float]]] = {
    "fp16": (baselines.encode_fp16, lambda cfg, shape: baselines.theoretical_bits("fp16", shape)),
    "int8": (baselines.encode_int8, lambda cfg, shape: baselines.theoretical_bits("int8", shape)),
    "bitnet": (bitnet.encode, bitnet.theoretical_bits),
    "seedlm": (seedlm.encode, _seedlm_bits),
    "vptq": (vptq.encode, vptq.theoretical_bits),
}
KEPT_DTYPES = ("float16", "float32")


def decode_record(rec: TensorRecord) -> torch.Tensor:
    """Any record of any method back to a float32 tensor."""
    if rec.encoding.startswith("raw_") or rec.encoding == "int8_rowwise":
        return baselines.decode(rec)
    if rec.encoding.startswith("bitnet_"):
        return bitnet.decode(rec)
    if rec.encoding == "seedlm":
        return seedlm.decode(rec)
    if rec.encoding == "vptq":
        return vptq.decode(rec)
    raise ArtifactError(f"tensor {rec.name}: unknown encoding {rec.encoding!r}")


def method_params(method_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The method's config as recorded, with what the numbers mean spelled out."""
    method = str(method_cfg.get("method", ""))
    params = {k: v for k, v in method_cfg.items() if k not in ("enabled", "name")}
    params["inference"] = "dense"  # decompressed to float32; no packed-weight kernels
    if method == "bitnet":
        params["post_training"] = True  # absmean ternarisation of trained weights, no QAT
    if method == "seedlm":
        cfg = seedlm.SeedLMConfig.from_mapping(method_cfg, "compression.methods.seedlm")
        params.update(cfg.as_params())
        params["bits_per_weight_nominal"] = cfg.bits_per_weight
        params["seed_space"] = cfg.n_seeds
        params["layers"] = "all quantised layers"
    if method == "vptq":
        params.update(vptq.method_params(method_cfg))
    return params


def compress_state_dict(
    state: Mapping[str, torch.Tensor], method_cfg: Mapping[str, Any]
) -> tuple[Artifact, float]:
    """The artifact of a state dict and the configuration's theoretical bits of its
    quantised layers (overhead such as scales included, headers not)."""
    method = str(method_cfg.get("method", ""))
    if method not in METHODS:
        raise ForgebenchError(
            f"compression method {method!r} is not one of {sorted(METHODS)} "
            "(config key compression.methods.<name>.method)"
        )
    kept_dtype = str(method_cfg.get("high_precision_dtype", "float16"))
    if kept_dtype not in KEPT_DTYPES:
        raise ForgebenchError(
            f"compression.methods.{method}.high_precision_dtype: {kept_dtype!r} is not one "
            f"of {KEPT_DTYPES}"
        )
    encoder, theory = METHODS[method]
    records: list[TensorRecord] = []
    theoretical = 0.0
    for name, tensor in state.items():
        if metrics.is_quantised(name, tensor):
            t0 = time.perf_counter()
            records.append(encoder(name, tensor, method_cfg))
            theoretical += theory(method_cfg, tuple(tensor.shape))
            log.debug(
                "%s %s %s in %.2f s", method, name, list(tensor.shape), time.perf_counter() - t0
            )
        else:
            records.append(baselines.encode_raw(name, tensor, kept_dtype, kept=True))
    params = {k: v for k, v in method_cfg.items() if k not in ("enabled",)}
    return Artifact(method, params, records), theoretical


def decompress_artifact(path: str | Path) -> dict[str, torch.Tensor]:
    """Read (verifying digest and lengths) and decode every tensor of an artifact."""
    art, _ = read_artifact(path)
    out: dict[str, torch.Tensor] = {}
    for rec in art.tensors:
        t = decode_record(rec)
        out[rec.name] = t
    return out


def load_state_dict(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = model_dir / WEIGHTS_FILE
    if not path.is_file():
        raise ForgebenchError(
            f"model directory {model_dir}: no {WEIGHTS_FILE} (a single-file HF safetensors "
            "checkpoint is expected; see forgebench.models)"
        )
    return load_file(str(path))


def save_model_dir(state: Mapping[str, torch.Tensor], src_dir: Path, out_dir: Path) -> None:
    """Write the dense model as an HF directory: the source's config and tokenizer files
    plus the decoded weights. Built beside the target and renamed, so no half directory."""
    from safetensors.torch import save_file

    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in src_dir.iterdir():
        if f.is_file() and f.name != WEIGHTS_FILE and not f.name.endswith(".bin"):
            shutil.copy2(f, tmp / f.name)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(tmp / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def _load_lm(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    return model, tok


def heldout_ids(tok: Any, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    """The held-out texts joined by blank lines, tokenised, cut at ``max_tokens``."""
    ids = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


@torch.no_grad()
def perplexity(model: Any, ids: torch.Tensor, context: int) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of ``context`` tokens."""
    total_nll, total_tokens = 0.0, 0
    for i in range(0, ids.numel() - 1, context):
        window = ids[i : i + context + 1]
        if window.numel() < 2:
            break
        logits = model(window[:-1].unsqueeze(0)).logits[0]
        nll = torch.nn.functional.cross_entropy(logits.float(), window[1:], reduction="sum")
        total_nll += float(nll)
        total_tokens += window.numel() - 1
    if total_tokens == 0:
        raise ForgebenchError("held-out text gives no tokens to score; supply longer texts")
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def tokens_per_s(
    model: Any, prompt: torch.Tensor, new_tokens: int, repetitions: int
) -> list[float]:
    """Greedy generation of exactly ``new_tokens`` (after one unkept warm-up), per repetition."""
    inputs = prompt.unsqueeze(0)
    kwargs = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "pad_token_id": 0,
    }
    model.generate(inputs, **kwargs)
    out = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        gen = model.generate(inputs, **kwargs)
        dt = time.perf_counter() - t0
        out.append((gen.shape[1] - inputs.shape[1]) / dt)
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, peak RSS bytes of this process during the call)."""
    with ResourceSampler(interval_s=0.05) as sampler:
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
    peak = sampler.summary().get("peak_rss_bytes")
    return result, wall, float(peak) if peak is not None else math.nan


_CORE_METRICS = (
    ("artifact_bytes", "bytes", False),
    ("bits_per_weight", "bits/weight", False),
    ("ratio_vs_fp32_quantised", "ratio", True),
    ("ratio_vs_fp32_whole", "ratio", True),
    ("relative_error", "ratio", False),
    ("perplexity", "perplexity", False),
    ("compress_time", "s", False),
)
_UNITS = {
    "artifact_bytes": ("bytes", False),
    "metadata_bytes": ("bytes", False),
    "quantised_payload_bytes": ("bytes", False),
    "kept_payload_bytes": ("bytes", False),
    "quantised_weights": ("count", True),
    "total_weights": ("count", True),
    "bits_per_weight": ("bits/weight", False),
    "bits_per_weight_theoretical": ("bits/weight", False),
    "bits_per_weight_excess": ("ratio", False),
    "bits_per_weight_whole": ("bits/weight", False),
    "ratio_vs_fp32_quantised": ("ratio", True),
    "ratio_vs_fp16_quantised": ("ratio", True),
    "ratio_vs_fp32_whole": ("ratio", True),
    "ratio_vs_fp16_whole": ("ratio", True),
}


def compress_model(
    model_dir: str | Path,
    method_cfg: Mapping[str, Any],
    *,
    out_artifact: str | Path,
    out_model_dir: str | Path,
    heldout_texts: Sequence[str],
    seed: int,
    calibration_texts: Sequence[str] = (),
    perplexity_context: int = 256,
    max_eval_tokens: int = 4096,
    throughput_prompt_tokens: int = 16,
    throughput_new_tokens: int = 32,
    throughput_repetitions: int = 3,
) -> pd.DataFrame:
    """Compress, decompress and measure one model with one method; rows as in the module doc.

    ``method_cfg``: ``method`` (fp16, int8, bitnet, seedlm, vptq), optional ``name`` (the row's
    case, default the method), ``high_precision_dtype`` of kept tensors (float16) and the
    method's own keys. A failure of the method yields failed rows (status ``error:...``);
    a config mistake raises ForgebenchError.
    """
    model_dir, out_artifact = Path(model_dir), Path(out_artifact)
    out_model_dir = Path(out_model_dir)
    torch.manual_seed(seed)
    method = str(method_cfg.get("method", ""))
    case = str(method_cfg.get("name", method))
    params = method_params(method_cfg)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    started = utcnow()

    def add(metric: str, unit: str, hib: bool, value: float, **kw: Any) -> None:
        rec.add(case, params, metric, unit, hib, value, started_at=started, **kw)

    state = load_state_dict(model_dir)
    if method not in METHODS:
        compress_state_dict(state, method_cfg)  # raises the config error
    log.info("compression %s: %d tensors from %s", case, len(state), model_dir)
    try:
        (artifact, theoretical), t_comp, rss_comp = _timed(
            # VPTQ's calibration (Hessian diagonals) counts in its compression time.
            lambda: compress_state_dict(
                state, vptq.prepare(method_cfg, model_dir, calibration_texts)
            )
        )
        t0 = time.perf_counter()
        sizes = write_artifact(out_artifact, artifact)
        t_comp += time.perf_counter() - t0
        decoded, t_dec, rss_dec = _timed(lambda: decompress_artifact(out_artifact))
        save_model_dir(decoded, model_dir, out_model_dir)
    except ForgebenchError:
        raise
    except Exception as exc:
        status = status_for(exc)
        log.warning("compression %s failed: %r", case, exc)
        for metric, unit, hib in _CORE_METRICS:
            add(metric, unit, hib, math.nan, status=status)
        return rec.frame()

    quantised = [r.name for r in artifact.tensors if not r.kept]
    kept = [r.name for r in artifact.tensors if r.kept]
    params["kept_tensors"] = kept
    params["kept_dtype"] = str(method_cfg.get("high_precision_dtype", "float16"))
    n_q = sum(state[n].numel() for n in quantised)
    n_all = sum(t.numel() for t in state.values())
    for metric, value in metrics.size_metrics(
        sizes, quantised_weights=n_q, total_weights=n_all, theoretical_bits=theoretical
    ).items():
        unit, hib = _UNITS[metric]
        add(metric, unit, hib, value)
    add("kept_tensors", "count", False, float(len(kept)))
    per_layer, overall = metrics.relative_errors(state, decoded, quantised)
    add("relative_error", "ratio", False, overall)
    for i, (name, err) in enumerate(per_layer.items()):
        add(f"relative_error.{name}", "ratio", False, err, sample=i)
    add("compress_time", "s", False, t_comp)
    add("decompress_time", "s", False, t_dec)
    add("compress_peak_rss", "bytes", False, rss_comp)
    add("decompress_peak_rss", "bytes", False, rss_dec)
    log.info(
        "compression %s: %.3f bits/weight, %.2fx vs fp32 (quantised layers), err %.4f",
        case,
        (8 * sizes.quantised_payload / n_q) if n_q else math.nan,
        (4 * n_q / sizes.quantised_payload) if sizes.quantised_payload else math.nan,
        overall,
    )

    _quality_rows(
        add,
        model_dir,
        out_model_dir,
        heldout_texts,
        perplexity_context,
        max_eval_tokens,
        throughput_prompt_tokens,
        throughput_new_tokens,
        throughput_repetitions,
    )
    return rec.frame()


def _quality_rows(
    add: Callable[..., None],
    model_dir: Path,
    out_model_dir: Path,
    texts: Sequence[str],
    context: int,
    max_tokens: int,
    prompt_tokens: int,
    new_tokens: int,
    repetitions: int,
) -> None:
    """Perplexity and tokens/s of the original and the decompressed (dense) model."""
    ppl: dict[str, float] = {}
    for which, path in (("original", model_dir), ("decompressed", out_model_dir)):
        suffix = "_original" if which == "original" else ""
        try:
            model, tok = _load_lm(path)
            ids = heldout_ids(tok, texts, max_tokens)
            ppl[which] = perplexity(model, ids, context)
            add(f"perplexity{suffix}", "perplexity", False, ppl[which])
            rates = tokens_per_s(model, ids[:prompt_tokens], new_tokens, repetitions)
            for r, rate in enumerate(rates):
                add(f"tokens_per_s{suffix}", "tokens/s", True, rate, repetition=r)
            log.info(
                "%s: perplexity %.3f, %.1f tokens/s (median, dense)",
                which,
                ppl[which],
                statistics.median(rates),
            )
        except ForgebenchError:
            raise
        except Exception as exc:
            log.warning("%s model evaluation failed: %r", which, exc)
            add(f"perplexity{suffix}", "perplexity", False, math.nan, status=status_for(exc))
            add(f"tokens_per_s{suffix}", "tokens/s", True, math.nan, status=status_for(exc))
    if len(ppl) == 2:
        add("perplexity_delta", "perplexity", False, ppl["decompressed"] - ppl["original"])
