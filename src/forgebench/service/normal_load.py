"""The service's CPU share under normal load: half the saturation rate measured in the same job.

Why: "CPU under 70% under normal load" says nothing until "normal" is fixed. Here it is
``fraction`` (0.5) of the saturation rate of this service on this machine, measured first
in the same job by a closed-loop probe (``probe_users`` users back to back for
``probe_s`` seconds: its successful responses per second). Then ``repetitions`` open-loop
Poisson runs at ``fraction`` x that rate (``forgebench.service.loadgen.open_loop``, no
coordinated omission), each under a resource sampler of the service's own process tree
(``forgebench.sampler``, ``pid`` = the server's): its CPU share is the tree's CPU time
over (wall time x cores), in percent of the whole machine, so 100 = every core busy.

The load generator runs on the same machine (its CPU is recorded beside, and a probe whose
generator was saturated is flagged in the params: the rate it found is then the pair's, a
lower bound of the service's own).

Rows: ``saturation`` (``throughput`` in requests/s, ``error_share``, the service's
``cpu_share`` during the probe, ``generator_cpu_percent``); ``normal``, one row per
repetition of ``cpu_share`` (the target's: a t interval over repetitions),
``achieved_rate``, ``error_share``, ``latency_p50``/``latency_p99``,
``generator_cpu_percent``. Both cases also give ``cpu_core_percent``, the same CPU time
in percent of one core: one uvicorn process runs its Python on one core at a time (its
database queries in threads release the GIL only in SQLite), so its saturation is often
one busy core, not a busy machine, and the share of the machine alone would hide that.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder
from forgebench.sampler import ResourceSampler
from forgebench.service.loadgen import (
    Limits,
    RunResult,
    closed_loop,
    open_loop,
    poisson_schedule,
    run_async,
)
from forgebench.service.scenarios import endpoint_requests, server_settings
from forgebench.service.server import ServiceAddress, service_process

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "normal_load"
KEY = "suites.service.benchmarks.normal_load"
LOADABLE = ("health", "status", "info", "db_page", "rag")

log = logging.getLogger(__name__)


def cpu_share_percent(cpu_time_s: float, wall_s: float, cores: int) -> float:
    """CPU time over (wall time x cores), in percent of the machine."""
    return 100.0 * cpu_time_s / (wall_s * cores)


def _sampled(addr: ServiceAddress, interval_s: float, run: Any) -> tuple[RunResult, dict]:
    """Run the coroutine ``run`` with the service's process tree under a sampler."""
    assert addr.pid is not None
    with ResourceSampler(addr.pid, interval_s=interval_s, gpu=False) as sampler:
        res = run_async(run)
    return res, sampler.summary()


def _error_share(res: RunResult) -> float:
    return (res.n - res.n_ok) / res.n if res.n else float("nan")


def measure(cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress) -> pd.DataFrame:
    assert addr.pid is not None
    cores = len(os.sched_getaffinity(addr.pid))
    endpoint = str(cfg["endpoint"])
    requests = endpoint_requests(endpoint, addr, cfg, seed)
    timeout_s = float(cfg["timeout_s"])
    interval_s = float(cfg["sampler_interval_s"])
    probe_s = float(cfg["probe_s"])
    users = int(cfg["probe_users"])
    fraction = float(cfg["fraction"])
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    base = {"endpoint": endpoint, "cores": cores, "fraction": fraction}

    limits = Limits(probe_s, 1, probe_s + 10.0 * timeout_s, timeout_s)
    probe, summary = _sampled(addr, interval_s, closed_loop(
        addr.host, addr.port, requests, users, limits, seed=seed))  # fmt: skip
    saturation = probe.throughput
    params = {**base, "mode": "closed", "users": users, "duration_s": probe.wall_s,
              "generator_saturated": probe.saturated}  # fmt: skip
    rec.add("saturation", params, "throughput", "requests/s", True, saturation)
    rec.add("saturation", params, "error_share", "fraction", False, _error_share(probe))
    rec.add("saturation", params, "cpu_share", "percent", False,
            cpu_share_percent(summary["cpu_time_s"], summary["duration_s"], cores))  # fmt: skip
    rec.add("saturation", params, "cpu_core_percent", "percent", False,
            cpu_share_percent(summary["cpu_time_s"], summary["duration_s"], 1))  # fmt: skip
    rec.add("saturation", params, "generator_cpu_percent", "percent", False, probe.cpu_percent)
    log.info("saturation: %.0f requests/s with %d users (%d failed; generator %.0f%% of a "
             "core)", saturation, users, probe.n - probe.n_ok, probe.cpu_percent)  # fmt: skip
    if not saturation > 0:
        raise ForgebenchError(f"{KEY}: the saturation probe got no successful response")

    rate = fraction * saturation
    duration_s = float(cfg["duration_s"])
    for rep in range(int(cfg["repetitions"])):
        schedule = poisson_schedule(rate, duration_s, 1, seed + 1 + rep)
        res, summary = _sampled(addr, interval_s, open_loop(
            addr.host, addr.port, requests, schedule, timeout_s, target_rate=rate,
            seed=seed + 1 + rep))  # fmt: skip
        share = cpu_share_percent(summary["cpu_time_s"], summary["duration_s"], cores)
        one_core = cpu_share_percent(summary["cpu_time_s"], summary["duration_s"], 1)
        params = {**base, "mode": "open", "target_rate": rate, "saturation_rate": saturation,
                  "duration_s": summary["duration_s"], "requests": res.n,
                  "generator_saturated": res.saturated}  # fmt: skip
        rec.add("normal", params, "cpu_share", "percent", False, share, repetition=rep)
        rec.add("normal", params, "cpu_core_percent", "percent", False, one_core,
                repetition=rep)  # fmt: skip
        rec.add("normal", params, "achieved_rate", "requests/s", True, res.achieved_rate,
                repetition=rep)  # fmt: skip
        rec.add("normal", params, "error_share", "fraction", False, _error_share(res),
                repetition=rep)  # fmt: skip
        for q in (50, 99):
            value, censored = res.percentile(q)
            rec.add("normal", {**params, "censored": censored}, f"latency_p{q}", "s", False,
                    value, repetition=rep)  # fmt: skip
        rec.add("normal", params, "generator_cpu_percent", "percent", False, res.cpu_percent,
                repetition=rep)  # fmt: skip
        log.info("normal load %d: %.0f/%.0f requests/s, service CPU %.1f%% of %d cores, "
                 "p99 %.2f ms, %d failed", rep, res.achieved_rate, rate, share, cores,
                 1e3 * stats.percentile(res.latencies_s(), 99), res.n - res.n_ok)  # fmt: skip
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the service, probe saturation, load it at the normal rate, always stop it."""
    if cfg["endpoint"] not in LOADABLE:
        raise ForgebenchError(f"{KEY}.endpoint: {cfg['endpoint']!r} is not one of {LOADABLE}")
    if not 0 < float(cfg["fraction"]) < 1:
        raise ForgebenchError(f"{KEY}.fraction: must be in (0, 1), got {cfg['fraction']}")
    settings = server_settings(cfg, seed, rag=cfg["endpoint"] == "rag")
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d)", addr.url, addr.pid)
        return measure(cfg, seed=seed, addr=addr)
