"""The report from stored results: sections, figures, summaries, byte-identical rebuilds.

Inputs are real: the module fixture runs two real benchmarks (loopback echo latency and
the sampler-overhead A/B) through forgebench.runner with seconds of work. Hand-written
record frames appear only in unit tests of formatting and plotting, never as results.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from forgebench import analysis, plots, record, report
from forgebench.record import Recorder
from forgebench.runner import run_benchmark

REPO = Path(__file__).resolve().parents[1]
STATS = {"confidence": 0.95, "bootstrap_resamples": 200, "practical_threshold": 0.05, "alpha": 0.05}
CONFIG = {
    "seed": 7,
    "sampler": {"interval_s": 0.05},
    "statistics": STATS,
    "suites": {
        "network": {
            "benchmarks": {
                "echo_latency": {
                    "scenarios": ["persistent", "concurrent"],
                    "payload_sizes": [64],
                    "concurrency": [2],
                    "warmup_requests": 5,
                    "min_duration_s": 0.05,
                    "min_requests": 100,
                    "max_requests": 300,
                    "timeout_s": 2.0,
                    "repetitions": 1,
                }
            }
        },
        "harness": {
            "benchmarks": {
                "sampler_overhead": {
                    "interval_s": 0.05,
                    "rounds": 4,
                    "warmup_rounds": 1,
                    "workload_iterations": 20000,
                }
            }
        },
    },
}
COMPARISONS = [
    {
        "name": "sampler overhead",
        "suite": "harness",
        "benchmark": "sampler_overhead",
        "metric": "workload_time",
        "baseline": "without_sampler",
        "candidate": "with_sampler",
    }
]
TARGETS = [
    {
        "name": "sampler overhead under 1%",
        "comparison": "sampler overhead",
        "statistic": "improvement",
        "op": ">",
        "threshold": -0.01,
    },
    {
        "name": "persistent 64 B p50 under 1 s",
        "suite": "network",
        "benchmark": "echo_latency",
        "case": "persistent_64B",
        "metric": "rtt",
        "statistic": "p50",
        "op": "<",
        "threshold": 1.0,
    },
    {"name": "UI under 50 ms", "statistic": "p95", "op": "<", "threshold": 0.05},
]


def run_real(raw_dir: Path, suite: str, name: str) -> str:
    """Run one registered benchmark for real into ``raw_dir``; return its raw table."""
    path = raw_dir / suite / f"{name}.parquet"
    run_benchmark(
        suite,
        name,
        CONFIG,
        measurements_path=path,
        resources_path=raw_dir / suite / f"{name}.resources.parquet",
    )
    return str(path)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> list[str]:
    raw_dir = tmp_path_factory.mktemp("results") / "raw"
    return [
        run_real(raw_dir, "network", "echo_latency"),
        run_real(raw_dir, "harness", "sampler_overhead"),
    ]


def build(raw_paths: list[str], out: Path, **kwargs) -> dict:
    return report.build_report(
        raw_paths,
        summary_path=out / "summary" / "summary.parquet",
        verdicts_path=out / "summary" / "verdicts.parquet",
        html_path=out / "report" / "index.html",
        plots_dir=out / "report" / "plots",
        provenance_path=out / "report" / "provenance.json",
        statistics=STATS,
        comparisons=COMPARISONS,
        targets=TARGETS,
        seed=7,
        **kwargs,
    )


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("built")
    return out, build(raw, out)


TABLES = [
    "summary/summary.parquet",
    "summary/verdicts.parquet",
    "report/summary.json",
    "report/summary.md",
    "report/index.html",
]


def assert_same_outputs(first, other):
    """The tables and pages, and every PNG under the same name, are the same bytes."""
    for name in TABLES:
        assert (other / name).read_bytes() == (first / name).read_bytes(), name
    pngs = sorted(p.name for p in (first / "report" / "plots").glob("*.png"))
    assert pngs == sorted(p.name for p in (other / "report" / "plots").glob("*.png"))
    for name in pngs:
        a = (first / "report" / "plots" / name).read_bytes()
        assert a == (other / "report" / "plots" / name).read_bytes(), name


def test_regenerating_twice_gives_byte_identical_tables(raw, built, tmp_path):
    """Must show: two rebuilds from the same stored results, in other directories, with
    the inputs listed in another order, give the same bytes; so does a rebuild in place."""
    first, _ = built
    build(list(reversed(raw)), tmp_path)
    assert_same_outputs(first, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in TABLES}
    build(raw, tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in TABLES} == before
    assert not re.search(rb"\d{4}-\d\d-\d\dT\d\d:\d\d", before["report/summary.json"])
    assert not re.search(rb"\d{4}-\d\d-\d\dT\d\d:\d\d", before["report/summary.md"])


def test_a_build_in_worker_processes_is_byte_identical(raw, built, tmp_path):
    """Must show: with workers (summaries' bootstraps and figures computed in a spawned
    process pool, as the report rule does on every core) the tables, pages and PNGs are
    the same bytes as the one-process build, under the same names."""
    first, _ = built
    build(raw, tmp_path, workers=2)
    assert_same_outputs(first, tmp_path)


def test_report_has_every_section_and_every_figure_it_names(built):
    out, _ = built
    html = (out / "report" / "index.html").read_text()
    for anchor in ("overview", "suite-network", "suite-harness", "audit", "history", "environment"):
        assert f'id="{anchor}"' in html
    assert "No history yet" in html
    assert "Optimization audit" in html
    assert "harness (within run)" in html  # the BH family named in the rules
    sources = re.findall(r'<img src="([^"]+)"', html)
    written = sorted((out / "report" / "plots").glob("*.png"))
    assert sorted(sources) == sorted(f"plots/{p.name}" for p in written)
    kinds = {p.name.split("_")[0] for p in written}
    assert {"cdf", "percentiles", "ab"} <= kinds
    # no such metric, no history; per-job resource timelines only on request, on their page
    assert not {"accuracy", "trend", "resources"} & kinds
    for p in written:
        assert p.read_bytes().startswith(b"\x89PNG")
        assert b"Software" not in p.read_bytes()[:4096]
    assert "cdf_network_echo_latency_persistent.png" in {p.name for p in written}
    # every suite links its page of full tables, and the page holds every summary row
    pages = sorted(p.name for p in (out / "report" / "pages").glob("*.html"))
    assert pages == ["environment.html", "history.html", "suite-harness.html", "suite-network.html"]
    assert 'href="pages/suite-network.html"' in html
    network = (out / "report" / "pages" / "suite-network.html").read_text()
    summary = pd.read_parquet(out / "summary" / "summary.parquet")
    shown = summary[(summary["suite"] == "network") & ~summary["case"].str.startswith("job")]
    assert network.count(">network/echo_latency v") == len(shown)


def test_summaries_agree_with_the_verdict_table(built):
    out, doc = built
    assert doc == json.loads((out / "report" / "summary.json").read_text())
    verdicts = pd.read_parquet(out / "summary" / "verdicts.parquet")
    for kind, group in verdicts.groupby("kind"):
        assert doc["verdict_counts"][kind] == group["verdict"].value_counts().to_dict()
    targets = {t["name"]: t["verdict"] for t in doc["targets"]}
    assert targets["persistent 64 B p50 under 1 s"] == "met"
    assert targets["UI under 50 ms"] == "not measured"
    assert doc["audit"]["overall"]["verdict"] in ("PASSED", "FAILED")
    assert doc["families"] == ["harness (within run)"]
    assert doc["history"] is None
    summary = pd.read_parquet(out / "summary" / "summary.parquet")
    # verdicts and headline figures only: the full tables stay in Parquet, named here
    assert "summary" not in doc and doc["summary_rows"] == len(summary)
    assert doc["tables"]["summary"] == "summary/summary.parquet"
    assert doc["tables"]["verdicts"] == "summary/verdicts.parquet"
    rtt = [h for h in doc["headline"]["network"] if h["metric"] == "rtt"]
    assert rtt and all(h["median"] > 0 and h["ci"][0] <= h["median"] for h in rtt)
    assert doc["overall"] == doc["audit"]["overall"]
    md = (out / "report" / "summary.md").read_text()
    assert "Overall: " + doc["audit"]["overall"]["verdict"] in md
    assert "| sampler overhead |" in md
    assert "No history yet." in md


def _frame_with_failures() -> pd.DataFrame:
    """Unit-test input (not a result): a case whose candidate failed 3 operations."""
    rec = Recorder("database", "pooling", 1)
    rng = np.random.default_rng(0)
    for case in ("connect", "pooled"):
        for i, v in enumerate(rng.lognormal(np.log(1e-3), 0.1, 20)):
            rec.add(case, {"scenario": "s"}, "latency", "s", False, float(v), sample=i)
    for i in range(3):
        rec.add(
            "pooled",
            {"scenario": "s"},
            "latency",
            "s",
            False,
            None,
            sample=20 + i,
            status="error:OperationalError",
        )
    return rec.frame()


def test_failed_operations_are_counted_everywhere(tmp_path):
    path = tmp_path / "raw" / "database" / "pooling.parquet"
    record.write_measurements(_frame_with_failures(), path, {"seed": 0})
    comparison = {
        **COMPARISONS[0],
        "name": "pool",
        "suite": "database",
        "benchmark": "pooling",
        "metric": "latency",
        "baseline": "connect",
        "candidate": "pooled",
    }
    doc = report.build_report(
        [str(path)],
        summary_path=tmp_path / "s.parquet",
        verdicts_path=tmp_path / "v.parquet",
        html_path=tmp_path / "report" / "index.html",
        plots_dir=tmp_path / "report" / "plots",
        statistics=STATS,
        comparisons=[comparison],
        targets=[
            {
                "name": "pool 50%",
                "comparison": "pool",
                "statistic": "improvement",
                "op": ">=",
                "threshold": 0.5,
            }
        ],
        seed=0,
    )
    assert doc["failed_operations"] == {
        "total": 3,
        "by_status": {"error:OperationalError": 3},
        "by_design": {},
    }
    assert doc["comparisons"][0]["verdict"] == "failed"
    assert doc["comparisons"][0]["n_failed_candidate"] == 3
    assert doc["audit"]["overall"]["verdict"] == "FAILED"
    html = (tmp_path / "report" / "index.html").read_text()
    assert "error:OperationalError: 3" in html
    assert 'class="verdict verdict-failed"' in html
    figures = plots.comparison_boxes(
        _frame_with_failures(),
        pd.DataFrame([{**comparison, "kind": "comparison", "verdict": "failed"}]),
        tmp_path / "boxes",
    )
    assert [f.title for f in figures] == [
        "pool: failed\nfailed operations: baseline 0, candidate 3"
    ]


def test_accuracy_and_compression_figures_only_where_their_metrics_exist(tmp_path):
    """Unit-test input: the generic figures for later suites, on a hand-written frame."""
    rec = Recorder("eval", "tasks", 1)
    for task, acc, chance in (("arc", 0.61, 0.25), ("boolq", 0.7, 0.5)):
        params = {"chance": chance, "n_items": 200, "scenario": task}
        rec.add(task, params, "acc", "fraction", True, acc)
        for i, ratio in enumerate((3.9, 4.0, 4.1)):
            rec.add(task, params, "compression_ratio", "x", True, ratio, sample=i)
    frame = rec.frame()
    acc = plots.accuracy_plots(frame, tmp_path, n_resamples=200)
    assert [f.path.name for f in acc] == ["accuracy_eval_tasks_acc.png"]
    summary = analysis.summarize_measurements(frame, STATS, seed=0)
    comp = plots.compression_plots(summary, tmp_path)
    assert [f.path.name for f in comp] == ["compression_eval_tasks_acc.png"]
    none = _frame_with_failures()
    assert plots.accuracy_plots(none, tmp_path / "n") == []
    assert (
        plots.compression_plots(
            analysis.summarize_measurements(none, STATS, seed=0), tmp_path / "n"
        )
        == []
    )


def _store_run(history: Path, run_id: str, raw_path: str, started: str) -> None:
    frame = record.read_measurements(raw_path)
    frame["started_at"] = pd.Timestamp(started, tz="UTC")  # order the stored runs
    run_dir = history / f"run_id={run_id}"
    record.write_measurements(frame, run_dir / "measurements.parquet", {"run_id": run_id})
    (run_dir / "provenance.json").write_text(json.dumps({"host": "h", "cpu_model": "c"}))


def test_history_is_shown_when_stored(raw, tmp_path):
    """Stored runs hold the fixture's real rows; the history rule's tables are hand-made
    here in the columns forgebench.history writes (run.json, change_points, change_at)."""
    results = tmp_path / "results"
    history = results / "history"
    _store_run(history, "aaaa1111", raw[0], "2026-01-01")
    _store_run(history, "bbbb2222", raw[0], "2026-01-02")
    summary = results / "summary"
    summary.mkdir(parents=True)
    (summary / "run.json").write_text(
        json.dumps(
            {
                "run_id": "bbbb2222",
                "baseline_id": "aaaa1111",
                "method": "pairwise",
                "comparability_rule": "Compared only on the same machine.",
            }
        )
    )
    key = {
        "suite": "network",
        "benchmark": "echo_latency",
        "case": "persistent_64B",
        "metric": "rtt",
    }
    pd.DataFrame(
        [
            {
                **key,
                "verdict": "no significant change",
                "improvement": 0.01,
                "improvement_ci_low": -0.02,
                "improvement_ci_high": 0.03,
                "family": "network (vs baseline aaaa1111)",
                "reason": "same rows",
            }
        ]
    ).to_parquet(summary / "baseline_comparison.parquet")
    pd.DataFrame(
        [
            {
                **key,
                "method": "change-point",
                "change_points": '["bbbb2222"]',
                "change_at": "bbbb2222",
                "verdict": "regression",
                "reason": "step",
            }
        ]
    ).to_parquet(summary / "regressions.parquet")
    doc = build(
        raw,
        results,
        run_info_path=summary / "run.json",
        baseline_comparison_path=summary / "baseline_comparison.parquet",
        regressions_path=summary / "regressions.parquet",
        history_dir=history,
    )
    html = (results / "report" / "index.html").read_text()
    assert "No history yet" not in html
    assert "Stored runs" in html and "aaaa1111" in html and "this run" in html
    assert "Compared only on the same machine." in html  # the history rule's own statement
    assert doc["verdict_counts"]["baseline comparison"] == {"no significant change": 1}
    assert doc["verdict_counts"]["regression detection"] == {"regression": 1}
    assert doc["history"]["runs"] == ["aaaa1111", "bbbb2222"]
    assert doc["history"]["regressions"][0]["change_at"] == "bbbb2222"
    # a trend only where the history verdict names a change: rtt's regression, not the
    # throughput that did not change
    trends = sorted((results / "report" / "plots").glob("trend_*.png"))
    assert [p.name for p in trends] == ["trend_network_echo_latency_rtt.png"]
    assert f'src="plots/{trends[0].name}"' in html
    # the regression is named in the overview, with its estimate
    overview = _section(html, "overview")
    assert "network/echo_latency persistent_64B rtt" in overview and "regression" in overview
    assert doc["attention"] == [
        {
            "kind": "history",
            "name": "network/echo_latency persistent_64B rtt",
            "verdict": "regression",
            "suite": "network",
        }
    ]
    again = tmp_path / "again"
    build(
        raw,
        again,
        run_info_path=summary / "run.json",
        baseline_comparison_path=summary / "baseline_comparison.parquet",
        regressions_path=summary / "regressions.parquet",
        history_dir=history,
    )
    for name in TABLES:
        assert (again / name).read_bytes() == (results / name).read_bytes(), name
    changes = report.detected_changes(pd.read_parquet(summary / "regressions.parquet"))
    assert changes.to_dict("records") == [{**key, "run_id": "bbbb2222"}]
    # on request, a trend for every metric
    every = tmp_path / "every"
    build(
        raw,
        every,
        run_info_path=summary / "run.json",
        regressions_path=summary / "regressions.parquet",
        history_dir=history,
        all_trends=True,
    )
    assert sorted(p.name for p in (every / "report" / "plots").glob("trend_*.png")) == [
        "trend_network_echo_latency_rtt.png",
        "trend_network_echo_latency_throughput.png",
    ]


def test_detected_changes_accepts_a_flag_and_a_run_column():
    table = pd.DataFrame(
        {
            "metric": ["s/b/c/m", "s/b/c/n"],
            "change_detected": [True, False],
            "change_run": ["r2", "r3"],
        }
    )
    assert report.detected_changes(table).to_dict("records") == [
        {"suite": "", "benchmark": "", "case": "", "metric": "s/b/c/m", "run_id": "r2"}
    ]
    assert report.detected_changes(None).empty
    assert report.detected_changes(pd.DataFrame({"verdict": ["x"]})).empty


def test_stale_figures_are_removed_and_other_files_kept(tmp_path):
    (tmp_path / "cdf_old_gone.png").write_bytes(b"x")
    (tmp_path / "notes.png").write_bytes(b"x")
    plots.remove_stale(tmp_path, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.png"]


def test_run_medians_give_a_distribution_free_interval():
    rows = Recorder("s", "b", 1)
    for i, v in enumerate(np.linspace(1.0, 2.0, 41)):
        rows.add("c", {}, "latency", "s", False, float(v), sample=i)
    medians = plots.run_medians([("r1", rows.frame())])
    row = medians.iloc[0]
    assert row["median"] == pytest.approx(1.5)
    assert row["ci_low"] < 1.5 < row["ci_high"]
    few = Recorder("s", "b", 1)
    for i in range(3):
        few.add("c", {}, "latency", "s", False, 1.0 + i, sample=i)
    assert np.isnan(plots.run_medians([("r1", few.frame())])["ci_low"].iloc[0])


def test_run_medians_interval_is_scipys_quantile_test_interval():
    """Must show: the interval from ranks cached per sample size is exactly scipy's
    quantile_test interval of each group (NaN where scipy's is), at many sizes and levels."""
    rng = np.random.default_rng(12)
    rows = Recorder("s", "b", 1)
    sizes = [*range(1, 40), 97, 500, 2001]
    for n in sizes:
        for i, v in enumerate(rng.lognormal(0.0, 0.5, n)):
            rows.add(f"n{n:05d}", {}, "latency", "s", False, float(v), sample=i)
    frame = rows.frame()
    for confidence in (0.9, 0.95, 0.99):
        medians = plots.run_medians([("r1", frame)], confidence=confidence)
        assert len(medians) == len(sizes)
        for row in medians.to_dict("records"):
            values = np.sort(frame.loc[frame["case"] == row["case"], "value"].to_numpy())
            ci = sps.quantile_test(values, q=row["median"], p=0.5).confidence_interval(confidence)
            assert row["ci_low"] == ci.low or (np.isnan(row["ci_low"]) and np.isnan(ci.low))
            assert row["ci_high"] == ci.high or (np.isnan(row["ci_high"]) and np.isnan(ci.high))


def test_snakemake_report_categories_mirror_the_figure_kinds():
    text = (REPO / "rules" / "report.smk").read_text()
    for kind, (category, _) in plots.KINDS.items():
        assert f'"{kind}": "{category}"' in text
    name = plots._name("cdf", "my_suite", "bench", "x y")
    assert name == "cdf_my-suite_bench_x_y.png"


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (2.5e-5, "s", "25 µs"),
        (0.0123, "s", "12.3 ms"),
        (3 * 2**20, "bytes", "3 MiB"),
        (0.613, "fraction", "61.3%"),
        (51420.4, "requests/s", "51420 requests/s"),
        (float("nan"), "s", "—"),
        (None, "s", "—"),
        (1.5, "", "1.5"),
    ],
)
def test_format_value(value, unit, text):
    assert report.format_value(value, unit) == text


