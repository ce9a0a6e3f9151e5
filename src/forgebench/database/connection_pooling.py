"""Connect per query against a connection pool: W concurrent workers, Q short queries each.

Why this shape: opening a connection (for PostgreSQL a TCP handshake, a new server
process and a SCRAM login; for SQLite opening the file and reading its schema) can cost
more than the short query it serves, and a pool pays it once. Both modes run the same
queries in the same threads, so the difference is the connection handling alone.

Choices worth knowing when reading the results:

* Workers are threads started together (a barrier). Each runs ``warmup_queries`` (kept,
  flagged ``warmup``), meets the others at a second barrier, then ``queries_per_worker``
  measured queries. Per repetition both modes run, in an order drawn from the seed, and
  worker ``w`` asks for the same seeded post ids in both modes.
* The query is ``SELECT COUNT(*) FROM comments WHERE post_id = ?``; every answer is
  compared, after the clock stops, with the count computed from the generated data, and a
  different answer is a ``mismatch`` row. A query that raises is a row with its error
  status (``timeout`` for a pool, connect or statement timeout); nothing is dropped.
* ``latency`` (s, one row per query) runs from just before ``connect``/pool checkout to
  just after ``close``/return, fetching the row in between. ``throughput`` (queries/s,
  one row per mode and repetition) is ok queries over the wall time from the second
  barrier to the last worker's end; with no ok query it is NaN with the commonest
  failure status.
* A server that goes away ends the run in seconds (``forgebench.outage``, the shared
  rule): after the configured run of consecutive failures, or of failing seconds, no more
  queries are sent; each one planned but not sent is a row with status ``error:Outage``.
* Pools (``forgebench.database.pools``): psycopg_pool's ConnectionPool for PostgreSQL, a
  LIFO queue of connections for SQLite; ``pool_size`` connections, opened before timing.
  With more workers than connections, waiting for one is part of a query's latency.
* Cases are ``<backend>_connect_per_query`` and ``<backend>_pooled``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgebench.database.backends import Target, check_postgres, open_target
from forgebench.database.dataset import generate
from forgebench.database.pools import Pool, open_pool, query_status
from forgebench.database.settings import (
    SUITE,
    Common,
    WallClock,
    case_name,
    common,
    config_key,
    positive,
)
from forgebench.errors import ForgebenchError
from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder

BENCHMARK_VERSION = 1
NAME = "connection_pooling"
MODES = ("connect_per_query", "pooled")
QUERY = "SELECT COUNT(*) FROM comments WHERE post_id = ?"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """The checked config of one run."""

    common: Common
    workers: int
    queries_per_worker: int
    warmup_queries: int
    pool_size: int
    repetitions: int
    outage: OutageLimits = field(default_factory=OutageLimits)


def plan(cfg: Mapping[str, Any]) -> Plan:
    """Check ``cfg`` (this benchmark's section); ForgebenchError names the key at fault."""
    shared = common(cfg, NAME)
    if shared.sizes.posts < 1:
        raise ForgebenchError(
            f"{config_key(NAME, 'sizes')}.posts must be >= 1: the query counts a post's comments"
        )
    return Plan(
        common=shared,
        workers=positive(cfg, NAME, "workers"),
        queries_per_worker=positive(cfg, NAME, "queries_per_worker"),
        warmup_queries=positive(cfg, NAME, "warmup_queries", minimum=0),
        pool_size=positive(cfg, NAME, "pool_size"),
        repetitions=positive(cfg, NAME, "repetitions"),
        outage=OutageLimits.from_config(cfg),
    )


@dataclass
class WorkerLog:
    """One worker's queries: start (perf ns), duration (ns, -1 if failed), status."""

    t0_ns: list[int] = field(default_factory=list)
    dt_ns: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)


