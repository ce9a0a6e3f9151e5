"""P2P broadcast on loopback: full mesh against gossip, with churn, as N grows.

Why this shape: the system this replaces timed five echoes and called it "P2P". Here N
peers (``p2p_peer``), each a TCP server and client on 127.0.0.1, broadcast real messages
and every (message, peer) pair is accounted for, so the cost of a broadcast and what it
fails to deliver are both measured, and how they grow with N.

What one case measures (``mesh_n16_procs2``: mode, N peers, OS processes hosting them):

* ``latency`` (a row per message-peer pair in the experiment): the origin's send time to
  the peer's first receipt, both ``time.monotonic_ns`` (CLOCK_MONOTONIC, one clock for
  every process on the machine). A lost pair (a peer that was up from the send to the
  deadline never received it before ``deadline_s``) is a ``censored`` row whose value is
  the deadline: its latency is at least that, and the loss counts in ``delivery_ratio``
  (the comparisons of latency are on what each mode delivered; delivery and frames per
  message have their own). A pair whose peer was away by plan at some time in that
  window is outside the experiment: no row, only the ``departed`` count (by design,
  never a failure). Failures: ``mismatch`` (payload failed its CRC),
  ``error:PeerProcessDied`` (the process hosting the peer or the origin died, so the
  outcome is unknown).
* ``spread`` per message: send to the last first receipt among the peers that got it
  (``censored`` at the deadline if a live peer lost it, ``unavailable`` if every other
  peer was away by plan); ``send_lag`` per message: actual minus scheduled send time,
  showing when the origins could not keep the open-loop schedule.
* Counts per case and repetition: ``delivered``, ``lost``, ``late`` (lost pairs that did
  arrive after the deadline), ``departed``, ``duplicates`` (receipts beyond the first, per
  pair), ``frames_per_message`` and ``delivery_ratio`` = delivered / (delivered + lost).
* The ``_burst`` case: ``burst_messages`` messages originated at once, round-robin over all
  peers, no churn, judged against ``burst_deadline_s``: ``throughput`` = delivered pairs /
  (N - 1) per second from the first send to the last first receipt (messages/s delivered
  to every peer).

A phase ends as soon as nothing more can arrive (every frame written has been received,
checked twice) or when the last message's deadline has passed.

Paced phases send ``messages`` at ``rate_per_s`` (open loop) from peers that never churn;
``churn_fraction`` of the peers leave (abort their connections, as a crashed process) and,
with ``churn_rejoin``, come back, at seeded times. Mesh and gossip of one repetition run
the same plan (origins, times, churn, payloads) on the same processes, in alternating
order, so repetitions pair the modes; each process set gets a warm-up phase per mode
first (rows kept, ``warmup``). Every row's params describe its own phase (``phase``
warmup, paced or burst, and that phase's ``messages``).

Placement: each entry of ``peer_processes`` runs every N with at most that many OS
processes (0, or at least N: one process per peer, the default); grouped peers share
their process's asyncio loop, round-robin. Every link is a real TCP connection through
the kernel either way. One process per peer costs ~20 MB and ~0.1 CPU-s to start each;
grouping removes that, and the context switches of waking N processes per message, but
serialises the grouped peers' work on one loop. docs/performance.md has the measured
effect on latency and throughput.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.errors import ForgebenchError
from forgebench.network.echo_server import child_env, stop_process
from forgebench.network.p2p_peer import MODES
from forgebench.record import Recorder, status_for, utcnow

BENCHMARK_VERSION = 1
SUITE = "network"
NAME = "p2p_mesh"
KEY = f"suites.{SUITE}.benchmarks.{NAME}"
POLL_S = 0.05
DIED = "error:PeerProcessDied"

log = logging.getLogger(__name__)


class PeerProcessError(RuntimeError):
    """A peer process died, answered with an error or did not answer in time."""


# ------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """The validated config section."""

    peer_counts: tuple[int, ...]
    modes: tuple[str, ...]
    peer_processes: tuple[int, ...]
    fanout: int
    ttl: int
    payload_bytes: int
    messages: int
    rate_per_s: float
    burst_messages: int
    warmup_messages: int
    churn_fraction: float
    churn_rejoin: bool
    deadline_s: float
    burst_deadline_s: float
    repetitions: int
    timeout_s: float


def _bad(key: str, found: Any, allowed: str) -> ForgebenchError:
    return ForgebenchError(f"{KEY}.{key}: got {found!r}; allowed: {allowed}")


def settings(cfg: Mapping[str, Any]) -> Settings:
    """Validate ``cfg``; a ForgebenchError names the key to fix."""
    s = Settings(
        peer_counts=tuple(int(n) for n in cfg["peer_counts"]),
        modes=tuple(str(m) for m in cfg["modes"]),
        peer_processes=tuple(int(p) for p in cfg["peer_processes"]),
        fanout=int(cfg["fanout"]),
        ttl=int(cfg["ttl"]),
        payload_bytes=int(cfg["payload_bytes"]),
        messages=int(cfg["messages"]),
        rate_per_s=float(cfg["rate_per_s"]),
        burst_messages=int(cfg["burst_messages"]),
        warmup_messages=int(cfg["warmup_messages"]),
        churn_fraction=float(cfg["churn_fraction"]),
        churn_rejoin=bool(cfg["churn_rejoin"]),
        deadline_s=float(cfg["deadline_s"]),
        burst_deadline_s=float(cfg["burst_deadline_s"]),
        repetitions=int(cfg["repetitions"]),
        timeout_s=float(cfg["timeout_s"]),
    )
    if not s.peer_counts or any(not 2 <= n <= 1024 for n in s.peer_counts):
        raise _bad("peer_counts", list(s.peer_counts), "a non-empty list of integers 2..1024")
    if not s.modes or any(m not in MODES for m in s.modes) or len(set(s.modes)) < len(s.modes):
        raise _bad("modes", list(s.modes), f"a non-empty subset of {list(MODES)}")
    if not s.peer_processes or any(p < 0 for p in s.peer_processes):
        raise _bad("peer_processes", list(s.peer_processes), "integers >= 0 (0: one per peer)")
    if not 1 <= s.fanout <= 1024:
        raise _bad("fanout", s.fanout, "1..1024")
    if not 1 <= s.ttl <= 255:
        raise _bad("ttl", s.ttl, "1..255")
    if not 0 <= s.payload_bytes <= 1 << 20:
        raise _bad("payload_bytes", s.payload_bytes, "0..1048576")
    for key in ("messages", "burst_messages", "warmup_messages", "repetitions"):
        if getattr(s, key) < (0 if key in ("burst_messages", "warmup_messages") else 1):
            raise _bad(key, getattr(s, key), ">= 1" if key != "burst_messages" else ">= 0")
    if not s.rate_per_s > 0:
        raise _bad("rate_per_s", s.rate_per_s, "> 0")
    if not 0 <= s.churn_fraction <= 0.5:
        raise _bad("churn_fraction", s.churn_fraction, "0..0.5")
    for key in ("deadline_s", "burst_deadline_s", "timeout_s"):
        if not getattr(s, key) > 0:
            raise _bad(key, getattr(s, key), "> 0")
    return s


# ---------------------------------------------------------------------- processes


class PeerProcess:
    """One ``p2p_peer`` OS process: JSON lines in on stdin, replies read by a thread."""

    def __init__(self, index: int, peers: Sequence[int], fds: int) -> None:
        self.index = index
        self.peers = list(peers)
        self.dead = False
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = child_env()
        env["FORGEBENCH_P2P_FDS"] = str(fds)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forgebench.network.p2p_peer"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            env=env,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def _died(self, what: str) -> PeerProcessError:
        self.dead = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1.0)
        self._err.seek(0)
        stderr = self._err.read().decode(errors="replace").strip()[-2000:]
        return PeerProcessError(
            f"peer process {self.index} (pid {self.pid}, peers {self.peers}) {what} "
            f"(exit code {self.proc.returncode}); stderr: {stderr or '(empty)'}"
        )

    def send(self, req: Mapping[str, Any]) -> None:
        if self.dead:
            raise PeerProcessError(f"peer process {self.index} is dead")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(req, separators=(",", ":")).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._died(f"could not be written to ({exc})") from None

    def recv(self, deadline: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            self.dead = True  # a stalled process is as good as dead: replies would misalign
            raise PeerProcessError(
                f"peer process {self.index} (pid {self.pid}) did not answer in time"
            ) from None
        if line is None:
            raise self._died("exited")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerProcessError(f"peer process {self.index}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        """Close stdin (the process leaves its peers and exits), then make sure it is gone."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, timeout_s=2.0)
        self._reader.join(timeout=2.0)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()
        self._err.close()


