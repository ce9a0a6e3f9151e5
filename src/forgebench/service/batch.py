"""Batch throughput: the service's background jobs processing database pages, per minute.

Why: "10,000+ operations per minute" is a sustained rate of real work, not a burst. A job
here is a batch of ``pages_per_job`` pages of the database endpoint's JOIN query
(``POST /api/v1/jobs?kind=db_pages``, run in the service's job worker threads, see
``service.app``); one page is one operation. ``in_flight`` clients each submit a job,
long-poll its result (``GET /api/v1/jobs/<id>?wait=``) and submit the next, so the job
queue never runs dry, for ``warmup_s`` (rows marked warmup) then ``duration_s``.

Every result is checked: the job's digest must equal the one computed here from the
database suite's generator (``Dataset.expected_page``, independent of the server); a
different one is ``mismatch``, and a failed submit or wait is ``error:<Class>`` or
``timeout``. Only pages of verified jobs count.

Rows (case ``batch``): ``job_latency`` per job (submit to verified result; failed jobs as
failed rows); ``window_ops_per_minute`` per window of ``window_s`` (pages of verified jobs
completed in it); ``ops_per_minute``, the mean of those windows, with ``_ci_low`` and
``_ci_high`` by batch means over the window series (``stats.batch_means_ci``: windows next
to each other are correlated); ``failure_share`` of the pages attempted with its
Clopper-Pearson interval. The server is one forgebench.outage guard: once tripped, no job
is submitted and each client's remaining window is one ``error:Outage`` row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.database.dataset import Sizes, generate
from forgebench.network.echo_latency import WallClock
from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import scenarios
from forgebench.service.app import batch_digest, page_digest
from forgebench.service.loadgen import HttpConnection, ProtocolError, failure_status, run_async
from forgebench.service.server import ServiceAddress, service_process

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "batch_throughput"
KEY = "suites.service.benchmarks.batch_throughput"
CASE = "batch"

log = logging.getLogger(__name__)


@dataclass
class Jobs:
    """Each job's submit and end times (ns), status, pages and whether it was warm-up."""

    submit_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    warmup: list[bool] = field(default_factory=list)
    start_ns: int = 0  # the measured window's start (after warm-up)
    stop_ns: int = 0  # its end


def expected_digests(cfg: Mapping[str, Any], seed: int) -> tuple[list[str], int]:
    """Every page's digest, computed from the generator (not the server); and page size."""
    db = cfg["db"]
    data = generate(Sizes(int(db["users"]), int(db["posts"]), int(db["comments"])), seed)
    size = int(db["page_size"])
    n_pages = -(-data.sizes.users // size)
    return [page_digest(data.expected_page(p, size)) for p in range(n_pages)], size


async def drive(
    addr: ServiceAddress, cfg: Mapping[str, Any], digests: list[str], guard: OutageGuard
) -> Jobs:
    """``in_flight`` clients submitting and awaiting page batches for warm-up + window."""
    clock = time.perf_counter_ns
    count = int(cfg["pages_per_job"])
    timeout_s = float(cfg["timeout_s"])
    n_pages = len(digests)
    jobs = Jobs()
    t0 = clock()
    jobs.start_ns = t0 + int(float(cfg["warmup_s"]) * 1e9)
    jobs.stop_ns = jobs.start_ns + int(float(cfg["duration_s"]) * 1e9)
    next_job = iter(range(10**12))
    host = addr.host_header or f"{addr.host}:{addr.port}"

    def raw(method: str, path: str) -> bytes:
        return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode()

    async def one(conn: HttpConnection, first: int) -> str:
        code, body = await conn.call(
            raw("POST", f"/api/v1/jobs?kind=db_pages&first={first}&count={count}"), timeout_s
        )
        if code != 202:
            return f"error:HTTP{code}"
        job_id = int(json.loads(body)["id"])
        code, body = await conn.call(
            raw("GET", f"/api/v1/jobs/{job_id}?wait={timeout_s:.3f}"), timeout_s + 1.0
        )
        if code != 200:
            return f"error:HTTP{code}"
        want = batch_digest([digests[(first + i) % n_pages] for i in range(count)])
        return "ok" if json.loads(body).get("result") == want else "mismatch"

    async def client() -> None:
        conn = HttpConnection(addr.host, addr.port, ssl=addr.ssl)
        try:
            while (now := clock()) < jobs.stop_ns:
                if guard.tripped:
                    jobs.submit_ns.append(now)
                    jobs.end_ns.append(now)
                    jobs.status.append(OUTAGE_STATUS)
                    jobs.pages.append(count)
                    jobs.warmup.append(now < jobs.start_ns)
                    return
                first = (next(next_job) * count) % n_pages
                try:
                    status = await one(conn, first)
                except (OSError, TimeoutError, ProtocolError, ValueError, KeyError) as exc:
                    status = failure_status(exc)  # ValueError/KeyError: an unreadable answer
                end = clock()
                guard.record(status == "ok", (end - now) * 1e-9)
                if status != "ok":
                    conn.close()
                jobs.submit_ns.append(now)
                jobs.end_ns.append(end)
                jobs.status.append(status)
                jobs.pages.append(count)
                jobs.warmup.append(now < jobs.start_ns)
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(int(cfg["in_flight"]))))
    return jobs


