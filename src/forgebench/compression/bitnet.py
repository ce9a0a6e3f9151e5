"""BitNet b1.58 absmean ternary quantisation (Ma et al. 2024), applied post-training.

The paper trains with the quantiser in the loop; here it is applied to a trained model's
weights without retraining, so the quality it shows is that of post-training ternarisation
(the report's params say ``post_training: true``). Per tensor: gamma = mean|W|,
W~ = RoundClip(W / (gamma + eps), -1, 1), decoded as gamma * W~, so every decoded value is
-gamma, 0 or +gamma. Codes are packed either 4 per byte (``2bit``) or 5 per byte as base-3
digits (``base3``, 3^5 = 243 <= 256: 1.6 bits/weight), plus one float32 gamma.

Not done here, unlike the paper: BitNet b1.58 also quantises activations to 8 bits
(absmax per token, scaled into [-128, 127]) inside every BitLinear. The decompressed model
runs its activations in float32, so the figures show weight ternarisation alone, and a
collapse after post-training ternarisation is the expected finding (the paper's models
are trained ternary from the start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from forgebench.compression.artifact import ArtifactError, TensorRecord
from forgebench.compression.method_config import BITNET_EPS

EPS = BITNET_EPS
PACKINGS = ("base3", "2bit")
_PER_BYTE = {"base3": 5, "2bit": 4}


def ternarise(w: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, float]:
    """(codes in {-1, 0, 1} as int8, gamma as a float32 value) of one tensor."""
    w = w.detach().to("cpu", torch.float32)
    gamma = w.abs().mean().to(torch.float32)
    codes = torch.round(w / (gamma + eps)).clamp(-1, 1).to(torch.int8)
    return codes, float(gamma)


def pack_codes(codes: np.ndarray, packing: str) -> bytes:
    """Ternary codes (-1, 0, 1) packed as base-3 digits (5 a byte) or 2-bit fields (4 a byte)."""
    digits = (codes.ravel().astype(np.int16) + 1).astype(np.uint8)  # 0, 1, 2
    per = _PER_BYTE[packing]
    pad = (-digits.size) % per
    digits = np.concatenate([digits, np.zeros(pad, dtype=np.uint8)]).reshape(-1, per)
    base = 3 if packing == "base3" else 4
    weights = (base ** np.arange(per)).astype(np.uint16)
    return (digits.astype(np.uint16) * weights).sum(axis=1).astype(np.uint8).tobytes()


def unpack_codes(data: bytes, packing: str, count: int) -> np.ndarray:
    per = _PER_BYTE[packing]
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int16)
    base = 3 if packing == "base3" else 4
    digits = np.empty((raw.size, per), dtype=np.int16)
    for i in range(per):
        digits[:, i] = raw % base
        raw = raw // base
    if digits.max(initial=0) > 2:
        raise ArtifactError(f"ternary code out of range in a {packing} segment")
    return (digits.ravel()[:count] - 1).astype(np.int8)


def encode(name: str, w: torch.Tensor, cfg: Mapping[str, Any]) -> TensorRecord:
    packing = str(cfg.get("packing", "base3"))
    if packing not in PACKINGS:
        raise ValueError(f"bitnet packing {packing!r} not one of {PACKINGS}")
    codes, gamma = ternarise(w, float(cfg.get("eps", EPS)))
    return TensorRecord(
        name=name,
        shape=tuple(w.shape),
        dtype=str(w.dtype).removeprefix("torch."),
        encoding=f"bitnet_{packing}",
        segments={
            "codes": pack_codes(codes.numpy(), packing),
            "gamma": np.float32(gamma).tobytes(),
        },
    )


def decode(rec: TensorRecord) -> torch.Tensor:
    packing = rec.encoding.removeprefix("bitnet_")
    if packing not in PACKINGS:
        raise ArtifactError(f"tensor {rec.name}: unknown encoding {rec.encoding!r}")
    n = rec.numel
    need = -(-n // _PER_BYTE[packing])
    codes_b, gamma_b = rec.segments.get("codes", b""), rec.segments.get("gamma", b"")
    if len(codes_b) != need or len(gamma_b) != 4:
        raise ArtifactError(
            f"tensor {rec.name}: bitnet segments hold {len(codes_b)}+{len(gamma_b)} bytes, "
            f"shape {list(rec.shape)} needs {need}+4"
        )
    codes = unpack_codes(codes_b, packing, n).astype(np.float32)
    gamma = np.frombuffer(gamma_b, dtype=np.float32)[0]
    return torch.from_numpy((codes * gamma).reshape(rec.shape))


def theoretical_bits(cfg: Mapping[str, Any], shape: tuple[int, ...]) -> float:
    """Nominal code bits (8/5 = 1.6 or 2 per weight) plus the 32-bit gamma."""
    n = int(np.prod(shape))
    per = _PER_BYTE[str(cfg.get("packing", "base3"))]
    return 8.0 * n / per + 32.0