def test_overall_line_names_the_unmeasured_targets():
    overall = {"verdict": "PASSED", "met": 4, "measured": 5, "share_met": 0.8, "pass_share": 0.8}
    line = report.overall_line(overall, ["UI under 50 ms"])
    assert line.startswith("Overall: PASSED. 4 of 5 measured targets met (80%)")
    assert line.endswith("Not measured, left out of the share: UI under 50 ms.")
    assert report.format_change(-0.0123) == "-1.2%"
    assert report.format_interval(0.01, None) == "—"


def test_a_report_without_comparisons_or_targets(raw, tmp_path):
    doc = report.build_report(
        raw[:1],
        summary_path=tmp_path / "summary.parquet",
        verdicts_path=tmp_path / "verdicts.parquet",
        html_path=tmp_path / "report" / "index.html",
        plots_dir=tmp_path / "report" / "plots",
        statistics=STATS,
        comparisons=[],
        targets=[],
        seed=7,
    )
    assert doc["comparisons"] == [] and doc["targets"] == []
    assert doc["audit"]["overall"]["verdict"] == "not measured"
    html = (tmp_path / "report" / "index.html").read_text()
    assert "No comparisons or targets configured." in html
    assert "No targets are set on comparisons." in html


# ----------------------------------------------------------------------------- new suites
# Unit-test input (not results): hand-made rows in the producing modules' names, one raw
# table per benchmark, to check each suite's own section shows the right values.


