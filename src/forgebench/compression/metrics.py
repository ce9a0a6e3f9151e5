"""Size and error figures of a compressed model, all computed from the artifact's bytes.

Bits per weight are 8 x bytes / weights. Over the quantised layers the bytes are their
payload segments (codes, scales, seeds); the preamble and JSON header are metadata,
reported apart, and the whole-artifact figures count every byte of the file against every
parameter. Ratios are reference bytes over artifact bytes: fp32 (4 bytes/weight) and fp16
(2 bytes/weight), over the quantised layers and over the whole model (the whole fp32 state
dict). Errors are relative Frobenius norms, ||W - W^|| / ||W||, per layer and pooled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from forgebench.compression.artifact import ArtifactSizes

HIGH_PRECISION_MARKERS = ("embed", "lm_head", "norm")


def is_quantised(name: str, tensor: torch.Tensor) -> bool:
    """Whether a weight is quantised: 2-D matrices of the blocks; embeddings, output head and
    norms stay in high precision, as the BitNet, SeedLM and VPTQ papers keep them."""
    lowered = name.lower()
    return tensor.ndim == 2 and not any(m in lowered for m in HIGH_PRECISION_MARKERS)


def size_metrics(
    sizes: ArtifactSizes,
    *,
    quantised_weights: int,
    total_weights: int,
    theoretical_bits: float,
) -> dict[str, float]:
    """Measured sizes, bits per weight and ratios, keyed by metric name."""
    q_bytes = sizes.quantised_payload
    bpw = 8.0 * q_bytes / quantised_weights if quantised_weights else math.nan
    theo = theoretical_bits / quantised_weights if quantised_weights else math.nan
    return {
        "artifact_bytes": float(sizes.total),
        "metadata_bytes": float(sizes.metadata),
        "quantised_payload_bytes": float(q_bytes),
        "kept_payload_bytes": float(sizes.kept_payload),
        "quantised_weights": float(quantised_weights),
        "total_weights": float(total_weights),
        "bits_per_weight": bpw,
        "bits_per_weight_theoretical": theo,
        "bits_per_weight_excess": (bpw / theo - 1.0) if theo else math.nan,
        "bits_per_weight_whole": 8.0 * sizes.total / total_weights,
        "ratio_vs_fp32_quantised": 4.0 * quantised_weights / q_bytes if q_bytes else math.nan,
        "ratio_vs_fp16_quantised": 2.0 * quantised_weights / q_bytes if q_bytes else math.nan,
        "ratio_vs_fp32_whole": 4.0 * total_weights / sizes.total,
        "ratio_vs_fp16_whole": 2.0 * total_weights / sizes.total,
    }


def relative_errors(
    original: Mapping[str, torch.Tensor], decoded: Mapping[str, torch.Tensor], names: Iterable[str]
) -> tuple[dict[str, float], float]:
    """Per-layer relative error and the pooled one sqrt(sum ||dW||^2 / sum ||W||^2)."""
    per: dict[str, float] = {}
    num = den = 0.0
    for name in names:
        w = original[name].detach().to(torch.float64)
        d = (decoded[name].detach().to(torch.float64) - w).square().sum().item()
        n = w.square().sum().item()
        per[name] = math.sqrt(d / n) if n > 0 else (0.0 if d == 0 else math.inf)
        num += d
        den += n
    overall = math.sqrt(num / den) if den > 0 else 0.0
    return per, overall
