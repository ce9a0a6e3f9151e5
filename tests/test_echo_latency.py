"""echo_latency against the real echo server and against deliberately broken servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import psutil
import pytest

from forgebench.errors import ForgebenchError
from forgebench.network import echo_latency
from forgebench.network.echo_latency import make_payloads, measure, run
from forgebench.network.echo_server import child_env, echo_server_process

TINY = {
    "payload_sizes": [64, 4096],
    "concurrency": [2],
    "scenarios": ["persistent", "connect_per_request", "concurrent"],
    "warmup_requests": 20,
    "min_duration_s": 0.2,
    "min_requests": 50,
    "max_requests": 100_000,
    "timeout_s": 2.0,
    "repetitions": 1,
}
CASES = {
    "persistent_64B",
    "persistent_4096B",
    "connect_per_request_64B",
    "connect_per_request_4096B",
    "concurrent_2x64B",
    "concurrent_2x4096B",
}


def _echo_children() -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process().children()
        if "forgebench.network.echo_server" in " ".join(p.cmdline())
    ]


@contextmanager
def broken_server(handle: Callable[[socket.socket], None]) -> Iterator[tuple[str, int]]:
    """A threaded server in this process whose connections are served by ``handle``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conns.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        for conn in conns:
            conn.close()


def flip_first_byte(conn: socket.socket) -> None:
    """Echoes everything, but with the first byte of every chunk inverted."""
    buf = bytearray(1 << 16)
    try:
        while n := conn.recv_into(buf):
            buf[0] ^= 0xFF
            conn.sendall(memoryview(buf)[:n])
    except OSError:
        pass


def echo_once_then_close(conn: socket.socket) -> None:
    """Echoes one 64-byte request, then closes the connection."""
    buf = bytearray(64)
    try:
        got = 0
        while got < 64 and (n := conn.recv_into(memoryview(buf)[got:])):
            got += n
        conn.sendall(buf[:got])
    except OSError:
        pass
    finally:
        conn.close()


def never_reply(conn: socket.socket) -> None:
    """Reads and discards: every request times out."""
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass


def _cfg(**overrides: object) -> dict:
    return {**TINY, **overrides}


def test_run_all_scenarios_rows_and_values() -> None:
    frame = run(TINY, seed=3)
    rtt = frame[frame["metric"] == "rtt"]
    assert set(rtt["case"]) == CASES
    assert (frame["status"] == "ok").all()
    measured = rtt[~rtt["warmup"]]
    assert (measured["value"] > 0).all() and (measured["value"] < 1).all()
    counts = measured.groupby("case").size()
    assert (counts >= TINY["min_requests"]).all(), counts
    warm = rtt[rtt["warmup"]].groupby("case").size()
    assert (warm == TINY["warmup_requests"]).all(), warm
    for case, group in measured.groupby("case"):
        assert list(group["sample"]) == list(range(len(group))), case
        params = json.loads(group["params"].iloc[0])
        assert set(params) == {"scenario", "payload_bytes", "concurrency"}
        assert case.endswith(f"{params['payload_bytes']}B")
    assert (measured["unit"] == "s").all() and not measured["higher_is_better"].any()
    tput = frame[frame["metric"] == "throughput"]
    assert set(tput["case"]) == CASES and len(tput) == len(CASES)
    assert (tput["value"] > 0).all() and tput["higher_is_better"].all()
    assert (tput["unit"] == "requests/s").all()
    assert not _echo_children()  # the server stopped with run()


def test_max_requests_caps_the_loop() -> None:
    cfg = _cfg(scenarios=["persistent"], payload_sizes=[64], min_duration_s=30.0, max_requests=300)
    cfg["min_requests"] = 300
    start = time.monotonic()
    frame = run(cfg, seed=0)
    assert time.monotonic() - start < 10
    measured = frame[(frame["metric"] == "rtt") & ~frame["warmup"]]
    assert len(measured) == 300


def test_payloads_are_seeded_and_neighbours_differ() -> None:
    a = make_payloads(np.random.default_rng(7), 64)
    b = make_payloads(np.random.default_rng(7), 64)
    assert a == b and all(len(p) == 64 for p in a)
    assert all(a[i] != a[(i + 1) % len(a)] for i in range(len(a)))
    tiny = make_payloads(np.random.default_rng(7), 1)
    assert all(tiny[i] != tiny[(i + 1) % len(tiny)] for i in range(len(tiny)))
    with pytest.raises(ForgebenchError):
        make_payloads(np.random.default_rng(7), 0)


