"""The on-disk container of a compressed model: its bytes are what every ratio is computed from.

Layout (all integers little-endian)::

    magic    8 bytes  b"FBCMPRS\\0"
    version  u32      FORMAT_VERSION
    hlen     u64      bytes of the JSON header
    plen     u64      bytes of the payload
    sha256   32 bytes of header + payload
    header   hlen bytes, UTF-8 JSON: method, params, "quantised" and "kept" tensor records
    payload  plen bytes: every quantised tensor's segments, then every kept tensor's

A tensor record names its segments (e.g. ``codes``, ``scales``) by offset and length into
the payload, so the packed bytes of the quantised layers and those of the tensors kept in
high precision (embeddings, output head, norms) sit in separate regions and are counted
apart; the fixed preamble and the JSON header are the metadata. Reading checks the magic,
version, lengths and digest before anything is decoded, so a truncated or corrupted file
raises :class:`ArtifactError` instead of yielding a wrong model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forgebench.atomic import write_bytes_atomic
from forgebench.errors import ForgebenchError

MAGIC = b"FBCMPRS\0"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIQQ32s")
PREAMBLE_BYTES = _PREAMBLE.size


class ArtifactError(ForgebenchError):
    """A compressed-model artifact that cannot be trusted: truncated, corrupted or foreign."""


@dataclass
class TensorRecord:
    """One tensor of the artifact: how it was encoded and its payload segments."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # dtype of the original tensor, restored on decode
    encoding: str
    segments: dict[str, bytes]
    meta: dict[str, Any] = field(default_factory=dict)
    kept: bool = False  # kept in high precision, not quantised

    @property
    def payload_bytes(self) -> int:
        return sum(len(b) for b in self.segments.values())

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass
class Artifact:
    """A read (or to-be-written) artifact: method, its parameters and the tensor records."""

    method: str
    params: dict[str, Any]
    tensors: list[TensorRecord]


@dataclass(frozen=True)
class ArtifactSizes:
    """Byte counts of a written artifact, split the way the metrics report them."""

    total: int
    preamble: int
    header: int
    quantised_payload: int
    kept_payload: int

    @property
    def metadata(self) -> int:
        return self.preamble + self.header


def _entry(rec: TensorRecord, offset: int) -> tuple[dict[str, Any], int]:
    segs = {}
    for name, data in rec.segments.items():
        segs[name] = {"offset": offset, "length": len(data)}
        offset += len(data)
    entry = {
        "name": rec.name,
        "shape": list(rec.shape),
        "dtype": rec.dtype,
        "encoding": rec.encoding,
        "meta": rec.meta,
        "segments": segs,
    }
    return entry, offset


def encode(artifact: Artifact) -> tuple[bytes, ArtifactSizes]:
    """The artifact's bytes and their split into preamble, header and payload regions."""
    quantised = [t for t in artifact.tensors if not t.kept]
    kept = [t for t in artifact.tensors if t.kept]
    names = [t.name for t in artifact.tensors]
    if len(set(names)) != len(names):
        raise ValueError("tensor names in an artifact must be unique")
    offset = 0
    q_entries, k_entries = [], []
    for rec in quantised:
        entry, offset = _entry(rec, offset)
        q_entries.append(entry)
    q_bytes = offset
    for rec in kept:
        entry, offset = _entry(rec, offset)
        k_entries.append(entry)
    header = json.dumps(
        {
            "method": artifact.method,
            "params": artifact.params,
            "quantised": q_entries,
            "kept": k_entries,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    ).encode()
    payload = b"".join(d for rec in quantised + kept for d in rec.segments.values())
    digest = hashlib.sha256(header + payload).digest()
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), len(payload), digest)
    sizes = ArtifactSizes(
        total=len(pre) + len(header) + len(payload),
        preamble=len(pre),
        header=len(header),
        quantised_payload=q_bytes,
        kept_payload=len(payload) - q_bytes,
    )
    return pre + header + payload, sizes


def write_artifact(path: str | Path, artifact: Artifact) -> ArtifactSizes:
    """Write atomically (a crash leaves no half file under the final name)."""
    data, sizes = encode(artifact)
    write_bytes_atomic(path, data)
    return sizes


