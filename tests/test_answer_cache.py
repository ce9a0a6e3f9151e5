"""The RAG answer cache: the LRU, the Zipf streams, and the benchmark through the real service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from forgebench.service import cache_benchmark
from forgebench.service.answer_cache import LruCache, replay_hits, zipf_stream
from forgebench.service.scenarios import server_settings
from forgebench.service.server import service_process


def test_lru_evicts_the_least_recently_used() -> None:
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == (True, 1)  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") == (False, None)
    assert cache.get("c") == (True, 3)
    assert cache.stats() == {"capacity": 2, "entries": 2, "hits": 2, "misses": 1}
    with pytest.raises(ValueError):
        LruCache(0)


def test_replay_hits_by_hand() -> None:
    # capacity 2: a b a c b a -> miss miss hit miss(evicts b) miss(evicts a) miss
    assert replay_hits(["a", "b", "a", "c", "b", "a"], 2).tolist() == [
        False, False, True, False, False, False,
    ]  # fmt: skip
    assert replay_hits(["a", "b", "a", "c", "b", "a"], 3).tolist() == [
        False, False, True, False, True, True,
    ]  # fmt: skip


def test_zipf_stream_is_seeded_and_skewed() -> None:
    a = zipf_stream(1000, 50_000, 0.99, seed=3)
    assert np.array_equal(a, zipf_stream(1000, 50_000, 0.99, seed=3))
    assert not np.array_equal(a, zipf_stream(1000, 50_000, 0.99, seed=4))
    counts = np.sort(np.bincount(a, minlength=1000))[::-1]
    # rank 1 against rank 10 under exponent 0.99: about 10 ** 0.99 = 9.8 times as often
    assert 7 < counts[0] / counts[9] < 13
    assert a.min() >= 0 and a.max() < 1000


def _cfg(datasets: Path, **over: Any) -> dict[str, Any]:
    cfg = {
        "cache_size": 12, "zipf_exponent": 0.99, "warmup_requests": 100, "requests": 400,
        "batches": 4, "repetitions": 2, "curve_sizes": [2, 6, 24], "target_hit_rate": 0.5,
        "timeout_s": 5.0, "startup_timeout_s": 120,
        "db": {"users": 5, "posts": 5, "comments": 5, "page_size": 5},
        "rag": {"mode": "bm25", "k": 3,
                "pipeline": {"max_passages": 60, "max_queries": 40}},
        "datasets_dir": str(datasets),
    }  # fmt: skip
    cfg.update(over)
    return cfg


def _rows(frame: Any, case: str, metric: str) -> Any:
    return frame[(frame["case"] == case) & (frame["metric"] == metric)]


def test_answer_cache_through_the_service(prepared_datasets: Path) -> None:
    cfg = _cfg(prepared_datasets)
    frame = cache_benchmark.run(cfg, seed=5)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    assert _rows(frame, "configured", "replay_agrees")["value"].tolist() == [1.0, 1.0]
    rate = _rows(frame, "configured", "hit_rate")["value"].item()
    low = _rows(frame, "configured", "hit_rate_ci_low")["value"].item()
    high = _rows(frame, "configured", "hit_rate_ci_high")["value"].item()
    assert 0 < low <= rate <= high < 1
    # the replay at the configured size is the service's own figure
    assert _rows(frame, "curve_12", "hit_rate")["value"].item() == pytest.approx(rate)
    curve = [_rows(frame, f"curve_{s}", "hit_rate")["value"].item() for s in (2, 6, 12, 24)]
    assert curve == sorted(curve)  # an LRU's hit rate does not fall as it grows
    # a miss ranks every passage with BM25; a hit is a dictionary lookup
    hit_t = frame[(frame["case"] == "hit") & (frame["metric"] == "served_time")]["value"]
    miss_t = frame[(frame["case"] == "miss") & (frame["metric"] == "served_time")]["value"]
    assert hit_t.median() < miss_t.median()
    measured = frame[(frame["case"].isin(["hit", "miss"])) & ~frame["warmup"]]
    assert len(measured) == 2 * 2 * 400  # two metrics, two repetitions
    size = _rows(frame, "size_for_target", "cache_size_point")["value"].item()
    params = json.loads(_rows(frame, "size_for_target", "cache_size_point")["params"].item())
    assert params["target_hit_rate"] == 0.5
    assert 1 <= size <= params["keys"]


def test_a_service_caching_at_another_size_is_caught(prepared_datasets: Path) -> None:
    """The planted defect: the service caches 4 answers while the benchmark believes 12,
    so its hit flags differ from the replay's and the row says mismatch."""
    cfg = _cfg(prepared_datasets, repetitions=1)
    settings = server_settings(cfg, 5, rag=True)
    settings["rag"]["answer_cache_size"] = 4
    with service_process(settings, startup_timeout_s=120) as addr:
        frame = cache_benchmark.measure(cfg, seed=5, addr=addr)
    agree = _rows(frame, "configured", "replay_agrees")
    assert agree["status"].tolist() == ["mismatch"]


def test_a_failed_request_is_a_row_and_a_miss(prepared_datasets: Path) -> None:
    """A seeded 10% of RAG requests answer 500 (fault injection): each is a failed row of
    the configured case and counts as a miss in its hit rate."""
    # the first two draws of the service's seed-5 fault stream pass (0.62, 0.74): the
    # question list and the cache clear get through, then the stream's requests face it
    faults = [{"path_prefix": "/api/v1/rag", "error_share": 0.1}]
    cfg = _cfg(prepared_datasets, repetitions=1, faults=faults)
    frame = cache_benchmark.run(cfg, seed=5)
    failed = frame[(frame["case"] == "configured") & (frame["metric"] == "latency")
                   & (frame["status"] != "ok")]  # fmt: skip
    assert 10 < len(failed) < 70  # about 10% of 500 requests
    assert set(failed["status"]) == {"error:HTTP500"}
    served = frame[frame["case"].isin(["hit", "miss"]) & (frame["metric"] == "latency")]
    assert len(served) + len(failed) == 500
    hits = served[(served["case"] == "hit") & ~served["warmup"]]
    rate = _rows(frame, "configured", "hit_rate")["value"].item()
    assert rate == pytest.approx(len(hits) / 400)  # over every measured request, failed too
