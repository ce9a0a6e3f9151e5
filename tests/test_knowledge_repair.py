"""knowledge/repair: the generator's truth, the store-only detectors (which share nothing
with the generator), scoring against the truth with exact intervals, the Guardian and the
repairs, on small generated graphs."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from forgebench.knowledge import detector as D
from forgebench.knowledge import medical_graph as mg
from forgebench.knowledge import repair, scoring
from forgebench.knowledge.detector import detect, strongly_connected
from forgebench.knowledge.repair_bench import run


@pytest.fixture(scope="module")
def store():
    conn = mg.create_store()
    rng = np.random.default_rng(7)
    background = mg.generate(conn, mg.Sizes(patients=3000), rng)
    clean = dict(background.violations)
    truth = mg.inject(conn, 8, 8, rng, background)
    return conn, truth, clean


def test_detector_shares_no_code_with_the_generator():
    tree = ast.parse(inspect.getsource(D))
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert not any("medical_graph" in str(m) or "knowledge" in str(m) for m in imported)


def test_clean_graph_has_background_noise_and_its_truth(store):
    conn, _, clean = store
    # The background's only violations are the missing dosages the generator meant.
    assert clean and set(clean.values()) == {"background"}
    assert {k for k, _ in clean} == {"missing_dosage"}
    dates = [r[0] for r in conn.execute("SELECT date FROM prescribed")]
    text = [d for d in dates if not (len(d) == 10 and d[4] == "-")]
    assert 0.01 < len(text) / len(dates) < 0.06  # free-text dates, as generated
    statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM diagnosed_with")}
    assert {"Confirmed", "CONFIRMED", "confirmed"} <= statuses
    names = [r[0] for r in conn.execute("SELECT name FROM patient")]
    assert any(", " in n for n in names)


def test_every_kind_and_variant_is_injected(store):
    _, truth, clean = store
    injected = {(k, v) for (k, _), v in truth.violations.items() if v != "background"}
    assert injected == {(k, v) for k in mg.KINDS for v in mg.VARIANTS[k]}
    assert len(truth.violations) == 8 * sum(len(v) for v in mg.VARIANTS.values()) + len(clean)
    looks = {(k, v) for (k, _), v in truth.lookalikes.items()}
    assert looks == {(k, v) for k in mg.KINDS for v in mg.LOOKALIKES[k][1]}


def test_lookalikes_are_drawn_not_placed_on_the_boundary(store):
    conn, truth, _ = store
    days = []
    for (_kind, ident), variant in truth.lookalikes.items():
        if variant == "near_as_of":
            (when,) = conn.execute("SELECT date FROM prescribed WHERE id = ?", ident).fetchone()
            days.append((mg.AS_OF - D.read_date(when)).days)
    assert min(days) >= 0 and len(set(days)) > 3  # several distances, none in the future


def test_rules_only_misses_the_kinds_it_cannot_read(store):
    conn, truth, _ = store
    by_variant = scoring.recall_by_variant(detect(conn, variant="rules_only"), truth.violations)
    for kv in (
        ("duplicate_identity", "last_first"),
        ("duplicate_identity", "typo"),
        ("missing_dosage", "placeholder"),
    ):
        assert by_variant[kv] == 0.0
    assert by_variant[("future_date", "far_past")] == 1.0
    # Free-text past dates that sort after the as-of date are flagged: precision drops.
    assert scoring.precision(detect(conn, variant="rules_only"), truth.violations) < 0.8


def test_context_detector_scores_high_but_not_by_construction(store):
    conn, truth, _ = store
    found = detect(conn)
    assert scoring.precision(found, truth.violations) > 0.95
    assert 0.85 < scoring.recall(found, truth.violations) < 1.0  # ordinal dates, typos
    by_variant = scoring.recall_by_variant(found, truth.violations)
    assert by_variant[("future_date", "free_text")] < 1.0  # "3rd March" is unreadable to it


def _weakened(c):
    """The context detector with two of its rules cut back to literal reading."""
    out = set()
    for kind, rule in D.DETECTORS.items():
        if kind in ("missing_dosage", "duplicate_identity"):
            rule = D.RULES_ONLY[kind]
        out |= {(kind, ident) for ident in rule(c)}
    return out


def test_a_weakened_detector_scores_lower(store):
    conn, truth, _ = store
    full, weak = detect(conn), _weakened(conn)
    v = truth.violations
    for kind in ("missing_dosage", "duplicate_identity"):
        assert scoring.recall(weak, v, kind) < scoring.recall(full, v, kind)
    assert scoring.recall(weak, v) < scoring.recall(full, v)
    gained, lost, items = scoring.paired_outcomes(weak, full, v, truth.lookalikes)
    from forgebench.evaluation.paired import delta_interval

    delta, (low, _), _ = delta_interval(gained, lost, items, 0.95)
    assert delta > 0 and low > 0  # the paired interval says the full detector is better


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
    assert set(frame["status"]) <= {"ok", "skipped"}
    rows = frame.set_index(["case", "metric"])["value"]
    for prefix in ("", "rules_only:"):
        for metric in ("detection_recall", "detection_precision"):
            value = rows[(f"{prefix}all@200", metric)]
            low, high = (rows[(f"{prefix}all@200", f"{metric}_ci_{e}")] for e in ("low", "high"))
            assert low <= value <= high and high - low > 0
    assert rows[("rules_only:all@200", "detection_recall")] < rows[("all@200", "detection_recall")]
    gain = "rules_plus_context_vs_rules_only@200"
    assert rows[(gain, "correct_share_gain_ci_low")] <= rows[(gain, "correct_share_gain")]
    assert rows[("all@200", "residual_violation_rate")] == 0.0
    assert rows[("all@200", "unrepaired_violation_rate")] >= 0.0
    assert rows[("all@200", "repairs_of_non_violations")] >= 0
    assert 0.0 <= rows[("all@200", "guardian_reject_rate")] <= 1.0
    tp = frame[(frame["metric"] == "detection_throughput") & ~frame["warmup"]]
    assert len(tp) == 1 and (tp["value"] > 0).all()
    assert frame[frame["warmup"]]["metric"].isin(["detection_time", "detection_throughput"]).all()


def test_both_detectors_name_every_kind_the_generator_knows():
    assert D.KINDS == mg.KINDS
    assert all(tuple(rules) == D.KINDS for rules in D.DETECTOR_VARIANTS.values())
