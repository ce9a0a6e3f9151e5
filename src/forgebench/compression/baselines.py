"""The baselines every weight compressor is judged against: fp16 and int8 per-channel absmax.

They also provide the encoding of the tensors kept in high precision (``raw``), shared by
every method, so a kept tensor costs the same bytes whichever method quantised the rest.
Every decoder returns float32, the dtype of the dense model written back to disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from forgebench.compression.artifact import ArtifactError, TensorRecord

_RAW_DTYPES = {"float16": (torch.float16, np.float16), "float32": (torch.float32, np.float32)}


def _seg(rec: TensorRecord, name: str) -> bytes:
    try:
        return rec.segments[name]
    except KeyError:
        raise ArtifactError(f"tensor {rec.name}: segment {name!r} missing") from None


def _check_len(rec: TensorRecord, seg: str, data: bytes, need: int) -> None:
    if len(data) != need:
        raise ArtifactError(
            f"tensor {rec.name}: segment {seg!r} holds {len(data)} bytes, shape "
            f"{list(rec.shape)} needs {need}"
        )


def encode_raw(name: str, w: torch.Tensor, dtype: str, *, kept: bool) -> TensorRecord:
    """The tensor stored as plain float16 or float32 values (row-major)."""
    if dtype not in _RAW_DTYPES:
        raise ValueError(f"raw dtype {dtype!r} not one of {sorted(_RAW_DTYPES)}")
    arr = w.detach().to("cpu", _RAW_DTYPES[dtype][0]).contiguous().numpy()
    return TensorRecord(
        name=name,
        shape=tuple(w.shape),
        dtype=str(w.dtype).removeprefix("torch."),
        encoding=f"raw_{dtype}",
        segments={"values": arr.tobytes()},
        kept=kept,
    )


def decode_raw(rec: TensorRecord) -> torch.Tensor:
    dtype = rec.encoding.removeprefix("raw_")
    np_dtype = _RAW_DTYPES[dtype][1]
    data = _seg(rec, "values")
    _check_len(rec, "values", data, rec.numel * np.dtype(np_dtype).itemsize)
    arr = np.frombuffer(data, dtype=np_dtype).reshape(rec.shape)
    return torch.from_numpy(arr.astype(np.float32))


def encode_fp16(name: str, w: torch.Tensor, cfg: Mapping[str, Any]) -> TensorRecord:
    """fp16: every weight rounded to half precision (16 bits/weight)."""
    return encode_raw(name, w, "float16", kept=False)


def encode_int8(name: str, w: torch.Tensor, cfg: Mapping[str, Any]) -> TensorRecord:
    """int8 per output channel: q = round(w / s), s = max|row| / 127, one float32 s per row."""
    w2 = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1)
    absmax = w2.abs().amax(dim=1)
    scale = torch.where(absmax > 0, absmax / 127.0, torch.ones_like(absmax))
    q = torch.round(w2 / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return TensorRecord(
        name=name,
        shape=tuple(w.shape),
        dtype=str(w.dtype).removeprefix("torch."),
        encoding="int8_rowwise",
        segments={"codes": q.numpy().tobytes(), "scales": scale.numpy().tobytes()},
    )


def decode_int8(rec: TensorRecord) -> torch.Tensor:
    rows = rec.shape[0]
    codes, scales = _seg(rec, "codes"), _seg(rec, "scales")
    _check_len(rec, "codes", codes, rec.numel)
    _check_len(rec, "scales", scales, 4 * rows)
    q = np.frombuffer(codes, dtype=np.int8).reshape(rows, -1).astype(np.float32)
    s = np.frombuffer(scales, dtype=np.float32)
    return torch.from_numpy((q * s[:, None]).reshape(rec.shape))


def decode(rec: TensorRecord) -> torch.Tensor:
    """Decode a raw or int8 record (the encodings of this module)."""
    if rec.encoding.startswith("raw_"):
        return decode_raw(rec)
    if rec.encoding == "int8_rowwise":
        return decode_int8(rec)
    raise ArtifactError(f"tensor {rec.name}: unknown encoding {rec.encoding!r}")


def theoretical_bits(method: str, shape: tuple[int, ...]) -> float:
    """Bits the configuration needs for one tensor, overhead (scales) included."""
    numel = int(np.prod(shape))
    if method == "fp16":
        return 16.0 * numel
    if method == "int8":
        return 8.0 * numel + 32.0 * shape[0]
    raise ValueError(f"no theoretical size for {method!r}")


def round_to_nearest(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Per-group asymmetric scalar quantisation (RTN), the plain reference a vector
    quantiser is judged against at equal bits: each run of ``group_size`` consecutive
    weights of a row maps to 2^bits levels from its min to its max, scale and min rounded to
    float16 as stored (llama.cpp's Q4_1 is bits=4, group_size=32). Returns the float32
    reconstruction; ``group_size`` must divide the row length."""
    w2 = w.detach().to("cpu", torch.float32).reshape(w.shape[0], -1)
    if group_size < 1 or w2.shape[1] % group_size:
        raise ValueError(f"group_size {group_size} does not divide rows of {w2.shape[1]}")
    if not 1 <= bits <= 16:
        raise ValueError(f"bits {bits} not in 1..16")
    x = w2.reshape(-1, group_size)
    lo = x.amin(dim=1, keepdim=True).to(torch.float16).to(torch.float32)
    hi = x.amax(dim=1, keepdim=True)
    scale = ((hi - lo) / (2**bits - 1)).to(torch.float16).to(torch.float32)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round((x - lo) / scale).clamp(0, 2**bits - 1)
    return (q * scale + lo).reshape(w.shape)


def round_to_nearest_bits(shape: tuple[int, ...], bits: int, group_size: int) -> float:
    """Bits of one tensor under :func:`round_to_nearest`: ``bits`` per weight plus a float16
    scale and a float16 min per group."""
    numel = int(np.prod(shape))
    return float(bits * numel + 32 * (numel // group_size))
