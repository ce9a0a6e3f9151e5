"""HTTP service responsiveness: every endpoint of the real service, closed loop, graded.

Why: the system we replace counted a refused HTTP connection as a success. Here a real
Starlette service runs under uvicorn in its own process (``service.server``), and every
request is a row: latency from send to the last byte of the answer, or a failed row
(non-2xx, timeout, refused, wrong content). Per endpoint and concurrency level (case
``<endpoint>_<users>u``): a warm-up (rows kept, flagged), the measured run until both
``min_duration_s`` and ``min_queries`` are met, error rate per window, rates, generator
CPU and the original's grade (``service.grades``). SLA verdicts (mean latency under
100 ms, error rate under 0.1 %) are targets in config/config.yaml.

The background job (case ``job_<users>u``, metric ``completion_latency``) is two requests:
``POST /api/v1/jobs`` (the server starts a SHA-256 chain in a worker thread) and
``GET /api/v1/jobs/<id>?wait=<timeout>`` (answers when the job is done); its latency is
submit to done. Every job's result is recomputed here after the run; a different one is
a ``mismatch``.

With ``target_url`` set, nothing is started and the built-in endpoints are not used: each
of ``target_paths`` is a case (``<path slug>_<users>u``, e.g. ``items_id_1_10u``) against
that URL, a request is ok when it answers 2xx within ``timeout_s`` (answers cannot be
verified), and the params say ``"target": "external"`` (``forgebench.service.target``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.network.echo_latency import WallClock
from forgebench.record import Recorder
from forgebench.service.app import job_digest
from forgebench.service.loadgen import (
    MAX_CONSECUTIVE_FAILURES,
    HttpConnection,
    Limits,
    ProtocolError,
    RunResult,
    _CpuSampler,
    closed_loop,
    failure_status,
    run_async,
)
from forgebench.service.scenarios import (
    ENDPOINTS,
    add_request_rows,
    add_run_rows,
    describe,
    endpoint_requests,
    server_settings,
)
from forgebench.service.server import ServiceAddress, service_process
from forgebench.service.target import ExternalTarget, announce, case_names, external_target

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "responsiveness"
KEY = "suites.service.benchmarks.responsiveness"

log = logging.getLogger(__name__)


async def job_loop(
    addr: ServiceAddress, users: int, limits: Limits, rounds: int, first_seed: int
) -> RunResult:
    """Closed loop of submit-then-wait jobs; ``kind`` holds each job's seed offset."""
    res = RunResult(mode="closed", users=users, connections=users)
    clock = time.perf_counter_ns
    cpu = _CpuSampler(res)
    cpu.start()
    start = res.start_ns = clock()
    min_end = start + int(limits.min_duration_s * 1e9)
    cap_end = start + int(limits.max_duration_s * 1e9)
    host = f"Host: {addr.host}:{addr.port}\r\nContent-Length: 0\r\n\r\n"
    counter = iter(range(10**9))
    reasons: set[str] = set()

    async def user() -> None:
        conn = HttpConnection(addr.host, addr.port)
        consecutive = 0
        try:
            while True:
                now = clock()
                if now >= cap_end:
                    reasons.add("time cap")
                    return
                if res.n >= limits.min_queries and now >= min_end:
                    return
                j = next(counter)
                submit = f"POST /api/v1/jobs?seed={first_seed + j}&rounds={rounds} HTTP/1.1\r\n"
                t0 = clock()
                body = b""
                try:
                    code, body = await conn.call((submit + host).encode(), limits.timeout_s)
                    status = "ok" if code == 202 else f"error:HTTP{code}"
                    if status == "ok":
                        job_id = int(json.loads(body)["id"])
                        left = limits.timeout_s - (clock() - t0) * 1e-9
                        wait = f"GET /api/v1/jobs/{job_id}?wait={left:.3f} HTTP/1.1\r\n"
                        code, body = await conn.call((wait + host).encode(), left + 1.0)
                        if code == 202:
                            status = "timeout"  # still pending when the wait ran out
                        elif code != 200:
                            status = f"error:HTTP{code}"
                except (OSError, TimeoutError, ProtocolError) as exc:
                    status = failure_status(exc)
                except (ValueError, KeyError):
                    status = "error:ProtocolError"
                t1 = clock()
                res.add(t0, t0, t1, status, j, body if status == "ok" else None)
                if status == "ok":
                    consecutive = 0
                else:
                    conn.close()
                    consecutive += 1
                    if consecutive >= MAX_CONSECUTIVE_FAILURES:
                        reasons.add(f"{consecutive} consecutive failures")
                        return
        finally:
            conn.close()

    try:
        import asyncio

        await asyncio.gather(*(user() for _ in range(users)))
    finally:
        res.stop_ns = clock()
        cpu.stop()
    res.stop_reason = ", ".join(sorted(reasons)) or "target met"
    return res


def verify_jobs(res: RunResult, rounds: int, first_seed: int) -> int:
    """Recompute every ok job's result; a different one becomes ``mismatch``. Returns count."""
    bad = 0
    for i, (status, body, j) in enumerate(zip(res.status, res.bodies, res.kind, strict=True)):
        if status != "ok":
            continue
        try:
            got = json.loads(body or b"{}").get("result")
        except ValueError:
            got = None
        if got != job_digest(first_seed + j, rounds):
            res.status[i] = "mismatch"
            bad += 1
    return bad


