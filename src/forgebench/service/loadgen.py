"""The load generator: closed-loop users and open-loop Poisson arrivals over raw HTTP/1.1.

Vocabulary after MLPerf LoadGen. Why it looks the way it does:

* **Efficient client.** One asyncio event loop (uvloop when installed) in the calling
  thread drives every connection through a small ``asyncio.Protocol``: requests are
  pre-built bytes, responses are parsed from ``Content-Length`` (or chunked encoding), and
  connections are kept alive. ``service/wrk_compare`` measures its rate, latency and CPU
  per request against wrk's on the same endpoint.
* **Closed loop** (``users`` U): U connections, each sends its next request when the
  previous answer arrived. Latency is send to last byte.
* **Open loop** (``rate`` r/s): arrival times are a seeded Poisson process (exponential
  gaps), fixed before the run. Each arrival is sent at its scheduled time on a free
  connection (a new one while fewer than ``max_connections`` are open, else it queues).
  Latency runs from the **scheduled** send time, not the actual one, so a stalled server
  or a late generator cannot hide waiting time (no coordinated omission). A request whose
  timeout has passed (counted from its scheduled time) before it could be sent is a
  timeout. The achieved arrival rate is kept beside the target.
* **Stopping.** A run ends once both ``min_duration_s`` and ``min_queries`` are met (the
  open-loop schedule is drawn long enough for both); ``max_duration_s`` and, in closed
  loop, ``MAX_CONSECUTIVE_FAILURES`` failures in a row on one connection bound a broken run.
* **Any HTTP/1.x server.** The same client drives the built-in service and a user's own
  (``forgebench.service.target``): HTTP/1.0 answers close their connection unless they say
  keep-alive, a body without ``Content-Length`` or chunking ends when the server closes,
  and ``https`` targets are reached through TLS (``ssl``; the default context, so
  ``SSL_CERT_FILE`` names a private CA).
* **Every request accounted for.** Non-2xx answers (``error:HTTP<code>``), timeouts
  (``timeout``), refused or reset connections (``error:<OSError class>``), malformed
  responses (``error:ProtocolError``) and answers without their expected content
  (``mismatch``) are failures; after any failure the connection is replaced. A run's
  percentiles (``RunResult.percentile``) keep every request: a timed-out one lasted at
  least its timeout and is right-censored there, so a percentile among the timeouts is
  reported as a lower bound, never as the lower figure of the requests that answered.
* **Generator CPU.** The event loop thread's CPU time (``time.thread_time``) is read at the
  start, every ``CPU_SAMPLE_S`` and at the end. A run whose generator used more than
  ``SATURATION_PERCENT`` of its core is marked saturated: its latencies may be the
  generator's, so it must not be read as the server's limit.
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl as ssl_lib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forgebench import alerts, stats
from forgebench.errors import ForgebenchError
from forgebench.outage import OUTAGE_STATUS, OutageGuard
from forgebench.record import status_for

SATURATION_PERCENT = 90.0
CPU_SAMPLE_S = 0.5
MAX_CONSECUTIVE_FAILURES = 50


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this client can read."""


