"""TCP echo round-trip latency on loopback: persistent, connection per request, concurrent.

Why this shape: the round trip of a small request is the floor under every RPC the suite
cares about, and the three scenarios separate its parts: the persistent connection gives
the request/response floor, connection-per-request adds connect and close (and the
server's thread start), and N concurrent clients show what contention does to each
round trip. Every round trip is a row (failures too, with value NaN), so percentiles
and failure rates come from the raw samples, not from a summary computed here.

Choices worth knowing when reading the results:

* The server (``echo_server``) runs in its own process; the client loop is in this one.
* ``value`` is the wall time from just before ``sendall`` to the last echoed byte
  (``perf_counter_ns``); for connection-per-request it runs from socket creation to
  ``close``. The echo is compared with what was sent after the clock stops.
* Payloads are seeded random bytes from a rotating set of ``PAYLOAD_ROTATION`` per size,
  so consecutive requests differ and a stale or misaligned echo cannot pass.
* Socket timeouts use SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket: Python's own
  ``settimeout`` polls before every call, adding a syscall to the thing being measured.
* The concurrent scenario runs every payload size at every concurrency level (case
  ``concurrent_4x64B``): N threads, each on its own persistent connection, start
  together; ``warmup_requests``, ``min_requests`` and ``max_requests`` count round trips
  over all N clients (split evenly between them).
* A phase runs until both ``min_duration_s`` and ``min_requests`` (ok round trips) are
  met, or ``max_requests`` attempts, ``MAX_CONSECUTIVE_FAILURES`` failures in a row or the
  hard time cap end it (logged). After any failure the connection is replaced, since a
  timed-out or corrupted stream cannot be trusted to stay aligned.
* ``throughput`` rows (one per case and repetition) are ok round trips divided by the
  wall time of the measured (not warm-up) loop; with no ok round trip the row carries the
  commonest failure status and NaN.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.network.echo_server import echo_server_process
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "network"
NAME = "echo_latency"
SCENARIOS = ("persistent", "connect_per_request", "concurrent")
PAYLOAD_ROTATION = 16
MAX_CONSECUTIVE_FAILURES = 20

log = logging.getLogger(__name__)


class PeerClosedError(ConnectionError):
    """The server closed the connection before echoing every byte."""


def request_status(exc: BaseException) -> str:
    """Status of a failed round trip; a kernel-level socket timeout (EAGAIN) is a timeout."""
    if isinstance(exc, BlockingIOError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
        return "timeout"
    return status_for(exc)


def make_payloads(
    rng: np.random.Generator, size: int, count: int = PAYLOAD_ROTATION
) -> list[bytes]:
    """``count`` seeded random payloads of ``size`` bytes, consecutive ones always different."""
    if size < 1:
        raise ForgebenchError(f"payload sizes must be >= 1 byte, got {size}")
    payloads = []
    for k in range(count):
        data = bytearray(rng.bytes(size))
        data[0] = k % 256  # guarantees neighbours differ even for 1-byte payloads
        payloads.append(bytes(data))
    return payloads


def open_connection(address: tuple[str, int], timeout_s: float) -> socket.socket:
    """A blocking TCP connection with TCP_NODELAY and kernel send/receive timeouts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        _configure(sock, timeout_s)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _timeval(timeout_s: float) -> bytes:
    sec = int(timeout_s)
    return struct.pack("ll", sec, round((timeout_s - sec) * 1e6))


def _configure(sock: socket.socket, timeout_s: float) -> None:
    tv = _timeval(timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)  # Linux: also bounds connect


@dataclass
class Samples:
    """Raw results of one loop: start times and round trips in ns; failures by index."""

    t0_ns: list[int] = field(default_factory=list)
    rtt_ns: list[int] = field(default_factory=list)  # -1 where the round trip failed
    failures: dict[int, str] = field(default_factory=dict)
    ok: int = 0
    stop_reason: str = "target met"
    wall_ns: int = 0

    def extend(self, other: Samples) -> None:
        offset = len(self.rtt_ns)
        self.t0_ns.extend(other.t0_ns)
        self.rtt_ns.extend(other.rtt_ns)
        self.failures.update({offset + i: s for i, s in other.failures.items()})
        self.ok += other.ok


