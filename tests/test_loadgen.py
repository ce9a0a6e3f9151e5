"""The load generator: HTTP parsing, seeded schedules, stopping rules, and failure accounting
against a real service process (and against nothing at all)."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from forgebench.errors import ForgebenchError
from forgebench.service import loadgen as lg
from forgebench.service.server import service_process

SMALL_DB = {"users": 50, "posts": 200, "comments": 500, "page_size": 10}


def test_parse_response_content_length_and_partial() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloHTTP/1.1"
    status, body, used, close = lg.parse_response(bytearray(raw))
    assert (status, body, close) == (200, b"hello", False)
    assert raw[used:] == b"HTTP/1.1"
    assert lg.parse_response(bytearray(raw[:30])) is None
    assert lg.parse_response(bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")) is None


def test_parse_response_chunked_close_and_garbage() -> None:
    raw = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    status, body, used, close = lg.parse_response(bytearray(raw))
    assert (status, body, used, close) == (503, b"abcde", len(raw), True)
    with pytest.raises(lg.ProtocolError):
        lg.parse_response(bytearray(b"SSH-2.0-OpenSSH\r\n\r\n"))


def test_parse_response_http10_and_bodies_ending_at_close() -> None:
    """A user's server may speak HTTP/1.0: it closes unless it says keep-alive, and a body
    without Content-Length ends when the connection does."""
    raw = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert lg.parse_response(bytearray(raw)) == (200, b"ok", len(raw), True)
    kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"
    assert lg.parse_response(bytearray(kept))[3] is False
    open_ended = bytearray(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\npart one, ")
    assert lg.parse_response(open_ended) is None  # more may come until the server closes
    assert lg.parse_response(open_ended, eof=True) == (200, b"part one, ", len(open_ended), True)


def test_http10_server_without_keep_alive_is_served_request_after_request(tmp_path) -> None:
    """Python's http.server (HTTP/1.0, a connection per answer) loads without failures."""
    import subprocess
    import sys

    (tmp_path / "f.txt").write_text("hello")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # up to 5 s for it to listen
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        req = [lg.HttpRequest("GET", "/f.txt", expect=b"hello")]
        res = lg.run_async(lg.closed_loop("127.0.0.1", port, req, 2, lg.Limits(0, 60, 10, 5)))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert res.n >= 60 and res.n_ok == res.n, res.failures()


def test_poisson_schedule_is_seeded_and_meets_both_minimums() -> None:
    a = lg.poisson_schedule(500.0, 2.0, 100, seed=3)
    assert np.array_equal(a, lg.poisson_schedule(500.0, 2.0, 100, seed=3))
    assert not np.array_equal(a, lg.poisson_schedule(500.0, 2.0, 100, seed=4))
    assert a[-1] >= 2.0e9 and len(a) >= 100 and np.all(np.diff(a) >= 0)
    assert len(a) / (a[-1] * 1e-9) == pytest.approx(500.0, rel=0.1)
    b = lg.poisson_schedule(10.0, 0.1, 300, seed=3)  # the count, not the duration, decides
    assert len(b) >= 300
    with pytest.raises(ForgebenchError):
        lg.poisson_schedule(0.0, 1.0, 1, seed=0)


def test_piecewise_schedule_rates_follow_the_phases() -> None:
    s = lg.piecewise_schedule([(2.0, 100.0), (1.0, 1000.0), (2.0, 100.0)], seed=1) * 1e-9
    counts = [np.sum((s >= lo) & (s < hi)) for lo, hi in ((0, 2), (2, 3), (3, 5))]
    assert counts[0] == pytest.approx(200, rel=0.3)
    assert counts[1] == pytest.approx(1000, rel=0.15)
    assert counts[2] == pytest.approx(200, rel=0.3)


@pytest.fixture(scope="module")
def service():
    faults = [{"path_prefix": "/status", "stall_share": 1.0, "stall_s": 0.2}]
    with service_process({"db": SMALL_DB, "faults": faults}, startup_timeout_s=60) as addr:
        yield addr


def test_closed_loop_stops_when_both_minimums_are_met(service) -> None:
    req = [lg.HttpRequest("GET", "/health", expect=b"ok")]
    res = lg.run_async(
        lg.closed_loop(service.host, service.port, req, 2, lg.Limits(0.3, 50, 10, 5))
    )
    assert res.n >= 50 and res.wall_s >= 0.3 and res.n_ok == res.n
    assert res.stop_reason == "target met"
    assert 0 < res.cpu_percent < 200 and res.connections == 2


