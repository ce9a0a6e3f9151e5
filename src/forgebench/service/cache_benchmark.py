"""Cache hit rate of the service's RAG answer cache under a seeded Zipf question stream.

Why: the original claimed a cache hit rate over 90% without saying of what cache, what
size or what traffic. Here the cache is the service's RAG answer cache (an LRU of
``cache_size`` answers, ``forgebench.service.answer_cache``), the traffic a seeded Zipf
stream (exponent ``zipf_exponent``) over every BoolQ validation question the service
serves, and every request goes through the real HTTP service: a miss runs a BM25 ranking
over all passages, a hit returns the stored answer.

Per repetition (a fresh stream seed; the cache is emptied through
``POST /api/v1/rag/cache/clear``): ``warmup_requests`` fill the cache (rows flagged warmup),
then ``requests`` are measured, in order on one keep-alive connection, so the service sees
exactly the stream. Each answer says ``hit`` or ``miss``; the same stream replayed through
the same LRU class in-process must give the same flag for every request (otherwise a
``mismatch`` row), and a hit's answer must equal the first computed answer of its question.

Rows:

* ``configured``: ``hit_rate`` of the measured requests with ``hit_rate_ci_low``/``_high``
  by batch means (requests and hits are correlated through the cache's state:
  ``stats.intervals.batch_means_ci``, ``batches`` batches per repetition, pooled); a failed
  request (error, timeout, a wrong answer) counts as a miss in it and is a failed
  ``latency`` row of this case; ``replay_agrees`` (1 when every flag equals the replay's);
* ``hit`` / ``miss``: per request, ``latency`` (client: send to last byte) and
  ``served_time`` (server: lookup plus, on a miss, the BM25 ranking);
* ``curve_<size>``: ``hit_rate`` and its interval at each of ``curve_sizes``, from
  in-process replays of the measured streams (the hit rate of an LRU is a function of the
  stream alone; the replay at ``cache_size`` equals the service's, checked above);
* ``size_for_target``: ``cache_size`` (entries), the smallest size whose replayed hit-rate
  interval lies wholly above ``target_hit_rate`` (binary search over sizes), beside
  ``cache_size_point`` where the point estimate first reaches it.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder
from forgebench.service.answer_cache import replay_hits, zipf_stream
from forgebench.service.loadgen import (
    MAX_CONSECUTIVE_FAILURES,
    HttpConnection,
    ProtocolError,
    failure_status,
    run_async,
)
from forgebench.service.scenarios import _get_json, server_settings
from forgebench.service.server import ServiceAddress, service_process
from forgebench.stats.intervals import batch_means_ci, mean_ci

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "answer_cache"
KEY = "suites.service.benchmarks.answer_cache"

log = logging.getLogger(__name__)


def _post(addr: ServiceAddress, path: str, timeout_s: float) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(addr.url + path, data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def drive(
    addr: ServiceAddress, questions: list[str], stream: np.ndarray, timeout_s: float
) -> dict[str, Any]:
    """Send ``stream``'s questions in order on one connection; per request: status, the
    service's flag (True = hit), client latency (s), server time (s), the answer."""
    n = len(stream)
    status: list[str] = []
    flag = np.zeros(n, dtype=bool)
    latency = np.full(n, np.nan)
    served = np.full(n, np.nan)
    first_answer: dict[int, Any] = {}
    host = f"Host: {addr.host}:{addr.port}\r\n\r\n"
    raws = {}
    conn = HttpConnection(addr.host, addr.port)
    consecutive = 0
    try:
        for i, key in enumerate(stream.tolist()):
            raw = raws.get(key)
            if raw is None:
                raw = raws[key] = (
                    f"GET /api/v1/rag?q={quote(questions[key])} HTTP/1.1\r\n{host}".encode()
                )
            t0 = time.perf_counter()
            try:
                code, body = await conn.call(raw, timeout_s)
                st = "ok" if code == 200 else f"error:HTTP{code}"
            except (OSError, TimeoutError, ProtocolError) as exc:
                st, body = failure_status(exc), b""
            latency[i] = time.perf_counter() - t0
            if st == "ok":
                try:
                    doc = json.loads(body)
                    flag[i] = doc["cache"] == "hit"
                    served[i] = float(doc["served_s"])
                    hits = doc["hits"]
                except (ValueError, KeyError, TypeError):
                    st, hits = "error:ProtocolError", None
                if st == "ok" and not hits:
                    st = "mismatch"  # every question has passages sharing its words
                elif st == "ok" and first_answer.setdefault(key, hits) != hits:
                    st = "mismatch"  # a cached answer differs from the computed one
            status.append(st)
            if st.startswith("error:") or st == "timeout":
                conn.close()
                conn = HttpConnection(addr.host, addr.port)
                consecutive += 1
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    status.extend(["error:Outage"] * (n - len(status)))
                    break
            else:
                consecutive = 0
    finally:
        conn.close()
    return {"status": status, "hit": flag, "latency": latency, "served": served}


