"""compression/lossless_codecs: zlib, lzma, bz2 and zstd on real text and real weight bytes.

The system we replace reported zlib on one repeated string. Here every codec runs on the
same two inputs: text of the local evaluation datasets (every string field of every row
of every prepared split, dataset by dataset, each capped at ``text_bytes_per_dataset``)
and the bytes of the model's ``model.safetensors`` (whole, or ``weight_chunks`` evenly
spaced slices totalling ``weight_bytes``). Per (input, codec, level):

* a first, untimed pass compresses and decompresses and compares the result with the
  input byte for byte; a difference is a ``mismatch`` row and nothing of that case is
  timed. Its timings are kept as warm-up rows.
* ``ratio`` (input bytes / compressed bytes) and the sizes, exact values;
* ``compress_throughput`` / ``decompress_throughput`` in MB/s (10^6 bytes of *input* per
  second, both directions) for each of ``repetitions`` timed runs, each output checked
  after its timer stopped;
* memory in a separate, untimed pass: ``*_peak_traced`` (tracemalloc peak: CPython's zlib,
  bz2 and lzma allocate through the traced raw allocator; zstandard's C library does not,
  so for zstd this sees only the Python objects) and ``*_peak_rss_increase`` (the
  kernel's RSS high-water mark during the call over the RSS before it, via
  forgebench.sampler; a lower bound where freed memory is reused).

The module also holds the framed container the compression pipeline writes
(:func:`wrap`/:func:`unwrap`): codec name, level, original length and sha256 ahead of the
compressed bytes, so a truncated or corrupted file is refused rather than decoded wrong.
"""

from __future__ import annotations

import bz2
import hashlib
import logging
import lzma
import math
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.compression.artifact import ArtifactError
from forgebench.datasets.catalog import DATASET_NAMES
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "compression"
NAME = "lossless_codecs"
KEY = "suites.compression.benchmarks.lossless_codecs"
MB = 1e6

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Codec:
    name: str
    levels: tuple[int, int]  # allowed range
    compress: Callable[[bytes, int], bytes]
    decompress: Callable[[bytes], bytes]


def _zstd_compress(data: bytes, level: int) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=level).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)


CODECS: dict[str, Codec] = {
    "zlib": Codec("zlib", (0, 9), lambda d, lv: zlib.compress(d, lv), zlib.decompress),
    "lzma": Codec("lzma", (0, 9), lambda d, lv: lzma.compress(d, preset=lv), lzma.decompress),
    "bz2": Codec("bz2", (1, 9), lambda d, lv: bz2.compress(d, lv), bz2.decompress),
    "zstd": Codec("zstd", (1, 22), _zstd_compress, _zstd_decompress),
}


def get_codec(name: str, level: int, key: str = KEY) -> Codec:
    """The codec, after checking name and level (ForgebenchError naming ``key``)."""
    if name not in CODECS:
        raise ForgebenchError(f"{key}: codec {name!r} is not one of {sorted(CODECS)}")
    codec = CODECS[name]
    lo, hi = codec.levels
    if not lo <= int(level) <= hi:
        raise ForgebenchError(f"{key}: {name} level {level} outside {lo}..{hi}")
    return codec


# ------------------------------------------------------------------ framed container

FRAME_MAGIC = b"FBCODEC\0"
_FRAME = struct.Struct("<8sI8siQ32s")  # magic, version, codec, level, length, sha256
FRAME_VERSION = 1


def wrap(data: bytes, codec: str, level: int) -> bytes:
    """``data`` compressed with ``codec`` behind a header that lets :func:`unwrap` check it."""
    c = get_codec(codec, level, "codec")
    head = _FRAME.pack(
        FRAME_MAGIC,
        FRAME_VERSION,
        codec.encode().ljust(8, b"\0"),
        int(level),
        len(data),
        hashlib.sha256(data).digest(),
    )
    return head + c.compress(data, int(level))


def unwrap(blob: bytes, source: str = "<bytes>") -> tuple[bytes, str, int]:
    """(original bytes, codec, level) of a :func:`wrap` frame; ArtifactError when the frame
    is truncated, corrupted or foreign."""
    if len(blob) < _FRAME.size:
        raise ArtifactError(
            f"codec frame {source}: truncated: {len(blob)} bytes, shorter than the "
            f"{_FRAME.size}-byte header"
        )
    magic, version, name_b, level, length, digest = _FRAME.unpack_from(blob, 0)
    if magic != FRAME_MAGIC:
        raise ArtifactError(f"codec frame {source}: not a forgebench codec frame ({magic!r})")
    if version != FRAME_VERSION:
        raise ArtifactError(f"codec frame {source}: version {version}, expected {FRAME_VERSION}")
    name = name_b.rstrip(b"\0").decode("ascii", "replace")
    if name not in CODECS:
        raise ArtifactError(f"codec frame {source}: unknown codec {name!r}")
    try:
        data = CODECS[name].decompress(blob[_FRAME.size :])
    except Exception as exc:  # each codec raises its own error type on bad input
        raise ArtifactError(
            f"codec frame {source}: {name} cannot decompress the payload (truncated or "
            f"corrupted): {exc!r}"
        ) from None
    if len(data) != length or hashlib.sha256(data).digest() != digest:
        raise ArtifactError(
            f"codec frame {source}: decompressed {len(data)} bytes do not match the stored "
            f"length {length} and sha256; the file is corrupted"
        )
    return data, name, int(level)


