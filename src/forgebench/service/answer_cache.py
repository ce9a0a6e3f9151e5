"""The RAG answer cache: an LRU of answers, and the seeded Zipf request streams it is measured on.

Why an answer cache: the service's RAG endpoint recomputes a BM25 ranking over every
passage for each question, while real question traffic is skewed (a few questions are
asked very often). An LRU of answers keyed by (question, k, mode) serves repeats without
that work; its hit rate depends only on the policy, its size and the request stream.

The same :class:`LruCache` runs in the service (``forgebench.service.app``, setting
``rag.answer_cache_size``) and in :func:`replay_hits`, which replays a request sequence
through it in-process: the hit-rate curve over sizes comes from replays, and the
service's own hit/miss flags must equal the replay's at its size (the benchmark checks).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


class LruCache:
    """A least-recently-used map of at most ``capacity`` entries, counting hits and misses.

    Not thread-safe: the service touches it only from its event loop.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an LRU cache needs capacity >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> tuple[bool, Any]:
        """``(True, value)`` on a hit (the entry becomes most recent), ``(False, None)``."""
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return False, None
        self._data.move_to_end(key)
        self.hits += 1
        return True, value

    def put(self, key: Hashable, value: Any) -> None:
        """Insert or refresh ``key``; the least recently used entry leaves when full."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
        self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"capacity": self.capacity, "entries": len(self), "hits": self.hits,
                "misses": self.misses}  # fmt: skip


def zipf_stream(n_keys: int, length: int, exponent: float, seed: int) -> np.ndarray:
    """``length`` key indices in ``[0, n_keys)``, key of popularity rank r drawn with
    probability proportional to ``r ** -exponent``; which key holds which rank is a seeded
    permutation, so popularity is not tied to corpus order."""
    if n_keys < 1 or length < 0 or exponent < 0:
        raise ValueError("zipf_stream needs n_keys >= 1, length >= 0, exponent >= 0")
    rng = np.random.default_rng(seed)
    weights = np.arange(1, n_keys + 1, dtype=float) ** -float(exponent)
    ranks = rng.choice(n_keys, size=length, p=weights / weights.sum())
    return rng.permutation(n_keys)[ranks]


def replay_hits(keys: Sequence[Hashable] | np.ndarray, capacity: int) -> np.ndarray:
    """Hit (True) or miss of each request of ``keys`` through a fresh :class:`LruCache`."""
    cache = LruCache(capacity)
    out = np.empty(len(keys), dtype=bool)
    for i, key in enumerate(np.asarray(keys).tolist()):
        hit, _ = cache.get(key)
        if not hit:
            cache.put(key, None)
        out[i] = hit
    return out