class Cluster:
    """N peers in ``processes`` OS processes (0: one each), peer i in process i mod P."""

    def __init__(self, n: int, processes: int, *, seed: int, timeout_s: float) -> None:
        self.n = n
        self.nprocs = n if processes in (0, n) or processes > n else processes
        self.seed = seed
        self.timeout_s = timeout_s
        self.procs: list[PeerProcess] = []
        self.table: dict[int, int] = {}
        self.host = "127.0.0.1"

    def process_of(self, peer: int) -> PeerProcess:
        return self.procs[peer % self.nprocs]

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        per_proc = math.ceil(self.n / self.nprocs)
        fds = 2 * per_proc * self.n + 256  # both ends of every link it hosts, and spare
        for i in range(self.nprocs):
            peers = list(range(i, self.n, self.nprocs))
            self.procs.append(PeerProcess(i, peers, fds))
        for _, reply in self.request(
            lambda p: {
                "cmd": "init",
                "peers": p.peers,
                "host": self.host,
                "seed": self.seed,
                "timeout_s": self.timeout_s,
            }
        ):
            self.table.update({int(k): int(v) for k, v in reply["ports"].items()})

    def request(
        self,
        make: Callable[[PeerProcess], Mapping[str, Any]] | Mapping[str, Any],
        *,
        tolerate_dead: bool = False,
        timeout_s: float | None = None,
    ) -> list[tuple[PeerProcess, dict[str, Any]]]:
        """Send a command to every live process, then collect the replies."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        sent = []
        for proc in self.procs:
            if proc.dead and tolerate_dead:
                continue
            try:
                proc.send(make(proc) if callable(make) else make)
                sent.append(proc)
            except PeerProcessError:
                if not tolerate_dead:
                    raise
        out = []
        for proc in sent:
            try:
                out.append((proc, proc.recv(deadline)))
            except PeerProcessError:
                if not tolerate_dead:
                    raise
        return out

    def dead_peers(self) -> set[int]:
        return {peer for p in self.procs if p.dead for peer in p.peers}

    def close(self) -> None:
        for proc in self.procs:
            proc.close()
        self.procs = []


# ---------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """What a phase sends and when: the same plan runs for mesh and for gossip."""

    kind: str  # paced | burst | warmup
    index: int  # seeds payloads and gossip choices; equal for both modes
    origins: tuple[int, ...]
    offsets_ns: tuple[int, ...]
    churn: tuple[tuple[int, int, str], ...] = ()

    @property
    def messages(self) -> int:
        return len(self.origins)


def paced_plan(
    n: int,
    messages: int,
    rate_per_s: float,
    churn_fraction: float,
    rejoin: bool,
    rng: np.random.Generator,
    index: int,
    kind: str = "paced",
) -> Plan:
    """Open-loop sends at ``rate_per_s`` from peers that never churn; seeded churn times.

    ``round(churn_fraction * N)`` peers (at most N - 2, so an origin and a receiver stay)
    leave at a uniform time in 10-50% of the send window and, with ``rejoin``, come back
    20-35% of the window later.
    """
    window_ns = messages / rate_per_s * 1e9
    k = min(round(churn_fraction * n), n - 2)
    churners = sorted(int(p) for p in rng.choice(n, size=k, replace=False)) if k else []
    churn: list[tuple[int, int, str]] = []
    for p in churners:
        leave = int(rng.uniform(0.1, 0.5) * window_ns)
        churn.append((p, leave, "leave"))
        if rejoin:
            churn.append((p, leave + int(rng.uniform(0.2, 0.35) * window_ns), "join"))
    stable = [p for p in range(n) if p not in churners]
    origins = tuple(int(stable[i]) for i in rng.integers(0, len(stable), size=messages))
    offsets = tuple(int(i * 1e9 / rate_per_s) for i in range(messages))
    return Plan(kind, index, origins, offsets, tuple(sorted(churn, key=lambda e: e[1])))


def burst_plan(n: int, messages: int, index: int) -> Plan:
    """``messages`` sent at once, origins round-robin over every peer; no churn."""
    return Plan("burst", index, tuple(i % n for i in range(messages)), (0,) * messages)


# ---------------------------------------------------------------------------- phase


@dataclass
class PhaseResult:
    """The raw records of one phase, by peer; ``None`` where a process died."""

    plan: Plan
    mode: str
    n: int
    t0_ns: int
    reports: dict[int, dict[str, Any] | None]
    wall: datetime
    error: str | None = None


def run_phase(
    cluster: Cluster,
    plan: Plan,
    mode: str,
    s: Settings,
    *,
    during: Callable[[Cluster, int], None] | None = None,
) -> PhaseResult:
    """Set up, link, run ``plan`` in ``mode`` and collect every peer's records.

    A process that dies during the run leaves its peers' records unknown (``None``); the
    others are still collected. ``during(cluster, t0_ns)`` runs after the schedule is sent
    (the tests use it to kill a process).
    """
    n = cluster.n
    cluster.request(
        {
            "cmd": "setup",
            "table": {str(k): v for k, v in cluster.table.items()},
            "phase": plan.index,
            "mode": mode,
            "fanout": s.fanout,
            "ttl": s.ttl,
            "messages": plan.messages,
        }
    )
    cluster.request({"cmd": "link"})
    links = {}
    for _, reply in cluster.request({"cmd": "progress"}):
        links.update(reply["links"])
    short = {p: c for p, c in links.items() if c != n - 1}
    if short:
        raise PeerProcessError(f"peers not linked to all {n - 1} others: {short}")
    lead_ns = int((0.05 + 0.002 * cluster.nprocs) * 1e9)
    wall, t0 = utcnow(), time.monotonic_ns()
    wall += timedelta(microseconds=lead_ns / 1e3)
    t0 += lead_ns

    def schedule(proc: PeerProcess) -> dict[str, Any]:
        mine = set(proc.peers)
        return {
            "cmd": "run",
            "t0_ns": t0,
            "payload_bytes": s.payload_bytes,
            "messages": [
                [m, o, off]
                for m, (o, off) in enumerate(zip(plan.origins, plan.offsets_ns, strict=True))
                if o in mine
            ],
            "churn": [list(e) for e in plan.churn if e[0] in mine],
        }

    cluster.request(schedule)
    if during is not None:
        during(cluster, t0)
    _wait(cluster, plan, t0, s)
    reports: dict[int, dict[str, Any] | None] = dict.fromkeys(range(n))
    for _, reply in cluster.request({"cmd": "report"}, tolerate_dead=True):
        for rep in reply["peers"]:
            reports[int(rep["id"])] = rep
    return PhaseResult(plan, mode, n, t0, reports, wall)


def _wait(cluster: Cluster, plan: Plan, t0: int, s: Settings) -> None:
    """Until nothing more can arrive, or the last send's deadline passed, or the hard cap.

    Nothing more can arrive when every message was sent and, in two consecutive polls,
    the frames written equal the frames received and neither changed: each process was
    idle between its two answers, and all those intervals overlap, so at one instant no
    frame was in flight and no peer had one to forward.
    """
    deadline_ns = int(_deadline_s(plan, s) * 1e9)
    end_sched = t0 + (max(plan.offsets_ns) if plan.offsets_ns else 0)
    cap = end_sched + deadline_ns + int(s.timeout_s * 1e9)
    time.sleep(max(0.0, (end_sched - time.monotonic_ns()) / 1e9))
    prev: tuple[int, int, int] | None = None
    while True:
        replies = cluster.request({"cmd": "progress"}, tolerate_dead=True)
        dead = cluster.dead_peers()
        expect_sent = sum(1 for o in plan.origins if o not in dead)
        sent = sum(r["sent"] for _, r in replies)
        frames = sum(r["frames"] for _, r in replies)
        receipts = sum(r["receipts"] for _, r in replies)
        last = max((r["last_sent_ns"] for _, r in replies), default=0)
        now = time.monotonic_ns()
        state = (sent, frames, receipts)
        if not dead and sent == plan.messages and frames == receipts and state == prev:
            return
        if sent >= expect_sent and now >= max(last, end_sched) + deadline_ns:
            return
        if now >= cap:
            log.warning("phase stopped at its hard cap: %d/%d messages sent", sent, expect_sent)
            return
        prev = state
        time.sleep(POLL_S)


def _deadline_s(plan: Plan, s: Settings) -> float:
    return s.burst_deadline_s if plan.kind == "burst" else s.deadline_s


# ------------------------------------------------------------------------ accounting

OK, LOST, DEPARTED, MISMATCH, UNKNOWN, SELF = range(6)
#: Row status per outcome (forgebench.stats.vocabulary): a loss is a measured outcome,
#: censored at the deadline; a departure is planned (no latency row at all).
STATUS = {OK: "ok", LOST: "censored", DEPARTED: "unavailable", MISMATCH: "mismatch", UNKNOWN: DIED}


@dataclass
class Accounting:
    """Every (message, peer) pair's outcome, and the counts over them."""

    outcome: np.ndarray  # (messages, N) codes above; SELF on the origin's own column
    latency_ns: np.ndarray  # (messages, N); -1 where not delivered
    sent_ns: np.ndarray  # (messages,); 0 where unknown or never sent
    first_ns: np.ndarray  # (messages, N); 0 where never received
    counts: dict[str, int] = field(default_factory=dict)
    deadline_s: float = math.nan  # a lost pair's latency is at least this (censored)