class PersistentClient:
    """One persistent connection, replaced after any failure; the tight request loop."""

    def __init__(
        self, address: tuple[str, int], payloads: Sequence[bytes], timeout_s: float
    ) -> None:
        self.address = address
        self.payloads = list(payloads)
        self.timeout_s = timeout_s
        self.size = len(self.payloads[0])
        self.buf = bytearray(self.size)
        self.sock: socket.socket | None = None
        self.next_payload = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def run(self, min_ok: int, max_total: int, min_end_ns: int, cap_end_ns: int) -> Samples:
        """Round trips until ``min_ok`` ok and ``min_end_ns`` passed; bounded by the caps."""
        out = Samples()
        t0s, rtts, failures = out.t0_ns, out.rtt_ns, out.failures
        payloads, rotation, size, buf = self.payloads, len(self.payloads), self.size, self.buf
        view = memoryview(buf)
        clock = time.perf_counter_ns
        k = self.next_payload
        sock = self.sock
        if sock is not None:
            sendall, recv_into = sock.sendall, sock.recv_into
        ok = 0
        consecutive = 0
        start = clock()
        end = start
        while len(rtts) < max_total:
            payload = payloads[k]
            k = (k + 1) % rotation
            t0 = 0
            try:
                if sock is None:
                    sock = self.sock = open_connection(self.address, self.timeout_s)
                    sendall, recv_into = sock.sendall, sock.recv_into
                t0 = clock()
                sendall(payload)
                got = recv_into(view)
                while 0 < got < size:
                    n = recv_into(view[got:])
                    if not n:
                        break
                    got += n
                if got < size:
                    raise PeerClosedError("connection closed by the server mid-echo")
                end = clock()
            except (OSError, PeerClosedError) as exc:
                end = clock()
                failures[len(rtts)] = request_status(exc)
                t0s.append(t0 or end)
                rtts.append(-1)
                self.close()
                sock = None
                consecutive += 1
            else:
                t0s.append(t0)
                if buf == payload:
                    rtts.append(end - t0)
                    ok += 1
                    consecutive = 0
                else:
                    failures[len(rtts)] = "mismatch"
                    rtts.append(-1)
                    self.close()
                    sock = None
                    consecutive += 1
            if ok >= min_ok and end >= min_end_ns:
                break
            if consecutive >= MAX_CONSECUTIVE_FAILURES:
                out.stop_reason = f"{consecutive} consecutive failures"
                break
            if end >= cap_end_ns:
                out.stop_reason = "time cap"
                break
        else:
            out.stop_reason = "max_requests"
        self.next_payload = k
        out.ok = ok
        out.wall_ns = end - start
        return out


def connect_per_request(
    address: tuple[str, int],
    payloads: Sequence[bytes],
    timeout_s: float,
    min_ok: int,
    max_total: int,
    min_end_ns: int,
    cap_end_ns: int,
) -> Samples:
    """Round trips on a fresh connection each, timed from socket creation to close."""
    out = Samples()
    t0s, rtts, failures = out.t0_ns, out.rtt_ns, out.failures
    rotation, size = len(payloads), len(payloads[0])
    buf = bytearray(size)
    view = memoryview(buf)
    clock = time.perf_counter_ns
    tv = _timeval(timeout_s)
    sol, rcv, snd = socket.SOL_SOCKET, socket.SO_RCVTIMEO, socket.SO_SNDTIMEO
    tcp, nodelay = socket.IPPROTO_TCP, socket.TCP_NODELAY
    af, stream = socket.AF_INET, socket.SOCK_STREAM
    ok = consecutive = k = 0
    start = clock()
    end = start
    while len(rtts) < max_total:
        payload = payloads[k]
        k = (k + 1) % rotation
        t0 = clock()
        try:
            with socket.socket(af, stream) as sock:
                sock.setsockopt(tcp, nodelay, 1)
                sock.setsockopt(sol, rcv, tv)
                sock.setsockopt(sol, snd, tv)
                sock.connect(address)
                sock.sendall(payload)
                got = sock.recv_into(view)
                while 0 < got < size:
                    n = sock.recv_into(view[got:])
                    if not n:
                        break
                    got += n
                if got < size:
                    raise PeerClosedError("connection closed by the server mid-echo")
            end = clock()
        except (OSError, PeerClosedError) as exc:
            end = clock()
            failures[len(rtts)] = request_status(exc)
            t0s.append(t0)
            rtts.append(-1)
            consecutive += 1
        else:
            t0s.append(t0)
            if buf == payload:
                rtts.append(end - t0)
                ok += 1
                consecutive = 0
            else:
                failures[len(rtts)] = "mismatch"
                rtts.append(-1)
                consecutive += 1
        if ok >= min_ok and end >= min_end_ns:
            break
        if consecutive >= MAX_CONSECUTIVE_FAILURES:
            out.stop_reason = f"{consecutive} consecutive failures"
            break
        if end >= cap_end_ns:
            out.stop_reason = "time cap"
            break
    else:
        out.stop_reason = "max_requests"
    out.ok = ok
    out.wall_ns = end - start
    return out


