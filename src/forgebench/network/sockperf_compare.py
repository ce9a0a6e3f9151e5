"""Our echo client+server against sockperf ping-pong: 64 B on one persistent TCP connection.

Why: a Python echo round trip means little on its own; sockperf (a C client and server
built for this) on the same loopback, in the same run, is the yardstick. The two run
interleaved, ``rounds`` times, in a seeded random order within each round, so drift of the
machine (frequency, neighbours, which cores the scheduler picks) hits both alike. Each
round yields one p50 per tool and their ratio; the report's target (config ``targets``)
reads the ratios' median and its bootstrap interval through forgebench.stats. Run alone
with ``forgebench run network/sockperf_compare``.

Each measurement starts its own server process (ours: ``echo_server``; theirs:
``sockperf server --tcp``) and stops it whatever happens. sockperf prints half the round
trip ("latency") unless ``--full-rtt`` is given; when ``--full-log`` is available every
sample is read from it as ``rxTime - txTime``, which is the full round trip in either
mode, and the p50 is computed here the same way as ours. The p50 sockperf itself prints
is kept as ``rtt_p50_reported`` (doubled if it was a half round trip) as a cross-check.

sockperf's ``-t`` takes whole seconds and its first 400 ms are warm-up it does not log;
our side warms up for ``warmup_s`` (default the same 0.4 s), whose samples are not kept.
sockperf's per-sample rows are stamped with the time its client started.

Optional cfg keys beyond ``rounds`` and ``duration_s``: ``warmup_s`` (0.4),
``timeout_s`` (2.0) and ``cpu_pinning`` ("none"; "same" or "split" fix where servers and
clients run, see ``placement``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.network.echo_latency import (
    PersistentClient,
    Samples,
    WallClock,
    add_rtt_rows,
    make_payloads,
)
from forgebench.network.echo_server import echo_server_process, stop_process
from forgebench.record import Recorder, utcnow

BENCHMARK_VERSION = 1
SUITE = "network"
NAME = "sockperf_compare"
PAYLOAD_BYTES = 64
HOST = "127.0.0.1"
MIN_ROUNDS = 5
INSTALL_HINT = (
    "sockperf not found on PATH; install Debian package sockperf: apt-get install sockperf"
)

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Sockperf:
    """The installed sockperf and the options it understands."""

    path: str
    version: str
    full_rtt: bool  # --full-rtt: printed figures are the whole round trip
    full_log: bool  # --full-log FILE: every sample's send and receive time


def find_sockperf() -> Sockperf:
    """Locate sockperf and probe its version and options; ForgebenchError if absent."""
    path = shutil.which("sockperf")
    if path is None:
        raise ForgebenchError(INSTALL_HINT)
    try:
        version_out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        help_out = subprocess.run(
            [path, "ping-pong", "--help"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ForgebenchError(f"sockperf at {path} does not run: {exc}") from exc
    match = re.search(r"version\s+#?\s*([\w.\-]+)", _ANSI.sub("", version_out))
    options = help_out.stdout + help_out.stderr
    return Sockperf(
        path=path,
        version=match.group(1) if match else "unknown",
        full_rtt="--full-rtt" in options,
        full_log="--full-log" in options,
    )


def free_port(host: str = HOST) -> int:
    """An ephemeral port that was free a moment ago (sockperf cannot bind port 0 for us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def sockperf_server(tool: Sockperf, host: str = HOST, timeout_s: float = 10.0) -> Iterator[int]:
    """Run ``sockperf server --tcp`` on a free port; yield the port; always stop it.

    Ready means it printed that it blocks on its socket. A port taken in the meantime
    makes it exit, and another port is tried (three tries).
    """
    output: deque[str] = deque(maxlen=200)
    for _attempt in range(3):
        port = free_port(host)
        cmd = [tool.path, "server", "--tcp", "-i", host, "-p", str(port)]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        ready = threading.Event()

        def drain(stream: Any = proc.stdout, ready: threading.Event = ready) -> None:
            # Reads to EOF so the server never blocks on a full pipe.
            for line in stream:
                output.append(line.rstrip())
                if "block on socket" in line:
                    ready.set()
            ready.set()  # EOF: the server exited; poll() tells which

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            ready.wait(timeout_s)
            if ready.is_set() and proc.poll() is None:
                log.debug("sockperf server ready: %s", " ".join(cmd))
                yield port
                return
        finally:
            stop_process(proc)
            reader.join(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        log.warning("sockperf server on port %d did not come up; retrying", port)
    text = "\n".join(output)
    raise ForgebenchError(f"sockperf server did not start within {timeout_s:g} s:\n{text}")


@dataclass
class SockperfResult:
    """One ping-pong run: raw round trips (s), figures sockperf printed, and its command."""

    command: list[str]
    rtt_s: np.ndarray
    reported_p50_s: float
    observations: int
    valid_duration_s: float
    output: str


def parse_report(text: str, full_rtt: bool) -> tuple[float, int, float]:
    """(p50 in s as a full round trip, observation count, valid duration in s) from stdout."""
    text = _ANSI.sub("", text)
    p50 = re.search(r"percentile\s+50\.0+\s*=\s*([\d.]+)", text)
    obs = re.search(r"Total\s+(\d+)\s+observations", text)
    valid = re.search(r"\[Valid Duration\]\s*RunTime=([\d.]+)", text)
    half = "avg-latency" in text or not (full_rtt or "avg-rtt" in text)
    p50_s = float(p50.group(1)) * 1e-6 * (2.0 if half else 1.0) if p50 else math.nan
    return p50_s, int(obs.group(1)) if obs else 0, float(valid.group(1)) if valid else math.nan


def parse_full_log(path: Path) -> np.ndarray:
    """Round trips in s (``rxTime - txTime``) from a ``--full-log`` CSV."""
    lines = path.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("packet")), None)
    if start is None:
        return np.empty(0)
    rows = []
    for line in lines[start + 1 :]:
        if not line or not line[0].isdigit():
            break
        rows.append(line)
    if not rows:
        return np.empty(0)
    data = np.loadtxt(rows, delimiter=",", ndmin=2)
    return data[:, 2] - data[:, 1]


