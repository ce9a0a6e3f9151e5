"""Faults under load: availability, recovery time and acknowledged-write integrity.

Why: "99.9% available, recovered within 5 minutes, 100% data integrity" are claims about
what happens when processes die, so this job kills them. The service runs as a supervised
group (``service.supervisor``: uvicorn's supervisor with ``workers`` processes on one
port, a dead worker replaced by the supervisor). A seeded open-loop Poisson stream of
writes (``POST /api/v1/items``, one unique key per request, ``rate`` per second for
``duration_s``; every scheduled request is a row, timed from its schedule, see
``service.loadgen``) runs while a fault thread, in each of ``cycles`` equal spans:

1. at a third of the span SIGKILLs one worker (the supervisor replaces it);
2. at two thirds SIGKILLs the whole group (supervisor and workers, one ``killpg``) and at
   once starts it again on the same port, as a process manager would: nothing inside the
   service restarts it, the benchmark does and says so;
3. with ``store: postgres`` and a ``db_restart_command`` (the faults then fall at quarters
   of the span) restarts the database: the command (e.g. ``pg_ctl -D <data> -m fast -w
   restart``, or ``-m immediate``, a crash) runs to its end while the service keeps
   taking writes; the service reconnects by itself (``service.items``). Its recovery is
   looked for after the first write that failed while the command ran (the fault's
   start is the command's, a little before the server actually goes down).

Each fault is a planned fault of the server's forgebench.outage guard (exempt up to
``recovery_target_s``); past it failures count, a tripped guard turns every request
still due into an ``error:Outage`` row, and a fault not recovered is censored
(``error:NotRecovered``). SQLite (the default store) is a file inside the service, with
no server to restart: its ``db_restart`` row is ``skipped`` by design, never a failure.

After the load the group is stopped and the store is read as a fresh reader (the SQLite
file: WAL, ``synchronous`` as configured, FULL by default; or the PostgreSQL table, one
per run, dropped afterwards, its writes committed under ``synchronous_commit``, ``on`` by
default, with the server's ``fsync`` in the params): every write the service
acknowledged (answered 201) must be there with its value, checked row by row; a missing
or different one is a ``mismatch`` row. ``ack_before_commit`` plants the lost-write
defect (``service.items``) the check must catch; with PostgreSQL, ``synchronous_commit:
off`` and an immediate restart is a second candidate (docs/performance.md says how often
it is caught).

Rows: case ``load``: ``write_latency`` per scheduled request (failed ones with their
status), ``availability`` (successful share of scheduled requests; the fault count and
fault rate per hour in its parameters) with ``_ci_low``/``_ci_high`` (Clopper-Pearson),
``service_cpu`` (CPU seconds of every group, read before each kill and the stop) and
``loadgen_cpu``; cases ``worker_kill``, ``server_kill`` and ``db_restart``: per fault
``recovery_time`` (kill to the end of the first success sent after it), ``downtime``
(kill to the scheduled time of the first success scheduled after it: resolution 1/rate;
after a group kill the restarted supervisor's socket queues connections before its
workers serve, so downtime, the refused span, can be shorter than recovery),
``failed_requests`` (failures among requests scheduled from the kill to recovery),
``restart_time`` (kill to the replacement worker serving / the restarted group answering
``/health`` / the restart command's end); per kind ``recovery_time_max`` and
``downtime_mean`` with a t interval over cycles (error rows below two cycles); case
``integrity``: ``acknowledged_write`` per acknowledged write,
``integrity`` (share present, a census, not a sample), ``lost_writes``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench import stats
from forgebench.network.echo_latency import WallClock
from forgebench.outage import OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import loadgen
from forgebench.service.items import (
    connect_postgres,
    drop_postgres_table,
    read_items,
    read_postgres_items,
)
from forgebench.service.supervisor import SupervisedService

BENCHMARK_VERSION = 1
SUITE = "service"
NAME = "faults"
KEY = "suites.service.benchmarks.faults"
FAULT_KINDS = ("worker_kill", "server_kill")  # the process kills, every run
DB_RESTART = "db_restart"  # PostgreSQL with a restart command only
NO_DB_SERVER = "SQLite is a file inside the service: there is no database server to restart"

log = logging.getLogger(__name__)


@dataclass
class Fault:
    """One injected fault: when it was done and when the service said it was back."""

    kind: str
    cycle: int
    kill_ns: int
    back_ns: int | None = None
    error: str = ""


def write_requests(n: int, seed: int) -> list[loadgen.HttpRequest]:
    """Request ``i`` writes key ``<seed>-<i>`` with value ``v<i>``: each write identifiable."""
    return [
        loadgen.HttpRequest(
            "POST",
            f"/api/v1/items?key={seed}-{i}",
            f"v{i}".encode(),
            expect=b'"stored":true',
            name="write",
        )
        for i in range(n)
    ]


def fault_kinds(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """The faults of each cycle: the database restart only with PostgreSQL and a command."""
    restart = cfg.get("store", "sqlite") == "postgres" and bool(cfg.get("db_restart_command"))
    return (*FAULT_KINDS, DB_RESTART) if restart else FAULT_KINDS


def restart_database(cfg: Mapping[str, Any], log_path: Path) -> str:
    """Run ``db_restart_command`` to its end; "" or the error status. Its output goes to a
    file, not a pipe: a server it starts may keep the descriptors open."""
    with open(log_path, "ab") as out:
        try:
            proc = subprocess.run(
                [str(a) for a in cfg["db_restart_command"]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=float(cfg["startup_timeout_s"]),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s: the database restart failed: %s", NAME, exc)
            return (
                "timeout" if isinstance(exc, subprocess.TimeoutExpired) else "error:RestartFailed"
            )
    if proc.returncode:
        log.warning("%s: the database restart exited %d (%s)", NAME, proc.returncode, log_path)
        return "error:RestartFailed"
    return ""


def inject(
    svc: SupervisedService,
    guard: OutageGuard,
    cfg: Mapping[str, Any],
    t0_ns: int,
    faults: list[Fault],
    done: threading.Event,
) -> None:
    """The fault thread: per cycle a worker SIGKILL at 1/3 and a group SIGKILL at 2/3 (with
    a database restart: at 1/4, 2/4 and the restart at 3/4)."""
    clock = time.perf_counter_ns
    kinds = fault_kinds(cfg)
    cycles = int(cfg["cycles"])
    span_ns = int(float(cfg["duration_s"]) * 1e9) // cycles
    up_to = float(cfg["recovery_target_s"])
    startup = float(cfg["startup_timeout_s"])
    for c in range(cycles):
        for j, kind in enumerate(kinds):
            at = t0_ns + c * span_ns + (j + 1) * span_ns // (len(kinds) + 1)
            if done.wait(max(0.0, (at - clock()) * 1e-9)):
                return
            with guard.planned_fault(up_to):
                if kind == "worker_kill":
                    victims = svc.worker_pids()
                    fault = Fault(kind, c, clock())
                    faults.append(fault)
                    if not victims:
                        fault.error = "error:NoWorker"
                        continue
                    os.kill(victims[0], signal.SIGKILL)
                    back = svc.wait_workers(up_to, exclude=(victims[0],))
                    if len(back) >= svc.workers:
                        fault.back_ns = clock()
                    else:
                        fault.error = "error:NotRestarted"
                elif kind == DB_RESTART:
                    fault = Fault(kind, c, clock())
                    faults.append(fault)
                    fault.error = restart_database(cfg, svc.workdir / "db_restart.log")
                    fault.back_ns = clock()
                else:
                    fault = Fault(kind, c, 0)
                    fault.kill_ns = svc.kill_all()  # read just before the killpg
                    faults.append(fault)
                    try:  # what a process manager does: start it again
                        svc.start(startup)
                        fault.back_ns = clock()
                        svc.wait_workers(startup)
                    except RuntimeError as exc:
                        fault.error = "error:NotRestarted"
                        log.warning("%s: the restart failed: %s", NAME, exc)


def first_success_after(res: loadgen.RunResult, kill_ns: int) -> tuple[int, int] | None:
    """(end of the first success sent after ``kill_ns``, index of the first success
    scheduled after it), or None when nothing succeeded after the kill. Sent after: an
    answer already on its way when the process died says nothing about recovery."""
    end = np.asarray(res.end_ns, np.int64)
    sched = np.asarray(res.sched_ns, np.int64)
    ok = res.ok_mask()
    after_end = ok & (np.asarray(res.send_ns, np.int64) > kill_ns)
    after_sched = np.flatnonzero(after_end & (sched >= kill_ns))
    if not after_end.any() or not after_sched.size:
        return None
    return int(end[after_end].min()), int(after_sched[0])


def outage_start(res: loadgen.RunResult, fault: Fault) -> int:
    """Where recovery is looked for from: the kill itself, but for a database restart the
    first request failed while its command ran (the command signals the server some
    milliseconds after it starts; a write that succeeded before that is no recovery)."""
    if fault.kind != DB_RESTART or fault.back_ns is None:
        return fault.kill_ns
    send = np.asarray(res.send_ns, np.int64)
    failed = ~res.ok_mask() & (send >= fault.kill_ns) & (send <= fault.back_ns)
    return int(send[failed].min()) if failed.any() else fault.kill_ns


def integrity_rows(
    rec: Recorder,
    res: loadgen.RunResult,
    stored: Mapping[str, str],
    faults: list[Fault],
    params: Mapping[str, Any],
    seed: int,
    at: Any,
) -> tuple[int, int]:
    """One row per acknowledged write (present with its value, else ``mismatch``), labelled
    with the last fault before its acknowledgement; (acknowledged, lost)."""
    kills = sorted((f.kill_ns, f"after_{f.kind}_{f.cycle}") for f in faults)
    phases: dict[str, dict[str, Any]] = {}
    acked = lost = 0
    for i, (status, end) in enumerate(zip(res.status, res.end_ns, strict=True)):
        if status != "ok":
            continue
        k = res.kind[i]
        phase = "before_faults"
        for kill_ns, name in kills:
            if end >= kill_ns:
                phase = name
        p = phases.setdefault(phase, {**params, "acknowledged_in": phase})
        acked += 1
        present = stored.get(f"{seed}-{k}") == f"v{k}"
        lost += not present
        rec.add(
            "integrity",
            p,
            "acknowledged_write",
            "fraction",
            True,
            1.0 if present else math.nan,
            sample=i,
            status="ok" if present else "mismatch",
            started_at=at(end),
        )
    return acked, lost


def add_rows(
    rec: Recorder,
    params: Mapping[str, Any],
    res: loadgen.RunResult,
    faults: list[Fault],
    stored: Mapping[str, str],
    cfg: Mapping[str, Any],
    seed: int,
) -> None:
    """The rows named in the module docstring."""
    at = WallClock().at
    for i, (s, e, st) in enumerate(zip(res.sched_ns, res.end_ns, res.status, strict=True)):
        rec.add(
            "load",
            params,
            "write_latency",
            "s",
            False,
            (e - s) * 1e-9 if st == "ok" else math.nan,
            sample=i,
            status=st,
            started_at=at(s),
        )
    n, k = res.n, res.n_ok
    window_s = float(cfg["duration_s"])
    counted = {
        **params,
        "scheduled": n,
        "succeeded": k,
        "faults": len(faults),
        "fault_rate_per_hour": round(len(faults) / window_s * 3600, 1),
    }
    started = at(res.start_ns)
    if n:
        low, high = stats.proportion_ci(k, n)
        for metric, value in (
            ("availability", k / n),
            ("availability_ci_low", low),
            ("availability_ci_high", high),
        ):
            rec.add("load", counted, metric, "fraction", True, value, started_at=started)
    target_ns = int(float(cfg["recovery_target_s"]) * 1e9)
    timeout_ns = int(float(cfg["timeout_s"]) * 1e9)
    sched = np.asarray(res.sched_ns, np.int64)
    failed = ~res.ok_mask()
    kinds = fault_kinds(cfg)
    if DB_RESTART not in kinds:
        why = NO_DB_SERVER if cfg.get("store", "sqlite") == "sqlite" else "no db_restart_command"
        rec.add(DB_RESTART, {**params, "why": why}, "recovery_time", "s", False, math.nan,
                status="skipped", started_at=started)  # fmt: skip
    for kind in kinds:
        mine = [f for f in faults if f.kind == kind]
        recoveries: list[float] = []
        downtimes: list[float] = []
        for f in mine:
            p = {**params, "cycle": f.cycle}
            when = at(f.kill_ns)
            found = first_success_after(res, outage_start(res, f))
            if f.error or found is None or found[0] - f.kill_ns > target_ns:
                why = f.error or "error:NotRecovered"  # censored: no recovery seen in time
                for metric in ("recovery_time", "downtime"):
                    rec.add(kind, p, metric, "s", False, math.nan, status=why, started_at=when)
                recoveries.append(math.inf)
                continue
            end_ns, idx = found
            recoveries.append((end_ns - f.kill_ns) * 1e-9)
            downtimes.append((int(sched[idx]) - f.kill_ns) * 1e-9)
            window = (sched >= f.kill_ns - timeout_ns) & (sched <= end_ns)
            for metric, unit, value in (
                ("recovery_time", "s", recoveries[-1]),
                ("downtime", "s", downtimes[-1]),
                ("failed_requests", "requests", float((failed & window).sum())),
                ("restart_time", "s", ((f.back_ns or f.kill_ns) - f.kill_ns) * 1e-9),
            ):
                rec.add(kind, p, metric, unit, False, value, started_at=when)
        if not mine:
            continue
        worst = max(recoveries)
        rec.add(
            kind,
            {**params, "faults": len(mine)},
            "recovery_time_max",
            "s",
            False,
            worst if math.isfinite(worst) else math.nan,
            status="ok" if math.isfinite(worst) else "error:NotRecovered",
            started_at=started,
        )
        if downtimes:
            low, high = stats.mean_ci(downtimes)
            ci_status = "ok" if len(downtimes) >= 2 else "error:TooFewCycles"
            summary = {**params, "faults": len(downtimes)}
            rec.add(
                kind,
                summary,
                "downtime_mean",
                "s",
                False,
                float(np.mean(downtimes)),
                started_at=started,
            )
            for metric, value in (("downtime_mean_ci_low", low), ("downtime_mean_ci_high", high)):
                rec.add(
                    kind, summary, metric, "s", False, value, status=ci_status, started_at=started
                )
    acked, lost = integrity_rows(rec, res, stored, faults, params, seed, at)
    if acked:
        p = {**params, "acknowledged": acked}
        rec.add(
            "integrity",
            p,
            "integrity",
            "fraction",
            True,
            (acked - lost) / acked,
            started_at=started,
        )
        rec.add("integrity", p, "lost_writes", "writes", False, float(lost), started_at=started)
    log.info(
        "%s: %d scheduled, %d ok (availability %.4f), %d faults %s; %d acknowledged, %d lost",
        NAME,
        n,
        k,
        k / n if n else math.nan,
        len(faults),
        [(f.kind, f.cycle, f.error or "ok") for f in faults],
        acked,
        lost,
    )


def store_params(cfg: Mapping[str, Any], table: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(params, the service's items settings) of the configured store; PostgreSQL's own
    durability settings are read from the server, not assumed."""
    ack = {"ack_before_commit": bool(cfg["ack_before_commit"])}
    delay = {"commit_delay_s": float(cfg["commit_delay_s"])}
    if cfg.get("store", "sqlite") != "postgres":
        synchronous = str(cfg["synchronous"]).upper()
        params = {"store": "sqlite", "journal_mode": "wal", "synchronous": synchronous, **ack}
        return params, {"synchronous": synchronous, **ack, **delay}
    from forgebench.database.user_queries import server_label

    dsn = str(cfg["postgres_dsn"])
    commit = str(cfg["synchronous_commit"])
    with connect_postgres(dsn, table, commit) as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "fsync", "wal_writer_delay", "synchronous_commit")
        }
    params = {
        "store": "postgres",
        "server": server_label(dsn),
        "synchronous_commit": shown.pop("synchronous_commit"),
        **{f"server_{k}" if k != "server_version" else k: v for k, v in shown.items()},
        "db_restart_command": " ".join(map(str, cfg.get("db_restart_command") or [])),
        **ack,
    }
    items = {"dsn": dsn, "table": table, "synchronous_commit": commit, **ack, **delay}
    return params, items


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Start the supervised service, load it with writes while killing a worker, the whole
    group and (PostgreSQL) restarting the database, check every acknowledged write; always
    stop it (and drop the run's PostgreSQL table)."""
    rate, duration = float(cfg["rate"]), float(cfg["duration_s"])
    schedule = loadgen.poisson_schedule(rate, duration, 1, seed)
    schedule = schedule[schedule < int(duration * 1e9)]
    requests = write_requests(len(schedule), seed)
    table = f"forgebench_faults_{uuid.uuid4().hex[:12]}"
    store, items_settings = store_params(cfg, table)
    params = {
        "endpoint": "POST /api/v1/items",
        "rate": rate,
        "duration_s": duration,
        "workers": int(cfg["workers"]),
        "cycles": int(cfg["cycles"]),
        **store,
        "restarted_by": "the benchmark (as a process manager)",
    }
    try:
        res, faults, stored, cpu_s = _load_with_faults(
            cfg, seed, schedule, requests, store, items_settings, table
        )
    finally:
        if store["store"] == "postgres":
            drop_postgres_table(str(cfg["postgres_dsn"]), table)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    add_rows(rec, params, res, faults, stored, cfg, seed)
    rec.add("load", params, "service_cpu", "s", False, cpu_s)  # every group, kills included
    rec.add("load", params, "loadgen_cpu", "s", False, res.cpu_s)
    return rec.frame()


def _load_with_faults(
    cfg: Mapping[str, Any],
    seed: int,
    schedule: Any,
    requests: list[loadgen.HttpRequest],
    store: Mapping[str, Any],
    items_settings: dict[str, Any],
    table: str,
) -> tuple[loadgen.RunResult, list[Fault], dict[str, str], float]:
    """The load window with the fault thread; (result, faults, stored items, service CPU)."""
    rate = float(cfg["rate"])
    guard = OutageGuard(OutageLimits.from_config(cfg), f"{NAME} on the service")
    faults: list[Fault] = []
    with tempfile.TemporaryDirectory(prefix="forgebench-faults-") as tmp:
        items = Path(tmp) / "items.sqlite3"
        if store["store"] == "sqlite":
            items_settings["path"] = str(items)
        db = cfg["db"]
        settings = {
            "seed": seed,
            "db": {k: int(db[k]) for k in ("users", "posts", "comments", "page_size")},
            "items": items_settings,
        }
        svc = SupervisedService(settings, Path(tmp), int(cfg["workers"]))
        done = threading.Event()
        try:
            svc.start(float(cfg["startup_timeout_s"]))
            svc.wait_workers(float(cfg["startup_timeout_s"]))
            t0 = time.perf_counter_ns()
            thread = threading.Thread(
                target=inject,
                args=(svc, guard, cfg, t0, faults, done),
                name="fault-injector",
                daemon=True,
            )
            thread.start()
            try:
                res = loadgen.run_async(
                    loadgen.open_loop(
                        "127.0.0.1",
                        svc.port,
                        requests,
                        schedule,
                        float(cfg["timeout_s"]),
                        target_rate=rate,
                        kinds=range(len(requests)),
                        guard=guard,
                    )
                )
            finally:
                done.set()
                thread.join()
        finally:
            svc.stop()
        if store["store"] == "sqlite":
            stored = read_items(items)
        else:
            stored = read_postgres_items(str(cfg["postgres_dsn"]), table)
    return res, faults, stored, svc.cpu_s
