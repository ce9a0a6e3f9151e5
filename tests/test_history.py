"""Run history (forgebench.history): run ids, append-only storage, baseline comparisons,
regression detection over stored runs, the history rule's outputs and the CLI."""

from __future__ import annotations

import json
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
    assert pd.Timestamp(prov["started_at"]) == rows["started_at"].min() == T0
    assert prov["files"][0]["path"] == "raw/network/echo_latency.parquet"
    assert prov["files"][0]["provenance"]["host"] == "node1"
    assert record.read_provenance(run_dir / "measurements.parquet")["run_id"] == rid
    assert len(record.read_resources(run_dir / "resources" / "network.echo_latency.parquet")) == 2
    metrics = pq.read_table(run_dir / "metrics.parquet").to_pandas()
    row = metrics[metrics["case"] == "persistent_64B"].iloc[0]
    assert row["n_ok"] == 40 and row["n_failed"] == 0 and row["host"] == "node1"
    assert row["median"] == pytest.approx(np.median(lognormal(1)))


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


def test_list_runs_orders_by_start_and_resolves_refs(tmp_path):
    root = tmp_path / "history"
    assert history.list_runs(root).empty
    ids = []
    for i in (2, 0, 1):  # appended out of time order
        raw = one_run(tmp_path / str(i), 10 + i, start=T0 + timedelta(hours=i))
        ids.append((i, history.append_run([raw], root)))
    ordered = [rid for _, rid in sorted(ids)]
    runs = history.list_runs(root)
    assert list(runs["run_id"]) == ordered
    assert list(runs.columns) == history.RUN_COLUMNS
    assert runs["host"].tolist() == ["node1"] * 3
    assert history.resolve_run(root, "latest") == ordered[-1]
    assert history.resolve_run(root, "previous") == ordered[-2]
    assert history.resolve_run(root, ordered[0][:10]) == ordered[0]
    with pytest.raises(ForgebenchError, match="matches no run"):
        history.resolve_run(root, "zzz")
    assert history.select_baseline(runs, ordered[1]) == ordered[0]
    assert history.select_baseline(runs, ordered[0]) is None
    assert history.select_baseline(runs, ordered[2], ordered[0]) == ordered[0]
    with pytest.raises(ForgebenchError, match=r"history\.baseline"):
        history.select_baseline(runs, ordered[2], "nope")
    with pytest.raises(ForgebenchError, match="this run itself"):
        history.select_baseline(runs, ordered[2], ordered[2])


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
    assert by_case.loc["persistent_64B", "verdict"] == "regression"
    assert by_case.loc["persistent_64B", "improvement"] == pytest.approx(-0.25, abs=0.05)
    assert by_case.loc["persistent_1024B", "verdict"] == "no significant change"
    assert set(table["family"]) == {f"network (vs baseline {base[1]['run_id']})"}
    assert table["reason"].str.contains("over a family of 2").all()


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
    assert both.set_index("case").loc["persistent_64B", "verdict"] == "regression"
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
    assert row["threshold"] == 0.5 and row["verdict"] == "no significant change"


def test_benjamini_hochberg_is_applied_within_each_family_only():
    """One metric with a modest shift: alone it is a regression; among 19 unchanged metrics
    of the same suite BH raises its p above alpha. Another suite's metrics do not count."""
    rng = np.random.default_rng(11)
    n = 12
    base_vals = rng.lognormal(0, 0.1, n)
    shifted = base_vals * 1.12 * rng.lognormal(0, 0.02, n)

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
    assert alone["verdict"].iloc[0] == "regression"
    p_raw = float(alone["mannwhitney_p"].iloc[0])
    assert 0.0025 < p_raw < 0.05  # significant alone, not after BH over 20

    crowd_b, crowd_c = frames(19, "network")
    other_b, other_c = frames(0, "harness")  # the same shift, alone in its suite
    table = history.compare_runs(
        pd.concat([crowd_c, other_c]), pd.concat([crowd_b, other_b]), prov, prov, STATS, seed=0
    )
    hot = table[(table["suite"] == "network") & (table["case"] == "hot")].iloc[0]
    assert hot["verdict"] == "no significant change"
    assert "over a family of 20" in hot["reason"]
    assert "not significant after correction" in hot["reason"]
    harness = table[table["suite"] == "harness"]
    assert harness["reason"].str.contains("over a family of 1").all()
    assert harness.set_index("case").loc["hot", "verdict"] == "regression"


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


def test_change_point_over_history_finds_a_regression_in_the_newest_run(tmp_path):
    noise = np.random.default_rng(5).lognormal(0, 0.01, 7)
    root, ids = build_history(tmp_path, [*noise, 1.3])
    table = detect(root, ids[-1], ids[-2]).set_index("case")
    row = table.loc["persistent_64B"]
    assert row["method"].startswith("change-point")
    assert row["n_runs"] == 8 and json.loads(row["runs"]) == ids
    assert row["verdict"] == "regression" and row["at_current_run"]
    assert row["change_at"] == ids[-1]
    assert row["improvement"] == pytest.approx(-0.3, abs=0.05)
    assert table.loc["persistent_1024B", "verdict"] == "no significant change"


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
    assert (
        row["verdict"] == "regression"
        and "3 comparable run(s) < history.min_runs=5" in (row["reason"])
    )


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
    assert info["regression_verdicts"] == {"no significant change": 1, "regression": 1}

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
    config.write_text("seed: 3\nstatistics: {bootstrap_resamples: 200}\nsuites: {}\n")
    assert cli.main([*args, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"baseline:  {ids[0]}" in out and f"candidate: {ids[1]}" in out
    assert "family network (vs baseline" in out
    assert "persistent_64B rtt" in out and ": regression" in out
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
    cfg.write_text("statistics: {bootstrap_resamples: 200}\nsuites: {}\n")
    base = ["compare", a, b, "--results", str(results), "--config", str(cfg)]
    assert cli.main(base) == 0
    assert "2 not comparable" in capsys.readouterr().out
    assert cli.main([*base, "--cross-machine"]) == 0
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
