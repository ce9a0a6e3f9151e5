"""compression/pipeline: the original system's chained pipeline (BitNet -> SeedLM -> VPTQ ->
lossless codec) as one configurable chain that writes ONE artifact.

Each lossy stage compresses the weights the previous stage decodes to (the stage's
artifact is encoded to bytes and read back, so the next stage sees exactly what a reader
would), so errors accumulate along the chain; only the last lossy stage's artifact is
kept, and the optional lossless codec wraps its bytes (forgebench.compression.codecs.wrap,
length and sha256 checked on the way back). The chain's size is that final file's bytes:
``ratio_vs_fp32_whole`` = original fp32 bytes / final bytes, never a product of per-stage
ratios (stage sizes are rows too, for reading, not multiplied). Decompression reads the
file back (codec, digest, every segment) and must reproduce the last stage's decoded
weights bit for bit (else ``mismatch``).

The first stage recompresses nothing a compression job already wrote: where a job of the
same model has the same effective configuration (``effective_config``: same method, every
default filled in; ``name`` and ``enabled`` aside), the workflow makes that job's artifact
an input (``first_stage_artifact``) and the chain starts from its bytes, decoded; the
header's configuration is checked again here. Otherwise the stage compresses and the rows
say why (``first_stage`` in params). ``compress_time`` covers only what this job ran.

Quality: relative reconstruction error of the quantised layers against the original and
perplexity of the original and the decompressed (dense, float32) model on the model's
held-out text. VPTQ stages are calibrated once on the original model.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from forgebench.atomic import write_bytes_atomic
from forgebench.compression import baselines, codecs, compress_model, metrics, vptq
from forgebench.compression.artifact import Artifact, TensorRecord
from forgebench.compression.artifact import decode as decode_bytes
from forgebench.compression.artifact import encode as encode_artifact
from forgebench.compression.calibration import enough_texts, model_texts
from forgebench.compression.method_config import (  # noqa: F401 (the pipeline's API)
    KEY,
    LOSSY,
    check_method,
    effective_config,
    first_stage_artifact,
    stage_configs,
)
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "compression"
NAME = "pipeline"

log = logging.getLogger(__name__)

Encoder = Callable[[str, torch.Tensor, Mapping[str, Any]], TensorRecord]


def encoder_for(method: str, key: str) -> Encoder:
    """The tensor encoder of a method (C1's table, VPTQ included)."""
    check_method(method, key)
    return compress_model.METHODS[method][0]


def decode_record(rec: TensorRecord) -> torch.Tensor:
    """Any record of any method (VPTQ included) as float32."""
    if rec.encoding == "vptq":
        return vptq.decode(rec)
    return compress_model.decode_record(rec)


def compress_state(
    state: Mapping[str, torch.Tensor], method_cfg: Mapping[str, Any], key: str
) -> Artifact:
    """The artifact of one method over a state dict: quantised layers encoded, the rest
    (embeddings, head, norms) kept in ``high_precision_dtype``."""
    method = str(method_cfg.get("method", ""))
    encode = encoder_for(method, key)
    kept_dtype = str(method_cfg.get("high_precision_dtype", "float16"))
    if kept_dtype not in compress_model.KEPT_DTYPES:
        raise ForgebenchError(
            f"{key}.high_precision_dtype: {kept_dtype!r} not one of {compress_model.KEPT_DTYPES}"
        )
    records = []
    for name, t in state.items():
        if metrics.is_quantised(name, t):
            records.append(encode(name, t, method_cfg))
        else:
            records.append(baselines.encode_raw(name, t, kept_dtype, kept=True))
    params = {k: v for k, v in method_cfg.items() if k != "enabled"}
    return Artifact(method, params, records)


def decode_state(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """Verify and decode artifact bytes into float32 tensors."""
    art, _ = decode_bytes(data, source)
    return {rec.name: decode_record(rec) for rec in art.tensors}


def read_final(path: Path) -> dict[str, torch.Tensor]:
    """The pipeline's final file back to tensors (codec frame first when there is one)."""
    blob = path.read_bytes()
    if blob.startswith(codecs.FRAME_MAGIC):
        blob, _, _ = codecs.unwrap(blob, str(path))
    return decode_state(blob, str(path))


def reuse_first_stage(
    artifact: Path | None, stage: Mapping[str, Any]
) -> tuple[bytes | None, dict[str, Any]]:
    """The compression job's artifact bytes when its header's configuration is the first
    stage's (read back and digest-checked), else None; with where the stage comes from."""
    key = f"{KEY}.stages[0]"
    if artifact is None:
        reason = "no compression job of this model has the first stage's configuration"
        return None, {"source": "compressed here", "reason": reason}
    data = artifact.read_bytes()
    art, _ = decode_bytes(data, str(artifact))
    if effective_config(art.params, key) == effective_config(stage, key):
        return data, {"source": "compression job artifact", "path": str(artifact)}
    reason = f"{artifact}'s configuration differs from the first stage's"
    return None, {"source": "compressed here", "reason": reason}


def calibrate_stages(
    stages: Sequence[Mapping[str, Any]], model_dir: Path, texts: Sequence[str], skip: int = 0
) -> list[Mapping[str, Any]]:
    """VPTQ stages with the original model's Hessian diagonals attached (the first ``skip``
    stages, read from an artifact, need none)."""
    out: list[Mapping[str, Any]] = []
    for i, s in enumerate(stages):
        if s.get("method") == "vptq" and i >= skip:
            tokens = vptq.VPTQConfig.from_mapping(s, f"{KEY}.stages[{i}]").calibration_tokens
            s = vptq.calibrated(s, model_dir, enough_texts(texts, tokens), f"{KEY}.stages[{i}]")
        out.append(s)
    return out


def run_chain(
    state: Mapping[str, torch.Tensor],
    stages: Sequence[Mapping[str, Any]],
    codec: Mapping[str, Any] | None,
    out_path: Path,
    first: tuple[bytes | None, dict[str, Any]] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], int]:
    """Run the lossy stages in order and write the one final file; ``first`` is
    ``reuse_first_stage``'s answer: the first stage's bytes (None: compress it) and source.

    Returns the last stage's decoded weights, per-stage facts (method, bytes, seconds,
    source) and the final file's size."""
    current: Mapping[str, torch.Tensor] = state
    facts = []
    data = b""
    for i, s in enumerate(stages):
        t0 = time.perf_counter()
        source: dict[str, Any] = {"source": "compressed here"}
        reused = first[0] if first and i == 0 else None
        if i == 0 and first:
            source = first[1]
        if reused is not None:
            data = reused
        else:
            data, _ = encode_artifact(compress_state(current, s, f"{KEY}.stages[{i}]"))
        art, sizes = decode_bytes(data, f"<stage {i}>")
        current = {rec.name: decode_record(rec) for rec in art.tensors}
        facts.append(
            {
                "method": str(s.get("method")),
                "bytes": sizes.total,
                "quantised_payload": sizes.quantised_payload,
                "seconds": time.perf_counter() - t0,
                **source,
            }
        )
    if codec:
        data = codecs.wrap(data, str(codec["codec"]), int(codec["level"]))
    write_bytes_atomic(out_path, data)
    return dict(current), facts, out_path.stat().st_size


def load_lm(model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    return model, AutoTokenizer.from_pretrained(str(model_dir))


def perplexity_of(
    model: Any, state: Mapping[str, torch.Tensor], ids: torch.Tensor, ctx: int
) -> float:
    """Perplexity of ``model`` with ``state`` loaded (a dense float32 copy of the weights)."""
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    ppl = compress_model.window_perplexity(model, ids, ctx)
    if not math.isfinite(ppl):  # NaN logits: a failed measurement, not a number
        raise FloatingPointError(f"perplexity is {ppl}")
    return ppl


def same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def load_state(model_dir: Path) -> dict[str, torch.Tensor]:
    return compress_model.load_state_dict(Path(model_dir))


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Run the configured chain on the model once and measure it (module doc).

    cfg keys: ``name`` (the case), ``stages`` (list of method configs, as for
    compression methods), ``codec`` ({codec, level} or null), ``perplexity_tokens``,
    ``perplexity_context``, ``artifact_dir`` ("" = a temporary folder); injected
    ``model_dir`` and ``datasets_dir``, and ``first_stage_artifact`` where the workflow
    found a compression job with the first stage's configuration (``first_stage_artifact``).
    """
    torch.manual_seed(seed)
    model_dir = Path(str(cfg.get("model_dir") or ""))
    if not (model_dir / "config.json").is_file():
        raise ForgebenchError(f"{KEY}.model_dir: {str(model_dir)!r} is not an HF model folder")
    stages = stage_configs(cfg)
    codec = cfg.get("codec")
    if codec:
        codecs.get_codec(str(codec.get("codec")), int(codec.get("level", 0)), f"{KEY}.codec")
    case = str(cfg.get("name", "->".join(str(s["method"]) for s in stages)))
    calib, heldout, text_info = model_texts(model_dir, cfg.get("datasets_dir"), seed, key=KEY)
    params: dict[str, Any] = {
        "stages": stages,
        "codec": dict(codec) if codec else None,
        "inference": "dense",
        "ratio": "original bytes / final artifact bytes (never a product of stage ratios)",
        "vptq_calibration": "once, on the original model",
        **text_info,
    }
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    started = utcnow()

    def add(metric: str, unit: str, hib: bool, value: float, **kw: Any) -> None:
        rec.add(case, params, metric, unit, hib, value, started_at=started, **kw)

    state = load_state(model_dir)
    original_bytes = sum(t.numel() * t.element_size() for t in state.values())
    n_all = sum(t.numel() for t in state.values())
    quantised = [n for n, t in state.items() if metrics.is_quantised(n, t)]
    with tempfile.TemporaryDirectory(prefix="fb-pipeline-") as tmp:
        out_dir = Path(str(cfg.get("artifact_dir") or tmp))
        out_path = out_dir / f"{case.replace('->', '_')}.fbc"
        try:
            t0 = time.perf_counter()
            given = cfg.get("first_stage_artifact")
            first = reuse_first_stage(Path(str(given)) if given else None, stages[0])
            skip = 0 if first[0] is None else 1
            cal_stages = calibrate_stages(stages, model_dir, calib, skip=skip)
            decoded, facts, final_bytes = run_chain(state, cal_stages, codec, out_path, first)
            t_comp = time.perf_counter() - t0
            t0 = time.perf_counter()
            restored = read_final(out_path)
            t_dec = time.perf_counter() - t0
        except ForgebenchError:
            raise
        except Exception as exc:
            log.warning("pipeline %s failed: %r", case, exc)
            for metric, unit, hib in (
                ("final_artifact_bytes", "bytes", False),
                ("ratio_vs_fp32_whole", "ratio", True),
            ):
                add(metric, unit, hib, math.nan, status=status_for(exc))
            return rec.frame()
        params["stage_facts"] = facts
        params["first_stage"] = {
            k: v for k, v in facts[0].items() if k in ("source", "path", "reason")
        }
        params["final_artifact"] = str(out_path) if cfg.get("artifact_dir") else "temporary"
        if not same_tensors(decoded, restored):
            log.warning("pipeline %s: the final file does not decode to the chain's weights", case)
            add("final_artifact_bytes", "bytes", False, math.nan, status="mismatch")
            add("ratio_vs_fp32_whole", "ratio", True, math.nan, status="mismatch")
            return rec.frame()
    add("original_bytes", "bytes", False, float(original_bytes))
    add("final_artifact_bytes", "bytes", False, float(final_bytes))
    add("ratio_vs_original_whole", "ratio", True, original_bytes / final_bytes)
    add("ratio_vs_fp32_whole", "ratio", True, 4.0 * n_all / final_bytes)
    add("ratio_vs_fp16_whole", "ratio", True, 2.0 * n_all / final_bytes)
    add("bits_per_weight_whole", "bits/weight", False, 8.0 * final_bytes / n_all)
    for i, f in enumerate(facts):
        add("stage_artifact_bytes", "bytes", False, float(f["bytes"]), sample=i)
        add("stage_time", "s", False, f["seconds"], sample=i)
    _, overall = metrics.relative_errors(state, restored, quantised)
    add("relative_error", "ratio", False, overall)
    add("compress_time", "s", False, t_comp)
    add("decompress_time", "s", False, t_dec)
    _perplexity_rows(add, model_dir, state, restored, heldout, cfg)
    log.info(
        "pipeline %s: %d -> %d bytes (%.2fx vs fp32 whole), error %.4f",
        case,
        original_bytes,
        final_bytes,
        4.0 * n_all / final_bytes,
        overall,
    )
    return rec.frame()


def _perplexity_rows(
    add: Callable[..., None],
    model_dir: Path,
    original: Mapping[str, torch.Tensor],
    restored: Mapping[str, torch.Tensor],
    texts: Sequence[str],
    cfg: Mapping[str, Any],
) -> None:
    tokens = int(cfg.get("perplexity_tokens", 2048))
    ctx = int(cfg.get("perplexity_context", 256))
    try:
        model, tok = load_lm(model_dir)
        ids = compress_model.heldout_ids(tok, enough_texts(texts, tokens), tokens)
        p0 = perplexity_of(model, original, ids, ctx)
        p1 = perplexity_of(model, restored, ids, ctx)
    except ForgebenchError:
        raise
    except Exception as exc:
        log.warning("pipeline perplexity failed: %r", exc)
        add("perplexity", "perplexity", False, math.nan, status=status_for(exc))
        return
    add("perplexity_original", "perplexity", False, p0)
    add("perplexity", "perplexity", False, p1)
    add("perplexity_delta", "perplexity", False, p1 - p0)
    add("perplexity_tokens", "count", True, float(ids.numel()))


__all__ = [
    "compress_state",
    "decode_record",
    "read_final",
    "run",
    "run_chain",
    "state_digest",
]