def _new_suite_frames() -> list[pd.DataFrame]:
    frames = []
    ev = Recorder("eval", "fb_arc_easy", 1)
    for model, acc, se in (("m1", 0.30, 0.04), ("m2", 0.60, 0.02)):
        p = {"task": "fb_arc_easy", "n_docs": 200}
        ev.add(model, p, "acc_norm", "fraction", True, acc)
        ev.add(model, p, "acc_norm_stderr", "fraction", False, se)
        ev.add(model, p, "acc", "fraction", True, acc - 0.05)
        ev.add(model, p, "chance_acc", "fraction", True, 0.25)
        ev.add(model, p, "n_docs", "docs", True, 200.0)
    frames.append(ev.frame())
    gsm = Recorder("eval", "fb_gsm8k", 1)
    gsm.add("m1", {}, "exact_match.strict_match", "fraction", True, 0.1)
    gsm.add("m1", {}, "n_docs", "docs", True, 50.0)
    gsm.add(
        "m2", {"reason": "no data offline"}, "evaluation", "run", True, None, status="unavailable"
    )
    frames.append(gsm.frame())
    sc = Recorder("eval", "suite_general", 1)
    head = {"suite": "general", "complete": False, "missing": ["mmlu", "drop"]}
    for metric, value in (("score", 0.4), ("score_ci_low", 0.35), ("score_ci_high", 0.45)):
        sc.add("m1", head, metric, "fraction", True, value)
    sc.add("m1", head, "chance", "fraction", True, 0.3)
    frames.append(sc.frame())
    pairs = Recorder("eval_pairs", "fb_arc_easy", 1)
    for metric, value in (
        *(("acc_norm_delta", 0.3), ("acc_norm_delta_ci_low", 0.2)),
        *(("acc_norm_delta_ci_high", 0.4), ("acc_norm_delta_p", 0.001)),
        *(("acc_norm_flip_rate", 0.35), ("acc_norm_gained", 0.325), ("acc_norm_lost", 0.025)),
        *(("acc_norm_mcnemar_p", 0.0001), ("acc_norm_items", 200.0)),
    ):
        pairs.add("m2 vs m1", {"task": "fb_arc_easy"}, metric, "fraction", True, value)
    frames.append(pairs.frame())
    mb = Recorder("models", "build", 1)
    for metric, value in (
        ("heldout_nll_before", 8.3),
        ("heldout_nll_after", 5.0),
        ("uniform_nll", float(np.log(4096))),
        ("train_tokens_per_s", 1234.0),
    ):
        mb.add("tiny", {"source": "build"}, metric, "nats", False, value)
    frames.append(mb.frame())
    cw = Recorder("compression", "weights", 1)
    bitnet = {"method": "bitnet", "inference": "dense", "post_training": True}
    for metric, unit, value in (
        ("bits_per_weight", "bits/weight", 1.6),
        ("ratio_vs_fp32_quantised", "ratio", 20.0),
        ("ratio_vs_fp32_whole", "ratio", 3.1),
        ("relative_error", "ratio", 0.5),
        ("perplexity_delta", "perplexity", 12.3),
    ):
        cw.add("bitnet", bitnet, metric, unit, False, value)
    for r, rate in enumerate((10.0, 11.0, 12.0, 11.5, 10.5)):
        cw.add("bitnet", bitnet, "tokens_per_s", "tokens/s", True, rate, repetition=r)
    cw.add("seedlm", {"method": "seedlm"}, "bits_per_weight", "bits/weight", False, None,
           status="error:RuntimeError")  # fmt: skip
    frames.append(cw.frame())
    sv = Recorder("service", "responsiveness", 1)
    p = {"endpoint": "health", "users": 1, "mode": "closed"}
    sv.add("health_1u", p, "latency", "s", False, 0.5, warmup=True)
    for i, v in enumerate((0.010, 0.020, 0.030)):
        sv.add("health_1u", p, "latency", "s", False, v, sample=i)
    share = {**p, "requests": 3, "failed": 0}
    for metric, value in (("error_share", 0.0), ("error_share_ci_low", 0.0),
                          ("error_share_ci_high", 0.7)):  # fmt: skip
        sv.add("health_1u", share, metric, "fraction", False, value)
    sv.add("health_1u", p, "throughput", "requests/s", True, 100.0)
    sv.add("health_1u", {**p, "grade": "EXCELLENT"}, "grade", "grade", True, 3.0)
    frames.append(sv.frame())
    ls = Recorder("service", "load_scenarios", 1)
    end = {"scenario": "endurance", "sla_verdict": "inconclusive"}
    for metric, value in (("memory_growth", 0.5), ("memory_growth_ci_low", -0.2),
                          ("memory_growth_ci_high", 1.2)):  # fmt: skip
        ls.add("endurance", end, metric, "MB/hour", False, value)
    frames.append(ls.frame())
    cr = Recorder("knowledge", "creativity", 1)
    for i, v in enumerate((0.0, 1.0, 0.0, 0.0, 0.0)):
        cr.add("embedding", {}, "rat_accuracy@1", "ratio", True, v, sample=i)
    for metric, value in (("rat_accuracy@1_mean", 0.2), ("rat_accuracy@1_ci_low", 0.0),
                          ("rat_accuracy@1_ci_high", 0.6)):  # fmt: skip
        cr.add("embedding", {}, metric, "ratio", True, value)
    cr.add("vocabulary", {}, "vocabulary_size", "count", True, 5000.0)
    frames.append(cr.frame())
    rp = Recorder("knowledge", "repair", 1)
    for n, records, base in ((1000, 5000, 2.0e5), (10000, 50000, 1.5e5)):
        params = {"patients": n, "records": records}
        rp.add(f"patients_{n}", params, "detection_throughput", "records/s", True, base * 3,
               warmup=True)  # fmt: skip
        for r, f in enumerate((0.98, 1.0, 1.02), start=1):
            rp.add(f"patients_{n}", params, "detection_throughput", "records/s", True,
                   base * f, repetition=r)  # fmt: skip
        rp.add(f"all@{n}", params, "detection_recall", "ratio", True, 0.9)
        rp.add(f"duplicate@{n}", params, "detection_recall", "ratio", True, 0.8)
    frames.append(rp.frame())
    # as forgebench.evomerge.stages writes them: gen<g>:<name>, seed:<name>, evolution
    evo = Recorder("evomerge", "evolution", 1)
    for case, gen, fit, ci, parents in (
        ("seed:s1", None, 0.28, (0.24, 0.32), []),
        ("gen0:evo-g0-i0", 0, 0.30, (0.25, 0.35), []),
        ("gen0:evo-g0-i1", 0, 0.32, (0.27, 0.37), []),
        ("gen1:evo-g1-i0", 1, 0.40, (0.36, 0.44), ["evo-g0-i0", "evo-g0-i1"]),
    ):
        params = {"name": case.split(":")[1]}
        if gen is not None:
            params |= {"generation": gen, "origin": "crossover" if parents else "random"}
        if case != "gen1:evo-g1-i0":  # its parents come from lineage.json alone
            params["parents"] = parents
        for suffix, value in (("", fit), ("_ci_low", ci[0]), ("_ci_high", ci[1])):
            evo.add(case, params, f"fitness{suffix}", "fraction", True, value)
    evo.add("gen1:evo-g1-i1", {"generation": 1, "name": "evo-g1-i1"}, "fitness", "fraction",
            True, None, status="error:RuntimeError")  # fmt: skip
    evo.add("evolution", {"best": "evo-g1-i0", "best_parent": "evo-g0-i1"}, "wall_time", "s",
            False, 321.0)  # fmt: skip
    frames.append(evo.frame())
    return frames