def account(result: PhaseResult, deadline_s: float) -> Accounting:
    """Classify every pair (see the module docstring) and count them.

    Delivered needs the first receipt within ``deadline_s`` of the send; a pair not
    delivered is departed when its peer was down at any time in [send, send + deadline],
    else lost. Duplicates are receipts beyond the first, per pair, whenever they came.
    """
    plan, n, m = result.plan, result.n, result.plan.messages
    deadline = int(deadline_s * 1e9)
    first = np.zeros((m, n), dtype=np.int64)
    count = np.zeros((m, n), dtype=np.int64)
    sent = np.zeros(m, dtype=np.int64)
    corrupt = np.zeros((m, n), dtype=bool)
    known = np.zeros(n, dtype=bool)
    frames = send_errors = 0
    downs: dict[int, list[tuple[int, float]]] = {}
    for p, rep in result.reports.items():
        if rep is None:
            continue
        known[p] = True
        first[:, p] = rep["first"]
        count[:, p] = rep["count"]
        for msg in rep["corrupt"]:
            corrupt[int(msg), p] = True
        for msg, t in rep["sent"].items():
            sent[int(msg)] = int(t)
        frames += int(rep["frames_sent"])
        send_errors += int(rep["send_errors"])
        downs[p] = [(int(a), math.inf if b is None else int(b)) for a, b in rep["down"]]
    origins = np.asarray(plan.origins, dtype=np.int64)
    latency = np.where(first > 0, first - sent[:, None], -1)
    on_time = (first > 0) & (sent[:, None] > 0) & (latency <= deadline)
    down = np.zeros((m, n), dtype=bool)
    for p, intervals in downs.items():
        for a, b in intervals:
            down[:, p] |= (a <= sent + deadline) & (b >= sent)
    outcome = np.full((m, n), LOST, dtype=np.int8)
    outcome[down & ~on_time] = DEPARTED
    outcome[corrupt & (first == 0)] = MISMATCH
    outcome[on_time] = OK
    outcome[:, ~known] = UNKNOWN
    outcome[~known[origins], :] = UNKNOWN
    outcome[np.arange(m), origins] = SELF
    latency = np.where(outcome == OK, latency, -1)
    pairs = outcome != SELF
    lost = outcome == LOST
    counted = pairs & (outcome != UNKNOWN)
    sent_count = int((sent > 0).sum())
    counts = {
        "pairs": int(pairs.sum()),
        "delivered": int((outcome == OK).sum()),
        "lost": int(lost.sum()),
        "late": int((lost & (first > 0)).sum()),
        "departed": int((outcome == DEPARTED).sum()),
        "mismatched": int((outcome == MISMATCH).sum()),
        "unknown": int((outcome == UNKNOWN).sum()),
        "duplicates": int(np.clip(count - 1, 0, None)[counted].sum()),
        "receipts": int(count[counted].sum()),
        "frames_sent": frames,
        "send_errors": send_errors,
        "messages_sent": sent_count,
    }
    return Accounting(outcome, latency, sent, first, counts, deadline_s)


