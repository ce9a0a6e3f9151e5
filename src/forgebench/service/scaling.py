"""How the service scales: worker processes behind one port, and threads per worker.

Why: a throughput figure of one server process says nothing about how far more processes
or more threads take it on this machine, and "it scales" is only a claim until each
point has an interval and the resource that ran out is named.

Points (every one the same app behind uvicorn's supervisor, ``service.supervisor``, so
1 worker is served the same way as 4):

* **horizontal**: ``workers`` worker processes on one port (the kernel spreads accepted
  connections over them), each with its default database threads (``horizontal_threads``,
  0 = anyio's 40);
* **vertical**: one worker whose database queries (``run_in_threadpool``) may use
  ``threads`` threads (anyio's limiter, the ``request_threads`` app setting; read back
  from ``/api/v1/info``).

All points' servers are started first (idle workers cost no CPU), then measured in
``repetitions`` interleaved rounds, so machine noise falls on every point alike; each
round of a point is a closed loop of ``closed_users`` users for ``closed_s`` (its
successful responses per second: the saturation throughput) and an open loop at the
fixed Poisson ``open_rate`` for ``open_s`` (its p99 from scheduled send time, so no
coordinated omission). Every answer is checked against the page digest computed here
(``scenarios.endpoint_requests``): every point does the same verified work.

What saturates: the service's process tree is sampled (``forgebench.sampler``) during
the closed loop; its CPU, the generator's (one thread, in this process) and the
machine's cores say which ran out (``bottleneck`` in the throughput row's params):
``cores`` when service + generator use >= 90% of every core, ``generator`` when the
generator's thread is saturated, ``workers`` when each worker is a busy core (one
Python thread at a time: the GIL), else ``waiting`` (locks, the database, the network).

Rows, per case (``horizontal_<w>w``, ``vertical_<t>t``) and repetition: ``throughput``
(requests/s), ``latency_p99`` (s; ``censored`` where timeouts reach it), ``error_share``
of each loop, ``service_cpu_percent`` and ``generator_cpu_percent`` (% of one core) and
``generator_cpu_share`` (% of the machine) in the closed loop. Intervals over the
repetitions are the report's (``stats.mean_ci``).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder
from forgebench.sampler import ResourceSampler
from forgebench.service.loadgen import (
    SATURATION_PERCENT,
    HttpRequest,
    Limits,
    RunResult,
    closed_loop,
    open_loop,
    poisson_schedule,
    run_async,
)
from forgebench.service.scenarios import _get_json, endpoint_requests, server_settings
from forgebench.service.server import ServiceAddress
from forgebench.service.supervisor import SupervisedService

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "scaling"
KEY = "suites.service.benchmarks.scaling"
LOADABLE = ("health", "status", "info", "db_page")
#: anyio's default thread limiter: what ``request_threads: 0`` leaves a worker with.
ANYIO_DEFAULT_THREADS = 40

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One server configuration of the sweep."""

    axis: str  # "horizontal" or "vertical"
    workers: int
    threads: int  # request_threads setting; 0 = anyio's default

    @property
    def case(self) -> str:
        if self.axis == "horizontal":
            return f"horizontal_{self.workers}w"
        return f"vertical_{self.threads}t"

    @property
    def effective_threads(self) -> int:
        return self.threads or ANYIO_DEFAULT_THREADS


def sweep_points(cfg: Mapping[str, Any]) -> list[Point]:
    """Horizontal points (``workers``), then vertical ones (``threads``, one worker)."""
    base = int(cfg["horizontal_threads"])
    return [Point("horizontal", int(w), base) for w in cfg["workers"]] + [
        Point("vertical", 1, int(t)) for t in cfg["threads"]
    ]


def bottleneck(
    service_cpu: float, generator_cpu: float, other_cpu: float, workers: int, cores: int
) -> str:
    """Which resource ran out in a closed loop, from CPU in % of one core (module doc);
    ``other_cpu`` is every process outside the service's tree, the generator included."""
    if service_cpu + max(other_cpu, generator_cpu) >= 0.9 * 100.0 * cores:
        return "cores"
    if generator_cpu > SATURATION_PERCENT:
        return "generator"
    if service_cpu >= 0.9 * 100.0 * min(workers, cores):
        return "workers"
    return "waiting"


def _start_all(
    stack: ExitStack, points: list[Point], cfg: Mapping[str, Any], seed: int, folder: Path
) -> list[SupervisedService]:
    """Every point's supervised service, started at once (startup is mostly waiting on
    spawned workers' imports), each stopped when ``stack`` closes, failed start or not."""
    timeout_s = float(cfg["startup_timeout_s"])
    services = []
    for point in points:
        settings = {**server_settings(cfg, seed, rag=False), "request_threads": point.threads}
        workdir = folder / point.case
        workdir.mkdir()
        svc = SupervisedService(settings, workdir, point.workers)
        stack.callback(svc.stop)
        services.append(svc)

    def start(svc: SupervisedService) -> None:
        svc.start(timeout_s)
        pids = svc.wait_workers(timeout_s)
        if len(pids) < svc.workers:
            raise ForgebenchError(f"{KEY}: {len(pids)} of {svc.workers} workers serving")

    with ThreadPoolExecutor(len(services)) as pool:
        for future in [pool.submit(start, svc) for svc in services]:
            future.result()
    return services


def _info_threads(addr: ServiceAddress, timeout_s: float) -> set[int]:
    """The ``request_threads`` the workers report (several connections, so several workers)."""
    seen = set()
    for _ in range(8):
        code, doc = _get_json(addr, "/api/v1/info", timeout_s)
        if code == 200:
            seen.add(int(doc["worker"]["request_threads"]))
    return seen


def _error_share(res: RunResult) -> float:
    return (res.n - res.n_ok) / res.n if res.n else math.nan