EVO_TARGET = {
    "name": "evomerge wall time under 10 min",
    "suite": "evomerge",
    "benchmark": "evolution",
    "case": "run",
    "metric": "wall_time",
    "statistic": "p50",
    "op": "<",
    "threshold": 600.0,
}


# A comparison beside the target: analysis.audit_table needs a target on one.
REPAIR_COMPARISON = {
    "name": "repair throughput at 10x the size",
    "suite": "knowledge",
    "benchmark": "repair",
    "metric": "detection_throughput",
    "baseline": "patients_1000",
    "candidate": "patients_10000",
}
REPAIR_TARGET = {
    "name": "repair throughput holds",
    "comparison": REPAIR_COMPARISON["name"],
    "statistic": "improvement",
    "op": ">",
    "threshold": -0.5,
}


def _build_new_suites(results: Path) -> tuple[dict, str, str]:
    paths = []
    for frame in _new_suite_frames():
        suite, bench = frame["suite"].iloc[0], frame["benchmark"].iloc[0]
        path = results / "raw" / suite / f"{bench}.parquet"
        record.write_measurements(frame, path, {"seed": 0})
        paths.append(str(path))
    lineage = results / "evomerge" / "lineage.json"
    lineage.parent.mkdir(parents=True, exist_ok=True)
    lineage.write_text(
        json.dumps(
            {
                "evo-g1-i0": {
                    "name": "evo-g1-i0",
                    "parents": ["evo-g0-i0", "evo-g0-i1"],
                    "describe": "slerp(seeds 0->1, t=0.50)",
                }
            }
        )
    )
    doc = report.build_report(
        paths,
        summary_path=results / "summary" / "summary.parquet",
        verdicts_path=results / "summary" / "verdicts.parquet",
        html_path=results / "report" / "index.html",
        plots_dir=results / "report" / "plots",
        statistics=STATS,
        comparisons=[REPAIR_COMPARISON],
        targets=[EVO_TARGET, REPAIR_TARGET],
        seed=3,
    )
    html = (results / "report" / "index.html").read_text()
    md = (results / "report" / "summary.md").read_text()
    return doc, html, md


