"""The report's parts, one at a time: which warnings apply, the overview's groups, the
calibration section, the size of summary.md, and figures that say what they show.

Inputs: the calibration section is built from real rows of the calibration benchmark
(a small grid, seconds of work); the other tests use hand-written rows in the producing
modules' names, which are unit-test inputs, never results.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forgebench import analysis, plots, record, report, stats
from forgebench.harness import statistics_calibration as sc
from forgebench.record import Recorder
from forgebench.report import overview, suites
from forgebench.report.history import History
from forgebench.report.summary import MARKDOWN_LIMIT, fit_markdown

STATS = {"confidence": 0.95, "bootstrap_resamples": 200, "practical_threshold": 0.05, "alpha": 0.05}


def _summary_row(**over) -> dict:
    row = {
        "suite": "s",
        "benchmark": "b",
        "case": "c",
        "metric": "m",
        "unit": "s",
        "n_ok": 1,
        "n_failed": 0,
        "warnings": json.dumps(stats.instability_warnings([1.0], unit="s")),
    }
    return row | over


# ----------------------------------------------------------------------------- warnings


def test_a_single_value_or_an_exact_unit_carries_no_sample_warning():
    single = _summary_row()
    assert json.loads(single["warnings"])[0].startswith("Only 1 sample(s)")
    assert suites.applicable_warnings(single) == []
    sizes = [1000.0, 1200.0, 5000.0, 900.0, 1100.0]
    exact = _summary_row(
        unit="bytes",
        n_ok=5,
        warnings=json.dumps(stats.instability_warnings(sizes, unit="bytes")),
    )
    assert json.loads(exact["warnings"]) and suites.applicable_warnings(exact) == []
    timings = _summary_row(
        n_ok=5, warnings=json.dumps(stats.instability_warnings([1e-3, 2e-3, 1e-3, 9e-3, 1e-3]))
    )
    kinds = {kind for kind, _ in suites.applicable_warnings(timings)}
    assert {"few samples", "high spread"} <= kinds


def test_no_successful_value_is_a_warning_only_when_something_failed():
    nothing = json.dumps(stats.instability_warnings([]))
    failed = _summary_row(n_ok=0, n_failed=2, warnings=nothing)
    planned = _summary_row(n_ok=0, n_failed=0, warnings=nothing)
    assert [k for k, _ in suites.applicable_warnings(failed)] == ["no successful value"]
    assert suites.applicable_warnings(planned) == []


def test_exact_units_include_sizes_and_counts_but_not_times_or_rates():
    for unit in ("bytes", "count", "fraction", "tokens", "bits/weight", "ratio"):
        assert suites.exact_unit(unit), unit
    for unit in ("s", "ms", "tokens/s", "requests/s", "MB/hour", "percent"):
        assert not suites.exact_unit(unit), unit


def test_warnings_are_one_line_per_kind_with_a_count():
    rec = Recorder("s", "b", 1)
    rng = np.random.default_rng(3)
    for case in ("a", "b", "c"):
        for i, v in enumerate(rng.lognormal(np.log(1e-3), 0.5, 8)):
            rec.add(case, {}, "latency", "s", False, float(v), sample=i)
        rec.add(case, {}, "size", "bytes", True, 1000.0)
        rec.add(case, {}, "wall_time", "s", False, 2.0)
    summary = analysis.summarize_measurements(rec.frame(), STATS, seed=0)
    lines = suites.warning_lines(suites.summary_rows(summary))
    by_kind = {line["kind"]: line["count"] for line in lines}
    assert by_kind["few samples"] == 3  # the three latencies; not the sizes, not one timing
    assert len(lines) == len(by_kind)
    text = report.format_summary(summary)
    assert not [line for line in text if "Only 1 sample" in line]


# ----------------------------------------------------------------------------- overview


def _target(name: str, verdict: str, **over) -> dict:
    return {
        "name": name,
        "verdict": verdict,
        "estimate": "1 ms",
        "ci": "[0.9 ms, 1.1 ms]",
        "condition": "p50 < 1 ms",
        "evidence": "",
        "suite": "s",
    } | over


def test_overview_groups_verdicts_and_puts_what_is_not_met_first():
    targets = [
        _target("fine one", "met"),
        _target("unsure", "inconclusive"),
        _target("declared", "not measurable at this budget", evidence="needs 300 runs"),
        _target("absent", "not measured"),
        *(_target(f"missed {i:02d}", "not met") for i in range(14)),
    ]
    comparisons = [
        {
            "name": "pool",
            "verdict": "failed",
            "improvement": "—",
            "ci": "—",
            "reason": "3 of 20 failed",
            "baseline": "a: 1 ms",
            "candidate": "b: 1 ms",
            "suite": "s",
        }
    ]
    key = {"suite": "s", "benchmark": "b", "case": "c"}
    history = History(
        regressions=pd.DataFrame(
            [
                {**key, "metric": "m", "verdict": "regression"},
                {**key, "metric": "m_ci_low", "verdict": "failed"},
                {**key, "case": "d", "metric": "m", "verdict": "no change"},
            ]
        )
    )
    view = overview.overview(comparisons, targets, history)
    attention = view["attention"] + view["attention_more"]
    assert view["n_attention"] == 16 and len(view["attention"]) == overview.ATTENTION_ROWS
    assert [i["verdict"] for i in attention[:14]] == ["not met"] * 14
    assert attention[14]["name"] == "pool"  # this run's verdicts before the history's
    assert attention[15]["name"] == "s/b c m"  # an interval row's verdict is not listed
    groups = {g["name"]: g for g in view["groups"]}
    assert list(groups) == ["inconclusive", "not measurable", "not measured", "fine"]
    assert groups["not measurable"]["entries"][0]["reason"] == "needs 300 runs"
    assert groups["fine"]["n_history"] == 1  # history verdicts outside attention: counted


def test_a_verdict_made_under_load_is_marked_noisy():
    """The workflow flags a comparison made while other processes used the machine; the
    overview says so beside the verdict (forgebench gate shows it without failing on it)."""
    row = {
        "name": "pool",
        "suite": "s",
        "benchmark": "b",
        "metric": "latency",
        "baseline": "a",
        "candidate": "b",
        "median_baseline": 1e-3,
        "median_candidate": 2e-3,
        "improvement": -1.0,
        "improvement_ci": (-1.2, -0.8),
        "n_baseline": 20,
        "n_candidate": 20,
        "n_failed_baseline": 0,
        "n_failed_candidate": 0,
        "verdict": "regression",
        "noisy": True,
        "foreign_cpu_percent": 85.0,
    }
    formatted = overview.comparison_row(row, "s")
    assert formatted["noisy"] == "made while other processes used 85% CPU"
    assert overview.comparison_row({**row, "noisy": False}, "s")["noisy"] == ""
    view = overview.overview([formatted], [], History())
    assert view["attention"][0]["noisy"] == formatted["noisy"]


# ----------------------------------------------------------------------------- calibration

CALIBRATION = {
    "comparisons": {
        "trials": 40,
        "sizes": [3, 10],
        "effects": [0.0, 0.2],
        "distributions": ["iid_lognormal"],
        "repetitions": [3],
    },
    "coverage": {
        "trials": 40,
        "sizes": [5, 50],
        "quantiles": [0.5],
        "proportions": [0.1],
        "ratio_sizes": [10],
        "ratio_repetitions": [3],
    },
    "histories": {"enabled": False},
}


@pytest.fixture(scope="module")
def calibration_report(tmp_path_factory) -> tuple[Path, dict, str, str]:
    results = tmp_path_factory.mktemp("calibration") / "results"
    path = results / "raw" / "harness" / "statistics_calibration.parquet"
    record.write_measurements(sc.run(CALIBRATION, seed=5), path, {"seed": 5})
    targets = [
        {
            "name": "A/A false calls at most 10% (n = 10)",
            "suite": "harness",
            "benchmark": "statistics_calibration",
            "case": "compare/iid_lognormal/effect=0.00/n=10",
            "metric": "false_call_rate",
            "statistic": "value",
            "op": "<=",
            "threshold": 0.10,
        },
        {
            "name": "20% detected always (n = 3)",
            "suite": "harness",
            "benchmark": "statistics_calibration",
            "case": "compare/iid_lognormal/effect=0.20/n=3",
            "metric": "detection_rate",
            "statistic": "value",
            "op": ">=",
            "threshold": 0.99,
        },
    ]
    doc = report.build_report(
        [str(path)],
        summary_path=results / "summary" / "summary.parquet",
        verdicts_path=results / "summary" / "verdicts.parquet",
        html_path=results / "report" / "index.html",
        plots_dir=results / "report" / "plots",
        statistics=STATS,
        comparisons=[],
        targets=targets,
        seed=5,
    )
    html = (results / "report" / "index.html").read_text()
    md = (results / "report" / "summary.md").read_text()
    return results, doc, html, md


def _section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start : html.index("</section>", start)]


def test_calibration_section_shows_rates_with_intervals_and_targets(calibration_report):
    _, doc, html, md = calibration_report
    verdicts = {t["name"]: t["verdict"] for t in doc["targets"]}
    assert verdicts["20% detected always (n = 3)"] == "not met"  # 3 a side decides nothing
    cal = _section(html, "calibration")
    for text in (
        "Comparisons: false calls and detection",
        "+0%: false calls",
        "+20%: detected",
        "iid_lognormal, 10 per side",
        "repetitions, 3 repetitions",
        "Coverage of the intervals",
        "n = 50",
        "Nominal level 95.0%",
        "A/A false calls at most 10% (n = 10)",
    ):
        assert text in cal, text
    # every rate with its Clopper-Pearson interval, the targeted cell shaded by its verdict
    assert re.search(r'class="num cell-not-met"[^>]*>0\.0% \[0\.0%, 8\.8%\]</td>', cal)
    assert "20% detected always (n = 3)" in _section(html, "overview")
    assert 'id="suite-harness"' not in html  # the calibration section shows the whole suite
    assert "## Calibration" in md and "+20%: detected" in md


def test_calibration_section_falls_back_to_cases_by_metrics():
    rec = Recorder("harness", "statistics_calibration", 1)
    for case, value in (("custom/a", 0.1), ("custom/b", 0.2)):
        rec.add(case, {"part": "custom"}, "rate", "fraction", False, value)
        rec.add(case, {"part": "custom"}, "rate_ci_low", "fraction", False, value - 0.05)
        rec.add(case, {"part": "custom"}, "rate_ci_high", "fraction", False, value + 0.05)
    cells = report.Cells(analysis.summarize_measurements(rec.frame(), STATS, seed=0))
    section = report.calibration_section(cells, [], [])
    (part,) = section["parts"]
    assert part["kind"] == "table" and part["columns"] == ["rate"]
    assert [r["label"] for r in part["rows"]] == ["custom/a", "custom/b"]
    assert part["rows"][0]["cells"][0]["text"] == "10.0% [5.0%, 15.0%]"


# ----------------------------------------------------------------------------- summary.md


def test_markdown_is_cut_at_whole_sections_and_says_so():
    short = "# t\n\n## A\n\nx\n"
    assert fit_markdown(short) == short
    body = "".join(f"## Section {i}\n\n" + "| a | b |\n" * 400 for i in range(20))
    text = "# title\n\n**Overall: FAILED.**\n\n" + body
    cut = fit_markdown(text)
    assert len(text) > MARKDOWN_LIMIT >= len(cut)
    assert cut.startswith("# title\n\n**Overall: FAILED.**\n\n## Section 0\n")
    assert "_Truncated to stay under 60,000 characters" in cut
    assert "“Section 19”" in cut and "“Section 0”" not in cut.split("_Truncated")[1]


# ----------------------------------------------------------------------------- figures


def test_accuracy_plots_draw_clopper_pearson_from_n_docs_and_chance_from_chance_acc(tmp_path):
    """Rows as forgebench.evaluation writes them: the accuracy, n_docs and chance_acc are
    rows of the case; params carry neither n_items nor chance."""
    rec = Recorder("knowledge", "quiz", 1)
    rec.add("m1", {"task": "quiz"}, "acc", "fraction", True, 0.6)
    rec.add("m1", {"task": "quiz"}, "n_docs", "docs", True, 50.0)
    rec.add("m1", {"task": "quiz"}, "chance_acc", "fraction", True, 0.25)
    jobs: list[plots.FigureJob] = []
    (figure,) = plots.accuracy_plots(rec.frame(), tmp_path, jobs=jobs)
    (point, failed, chance) = jobs[0].data["rows"][0]
    low, high = stats.proportion_ci(30, 50, 0.95)
    assert point[0] == pytest.approx(0.6) and chance == 0.25 and failed == 0
    assert point[1] == [[pytest.approx(0.6 - low)], [pytest.approx(high - 0.6)]]
    assert "Clopper-Pearson" in jobs[0].data["xlabel"]
    plots.draw(jobs)
    assert figure.path.is_file()


def test_percentile_bars_name_each_load_step_by_its_rate(tmp_path):
    rec = Recorder("service", "load_scenarios", 1)
    rng = np.random.default_rng(1)
    for step, rate in enumerate((50.0, 100.0, 200.0, 400.0)):
        params = {"scenario": "stress", "rate": rate, "step": step}
        for i, v in enumerate(rng.lognormal(np.log(2e-3 * (step + 1)), 0.2, 30)):
            rec.add("stress", params, "latency", "s", False, float(v), sample=i)
    summary = analysis.summarize_measurements(rec.frame(), STATS, seed=0)
    jobs: list[plots.FigureJob] = []
    plots.percentile_bars(summary, tmp_path, jobs=jobs)
    (job,) = jobs
    assert job.data["labels"] == [f"stress, {r:g}/s (n=30)" for r in (50, 100, 200, 400)]
    assert job.data["unit"] == "ms"  # scaled to the values, not µs up to 10^6


def test_no_figure_is_planned_without_data(tmp_path):
    """A/B boxes need successful values on both sides; censored or failed-only sides
    give no figure, and no planned figure of a real report has nothing to plot."""
    rec = Recorder("training", "grok", 1)
    for case in ("baseline", "fast"):
        for r in range(3):
            rec.add(case, {}, "steps", "steps", False, None, repetition=r, status="censored")
    frame = rec.frame()
    comparison = pd.DataFrame(
        [
            {
                "kind": "comparison",
                "name": "grok",
                "suite": "training",
                "benchmark": "grok",
                "metric": "steps",
                "baseline": "baseline",
                "candidate": "fast",
                "verdict": "inconclusive",
            }
        ]
    )
    assert plots.comparison_boxes(frame, comparison, tmp_path) == []
    assert plots.accuracy_plots(frame, tmp_path) == []
    individuals = pd.DataFrame(
        [
            {
                "suite": "evomerge",
                "benchmark": "evolution",
                "generation": 0,
                "name": "a",
                "fitness": math.nan,
                "ci_low": math.nan,
                "ci_high": math.nan,
            }
        ]
    )
    assert plots.fitness_plots(individuals, tmp_path) == []
    assert not list(tmp_path.glob("*.png"))


def test_cdf_ticks_are_plain_numbers_in_a_unit_that_fits(tmp_path):
    rec = Recorder("network", "echo", 1)
    rng = np.random.default_rng(2)
    for i, v in enumerate(rng.lognormal(np.log(250e-6), 0.6, 400)):
        rec.add("connect_64B", {"scenario": "connect"}, "rtt", "s", False, float(v), sample=i)
    jobs: list[plots.FigureJob] = []
    plots.latency_cdfs(rec.frame(), tmp_path, jobs=jobs)
    (job,) = jobs
    assert job.data["unit"] == "µs" and job.n_points > 0
    fig = job.draw(**job.data)
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_visible() and t.get_text()]
    assert labels and all(re.fullmatch(r"[0-9.]+", t) for t in labels), labels
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert minor == []  # unlabelled minor ticks: labels cannot overlap
    plots.plt.close(fig)