# --------------------------------------------------------------------------- inputs


def _strings(value: Any) -> list[str]:
    """Every string inside a cell (lists and structs flattened, in order)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(items, (list, tuple)):
            return [s for v in items for s in _strings(v)]
    return []


def dataset_text(datasets_dir: Path, name: str, cap: int, key: str = KEY) -> bytes:
    """UTF-8 text of one prepared dataset: its splits in name order, a row's strings joined
    by newlines, rows by blank lines; the first ``cap`` bytes (0: all)."""
    folder = Path(datasets_dir) / name
    splits = sorted(folder.glob("*.parquet"))
    if not splits:
        raise ForgebenchError(
            f"{key}.datasets: no prepared splits under {folder}; the datasets stage "
            "(forgebench.datasets.prepare) writes results/datasets/<name>/<split>.parquet"
        )
    parts: list[bytes] = []
    size = 0
    for path in splits:
        frame = pd.read_parquet(path)
        for row in frame.itertuples(index=False, name=None):
            text = "\n".join(s for cell in row for s in _strings(cell)).encode() + b"\n\n"
            parts.append(text)
            size += len(text)
            if cap and size >= cap:
                return b"".join(parts)[:cap]
    return b"".join(parts)


def text_input(datasets_dir: Path, names: Sequence[str], cap: int) -> tuple[bytes, dict[str, int]]:
    """The datasets' text concatenated, and the bytes each contributed."""
    pieces = {n: dataset_text(datasets_dir, n, cap) for n in names}
    return b"".join(pieces.values()), {n: len(b) for n, b in pieces.items()}