@dataclass(frozen=True)
class HttpRequest:
    """One request kind: method, path (with query), body; ``expect`` must be in a 2xx body."""

    method: str
    path: str
    body: bytes = b""
    expect: bytes | None = None
    name: str = ""

    def raw(self, host: str, port: int, host_header: str | None = None) -> bytes:
        """The request's bytes; ``Host`` is ``host_header`` when given, else host:port."""
        head = (
            f"{self.method} {self.path} HTTP/1.1\r\nHost: {host_header or f'{host}:{port}'}\r\n"
            f"User-Agent: forgebench\r\nContent-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode("latin-1") + self.body


def parse_response(buf: bytearray, *, eof: bool = False) -> tuple[int, bytes, int, bool] | None:
    """(status, body, bytes used, connection ends) once ``buf`` holds a whole response,
    else None. Raises ProtocolError on bytes that are not HTTP/1.x.

    ``eof``: the server has closed the connection, which ends a body sent without
    ``Content-Length`` or chunking (HTTP/1.0 style); an HTTP/1.0 answer closes the
    connection unless it says ``Connection: keep-alive``.
    """
    h = buf.find(b"\r\n\r\n")
    if h < 0:
        if len(buf) > 65536:
            raise ProtocolError("no end of headers within 64 KiB")
        return None
    head = bytes(buf[:h]).lower()
    if not head.startswith(b"http/1.") or len(head) < 12:
        raise ProtocolError(f"not an HTTP/1.x status line: {head[:40]!r}")
    try:
        status = int(head[9:12])
    except ValueError:
        raise ProtocolError(f"bad status line {head[:40]!r}") from None
    close = b"\r\nconnection: close" in head or (
        head.startswith(b"http/1.0") and b"\r\nconnection: keep-alive" not in head
    )
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        try:
            length = int(head[i + 17 : j if j >= 0 else len(head)])
        except ValueError:
            raise ProtocolError("bad Content-Length") from None
        end = h + 4 + length
        if len(buf) < end:
            return None
        return status, bytes(buf[h + 4 : end]), end, close
    if b"\r\ntransfer-encoding: chunked" in head:
        return _parse_chunked(buf, h + 4, status, close)
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", h + 4, close
    if eof:  # the body ran until the server closed the connection
        return status, bytes(buf[h + 4 :]), len(buf), True
    return None


def _parse_chunked(
    buf: bytearray, pos: int, status: int, close: bool
) -> tuple[int, bytes, int, bool] | None:
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)
            if end < 0:
                return None
            return status, bytes(body), end + 4, close
        if len(buf) < eol + 2 + size + 2:
            return None
        body += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2