def _measure_point(
    rec: Recorder,
    point: Point,
    svc: SupervisedService,
    requests: list[HttpRequest],
    cfg: Mapping[str, Any],
    *,
    rep: int,
    seed: int,
    cores: int,
) -> None:
    """One round of one point: closed loop under a sampler of the group, then open loop."""
    assert svc.proc is not None
    timeout_s = float(cfg["timeout_s"])
    closed_s, open_s = float(cfg["closed_s"]), float(cfg["open_s"])
    users, rate = int(cfg["closed_users"]), float(cfg["open_rate"])
    params = {"axis": point.axis, "workers": point.workers, "threads": point.effective_threads,
              "endpoint": str(cfg["endpoint"]), "cores": cores}  # fmt: skip
    limits = Limits(closed_s, 1, closed_s + 10.0 * timeout_s, timeout_s)
    with ResourceSampler(
        svc.proc.pid, interval_s=float(cfg["sampler_interval_s"]), gpu=False
    ) as sampler:
        closed = run_async(
            closed_loop("127.0.0.1", svc.port, requests, users, limits, seed=seed + rep)
        )
    summary = sampler.summary()
    wall = float(summary["duration_s"])
    service_cpu = 100.0 * float(summary["cpu_time_s"]) / wall if wall > 0 else math.nan
    gen_cpu = closed.cpu_percent
    other_cpu = summary["foreign_cpu_percent_mean"]
    other_cpu = math.nan if other_cpu is None else float(other_cpu)
    ran_out = bottleneck(service_cpu, gen_cpu, other_cpu, point.workers, cores)
    cp = {**params, "mode": "closed", "users": users, "requests": closed.n,
          "generator_saturated": closed.saturated, "bottleneck": ran_out}  # fmt: skip
    ok = closed.n_ok > 0
    rec.add(point.case, cp, "throughput", "requests/s", True,
            closed.throughput if ok else math.nan, repetition=rep,
            status="ok" if ok else "error:NoSuccessfulRequests")  # fmt: skip
    rec.add(point.case, cp, "error_share", "fraction", False, _error_share(closed),
            repetition=rep)  # fmt: skip
    rec.add(point.case, cp, "service_cpu_percent", "percent", False, service_cpu, repetition=rep)
    rec.add(point.case, cp, "generator_cpu_percent", "percent", False, gen_cpu, repetition=rep)
    rec.add(point.case, cp, "generator_cpu_share", "percent", False, gen_cpu / cores,
            repetition=rep)  # fmt: skip
    rec.add(point.case, cp, "other_cpu_percent", "percent", False, other_cpu, repetition=rep,
            status="ok" if math.isfinite(other_cpu) else "unavailable")  # fmt: skip

    schedule = poisson_schedule(rate, open_s, 1, seed + 1000 + rep)
    opened = run_async(
        open_loop(
            "127.0.0.1",
            svc.port,
            requests,
            schedule,
            timeout_s,
            target_rate=rate,
            seed=seed + 1000 + rep,
        )
    )
    op = {**params, "mode": "open", "rate": rate, "requests": opened.n,
          "achieved_rate": opened.achieved_rate,
          "generator_saturated": opened.saturated}  # fmt: skip
    if opened.n:
        p99, censored = opened.percentile(99)
        rec.add(point.case, op, "latency_p99", "s", False, p99, repetition=rep,
                status="censored" if censored else "ok")  # fmt: skip
    else:
        rec.add(point.case, op, "latency_p99", "s", False, math.nan, repetition=rep,
                status="error:NoRequests")  # fmt: skip
    rec.add(point.case, op, "error_share", "fraction", False, _error_share(opened),
            repetition=rep)  # fmt: skip
    log.info("%s round %d: %.0f requests/s closed (%d users; service %.0f%%, generator %.0f%% "
             "of a core: %s); p99 %.2f ms at %g/s; %d + %d failed", point.case, rep,
             closed.throughput, users, service_cpu, gen_cpu, cp["bottleneck"],
             1e3 * opened.percentile(99)[0] if opened.n else math.nan, rate,
             closed.n - closed.n_ok, opened.n - opened.n_ok)  # fmt: skip


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start every point's service, measure them in interleaved rounds, always stop them."""
    endpoint = str(cfg["endpoint"])
    if endpoint not in LOADABLE:
        raise ForgebenchError(f"{KEY}.endpoint: {endpoint!r} is not one of {LOADABLE}")
    points = sweep_points(cfg)
    if not points:
        raise ForgebenchError(f"{KEY}: no point to measure (workers and threads are empty)")
    cores = len(os.sched_getaffinity(0))
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    with tempfile.TemporaryDirectory(prefix="forgebench-scaling-") as tmp, ExitStack() as stack:
        served = list(zip(points, _start_all(stack, points, cfg, seed, Path(tmp)), strict=True))
        addrs = [
            ServiceAddress("127.0.0.1", s.port, s.proc.pid if s.proc else None) for _, s in served
        ]
        requests = endpoint_requests(endpoint, addrs[0], cfg, seed)  # the same for every point
        for (point, svc), addr in zip(served, addrs, strict=True):
            threads = _info_threads(addr, float(cfg["timeout_s"]))
            if threads != {point.effective_threads}:
                raise ForgebenchError(
                    f"{KEY}: {point.case} workers report request_threads {sorted(threads)}, "
                    f"not {point.effective_threads}"
                )
            log.info("%s: %d workers on port %d, %d threads each", point.case, point.workers,
                     svc.port, point.effective_threads)  # fmt: skip
        for rep in range(int(cfg["repetitions"])):
            for point, svc in served:
                _measure_point(rec, point, svc, requests, cfg, rep=rep, seed=seed, cores=cores)
    return rec.frame()