@dataclass(frozen=True)
class Limits:
    """Per-phase stopping rules, from the config."""

    warmup_requests: int
    min_duration_s: float
    min_requests: int
    max_requests: int
    timeout_s: float

    @property
    def cap_s(self) -> float:
        """Hard wall-clock cap of one measured loop, so a slow server cannot stall the run."""
        return max(4.0 * self.min_duration_s, self.min_duration_s + 10.0)


def _concurrent(
    address: tuple[str, int],
    payloads: Sequence[bytes],
    concurrency: int,
    limits: Limits,
) -> tuple[Samples, Samples]:
    """N threads, each with its own connection: warm up, then start the timed loop together."""
    clients = [
        PersistentClient(
            address, payloads[i % len(payloads) :] + payloads[: i % len(payloads)], limits.timeout_s
        )
        for i in range(concurrency)
    ]
    per_min = math.ceil(limits.min_requests / concurrency)
    per_max = max(1, math.ceil(limits.max_requests / concurrency))
    per_warm = math.ceil(limits.warmup_requests / concurrency) if limits.warmup_requests else 0
    warm: list[Samples | None] = [None] * concurrency
    meas: list[Samples | None] = [None] * concurrency
    errors: list[BaseException] = []
    times: dict[str, int] = {}
    # The last client to finish its warm-up stamps the common start and releases them all.
    barrier = threading.Barrier(
        concurrency, action=lambda: times.__setitem__("start", time.perf_counter_ns())
    )

    def work(i: int) -> None:
        client = clients[i]
        try:
            if per_warm:
                now = time.perf_counter_ns()
                warm[i] = client.run(per_warm, per_warm, now, now + int(limits.cap_s * 1e9))
            barrier.wait(timeout=limits.cap_s + 60)
            start = times["start"]
            meas[i] = client.run(
                per_min,
                per_max,
                start + int(limits.min_duration_s * 1e9),
                start + int(limits.cap_s * 1e9),
            )
        except BaseException as exc:  # a bug, not a socket failure: re-raised below
            errors.append(exc)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter_ns()
    if errors:
        raise errors[0]
    warm_all, meas_all = _merge(warm), _merge(meas)
    meas_all.wall_ns = end - times["start"]
    reasons = {s.stop_reason for s in meas if s is not None and s.stop_reason != "target met"}
    meas_all.stop_reason = ", ".join(sorted(reasons)) or "target met"
    return warm_all, meas_all


def _merge(parts: Sequence[Samples | None]) -> Samples:
    """Merge per-client samples in order of start time, so ``sample`` follows the clock."""
    merged = Samples()
    for part in parts:
        if part is not None:
            merged.extend(part)
    order = np.argsort(np.asarray(merged.t0_ns, dtype=np.int64), kind="stable")
    rank = {int(old): new for new, old in enumerate(order)}
    return Samples(
        t0_ns=[merged.t0_ns[i] for i in order],
        rtt_ns=[merged.rtt_ns[i] for i in order],
        failures={rank[i]: s for i, s in merged.failures.items()},
        ok=merged.ok,
    )


