"""Our load generator against wrk on the same endpoint, same connections, interleaved rounds.

Why: the load generator's numbers are only as good as the generator; wrk (a C generator,
Debian package ``wrk``) on the same service, endpoint (``path``, default ``/health``) and
closed-loop concurrency (``connections`` keep-alive connections) in the same run is the
yardstick. Each round runs both sides for ``duration_s`` (wrk takes whole seconds) in a
seeded random order, so drift of the machine hits both alike. Per side and round:
achieved rate (2xx answers per second), p50 and p99 latency, the generator's CPU seconds
per 1000 requests and failed requests. Per round (case ``ratio``): ours / wrk for each,
and ``*_deviation`` = |ratio - 1|, which the targets read (rate within 10 %, latency
percentiles within 20 %); a round in which either side had failures has failed ratio
rows, so a target cannot pass on partial work.

How each side is measured, alike where possible:

* Latency is send to last byte of the answer on a keep-alive connection; ours from each
  request (``stats.percentile``), wrk's from its own histogram through a Lua ``done()``
  hook (``latency:percentile``, microsecond resolution). wrk 4.1 is not a raw closed
  loop: before ``done()`` it back-fills its histogram for coordinated omission
  (``stats_correct``: with ``e`` = run time / (requests / connections), a latency ``x``
  adds ``x - e``, ``x - 2e``, ... while above ``e``), and no uncorrected figure reaches
  the hook. So ours is corrected the same way (:func:`wrk_corrected_latencies`, on
  whole microseconds) and the compared ``latency_p50``/``_p99`` of both sides are
  corrected figures (params ``"latency": "corrected as wrk 4.1"``); ours uncorrected are
  kept beside them as ``latency_p50_uncorrected``/``_p99_uncorrected``. wrk2, whose open
  loop needs no correction, is not packaged in Debian.
* CPU: our generator is one event loop thread (``time.thread_time``); wrk is a child
  process whose user+system time comes from ``os.wait4``'s rusage. wrk runs
  ``wrk_threads`` threads (default 1, one core like ours).
* Both check answers: ours requires 2xx (and the body ``ok`` from ``/health``); wrk counts
  non-2xx as errors.
* A short unrecorded warm-up of ours before the first round warms the server for both.

With ``target_url`` set, both generators load ``path`` on that URL instead of a started
built-in service; ours then judges only the status (2xx), like wrk, and the rows' params
say ``"target": "external"`` (``forgebench.service.target``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.network.echo_latency import WallClock
from forgebench.record import Recorder
from forgebench.service.loadgen import HttpRequest, Limits, closed_loop, run_async
from forgebench.service.scenarios import server_settings
from forgebench.service.server import ServiceAddress, service_process
from forgebench.service.target import announce, external_target

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "wrk_compare"
KEY = "suites.service.benchmarks.wrk_compare"
INSTALL_HINT = "wrk not found on PATH; install Debian package wrk: apt-get install wrk"

log = logging.getLogger(__name__)

DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "FORGEBENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d " ..
    "timeout=%d p50_us=%.3f p99_us=%.3f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""
_RESULT = re.compile(r"FORGEBENCH ((?:\w+=[\d.]+ ?)+)")


@dataclass(frozen=True)
class SideResult:
    """One side of one round: the figures both generators report alike."""

    rate: float  # 2xx answers per second
    p50_s: float  # corrected for coordinated omission as wrk 4.1 does (see the docstring)
    p99_s: float
    cpu_s: float
    requests: int  # answered requests (2xx and not)
    failures: dict[str, int]
    p50_uncorrected_s: float = math.nan  # ours only: wrk shows none
    p99_uncorrected_s: float = math.nan

    @property
    def cpu_per_1000(self) -> float:
        return 1000.0 * self.cpu_s / self.requests if self.requests else math.nan

    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise ForgebenchError(f"{KEY}: {INSTALL_HINT}")
    return path


def parse_wrk(text: str) -> dict[str, float]:
    """The ``FORGEBENCH key=value ...`` line our Lua ``done()`` hook prints."""
    match = _RESULT.search(text)
    if match is None:
        raise ForgebenchError(f"{KEY}: wrk printed no result line; its output:\n{text[-2000:]}")
    return {k: float(v) for k, v in (kv.split("=") for kv in match.group(1).split())}


def run_wrk(
    wrk: str, url: str, connections: int, threads: int, seconds: int, timeout_s: float
) -> SideResult:
    """One wrk run; CPU from the child's rusage (``os.wait4``)."""
    with tempfile.TemporaryDirectory(prefix="forgebench-wrk-") as tmp:
        script = Path(tmp) / "done.lua"
        script.write_text(DONE_LUA)
        cmd = [
            wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
            f"--timeout={max(1, math.ceil(timeout_s))}s", "-s", str(script), url,
        ]  # fmt: skip
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            try:
                _, wstatus, usage = os.wait4(proc.pid, 0)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            proc.returncode = os.waitstatus_to_exitcode(wstatus)
            out.seek(0)
            err.seek(0)
            text = out.read().decode(errors="replace") + err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise ForgebenchError(f"{KEY}: {' '.join(cmd)} exited {proc.returncode}:\n{text[-2000:]}")
    r = parse_wrk(text)
    failures = {
        f"error:Wrk{k.capitalize()}": int(r[k]) for k in ("connect", "read", "write") if r[k]
    }
    if r["status"]:
        failures["error:HTTPNon2xx"] = int(r["status"])
    if r["timeout"]:
        failures["timeout"] = int(r["timeout"])
    ok = r["requests"] - r["status"]
    duration = r["duration_us"] * 1e-6
    return SideResult(
        rate=ok / duration if duration > 0 else math.nan,
        p50_s=r["p50_us"] * 1e-6,
        p99_s=r["p99_us"] * 1e-6,
        cpu_s=usage.ru_utime + usage.ru_stime,
        requests=int(r["requests"]),
        failures=failures,
    )


