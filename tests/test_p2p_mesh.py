"""p2p_mesh: exact accounting on real peers, churn and a killed process counted, cleanup."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Any

import numpy as np
import psutil
import pytest

from forgebench.errors import ForgebenchError
from forgebench.network.p2p_mesh import (
    DEPARTED,
    LOST,
    MISMATCH,
    OK,
    SELF,
    UNKNOWN,
    Cluster,
    PhaseResult,
    Plan,
    account,
    add_rows,
    measure,
    run,
    run_phase,
    settings,
)
from forgebench.record import Recorder, utcnow
from forgebench.stats import vocabulary as V

TINY: dict[str, Any] = {
    "peer_counts": [4],
    "modes": ["mesh", "gossip"],
    "peer_processes": [2],
    "fanout": 2,
    "ttl": 4,
    "payload_bytes": 64,
    "messages": 20,
    "rate_per_s": 200.0,
    "burst_messages": 10,
    "warmup_messages": 0,
    "churn_fraction": 0.0,
    "churn_rejoin": True,
    "deadline_s": 1.0,
    "burst_deadline_s": 5.0,
    "repetitions": 1,
    "timeout_s": 10.0,
}


def _peer_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "forgebench.network.p2p_peer" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def _value(frame: Any, case: str, metric: str) -> float:
    rows = frame[(frame["case"] == case) & (frame["metric"] == metric)]
    assert len(rows) == 1, (case, metric, len(rows))
    return float(rows["value"].iloc[0])


def _plan(n: int, messages: int, rate: float, churn: tuple = (), origins: Any = None) -> Plan:
    origins = tuple(origins or (i % n for i in range(messages)))
    offsets = tuple(int(i * 1e9 / rate) for i in range(messages))
    return Plan("paced", 1, origins, offsets, churn)


def test_lossless_run_accounts_every_pair_exactly() -> None:
    """Mesh delivers N-1 per message, no duplicates; gossip's extra receipts are counted."""
    frame = run({**TINY, "modes": ["mesh", "gossip"], "warmup_messages": 4}, seed=3)
    assert _peer_children() == []
    n, m, b = 4, TINY["messages"], TINY["burst_messages"]
    # each row's params describe its own phase: warm-up rows its 4 messages, measured 20
    for warm, phase, msgs in ((True, "warmup", 4), (False, "paced", m)):
        rows = frame[(frame["case"] == "mesh_n4_procs2") & (frame["warmup"] == warm)]
        params = {json.loads(p)["phase"]: json.loads(p)["messages"] for p in rows["params"]}
        assert params == {phase: msgs}
    frame = frame[~frame["warmup"]]
    for case, msgs in (("mesh_n4_procs2", m), ("mesh_n4_procs2_burst", b)):
        assert _value(frame, case, "delivered") == msgs * (n - 1)
        assert _value(frame, case, "lost") == 0
        assert _value(frame, case, "duplicates") == 0
        assert _value(frame, case, "frames_per_message") == n - 1
        lat = frame[(frame["case"] == case) & (frame["metric"] == "latency")]
        assert len(lat) == msgs * (n - 1) and (lat["status"] == "ok").all()
        assert ((lat["value"] > 0) & (lat["value"] < TINY["deadline_s"])).all()
    gossip = "gossip_n4_procs2"
    # fanout 2 of 3 with ttl 4 reaches every peer of 4 only by relaying: duplicates appear
    assert _value(frame, gossip, "duplicates") > 0
    delivered, lost = _value(frame, gossip, "delivered"), _value(frame, gossip, "lost")
    assert delivered + lost == m * (n - 1)
    tput = _value(frame, "gossip_n4_procs2_burst", "throughput")
    assert math.isfinite(tput) and tput > 0
    assert {"ok"} == set(frame.loc[frame["metric"] == "send_lag", "status"])


def test_gossip_receipts_match_frames_sent() -> None:
    """On loopback without churn every frame written arrives exactly once: receipts equal
    frames sent, and duplicates are receipts beyond each pair's first."""
    s = settings({**TINY, "fanout": 2, "ttl": 3})
    with Cluster(5, 2, seed=1, timeout_s=10.0) as cluster:
        result = run_phase(cluster, _plan(5, 30, 300.0), "gossip", s)
    acc = account(result, s.deadline_s)
    c = acc.counts
    assert c["frames_sent"] > 0 and c["receipts"] == c["frames_sent"]
    got = int((acc.first_ns > 0).sum())
    assert c["duplicates"] == c["receipts"] - got
    assert c["delivered"] + c["lost"] == c["pairs"] == 30 * 4
    assert c["departed"] == c["unknown"] == 0