@pytest.fixture(scope="module")
def new_suites(tmp_path_factory) -> tuple[Path, dict, str, str]:
    results = tmp_path_factory.mktemp("new") / "results"
    return (results, *_build_new_suites(results))


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def test_evaluation_section_marks_intervals_that_do_not_clear_chance(new_suites):
    _, _, html, md = new_suites
    ev = _section(html, "evaluation")
    # m2: 60.0% ± 1.96 × 2% = [56.1%, 63.9%], clear of chance 25%; m1: [22.2%, 37.8%] is not.
    assert "60.0% [52.9%, 66.8%]" in ev and "30.0% [23.7%, 36.9%]" in ev  # Clopper-Pearson
    row = ev[ev.index("<td>fb_arc_easy</td>") :].split("</tr>")[0]
    assert row.count("does not clear chance") == 1 and "acc_norm" in row and "25.0%" in row
    gsm = ev[ev.index("<td>fb_gsm8k</td>") :].split("</tr>")[0]
    assert "exact binomial" in gsm and "unavailable: 1" in gsm and "no data offline" in gsm
    # suite score with interval, incomplete, missing listed; chance 30% cleared by 35%
    assert "40.0% [35.0%, 45.0%]" in ev and "incomplete" in ev and "mmlu, drop" in ev
    pair = ev[ev.index("<td>m2 vs m1</td>") :].split("</tr>")[0]
    for text in ("+30.0 pp", "[+20.0 pp, +40.0 pp]", "35.0%", "32.5%", "2.5%", "0.0001", "200"):
        assert text in pair, text
    assert "## Evaluation" in md and "⚠ does not clear chance" in md