def test_wrong_content_and_non_2xx_are_failures(service) -> None:
    reqs = [
        lg.HttpRequest("GET", "/health", expect=b"not this"),
        lg.HttpRequest("GET", "/no/such/path"),
    ]
    res = lg.run_async(lg.closed_loop(service.host, service.port, reqs, 1, lg.Limits(0, 40, 10, 5)))
    fails = res.failures()
    assert res.n_ok == 0 and set(fails) == {"mismatch", "error:HTTP404"}
    assert sum(fails.values()) == res.n


def test_open_loop_measures_from_the_scheduled_time(service) -> None:
    """One connection, a 0.2 s stall per request, arrivals every ~50 ms: requests queue, and
    the queueing shows in their latency (a generator timing from the actual send would
    report ~0.2 s for each: coordinated omission)."""
    req = [lg.HttpRequest("GET", "/status", expect=b'"status":"ok"')]
    sched = lg.poisson_schedule(20.0, 0.5, 10, seed=0)[:10]
    res = lg.run_async(
        lg.open_loop(service.host, service.port, req, sched, 10.0, max_connections=1)
    )
    lat = res.latencies_s()
    sent_late = (np.asarray(res.send_ns) - np.asarray(res.sched_ns)) * 1e-9
    assert res.n_ok == 10
    assert lat[-1] > 1.0  # ten 0.2 s services behind one connection
    assert np.all(lat >= sent_late + 0.19)
    assert lat.mean() > 0.5


def test_open_loop_timeout_counts_from_schedule(service) -> None:
    req = [lg.HttpRequest("GET", "/status")]
    sched = np.arange(6, dtype=np.int64) * 10_000_000
    res = lg.run_async(lg.open_loop(service.host, service.port, req, sched, 0.5, max_connections=1))
    assert res.n == 6
    assert res.failures().get("timeout", 0) >= 3
    assert res.n_ok + res.failures()["timeout"] == 6


def test_connection_refused_is_a_failure_not_a_success() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    req = [lg.HttpRequest("GET", "/health")]
    res = lg.run_async(lg.closed_loop("127.0.0.1", port, req, 1, lg.Limits(0, 10, 5, 1)))
    assert res.n_ok == 0 and res.n >= 10
    assert set(res.failures()) == {"error:ConnectionRefusedError"}
    sched = np.zeros(5, dtype=np.int64)
    res = lg.run_async(lg.open_loop("127.0.0.1", port, req, sched, 1.0))
    assert res.failures() == {"error:ConnectionRefusedError": 5}


def test_saturation_flag_reads_the_generator_cpu() -> None:
    res = lg.RunResult(mode="open", start_ns=0, stop_ns=1_000_000_000, cpu_s=0.95)
    assert res.saturated and res.cpu_percent == pytest.approx(95.0)
    res.cpu_s = 0.5
    assert not res.saturated