def window_rates(jobs: Jobs, window_s: float) -> np.ndarray:
    """Pages of verified jobs completed in each window of the measured span, per minute."""
    width = int(window_s * 1e9)
    n_windows = max(1, (jobs.stop_ns - jobs.start_ns) // width)
    pages = np.zeros(n_windows)
    for end, status, n in zip(jobs.end_ns, jobs.status, jobs.pages, strict=True):
        w = (end - jobs.start_ns) // width
        if status == "ok" and 0 <= w < n_windows:
            pages[w] += n
    return pages * 60.0 / window_s


def add_rows(rec: Recorder, params: Mapping[str, Any], jobs: Jobs, cfg: Mapping[str, Any]) -> None:
    """The rows named in the module docstring."""
    clock = WallClock()
    at = clock.at
    for i, (s, e, st, w) in enumerate(
        zip(jobs.submit_ns, jobs.end_ns, jobs.status, jobs.warmup, strict=True)
    ):
        rec.add(CASE, params, "job_latency", "s", False, (e - s) * 1e-9 if st == "ok" else math.nan,
                sample=i, warmup=w, status=st, started_at=at(s))  # fmt: skip
    window_s = float(cfg["window_s"])
    rates = window_rates(jobs, window_s)
    started = at(jobs.start_ns)
    for i, r in enumerate(rates):
        rec.add(CASE, {**params, "window_s": window_s}, "window_ops_per_minute",
                "operations/minute", True, float(r), sample=i, started_at=started)  # fmt: skip
    low, high = stats.batch_means_ci(rates, batches=int(cfg["batches"]))
    ok_ci = math.isfinite(low) and math.isfinite(high)
    summary = {**params, "windows": len(rates), "batches": int(cfg["batches"])}
    for metric, value in (("ops_per_minute", float(rates.mean())), ("ops_per_minute_ci_low", low),
                          ("ops_per_minute_ci_high", high)):  # fmt: skip
        status = "ok" if metric == "ops_per_minute" or ok_ci else "error:TooFewWindows"
        rec.add(CASE, summary, metric, "operations/minute", True, value, status=status,
                started_at=started)  # fmt: skip
    measured = [not w for w in jobs.warmup]
    pages = np.asarray(jobs.pages)[measured]
    failed = np.asarray([s != "ok" for s in jobs.status])[measured]
    n_pages, n_failed = int(pages.sum()), int(pages[failed].sum())
    if n_pages:
        flo, fhi = stats.proportion_ci(n_failed, n_pages)
        counted = {**params, "pages": n_pages, "failed_pages": n_failed}
        for metric, value in (("failure_share", n_failed / n_pages), ("failure_share_ci_low", flo),
                              ("failure_share_ci_high", fhi)):  # fmt: skip
            rec.add(CASE, counted, metric, "fraction", False, value, started_at=started)
    log.info(
        "%s: %d jobs (%d failed) in %.0f s; %.0f pages/minute (CI %.0f-%.0f); failures %s",
        CASE, int(sum(measured)), int(failed.sum()), (jobs.stop_ns - jobs.start_ns) * 1e-9,
        rates.mean(), low, high,
        {s: jobs.status.count(s) for s in set(jobs.status) if s != "ok"},
    )  # fmt: skip


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service, drive page batches through its jobs, always stop it."""
    digests, page_size = expected_digests(cfg, seed)
    settings = scenarios.server_settings(cfg, seed, rag=False)
    params = {
        "operation": "db_page",
        "page_size": page_size,
        "pages_per_job": int(cfg["pages_per_job"]),
        "in_flight": int(cfg["in_flight"]),
        "job_workers": settings["job_workers"],
        "duration_s": float(cfg["duration_s"]),
        "warmup_s": float(cfg["warmup_s"]),
    }
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    guard = OutageGuard(OutageLimits.from_config(cfg), f"{NAME} on the service")
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        jobs = run_async(drive(addr, cfg, digests, guard))
    add_rows(rec, params, jobs, cfg)
    return rec.frame()