def sockperf_ping_pong(tool: Sockperf, port: int, seconds: int, host: str = HOST) -> SockperfResult:
    """Run the ping-pong client for ``seconds``; ForgebenchError if it reports an error."""
    with tempfile.TemporaryDirectory(prefix="forgebench-sockperf-") as tmp:
        log_path = Path(tmp) / "full.csv"
        cmd = [tool.path, "ping-pong", "--tcp", "-i", host, "-p", str(port)]
        cmd += ["-m", str(PAYLOAD_BYTES), "-t", str(seconds)]
        if tool.full_rtt:
            cmd.append("--full-rtt")
        if tool.full_log:
            cmd += ["--full-log", str(log_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        except subprocess.TimeoutExpired as exc:
            raise ForgebenchError(f"{' '.join(cmd)} did not finish in {seconds + 60} s") from exc
        output = _ANSI.sub("", proc.stdout + proc.stderr)
        # sockperf exits 0 even when it cannot connect: read its output.
        if proc.returncode != 0 or "ERROR" in output:
            raise ForgebenchError(
                f"{' '.join(cmd)} failed (exit code {proc.returncode}):\n{output.strip()}"
            )
        p50, observations, valid = parse_report(output, tool.full_rtt)
        rtt = parse_full_log(log_path) if tool.full_log and log_path.exists() else np.empty(0)
    return SockperfResult(cmd, rtt, p50, observations, valid, output)


PINNINGS = ("none", "same", "split")


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Restrict the calling thread (and processes it starts) to ``cpus``; restore after.

    Linux applies ``sched_setaffinity(0, ...)`` to the calling thread only, and a child
    inherits its parent thread's mask, so this pins a server or client without touching
    the rest of the process (such as the resource sampler's thread).
    """
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def placement(pinning: str) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs) for a pinning mode.

    On a VM the loopback round trip is bimodal: client and server on one core hand off
    directly, on two cores each wake-up crosses cores (on the 2-core dev VM: about 14 us
    against 31-35 us p50 for sockperf alone). Unpinned, each run lands in either mode at
    random; ``same`` or ``split`` fixes the mode for both tools alike.
    """
    if pinning not in PINNINGS:
        raise ForgebenchError(
            f"sockperf_compare cpu_pinning must be one of {PINNINGS}, got {pinning!r}"
        )
    if pinning == "none":
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if pinning == "same":
        return {cpus[0]}, {cpus[0]}
    if len(cpus) < 2:
        raise ForgebenchError("cpu_pinning 'split' needs at least two usable CPUs")
    return {cpus[1]}, {cpus[0]}


def _ours(
    payloads: list[bytes],
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    cpus: tuple[set[int] | None, set[int] | None],
) -> tuple[Samples, WallClock]:
    """Our persistent 64 B echo: warm up for ``warmup_s`` (not kept), measure ``duration_s``."""
    server_cpus, client_cpus = cpus
    with ExitStack() as stack:
        with pinned(server_cpus):
            addr = stack.enter_context(echo_server_process(HOST, timeout_s=max(10.0, timeout_s)))
        client = PersistentClient(addr, payloads, timeout_s)
        stack.callback(client.close)
        with pinned(client_cpus):
            # Count bounds: a loopback round trip takes well over 1 us, so these never bind.
            if warmup_s > 0:
                now = time.perf_counter_ns()
                end = now + int(warmup_s * 1e9)
                client.run(1, int(warmup_s * 1e6) + 1000, end, end + int(10e9))
            clock = WallClock()
            now = time.perf_counter_ns()
            end = now + int(duration_s * 1e9)
            meas = client.run(1, int(duration_s * 1e6) + 1000, end, end + int(10e9))
    return meas, clock


def _theirs(
    tool: Sockperf, seconds: int, cpus: tuple[set[int] | None, set[int] | None]
) -> SockperfResult:
    """One sockperf ping-pong against a fresh sockperf server, placed like ours."""
    server_cpus, client_cpus = cpus
    with ExitStack() as stack:
        with pinned(server_cpus):
            port = stack.enter_context(sockperf_server(tool))
        with pinned(client_cpus):
            return sockperf_ping_pong(tool, port, seconds)


def _p50(values: np.ndarray) -> float:
    return float(np.percentile(values, 50)) if values.size else math.nan


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Interleaved rounds of ours and sockperf; rows per sample, per-round p50s and ratios."""
    rounds = int(cfg["rounds"])
    duration_s = float(cfg["duration_s"])
    warmup_s = float(cfg.get("warmup_s", 0.4))
    timeout_s = float(cfg.get("timeout_s", 2.0))
    pinning = str(cfg.get("cpu_pinning", "none"))
    cpus = placement(pinning)
    if rounds < MIN_ROUNDS:
        raise ForgebenchError(f"sockperf_compare needs rounds >= {MIN_ROUNDS}, got {rounds}")
    if not duration_s > 0:
        raise ForgebenchError(f"sockperf_compare duration_s must be > 0, got {duration_s}")
    tool = find_sockperf()
    seconds = max(1, round(duration_s))  # sockperf -t takes whole seconds
    rng = np.random.default_rng(seed)
    payloads = make_payloads(rng, PAYLOAD_BYTES)
    orders = [list(rng.permutation(["forgebench", "sockperf"])) for _ in range(rounds)]
    rtt_source = "full-log rxTime-txTime" if tool.full_log else "printed percentiles"
    ours_params = {
        "tool": "forgebench",
        "payload_bytes": PAYLOAD_BYTES,
        "transport": "tcp",
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "cpu_pinning": pinning,
    }
    theirs_params = {
        "tool": "sockperf",
        "payload_bytes": PAYLOAD_BYTES,
        "transport": "tcp",
        "sockperf_version": tool.version,
        "sockperf_time_s": seconds,
        "full_rtt_flag": tool.full_rtt,
        "rtt_source": rtt_source,
        "cpu_pinning": pinning,
    }
    ratio_params = {
        "payload_bytes": PAYLOAD_BYTES,
        "rtt_source": rtt_source,
        "cpu_pinning": pinning,
    }
    log.info(
        "sockperf %s at %s (--full-rtt %s, --full-log %s); %d rounds, ours %.2f s, "
        "sockperf -t %d, cpu pinning %s (server %s, client %s)",
        tool.version,
        tool.path,
        "yes" if tool.full_rtt else "no",
        "yes" if tool.full_log else "no",
        rounds,
        duration_s,
        seconds,
        pinning,
        cpus[0],
        cpus[1],
    )
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    sockperf_failures = 0
    for r, order in enumerate(orders):
        p50 = {"forgebench": math.nan, "sockperf": math.nan}
        status = {"forgebench": "ok", "sockperf": "ok"}
        started: dict[str, datetime] = {}
        for tool_name in order:
            started[tool_name] = utcnow()
            if tool_name == "forgebench":
                meas, clock = _ours(payloads, duration_s, warmup_s, timeout_s, cpus)
                add_rtt_rows(
                    rec, "forgebench", ours_params, meas, clock, repetition=r, warmup=False
                )
                ok = np.asarray([x for x in meas.rtt_ns if x >= 0], dtype=float) * 1e-9
                p50["forgebench"] = _p50(ok)
                if not ok.size:
                    status["forgebench"] = next(iter(meas.failures.values()), "error:NoRequests")
                log.info(
                    "round %d/%d forgebench: p50 %.2f us over %d round trips, %d failed",
                    r + 1,
                    rounds,
                    p50["forgebench"] * 1e6,
                    ok.size,
                    len(meas.failures),
                )
                continue
            try:
                result = _theirs(tool, seconds, cpus)
            except ForgebenchError as exc:
                sockperf_failures += 1
                status["sockperf"] = "error:SockperfFailed"
                log.warning("round %d/%d sockperf failed: %s", r + 1, rounds, exc)
                continue
            if result.rtt_s.size:
                for i, value in enumerate(result.rtt_s):
                    rec.add(
                        "sockperf",
                        theirs_params,
                        "rtt",
                        "s",
                        False,
                        float(value),
                        repetition=r,
                        sample=i,
                        started_at=started[tool_name],
                    )
                p50["sockperf"] = _p50(result.rtt_s)
            else:
                p50["sockperf"] = result.reported_p50_s
            if not math.isfinite(p50["sockperf"]):
                status["sockperf"] = "error:SockperfNoSamples"
            rec.add(
                "sockperf",
                theirs_params,
                "rtt_p50_reported",
                "s",
                False,
                result.reported_p50_s,
                repetition=r,
                status="ok" if math.isfinite(result.reported_p50_s) else "error:ParseError",
                started_at=started[tool_name],
            )
            if result.rtt_s.size and math.isfinite(result.reported_p50_s):
                gap = abs(p50["sockperf"] / result.reported_p50_s - 1)
                if gap > 0.05:
                    log.warning(
                        "sockperf's printed p50 %.2f us differs by %.0f%% from its log's %.2f us",
                        result.reported_p50_s * 1e6,
                        gap * 100,
                        p50["sockperf"] * 1e6,
                    )
            log.info(
                "round %d/%d sockperf: p50 %.2f us over %d round trips (reported %.2f us, "
                "%d observations in %.2f s)",
                r + 1,
                rounds,
                p50["sockperf"] * 1e6,
                result.rtt_s.size,
                result.reported_p50_s * 1e6,
                result.observations,
                result.valid_duration_s,
            )
        for tool_name, params in (("forgebench", ours_params), ("sockperf", theirs_params)):
            rec.add(
                tool_name,
                params,
                "rtt_p50",
                "s",
                False,
                p50[tool_name],
                repetition=r,
                status=status[tool_name],
                started_at=started[tool_name],
            )
        ratio = p50["forgebench"] / p50["sockperf"]
        ratio_status = next((s for s in status.values() if s != "ok"), "ok")
        if ratio_status == "ok" and not math.isfinite(ratio):
            ratio_status = "error:ZeroDivision"
        rec.add(
            "ratio",
            ratio_params,
            "rtt_p50_ratio",
            "ratio",
            False,
            ratio if ratio_status == "ok" else math.nan,
            repetition=r,
            status=ratio_status,
            started_at=started[order[0]],
        )
        log.info("round %d/%d (%s first): ratio ours/sockperf %.3f", r + 1, rounds, order[0], ratio)
    if sockperf_failures == rounds:
        raise ForgebenchError(f"sockperf failed in every one of {rounds} rounds; see the log above")
    return rec.frame()