# ----------------------------------------------------------------------------- rows


def case_name(mode: str, n: int, processes: int, burst: bool = False) -> str:
    """``gossip_n16_procs2``; ``_burst`` for the throughput phase."""
    return f"{mode}_n{n}_procs{processes}" + ("_burst" if burst else "")


def _at(result: PhaseResult, t_ns: int) -> datetime:
    return result.wall + timedelta(microseconds=(t_ns - result.t0_ns) / 1e3)


def add_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    result: PhaseResult,
    acc: Accounting,
    *,
    repetition: int,
    warmup: bool,
) -> dict[str, float]:
    """Pair, message and count rows of one phase; returns the figures for the log."""
    plan, n = result.plan, result.n
    add = rec.add
    opts = {"repetition": repetition, "warmup": warmup}
    sample = 0
    deadline_s = acc.deadline_s
    for msg in range(plan.messages):
        t_sent = int(acc.sent_ns[msg])
        at = _at(result, t_sent) if t_sent else result.wall
        for p in range(n):
            code = int(acc.outcome[msg, p])
            if code in (SELF, DEPARTED):  # a planned departure is outside the experiment
                continue
            ok = code == OK
            value = acc.latency_ns[msg, p] * 1e-9 if ok else math.nan
            if code == LOST:  # a real loss: at least the deadline (right-censored there)
                value = deadline_s
            add(
                case,
                params,
                "latency",
                "s",
                False,
                value,
                sample=sample,
                status=STATUS[code],
                started_at=at,
                **opts,
            )
            sample += 1
    for msg in range(plan.messages):
        row = acc.outcome[msg]
        t_sent = int(acc.sent_ns[msg])
        at = _at(result, t_sent) if t_sent else result.wall
        if (row == UNKNOWN).any():
            spread, status = math.nan, DIED
        elif (row == MISMATCH).any():
            spread, status = math.nan, "mismatch"
        elif not t_sent:
            spread, status = math.nan, "timeout"
        elif (row == LOST).any():
            spread, status = deadline_s, "censored"
        elif (row == OK).any():
            spread, status = float(acc.latency_ns[msg][row == OK].max()) * 1e-9, "ok"
        else:  # every other peer was away by plan
            spread, status = math.nan, "unavailable"
        add(
            case,
            params,
            "spread",
            "s",
            False,
            spread,
            sample=msg,
            status=status,
            started_at=at,
            **opts,
        )
        if plan.kind != "burst":
            lag = (t_sent - result.t0_ns - plan.offsets_ns[msg]) * 1e-9 if t_sent else math.nan
            add(
                case,
                params,
                "send_lag",
                "s",
                False,
                lag,
                sample=msg,
                status="ok" if t_sent else status,
                started_at=at,
                **opts,
            )
    c = acc.counts
    failed = DIED if c["unknown"] else None
    for metric, higher in (
        ("delivered", True),
        ("lost", False),
        ("late", False),
        ("departed", False),
        ("duplicates", False),
    ):
        add(case, params, metric, "pairs", higher, c[metric], started_at=result.wall, **opts)
    live = c["delivered"] + c["lost"]
    ratio = c["delivered"] / live if live else math.nan
    add(
        case,
        params,
        "delivery_ratio",
        "fraction",
        True,
        ratio,
        status="ok" if live else (failed or "unavailable"),
        started_at=result.wall,
        **opts,
    )
    per_msg = c["frames_sent"] / c["messages_sent"] if c["messages_sent"] else math.nan
    add(
        case,
        params,
        "frames_per_message",
        "frames",
        False,
        per_msg,
        status="ok" if c["messages_sent"] else (failed or "timeout"),
        started_at=result.wall,
        **opts,
    )
    figures: dict[str, float] = {"ratio": ratio}
    if plan.kind == "burst":
        ok = acc.outcome == OK
        if ok.any():
            span = (acc.first_ns[ok].max() - acc.sent_ns[acc.sent_ns > 0].min()) * 1e-9
            tput, status = c["delivered"] / (n - 1) / span, "ok"
        else:
            tput, status = math.nan, failed or "timeout"
        add(
            case,
            params,
            "throughput",
            "messages/s",
            True,
            tput,
            status=status,
            started_at=result.wall,
            **opts,
        )
        figures["throughput"] = tput
    return figures