class _StallServer:
    """HTTP/1.1 on loopback in its own thread: every ``every``-th request stalls
    ``stall_s`` before its answer (every ``rare_every``-th ``rare_stall_s`` instead), and
    the stall log keeps each request's stall (0 if none) in arrival order: a lower bound of
    that request's true latency."""

    def __init__(
        self, every: int, stall_s: float, rare_every: int = 0, rare_stall_s: float = 0.0
    ) -> None:
        import asyncio
        import threading

        self.every, self.stall_s, self.log = every, stall_s, []
        self.rare_every, self.rare_stall_s = rare_every, rare_stall_s
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    stall = self._stall(len(self.log) + 1)
                    self.log.append(stall)
                    if stall:
                        await asyncio.sleep(stall)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        async def start() -> None:
            self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(
            target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
            daemon=True,
        )
        self.thread.start()
        assert ready.wait(10)

    def _stall(self, number: int) -> float:
        if self.rare_every and number % self.rare_every == 0:
            return self.rare_stall_s
        return self.stall_s if number % self.every == 0 else 0.0

    def close(self) -> None:
        import asyncio

        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_stalled_requests_keep_the_p99_at_or_above_the_stall_log_bound(mode: str) -> None:
    """A server stalls every 10th request 0.2 s; the client gives up after 0.1 s. The stall
    log bounds each request's true latency from below, so the true p99 is at least 0.2 s.
    A p99 of the answered requests alone stays far below (the issue's 94 ms against 190);
    the run's recorded p99 counts every request, a timeout at least its timeout. Here the
    bound (0.2 s) exceeds the timeout, so the p99 falls among the timeouts and the recorded
    figure is a *censored lower bound* (status "censored"), no lower than what a 0.1 s
    client can know, min(bound, timeout); the case below is the one where it is a value."""
    from forgebench import stats
    from forgebench.network.echo_latency import WallClock
    from forgebench.record import Recorder
    from forgebench.service.scenarios import add_run_rows

    timeout = 0.1
    server = _StallServer(every=10, stall_s=0.2)
    try:
        req = [lg.HttpRequest("GET", "/", expect=b"ok")]
        if mode == "closed":
            run = lg.closed_loop("127.0.0.1", server.port, req, 1, lg.Limits(0, 100, 20, timeout))
        else:
            sched = lg.poisson_schedule(100.0, 1.0, 100, seed=1)
            run = lg.open_loop("127.0.0.1", server.port, req, sched, timeout)
        res = lg.run_async(run)
    finally:
        server.close()
    timeouts = res.failures().get("timeout", 0)
    assert timeouts >= 0.05 * res.n and res.n_ok + timeouts == res.n
    bound = stats.percentile(np.asarray(server.log), 99)  # the stall log's lower bound
    assert bound == pytest.approx(0.2)
    answered_p99 = stats.percentile(res.latencies_s()[res.ok_mask()], 99)
    assert answered_p99 < min(bound, timeout)  # what dropping timeouts reports
    rec = Recorder("service", "load_scenarios", 1)
    add_run_rows(rec, "case", {}, res, WallClock(), window_s=0.5)
    frame = rec.frame().set_index("metric")
    p99 = frame.loc["latency_p99"]
    assert p99["status"] == "censored"  # read: at least this
    assert p99["value"] >= min(bound, timeout)
    assert frame.loc["censored_requests", "value"] == timeouts
    assert json.loads(p99["params"])["censored"] == timeouts


def _stalled_run(mode: str, server: _StallServer, timeout: float, n: int) -> lg.RunResult:
    req = [lg.HttpRequest("GET", "/", expect=b"ok")]
    if mode == "closed":
        limits = lg.Limits(0, n, 60, timeout, max_queries=n)
        run = lg.closed_loop("127.0.0.1", server.port, req, 4, limits)
    else:
        sched = lg.poisson_schedule(200.0, 0.0, n, seed=2, max_queries=n)
        run = lg.open_loop("127.0.0.1", server.port, req, sched, timeout)
    try:
        return lg.run_async(run)
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_a_run_with_timeouts_records_a_p99_at_least_the_stall_log_bound(mode: str) -> None:
    """Timeouts occur, but the p99 is decided by stalls below the timeout: every 10th
    request stalls 0.2 s, every 300th 1.0 s instead, the client gives up after 0.5 s. The
    1.0 s stalls time out (2 of 600, under 1 %), so the recorded p99 is a value, not a
    censored bound, and it must be at least the stall log's p99 (0.2 s): each request's
    stall bounds its true latency from below. Below it would be a bug in the load
    generator's latencies or the percentile code, not a figure to tune the test to."""
    from forgebench import stats
    from forgebench.network.echo_latency import WallClock
    from forgebench.record import Recorder
    from forgebench.service.scenarios import add_run_rows

    timeout, n = 0.5, 600
    server = _StallServer(every=10, stall_s=0.2, rare_every=300, rare_stall_s=1.0)
    res = _stalled_run(mode, server, timeout, n)
    timeouts = res.failures().get("timeout", 0)
    assert res.n >= n and res.n_ok + timeouts == res.n
    assert 1 <= timeouts < 0.01 * res.n  # timeouts occur, and too few to reach the p99
    log = np.asarray(server.log)
    assert (log == 1.0).sum() >= 1 and (log == 1.0).mean() < 0.01
    bound = stats.percentile(log, 99)  # the stall log's lower bound of the true p99
    assert bound == pytest.approx(0.2)
    rec = Recorder("service", "load_scenarios", 1)
    add_run_rows(rec, "case", {}, res, WallClock(), window_s=0.5)
    frame = rec.frame().set_index("metric")
    p99 = frame.loc["latency_p99"]
    assert p99["status"] == "ok"  # a value: the timeouts lie above it
    assert bound <= p99["value"] < timeout
    assert frame.loc["censored_requests", "value"] == timeouts
