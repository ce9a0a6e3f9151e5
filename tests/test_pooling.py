"""database/connection_pooling on real SQLite and a real PostgreSQL server, including a
backend that fails every query, which must give failures and never an improvement."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest

from forgebench import analysis
from forgebench.database import connection_pooling
from forgebench.database.backends import open_target, sqlite_target
from forgebench.database.dataset import Sizes, generate
from forgebench.database.pools import SimplePool, open_pool
from forgebench.errors import ForgebenchError
from forgebench.outage import OUTAGE_STATUS
from forgebench.record import Recorder

KEY = "suites.database.benchmarks.connection_pooling"
SIZES = {"users": 100, "posts": 1000, "comments": 5000}
TINY = {
    "backends": ["sqlite"],
    "postgres_dsn": "",
    "sizes": SIZES,
    "workers": 3,
    "queries_per_worker": 30,
    "warmup_queries": 2,
    "pool_size": 2,
    "repetitions": 2,
    "timeout_s": 10.0,
}
STATISTICS = {"bootstrap_resamples": 200}
COMPARISON = {
    "name": "pooling",
    "suite": "database",
    "benchmark": "connection_pooling",
    "metric": "latency",
}
TARGET = {
    "name": "pooling at least 50% better",
    "comparison": "pooling",
    "statistic": "improvement",
    "op": ">=",
    "threshold": 0.5,
}


def tiny(**changes) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return cfg


def verdicts(frame, backend: str):
    comp = dict(COMPARISON, baseline=f"{backend}_connect_per_query", candidate=f"{backend}_pooled")
    comparisons = analysis.compare_cases(frame, [comp], STATISTICS, seed=0)
    targets = analysis.check_targets([TARGET], comparisons, frame, STATISTICS, seed=0)
    return comparisons.iloc[0], targets.iloc[0]


def _check_rows(frame, backend: str, cfg: dict) -> None:
    per_phase = cfg["workers"] * cfg["queries_per_worker"]
    for mode in connection_pooling.MODES:
        rows = frame[frame["case"] == f"{backend}_{mode}"]
        lat = rows[(rows["metric"] == "latency") & ~rows["warmup"]]
        assert len(lat) == per_phase * cfg["repetitions"]
        warm = rows[rows["warmup"]]
        assert len(warm) == cfg["workers"] * cfg["warmup_queries"] * cfg["repetitions"]
        assert (rows["metric"] == "throughput").sum() == cfg["repetitions"]
        assert (rows["status"] == "ok").all(), rows["status"].value_counts().to_dict()


def test_simple_pool_lends_each_connection_to_one_thread_and_times_out():
    data = generate(Sizes(**SIZES), 0)
    with sqlite_target(data, 10.0) as target:
        pool = SimplePool(target.connect, 2, timeout_s=0.2)
        try:
            in_use: set[int] = set()
            lock = threading.Lock()
            peak = [0]
            clash = []

            def borrow() -> None:
                for _ in range(20):
                    with pool.connection() as conn:
                        with lock:
                            if id(conn) in in_use:
                                clash.append(id(conn))
                            in_use.add(id(conn))
                            peak[0] = max(peak[0], len(in_use))
                        assert conn.execute("SELECT COUNT(*) FROM users").fetchone() == (100,)
                        time.sleep(0.001)  # hold it, so the threads overlap
                        with lock:
                            in_use.discard(id(conn))

            threads = [threading.Thread(target=borrow) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not clash and peak[0] == 2
            with pool.connection(), pool.connection():
                start = time.monotonic()
                with pytest.raises(TimeoutError), pool.connection():
                    pass
                assert time.monotonic() - start >= 0.19
        finally:
            pool.close()


def test_run_on_sqlite_checks_every_query():
    frame = connection_pooling.run(tiny(), seed=4)
    _check_rows(frame, "sqlite", TINY)
    comp, _ = verdicts(frame, "sqlite")
    assert comp["n_failed_baseline"] == 0 and comp["n_failed_candidate"] == 0


def test_run_on_postgres(pg):
    cfg = tiny(backends=["postgres"], postgres_dsn=pg.dsn, queries_per_worker=8, warmup_queries=1)
    frame = connection_pooling.run(cfg, seed=4)
    _check_rows(frame, "postgres", cfg)


def _measure_with(target, data, cfg, seed=0):
    rec = Recorder("database", "connection_pooling", 1)
    connection_pooling.measure(
        target, data.comment_counts, connection_pooling.plan(cfg), rec, seed=seed
    )
    return rec.frame()


def _assert_failed_everywhere(frame, backend: str, status: str) -> None:
    """Every measured row failed: with ``status`` until the outage rule stopped the run,
    then as ``error:Outage`` (planned, not attempted); none dropped."""
    measured = frame[~frame["warmup"]]
    counts = measured["status"].value_counts().to_dict()
    assert set(counts) <= {status, OUTAGE_STATUS}, counts
    assert status in counts or (frame["status"] == status).any(), counts
    assert measured["value"].isna().all()
    comp, target = verdicts(frame, backend)
    assert comp["verdict"] in ("failed", "undetermined")
    assert comp["n_failed_baseline"] > 0 and comp["n_failed_candidate"] > 0
    assert target["verdict"] != "met"


def test_sqlite_backend_failing_every_query_is_a_failed_verdict():
    """The comments table dropped from the real file: every query fails in both modes."""
    cfg = tiny()
    data = generate(Sizes(**SIZES), 0)
    with sqlite_target(data, 10.0) as target:
        conn = target.connect()
        conn.execute("DROP TABLE comments")
        conn.close()
        frame = _measure_with(target, data, cfg)
    _assert_failed_everywhere(frame, "sqlite", "error:OperationalError")


def test_postgres_backend_failing_every_query_is_a_failed_verdict(pg):
    cfg = tiny(backends=["postgres"], postgres_dsn=pg.dsn, queries_per_worker=5)
    data = generate(Sizes(**SIZES), 0)
    with open_target(
        "postgres", data, dsn=pg.dsn, dsn_key=f"{KEY}.postgres_dsn", timeout_s=10.0
    ) as target:
        conn = target.connect()
        conn.execute("DROP TABLE comments")
        conn.close()
        frame = _measure_with(target, data, cfg)
    _assert_failed_everywhere(frame, "postgres", "error:UndefinedTable")


def test_wrong_answers_are_mismatches():
    """Comments deleted after loading: counts of posts that had comments come back wrong."""
    cfg = tiny()
    data = generate(Sizes(**SIZES), 0)
    with sqlite_target(data, 10.0) as target:
        conn = target.connect()
        conn.execute("DELETE FROM comments")
        conn.close()
        frame = _measure_with(target, data, cfg)
    lat = frame[(frame["metric"] == "latency") & ~frame["warmup"]]
    assert (lat["status"] == "mismatch").sum() > 0.5 * len(lat)
    assert lat.loc[lat["status"] == "mismatch", "value"].isna().all()
    comp, target = verdicts(frame, "sqlite")
    assert comp["verdict"] != "improvement" and target["verdict"] != "met"


def test_pool_of_a_backend_is_closed_after_measuring(pg):
    import psycopg

    data = generate(Sizes(**SIZES), 0)
    with open_target(
        "postgres", data, dsn=pg.dsn, dsn_key=f"{KEY}.postgres_dsn", timeout_s=10.0
    ) as target:
        pool = open_pool(target, 3, 10.0, f"{KEY}.postgres_dsn")
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            count = "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = current_user"
            during = conn.execute(count).fetchone()[0]
            pool.close()
            deadline = time.monotonic() + 5  # a server process ends just after its client
            while (after := conn.execute(count).fetchone()[0]) > during - 3:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
    assert during >= 3 + 1 and after <= during - 3


@pytest.mark.parametrize("password", [None, "not-the-password"], ids=["unreachable", "password"])
def test_connection_problems_are_one_clear_error(request, password):
    pytest.importorskip("psycopg")
    if password is None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        dsn, reason = f"host=127.0.0.1 port={port} dbname=x user=x", "refused"
    else:
        dsn, reason = request.getfixturevalue("pg").dsn_with(password=password), "password"
    with pytest.raises(ForgebenchError) as info:
        connection_pooling.run(tiny(backends=["postgres"], postgres_dsn=dsn), seed=0)
    message = str(info.value)
    assert message.startswith(f"{KEY}.postgres_dsn: could not connect to PostgreSQL")
    assert reason in message.lower() and "\n" not in message
    assert password is None or password not in message


def test_empty_dsn_with_postgres_names_the_key():
    with pytest.raises(ForgebenchError, match=rf"{KEY}\.postgres_dsn is empty"):
        connection_pooling.run(tiny(backends=["postgres"]), seed=0)


def test_postgres_stopped_mid_run_ends_the_job_within_twice_the_phase_cap():
    """A real server stopped mid-run (pg_ctl stop): the run returns within twice the
    outage rule's failing-seconds cap of the stop, every planned query a row, the failures
    recorded. Without the rule each pooled query would wait out its timeout: hours."""
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    from postgres_server import _stop, find_binaries, postgres_server

    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL binaries not found (Debian package postgresql)")
    cap_s = 4.0
    cfg = tiny(
        backends=["postgres"],
        workers=2,
        queries_per_worker=5_000,  # pooled, each would wait out its 1 s timeout: hours
        repetitions=2,
        timeout_s=1.0,  # a phase stops within cap + one timeout (+ writing the rows)
        outage={"max_consecutive_failures": 20, "max_failing_s": cap_s},
    )
    with postgres_server(binaries) as server:
        cfg["postgres_dsn"] = server.dsn
        result: dict = {}

        def run() -> None:
            try:
                result["frame"] = connection_pooling.run(cfg, seed=1)
            except BaseException as exc:  # reported by the assertion below
                result["error"] = exc
            result["ended"] = time.monotonic()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        time.sleep(4.0)  # loaded and measuring by now
        assert worker.is_alive(), result
        _stop(binaries, Path(server.socket_dir).parent / "data")
        stopped = time.monotonic()
        worker.join(timeout=60)
    assert not worker.is_alive(), "the run did not end within 60 s of the server's stop"
    assert "error" not in result, result.get("error")
    took = result["ended"] - stopped
    assert took <= 2 * cap_s, f"ended {took:.1f} s after the stop; cap {cap_s} s"
    frame = result["frame"]
    lat = frame[frame["metric"] == "latency"]
    planned = cfg["workers"] * (cfg["queries_per_worker"] + cfg["warmup_queries"])
    assert len(lat) == planned * cfg["repetitions"] * len(connection_pooling.MODES)
    statuses = lat["status"].value_counts().to_dict()
    failed_before_stop = sum(n for s, n in statuses.items() if s not in ("ok", OUTAGE_STATUS))
    assert statuses.get("ok", 0) > 0, statuses  # it was mid-run
    assert failed_before_stop > 0, statuses  # the failures that tripped the rule are rows
    assert statuses.get(OUTAGE_STATUS, 0) > 0, statuses
    assert lat.loc[lat["status"] != "ok", "value"].isna().all()
    throughput = frame[frame["metric"] == "throughput"]
    assert len(throughput) == cfg["repetitions"] * len(connection_pooling.MODES)