def test_gossip_with_full_fanout_delivers_as_mesh() -> None:
    """fanout >= N-1: the origin reaches every peer itself, so delivery equals the mesh's."""
    frame = run({**TINY, "fanout": 3, "ttl": 2}, seed=5)
    for suffix in ("", "_burst"):
        mesh = frame[(frame["case"] == f"mesh_n4_procs2{suffix}") & (frame["metric"] == "latency")]
        goss = frame[
            (frame["case"] == f"gossip_n4_procs2{suffix}") & (frame["metric"] == "latency")
        ]
        assert list(mesh["status"]) == list(goss["status"]) == ["ok"] * len(mesh)
        assert _value(frame, f"gossip_n4_procs2{suffix}", "delivered") == _value(
            frame, f"mesh_n4_procs2{suffix}", "delivered"
        )
    assert _value(frame, "gossip_n4_procs2", "duplicates") > 0  # every peer relays to 2
    assert _value(frame, "mesh_n4_procs2", "duplicates") == 0


def test_peer_that_leaves_is_counted_as_departed_not_lost() -> None:
    """Peer 3 leaves (connections reset) at 150 ms and never returns: messages it had are
    delivered, the rest are departed; no pair is lost to a live peer."""
    s = settings(TINY)
    plan = _plan(4, 40, 100.0, churn=((3, 150_000_000, "leave"),), origins=([0, 1, 2] * 14)[:40])
    with Cluster(4, 0, seed=1, timeout_s=10.0) as cluster:
        assert cluster.nprocs == 4  # one OS process per peer
        result = run_phase(cluster, plan, "mesh", s)
    acc = account(result, s.deadline_s)
    c = acc.counts
    assert c["lost"] == 0 and c["unknown"] == 0
    col = acc.outcome[:, 3]
    assert (col[:10] == OK).all()  # sent before 100 ms, while it was up
    assert (col[20:] == DEPARTED).all()  # sent after it had gone
    assert c["departed"] == int((col == DEPARTED).sum()) >= 20
    assert c["delivered"] + c["departed"] == c["pairs"] == 40 * 3
    assert (acc.outcome[:, :3][acc.outcome[:, :3] != SELF] == OK).all()


def test_killed_process_is_counted_and_the_run_goes_on() -> None:
    """SIGKILL the process of peer 3 mid-phase: its pairs become error rows, the live peers
    are accounted exactly, the next phase gets fresh processes, nothing is left running."""
    killed: list[int] = []

    def kill(cluster: Cluster, t0_ns: int) -> None:
        if killed:
            return
        time.sleep(max(0.0, (t0_ns - time.monotonic_ns()) / 1e9 + 0.1))
        pid = cluster.process_of(3).pid
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    s = settings({**TINY, "peer_processes": [0], "modes": ["mesh"], "messages": 40})
    frame = measure(s, seed=2, during=kill)
    assert killed and _peer_children() == []
    lat = frame[(frame["case"] == "mesh_n4_procs4") & (frame["metric"] == "latency")]
    died = lat[lat["status"] == "error:PeerProcessDied"]
    assert len(died) >= 40  # every pair at peer 3, and every pair of messages from it
    assert set(lat["status"]) == {"ok", "error:PeerProcessDied"}
    assert _value(frame, "mesh_n4_procs4", "lost") == 0
    assert _value(frame, "mesh_n4_procs4", "delivered") == (lat["status"] == "ok").sum()
    burst = frame[(frame["case"] == "mesh_n4_procs4_burst") & (frame["metric"] == "latency")]
    assert len(burst) == 30 and (burst["status"] == "ok").all()  # restarted processes


