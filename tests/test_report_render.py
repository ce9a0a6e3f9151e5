"""The report renders in a real browser: headless Chromium loads index.html over HTTP, every
image loads, the overview (overall verdict and everything that needs attention) fits the
first screen at 1400 × 1000, and the browser logs no error.

Needs Debian's chromium and chromium-driver and selenium from PyPI (tools/setup.sh --test
installs them); skips locally without them, which fails under CI=true (tests/conftest.py).
The report is built from real runs of two benchmarks with seconds of work, plus a stored
history of two real runs, so the history trends render too.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from forgebench import record, report
from forgebench.runner import run_benchmark
from forgebench.service.headless_chromium import chromium, missing_tools

STATS = {"confidence": 0.95, "bootstrap_resamples": 200, "practical_threshold": 0.05, "alpha": 0.05}
CONFIG = {
    "seed": 11,
    "sampler": {"interval_s": 0.05},
    "statistics": STATS,
    "suites": {
        "network": {
            "benchmarks": {
                "echo_latency": {
                    "scenarios": ["persistent", "connect_per_request"],
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
    # Many targets that are not met, one not measured and one declared not measurable: the
    # overview must still fit one screen (the rest of the misses collapse under it).
    *(
        {
            "name": f"persistent 64 B p{q} under {i + 1} ns",
            "suite": "network",
            "benchmark": "echo_latency",
            "case": "persistent_64B",
            "metric": "rtt",
            "statistic": f"p{q}",
            "op": "<",
            "threshold": (i + 1) * 1e-9,
        }
        for q in (50, 90)
        for i in range(10)
    ),
    {"name": "UI under 50 ms", "statistic": "p95", "op": "<", "threshold": 0.05},
    {
        "name": "connect per request p99 under 1 ms",
        "suite": "network",
        "benchmark": "echo_latency",
        "case": "connect_per_request_64B",
        "metric": "rtt",
        "statistic": "p99",
        "op": "<",
        "threshold": 1e-3,
        "not_measurable": {"reason": "a p99 needs more requests than this run makes"},
    },
]
#: The screen the overview must fit (CSS pixels).
SCREEN = {"width": 1400, "height": 1000}


def _browser_tools() -> None:
    """Skip (a failure under CI=true) when the browser or its driver is missing."""
    missing = missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not found (tools/setup.sh installs them)")


def _run(raw: Path, suite: str, name: str) -> str:
    path = raw / suite / f"{name}.parquet"
    run_benchmark(
        suite,
        name,
        CONFIG,
        measurements_path=path,
        resources_path=raw / suite / f"{name}.resources.parquet",
    )
    return str(path)


def _store(history: Path, run_id: str, raw_path: str) -> None:
    """A real run stored the way forgebench.history lays it out."""
    frame = record.read_measurements(raw_path)
    run_dir = history / f"run_id={run_id}"
    record.write_measurements(frame, run_dir / "measurements.parquet", {"run_id": run_id})
    (run_dir / "provenance.json").write_text(json.dumps({"run_id": run_id}))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    _browser_tools()
    results = tmp_path_factory.mktemp("results")
    earlier = _run(results / "earlier" / "raw", "network", "echo_latency")
    raw = [
        _run(results / "raw", "network", "echo_latency"),
        _run(results / "raw", "harness", "sampler_overhead"),
    ]
    history = results / "history"
    _store(history, "0000earlier", earlier)
    _store(history, "1111current", raw[0])
    (results / "summary").mkdir()
    run_info = results / "summary" / "run.json"
    run_info.write_text(json.dumps({"run_id": "1111current", "baseline_id": "0000earlier"}))
    pd.DataFrame(
        {
            "suite": ["network"],
            "benchmark": ["echo_latency"],
            "case": ["persistent_64B"],
            "metric": ["rtt"],
            "change_points": ['["1111current"]'],
            "verdict": ["regression"],
        }
    ).to_parquet(results / "summary" / "regressions.parquet")
    report.build_report(
        raw,
        summary_path=results / "summary" / "summary.parquet",
        verdicts_path=results / "summary" / "verdicts.parquet",
        html_path=results / "report" / "index.html",
        plots_dir=results / "report" / "plots",
        provenance_path=results / "report" / "provenance.json",
        statistics=STATS,
        comparisons=COMPARISONS,
        targets=TARGETS,
        seed=11,
        run_info_path=run_info,
        regressions_path=results / "summary" / "regressions.parquet",
        history_dir=history,
    )
    return results / "report"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Keep the test output clean: no line per request."""


