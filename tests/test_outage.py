"""The shared outage rule (forgebench.outage): a failing streak, by count or by seconds,
stops a benchmark's work against a server; planned faults are exempt for their window."""

from __future__ import annotations

import pytest

from forgebench.config import SCHEMA_PATH, load_yaml
from forgebench.errors import ForgebenchError
from forgebench.outage import OutageGuard, OutageLimits


class Clock:
    """A clock the test moves by hand, so the wall-clock limit is tested exactly."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_trips_after_the_configured_run_of_failures():
    guard = OutageGuard(OutageLimits(max_consecutive_failures=3, max_failing_s=60), "t", Clock())
    assert guard.record(False) and guard.record(False)
    assert guard.record(True)  # a success ends the streak
    assert guard.record(False) and guard.record(False)
    assert not guard.record(False)
    assert guard.tripped and "3 consecutive failures" in guard.reason
    assert not guard.record(True)  # once gone, no more work is attempted


def test_the_guard_trips_when_a_failing_streak_lasts_too_long():
    clock = Clock()
    guard = OutageGuard(OutageLimits(max_consecutive_failures=100, max_failing_s=5), "t", clock)
    assert guard.record(False)
    clock.now += 4.9
    assert guard.record(False)
    clock.now += 0.2
    assert not guard.record(False)
    assert "over 5.1 s" in guard.reason


def test_a_planned_fault_is_exempt_for_its_window_only():
    clock = Clock()
    guard = OutageGuard(OutageLimits(max_consecutive_failures=2, max_failing_s=5), "t", clock)
    with guard.planned_fault(up_to_s=300):
        for _ in range(50):
            clock.now += 1
            assert guard.record(False)  # a restart under test: not an outage
        clock.now += 300  # past the window's allowance the failures count again
        assert guard.record(False)
        assert not guard.record(False)
    assert guard.tripped


def test_limits_come_from_the_config_with_the_schema_defaults():
    schema = load_yaml(SCHEMA_PATH)["properties"]["outage"]["properties"]
    defaults = OutageLimits()
    for name, prop in schema.items():
        assert getattr(defaults, name) == prop["default"], name
    assert OutageLimits.from_config({}) == defaults
    assert OutageLimits.from_config({"outage": {"max_failing_s": 2}}).max_failing_s == 2
    with pytest.raises(ForgebenchError, match="unknown setting"):
        OutageLimits.from_config({"outage": {"max_failures": 2}})


def test_server_benchmarks_receive_the_limits_from_one_place():
    from forgebench.workflow import benchmark_config

    config = load_yaml(SCHEMA_PATH.parent / "config.yaml")
    config["outage"] = {"max_consecutive_failures": 7, "max_failing_s": 3.0}
    for name in ("n_plus_one", "connection_pooling"):
        assert benchmark_config(config, "database", name)["outage"] == config["outage"]
    assert "outage" not in benchmark_config(config, "harness", "sampler_overhead")


def test_a_streak_starts_when_its_first_failed_attempt_began():
    """An attempt that waited out a 10 s timeout has been failing for 10 s when it ends."""
    clock = Clock()
    guard = OutageGuard(OutageLimits(max_consecutive_failures=100, max_failing_s=15), "t", clock)
    assert guard.record(False, took_s=10.0)
    clock.now += 5.0
    assert not guard.record(False, took_s=10.0)


def test_n_plus_one_stops_at_the_limit_and_records_the_rest():
    """The comments table dropped from the real SQLite file: every execution fails; after
    the configured run of failures nothing more is attempted, yet every planned execution
    is a row (the rest as error:Outage), none dropped."""
    from forgebench.database import n_plus_one
    from forgebench.database.backends import sqlite_target
    from forgebench.database.dataset import Sizes, generate
    from forgebench.outage import OUTAGE_STATUS
    from forgebench.record import Recorder

    sizes = {"users": 60, "posts": 300, "comments": 1500}
    cfg = {"backends": ["sqlite"], "postgres_dsn": "", "sizes": sizes, "page": 0,
           "page_size": 20, "executions": 30, "warmup": 1, "timeout_s": 5.0,
           "outage": {"max_consecutive_failures": 7, "max_failing_s": 60}}  # fmt: skip
    data = generate(Sizes(**sizes), 0)
    p = n_plus_one.plan(cfg)
    rec = Recorder("database", "n_plus_one", n_plus_one.BENCHMARK_VERSION)
    with sqlite_target(data, 5.0) as target:
        conn = target.connect()
        conn.execute("DROP TABLE comments")
        conn.close()
        n_plus_one.measure(target, data.expected_page(0, 20), p, rec, seed=0)
    lat = rec.frame().query("metric == 'latency'")
    assert len(lat) == (30 + 1) * len(n_plus_one.METHODS)
    attempted = lat[lat["status"] != OUTAGE_STATUS]
    assert len(attempted) == 7 and attempted["status"].str.startswith("error:").all()
    assert lat["value"].isna().all()
