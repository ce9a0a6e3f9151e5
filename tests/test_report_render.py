"""The report renders in a real browser: headless Chromium loads index.html over HTTP, every
image loads, and the browser logs no error.

Needs Debian's chromium and chromium-driver and selenium from PyPI (tools/setup.sh --test
installs them); skips locally without them, which fails under CI=true (tests/conftest.py).
The report is built from real runs of two benchmarks with seconds of work, plus a stored
history of two real runs, so the history trends render too.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from forgebench import record, report
from forgebench.runner import run_benchmark

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
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
    }
]


def _browser_tools() -> None:
    """Skip (a failure under CI=true) when the browser or its driver is missing."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.skip(f"{path} not found: apt-get install chromium chromium-driver")
    pytest.importorskip("selenium", reason="selenium not installed (tools/setup.sh --test)")


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
def browser(tmp_path_factory) -> Iterator[object]:
    _browser_tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never downloads anything.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_with_every_image_and_no_console_error(browser, served, report_dir):
    browser.get(served)
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, "the page never finished loading"
        time.sleep(0.1)
    images = browser.execute_script(
        "return Array.from(document.images).map(i => "
        "[i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    pngs = sorted(p.name for p in (report_dir / "plots").glob("*.png"))
    assert sorted(src for src, *_ in images) == [f"plots/{name}" for name in pngs]
    kinds = {name.split("_")[0] for name in pngs}
    assert {"cdf", "percentiles", "ab", "resources", "trend"} <= kinds
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