def _connect_per_query(target: Target, sql: str) -> Callable[[int], Any]:
    def query(post_id: int) -> Any:
        conn = target.connect()
        try:
            return conn.execute(sql, (post_id,)).fetchone()
        finally:
            conn.close()

    return query


def _pooled(pool: Pool, sql: str) -> Callable[[int], Any]:
    def query(post_id: int) -> Any:
        with pool.connection() as conn:
            return conn.execute(sql, (post_id,)).fetchone()

    return query


def _run_queries(
    query: Callable[[int], Any],
    post_ids: Sequence[int],
    expected: np.ndarray,
    out: WorkerLog,
    guard: OutageGuard,
) -> None:
    """Each query in turn; once ``guard`` has tripped, the rest are outage rows."""
    clock = time.perf_counter_ns
    for post_id in post_ids:
        if guard.tripped:
            out.t0_ns.append(clock())
            out.dt_ns.append(-1)
            out.status.append(OUTAGE_STATUS)
            continue
        t0 = clock()
        try:
            row = query(post_id)
            dt = clock() - t0
        except Exception as exc:
            out.t0_ns.append(t0)
            out.dt_ns.append(-1)
            out.status.append(query_status(exc))
            guard.record(False, took_s=(clock() - t0) * 1e-9)
            continue
        out.t0_ns.append(t0)
        ok = row is not None and len(row) == 1 and row[0] == expected[post_id]
        out.dt_ns.append(dt if ok else -1)
        out.status.append("ok" if ok else "mismatch")
        if guard.streak:  # the server answered (a wrong answer is not an outage)
            guard.record(True)


@dataclass
class Phase:
    """What one mode's run of all workers produced."""

    warm: list[WorkerLog]
    meas: list[WorkerLog]
    wall_ns: int
    started_ns: int


def run_phase(
    query: Callable[[int], Any],
    ids: Sequence[Sequence[int]],
    warm_ids: Sequence[Sequence[int]],
    expected: np.ndarray,
    timeout_s: float,
    guard: OutageGuard,
) -> Phase:
    """All workers at once: warm-up queries, a barrier, then the measured queries."""
    workers = len(ids)
    warm = [WorkerLog() for _ in range(workers)]
    meas = [WorkerLog() for _ in range(workers)]
    start = threading.Barrier(workers + 1)
    measured = threading.Barrier(workers + 1)
    # A worker stuck in a query may hold up the barrier; every query has its own timeout,
    # so allow each worker's queries that long, and a margin.
    wait_s = timeout_s * (max(len(w) for w in warm_ids) + 1) + 30

    def work(w: int) -> None:
        try:
            start.wait(wait_s)
            _run_queries(query, warm_ids[w], expected, warm[w], guard)
            measured.wait(wait_s)
        except threading.BrokenBarrierError:
            return
        _run_queries(query, ids[w], expected, meas[w], guard)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    try:
        start.wait(wait_s)
        measured.wait(wait_s)
    except threading.BrokenBarrierError:
        start.abort()
        measured.abort()
        raise
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    return Phase(warm, meas, time.perf_counter_ns() - t0, t0)


def _post_ids(rng: np.random.Generator, posts: int, workers: int, n: int) -> list[list[int]]:
    return [(rng.integers(0, posts, n) + 1).tolist() for _ in range(workers)]


def _add_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    logs: Sequence[WorkerLog],
    clock: WallClock,
    rep: int,
    warmup: bool,
) -> None:
    sample = 0
    for wl in logs:
        for t0, dt, status in zip(wl.t0_ns, wl.dt_ns, wl.status, strict=True):
            rec.add(
                case,
                params,
                "latency",
                "s",
                False,
                dt * 1e-9 if status == "ok" else math.nan,
                repetition=rep,
                sample=sample,
                warmup=warmup,
                status=status,
                started_at=clock.at(t0),
            )
            sample += 1