class _Protocol(asyncio.Protocol):
    """One keep-alive connection; the pending request's future gets the parsed response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.fut: asyncio.Future[tuple[int, bytes]] | None = None
        self.usable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        fut = self.fut
        if fut is None:
            return
        try:
            parsed = parse_response(self.buf)
        except ProtocolError as exc:
            self.usable = False
            self.fut = None
            if not fut.done():
                fut.set_exception(exc)
            return
        if parsed is None:
            return
        status, body, used, close = parsed
        del self.buf[:used]
        if close:
            self.usable = False
        self.fut = None
        if not fut.done():
            fut.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        fut, self.fut = self.fut, None
        if fut is None or fut.done():
            return
        if exc is None and self.buf:
            try:
                parsed = parse_response(self.buf, eof=True)
            except ProtocolError as perr:
                fut.set_exception(perr)
                return
            if parsed is not None:
                fut.set_result((parsed[0], parsed[1]))
                return
        fut.set_exception(exc or ConnectionResetError("the server closed the connection"))


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class HttpConnection:
    """A lazily (re)opened keep-alive connection (TLS when ``ssl`` is given); any failure
    closes it."""

    def __init__(self, host: str, port: int, *, ssl: ssl_lib.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.proto: _Protocol | None = None

    async def call(self, raw: bytes, timeout_s: float) -> tuple[int, bytes]:
        """Send ``raw``; return (status, body). Raises TimeoutError, OSError, ProtocolError."""
        loop = asyncio.get_running_loop()
        proto = self.proto
        if proto is None or not proto.usable:
            self.close()
            deadline = loop.time() + timeout_s
            tls: dict[str, Any] = {}
            if self.ssl is not None:
                tls = {"ssl": self.ssl, "server_hostname": self.host}
            _, proto = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port, **tls), timeout_s
            )
            self.proto = proto
            timeout_s = max(0.0, deadline - loop.time())
        fut: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        proto.fut = fut
        assert proto.transport is not None
        proto.transport.write(raw)
        handle = loop.call_later(timeout_s, _expire, fut)
        try:
            return await fut
        except BaseException:
            self.close()
            raise
        finally:
            handle.cancel()

    def close(self) -> None:
        if self.proto is not None:
            if self.proto.transport is not None:
                if self.ssl is None:
                    self.proto.transport.close()
                else:  # no TLS close handshake: it would outlive the run's event loop
                    self.proto.transport.abort()
            self.proto = None


@dataclass
class RunResult:
    """Raw outcome of one run: per request scheduled/send/end times (ns), status, kind."""

    mode: str
    target_rate: float | None = None
    users: int | None = None
    sched_ns: list[int] = field(default_factory=list)
    send_ns: list[int] = field(default_factory=list)
    end_ns: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    bodies: list[bytes | None] = field(default_factory=list)
    start_ns: int = 0
    stop_ns: int = 0
    cpu_s: float = 0.0
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)  # (t_s, percent)
    stop_reason: str = "target met"
    connections: int = 0
    timeout_s: float = math.nan  # a timed-out request lasted at least this long

    def __post_init__(self) -> None:
        alerts.track_load_run(self)  # its error rate is a live figure (forgebench.alerts)

    def add(
        self, sched: int, send: int, end: int, status: str, kind: int, body: bytes | None
    ) -> None:
        self.sched_ns.append(sched)
        self.send_ns.append(send)
        self.end_ns.append(end)
        self.status.append(status)
        self.kind.append(kind)
        self.bodies.append(body)

    @property
    def n(self) -> int:
        return len(self.status)

    @property
    def n_ok(self) -> int:
        return sum(1 for s in self.status if s == "ok")

    @property
    def wall_s(self) -> float:
        return (self.stop_ns - self.start_ns) * 1e-9

    def latencies_s(self) -> np.ndarray:
        """End minus scheduled time of every request (failed ones too), in seconds."""
        return (np.asarray(self.end_ns, np.int64) - np.asarray(self.sched_ns, np.int64)) * 1e-9

    def ok_mask(self) -> np.ndarray:
        return np.asarray([s == "ok" for s in self.status], dtype=bool)

    @property
    def achieved_rate(self) -> float:
        """Requests sent per second, first to last send (open loop: beside the target)."""
        if self.n < 2:
            return math.nan
        span = (max(self.send_ns) - min(self.send_ns)) * 1e-9
        return (self.n - 1) / span if span > 0 else math.nan

    @property
    def throughput(self) -> float:
        """Successful responses per second of the whole run."""
        return self.n_ok / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_percent(self) -> float:
        """The generator thread's CPU over the run, in percent of one core."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def saturated(self) -> bool:
        return bool(self.cpu_percent > SATURATION_PERCENT)

    def censored_latencies_s(self) -> tuple[np.ndarray, np.ndarray]:
        """Every request's latency with a censoring mask: a timed-out request lasted at
        least its timeout (``max(elapsed, timeout_s)``, right-censored there); every other
        request, failed or not, at the time it ended."""
        lat = self.latencies_s()
        censored = np.asarray([s == "timeout" for s in self.status], dtype=bool)
        if censored.any() and math.isfinite(self.timeout_s):
            lat = np.where(censored, np.maximum(lat, self.timeout_s), lat)
        return lat, censored

    def percentile(self, q: float) -> tuple[float, bool]:
        """The ``q``-th percentile of every request's latency, and whether it is censored:
        where it falls among timed-out requests (``stats.censored_quantile`` is infinite
        there) only a lower bound is known, which is returned with True. NaN without
        requests."""
        if not self.n:
            return math.nan, False
        lat, censored = self.censored_latencies_s()
        bound = stats.percentile(lat, q)
        return bound, math.isinf(stats.censored_quantile(lat, censored, q / 100.0))

    def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status:
            if s != "ok":
                out[s] = out.get(s, 0) + 1
        return out


@dataclass(frozen=True)
class Limits:
    """When a run stops, and how long one request may take."""

    min_duration_s: float
    min_queries: int
    max_duration_s: float
    timeout_s: float
    max_queries: int = 10_000_000

    def __post_init__(self) -> None:
        if self.min_duration_s < 0 or self.min_queries < 1 or not self.timeout_s > 0:
            raise ForgebenchError(
                f"load limits need min_duration_s >= 0, min_queries >= 1, timeout_s > 0; got {self}"
            )


def _outcome(status_code: int, body: bytes, expect: bytes | None) -> str:
    if not 200 <= status_code < 300:
        return f"error:HTTP{status_code}"
    if expect is not None and expect not in body:
        return "mismatch"
    return "ok"


