"""Faults under load (forgebench.service.faults): a worker and the whole supervised service
SIGKILLed under open-loop writes; the integrity check must pass the honest service and
catch the planted defect (a service that acknowledges before it commits)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from forgebench.outage import OUTAGE_STATUS, OutageGuard, OutageLimits
from forgebench.record import Recorder
from forgebench.service import faults, loadgen


def _cfg(**over):
    cfg = {
        "rate": 30.0,
        "duration_s": 4.5,
        "workers": 2,
        "cycles": 1,
        "recovery_target_s": 300.0,
        "synchronous": "FULL",
        "ack_before_commit": False,
        "commit_delay_s": 2.0,
        "timeout_s": 5.0,
        "startup_timeout_s": 120.0,
        "db": {"users": 10, "posts": 20, "comments": 40, "page_size": 5},
    }
    return {**cfg, **over}


def _result(statuses: list[str]) -> loadgen.RunResult:
    res = loadgen.RunResult(mode="open")
    for i, st in enumerate(statuses):
        res.add(i * 10, i * 10, i * 10 + 5, st, i, None)
    return res


def test_integrity_rows_flag_a_missing_or_changed_acknowledged_write():
    res = _result(["ok", "ok", "error:ConnectionResetError", "ok"])
    stored = {"7-0": "v0", "7-1": "changed", "7-2": "v2"}  # 1 changed, 3 missing
    rec = Recorder("service", "faults", 1)
    fault = faults.Fault("server_kill", 0, kill_ns=12)
    acked, lost = faults.integrity_rows(
        rec, res, stored, [fault], {}, 7, lambda ns: datetime.now(UTC)
    )
    df = rec.frame()
    assert (acked, lost) == (3, 2)  # the failed request was never acknowledged: no row
    assert list(df.status) == ["ok", "mismatch", "mismatch"]
    assert list(df.params.str.contains("after_server_kill_0")) == [False, True, True]


def test_first_success_after_a_fault_skips_failures_and_answers_sent_before_it():
    res = _result(["ok", "error:ConnectionRefusedError", "timeout", "ok", "ok"])
    assert faults.first_success_after(res, kill_ns=12) == (35, 3)
    # request 0 was sent at 0 and answered at 5, after a kill at 2: not a recovery
    assert faults.first_success_after(res, kill_ns=2) == (35, 3)
    assert faults.first_success_after(_result(["ok", "timeout"]), kill_ns=1) is None


def test_open_loop_with_a_tripped_guard_records_every_due_request_as_an_outage_row():
    guard = OutageGuard(OutageLimits(max_consecutive_failures=1), "test")
    guard.record(False)
    reqs = [loadgen.HttpRequest("GET", "/health")]
    res = loadgen.run_async(
        loadgen.open_loop(
            "127.0.0.1", 9, reqs, loadgen.poisson_schedule(200, 0.05, 5, 0), 1.0, guard=guard
        )
    )
    assert res.n >= 5 and set(res.status) == {OUTAGE_STATUS}


def _summary(df, case, metric):
    row = df[(df.case == case) & (df.metric == metric)]
    assert len(row) == 1, (case, metric)
    return row.iloc[0]


def test_honest_service_keeps_every_acknowledged_write_through_both_kills():
    df = faults.run(_cfg(), seed=5)
    load = df[df.metric == "write_latency"]
    assert len(load) > 60  # every scheduled request is a row
    avail = _summary(df, "load", "availability")
    assert avail.value == (load.status == "ok").mean()
    assert avail.value < 1.0  # the group kill did fail requests: the faults were real
    for kind in faults.FAULT_KINDS:
        rec = _summary(df, kind, "recovery_time")
        assert rec.status == "ok" and 0 < rec.value < 60
    # a new group cannot answer sooner than an interpreter starts (an answer already on
    # its way at the kill is no recovery)
    assert _summary(df, "server_kill", "recovery_time").value > 0.2
    assert _summary(df, "integrity", "integrity").value == 1.0
    acked = df[df.metric == "acknowledged_write"]
    assert len(acked) == (load.status == "ok").sum() and (acked.status == "ok").all()
    assert _summary(df, "load", "service_cpu").value > 0


def test_integrity_check_catches_a_service_that_acknowledges_before_it_commits():
    df = faults.run(_cfg(ack_before_commit=True), seed=5)
    integrity = _summary(df, "integrity", "integrity")
    lost = _summary(df, "integrity", "lost_writes").value
    assert lost >= 1 and integrity.value < 1.0 and math.isfinite(integrity.value)
    acked = df[df.metric == "acknowledged_write"]
    assert (acked.status == "mismatch").sum() == lost
    # the crash lost some: writes acknowledged before the group kill, not only at the stop
    before_group_kill = ~acked.params.str.contains("after_server_kill")
    assert (acked[before_group_kill].status == "mismatch").any()