class WallClock:
    """Maps ``perf_counter_ns`` readings to UTC wall time for ``started_at``."""

    def __init__(self) -> None:
        self.wall: datetime = utcnow()
        self.perf = time.perf_counter_ns()

    def at(self, t_ns: int) -> datetime:
        return self.wall + timedelta(microseconds=(t_ns - self.perf) / 1000)


def add_rtt_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    samples: Samples,
    clock: WallClock,
    *,
    repetition: int,
    warmup: bool,
    metric: str = "rtt",
) -> None:
    """One row per round trip: seconds, or NaN with the failure's status."""
    failures = samples.failures
    add = rec.add
    for i, (t0, rtt) in enumerate(zip(samples.t0_ns, samples.rtt_ns, strict=True)):
        status = failures.get(i, "ok")
        add(
            case,
            params,
            metric,
            "s",
            False,
            rtt * 1e-9 if status == "ok" else math.nan,
            repetition=repetition,
            sample=i,
            warmup=warmup,
            status=status,
            started_at=clock.at(t0),
        )


def _throughput_row(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    samples: Samples,
    repetition: int,
    started_at: datetime,
) -> float:
    if samples.ok and samples.wall_ns > 0:
        value, status = samples.ok / (samples.wall_ns * 1e-9), "ok"
    else:
        common = Counter(samples.failures.values()).most_common(1)
        value, status = math.nan, (common[0][0] if common else "error:NoRequests")
    rec.add(
        case,
        params,
        "throughput",
        "requests/s",
        True,
        value,
        repetition=repetition,
        sample=0,
        status=status,
        started_at=started_at,
    )
    return value


def _limits(cfg: Mapping[str, Any]) -> Limits:
    limits = Limits(
        warmup_requests=int(cfg["warmup_requests"]),
        min_duration_s=float(cfg["min_duration_s"]),
        min_requests=int(cfg["min_requests"]),
        max_requests=int(cfg["max_requests"]),
        timeout_s=float(cfg["timeout_s"]),
    )
    if limits.warmup_requests < 0 or limits.min_requests < 1 or limits.min_duration_s < 0:
        raise ForgebenchError(
            "echo_latency needs warmup_requests >= 0, min_requests >= 1, min_duration_s >= 0; "
            f"got {limits}"
        )
    if limits.max_requests < limits.min_requests:
        raise ForgebenchError(
            f"echo_latency max_requests ({limits.max_requests}) must be >= min_requests "
            f"({limits.min_requests})"
        )
    if not limits.timeout_s > 0:
        raise ForgebenchError(f"echo_latency timeout_s must be > 0, got {limits.timeout_s}")
    return limits