def add_failed_rows(
    rec: Recorder,
    case: str,
    params: Mapping[str, Any],
    plan: Plan,
    n: int,
    status: str,
    *,
    repetition: int,
    warmup: bool,
) -> None:
    """A phase that could not run: every pair and every count is a row with ``status``."""
    opts = {"repetition": repetition, "warmup": warmup, "status": status}
    pairs = plan.messages * (n - 1)
    for i in range(pairs):
        rec.add(case, params, "latency", "s", False, math.nan, sample=i, **opts)
    for msg in range(plan.messages):
        rec.add(case, params, "spread", "s", False, math.nan, sample=msg, **opts)
    metrics = ["delivered", "lost", "late", "departed", "duplicates"]
    for metric in metrics:
        rec.add(case, params, metric, "pairs", metric == "delivered", math.nan, **opts)
    rec.add(case, params, "delivery_ratio", "fraction", True, math.nan, **opts)
    if plan.kind == "burst":
        rec.add(case, params, "throughput", "messages/s", True, math.nan, **opts)


# ------------------------------------------------------------------------------ run


def _percentiles(acc: Accounting) -> str:
    lat = acc.latency_ns[acc.outcome == OK] * 1e-9
    if lat.size == 0:
        return "no deliveries"
    p = [stats.percentile(lat, q) * 1e3 for q in (50, 95, 99)]
    return f"p50/p95/p99 {p[0]:.3f}/{p[1]:.3f}/{p[2]:.3f} ms"