def test_model_compression_and_service_sections(new_suites):
    _, _, html, md = new_suites
    mb = _section(html, "model-build")
    assert "8.318" in mb and "<td>yes</td>" in mb and "4096" in mb  # ln|V|, |V|
    comp = _section(html, "compression")
    bitnet = comp[comp.index("<td>bitnet</td>") :].split("</tr>")[0]
    for text in ("1.6", "20×", "3.1×", "0.5", "12.3", "11 tokens/s", "post-training"):
        assert text in bitnet, text
    # three repetitions cannot bound a median at 95% (order statistics need six): no interval
    assert "11 tokens/s [" not in bitnet
    assert "no packed-weight kernel" in bitnet
    assert "error:RuntimeError: 1" in comp[comp.index("<td>seedlm</td>") :]
    sv = _section(html, "service")
    grade = sv[sv.index("responsiveness: health_1u") :].split("</tr>")[0]
    # mean of the three measured latencies (the warm-up's 0.5 s left out)
    assert "EXCELLENT" in grade and "20 ms" in grade and "0.0% [0.0%, 70.0%]" in grade
    assert "memory_growth" in sv and "inconclusive" in sv
    assert (
        "| responsiveness: health_1u | endpoint health, users 1 (repetition 0) | EXCELLENT |" in md
    )