def wrk_corrected_latencies(
    latencies_s: np.ndarray, runtime_s: float, complete: int, connections: int
) -> np.ndarray:
    """``latencies_s`` with wrk 4.1's coordinated-omission back-fill, in whole microseconds
    as wrk records them: ``e = runtime_us // (complete // connections)``; every ``x`` adds
    ``x - j*e`` for ``j = 1, 2, ...`` while that stays above ``e`` (wrk's ``stats_correct``).
    Unchanged when ``complete < connections`` (wrk skips the correction then)."""
    x = np.rint(np.asarray(latencies_s, dtype=float) * 1e9).astype(np.int64) // 1000  # ns, us
    per_connection = int(complete) // int(connections)
    if per_connection <= 0 or x.size == 0:
        return x * 1e-6
    e = int(runtime_s * 1e6) // per_connection
    if e <= 0:
        return x * 1e-6
    extra = np.maximum(-(-x // e) - 2, 0)  # ceil(x / e) - 2 back-filled values per x
    owner = np.repeat(x, extra)
    step = np.arange(extra.sum()) - np.repeat(np.cumsum(extra) - extra, extra) + 1
    return np.concatenate([x, owner - step * e]) * 1e-6


def run_ours(addr: ServiceAddress, path: str, connections: int, seconds: float, timeout_s: float
             ) -> SideResult:  # fmt: skip
    """Our closed loop with the same connections for the same time (the body ``ok`` is
    checked only on the built-in service's ``/health``)."""
    expect = b"ok" if path == "/health" and not addr.external else None
    request = [HttpRequest("GET", addr.base_path + path, expect=expect)]
    limits = Limits(seconds, 1, seconds + 10.0, timeout_s)
    res = run_async(closed_loop(addr.host, addr.port, request, connections, limits,
                                **addr.client_options()))  # fmt: skip
    lat = res.latencies_s()[res.ok_mask()]
    # wrk records every answer it reads (2xx or not), never a timeout: so the same here
    read = [s in ("ok", "mismatch") or s.startswith("error:HTTP") for s in res.status]
    answered = res.latencies_s()[np.asarray(read, dtype=bool)]
    fixed = wrk_corrected_latencies(answered, res.wall_s, answered.size, connections)
    return SideResult(
        rate=res.throughput,
        p50_s=stats.percentile(fixed, 50) if lat.size else math.nan,
        p99_s=stats.percentile(fixed, 99) if lat.size else math.nan,
        cpu_s=res.cpu_s,
        requests=res.n,
        failures=res.failures(),
        p50_uncorrected_s=stats.percentile(lat, 50) if lat.size else math.nan,
        p99_uncorrected_s=stats.percentile(lat, 99) if lat.size else math.nan,
    )


_SIDE_METRICS = (
    # attribute, metric, unit, higher_is_better
    ("rate", "throughput", "requests/s", True),
    ("p50_s", "latency_p50", "s", False),
    ("p99_s", "latency_p99", "s", False),
    ("cpu_per_1000", "cpu_per_1000_requests", "s", False),
)


def measure(cfg: Mapping[str, Any], *, seed: int, addr: ServiceAddress, wrk: str) -> pd.DataFrame:
    """Interleaved rounds of ours and wrk against a running service."""
    path = str(cfg["path"])
    conns, threads = int(cfg["connections"]), int(cfg["wrk_threads"])
    seconds = max(1, round(float(cfg["duration_s"])))
    timeout_s = float(cfg["timeout_s"])
    rounds = int(cfg["rounds"])
    params = {"path": path, "connections": conns, "wrk_threads": threads, "duration_s": seconds,
              "loop": "closed", "latency": "corrected as wrk 4.1"}  # fmt: skip
    target = external_target(cfg, KEY, paths=[path])
    if target is not None:
        params.update(target.params())
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    if float(cfg["warmup_s"]) > 0:
        run_ours(addr, path, conns, float(cfg["warmup_s"]), timeout_s)
    rng = np.random.default_rng(seed)
    for r in range(rounds):
        order = ["forgebench", "wrk"] if rng.random() < 0.5 else ["wrk", "forgebench"]
        got: dict[str, SideResult] = {}
        started = {}
        for side in order:
            started[side] = WallClock().wall
            if side == "wrk":
                got[side] = run_wrk(wrk, addr.url + path, conns, threads, seconds, timeout_s)
            else:
                got[side] = run_ours(addr, path, conns, float(seconds), timeout_s)
        for side, res in got.items():
            for attr, metric, unit, higher in _SIDE_METRICS:
                value = getattr(res, attr)
                status = "ok" if math.isfinite(value) else "error:NoSuccessfulRequests"
                rec.add(side, params, metric, unit, higher, value if status == "ok" else math.nan,
                        repetition=r, status=status, started_at=started[side])  # fmt: skip
            rec.add(side, {**params, "failures": res.failures}, "failed_requests", "count",
                    False, float(res.n_failed), repetition=r,
                    started_at=started[side])  # fmt: skip
            if side == "forgebench":  # ours as measured, beside the corrected figures
                raw = {**params, "latency": "uncorrected"}
                for q, value in ((50, res.p50_uncorrected_s), (99, res.p99_uncorrected_s)):
                    status = "ok" if math.isfinite(value) else "error:NoSuccessfulRequests"
                    rec.add(side, raw, f"latency_p{q}_uncorrected", "s", False,
                            value if status == "ok" else math.nan, repetition=r,
                            status=status, started_at=started[side])  # fmt: skip
        ours, theirs = got["forgebench"], got["wrk"]
        failed = ours.n_failed or theirs.n_failed
        ratio_params = {**params, "order": order}
        for attr, metric, _, _ in _SIDE_METRICS:
            den = getattr(theirs, attr)
            ratio = getattr(ours, attr) / den if den else math.nan
            status = "error:FailedRequests" if failed else "ok"
            if status == "ok" and not math.isfinite(ratio):
                status = "error:NoSuccessfulRequests"
            value = ratio if status == "ok" else math.nan
            rec.add("ratio", ratio_params, f"{metric}_ratio", "ratio", False, value,
                    repetition=r, status=status)  # fmt: skip
            if attr != "cpu_per_1000":
                rec.add("ratio", ratio_params, f"{metric}_deviation", "fraction", False,
                        abs(value - 1.0), repetition=r, status=status)  # fmt: skip
        log.info(
            "round %d/%d (%s first): rate %.0f vs wrk %.0f/s; p50 %.3f vs %.3f ms; p99 %.3f vs "
            "%.3f ms; CPU s/1000 req %.4f vs %.4f; failures %s vs %s",
            r + 1, rounds, order[0], ours.rate, theirs.rate, ours.p50_s * 1e3,
            theirs.p50_s * 1e3, ours.p99_s * 1e3, theirs.p99_s * 1e3, ours.cpu_per_1000,
            theirs.cpu_per_1000, ours.failures or 0, theirs.failures or 0,
        )  # fmt: skip
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start a service (no RAG: /health needs none), compare, always stop it; or compare
    on ``target_url`` without starting anything."""
    wrk = find_wrk()
    if int(cfg["rounds"]) < 2:
        raise ForgebenchError(f"{KEY}.rounds: at least 2 interleaved rounds, got {cfg['rounds']}")
    target = external_target(cfg, KEY, paths=[str(cfg["path"])])
    if target is not None:
        addr = target.address()
        announce(target, addr, float(cfg["timeout_s"]), KEY)
        return measure(cfg, seed=seed, addr=addr, wrk=wrk)
    settings = server_settings(cfg, seed, rag=False)
    with service_process(
        settings, startup_timeout_s=float(cfg["startup_timeout_s"]), key=KEY
    ) as addr:
        log.info("service listening on %s (pid %d); wrk at %s", addr.url, addr.pid, wrk)
        return measure(cfg, seed=seed, addr=addr, wrk=wrk)
