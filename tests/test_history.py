"""Run history (forgebench.history): run ids, append-only storage, run order, baseline
comparisons, regression detection over stored runs, the history rule's outputs and the
CLI.

Defects found on 44dda0b, each with a test below that fails there on its assertion:
(a) a run's time was its oldest row's, so a partial rerun tied with the run before it
and ``compare previous latest`` could swap baseline and candidate; (b) a steady drift
was invisible; (c) a step read "regression" at every later run; (d) with 20 flat
metrics, a third of the runs raised a false regression somewhere."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from forgebench import cli, history, record
from forgebench.errors import ForgebenchError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATS = {"alpha": 0.05, "practical_threshold": 0.05, "bootstrap_resamples": 200}
#: A config for `forgebench compare`: statistics and seed only (no suites, no evaluation).
CONFIG = (
    "seed: 3\nstatistics: {bootstrap_resamples: 200}\nsuites: {}\nevaluation: {enabled: false}\n"
)


def raw_frame(
    values: dict[tuple[str, str, str], np.ndarray],
    *,
    suite: str = "network",
    benchmark: str = "echo_latency",
    version: int = 1,
    start: datetime = T0,
    params: dict | None = None,
    failed: int = 0,
) -> pd.DataFrame:
    """Rows of one benchmark: ``values[(case, metric, unit)]`` successful values, one warm-up
    row per case, and ``failed`` timeouts in the first case."""
    rec = record.Recorder(suite, benchmark, version)
    p = params or {"payload": 64}
    for n, ((case, metric, unit), vals) in enumerate(sorted(values.items())):
        rec.add(case, p, metric, unit, False, 1.0, warmup=True, started_at=start)
        for i, v in enumerate(vals):
            at = start + timedelta(milliseconds=i + 1)
            rec.add(case, p, metric, unit, False, float(v), sample=i, started_at=at)
        if n == 0:
            for _ in range(failed):
                rec.add(case, p, metric, unit, False, None, status="timeout", started_at=start)
    return rec.frame()


def write_raw(
    results: Path,
    frame: pd.DataFrame,
    *,
    host: str = "node1",
    cpu: str = "Xeon",
    commit: str = "c0ffee" * 6 + "abcd",
) -> Path:
    suite, benchmark = frame["suite"].iloc[0], frame["benchmark"].iloc[0]
    path = results / "raw" / suite / f"{benchmark}.parquet"
    prov = {
        "host": host,
        "cpu_model": cpu,
        "git_commit": commit,
        "benchmark": {"suite": suite, "name": benchmark, "version": 1},
    }
    record.write_measurements(frame, path, prov)
    resources = pd.DataFrame(
        {"t_s": [0.0, 0.1], "metric": ["rss_bytes"] * 2, "unit": ["bytes"] * 2, "value": [1.0, 2.0]}
    )
    record.write_resources(resources, path.with_name(f"{benchmark}.resources.parquet"), prov)
    return path


def lognormal(seed: int, median: float = 1e-4, n: int = 40, sigma: float = 0.05) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)


def one_run(tmp: Path, seed: int, *, start: datetime = T0, scale: float = 1.0, **kw) -> Path:
    frame = raw_frame(
        {
            ("persistent_64B", "rtt", "s"): lognormal(seed) * scale,
            ("persistent_1024B", "rtt", "s"): lognormal(seed + 1000, 2e-4),
        },
        start=start,
        **{k: v for k, v in kw.items() if k in ("version", "params", "failed")},
    )
    return write_raw(tmp, frame, **{k: v for k, v in kw.items() if k in ("host", "cpu")})


# ------------------------------------------------------------------------- run id


def test_run_id_is_stable_under_rewrite_and_row_order(tmp_path):
    frame = raw_frame({("a", "rtt", "s"): lognormal(1), ("b", "rtt", "s"): lognormal(2)})
    first = write_raw(tmp_path / "one", frame)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    second = write_raw(tmp_path / "two", shuffled, host="elsewhere")  # provenance is not content
    rid = history.run_id([first])
    assert rid == history.run_id([second])
    assert len(rid) == history.RUN_ID_LENGTH and int(rid, 16) >= 0
    os.utime(first, (0, 0))
    record.write_measurements(record.read_measurements(first), first, {"rewritten": True})
    assert history.run_id([first]) == rid


def test_run_id_is_independent_of_file_order_and_split(tmp_path):
    a = raw_frame({("a", "rtt", "s"): lognormal(1)}, benchmark="echo_latency")
    b = raw_frame({("b", "tput", "ops/s"): lognormal(2)}, suite="harness", benchmark="other")
    pa_, pb = write_raw(tmp_path, a), write_raw(tmp_path, b)
    assert history.run_id([pa_, pb]) == history.run_id([pb, pa_])
    assert history.run_id([pa_, pb]) == history.run_id_of(pd.concat([b, a], ignore_index=True))
    assert history.run_id([pa_]) != history.run_id([pa_, pb])


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(value=f["value"].where(f.index != 5, f["value"] * (1 + 1e-12))),
        lambda f: f.assign(status=f["status"].where(f.index != 5, "timeout")).assign(
            value=f["value"].where(f.index != 5, np.nan)
        ),
        lambda f: f.assign(started_at=f["started_at"].where(f.index != 5, T0 + timedelta(1))),
        lambda f: f.assign(params=f["params"].where(f.index != 5, '{"payload":65}')),
        lambda f: f.assign(warmup=f.index == 5),
        lambda f: f.iloc[1:],
    ],
    ids=["value", "status", "started_at", "params", "warmup", "row dropped"],
)
def test_run_id_changes_when_any_row_changes(change):
    frame = raw_frame({("a", "rtt", "s"): lognormal(1)})
    assert history.run_id_of(change(frame.copy())) != history.run_id_of(frame)


# ------------------------------------------------------------------------- storage


def test_append_stores_rows_provenance_and_resources(tmp_path):
    raw = one_run(tmp_path, 1)
    root = tmp_path / "history"
    rid = history.append_run([raw], root)
    run_dir = root / f"run_id={rid}"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "measurements.parquet",
        "metrics.parquet",
        "provenance.json",
        "resources",
    ]
    rows, prov = history.load_run(root, rid)
    pd.testing.assert_frame_equal(rows, record.read_measurements(raw))
    assert prov["run_id"] == rid and prov["n_rows"] == len(rows)
    assert pd.Timestamp(prov["earliest_row_at"]) == rows["started_at"].min() == T0
    made = pd.Timestamp(prov["made_at"])
    assert made > pd.Timestamp(prov["newest_row_at"]) and made.tzinfo is not None
    assert prov["files"][0]["path"] == "raw/network/echo_latency.parquet"
    assert prov["files"][0]["provenance"]["host"] == "node1"
    assert record.read_provenance(run_dir / "measurements.parquet")["run_id"] == rid
    assert len(record.read_resources(run_dir / "resources" / "network.echo_latency.parquet")) == 2
    metrics = pq.read_table(run_dir / "metrics.parquet").to_pandas()
    row = metrics[metrics["case"] == "persistent_64B"].iloc[0]
    assert row["n_ok"] == 40 and row["n_failed"] == 0 and row["host"] == "node1"
    assert row["median"] == pytest.approx(np.median(lognormal(1)))
    logs = np.log(lognormal(1))
    mad_sd = 1.4826 * np.median(np.abs(logs - np.median(logs)))
    assert row["se_log_median"] == pytest.approx(1.2533 * mad_sd / np.sqrt(40), rel=1e-3)


def test_append_twice_is_a_no_op(tmp_path):
    raw = one_run(tmp_path, 1)
    root = tmp_path / "history"
    rid = history.append_run([raw], root)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    record.write_measurements(record.read_measurements(raw), raw, {"rerun": True})
    assert history.append_run([raw], root) == rid
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert list(history.list_runs(root)["run_id"]) == [rid]


def test_append_never_overwrites_and_ignores_temporary_dirs(tmp_path):
    raw = one_run(tmp_path, 1)
    root = tmp_path / "history"
    rid = history.run_id([raw])
    existing = root / f"run_id={rid}"
    existing.mkdir(parents=True)
    (existing / "keep.txt").write_text("mine")
    assert history.append_run([raw], root) == rid
    assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]
    assert (existing / "keep.txt").read_text() == "mine"
    with pytest.raises(ForgebenchError, match="is not a stored run"):
        history.list_runs(root)  # a foreign directory is reported, not hidden

    clean = tmp_path / "clean"
    (clean / f".run_id={rid}.abc.tmp").mkdir(parents=True)  # an interrupted append's leftover
    assert history.append_run([raw], clean) == rid
    assert list(history.list_runs(clean)["run_id"]) == [rid]


def test_list_runs_orders_by_when_runs_were_made_and_resolves_refs(tmp_path):
    root = tmp_path / "history"
    assert history.list_runs(root).empty
    ids = []
    for i in (2, 0, 1):  # rows' own times out of order: the order is that of the runs
        raw = one_run(tmp_path / str(i), 10 + i, start=T0 + timedelta(hours=i))
        ids.append(history.append_run([raw], root))
    runs = history.list_runs(root)
    assert list(runs["run_id"]) == ids
    assert list(runs.columns) == history.RUN_COLUMNS
    assert runs["host"].tolist() == ["node1"] * 3
    assert history.resolve_run(root, "latest") == ids[-1]
    assert history.resolve_run(root, "previous") == ids[-2]
    assert history.resolve_run(root, ids[0][:10]) == ids[0]
    with pytest.raises(ForgebenchError, match="matches no run"):
        history.resolve_run(root, "zzz")
    assert history.select_baseline(runs, ids[1]) == ids[0]
    assert history.select_baseline(runs, ids[0]) is None
    assert history.select_baseline(runs, ids[2], ids[0]) == ids[0]
    with pytest.raises(ForgebenchError, match=r"history\.baseline"):
        history.select_baseline(runs, ids[2], "nope")
    with pytest.raises(ForgebenchError, match="this run itself"):
        history.select_baseline(runs, ids[2], ids[2])

    # Appending a run again (the same rows: the same run) keeps its place and its time.
    before = history.list_runs(root)
    again = one_run(tmp_path / "again", 10, start=T0)
    assert history.append_run([again], root) == ids[1]
    pd.testing.assert_frame_equal(history.list_runs(root), before)


def test_runs_stored_before_made_at_order_by_their_newest_row(tmp_path):
    root = tmp_path / "history"
    ids = []
    for i in (1, 0):
        ids.append(
            history.append_run(
                [one_run(tmp_path / str(i), 20 + i, start=T0 + timedelta(hours=i))], root
            )
        )
    for rid in ids:  # as a run stored by 44dda0b: no made_at, started_at its oldest row
        path = root / f"run_id={rid}" / "provenance.json"
        prov = json.loads(path.read_text())
        prov["started_at"] = prov.pop("earliest_row_at")
        for key in ("made_at", "newest_row_at"):
            prov.pop(key)
        path.write_text(json.dumps(prov))
    assert list(history.list_runs(root)["run_id"]) == [ids[1], ids[0]]


def _partial_rerun(tmp: Path, results: Path, *, seed: int) -> list[str]:
    """A run of two benchmarks, then two reruns that each remake sockperf only and reuse
    echo_latency's table as it stands (rows and timestamps included), as the workflow does
    when one benchmark's input changed: every run's oldest row is the same. The first
    rerun makes sockperf 4x faster. Returns the run ids in the order they were made."""
    raw = tmp / "results"

    def bench(benchmark: str, s: int, start: datetime, scale: float = 1.0) -> None:
        values = {("persistent_64B", "rtt", "s"): lognormal(s) * scale}
        write_raw(raw, raw_frame(values, benchmark=benchmark, start=start))

    bench("echo_latency", seed, T0)
    bench("sockperf", seed + 1, T0 + timedelta(minutes=5))
    paths = sorted(p for p in raw.rglob("*.parquet") if not p.name.endswith(".resources.parquet"))
    ids = [rule(tmp, paths, results / "history")["run_id"]]
    bench("sockperf", seed + 2, T0 + timedelta(days=1), scale=0.25)
    ids.append(rule(tmp, paths, results / "history")["run_id"])
    bench("sockperf", seed + 3, T0 + timedelta(days=2), scale=0.25)
    ids.append(rule(tmp, paths, results / "history")["run_id"])
    return ids


def test_a_partial_rerun_is_the_newer_run_and_compare_keeps_the_sign(tmp_path, capsys):
    """Defect (a): every run took its oldest row's time, the same for all three, so the
    order fell back to the run id: a rerun could be 'previous', and `compare previous
    latest` could read a 4x speed-up as a regression."""
    results = tmp_path / "results"
    ids = _partial_rerun(tmp_path, results, seed=31)
    root = results / "history"
    assert list(history.list_runs(root)["run_id"]) == ids
    assert history.resolve_run(root, "previous") == ids[1]
    assert history.resolve_run(root, "latest") == ids[2]

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    args = ["--results", str(results), "--config", str(config)]
    assert cli.main(["compare", ids[0][:10], ids[1][:10], *args]) == 0
    out = capsys.readouterr().out
    assert f"baseline:  {ids[0]}" in out and f"candidate: {ids[1]}" in out
    line = next(x for x in out.splitlines() if "sockperf persistent_64B rtt" in x)
    assert "improvement +7" in line  # 1 - 1/4 = +75%: better, not worse


def test_the_rule_names_the_previous_run_after_a_partial_rerun(tmp_path):
    """Defect (a), in run.json: ordered by run id, the newest run here came first, and the
    rule said there was no earlier run to compare it with."""
    results = tmp_path / "results"
    ids = _partial_rerun(tmp_path, results, seed=47)
    info = json.loads((tmp_path / "summary" / "run.json").read_text())
    assert info["run_id"] == ids[2]
    assert info["baseline_id"] == ids[1] and info["note"] == ""
    comparison = pd.read_parquet(tmp_path / "summary" / "baseline_comparison.parquet")
    assert set(comparison["baseline_run"]) == {ids[1]}
    assert set(comparison["candidate_run"]) == {ids[2]}


def test_a_run_from_another_machine_orders_by_when_it_was_made(tmp_path):
    root = tmp_path / "history"
    a = history.append_run([one_run(tmp_path / "a", 1, start=T0 + timedelta(days=3))], root)
    b = history.append_run([one_run(tmp_path / "b", 2, start=T0, host="node9")], root)
    assert list(history.list_runs(root)["run_id"]) == [a, b]


# -------------------------------------------------------------------- comparisons


def stored(tmp: Path, root: Path, seed: int, hours: int, **kw) -> tuple[pd.DataFrame, dict]:
    raw = one_run(tmp / f"r{seed}", seed, start=T0 + timedelta(hours=hours), **kw)
    return history.load_run(root, history.append_run([raw], root))


def test_compare_runs_calls_a_regression_and_names_the_family(tmp_path):
    root = tmp_path / "history"
    base = stored(tmp_path, root, 1, 0)
    cand = stored(tmp_path, root, 2, 1, scale=1.25)
    table = history.compare_runs(cand[0], base[0], cand[1], base[1], STATS, seed=0)
    assert len(table) == 2
    by_case = table.set_index("case")
    # one run a side holds no run-to-run variation: a change between two runs is suspected
    assert by_case.loc["persistent_64B", "verdict"] == "suspected regression"
    assert by_case.loc["persistent_64B", "improvement"] == pytest.approx(-0.25, abs=0.05)
    assert by_case.loc["persistent_1024B", "verdict"] == "no change"
    assert set(table["family"]) == {f"network (vs baseline {base[1]['run_id']})"}
    assert table["reason"].str.contains("family of 2").all()


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"version": 2}, "benchmark version"),
        ({"host": "node2"}, "machine node1"),
        ({"cpu": "EPYC"}, "machine node1"),
        ({"params": {"payload": 128}}, "workload parameters"),
    ],
)
def test_compare_runs_refuses_incomparable_pairs(tmp_path, kw, reason):
    root = tmp_path / "history"
    base = stored(tmp_path, root, 1, 0)
    cand = stored(tmp_path, root, 2, 1, scale=1.25, **kw)
    table = history.compare_runs(cand[0], base[0], cand[1], base[1], STATS, seed=0)
    assert (table["verdict"] == history.NOT_COMPARABLE).all()
    assert table["reason"].str.contains(reason).all()
    assert table["improvement"].isna().all()


def test_cross_machine_and_cross_version_compare_on_request(tmp_path):
    root = tmp_path / "history"
    base = stored(tmp_path, root, 1, 0)
    cand = stored(tmp_path, root, 2, 1, scale=1.25, host="node2", version=2)
    only_machine = history.compare_runs(
        cand[0], base[0], cand[1], base[1], STATS, seed=0, cross_machine=True
    )
    assert (only_machine["verdict"] == history.NOT_COMPARABLE).all()
    assert only_machine["reason"].str.contains("benchmark version").all()
    both = history.compare_runs(
        cand[0], base[0], cand[1], base[1], STATS, seed=0, cross_machine=True, cross_version=True
    )
    assert both.set_index("case").loc["persistent_64B", "verdict"] == "suspected regression"
    assert both["reason"].str.contains("crossed on request: benchmark version").all()
    assert both["crossed"].str.contains("machine node1").all()


def test_compare_runs_failed_side_and_per_metric_threshold(tmp_path):
    root = tmp_path / "history"
    base = stored(tmp_path, root, 1, 0)
    cand = stored(tmp_path, root, 2, 1, scale=1.25, failed=3)
    table = history.compare_runs(cand[0], base[0], cand[1], base[1], STATS, seed=0)
    failed = table.set_index("case").loc["persistent_1024B"]  # first case holds the timeouts
    assert failed["verdict"] == "failed" and failed["n_failed_candidate"] == 3
    lenient = {**STATS, "metric_thresholds": {"network/echo_latency/rtt": 0.5}}
    table = history.compare_runs(
        stored(tmp_path, root, 3, 2, scale=1.25)[0], base[0], cand[1], base[1], lenient, seed=0
    )
    row = table.set_index("case").loc["persistent_64B"]
    assert row["threshold"] == 0.5 and row["verdict"] == "no change"


def test_benjamini_hochberg_is_applied_within_each_family_only():
    """One metric with a 16% shift: alone its interval lies beyond the threshold; among 19
    unchanged metrics of the same suite its false-coverage-adjusted interval does not.
    Another suite's metrics do not count."""
    rng = np.random.default_rng(11)
    n = 12
    base_vals = rng.lognormal(0, 0.1, n)
    shifted = base_vals * 1.16 * rng.lognormal(0, 0.02, n)

    def frames(k_null: int, suite: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        base = {("hot", "t", "s"): base_vals}
        cand = {("hot", "t", "s"): shifted}
        for j in range(k_null):
            v = rng.lognormal(0, 0.1, n)
            base[(f"null{j:02d}", "t", "s")] = v
            cand[(f"null{j:02d}", "t", "s")] = rng.permutation(v)
        return raw_frame(base, suite=suite), raw_frame(cand, suite=suite)

    prov = {
        "run_id": "x",
        "files": [
            {"benchmarks": [f"{s}/echo_latency"], "provenance": {"host": "h", "cpu_model": "c"}}
            for s in ("network", "harness")
        ],
    }
    alone_b, alone_c = frames(0, "network")
    alone = history.compare_runs(alone_c, alone_b, prov, prov, STATS, seed=0)
    assert alone["verdict"].iloc[0] == "suspected regression"

    crowd_b, crowd_c = frames(19, "network")
    other_b, other_c = frames(0, "harness")  # the same shift, alone in its suite
    table = history.compare_runs(
        pd.concat([crowd_c, other_c]), pd.concat([crowd_b, other_b]), prov, prov, STATS, seed=0
    )
    hot = table[(table["suite"] == "network") & (table["case"] == "hot")].iloc[0]
    assert hot["verdict"] == "inconclusive"
    assert "family of 20" in hot["reason"]
    harness = table[table["suite"] == "harness"]
    assert not harness["reason"].str.contains("family of").any()
    assert harness.set_index("case").loc["hot", "verdict"] == "suspected regression"


def test_an_undetermined_metric_does_not_abort_its_family(tmp_path):
    """A metric without a p-value (a value <= 0 has no ratio) stays out of the correction."""
    root = tmp_path / "history"
    base = {("ok", "t", "s"): lognormal(1), ("zero", "t", "s"): np.r_[0.0, lognormal(2)[1:]]}
    cand = {("ok", "t", "s"): lognormal(3), ("zero", "t", "s"): lognormal(4)}
    for i, values in enumerate((base, cand)):
        raw = write_raw(tmp_path / f"r{i}", raw_frame(values, start=T0 + timedelta(hours=i)))
        history.append_run([raw], root)
    ids = list(history.list_runs(root)["run_id"])
    cur, old = history.load_run(root, ids[1]), history.load_run(root, ids[0])
    table = history.compare_runs(cur[0], old[0], cur[1], old[1], STATS, seed=0).set_index("case")
    assert table.loc["zero", "verdict"] == "undetermined" and np.isnan(table.loc["zero", "p_value"])
    assert table.loc["ok", "verdict"] == "no change"


# ------------------------------------------------------------- regression history


def build_history(tmp: Path, scales: list[float], **kw) -> tuple[Path, list[str]]:
    root = tmp / "history"
    ids = []
    for i, scale in enumerate(scales):
        raw = one_run(tmp / f"run{i}", 100 + i, start=T0 + timedelta(hours=i), scale=scale, **kw)
        ids.append(history.append_run([raw], root))
    return root, ids


def detect(root: Path, current: str, baseline: str, **cfg) -> pd.DataFrame:
    cur, base = history.load_run(root, current), history.load_run(root, baseline)
    pairwise = history.compare_runs(cur[0], base[0], cur[1], base[1], STATS, seed=0)
    return history.detect_regressions(
        history.load_metrics(root), current, pairwise, STATS, cfg, seed=0
    )


def test_change_point_method_still_finds_a_regression_in_the_newest_run(tmp_path):
    noise = np.random.default_rng(5).lognormal(0, 0.01, 7)
    root, ids = build_history(tmp_path, [*noise, 1.3])
    table = detect(root, ids[-1], ids[-2], method="change-point").set_index("case")
    row = table.loc["persistent_64B"]
    assert row["method"].startswith("change-point")
    assert row["n_runs"] == 8 and json.loads(row["runs"]) == ids
    assert row["verdict"] == "regression" and row["at_current_run"]
    assert row["change_at"] == ids[-1]
    assert row["improvement"] == pytest.approx(-0.3, abs=0.05)
    assert table.loc["persistent_1024B", "verdict"] == "no change"


def test_step_and_drift_suspects_the_newest_run_then_confirms_it(tmp_path):
    noise = list(np.random.default_rng(5).lognormal(0, 0.01, 7))
    root, ids = build_history(tmp_path, [*noise, 1.3, 1.3, 1.31, 1.29])
    verdicts = []
    for i in range(7, 11):
        row = detect(root, ids[i], ids[i - 1]).set_index("case").loc["persistent_64B"]
        verdicts.append(row["verdict"])
        assert row["method"].startswith("step-and-drift")
    assert verdicts == ["suspected regression", "suspected regression", "regression", "no change"]
    row = detect(root, ids[9], ids[8]).set_index("case").loc["persistent_64B"]
    assert row["change_began_at"] == ids[7] and row["change_confirmed_at"] == ids[9]
    assert row["new"] and row["confirmed"] and row["change_kind"] == "step"
    assert row["improvement"] == pytest.approx(-0.3, abs=0.03)
    last = detect(root, ids[10], ids[9]).set_index("case").loc["persistent_64B"]
    assert not last["new"] and last["change_began_at"] == ids[7]
    assert f"no change since the step that began at run {ids[7]}" in last["reason"]


def test_rolling_z_score_method_is_named(tmp_path):
    noise = np.random.default_rng(6).lognormal(0, 0.01, 7)
    root, ids = build_history(tmp_path, [*noise, 1.3])
    table = detect(root, ids[-1], ids[-2], method="rolling z-score").set_index("case")
    row = table.loc["persistent_64B"]
    assert row["method"].startswith("rolling z-score") and row["statistic_name"] == "z"
    assert row["verdict"] == "regression" and row["statistic"] > 5


def test_few_runs_fall_back_to_pairwise_against_the_baseline(tmp_path):
    root, ids = build_history(tmp_path, [1.0, 1.0, 1.3])
    table = detect(root, ids[-1], ids[-2], min_runs=5).set_index("case")
    row = table.loc["persistent_64B"]
    assert row["method"] == f"{history.PAIRWISE_METHOD} {ids[-2]}"
    assert row["verdict"] == "suspected regression"
    assert "3 comparable run(s) < 6 for step-and-drift" in row["reason"]
    assert row["statistic_name"] == "p" and row["p_value"] == row["statistic"]


def test_unknown_history_method_is_a_config_error(tmp_path):
    root, ids = build_history(tmp_path, [1.0, 1.0])
    with pytest.raises(ForgebenchError, match=r"history\.method"):
        detect(root, ids[-1], ids[-2], method="magic")


def test_max_runs_below_min_runs_is_a_config_error(tmp_path):
    root, ids = build_history(tmp_path, [1.0, 1.0])
    with pytest.raises(ForgebenchError, match=r"history\.max_runs \(3\) is below"):
        detect(root, ids[-1], ids[-2], min_runs=5, max_runs=3)


def test_other_machines_and_failed_runs_are_left_out_of_the_series(tmp_path):
    root = tmp_path / "history"
    ids = []
    plan = [{}, {"host": "other"}, {}, {"failed": 2}, {}, {}, {}]
    for i, kw in enumerate(plan):
        raw = one_run(tmp_path / f"r{i}", 200 + i, start=T0 + timedelta(hours=i), **kw)
        ids.append(history.append_run([raw], root))
    table = detect(root, ids[-1], ids[-2]).set_index("case")
    row = table.loc["persistent_1024B"]  # the case the failures were recorded in
    assert row["n_runs"] == 5 and row["n_excluded"] == 2
    assert ids[1] not in json.loads(row["runs"]) and ids[3] not in json.loads(row["runs"])
    assert "1 with another machine" in row["reason"] and "1 with failed operations" in row["reason"]


def metrics_frame(medians: dict[str, np.ndarray], *, suite: str = "network") -> pd.DataFrame:
    """load_metrics' table for one benchmark, a run an hour: ``medians[metric]`` per run."""
    n = len(next(iter(medians.values())))
    rows = [
        {
            "run_id": f"run{i:03d}",
            "started_at": pd.Timestamp(T0 + timedelta(hours=i)),
            "suite": suite,
            "benchmark": "echo_latency",
            "benchmark_version": 1,
            "case": "persistent_64B",
            "params": '{"payload":64}',
            "metric": name,
            "unit": "s",
            "higher_is_better": False,
            "n_ok": 40,
            "n_failed": 0,
            "median": float(values[i]),
            "host": "node1",
            "cpu_model": "Xeon",
        }
        for i in range(n)
        for name, values in medians.items()
    ]
    return pd.DataFrame(rows)


def run_by_run(frame: pd.DataFrame, first: int = 6, **cfg) -> list[pd.DataFrame]:
    """detect_regressions as the workflow calls it: at each run, on the runs so far."""
    ids = sorted(frame["run_id"].unique())
    return [
        history.detect_regressions(
            frame[frame["run_id"].isin(ids[: i + 1])], ids[i], None, STATS, cfg, seed=0
        )
        for i in range(first - 1, len(ids))
    ]


def test_a_steady_drift_is_found_as_one_change(tmp_path):
    """Defect (b): 30 runs at +1% per run (33% slower) read "no significant change"."""
    rng = np.random.default_rng(1)
    drift = np.exp(0.02 * rng.standard_normal(30) + np.arange(1, 31) * np.log(1.01))
    tables = run_by_run(metrics_frame({"rtt": drift}))
    last = tables[-1].iloc[0]
    assert "drift" in last["reason"], last["reason"]
    verdicts = [t["verdict"].iloc[0] for t in tables]
    assert "regression" in verdicts
    assert last["change_kind"] == "drift" and last["change_began_at"] <= "run005"
    assert len(json.loads(last["change_points"])) == 1  # one episode, however long


def test_a_step_is_reported_where_it_began_and_does_not_stick():
    """Defect (c): a step at run 6 of 15 still read "regression" at run 15."""
    step = np.exp(0.01 * np.random.default_rng(2).standard_normal(15))
    step[6:] *= 1.3
    tables = run_by_run(metrics_frame({"rtt": step}))
    last = tables[-1].iloc[0]
    assert last["verdict"] == "no change", last["reason"]
    assert last["change_began_at"] == "run006" and not last["new"]
    verdicts = [t["verdict"].iloc[0] for t in tables]
    assert verdicts.count("regression") == 1
    confirmed = tables[verdicts.index("regression")].iloc[0]
    assert confirmed["change_began_at"] == "run006" and confirmed["new"]
    assert confirmed["improvement"] == pytest.approx(-0.3, abs=0.05)


def test_twenty_flat_metrics_rarely_raise_a_false_regression():
    """Defect (d): with 20 flat metrics, 30-50% of runs raised at least one regression."""
    rng = np.random.default_rng(3)
    flat = {f"m{j:02d}": np.exp(0.05 * rng.standard_normal(40)) for j in range(20)}
    tables = run_by_run(metrics_frame(flat), first=10)
    raised = [bool((t["verdict"] == "regression").any()) for t in tables]
    assert np.mean(raised) <= 0.1, raised


def test_metric_thresholds_decide_the_history_verdict():
    step = np.exp(0.002 * np.random.default_rng(4).standard_normal(40))
    step[30:] *= 1.03  # 3%: beyond a 1% threshold, within the default 5%
    frame = metrics_frame({"rtt": step})
    default = [t["verdict"].iloc[0] for t in run_by_run(frame, first=25)]
    assert "shift below threshold" in default and "regression" not in default
    strict = {**STATS, "metric_thresholds": {"network/echo_latency/rtt": 0.01}}
    ids = sorted(frame["run_id"].unique())
    verdicts = [
        history.detect_regressions(
            frame[frame["run_id"].isin(ids[: i + 1])], ids[i], None, strict, {}, seed=0
        )["verdict"].iloc[0]
        for i in range(24, 40)
    ]
    assert "regression" in verdicts


def test_new_changes_are_corrected_across_the_metrics_of_a_suite(monkeypatch):
    """A change confirmed at this run whose p does not survive Benjamini-Hochberg across
    the suite's metrics reads as suspected; a NaN p leaves the others alone."""
    rng = np.random.default_rng(5)
    medians = {f"m{j:02d}": np.exp(0.05 * rng.standard_normal(30)) for j in range(10)}
    medians["m00"][27:] *= 1.3
    tables = run_by_run(metrics_frame(medians), first=30)
    row = tables[-1].set_index("metric").loc["m00"]
    assert row["verdict"] == "regression" and row["new"]
    from forgebench.stats import detection as stats_detection

    real = stats_detection.analyse

    def weak(values, **kw):
        changes, state = real(values, **kw)
        p = state.p_value if math.isnan(state.p_value) else 0.02
        return changes, dataclasses.replace(state, p_value=p)

    monkeypatch.setattr(stats_detection, "analyse", weak)
    row = run_by_run(metrics_frame(medians), first=30)[-1].set_index("metric").loc["m00"]
    assert row["verdict"] == "suspected regression"
    assert "not selected by Benjamini-Hochberg" in row["reason"]


# ---------------------------------------------------------------------- the rule


def rule(tmp: Path, raws: list[Path], root: Path, **cfg) -> dict:
    out = tmp / "summary"
    return history.update_history(
        raws,
        root,
        run_json=out / "run.json",
        comparison_path=out / "baseline_comparison.parquet",
        regressions_path=out / "regressions.parquet",
        history_cfg={"baseline": "previous", "min_runs": 5, **cfg},
        statistics=STATS,
        seed=0,
    )


def test_update_history_first_run_then_baseline_then_rerun(tmp_path):
    root = tmp_path / "results" / "history"
    first = one_run(tmp_path / "a", 1)
    info = rule(tmp_path, [first], root)
    assert info["baseline_id"] is None and "nothing to compare" in info["note"]
    assert pd.read_parquet(tmp_path / "summary" / "baseline_comparison.parquet").empty
    assert pd.read_parquet(tmp_path / "summary" / "regressions.parquet").empty

    second = one_run(tmp_path / "b", 2, start=T0 + timedelta(hours=1), scale=1.3)
    info = rule(tmp_path, [second], root)
    assert info["baseline_id"] == history.run_id([first])
    assert info["run_id"] == history.run_id([second])
    assert info["method"] == f"{history.PAIRWISE_METHOD} {info['baseline_id']}"
    assert json.loads((tmp_path / "summary" / "run.json").read_text()) == info
    comparison = pd.read_parquet(tmp_path / "summary" / "baseline_comparison.parquet")
    assert {"improvement_ci_low", "improvement_ci_high"} <= set(comparison.columns)
    regressions = pd.read_parquet(tmp_path / "summary" / "regressions.parquet")
    assert list(regressions.columns) == history.REGRESSION_COLUMNS
    assert info["regression_verdicts"] == {"no change": 1, "suspected regression": 1}
    assert info["history_method"] == "step-and-drift"

    again = rule(tmp_path, [second], root)  # a rerun of an up-to-date workflow
    assert again == info
    assert len(history.list_runs(root)) == 2


# ---------------------------------------------------------------------------- CLI


def test_cli_history_and_compare(tmp_path, capsys):
    results = tmp_path / "results"
    root, ids = build_history(tmp_path, [1.0, 1.3])
    (results / "history").parent.mkdir(parents=True, exist_ok=True)
    root.rename(results / "history")
    assert cli.main(["history", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "2 run(s)" in out and ids[0] in out and ids[1] in out
    assert out.index(ids[0]) < out.index(ids[1])

    args = ["compare", ids[0][:8], "latest", "--results", str(results)]
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    assert cli.main([*args, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"baseline:  {ids[0]}" in out and f"candidate: {ids[1]}" in out
    assert "family network (vs baseline" in out
    assert "persistent_64B rtt" in out and ": suspected regression" in out
    assert "not comparable" in out  # the rule is stated

    assert (
        cli.main(["compare", "nope", "latest", "--results", str(results), "--config", str(config)])
        == 1
    )
    assert "ERROR: run 'nope' matches no run" in capsys.readouterr().err


def test_cli_compare_refuses_other_machines_unless_crossed(tmp_path, capsys):
    results = tmp_path / "results"
    root = results / "history"
    a = history.append_run([one_run(tmp_path / "a", 1)], root)
    b = history.append_run(
        [one_run(tmp_path / "b", 2, start=T0 + timedelta(hours=1), host="node9")], root
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "statistics: {bootstrap_resamples: 200}\nsuites: {}\nevaluation: {enabled: false}\n"
    )
    base = ["compare", a, b, "--results", str(results), "--config", str(cfg)]
    assert cli.main(base) == 0
    assert "2 not comparable" in capsys.readouterr().out
    assert cli.main([*base, "--cross-machine", "--all"]) == 0  # unchanged rows too
    out = capsys.readouterr().out
    assert "not comparable" not in out.split("rule:")[-1].split("\n", 1)[1]
    assert "crossed on request: machine node1" in out


def test_cli_help_explains_each_command(capsys):
    for command, words in (
        ("history", "oldest first"),
        ("compare", "Benjamini-Hochberg"),
        ("report", "without running any benchmark"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert words in capsys.readouterr().out
