"""Many connections held open at once, and many users with think time, judged on the SLA.

Why: "500+ concurrent connections" and "100+ concurrent users" are claims about a service
at a load, not counts; the question is whether the service still meets its SLA (p95
latency and error share) while N connections are open together. So:

* **fd limit.** The run raises its soft ``RLIMIT_NOFILE`` to the hard limit before it
  opens anything (servers started afterwards inherit it); both figures are in every
  row's params (``fd_limit``, ``fd_limit_before``). An N the limit cannot hold fails as
  rows (``error:OSError``), it is not skipped.
* **Held connections** (cases ``echo_<N>conn`` against forgebench.network.echo_server and
  ``http_<N>conn`` against the service on uvicorn): N connects are attempted together;
  once every attempt has ended the hold window starts, and each open connection does a
  request/response round every ``round_interval_s`` (seeded phase) until it ends. A
  round's latency runs from its **scheduled** time (a late round waits in its latency).
  A connection is never reopened: one that failed to connect or broke mid-hold is a
  ``connection`` row with its failure status (``error:<Class>``, ``timeout``,
  ``mismatch``), and each of its remaining planned rounds is a failed ``latency`` row
  with that status, so the error share counts every planned round.
* **Users** (case ``users_<N>u``): N users in a closed loop, each on its own keep-alive
  connection, sending its next request an exponential think time (seeded, mean
  ``think_s``) after the previous answer (and its first one such a time after the
  window opens), for ``hold_s``; a user whose connection fails stops there (one failed
  row; a user who could not connect is one failed row).
* **SLA at N.** Per case the per-request ``latency`` rows give the p95 (order-statistic
  interval, forgebench.stats) and the failures the error share (Clopper-Pearson), both
  judged as a target is (``stats.check_target`` then ``stats.with_failures`` against the
  SLA's error rate); the ``sla_met`` row says which N met it (only "met" counts: an
  inconclusive level is not one the service was shown to support). ``<kind>_search``
  cases hold the stepped search: N steps up the configured list and stops at the first N
  that does not meet the SLA; with ``bisect_to`` > 0 it then bisects between the last N
  met and that one until they are at most ``bisect_to`` apart (each step is a case of its
  own, ``search_step`` in its params). ``max_n_meeting_sla`` is the largest N met, with
  the smallest N that did not meet it beside it (``first_n_not_met``; ``censored`` when
  the last step still met it: the limit is above it).
* **Outage.** One forgebench.outage guard per server, kind and level (the HTTP kinds
  start after the service has settled, ``load_scenarios.settle``, and so does each step
  after a failed one): once tripped, that level's rounds not attempted are
  ``error:Outage`` rows and the level does not meet the SLA. Its limits count failures
  across every connection, so a service overloaded into a run of timeouts trips it too;
  a fresh guard per level keeps an overloaded level from censoring the smaller ones the
  bisection tries next (a service that died trips the next guard at once).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import resource
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.network.echo_latency import WallClock
from forgebench.network.echo_server import echo_server_process
from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import grades, load_scenarios, scenarios
from forgebench.service.loadgen import (
    HttpConnection,
    HttpRequest,
    ProtocolError,
    RunResult,
    _outcome,
    _Protocol,
    failure_status,
    run_async,
)
from forgebench.service.server import ServiceAddress, service_process
from forgebench.stats.defaults import CONFIDENCE

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "connections"
KEY = "suites.service.benchmarks.connections"
KINDS = ("echo", "http", "users")
#: The SLA a load level is judged on: p95 latency under this, errors under the SLA rate.
SLA_P95_S = grades.SLA_MEAN_LATENCY_S
SLA_PERCENTILE = "p95"

log = logging.getLogger(__name__)


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; ``(before, after)`` soft limits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ------------------------------------------------------------------------ connections


class EchoConnection:
    """One TCP connection to the echo server; a round sends a payload and reads it back."""

    def __init__(self, host: str, port: int, payload_bytes: int) -> None:
        self.host, self.port, self.size = host, port, payload_bytes
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, timeout_s: float) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout_s
        )

    async def round(self, j: int, timeout_s: float) -> str:
        assert self.reader is not None and self.writer is not None
        payload = (j.to_bytes(8, "little") * (self.size // 8 + 1))[: self.size]
        self.writer.write(payload)
        got = await asyncio.wait_for(self.reader.readexactly(self.size), timeout_s)
        return "ok" if got == payload else "mismatch"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None


class HeldHttpConnection:
    """One keep-alive HTTP connection that is opened once and never silently reopened
    (``loadgen.HttpConnection.call`` would reconnect a closed one)."""

    def __init__(self, host: str, port: int, requests: list[HttpRequest], seed: int) -> None:
        self.conn = HttpConnection(host, port)
        self.raws = [r.raw(host, port) for r in requests]
        self.expects = [r.expect for r in requests]
        self.rng = random.Random(seed)

    async def open(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(_Protocol, self.conn.host, self.conn.port), timeout_s
        )
        self.conn.proto = proto

    async def round(self, j: int, timeout_s: float) -> str:
        proto = self.conn.proto
        if proto is None or not proto.usable:
            raise ConnectionResetError("the server closed the held connection")
        k = self.rng.randrange(len(self.raws))
        code, body = await self.conn.call(self.raws[k], timeout_s)
        return _outcome(code, body, self.expects[k])

    def close(self) -> None:
        self.conn.close()


Connection = EchoConnection | HeldHttpConnection


@dataclass(frozen=True)
class Pacing:
    """How a connection spaces its rounds: a fixed schedule (``interval_s``, open loop) or
    exponential think time after each answer (``think_s``, closed loop)."""

    window_s: float
    timeout_s: float
    connect_timeout_s: float
    interval_s: float = 0.0
    think_s: float = 0.0


@dataclass
class HoldResult:
    """Rounds of every connection (``run``) and each connection's fate."""

    run: RunResult
    conn_status: list[str]
    conn_open_s: list[float]  # seconds it stayed usable inside the window (0: never)
    connect_s: list[float]  # connect time (NaN when the connect failed)
    open_at_start: int  # connections open when the window started