def weight_input(model_dir: Path, total: int, chunks: int) -> tuple[bytes, dict[str, Any]]:
    """Bytes of ``model.safetensors``: all of it (``total`` 0 or above its size) or
    ``chunks`` evenly spaced slices of ``total / chunks`` bytes."""
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        raise ForgebenchError(
            f"{KEY}.model_dir: {path} not found; the weights input needs a model directory "
            "with model.safetensors (or set inputs: [text])"
        )
    size = path.stat().st_size
    if total <= 0 or total >= size:
        return path.read_bytes(), {"file": str(path), "file_bytes": size, "slices": "whole file"}
    piece = max(1, total // chunks)
    stride = (size - piece) // max(1, chunks - 1) if chunks > 1 else 0
    out = []
    with path.open("rb") as fh:
        for i in range(chunks):
            fh.seek(i * stride)
            out.append(fh.read(piece))
    return b"".join(out), {
        "file": str(path),
        "file_bytes": size,
        "slices": f"{chunks} x {piece} bytes, every {stride} bytes from offset 0",
    }


# ------------------------------------------------------------------------ measuring


def _peak_memory(fn: Callable[[], Any]) -> tuple[float, float]:
    """(tracemalloc peak bytes, RSS high-water increase bytes) of one call."""
    import psutil

    from forgebench.sampler import ResourceSampler

    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    try:
        with ResourceSampler(interval_s=0.05) as sampler:
            fn()
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak = sampler.summary().get("peak_rss_bytes")
    rss_inc = max(0.0, float(peak) - rss0) if peak is not None else math.nan
    return float(traced), rss_inc


def measure_case(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    data: bytes,
    codec: Codec,
    level: int,
    repetitions: int,
) -> None:
    """All rows of one (input, codec, level): verification first, then timings, then memory."""
    started = utcnow()

    def add(metric: str, unit: str, hib: bool, value: float, **kw: Any) -> None:
        rec.add(case, params, metric, unit, hib, value, started_at=started, **kw)

    n = len(data)
    try:
        t0 = time.perf_counter()
        comp = codec.compress(data, level)
        t1 = time.perf_counter()
        back = codec.decompress(comp)
        t2 = time.perf_counter()
    except Exception as exc:
        log.warning("%s: %r", case, exc)
        for m, u, h in (("ratio", "ratio", True), ("compress_throughput", "MB/s", True)):
            add(m, u, h, math.nan, status=status_for(exc))
        return
    if back != data:
        log.warning("%s: round trip differs from the input; not timed", case)
        for m, u, h in (("ratio", "ratio", True), ("compress_throughput", "MB/s", True)):
            add(m, u, h, math.nan, status="mismatch")
        return
    add("compress_throughput", "MB/s", True, n / MB / (t1 - t0), warmup=True)
    add("decompress_throughput", "MB/s", True, n / MB / (t2 - t1), warmup=True)
    add("ratio", "ratio", True, n / len(comp))
    add("original_bytes", "bytes", False, float(n))
    add("compressed_bytes", "bytes", False, float(len(comp)))
    for r in range(repetitions):
        t0 = time.perf_counter()
        c2 = codec.compress(data, level)
        t1 = time.perf_counter()
        if c2 != comp and codec.decompress(c2) != data:
            add("compress_throughput", "MB/s", True, math.nan, repetition=r, status="mismatch")
        else:
            add("compress_throughput", "MB/s", True, n / MB / (t1 - t0), repetition=r)
        t0 = time.perf_counter()
        b2 = codec.decompress(comp)
        t1 = time.perf_counter()
        status = "ok" if b2 == data else "mismatch"
        value = n / MB / (t1 - t0) if status == "ok" else math.nan
        add("decompress_throughput", "MB/s", True, value, repetition=r, status=status)
        del c2, b2
    del back
    traced, rss = _peak_memory(lambda: codec.compress(data, level))
    add("compress_peak_traced", "bytes", False, traced)
    add("compress_peak_rss_increase", "bytes", False, rss)
    traced, rss = _peak_memory(lambda: codec.decompress(comp))
    add("decompress_peak_traced", "bytes", False, traced)
    add("decompress_peak_rss_increase", "bytes", False, rss)
    log.info("%s: %.3fx on %d bytes", case, n / len(comp), n)


DEFAULT_CODECS = (
    {"codec": "zlib", "level": 1},
    {"codec": "zlib", "level": 6},
    {"codec": "zlib", "level": 9},
    {"codec": "lzma", "level": 6},
    {"codec": "bz2", "level": 9},
    {"codec": "zstd", "level": 3},
    {"codec": "zstd", "level": 19},
)
DEFAULT_DATASETS = DATASET_NAMES  # every prepared dataset


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Every configured codec on every configured input (module doc).

    cfg keys: ``inputs`` ([text, weights]), ``codecs`` (list of {codec, level}),
    ``datasets`` (the nine), ``text_bytes_per_dataset`` (0: all), ``weight_bytes``
    (0: whole file), ``weight_chunks``, ``repetitions``; injected ``datasets_dir`` and
    ``model_dir``. ``seed`` is unused: nothing here is random.
    """
    inputs = list(cfg.get("inputs", ["text", "weights"]))
    bad = [i for i in inputs if i not in ("text", "weights")]
    if bad:
        raise ForgebenchError(f"{KEY}.inputs: {bad} not allowed (text, weights)")
    codecs = [dict(c) for c in cfg.get("codecs", DEFAULT_CODECS)]
    for c in codecs:
        get_codec(str(c.get("codec")), int(c.get("level", 0)), f"{KEY}.codecs")
    reps = int(cfg.get("repetitions", 3))
    if reps < 1:
        raise ForgebenchError(f"{KEY}.repetitions: {reps} must be >= 1")
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    for which in inputs:
        if which == "text":
            ddir = cfg.get("datasets_dir")
            if not ddir or not Path(ddir).is_dir():
                raise ForgebenchError(
                    f"{KEY}.datasets_dir: {ddir!r} is not a folder of prepared datasets"
                )
            names = list(cfg.get("datasets", DEFAULT_DATASETS))
            cap = int(cfg.get("text_bytes_per_dataset", 0))
            data, parts = text_input(Path(ddir), names, cap)
            source: dict[str, Any] = {
                "datasets": parts,
                "cap_per_dataset": cap,
                "encoding": "utf-8",
            }
        else:
            mdir = cfg.get("model_dir")
            if not mdir:
                raise ForgebenchError(f"{KEY}.model_dir: no model directory given for 'weights'")
            data, source = weight_input(
                Path(mdir), int(cfg.get("weight_bytes", 0)), int(cfg.get("weight_chunks", 16))
            )
        log.info("lossless_codecs: input %s, %d bytes", which, len(data))
        for c in codecs:
            name, level = str(c["codec"]), int(c["level"])
            params = {
                "input": which,
                "codec": name,
                "level": level,
                "input_bytes": len(data),
                "source": source,
                "mb": "10^6 bytes of input per second",
                "repetitions": reps,
            }
            measure_case(
                rec, f"{which}_{name}{level}", params, data, get_codec(name, level), level, reps
            )
    return rec.frame()
