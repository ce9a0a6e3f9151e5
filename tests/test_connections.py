"""Held connections and users (forgebench.service.connections): every failed connection is
a row, a server stopped mid-hold is counted, the SLA verdict follows its rows."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import threading

import pytest

from forgebench.network.echo_server import (
    _read_port,
    child_env,
    echo_server_process,
    stop_process,
)
from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import connections as C
from forgebench.service.loadgen import RunResult, run_async

SMALL_DB = {"users": 50, "posts": 100, "comments": 200, "page_size": 10}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def _pacing(window_s: float = 1.0, interval_s: float = 0.25, think_s: float = 0.0) -> C.Pacing:
    return C.Pacing(window_s, 2.0, 2.0, interval_s=interval_s, think_s=think_s)


def _guard(failures: int = 10_000) -> OutageGuard:
    return OutageGuard(OutageLimits(failures, 600.0), "test")


def _rows(held: C.HoldResult, case: str = "echo_3conn"):
    rec = Recorder("service", "connections", 1)
    verdict = C.add_hold_rows(rec, case, {"n": len(held.conn_status)}, held, window_s=0.5)
    return rec.frame(), verdict


def test_raise_fd_limit_sets_soft_to_hard():
    before, after = C.raise_fd_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert after == soft and before <= after
    assert hard == resource.RLIM_INFINITY or soft == hard


def test_a_failed_connection_is_a_row():
    port = _closed_port()
    held = run_async(
        C.hold(lambda i: C.EchoConnection("127.0.0.1", port, 16), 3, _pacing(), _guard(), seed=1)
    )
    assert held.conn_status == ["error:ConnectionRefusedError"] * 3
    assert held.open_at_start == 0
    df, verdict = _rows(held)
    conn = df[df.metric == "connection"]
    assert len(conn) == 3 and (conn.status == "error:ConnectionRefusedError").all()
    lat = df[df.metric == "latency"]  # every planned round of the window: 4 per connection
    assert len(lat) == 12 and (lat.status == "error:ConnectionRefusedError").all()
    failed = df[df.metric == "connections_failed"].value.iloc[0]
    assert failed == 3
    assert verdict == "not met"
    assert df[df.metric == "sla_met"].value.iloc[0] == 0.0


def test_echo_server_stopped_mid_hold_counts_every_connection():
    cmd = [sys.executable, "-m", "forgebench.network.echo_server", "--port", "0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    try:
        port = _read_port(proc, 20.0)
        assert port is not None
        timer = threading.Timer(0.9, stop_process, args=(proc,))
        timer.start()
        held = run_async(
            C.hold(
                lambda i: C.EchoConnection("127.0.0.1", port, 32),
                4,
                _pacing(window_s=2.5, interval_s=0.2),
                _guard(),
                seed=2,
            )
        )
        timer.join()
    finally:
        stop_process(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    assert held.open_at_start == 4
    assert all(s not in ("ok", OUTAGE_STATUS) for s in held.conn_status), held.conn_status
    assert all(0 < t < 2.5 for t in held.conn_open_s)
    df, verdict = _rows(held, "echo_4conn")
    lat = df[df.metric == "latency"]
    assert (lat.status == "ok").any() and (lat.status != "ok").any()
    # every planned round is a row: 2.5 s / 0.2 s = 12 or 13 per connection
    assert 4 * 12 <= len(lat) <= 4 * 13
    assert verdict == "not met"


def test_tripped_outage_guard_records_rounds_not_attempted():
    guard = _guard(failures=1)
    guard.record(False)  # the server was taken to be gone before this window
    with echo_server_process() as (host, port):
        held = run_async(
            C.hold(lambda i: C.EchoConnection(host, port, 8), 2, _pacing(), guard, seed=0)
        )
    assert held.conn_status == [OUTAGE_STATUS] * 2
    assert held.run.n == 8 and set(held.run.status) == {OUTAGE_STATUS}


def _synthetic(n_ok: int, n_failed: int, latency_s: float) -> RunResult:
    res = RunResult(mode="open", timeout_s=1.0)
    for i in range(n_ok + n_failed):
        t = i * 1_000_000
        ok = i < n_ok
        res.add(
            t, t, t + int(latency_s * 1e9), "ok" if ok else "error:ConnectionResetError", 0, None
        )
    return res


def test_sla_verdict_follows_latency_and_failures():
    assert C.sla_at_n(_synthetic(1000, 0, 0.010))[0] == "met"
    assert C.sla_at_n(_synthetic(1000, 0, 0.500))[0] == "not met"
    verdict, why = C.sla_at_n(_synthetic(1000, 50, 0.010))
    assert verdict == "not met" and "over budget" in why
    assert C.sla_at_n(_synthetic(0, 5, 0.010))[0] == "not met"


def test_search_rows_censored_when_the_last_level_met():
    rec = Recorder("service", "connections", 1)
    C.add_search_rows(rec, "http", {}, [(10, "met"), (20, "met")])
    C.add_search_rows(rec, "echo", {}, [(10, "met"), (20, "not met")])
    df = rec.frame().set_index("case")
    assert df.loc["http_search", "value"] == 20 and df.loc["http_search", "status"] == "censored"
    assert df.loc["echo_search", "value"] == 10 and df.loc["echo_search", "status"] == "ok"


def test_run_small_levels_against_both_servers():
    cfg = {
        "endpoint": "db_page",
        "timeout_s": 5.0,
        "window_s": 0.5,
        "connect_timeout_s": 5.0,
        "startup_timeout_s": 120.0,
        "db": SMALL_DB,
        "echo": {"levels": [5, 10], "hold_s": 1.0, "round_interval_s": 0.25, "payload_bytes": 64},
        "http": {"levels": [5], "hold_s": 1.0, "round_interval_s": 0.25},
        "users": {"levels": [4], "hold_s": 1.5, "think_s": 0.1},
    }
    df = C.run(cfg, seed=0)
    cases = set(df.case)
    assert {"echo_5conn", "http_5conn", "users_4u"} <= cases
    params = df[df.metric == "connection"].params.iloc[0]
    assert '"fd_limit"' in params and '"fd_limit_before"' in params
    http = df[(df.case == "http_5conn") & (df.metric == "latency")]
    assert len(http) == 20 and (http.status == "ok").all()  # answers checked by digest
    held = df[(df.case == "http_5conn") & (df.metric == "connections_held_through")]
    assert held.value.iloc[0] == 5
    users = df[(df.case == "users_4u") & (df.metric == "latency")]
    assert len(users) >= 8 and (users.status == "ok").all()
    assert df[df.metric == "sla_met"].params.str.contains('"sla_verdict"').all()
    if "echo_10conn" in cases:  # the search stepped on: its outcome is a row
        assert "echo_search" in cases


@pytest.mark.parametrize("bad", [[3, 2], [0]])
def test_levels_must_increase(bad):
    cfg = {k: {"levels": [1]} for k in C.KINDS}
    cfg["echo"] = {"levels": bad}
    with pytest.raises(Exception, match="levels"):
        C.check_config(cfg)


def test_http_connections_to_a_stopped_service_are_failed_rows():
    from forgebench.service.loadgen import HttpRequest
    from forgebench.service.server import service_process

    with service_process({"db": SMALL_DB}) as addr:
        pass  # stopped: nothing listens on its port any more
    requests = [HttpRequest("GET", "/health", expect=b"ok")]
    held = run_async(
        C.hold(
            lambda i: C.HeldHttpConnection(addr.host, addr.port, requests, i),
            3,
            _pacing(),
            _guard(),
            seed=0,
        )
    )
    assert held.conn_status == ["error:ConnectionRefusedError"] * 3
    df, verdict = _rows(held, "http_3conn")
    assert (df[df.metric == "connection"].status == "error:ConnectionRefusedError").all()
    assert verdict == "not met"