def failure_status(exc: BaseException) -> str:
    """The row status of a request that raised ``exc``."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    return status_for(exc)


class _CpuSampler:
    """Samples this (the event loop's) thread's CPU time while the run lasts."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        self.task: asyncio.Task[None] | None = None
        self.wall0 = time.perf_counter()
        self.cpu0 = time.thread_time()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        last_w, last_c = self.wall0, self.cpu0
        while True:
            await asyncio.sleep(CPU_SAMPLE_S)
            w, c = time.perf_counter(), time.thread_time()
            self.result.cpu_samples.append((w - self.wall0, 100.0 * (c - last_c) / (w - last_w)))
            last_w, last_c = w, c

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.result.cpu_s = time.thread_time() - self.cpu0


def _picker(n_kinds: int, seed: int) -> Callable[[], int]:
    if n_kinds == 1:
        return lambda: 0
    rnd = random.Random(seed)
    return lambda: rnd.randrange(n_kinds)


async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[HttpRequest],
    users: int,
    limits: Limits,
    *,
    seed: int = 0,
    keep_bodies: bool = False,
    ssl: ssl_lib.SSLContext | None = None,
    host_header: str | None = None,
) -> RunResult:
    """U users, each on its own keep-alive connection, back to back until the limits say."""
    if users < 1:
        raise ForgebenchError(f"closed loop needs users >= 1, got {users}")
    raws = [r.raw(host, port, host_header) for r in requests]
    expects = [r.expect for r in requests]
    pick = _picker(len(requests), seed)
    res = RunResult(mode="closed", users=users, connections=users, timeout_s=limits.timeout_s)
    clock = time.perf_counter_ns
    cpu = _CpuSampler(res)
    cpu.start()
    start = res.start_ns = clock()
    min_end = start + int(limits.min_duration_s * 1e9)
    cap_end = start + int(limits.max_duration_s * 1e9)
    timeout_s = limits.timeout_s
    reasons: set[str] = set()

    async def user() -> None:
        conn = HttpConnection(host, port, ssl=ssl)
        consecutive = 0
        add = res.add
        try:
            while True:
                now = clock()
                if res.n >= limits.max_queries:
                    reasons.add("max_queries")
                    return
                if now >= cap_end:
                    reasons.add("time cap")
                    return
                if res.n >= limits.min_queries and now >= min_end:
                    return
                k = pick()
                t0 = clock()
                try:
                    code, body = await conn.call(raws[k], timeout_s)
                    status = _outcome(code, body, expects[k])
                except (OSError, TimeoutError, ProtocolError) as exc:
                    status, body = failure_status(exc), b""
                t1 = clock()
                add(t0, t0, t1, status, k, body if keep_bodies else None)
                if status == "ok":
                    consecutive = 0
                else:
                    conn.close()
                    consecutive += 1
                    if consecutive >= MAX_CONSECUTIVE_FAILURES:
                        reasons.add(f"{consecutive} consecutive failures")
                        return
        finally:
            conn.close()

    try:
        await asyncio.gather(*(user() for _ in range(users)))
    finally:
        res.stop_ns = clock()
        cpu.stop()
    res.stop_reason = ", ".join(sorted(reasons)) or "target met"
    return res