def test_knowledge_section_and_scaling_figure(new_suites):
    results, _, html, _ = new_suites
    kn = _section(html, "knowledge")
    assert "rat_accuracy@1 (mean)" in kn and "20.0%" in kn and "[0.0%, 60.0%]" in kn
    acc = kn[kn.index("rat_accuracy@1 (mean)") :].split("</tr>")[0]
    assert acc.endswith('<td class="num">5</td>')  # n: its five items, not its one row
    assert "all@1000" in kn and "duplicate@1000" not in kn and "vocabulary_size" not in kn
    # repetitions' median, warm-up excluded: 2.0e5 records/s at 1,000 patients
    thr = kn[kn.index("<td>patients_1000</td>") :].split("</tr>")[0]
    # three repetitions: no distribution-free 95% interval of their median exists
    assert "200000 records/s" in thr and "bootstrap" not in thr and "order statistics" not in thr
    assert 'src="plots/scaling_knowledge_repair.png"' in kn
    assert (results / "report" / "plots" / "scaling_knowledge_repair.png").is_file()
    assert 'id="suite-knowledge"' not in html  # one section per suite: its own
    assert html.count("scaling_knowledge_repair.png") == 1  # shown once


def test_evomerge_section_uses_rows_and_lineage(new_suites):
    _, _, html, md = new_suites
    evo = _section(html, "evomerge")
    assert "4 individuals over 2 generations" in evo and "wall time 321 s" in evo
    assert "Best: evo-g1-i0 (generation 1), fitness 40.0% [36.0%, 44.0%]" in evo
    assert "best parent evo-g0-i1: 32.0% [27.0%, 37.0%]; difference +8.0 pp (intervals" in evo
    assert "error:RuntimeError: 1" in evo and "slerp(seeds 0-&gt;1, t=0.50)" in evo
    assert '<td class="num">seed</td><td>s1</td>' in evo and "<code>nan</code>" not in evo
    assert EVO_TARGET["name"] in evo  # the wall-time verdict from the targets
    assert 'src="plots/fitness_evomerge_evolution.png"' in evo
    assert "## EvoMerge" in md and "best parent evo-g0-i1" in md
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(set(sources))