def _phases(cfg: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(scenario, payload_bytes, concurrency) in the order they run within a repetition."""
    scenarios = list(cfg["scenarios"])
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or not scenarios:
        raise ForgebenchError(
            f"echo_latency scenarios {scenarios} must be a non-empty subset of {list(SCENARIOS)}"
        )
    sizes = [int(s) for s in cfg["payload_sizes"]]
    levels = [int(c) for c in cfg.get("concurrency", [4])]
    if any(c < 1 for c in levels):
        raise ForgebenchError(f"echo_latency concurrency levels must be >= 1, got {levels}")
    phases = []
    for scenario in SCENARIOS:
        if scenario not in scenarios:
            continue
        for size in sizes:
            if scenario == "concurrent":
                phases.extend((scenario, size, c) for c in levels)
            else:
                phases.append((scenario, size, 1))
    return phases


def case_name(scenario: str, payload_bytes: int, concurrency: int) -> str:
    """``persistent_64B``, ``connect_per_request_1024B``, ``concurrent_4x64B``."""
    if scenario == "concurrent":
        return f"concurrent_{concurrency}x{payload_bytes}B"
    return f"{scenario}_{payload_bytes}B"


def _run_phase(
    address: tuple[str, int],
    scenario: str,
    payloads: Sequence[bytes],
    concurrency: int,
    limits: Limits,
) -> tuple[Samples, Samples]:
    if scenario == "concurrent":
        return _concurrent(address, payloads, concurrency, limits)
    cap_ns = int(limits.cap_s * 1e9)
    if scenario == "persistent":
        client = PersistentClient(address, payloads, limits.timeout_s)
        try:
            now = time.perf_counter_ns()
            n = limits.warmup_requests
            warm = client.run(n, n, now, now + cap_ns) if n else Samples()
            now = time.perf_counter_ns()
            meas = client.run(
                limits.min_requests,
                limits.max_requests,
                now + int(limits.min_duration_s * 1e9),
                now + cap_ns,
            )
        finally:
            client.close()
        return warm, meas
    n = limits.warmup_requests
    now = time.perf_counter_ns()
    warm = (
        connect_per_request(address, payloads, limits.timeout_s, n, n, now, now + cap_ns)
        if n
        else Samples()
    )
    now = time.perf_counter_ns()
    meas = connect_per_request(
        address,
        payloads,
        limits.timeout_s,
        limits.min_requests,
        limits.max_requests,
        now + int(limits.min_duration_s * 1e9),
        now + cap_ns,
    )
    return warm, meas


def measure(cfg: Mapping[str, Any], *, seed: int, address: tuple[str, int]) -> pd.DataFrame:
    """Run every phase against an echo server already listening at ``address``.

    Separate from ``run`` so the same client loop can be pointed at any server, such as a
    deliberately broken one in the tests.
    """
    limits = _limits(cfg)
    phases = _phases(cfg)
    repetitions = int(cfg.get("repetitions", 1))
    if repetitions < 1:
        raise ForgebenchError(f"echo_latency repetitions must be >= 1, got {repetitions}")
    rng = np.random.default_rng(seed)
    payloads = {size: make_payloads(rng, size) for size in sorted({p[1] for p in phases})}
    # Recorder caches params text by id(): keep each dict alive for the whole run.
    params = {p: {"scenario": p[0], "payload_bytes": p[1], "concurrency": p[2]} for p in phases}
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    total = len(phases) * repetitions
    done = 0
    for rep in range(repetitions):
        for phase in phases:
            scenario, size, concurrency = phase
            case = case_name(*phase)
            clock = WallClock()
            started_at = clock.wall
            warm, meas = _run_phase(address, scenario, payloads[size], concurrency, limits)
            add_rtt_rows(rec, case, params[phase], warm, clock, repetition=rep, warmup=True)
            add_rtt_rows(rec, case, params[phase], meas, clock, repetition=rep, warmup=False)
            rps = _throughput_row(rec, case, params[phase], meas, rep, started_at)
            done += 1
            ok_rtts = [r for r in meas.rtt_ns if r >= 0]
            p50 = f"{np.median(ok_rtts) / 1e3:.1f} us" if ok_rtts else "n/a"
            failed = Counter(meas.failures.values())
            expected = meas.stop_reason in ("target met", "max_requests")
            level = logging.WARNING if failed or not expected else logging.INFO
            log.log(
                level,
                "[%d/%d] rep %d %s: %d ok, %d failed%s in %.2f s (%.0f req/s, p50 %s); "
                "warm-up %d; stopped: %s",
                done,
                total,
                rep,
                case,
                meas.ok,
                len(meas.failures),
                f" {dict(failed)}" if failed else "",
                meas.wall_ns * 1e-9,
                rps if math.isfinite(rps) else 0.0,
                p50,
                len(warm.rtt_ns),
                meas.stop_reason,
            )
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the echo server in its own process, measure every phase, always stop it."""
    _limits(cfg), _phases(cfg)  # config mistakes surface before a server starts
    with echo_server_process("127.0.0.1", timeout_s=max(10.0, float(cfg["timeout_s"]))) as addr:
        log.info("echo server listening on %s:%d", *addr)
        return measure(cfg, seed=seed, address=addr)