def poisson_schedule(
    rate: float, min_duration_s: float, min_queries: int, seed: int, max_queries: int = 10**7
) -> np.ndarray:
    """Seeded Poisson arrival offsets (ns from the start), long enough for both minimums."""
    if not rate > 0:
        raise ForgebenchError(f"open-loop rate must be > 0 requests/s, got {rate}")
    rng = np.random.default_rng(seed)
    n = max(min_queries, math.ceil(min_duration_s * rate) + 1)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    while t[-1] < min_duration_s and len(t) < max_queries:
        more = np.cumsum(rng.exponential(1.0 / rate, max(16, len(t) // 4))) + t[-1]
        t = np.concatenate([t, more])
    t = t[:max_queries]
    return (t * 1e9).astype(np.int64)


def piecewise_schedule(phases: Sequence[tuple[float, float]], seed: int) -> np.ndarray:
    """Poisson arrivals through phases of (duration_s, rate): e.g. a spike between plateaus."""
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    t0 = 0.0
    for duration, rate in phases:
        if not rate > 0 or not duration > 0:
            raise ForgebenchError(f"schedule phases need rate > 0 and duration > 0: {phases}")
        n = max(16, math.ceil(duration * rate * 1.5) + 16)
        t = t0 + np.cumsum(rng.exponential(1.0 / rate, n))
        while t[-1] < t0 + duration:
            t = np.concatenate([t, t[-1] + np.cumsum(rng.exponential(1.0 / rate, n))])
        out.append(t[t < t0 + duration])
        t0 += duration
    return (np.concatenate(out) * 1e9).astype(np.int64)


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[HttpRequest],
    schedule_ns: np.ndarray,
    timeout_s: float,
    *,
    target_rate: float | None = None,
    max_connections: int = 256,
    seed: int = 0,
    keep_bodies: bool = False,
    ssl: ssl_lib.SSLContext | None = None,
    host_header: str | None = None,
    kinds: Sequence[int] | None = None,
    guard: OutageGuard | None = None,
) -> RunResult:
    """Send request ``i`` at ``start + schedule_ns[i]``; latency from that scheduled time.

    ``kinds``: request ``i`` is ``requests[kinds[i]]`` (default: seeded random picks).
    ``guard`` (forgebench.outage): every outcome is recorded on it, and once it has tripped
    each request still due is an ``OUTAGE_STATUS`` row, not sent."""
    raws = [r.raw(host, port, host_header) for r in requests]
    expects = [r.expect for r in requests]
    if kinds is None:
        pick = _picker(len(requests), seed)
        kinds = [pick() for _ in range(len(schedule_ns))]
    res = RunResult(mode="open", target_rate=target_rate, timeout_s=timeout_s)
    clock = time.perf_counter_ns
    loop = asyncio.get_running_loop()
    free: list[HttpConnection] = []
    waiters: deque[asyncio.Future[HttpConnection]] = deque()
    opened = [0]
    timeout_ns = int(timeout_s * 1e9)

    async def wait_for_connection(sched: int) -> HttpConnection:
        fut: asyncio.Future[HttpConnection] = loop.create_future()
        waiters.append(fut)
        handle = loop.call_at(loop.time() + (sched + timeout_ns - clock()) * 1e-9, _expire, fut)
        try:
            return await fut
        finally:
            handle.cancel()

    def release(conn: HttpConnection) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        free.append(conn)

    async def one(i: int, sched: int) -> None:
        k = kinds[i]
        if guard is not None and guard.tripped:
            now = clock()
            res.add(sched, now, now, OUTAGE_STATUS, k, None)
            return
        if free:
            conn = free.pop()
        elif opened[0] < max_connections:
            opened[0] += 1
            conn = HttpConnection(host, port, ssl=ssl)
        else:
            try:
                conn = await wait_for_connection(sched)
            except TimeoutError:  # every connection stayed busy past this request's timeout
                now = clock()
                res.add(sched, now, now, "timeout", k, None)
                return
        send = clock()
        left = (sched + timeout_ns - send) * 1e-9
        try:
            if left <= 0:
                raise TimeoutError
            code, body = await conn.call(raws[k], left)
            status = _outcome(code, body, expects[k])
        except (OSError, TimeoutError, ProtocolError) as exc:
            status, body = failure_status(exc), b""
        end = clock()
        if guard is not None:
            guard.record(status == "ok", (end - send) * 1e-9)
        if status != "ok":
            conn.close()
        release(conn)
        res.add(sched, send, end, status, k, body if keep_bodies else None)

    cpu = _CpuSampler(res)
    cpu.start()
    tasks: list[asyncio.Task[None]] = []
    start = res.start_ns = clock() + 2_000_000
    offsets = schedule_ns.tolist()
    n = len(offsets)
    i = 0
    try:
        while i < n:
            now = clock()
            due = start + offsets[i]
            if due > now:
                await asyncio.sleep((due - now) * 1e-9)
                continue
            while i < n and start + offsets[i] <= now:
                tasks.append(loop.create_task(one(i, start + offsets[i])))
                i += 1
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for conn in free:
            conn.close()
        res.stop_ns = clock()
        cpu.stop()
    res.connections = opened[0]
    order = np.argsort(np.asarray(res.sched_ns, np.int64), kind="stable").tolist()
    for name in ("sched_ns", "send_ns", "end_ns", "status", "kind", "bodies"):
        values = getattr(res, name)
        setattr(res, name, [values[j] for j in order])
    return res


def run_async(coro: Any) -> Any:
    """Run ``coro`` on a fresh event loop (uvloop when installed) in this thread."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