@pytest.fixture(scope="module")
def served(report_dir) -> Iterator[str]:
    handler = functools.partial(_Quiet, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _browser_tools()
    # The benchmarks' own headless Chromium (an explicit driver path: selenium-manager
    # never downloads anything), with the console log kept for the error checks.
    with chromium(**SCREEN, capabilities={"goog:loggingPrefs": {"browser": "ALL"}}) as driver:
        driver.set_page_load_timeout(60)
        yield driver


def _load(browser, url: str) -> None:
    browser.get(url)
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "the page never finished loading"
        time.sleep(0.1)


def test_report_renders_with_every_image_and_no_console_error(browser, served, report_dir):
    _load(browser, served)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => "
        "[i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    pngs = sorted(p.name for p in (report_dir / "plots").glob("*.png"))
    assert sorted(src for src, *_ in images) == [f"plots/{name}" for name in pngs]
    kinds = {name.split("_")[0] for name in pngs}
    assert {"cdf", "percentiles", "ab", "trend"} <= kinds
    assert "resources" not in kinds  # per-job timelines only on request, on their own page
    broken = [src for src, complete, width, height in images if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    headings = browser.execute_script(
        "return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);"
    )
    assert headings[0] == "Overview"
    assert {"Suite network", "Suite harness", "Optimization audit", "History"} <= set(headings)
    assert headings[-1] == "Environment and provenance"


def test_the_overview_fits_the_first_screen(browser, served):
    """Must show: at 1400 × 1000 the overall verdict and the overview, with every verdict
    that needs attention named (up to the cap, the rest collapsed) and the groups after
    it, end within the first 1000 px; the page is short enough to read (not 878,061 px)."""
    _load(browser, served)
    width, height = browser.execute_script("return [window.innerWidth, window.innerHeight];")
    assert (width, height) == (SCREEN["width"], SCREEN["height"])
    bottom = browser.execute_script(
        "const r = document.getElementById('overview').getBoundingClientRect();"
        "return r.bottom + window.scrollY;"
    )
    assert bottom <= SCREEN["height"], f"the overview ends at {bottom:.0f} px"
    badge = browser.execute_script(
        "const b = document.getElementById('overall-verdict'); const r = b.getBoundingClientRect();"
        "return [b.textContent, r.top, r.height, getComputedStyle(b).fontSize];"
    )
    assert badge[0] == "FAILED" and badge[1] < 100 and float(badge[3][:-2]) >= 18
    named = browser.execute_script(
        "return Array.from(document.querySelectorAll('#overview table')[0].rows).slice(1)"
        ".map(r => [r.cells[0].textContent, r.cells[2].textContent]);"
    )
    assert len(named) == 12 and all(v == "not met" for v, _ in named)  # the cap; 8 more below
    assert "persistent 64 B p50 under 1 ns" in {n for _, n in named}
    groups = browser.execute_script(
        "return Array.from(document.querySelectorAll('#overview details.group > summary'))"
        ".map(s => s.textContent);"
    )
    assert any(g.startswith("Not measurable: 1") for g in groups), groups
    assert any(g.startswith("Not measured: 1") for g in groups), groups
    page = browser.execute_script("return document.documentElement.scrollHeight;")
    assert page < 20000, f"index.html is {page} px tall at 1400 px"


def test_the_linked_pages_render(browser, served, report_dir):
    """Every page of full tables loads without a console error and links back."""
    for page in sorted((report_dir / "pages").glob("*.html")):
        _load(browser, served.replace("index.html", f"pages/{page.name}"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, (page.name, errors)
        assert browser.execute_script(
            "return document.querySelector('a[href=\"../index.html\"]') !== null;"
        ), page.name


def test_a_broken_image_would_be_caught(browser, served, report_dir, tmp_path):
    """The check above can fail: a page naming a missing figure reports it."""
    page = report_dir / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head>'
        '<body><img src="plots/missing.png"></body></html>'
    )
    try:
        browser.get(served.replace("index.html", "broken.html"))
        widths = browser.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth);"
        )
        assert widths == [0]
        assert any(e["level"] == "SEVERE" for e in browser.get_log("browser"))
    finally:
        page.unlink()
