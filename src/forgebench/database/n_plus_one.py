"""N+1 queries against one JOIN and against batched IN, for one page of users.

Why this shape: "a page of users with their posts and each post's comment count" is the
textbook N+1 case; done lazily it costs ``1 + users + posts`` round trips, which an
embedded database pays as call overhead and a server pays as network round trips. The
three methods (``forgebench.database.page_methods``) do the same task on the same
connection, so the difference between them is the query pattern alone.

Choices worth knowing when reading the results:

* Data: ``forgebench.database.dataset``, seeded; loaded into a fresh SQLite file or a
  fresh PostgreSQL schema per run (``forgebench.database.backends``), with indexes on the
  foreign keys and ANALYZE, as an application would have them.
* Every execution's result is compared, after its clock stops, with the page computed
  in Python from the generated data; a different result makes both of that execution's
  rows ``mismatch`` (value NaN), so a wrong method can never count as fast. The first
  warm-up round is the check before any timing counts: it logs whether the three methods
  agree with the oracle and with each other.
* Executions are interleaved: each round runs the three methods once each, in an order
  drawn from the seed, so drift of the machine falls on all three alike.
  ``repetition`` counts rounds, warm-up ones included (kept, flagged ``warmup``).
* ``latency`` is the wall time (``perf_counter_ns``) from the first statement to the
  assembled result, fetching every row; ``queries`` is the number of statements the
  execution ran. One persistent autocommit connection per backend is shared by the three
  methods; after an error it is replaced. Statement caching is each driver's default, as
  an application would have it: sqlite3 keeps compiled statements, psycopg prepares a
  statement on the server from its fifth execution on.
* Cases are ``<backend>_<method>``: ``sqlite_n_plus_one``, ``postgres_join``, ...
* A server that goes away ends the run in seconds (``forgebench.outage``, the shared
  rule): executions planned after it tripped are rows with status ``error:Outage``.

With ``query_file`` set, none of the above runs: the file's own read-only SELECTs run
against ``postgres_dsn`` (a user's database, nothing created there), one case per query
(``forgebench.database.user_queries``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forgebench.database.backends import Target, check_postgres, open_target
from forgebench.database.dataset import PageResult, generate
from forgebench.database.page_methods import (
    METHODS,
    PAGE_METHODS,
    QuerySession,
    check_results,
    first_difference,
)
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
from forgebench.record import Recorder, status_for

BENCHMARK_VERSION = 1
NAME = "n_plus_one"

log = logging.getLogger(__name__)

PageMethod = Callable[[QuerySession, int, int], PageResult]


@dataclass(frozen=True)
class Plan:
    """The checked config of one run."""

    common: Common
    page: int
    page_size: int
    executions: int
    warmup: int
    outage: OutageLimits = field(default_factory=OutageLimits)


def plan(cfg: Mapping[str, Any]) -> Plan:
    """Check ``cfg`` (this benchmark's section); ForgebenchError names the key at fault."""
    shared = common(cfg, NAME)
    page = positive(cfg, NAME, "page", minimum=0)
    page_size = positive(cfg, NAME, "page_size")
    if page * page_size >= shared.sizes.users:
        raise ForgebenchError(
            f"{config_key(NAME, 'page')}: page {page} of {page_size} users starts at user "
            f"{page * page_size + 1}, beyond the {shared.sizes.users} users of sizes.users; "
            f"the last page is {(shared.sizes.users - 1) // page_size}"
        )
    return Plan(
        common=shared,
        page=page,
        page_size=page_size,
        executions=positive(cfg, NAME, "executions"),
        warmup=positive(cfg, NAME, "warmup"),
        outage=OutageLimits.from_config(cfg),
    )


@dataclass
class Execution:
    """One method's run: start (perf ns), duration (ns), statements, result or failure."""

    t0_ns: int
    elapsed_ns: int = 0
    queries: int = 0
    result: PageResult | None = None
    status: str = "ok"


class Executor:
    """One persistent session on ``target``, opened on first use and replaced after an error."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.session: QuerySession | None = None

    def execute(self, method: PageMethod, offset: int, limit: int) -> Execution:
        """Time ``method`` from its first statement to its assembled result (no connect)."""
        run = Execution(time.perf_counter_ns())
        try:
            if self.session is None:
                t = self.target
                self.session = QuerySession(t.connect(), t.placeholder, t.max_params)
            session = self.session
            session.queries = 0
            run.t0_ns = time.perf_counter_ns()
            run.result = method(session, offset, limit)
            run.elapsed_ns = time.perf_counter_ns() - run.t0_ns
            run.queries = session.queries
        except Exception as exc:
            run.status = status_for(exc)
            log.debug("%s: an execution failed: %s", self.target.backend, exc)
            self.close()
        return run

    def close(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            session.close()
        except Exception as exc:  # a broken connection may fail to close; it is dropped anyway
            log.debug("closing a failed connection: %s", exc)


def measure(
    target: Target,
    expected: PageResult,
    p: Plan,
    rec: Recorder,
    *,
    seed: int,
    methods: Mapping[str, PageMethod] = PAGE_METHODS,
) -> None:
    """Run every round of ``methods`` against ``target``; add two rows per execution.

    ``methods`` is a parameter so a test can put a deliberately wrong method beside the
    real ones and see its rows come out as ``mismatch``.
    """
    names = list(methods)
    offset, limit = p.page * p.page_size, p.page_size
    sizes = p.common.sizes
    params = {
        m: {
            "backend": target.backend,
            "method": m,
            "users": sizes.users,
            "posts": sizes.posts,
            "comments": sizes.comments,
            "page": p.page,
            "page_size": p.page_size,
        }
        for m in names
    }
    rng = np.random.default_rng(seed)
    clock = WallClock()
    executor = Executor(target)
    guard = OutageGuard(p.outage, f"{NAME} on {target.backend}")
    measured: dict[str, list[Execution]] = {m: [] for m in names}
    rounds = p.warmup + p.executions
    try:
        for rnd in range(rounds):
            warmup = rnd < p.warmup
            results: dict[str, PageResult] = {}
            for idx in rng.permutation(len(names)):
                method = names[idx]
                if guard.tripped:  # the server is gone: planned, not attempted
                    run = Execution(time.perf_counter_ns(), status=OUTAGE_STATUS)
                else:
                    run = executor.execute(methods[method], offset, limit)
                    took_s = (time.perf_counter_ns() - run.t0_ns) * 1e-9
                    guard.record(run.result is not None, took_s)  # an answer, right or wrong
                if run.result is not None:
                    results[method] = run.result
                    run.status = check_results(expected, {method: run.result})[method]
                _add_rows(
                    rec, case_name(target.backend, method), params[method], run, clock, rnd, warmup
                )
                if not warmup:
                    measured[method].append(run)
            if rnd == 0:
                _log_check(target.backend, expected, results)
    finally:
        executor.close()
    for method in names:
        _log_case(case_name(target.backend, method), measured[method])


def _add_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    run: Execution,
    clock: WallClock,
    rnd: int,
    warmup: bool,
) -> None:
    ok = run.status == "ok"
    for metric, unit, value in (
        ("latency", "s", run.elapsed_ns * 1e-9 if ok else math.nan),
        ("queries", "count", float(run.queries) if ok else math.nan),
    ):
        rec.add(
            case,
            params,
            metric,
            unit,
            False,
            value,
            repetition=rnd,
            warmup=warmup,
            status=run.status,
            started_at=clock.at(run.t0_ns),
        )


def _log_case(case: str, runs: list[Execution]) -> None:
    ok = [r for r in runs if r.status == "ok"]
    failed = Counter(r.status for r in runs if r.status != "ok")
    log.log(
        logging.WARNING if failed else logging.INFO,
        "%s: %d ok, %d failed%s; median %s; %s queries per execution",
        case,
        len(ok),
        sum(failed.values()),
        f" {dict(failed)}" if failed else "",
        f"{np.median([r.elapsed_ns for r in ok]) / 1e6:.3f} ms" if ok else "n/a",
        ok[-1].queries if ok else "n/a",
    )


def _log_check(backend: str, expected: PageResult, results: Mapping[str, PageResult]) -> None:
    """The check before timing counts: every method against the oracle, in the log."""
    wrong = {m: first_difference(expected, r) for m, r in results.items() if r != expected}
    if wrong:
        for method, why in wrong.items():
            log.error("%s %s differs from the expected page: %s", backend, method, why)
    else:
        log.info(
            "%s: %s return the same page as the oracle (%d users, %d posts)",
            backend,
            ", ".join(results),
            len(expected),
            sum(len(u[2]) for u in expected),
        )


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Check the config (and the DSN, by connecting once) before any work; then generate the
    data, load it into each backend in turn and measure the three methods. With
    ``query_file`` set, run that file's queries against ``postgres_dsn`` instead."""
    if cfg.get("query_file"):
        from forgebench.database import user_queries

        return user_queries.run(cfg, seed=seed, benchmark=NAME, version=BENCHMARK_VERSION)
    p = plan(cfg)
    if "postgres" in p.common.backends:
        check_postgres(p.common.postgres_dsn, config_key(NAME, "postgres_dsn"), p.common.timeout_s)
    data = generate(p.common.sizes, seed)
    expected = data.expected_page(p.page, p.page_size)
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
                "%s: %d rounds (%d warm-up) of %s, page %d of %d users",
                backend,
                p.warmup + p.executions,
                p.warmup,
                ", ".join(METHODS),
                p.page,
                p.page_size,
            )
            measure(target, expected, p, rec, seed=seed)
    return rec.frame()
