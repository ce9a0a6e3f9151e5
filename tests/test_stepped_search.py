"""The stepped search for the largest N meeting the SLA (forgebench.service.connections):
up the configured levels, then bisection of the bracket, against a server with a planted
connection limit it must find within one step."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from forgebench.outage import OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import connections as C


def _walk(limit: int, levels: list[int], bisect_to: int) -> list[tuple[int, str]]:
    """The steps next_step takes against a service that meets the SLA up to ``limit``."""
    steps: list[tuple[int, str]] = []
    while (n := C.next_step(steps, levels, bisect_to)) is not None:
        steps.append((n, "met" if n <= limit else "not met"))
    return steps


def test_next_step_steps_up_then_bisects_the_bracket():
    levels = [500, 1000, 2000, 4000, 8000]
    steps = _walk(2700, levels, 100)
    assert [n for n, _ in steps[:4]] == [500, 1000, 2000, 4000]  # up to the first failure
    best, failed = C.search_bounds(steps)
    assert best <= 2700 < failed and failed - best <= 100
    assert len(steps) == 4 + 5  # 2000 wide bracket halved to <= 100: 5 more steps
    # no bisection: the configured steps only, as before
    assert _walk(2700, levels, 0) == [(500, "met"), (1000, "met"), (2000, "met"), (4000, "not met")]
    # every level met: censored at the top; the first level failing: bisect below it
    assert C.search_bounds(_walk(10**6, levels, 100)) == (8000, None)
    assert C.search_bounds(_walk(300, levels, 1)) == (300, 301)
    # an inconclusive level is not support
    assert C.search_bounds([(10, "met"), (20, "inconclusive")]) == (10, 20)


class LimitedEchoServer:
    """An echo server that closes every connection beyond ``limit`` open at once: the
    planted connection limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=socket.SOMAXCONN)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                admit = self.open < self.limit
                self.open += admit
                self.refused += not admit
            if not admit:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.open and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def limited():
    server = LimitedEchoServer(20)
    yield server
    server.close()


def test_stepped_search_finds_a_planted_connection_limit_within_one_step(limited):
    pacing = C.Pacing(window_s=1.0, timeout_s=2.0, connect_timeout_s=2.0, interval_s=0.02)
    bisect_to = 2

    async def level(n: int, guard: OutageGuard):
        limited.wait_idle()  # the previous level's connections gone on the server too
        return await C.hold(lambda i: C.EchoConnection("127.0.0.1", limited.port, 64), n,
                            pacing, guard, seed=3)  # fmt: skip

    rec = Recorder("service", "connections", 1)
    steps = C.search(
        rec, "echo", [4, 8, 16, 32, 64], level, {"server": "limited echo"}, 1.0,
        lambda: OutageGuard(OutageLimits(10_000, 600.0), "test"), bisect_to=bisect_to,
    )  # fmt: skip
    assert limited.refused > 0  # the limit was hit: the search went past it
    best, failed = C.search_bounds(steps)
    assert 20 - bisect_to <= best <= 20 < failed <= best + bisect_to
    df = rec.frame()
    # one case per step, each with its SLA verdict and its place in the search
    verdicts = df[df.metric == "sla_met"]
    assert [json.loads(p)["n"] for p in verdicts.params] == [n for n, _ in steps]
    assert [json.loads(p)["search_step"] for p in verdicts.params] == list(range(len(steps)))
    found = df[df.case == "echo_search"].iloc[0]
    params = json.loads(found.params)
    assert found.value == best and found.status == "ok"
    assert params["first_n_not_met"] == failed and params["bisect_to"] == bisect_to
    # the failed step's failures are rows: a refused connection's planned rounds failed
    failed_rows = df[(df.case == f"echo_{failed}conn") & (df.metric == "latency")]
    assert (failed_rows.status != "ok").sum() >= 1