def _interval(per_rep: list[np.ndarray], batches: int) -> tuple[float, float, float]:
    """Mean hit rate over every repetition's measured requests, and the t interval over
    all repetitions' batch means (``batches`` contiguous batches per repetition)."""
    means = []
    for hits in per_rep:
        edges = np.linspace(0, hits.size, batches + 1).astype(int)
        means.extend(hits[a:b].mean() for a, b in itertools.pairwise(edges))
    if len(per_rep) == 1:
        low, high = batch_means_ci(per_rep[0].astype(float), batches=batches)
    else:
        low, high = mean_ci(np.asarray(means))
    return float(np.mean(np.concatenate(per_rep))), low, high


def _add_rate(rec: Recorder, case: str, params: dict, rate: tuple[float, float, float]) -> None:
    for suffix, value in zip(("", "_ci_low", "_ci_high"), rate, strict=True):
        status = "ok" if np.isfinite(value) else "skipped"
        rec.add(case, params, f"hit_rate{suffix}", "fraction", True, value, status=status)


def smallest_size(
    streams: list[tuple[np.ndarray, int]], n_keys: int, target: float, batches: int
) -> tuple[int, int]:
    """Smallest LRU sizes whose replayed hit rate is above ``target``: by the interval's
    lower bound, and by the point estimate (-1: not even at ``n_keys``). Binary search:
    an LRU's hit rate does not fall as it grows (inclusion property)."""
    rates: dict[int, tuple[float, float, float]] = {}

    def rate(size: int) -> tuple[float, float, float]:
        if size not in rates:
            per_rep = [replay_hits(s, size)[w:].astype(float) for s, w in streams]
            rates[size] = _interval(per_rep, batches)
        return rates[size]

    def search(index: int) -> int:
        if not rate(n_keys)[index] > target:
            return -1
        lo, hi = 1, n_keys
        while lo < hi:
            mid = (lo + hi) // 2
            if rate(mid)[index] > target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    return search(1), search(0)


