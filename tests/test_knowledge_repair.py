"""knowledge/repair: injected violations, the store-only detector, scoring against injected
identities, the Guardian and the repairs, on small generated graphs."""

from __future__ import annotations

import numpy as np
import pytest

from forgebench.knowledge import medical_graph as mg
from forgebench.knowledge import repair, scoring
from forgebench.knowledge.detector import detect, strongly_connected
from forgebench.knowledge.repair_bench import run


@pytest.fixture(scope="module")
def store():
    conn = mg.create_store()
    rng = np.random.default_rng(7)
    mg.generate(conn, mg.Sizes(patients=300), rng)
    clean = detect(conn)
    truth = mg.inject(conn, 2, 2, rng)
    return conn, truth, clean


def test_clean_graph_has_no_violation(store):
    assert store[2] == set()


def test_every_kind_and_variant_is_injected(store):
    _, truth, _ = store
    injected = {(k, v) for (k, _), v in truth.violations.items()}
    assert injected == {(k, v) for k in mg.KINDS for v in mg.VARIANTS[k]}
    assert len(truth.violations) == 2 * sum(len(v) for v in mg.VARIANTS.values())
    looks = {(k, v) for (k, _), v in truth.lookalikes.items()}
    assert looks == {(k, v) for k in mg.KINDS for v in mg.LOOKALIKES[k][1]}


def test_detector_finds_injected_and_no_lookalike(store):
    conn, truth, _ = store
    found = detect(conn)
    assert scoring.precision(found, truth.violations) == 1.0
    assert scoring.recall(found, truth.violations) == 1.0
    assert all(v == 1.0 for v in scoring.recall_by_variant(found, truth.violations).values())
    assert all(v == 0.0 for v in scoring.flagged_by_variant(found, truth.lookalikes).values())


def test_perfect_detector_scores_one():
    injected = {("future_date", (1,)): "just_past", ("missing_dosage", (2,)): "null"}
    assert scoring.precision(set(injected), injected) == 1.0
    assert scoring.recall(set(injected), injected) == 1.0


def test_flag_everything_precision_equals_violation_rate(store):
    conn, truth, _ = store
    everything = {("missing_dosage", (r[0],)) for r in conn.execute("SELECT id FROM prescribed")}
    injected = [k for k in truth.violations if k[0] == "missing_dosage"]
    rate = len(injected) / len(everything)
    assert scoring.precision(everything, truth.violations, "missing_dosage") == pytest.approx(rate)
    assert scoring.recall(everything, truth.violations, "missing_dosage") == 1.0


def test_counting_detections_is_not_recall():
    injected = {("future_date", (1,)): "far_past"}
    doubled = {("future_date", (1,)), ("future_date", (99,))}
    assert scoring.recall(doubled, injected) == 1.0  # never 2.0
    assert scoring.precision(doubled, injected) == 0.5


def test_missing_a_variant_shows_in_its_recall(store):
    conn, truth, _ = store
    found = {d for d in detect(conn) if truth.violations.get(d) != "length_4"}
    by_variant = scoring.recall_by_variant(found, truth.violations)
    assert by_variant[("circular_dependency", "length_4")] == 0.0
    assert by_variant[("circular_dependency", "length_5")] == 1.0


def test_scc_finds_cycles_of_every_length_but_not_a_diamond():
    edges = [(1, 2), (2, 1)]  # length 2
    edges += [(10, 11), (11, 12), (12, 13), (13, 14), (14, 15), (15, 10)]  # length 6
    edges += [(20, 21), (20, 22), (21, 23), (22, 23)]  # diamond
    comps = [c for c in strongly_connected(edges) if len(c) > 1]
    assert sorted(comps) == [[1, 2], [10, 11, 12, 13, 14, 15]]


def test_repairs_leave_no_residual_and_guardian_rules():
    conn = mg.create_store()
    rng = np.random.default_rng(3)
    mg.generate(conn, mg.Sizes(patients=200), rng)
    truth = mg.inject(conn, 1, 1, rng)
    found = detect(conn)
    proposals = [repair.propose(conn, d) for d in sorted(found, key=repr)]
    decisions = repair.guardian(conn, proposals, found, max_rows=50)
    by_kind = {p.detection[0]: d for p, d in zip(proposals, decisions, strict=True)}
    assert by_kind["orphaned_edge"] == "apply"
    assert by_kind["duplicate_identity"] == "apply"
    assert by_kind["missing_dosage"] == "quarantine"
    # A proposal that deletes the wrong row does not resolve its target: rejected.
    target = next(p for p in proposals if p.detection[0] == "future_date")
    other = conn.execute("SELECT min(id) FROM prescribed").fetchone()[0]
    wrong = repair.Proposal(target.detection, "delete_row", "prescribed", (other,))
    assert repair.guardian(conn, [wrong], found, max_rows=50) == ["reject"]
    # A merge that would move more rows than allowed is rejected.
    merge = next(p for p in proposals if p.action == "merge_patients")
    assert repair.guardian(conn, [merge], found, max_rows=0) == ["reject"]
    for p, d in zip(proposals, decisions, strict=True):
        repair.carry_out(conn, p, d)
    after = detect(conn)
    assert scoring.recall(after, truth.violations) == 0.0
    assert after - found == set()
    n_quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert n_quarantined == decisions.count("quarantine")


def test_run_records_matched_metrics():
    frame = run({"sizes": [200], "repetitions": 1, "validity_sample": 5}, seed=1)
    assert set(frame["status"]) == {"ok"}
    rows = frame.set_index(["case", "metric"])["value"]
    assert rows[("all@200", "detection_recall")] == 1.0
    assert rows[("all@200", "detection_precision")] == 1.0
    assert rows[("all@200", "residual_violation_rate")] == 0.0
    assert 0.0 <= rows[("all@200", "guardian_reject_rate")] <= 1.0
    tp = frame[(frame["metric"] == "detection_throughput") & ~frame["warmup"]]
    assert len(tp) == 1 and (tp["value"] > 0).all()
    assert frame[frame["warmup"]]["metric"].isin(["detection_time", "detection_throughput"]).all()