def _limits(cfg: Mapping[str, Any]) -> Limits:
    return Limits(
        float(cfg["min_duration_s"]),
        int(cfg["min_queries"]),
        float(cfg["max_duration_s"]),
        float(cfg["timeout_s"]),
    )


def measure_paths(
    cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress, target: ExternalTarget
) -> pd.DataFrame:
    """Every path of a user's service at every concurrency level; ok = 2xx in time."""
    limits = _limits(cfg)
    warm = Limits(0.0, max(1, int(cfg["warmup_queries"])), limits.max_duration_s, limits.timeout_s)
    window_s = float(cfg["window_s"])
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    total = len(target.paths) * len(cfg["users"])
    done = 0
    options = addr.client_options()
    for request, slug in zip(target.requests(), case_names(target.paths), strict=True):
        for users in cfg["users"]:
            users = int(users)
            case = f"{slug}_{users}u"
            params = {"endpoint": request.name, "users": users, "mode": "closed",
                      **target.params()}  # fmt: skip
            clock = WallClock()
            wres = run_async(closed_loop(addr.host, addr.port, [request], users, warm,
                                         seed=seed, **options))  # fmt: skip
            clock2 = WallClock()
            res = run_async(closed_loop(addr.host, addr.port, [request], users, limits,
                                        seed=seed + 1, **options))  # fmt: skip
            add_request_rows(rec, case, params, wres, clock, warmup=True)
            add_request_rows(rec, case, params, res, clock2)
            name = add_run_rows(rec, case, params, res, clock2, window_s=window_s)
            done += 1
            level = logging.WARNING if res.n_ok < res.n else logging.INFO
            log.log(level, "[%d/%d] %s (GET %s): %s; grade %s", done, total, case,
                    request.path, describe(res), name)  # fmt: skip
    return rec.frame()


def measure(cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress) -> pd.DataFrame:
    """Every configured endpoint at every concurrency level against a running service
    (``target_url``'s paths instead when the section names one)."""
    target = external_target(cfg, KEY)
    if target is not None:
        return measure_paths(cfg, seed=seed, addr=addr, target=target)
    limits = _limits(cfg)
    warm = Limits(0.0, max(1, int(cfg["warmup_queries"])), limits.max_duration_s, limits.timeout_s)
    window_s = float(cfg["window_s"])
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    endpoints = list(cfg["endpoints"])
    total = len(endpoints) * len(cfg["users"])
    done = 0
    rounds = int(cfg["job"]["rounds"])
    for endpoint in endpoints:
        requests = endpoint_requests(endpoint, addr, cfg, seed) if endpoint != "job" else []
        for users in cfg["users"]:
            users = int(users)
            case = f"{endpoint}_{users}u"
            params = {"endpoint": endpoint, "users": users, "mode": "closed"}
            metric = "latency"
            if endpoint == "job":
                metric = "completion_latency"
                params = {**params, "rounds": rounds, "latency": "submit to completion"}
                clock = WallClock()
                wres = run_async(job_loop(addr, users, warm, rounds, seed * 1_000_003))
                verify_jobs(wres, rounds, seed * 1_000_003)
                clock2 = WallClock()
                res = run_async(job_loop(addr, users, limits, rounds, seed * 1_000_003 + 500_000))
                bad = verify_jobs(res, rounds, seed * 1_000_003 + 500_000)
                if bad:
                    log.warning("%s: %d job results differ from the recomputed ones", case, bad)
            else:
                clock = WallClock()
                wres = run_async(
                    closed_loop(addr.host, addr.port, requests, users, warm, seed=seed)
                )
                clock2 = WallClock()
                res = run_async(
                    closed_loop(addr.host, addr.port, requests, users, limits, seed=seed + 1)
                )
            add_request_rows(rec, case, params, wres, clock, warmup=True, metric=metric)
            add_request_rows(rec, case, params, res, clock2, metric=metric)
            name = add_run_rows(rec, case, params, res, clock2, window_s=window_s)
            done += 1
            level = logging.WARNING if res.n_ok < res.n else logging.INFO
            log.log(level, "[%d/%d] %s: %s; grade %s", done, total, case, describe(res), name)
    return rec.frame()


def check_config(cfg: Mapping[str, Any]) -> None:
    """Config mistakes surface before a server starts."""
    unknown = [e for e in cfg["endpoints"] if e not in ENDPOINTS]
    if unknown or not cfg["endpoints"]:
        raise ForgebenchError(
            f"{KEY}.endpoints: {list(cfg['endpoints'])} must be a non-empty subset of "
            f"{list(ENDPOINTS)}"
        )
    if not cfg["users"] or any(int(u) < 1 for u in cfg["users"]):
        raise ForgebenchError(f"{KEY}.users: levels must be >= 1, got {list(cfg['users'])}")
    if not math.isfinite(float(cfg["timeout_s"])) or float(cfg["timeout_s"]) <= 0:
        raise ForgebenchError(f"{KEY}.timeout_s: must be > 0, got {cfg['timeout_s']}")
    external_target(cfg, KEY)


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service (RAG pipeline only if the rag endpoint is measured), measure, stop;
    or measure ``target_url`` without starting anything."""
    check_config(cfg)
    target = external_target(cfg, KEY)
    if target is not None:
        addr = target.address()
        announce(target, addr, float(cfg["timeout_s"]), KEY)
        return measure_paths(cfg, seed=seed, addr=addr, target=target)
    settings = server_settings(cfg, seed, rag="rag" in cfg["endpoints"])
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d)", addr.url, addr.pid)
        return measure(cfg, seed=seed, addr=addr)