def test_account_classifies_pairs_by_deadline_and_absence() -> None:
    """Synthetic records: on time, late (lost), absent (departed), corrupt, unknown."""
    ms = 1_000_000
    plan = Plan("paced", 1, (0, 0, 0), (0, 10 * ms, 20 * ms))
    sent = {"0": 1000 * ms, "1": 1010 * ms, "2": 1020 * ms}

    def rep(pid: int, first: list[int], count: list[int], **kw: Any) -> dict[str, Any]:
        base = {"id": pid, "first": first, "count": count, "corrupt": [], "sent": {}}
        return {**base, "frames_sent": 0, "send_errors": 0, "down": [], **kw}

    reports = {
        0: rep(0, [0, 0, 0], [0, 0, 0], sent=sent, frames_sent=9),
        # peer 1: on time, late (arrived 2 s after the send), never (up all along): lost
        1: rep(1, [1001 * ms, 3010 * ms, 0], [3, 1, 0]),
        # peer 2: received the first, away from 1005 ms to 1015 ms, corrupt copy of the third
        2: rep(2, [1002 * ms, 0, 0], [1, 0, 0], down=[[1005 * ms, 1015 * ms]], corrupt=[2]),
        3: None,  # its process died
    }
    result = PhaseResult(plan, "gossip", 4, 1000 * ms, reports, utcnow())
    acc = account(result, deadline_s=1.0)
    expected = np.array(
        [[SELF, OK, OK, UNKNOWN], [SELF, LOST, DEPARTED, UNKNOWN], [SELF, LOST, MISMATCH, UNKNOWN]]
    )
    assert (acc.outcome == expected).all()
    assert acc.latency_ns[0, 1] == 1 * ms and acc.latency_ns[1, 1] == -1
    c = acc.counts
    assert (c["delivered"], c["lost"], c["late"], c["departed"]) == (2, 2, 1, 1)
    assert (c["mismatched"], c["unknown"], c["duplicates"]) == (1, 3, 2)


@pytest.mark.parametrize(
    ("key", "value"),
    [("modes", ["flood"]), ("peer_counts", [1]), ("churn_fraction", 0.9), ("deadline_s", 0)],
)
def test_bad_config_names_the_key(key: str, value: Any) -> None:
    with pytest.raises(ForgebenchError, match=rf"p2p_mesh\.{key}"):
        run({**TINY, key: value}, seed=0)
    assert _peer_children() == []


def test_departures_leave_no_rows_and_losses_are_censored_at_the_deadline() -> None:
    """A planned departure is outside the experiment: no latency row, no failure, counted
    as departed; a real loss is a latency row censored at the deadline (by design, with
    the deadline as its value), so no pair of this phase counts as a failure."""
    ms = 1_000_000
    plan = Plan("paced", 1, (0, 0), (0, 10 * ms))
    sent = {"0": 1000 * ms, "1": 1010 * ms}

    def rep(pid: int, first: list[int], **kw: Any) -> dict[str, Any]:
        base = {"id": pid, "first": first, "count": [int(f > 0) for f in first]}
        return {**base, "corrupt": [], "sent": {}, "frames_sent": 0, "send_errors": 0,
                "down": [], **kw}  # fmt: skip

    reports = {
        0: rep(0, [0, 0], sent=sent, frames_sent=4),
        1: rep(1, [1001 * ms, 0]),  # on time, then lost while up
        2: rep(2, [1002 * ms, 0], down=[[1005 * ms, None]]),  # left by plan
    }
    result = PhaseResult(plan, "gossip", 3, 1000 * ms, reports, utcnow())
    acc = account(result, deadline_s=0.5)
    rec = Recorder("network", "p2p_mesh", 1)
    add_rows(rec, "gossip_n3_procs3", {}, result, acc, repetition=0, warmup=False)
    frame = rec.frame()
    lat = frame[frame["metric"] == "latency"]
    assert len(lat) == 3  # 4 pairs, one of them departed
    assert sorted(lat["status"]) == ["censored", "ok", "ok"]
    assert lat.loc[lat["status"] == "censored", "value"].item() == 0.5
    assert not any(V.is_failure(s) for s in frame["status"])
    spread = frame[frame["metric"] == "spread"].sort_values("sample")
    assert list(spread["status"]) == ["ok", "censored"]
    assert _value(frame, "gossip_n3_procs3", "departed") == 1
    assert _value(frame, "gossip_n3_procs3", "delivery_ratio") == pytest.approx(2 / 3)