def measure(target: Target, expected: np.ndarray, p: Plan, rec: Recorder, *, seed: int) -> None:
    """Every repetition of both modes against ``target``; rows into ``rec``.

    ``expected`` is the comment count of each post id (index 0 unused). Separate from
    ``run`` so a test can point it at a backend that fails every query.
    """
    sizes = p.common.sizes
    params = {
        m: {
            "backend": target.backend,
            "mode": m,
            "workers": p.workers,
            "queries_per_worker": p.queries_per_worker,
            "pool_size": p.pool_size,
            "users": sizes.users,
            "posts": sizes.posts,
            "comments": sizes.comments,
        }
        for m in MODES
    }
    sql = QUERY.replace("?", target.placeholder)
    rng = np.random.default_rng(seed)
    clock = WallClock()
    pool = open_pool(target, p.pool_size, p.common.timeout_s, config_key(NAME, "postgres_dsn"))
    guard = OutageGuard(p.outage, f"{NAME} on {target.backend}")
    try:
        for rep in range(p.repetitions):
            ids = _post_ids(rng, sizes.posts, p.workers, p.queries_per_worker)
            warm_ids = _post_ids(rng, sizes.posts, p.workers, p.warmup_queries)
            for idx in rng.permutation(len(MODES)):
                mode = MODES[idx]
                query = _pooled(pool, sql) if mode == "pooled" else _connect_per_query(target, sql)
                phase = run_phase(query, ids, warm_ids, expected, p.common.timeout_s, guard)
                case = case_name(target.backend, mode)
                _add_rows(rec, case, params[mode], phase.warm, clock, rep, True)
                _add_rows(rec, case, params[mode], phase.meas, clock, rep, False)
                _throughput_row(rec, case, params[mode], phase, clock, rep)
    finally:
        pool.close()


def _throughput_row(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    phase: Phase,
    clock: WallClock,
    rep: int,
) -> None:
    statuses = Counter(s for wl in phase.meas for s in wl.status)
    ok = statuses.pop("ok", 0)
    if ok and phase.wall_ns > 0:
        value, status = ok / (phase.wall_ns * 1e-9), "ok"
    else:
        common_failure = statuses.most_common(1)
        value, status = math.nan, (common_failure[0][0] if common_failure else "error:NoQueries")
    rec.add(
        case,
        params,
        "throughput",
        "queries/s",
        True,
        value,
        repetition=rep,
        sample=0,
        status=status,
        started_at=clock.at(phase.started_ns),
    )
    durations = [dt for wl in phase.meas for dt in wl.dt_ns if dt >= 0]
    level = logging.WARNING if statuses else logging.INFO
    log.log(
        level,
        "rep %d %s: %d ok, %d failed%s in %.2f s (%.0f queries/s, median %s)",
        rep,
        case,
        ok,
        sum(statuses.values()),
        f" {dict(statuses)}" if statuses else "",
        phase.wall_ns * 1e-9,
        value if math.isfinite(value) else 0.0,
        f"{np.median(durations) / 1e3:.1f} us" if durations else "n/a",
    )


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Check the config (and the DSN, by connecting once) before any work; then generate the
    data, load it into each backend in turn and measure both modes."""
    p = plan(cfg)
    if "postgres" in p.common.backends:
        check_postgres(p.common.postgres_dsn, config_key(NAME, "postgres_dsn"), p.common.timeout_s)
    data = generate(p.common.sizes, seed)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    for backend in p.common.backends:
        with open_target(
            backend,
            data,
            dsn=p.common.postgres_dsn,
            dsn_key=config_key(NAME, "postgres_dsn"),
            timeout_s=p.common.timeout_s,
        ) as target:
            log.info(
                "%s: %d repetitions of %s; %d workers x %d queries, pool of %d",
                backend,
                p.repetitions,
                ", ".join(MODES),
                p.workers,
                p.queries_per_worker,
                p.pool_size,
            )
            measure(target, data.comment_counts, p, rec, seed=seed)
    return rec.frame()
