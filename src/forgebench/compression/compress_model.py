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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from forgebench.compression import baselines, bitnet, metrics, perplexity, seedlm, vptq
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
#: forgebench.models' record of where a model came from (a GGUF file's types and bytes).
SOURCE_FILE = "source.json"
#: The case of the original model's rows (its held-out perplexity, scored once).
ORIGINAL = "original"

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

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    return model, tok


def heldout_ids(tok: Any, texts: Sequence[str], max_tokens: int) -> torch.Tensor:
    """The held-out texts joined by blank lines, tokenised, cut at ``max_tokens``."""
    ids = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


@torch.no_grad()
def window_perplexity(model: Any, ids: torch.Tensor, context: int) -> float:
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


def gguf_origin(model_dir: Path) -> dict[str, Any] | None:
    """The GGUF file a model was converted from (forgebench.models: ``source.json``), or
    None. Its weights were quantised before we saw them, so compression results say so."""
    import json

    path = Path(model_dir) / SOURCE_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    g = doc.get("gguf") if isinstance(doc, dict) else None
    if not isinstance(g, dict) or "bytes" not in g:
        return None
    return {
        "gguf_file": g.get("file"),
        "gguf_bytes": int(g["bytes"]),
        "gguf_tensor_type_counts": g.get("tensor_type_counts", {}),
        "weights_origin": (
            "GGUF weights, already quantised (types per tensor in gguf_tensor_type_counts), "
            "dequantised to fp32: compressed variants are compared with the dequantised "
            "model; ratio_vs_gguf_file counts the GGUF file's bytes"
        ),
    }


@dataclass(frozen=True)
class QualitySettings:
    """How the held-out perplexity is measured and judged (suites.compression.evaluation)."""

    perplexity_context: int = 512
    perplexity_stride: int = 256
    perplexity_tokens: int = 4096
    perplexity_batch: int = 8
    #: "no change" when the paired interval of the perplexity ratio lies inside ±this.
    perplexity_equivalence: float = 0.01
    confidence: float = 0.95
    throughput_prompt_tokens: int = 16
    throughput_new_tokens: int = 32
    #: 0: no tokens/s rows (dense decompressed model: the figure says nothing of packing).
    throughput_repetitions: int = 0

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> QualitySettings:
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**known)


def score_model(
    model_dir: Path, documents: Sequence[str], q: QualitySettings
) -> tuple[pd.DataFrame, perplexity.PerplexityCard]:
    """Per-document perplexity of the HF model at ``model_dir`` and its card."""
    model, tok = _load_lm(model_dir)
    return perplexity.score(
        model,
        tok,
        documents,
        max_tokens=q.perplexity_tokens,
        context=q.perplexity_context,
        stride=q.perplexity_stride,
        batch=q.perplexity_batch,
    )


def reference_perplexity(
    model_dir: str | Path,
    documents: Sequence[str],
    settings: Mapping[str, Any],
    *,
    out_quality: str | Path,
) -> pd.DataFrame:
    """The original model's per-document perplexity, written once (with its card) for
    every compressed variant to pair with; rows of case ``original``."""
    q = QualitySettings.from_mapping(settings)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    frame, card = score_model(Path(model_dir), documents, q)
    perplexity.write_result(out_quality, frame, card)
    params = {"perplexity_card": card.as_dict(), **(gguf_origin(Path(model_dir)) or {})}
    p0 = perplexity.corpus_perplexity(frame)
    rec.add(ORIGINAL, params, "perplexity", "perplexity", False, p0)
    rec.add(ORIGINAL, params, "perplexity_documents", "docs", True, float(card.documents))
    rec.add(ORIGINAL, params, "perplexity_tokens", "tokens", True, float(card.scored_tokens))
    return rec.frame()


def compress_model(
    model_dir: str | Path,
    method_cfg: Mapping[str, Any],
    *,
    out_artifact: str | Path,
    out_model_dir: str | Path,
    heldout_documents: Sequence[str],
    reference_quality: str | Path,
    out_quality: str | Path,
    seed: int,
    calibration_texts: Sequence[str] = (),
    **quality: Any,
) -> pd.DataFrame:
    """Compress, decompress and measure one model with one method; rows as in the module doc.

    ``method_cfg``: ``method`` (fp16, int8, bitnet, seedlm, vptq), optional ``name`` (the row's
    case, default the method), ``high_precision_dtype`` of kept tensors (float16) and the
    method's own keys. ``reference_quality``: the original's per-document perplexity
    (``reference_perplexity``); the decompressed model's is written to ``out_quality``.
    ``quality``: QualitySettings keys. A failure of the method yields failed rows (status
    ``error:...``); a config mistake raises ForgebenchError.
    """
    model_dir, out_artifact = Path(model_dir), Path(out_artifact)
    out_model_dir = Path(out_model_dir)
    q = QualitySettings.from_mapping(quality)
    torch.manual_seed(seed)
    method = str(method_cfg.get("method", ""))
    case = str(method_cfg.get("name", method))
    params = method_params(method_cfg)
    origin = gguf_origin(model_dir)
    if origin:
        params.update(origin)
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
    if origin:
        add("ratio_vs_gguf_file", "ratio", True, origin["gguf_bytes"] / sizes.total)
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
    state.clear()  # free the fp32 copies before the model is loaded for scoring
    decoded.clear()
    _quality_rows(
        rec, case, params, started, out_model_dir, heldout_documents, q,
        Path(reference_quality), Path(out_quality),
    )  # fmt: skip
    return rec.frame()