def test_new_suite_sections_rebuild_byte_identically(new_suites, tmp_path):
    results, *_ = new_suites
    again = tmp_path / "results"
    _build_new_suites(again)
    for name in TABLES:
        assert (again / name).read_bytes() == (results / name).read_bytes(), name


def test_sections_are_absent_without_their_suites(built):
    out, _ = built
    html = (out / "report" / "index.html").read_text()
    for anchor in ("evaluation", "model-build", "compression", "service", "knowledge", "evomerge"):
        assert f'<section id="{anchor}">' not in html
    assert report.evomerge_individuals(report.Cells(pd.DataFrame())).empty
    assert plots.scaling_plots(pd.DataFrame(), out / "none") == []


def test_evomerge_best_uses_the_recorded_paired_comparison():
    rec = Recorder("evomerge", "evolution", 1)
    for case, fit in (("gen0:a", 0.3), ("gen1:b", 0.5)):
        rec.add(case, {"name": case[5:], "generation": int(case[3])}, "fitness", "fraction",
                True, fit)  # fmt: skip
    rec.add("evolution", {"best": "b", "best_parent": "a"}, "best_fitness", "fraction", True, 0.5)
    for metric, value in (("score_delta", 0.2), ("score_delta_ci_low", 0.1),
                          ("score_delta_ci_high", 0.3), ("score_delta_p", 0.004),
                          ("score_mcnemar_p", 0.01)):  # fmt: skip
        rec.add("best_vs_parent", {}, metric, "fraction", True, value)
    cells = report.Cells(analysis.summarize_measurements(rec.frame(), STATS, seed=0))
    section = report.evomerge_section(cells, report.evomerge_individuals(cells))
    assert section["best"].endswith(
        "its best parent a: 30.0%; paired on the same documents: difference +20.0 pp "
        "[+10.0 pp, +30.0 pp], p 0.004, McNemar p 0.01."
    )