def measure(cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress) -> pd.DataFrame:
    timeout_s = float(cfg["timeout_s"])
    code, doc = _get_json(addr, "/api/v1/rag/queries", timeout_s)
    questions = list(doc.get("queries", [])) if code == 200 else []
    if not questions:
        raise ForgebenchError(f"{KEY}: the service's RAG endpoint is unavailable ({code} {doc})")
    distinct = list(dict.fromkeys(questions))
    size = int(cfg["cache_size"])
    warm = int(cfg["warmup_requests"])
    n_meas = int(cfg["requests"])
    batches = int(cfg["batches"])
    exponent = float(cfg["zipf_exponent"])
    base = {"cache_size": size, "zipf_exponent": exponent, "keys": len(distinct),
            "warmup_requests": warm, "requests": n_meas, "policy": "LRU",
            "key": "question, k, mode"}  # fmt: skip
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    streams: list[tuple[np.ndarray, int]] = []
    measured_hits: list[np.ndarray] = []
    agree = True
    for rep in range(int(cfg["repetitions"])):
        if _post(addr, "/api/v1/rag/cache/clear", timeout_s) != 200:
            raise ForgebenchError(f"{KEY}: the service has no answer cache to clear")
        stream = zipf_stream(len(distinct), warm + n_meas, exponent, seed + 7919 * rep)
        t0 = time.perf_counter()
        got = run_async(drive(addr, distinct, stream, timeout_s))
        wall = time.perf_counter() - t0
        replay = replay_hits(stream, size)
        ok = np.asarray([s == "ok" for s in got["status"]], dtype=bool)
        same = bool(np.array_equal(got["hit"][ok], replay[ok])) and bool(ok.all())
        agree = agree and same
        params = {**base, "stream_seed": seed + 7919 * rep}
        for i, st in enumerate(got["status"]):
            if st != "ok":  # no answer: a miss in the hit rate, and a failed row here
                rec.add("configured", params, "latency", "s", False, np.nan, repetition=rep,
                        sample=i, warmup=i < warm, status=st)  # fmt: skip
                continue
            kind = "hit" if got["hit"][i] else "miss"
            for metric, arr in (("latency", got["latency"]), ("served_time", got["served"])):
                rec.add(kind, params, metric, "s", False, float(arr[i]), repetition=rep,
                        sample=i, warmup=i < warm)  # fmt: skip
        hits = got["hit"][warm:] & ok[warm:]
        measured_hits.append(hits.astype(float))
        streams.append((stream, warm))
        rec.add("configured", params, "replay_agrees", "bool", True, 1.0 if same else np.nan,
                repetition=rep, status="ok" if same else "mismatch")  # fmt: skip
        rec.add("configured", params, "hit_rate_repetition", "fraction", True,
                float(hits.mean()), repetition=rep)  # fmt: skip
        rec.add("configured", params, "requests_per_s", "requests/s", True,
                len(stream) / wall, repetition=rep)  # fmt: skip
        lat, srv, hit_mask = got["latency"][warm:], got["served"][warm:], got["hit"][warm:]
        log.info(
            "repetition %d: hit rate %.4f over %d requests (%.0f req/s); median latency hit "
            "%.3f ms, miss %.3f ms; server time hit %.4f ms, miss %.3f ms; replay %s",
            rep, hits.mean(), n_meas, len(stream) / wall,
            1e3 * np.nanmedian(lat[hit_mask]), 1e3 * np.nanmedian(lat[~hit_mask]),
            1e3 * np.nanmedian(srv[hit_mask]), 1e3 * np.nanmedian(srv[~hit_mask]),
            "agrees" if same else "DIFFERS",
        )  # fmt: skip
    _add_rate(rec, "configured", {**base, "interval": "batch means"},
              _interval(measured_hits, batches))  # fmt: skip
    replay_params = {**base, "source": "in-process replay of the measured streams"}
    for curve_size in sorted({int(s) for s in cfg["curve_sizes"]} | {size}):
        per_rep = [replay_hits(s, curve_size)[w:].astype(float) for s, w in streams]
        _add_rate(rec, f"curve_{curve_size}", {**replay_params, "cache_size": curve_size},
                  _interval(per_rep, batches))  # fmt: skip
    target = float(cfg["target_hit_rate"])
    by_interval, by_point = smallest_size(streams, len(distinct), target, batches)
    params = {**replay_params, "target_hit_rate": target, "search": "binary, 1..keys"}
    for metric, found in (("cache_size", by_interval), ("cache_size_point", by_point)):
        rec.add("size_for_target", params, metric, "entries", False, float(found),
                status="ok" if found > 0 else "skipped")  # fmt: skip
    log.info("smallest size reaching %.0f%%: %d (interval), %d (point)", 100 * target,
             by_interval, by_point)  # fmt: skip
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service with the answer cache, measure, always stop it."""
    if int(cfg["cache_size"]) < 1 or int(cfg["requests"]) < 2 * int(cfg["batches"]):
        raise ForgebenchError(f"{KEY}: needs cache_size >= 1 and requests >= 2 x batches")
    settings = server_settings(cfg, seed, rag=True)
    settings["rag"]["answer_cache_size"] = int(cfg["cache_size"])
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d)", addr.url, addr.pid)
        return measure(cfg, seed=seed, addr=addr)