def _quality_rows(
    rec: Recorder,
    case: str,
    params: dict[str, Any],
    started: Any,
    out_model_dir: Path,
    documents: Sequence[str],
    q: QualitySettings,
    reference_path: Path,
    out_quality: Path,
) -> None:
    """Per-document perplexity of the decompressed model paired with the original's (same
    card required), and optionally tokens/s of the dense decompressed model."""
    ref, ref_card = perplexity.read_result(reference_path)
    p0 = perplexity.corpus_perplexity(ref)
    base = {**params, "perplexity_card": ref_card.as_dict()}

    def add(
        metric: str, unit: str, hib: bool, value: float, extra: Mapping[str, Any] = {}, **kw: Any
    ) -> None:
        rec.add(case, {**base, **extra}, metric, unit, hib, value, started_at=started, **kw)

    add("perplexity_original", "perplexity", False, p0)
    try:
        model, tok = _load_lm(out_model_dir)
        frame, card = perplexity.score(
            model, tok, documents, max_tokens=q.perplexity_tokens,
            context=q.perplexity_context, stride=q.perplexity_stride, batch=q.perplexity_batch,
        )  # fmt: skip
    except ForgebenchError:
        raise
    except Exception as exc:
        log.warning("decompressed model's perplexity failed: %r", exc)
        for metric in ("perplexity", "perplexity_change"):
            add(metric, "perplexity" if metric == "perplexity" else "ratio", False, math.nan,
                status=status_for(exc))  # fmt: skip
        return
    perplexity.require_same_card(ref_card, card, f"compression {case}")
    perplexity.write_result(out_quality, frame, card)
    p1 = perplexity.corpus_perplexity(frame)
    add("perplexity", "perplexity", False, p1)
    add("perplexity_delta", "perplexity", False, p1 - p0)
    add("perplexity_ratio", "ratio", False, p1 / p0)
    cmp = perplexity.paired_change(
        ref, frame, confidence=q.confidence, threshold=q.perplexity_equivalence
    )
    verdict = {
        "perplexity_verdict": cmp.verdict,
        "perplexity_reason": cmp.reason,
        "perplexity_interval": cmp.method,
        "perplexity_equivalence": q.perplexity_equivalence,
        "confidence": q.confidence,
    }
    # change = typical per-document perplexity ratio - 1 (positive: worse), paired interval
    low, high = cmp.ratio_ci
    # (too few documents for an interval: no value, status "skipped", the reason says why)
    for suffix, value in (
        ("", cmp.ratio - 1.0),
        ("_ci_low", low - 1.0),
        ("_ci_high", high - 1.0),
        ("_p", cmp.p_value),
    ):
        unit = "p" if suffix == "_p" else "ratio"
        status = "ok" if math.isfinite(value) else "skipped"
        add(f"perplexity_change{suffix}", unit, False, value, verdict, status=status)
    add("perplexity_documents", "docs", True, float(card.documents))
    log.info(
        "%s: perplexity %.3f vs %.3f, change %+.2f%% (%.2f%% to %.2f%%): %s",
        case, p1, p0, 100 * (cmp.ratio - 1), 100 * (low - 1), 100 * (high - 1), cmp.verdict,
    )  # fmt: skip
    if q.throughput_repetitions > 0:
        first = perplexity.encode_documents(tok, documents, q.throughput_prompt_tokens)[0][0]
        ids = torch.tensor(first)
        rates = tokens_per_s(
            model, ids[: q.throughput_prompt_tokens], q.throughput_new_tokens,
            q.throughput_repetitions,
        )  # fmt: skip
        for r, rate in enumerate(rates):
            add("tokens_per_s", "tokens/s", True, rate, repetition=r)
        log.info("%.1f tokens/s (median, dense)", statistics.median(rates))