async def hold(
    make: Callable[[int], Connection],
    n: int,
    pacing: Pacing,
    guard: OutageGuard,
    *,
    seed: int,
) -> HoldResult:
    """Open ``n`` connections together, then drive each through the window (see module)."""
    clock = time.perf_counter_ns
    res = RunResult(mode="closed" if pacing.think_s else "open", users=n, connections=n,
                    timeout_s=pacing.timeout_s)  # fmt: skip
    conns = [make(i) for i in range(n)]
    status = ["ok"] * n
    connect_s = [math.nan] * n
    open_s = [0.0] * n

    async def connect(i: int) -> None:
        t0 = clock()
        try:
            await conns[i].open(pacing.connect_timeout_s)
            connect_s[i] = (clock() - t0) * 1e-9
        except (OSError, TimeoutError) as exc:
            status[i] = failure_status(exc)
            conns[i].close()

    cpu0 = time.thread_time()
    res.start_ns = clock()
    await asyncio.gather(*(connect(i) for i in range(n)))
    start = clock()
    end = start + int(pacing.window_s * 1e9)
    open_at_start = sum(s == "ok" for s in status)
    rng = random.Random(seed)
    phases = [rng.uniform(0, pacing.interval_s or 0.0) for _ in range(n)]
    think = [random.Random(seed * 1_000_003 + i) for i in range(n)]

    def planned(i: int, after: int) -> list[int]:
        """Scheduled times of connection ``i``'s rounds from ``after`` to the end."""
        if not pacing.interval_s:
            return [after] if after < end else []
        step = int(pacing.interval_s * 1e9)
        first = start + int(phases[i] * 1e9)
        j = max(0, -(-(after - first) // step))
        return list(range(first + j * step, end, step))

    async def drive(i: int) -> None:
        conn = conns[i]
        if status[i] != "ok":  # never connected: every planned round fails with its cause
            for t in planned(i, start):
                res.add(t, t, t, status[i], 0, None)
            return
        j = 0
        if pacing.interval_s:
            sched = planned(i, start)[:1]
        else:  # a user thinks before its first request too: users do not start in step
            first = start + int(think[i].expovariate(1.0 / pacing.think_s) * 1e9)
            sched = [first] if first < end else []
        try:
            while sched:
                t = sched[0]
                while (now := clock()) < t:  # a loop's timer may wake up to 1 ms early
                    await asyncio.sleep((t - now) * 1e-9)
                if guard.tripped:
                    for t2 in planned(i, t):
                        res.add(t2, t2, t2, OUTAGE_STATUS, 0, None)
                    status[i] = OUTAGE_STATUS
                    return
                send = clock()
                try:
                    outcome = await conn.round(j, pacing.timeout_s)
                except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
                    outcome = failure_status(exc)
                done = clock()
                res.add(t if pacing.interval_s else send, send, done, outcome, 0, None)
                guard.record(outcome == "ok", (done - send) * 1e-9)
                j += 1
                if outcome != "ok":  # a broken connection is not reopened
                    status[i] = outcome
                    open_s[i] = (done - start) * 1e-9
                    if pacing.interval_s:  # its later rounds fail with the same cause
                        for t2 in planned(i, t + 1):
                            res.add(t2, t2, t2, outcome, 0, None)
                    return
                if pacing.interval_s:
                    sched = planned(i, t + 1)[:1]
                else:
                    gap = int(think[i].expovariate(1.0 / pacing.think_s) * 1e9)
                    sched = [done + gap] if done + gap < end else []
            open_s[i] = (end - start) * 1e-9
        finally:
            conn.close()

    try:
        await asyncio.gather(*(drive(i) for i in range(n)))
    finally:
        for c in conns:
            c.close()
        res.stop_ns = clock()
        res.cpu_s = time.thread_time() - cpu0
    order = np.argsort(np.asarray(res.sched_ns, np.int64), kind="stable").tolist()
    for name in ("sched_ns", "send_ns", "end_ns", "status", "kind", "bodies"):
        values = getattr(res, name)
        setattr(res, name, [values[j] for j in order])
    return HoldResult(res, status, open_s, connect_s, open_at_start)


# --------------------------------------------------------------------------- verdicts


def sla_at_n(res: RunResult, *, confidence: float = CONFIDENCE) -> tuple[str, str]:
    """Whether one load level meets the SLA, judged as a config target on its rows would
    be: the p95 of the answered requests' latencies on its order-statistic interval, then
    every failed request against the SLA's error rate (``stats.with_failures``)."""
    ok = res.ok_mask()
    lat = res.latencies_s()[ok]
    n_failed = int(res.n - ok.sum())
    if not res.n:
        return "not measured", "no requests"
    if not lat.size:
        return "not met", f"all {res.n} requests failed"
    est, low, high, how = stats.statistic_interval(lat, SLA_PERCENTILE, confidence=confidence)
    figure = stats.check_target(low, high, op="<", threshold=SLA_P95_S)
    verdict, failures = stats.with_failures(
        figure, n_failed, res.n, error_budget=grades.SLA_ERROR_RATE, confidence=confidence
    )
    why = (
        f"p95 {est * 1e3:.2f} ms (CI {low * 1e3:.2f}-{high * 1e3:.2f} ms, {how}) "
        f"< {SLA_P95_S * 1e3:g} ms: {figure}" + (f"; {failures}" if failures else "")
    )
    return verdict, why


# ------------------------------------------------------------------------------ rows


def add_hold_rows(
    rec: Recorder, case: str, params: Mapping[str, Any], held: HoldResult, window_s: float
) -> str:
    """Per-request and run rows (service.scenarios), one ``connection`` and one
    ``connect_time`` row per planned connection, the counts held, and the SLA verdict."""
    clock = WallClock()
    res = held.run
    scenarios.add_request_rows(rec, case, params, res, clock)
    scenarios.add_run_rows(rec, case, params, res, clock, window_s=window_s)
    at = clock.at(res.start_ns)
    for i, (st, secs, conn_s) in enumerate(
        zip(held.conn_status, held.conn_open_s, held.connect_s, strict=True)
    ):
        rec.add(case, params, "connection", "s", True, secs if st == "ok" else math.nan,
                sample=i, status=st, started_at=at)  # fmt: skip
        rec.add(case, params, "connect_time", "s", False, conn_s,
                sample=i, status="ok" if math.isfinite(conn_s) else st, started_at=at)  # fmt: skip
    held_through = sum(st == "ok" for st in held.conn_status)
    for metric, value in (
        ("connections_open_at_start", held.open_at_start),
        ("connections_held_through", held_through),
        ("connections_failed", len(held.conn_status) - held_through),
    ):
        rec.add(case, params, metric, "connections", metric != "connections_failed", value,
                started_at=at)  # fmt: skip
    verdict, why = sla_at_n(res)
    rec.add(case, {**params, "sla_verdict": verdict, "why": why}, "sla_met", "bool", True,
            float(verdict == "met"), started_at=at)  # fmt: skip
    log.info("%s: %s; %d/%d held through; SLA %s (%s)", case, scenarios.describe(res),
             held_through, len(held.conn_status), verdict, why)  # fmt: skip
    return verdict


def add_search_rows(
    rec: Recorder,
    kind: str,
    params: Mapping[str, Any],
    steps: list[tuple[int, str]],
    bisect_to: int = 0,
) -> None:
    """The stepped search's outcome: the largest N that met the SLA (0 when none did) and
    the smallest N above it that did not (``first_n_not_met``), ``censored`` when the
    last configured step still met it."""
    best, failed = search_bounds(steps)
    censored = failed is None and bool(steps)
    p = {**params, "steps": [[n, v] for n, v in steps], "first_n_not_met": failed,
         "bisect_to": bisect_to}  # fmt: skip
    rec.add(f"{kind}_search", p, "max_n_meeting_sla", "connections" if kind != "users" else "users",
            True, float(best), status="censored" if censored else "ok")  # fmt: skip


def search_bounds(steps: list[tuple[int, str]]) -> tuple[int, int | None]:
    """(largest N met, smallest N above it not met or None): the bracket the search holds."""
    met = [n for n, v in steps if v == "met"]
    best = max(met) if met else 0
    above = [n for n, v in steps if v != "met" and n > best]
    return best, (min(above) if above else None)


def next_step(steps: list[tuple[int, str]], levels: list[int], bisect_to: int) -> int | None:
    """The next N to try: up the configured levels until one is not met, then (``bisect_to``
    > 0) the midpoint of the bracket until it is at most ``bisect_to`` wide; None: done."""
    if all(v == "met" for _, v in steps):  # stepping up the configured levels
        return levels[len(steps)] if len(steps) < len(levels) else None
    best, failed = search_bounds(steps)
    if failed is None or bisect_to <= 0 or failed - best <= max(1, bisect_to):
        return None
    return (best + failed) // 2


# -------------------------------------------------------------------------- benchmark


def check_config(cfg: Mapping[str, Any]) -> None:
    """Config mistakes surface before anything starts."""
    for kind in KINDS:
        levels = list(cfg[kind]["levels"])
        if levels != sorted(set(levels)) or any(int(n) < 1 for n in levels):
            raise ForgebenchError(f"{KEY}.{kind}.levels: {levels} must be increasing and >= 1")
        if int(cfg[kind].get("bisect_to", 0)) and len(levels) < 2:
            raise ForgebenchError(f"{KEY}.{kind}.bisect_to needs a search: two levels or more")


def search(
    rec: Recorder,
    kind: str,
    levels: list[int],
    run_level: Callable[[int, OutageGuard], Awaitable[HoldResult]],
    params: Mapping[str, Any],
    window_s: float,
    new_guard: Callable[[], OutageGuard],
    *,
    bisect_to: int = 0,
    settle: Callable[[], Any] | None = None,
) -> list[tuple[int, str]]:
    """Run the levels of one kind (the stepped search when there are several, see the
    module docstring); the ``(N, verdict)`` steps in the order they ran."""
    steps: list[tuple[int, str]] = []
    suffix = "u" if kind == "users" else "conn"
    searching = len(levels) > 1
    while (n := next_step(steps, levels, bisect_to)) is not None:
        if steps and steps[-1][1] != "met" and settle is not None:
            settle()  # the failed level's queue drained before the next one
        held = run_async(run_level(n, new_guard()))
        p = {**params, "n": n, **({"search_step": len(steps)} if searching else {})}
        verdict = add_hold_rows(rec, f"{kind}_{n}{suffix}", p, held, window_s)
        steps.append((n, verdict))
    if searching:
        add_search_rows(rec, kind, params, steps, bisect_to)
        log.info("%s search: largest N meeting the SLA %d, first not %s (steps %s)", kind,
                 *search_bounds(steps), steps)  # fmt: skip
    return steps


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Raise the fd limit, then echo connections, HTTP connections and users, each level
    judged on the SLA; every server stopped whatever happens."""
    check_config(cfg)
    before, after = raise_fd_limit()
    log.info("open-files limit raised from %d to %d (RLIMIT_NOFILE soft -> hard)", before, after)
    base = {"fd_limit": after, "fd_limit_before": before}
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    limits = OutageLimits.from_config(cfg)
    timeout_s = float(cfg["timeout_s"])
    window_s = float(cfg["window_s"])

    def pacing(section: Mapping[str, Any]) -> Pacing:
        return Pacing(
            window_s=float(section["hold_s"]),
            timeout_s=timeout_s,
            connect_timeout_s=float(cfg["connect_timeout_s"]),
            interval_s=float(section.get("round_interval_s", 0.0)),
            think_s=float(section.get("think_s", 0.0)),
        )

    echo = cfg["echo"]
    if echo["levels"]:
        with echo_server_process() as (host, port):
            size = int(echo["payload_bytes"])
            p = {
                **base,
                "server": "echo",
                "payload_bytes": size,
                "round_interval_s": echo["round_interval_s"],
                "hold_s": echo["hold_s"],
            }

            async def echo_level(n: int, guard: OutageGuard) -> HoldResult:
                return await hold(lambda i: EchoConnection(host, port, size), n, pacing(echo),
                                  guard, seed=seed)  # fmt: skip

            search(rec, "echo", [int(n) for n in echo["levels"]], echo_level, p, window_s,
                   lambda: OutageGuard(limits, f"{NAME} on the echo server"),
                   bisect_to=int(echo.get("bisect_to", 0)))  # fmt: skip
    http, users = cfg["http"], cfg["users"]
    if http["levels"] or users["levels"]:
        settings = scenarios.server_settings(cfg, seed, rag=False)
        with service_process(settings, startup_timeout_s=float(cfg["startup_timeout_s"]),
                             key=KEY) as addr:  # fmt: skip
            _http_levels(rec, addr, cfg, base, pacing, seed, window_s, limits)
    return rec.frame()


def _http_levels(
    rec: Recorder,
    addr: ServiceAddress,
    cfg: Mapping[str, Any],
    base: Mapping[str, Any],
    pacing: Callable[[Mapping[str, Any]], Pacing],
    seed: int,
    window_s: float,
    limits: OutageLimits,
) -> None:
    endpoint = str(cfg["endpoint"])
    requests = scenarios.endpoint_requests(endpoint, addr, cfg, seed)
    for kind in ("http", "users"):
        section = cfg[kind]
        if not section["levels"]:
            continue
        load_scenarios.settle(addr, requests, cfg)  # the previous kind's queue drained
        p = {**base, "server": "service", "endpoint": endpoint, "hold_s": section["hold_s"]}
        if kind == "http":
            p["round_interval_s"] = section["round_interval_s"]
        else:
            p["think_s"] = section["think_s"]

        async def level(
            n: int, guard: OutageGuard, section: Mapping[str, Any] = section
        ) -> HoldResult:
            return await hold(
                lambda i: HeldHttpConnection(addr.host, addr.port, requests, seed + i),
                n, pacing(section), guard, seed=seed,
            )  # fmt: skip

        search(rec, kind, [int(n) for n in section["levels"]], level, p, window_s,
               lambda kind=kind: OutageGuard(limits, f"{NAME} ({kind}) on the service"),
               bisect_to=int(section.get("bisect_to", 0)),
               settle=lambda: load_scenarios.settle(addr, requests, cfg))  # fmt: skip