def test_corrupting_server_gives_mismatch_rows_not_ok() -> None:
    cfg = _cfg(scenarios=["persistent", "connect_per_request", "concurrent"], payload_sizes=[64])
    with broken_server(flip_first_byte) as addr:
        frame = measure(cfg, seed=1, address=addr)
    rtt = frame[frame["metric"] == "rtt"]
    assert len(rtt) > 0
    assert (rtt["status"] == "mismatch").all()
    assert rtt["value"].isna().all()
    tput = frame[frame["metric"] == "throughput"]
    assert (tput["status"] == "mismatch").all() and tput["value"].isna().all()


def test_nothing_listening_gives_error_rows() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        addr = sock.getsockname()  # closed again before use: nothing listens there
    frame = measure(_cfg(payload_sizes=[64]), seed=1, address=addr)
    rtt = frame[frame["metric"] == "rtt"]
    assert (rtt["status"] == "error:ConnectionRefusedError").all()
    assert rtt["value"].isna().all()
    # bounded: each loop gives up after a run of consecutive failures
    per_loop = echo_latency.MAX_CONSECUTIVE_FAILURES
    assert rtt.groupby(["case", "warmup"]).size().max() <= per_loop * 2


def test_dropped_connections_are_failures_and_the_client_reconnects() -> None:
    cfg = _cfg(scenarios=["persistent"], payload_sizes=[64], warmup_requests=0)
    cfg.update(min_duration_s=0.1, min_requests=20)
    with broken_server(echo_once_then_close) as addr:
        frame = measure(cfg, seed=2, address=addr)
    rtt = frame[frame["metric"] == "rtt"]
    ok = rtt[rtt["status"] == "ok"]
    failed = rtt[rtt["status"] != "ok"]
    assert len(ok) >= 20 and len(failed) > 0
    assert failed["status"].str.startswith("error:").all()
    assert failed["value"].isna().all() and (ok["value"] > 0).all()
    tput = frame[frame["metric"] == "throughput"]
    assert tput["status"].tolist() == ["ok"]


def test_silent_server_gives_timeout_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echo_latency, "MAX_CONSECUTIVE_FAILURES", 3)
    cfg = _cfg(scenarios=["persistent"], payload_sizes=[64], warmup_requests=0, timeout_s=0.1)
    with broken_server(never_reply) as addr:
        frame = measure(cfg, seed=2, address=addr)
    rtt = frame[frame["metric"] == "rtt"]
    assert rtt["status"].tolist() == ["timeout"] * 3
    assert rtt["value"].isna().all()


def test_server_killed_mid_run() -> None:
    cfg = _cfg(scenarios=["persistent"], payload_sizes=[64], warmup_requests=0)
    cfg.update(min_duration_s=3.0, min_requests=10)
    result: dict = {}
    with echo_server_process() as addr:
        (server,) = _echo_children()
        worker = threading.Thread(
            target=lambda: result.setdefault("frame", measure(cfg, seed=4, address=addr))
        )
        worker.start()
        time.sleep(0.3)  # let some round trips succeed before the kill
        server.kill()
        worker.join(timeout=20)
    assert not worker.is_alive()
    frame = result["frame"]
    rtt = frame[frame["metric"] == "rtt"]
    assert (rtt["status"] == "ok").sum() > 0
    failed = rtt[rtt["status"] != "ok"]
    assert len(failed) == echo_latency.MAX_CONSECUTIVE_FAILURES
    assert failed["status"].str.startswith("error:").all() and failed["value"].isna().all()
    # the failures come last, after which the loop gave up
    assert (rtt["status"].iloc[-len(failed) :] != "ok").all()


def test_echo_server_process_stops_even_when_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), echo_server_process() as addr:
        (server,) = _echo_children()
        pid = server.pid
        with socket.create_connection(addr, timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(16) == b"ping"
            raise RuntimeError("boom")
    assert not psutil.pid_exists(pid)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(addr, timeout=5):
        pass


def test_echo_server_exits_on_sigterm_with_open_connection() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "forgebench.network.echo_server", "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        port = int(proc.stdout.readline().split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"x" * 10)
            assert conn.recv(16) == b"x" * 10
            proc.terminate()
            assert proc.wait(timeout=5) == 0
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()


def test_echo_server_process_reports_a_server_that_does_not_start() -> None:
    with (
        pytest.raises(ForgebenchError, match="did not report its port"),
        echo_server_process(host="256.1.1.1", timeout_s=10),
    ):
        pass
    assert not _echo_children()


def test_invalid_config_is_a_user_error() -> None:
    with pytest.raises(ForgebenchError, match="scenarios"):
        run(_cfg(scenarios=["bogus"]), seed=0)
    with pytest.raises(ForgebenchError, match="max_requests"):
        run(_cfg(max_requests=10), seed=0)