def decode(data: bytes, source: str = "<bytes>") -> tuple[Artifact, ArtifactSizes]:
    """Parse and verify artifact bytes; raises ArtifactError saying what is wrong."""
    if len(data) < PREAMBLE_BYTES:
        raise ArtifactError(
            f"artifact {source}: truncated: {len(data)} bytes, shorter than the "
            f"{PREAMBLE_BYTES}-byte preamble; recompress the model"
        )
    magic, version, hlen, plen, digest = _PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise ArtifactError(
            f"artifact {source}: not a forgebench compressed model (magic {magic!r}, "
            f"expected {MAGIC!r})"
        )
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"artifact {source}: format version {version}, this forgebench reads "
            f"version {FORMAT_VERSION}; recompress the model"
        )
    expected = PREAMBLE_BYTES + hlen + plen
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ArtifactError(
            f"artifact {source}: {kind}: {len(data)} bytes, the preamble promises "
            f"{expected}; recompress the model"
        )
    body = memoryview(data)[PREAMBLE_BYTES:]
    actual = hashlib.sha256(body).digest()
    if actual != digest:
        raise ArtifactError(
            f"artifact {source}: corrupted: sha256 {actual.hex()[:16]}... differs from the "
            f"stored {digest.hex()[:16]}...; recompress the model"
        )
    try:
        header = json.loads(bytes(body[:hlen]))
    except ValueError as exc:  # cannot happen with a matching digest unless written wrong
        raise ArtifactError(f"artifact {source}: unreadable header: {exc}") from None
    payload = body[hlen:]
    tensors = []
    for kept, entries in ((False, header["quantised"]), (True, header["kept"])):
        for e in entries:
            segs = {}
            for name, loc in e["segments"].items():
                start, length = int(loc["offset"]), int(loc["length"])
                if start < 0 or start + length > plen:
                    raise ArtifactError(
                        f"artifact {source}: segment {e['name']}/{name} lies outside the payload"
                    )
                segs[name] = bytes(payload[start : start + length])
            tensors.append(
                TensorRecord(
                    name=e["name"],
                    shape=tuple(int(d) for d in e["shape"]),
                    dtype=e["dtype"],
                    encoding=e["encoding"],
                    segments=segs,
                    meta=dict(e["meta"]),
                    kept=kept,
                )
            )
    q_bytes = sum(t.payload_bytes for t in tensors if not t.kept)
    sizes = ArtifactSizes(
        total=len(data),
        preamble=PREAMBLE_BYTES,
        header=hlen,
        quantised_payload=q_bytes,
        kept_payload=plen - q_bytes,
    )
    return Artifact(header["method"], dict(header["params"]), tensors), sizes


def read_artifact(path: str | Path) -> tuple[Artifact, ArtifactSizes]:
    """Read and verify an artifact file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"artifact {path}: cannot read: {exc}") from None
    return decode(data, str(path))


def names(records: Iterable[TensorRecord], *, kept: bool) -> list[str]:
    """Names of the kept (or quantised) tensors, in artifact order."""
    return [r.name for r in records if r.kept == kept]


def sizes_dict(sizes: ArtifactSizes) -> Mapping[str, int]:
    """The sizes as a plain mapping (for logs and provenance)."""
    return {
        "total": sizes.total,
        "preamble": sizes.preamble,
        "header": sizes.header,
        "quantised_payload": sizes.quantised_payload,
        "kept_payload": sizes.kept_payload,
    }


def pack_bits(values: np.ndarray, width: int) -> bytes:
    """Fixed-width unsigned fields, ``width`` bits each, packed LSB-first with no padding
    between fields (the last byte is zero-filled): n fields take ceil(n * width / 8) bytes."""
    if not 1 <= width <= 64:
        raise ValueError(f"field width {width} outside 1..64")
    v = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    if width < 64 and v.size and int(v.max()) >> width:
        raise ValueError(f"a value does not fit in {width} bits")
    out = bytearray()
    chunk = max(1, (1 << 22) // width)  # bounded temporary: ~4 MiB of bits per chunk
    carry = np.zeros(0, dtype=np.uint8)
    for i in range(0, v.size, chunk):
        part = v[i : i + chunk]
        bits = ((part[:, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)).astype(
            np.uint8
        )
        bits = np.concatenate([carry, bits.ravel()])
        whole = bits.size - bits.size % 8
        out += np.packbits(bits[:whole], bitorder="little").tobytes()
        carry = bits[whole:]
    if carry.size:
        out += np.packbits(carry, bitorder="little").tobytes()
    return bytes(out)


def unpack_bits(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` fields of ``width`` bits as uint64."""
    need = (count * width + 7) // 8
    if len(data) != need:
        raise ArtifactError(
            f"packed segment holds {len(data)} bytes, {count} fields of {width} bits need {need}"
        )
    raw = np.frombuffer(data, dtype=np.uint8)
    out = np.empty(count, dtype=np.uint64)
    weights = np.uint64(1) << np.arange(width, dtype=np.uint64)
    chunk = max(8, ((1 << 22) // width) // 8 * 8)  # fields per chunk, a multiple of 8
    for i in range(0, count, chunk):
        n = min(chunk, count - i)
        start_bit = i * width  # a multiple of 8 because i is
        nbits = n * width
        b = np.unpackbits(raw[start_bit // 8 : (start_bit + nbits + 7) // 8], bitorder="little")[
            :nbits
        ]
        out[i : i + n] = (b.reshape(n, width).astype(np.uint64) * weights).sum(axis=1)
    return out