@dataclass
class _Phase:
    plan: Plan
    mode: str
    repetition: int
    warmup: bool


def _phases(s: Settings, n: int, rng: np.random.Generator) -> list[_Phase]:
    """Warm-up per mode, then per repetition the paced plan in alternating mode order,
    then the burst plan likewise."""
    out: list[_Phase] = []
    index = 0
    if s.warmup_messages:
        warm = paced_plan(n, s.warmup_messages, s.rate_per_s, 0.0, False, rng, index, "warmup")
        out += [_Phase(warm, mode, 0, True) for mode in s.modes]
    for rep in range(s.repetitions):
        modes = list(s.modes) if rep % 2 == 0 else list(reversed(s.modes))
        index += 1
        paced = paced_plan(
            n, s.messages, s.rate_per_s, s.churn_fraction, s.churn_rejoin, rng, index
        )
        out += [_Phase(paced, mode, rep, False) for mode in modes]
        if s.burst_messages:
            index += 1
            burst = burst_plan(n, s.burst_messages, index)
            out += [_Phase(burst, mode, rep, False) for mode in modes]
    return out


def measure(
    s: Settings,
    *,
    seed: int,
    during: Callable[[Cluster, int], None] | None = None,
) -> pd.DataFrame:
    """Every peer count x placement x repetition x mode; a failure becomes rows, not a stop."""
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    setups = [(n, p) for n in s.peer_counts for p in s.peer_processes]
    # One plan per N whatever the placement, so placements do equal work too.
    plans = {(n, p): _phases(s, n, np.random.default_rng([seed, n])) for n, p in setups}
    total = sum(len(v) for v in plans.values())
    done = 0
    for n, placement in setups:
        cluster: Cluster | None = None
        start_error: str | None = None
        nprocs = Cluster(n, placement, seed=seed, timeout_s=s.timeout_s).nprocs
        params_of: dict[tuple[str, str, str], dict[str, Any]] = {}
        try:
            for ph in plans[(n, placement)]:
                burst = ph.plan.kind == "burst"
                case = case_name(ph.mode, n, nprocs, burst)
                # each phase's own params: a warm-up row says the warm-up's messages
                params = params_of.setdefault(
                    (case, ph.mode, ph.plan.kind),
                    {
                        "mode": ph.mode,
                        "peers": n,
                        "processes": nprocs,
                        "phase": ph.plan.kind,
                        "fanout": s.fanout if ph.mode == "gossip" else n - 1,
                        "ttl": s.ttl if ph.mode == "gossip" else 1,
                        "payload_bytes": s.payload_bytes,
                        "messages": ph.plan.messages,
                        "rate_per_s": None if burst else s.rate_per_s,
                        "churn_fraction": s.churn_fraction if ph.plan.kind == "paced" else 0.0,
                        "deadline_s": _deadline_s(ph.plan, s),
                    },
                )
                done += 1
                label = f"[{done}/{total}] {case} rep {ph.repetition}" + (
                    " warm-up" if ph.warmup else ""
                )
                t_start = time.monotonic()
                status: str | None = start_error
                if cluster is None and status is None:
                    try:
                        cluster = Cluster(n, placement, seed=seed, timeout_s=s.timeout_s)
                        cluster.__enter__()
                    except (PeerProcessError, OSError) as exc:
                        cluster = None
                        start_error = status = status_for(exc)
                        log.error("%s: could not start %d peers: %s", label, n, exc)
                if cluster is not None and status is None:
                    try:
                        result = run_phase(cluster, ph.plan, ph.mode, s, during=during)
                    except (PeerProcessError, OSError) as exc:
                        status = status_for(exc)
                        log.error("%s: failed: %s", label, exc)
                    else:
                        acc = account(result, _deadline_s(ph.plan, s))
                        fig = add_rows(
                            rec,
                            case,
                            params,
                            result,
                            acc,
                            repetition=ph.repetition,
                            warmup=ph.warmup,
                        )
                        c = acc.counts
                        bad = c["lost"] or c["unknown"] or c["mismatched"]
                        log.log(
                            logging.WARNING if bad else logging.INFO,
                            "%s: %d msgs, delivered %d/%d pairs, lost %d (late %d), departed "
                            "%d, unknown %d, duplicates %d, %.1f frames/msg, %s%s in %.2f s",
                            label,
                            c["messages_sent"],
                            c["delivered"],
                            c["pairs"],
                            c["lost"],
                            c["late"],
                            c["departed"],
                            c["unknown"],
                            c["duplicates"],
                            c["frames_sent"] / max(1, c["messages_sent"]),
                            _percentiles(acc),
                            f", {fig['throughput']:.0f} msg/s" if "throughput" in fig else "",
                            time.monotonic() - t_start,
                        )
                    if status is not None or cluster.dead_peers():
                        cluster.close()  # a broken process set is not reused
                        cluster = None
                if status is not None:
                    add_failed_rows(
                        rec,
                        case,
                        params,
                        ph.plan,
                        n,
                        status,
                        repetition=ph.repetition,
                        warmup=ph.warmup,
                    )
        finally:
            if cluster is not None:
                cluster.close()
    return rec.frame()


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Broadcast by full mesh and by gossip among N real peers; see the module docstring."""
    return measure(settings(cfg), seed=seed)
