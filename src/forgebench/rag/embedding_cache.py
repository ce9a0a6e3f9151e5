"""Passage embeddings computed once per (model, passages) and reused by digest.

Why: embedding every BoolQ passage with MiniLM costs minutes of CPU, far more than any
search the benchmark times, and the vectors depend only on the model's files and the
passage texts. The digest covers both (every file of the model directory, byte for byte,
and every text in order), so a changed model or corpus never reuses stale vectors.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from forgebench.atomic import atomic_path


def embedding_digest(model_dir: Path, texts: Sequence[str]) -> str:
    """sha256 over the model directory's files (names and bytes) and the texts, in order."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    h.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        h.update(text.encode("utf-8") + b"\0")
    return h.hexdigest()


def cache_path(cache_dir: Path, digest: str) -> Path:
    return Path(cache_dir) / f"{digest}.npy"


def load_cached(cache_dir: Path, digest: str, n: int, dim: int) -> np.ndarray | None:
    """The cached (n, dim) float32 vectors of ``digest``, or None when absent or malformed."""
    path = cache_path(cache_dir, digest)
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if vectors.shape != (n, dim) or vectors.dtype != np.float32:
        return None
    return vectors


def store(cache_dir: Path, digest: str, vectors: np.ndarray) -> Path:
    """Write ``vectors`` under ``digest`` atomically (a concurrent reader sees all or none)."""
    path = cache_path(cache_dir, digest)
    os.makedirs(path.parent, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    return path
