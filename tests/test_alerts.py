"""Threshold alerts while a job runs (forgebench.alerts): planted thresholds, a loopback
webhook receiver, and the alert row in the job's record."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from forgebench import alerts
from forgebench.record import Recorder, read_measurements
from forgebench.runner import run_measured
from forgebench.service.loadgen import RunResult


class _Receiver:
    """A webhook receiver on loopback: keeps each POSTed JSON body with its arrival time."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((time.monotonic(), json.loads(body)))
                outer.arrived.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    rec = _Receiver()
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()


def _job_rows() -> pd.DataFrame:
    r = Recorder("harness", "alert_probe", 1)
    r.add("work", {}, "value", "count", True, 1.0)
    return r.frame()


def test_planted_threshold_alert_reaches_the_webhook_while_the_job_runs(
    tmp_path: Path, receiver: _Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """An RSS threshold of 1 byte is crossed on the first live figures: the webhook must get
    the alert before the job's function returns, and the record must hold the alert row."""
    seen: dict[str, float | bool] = {}

    def job() -> pd.DataFrame:
        started = time.monotonic()
        seen["during_run"] = receiver.arrived.wait(timeout=20.0)  # the job is still running
        seen["waited_s"] = time.monotonic() - started
        return _job_rows()

    config = {
        "seed": 0,
        "sampler": {"interval_s": 0.05},
        "alerts": {
            "thresholds": [
                {"metric": "rss_bytes", "above": 1},  # planted: any live process crosses it
                {"metric": "rss_bytes", "above": 2**50},  # 1 PiB: must stay silent
            ],
            "poll_s": 0.1,
            "webhook_url": receiver.url,
        },
    }
    out = tmp_path / "alert_probe.parquet"
    with caplog.at_level(logging.WARNING, logger="forgebench.alerts"):
        t_before_return = time.monotonic()
        frame = run_measured(
            job, suite="harness", name="alert_probe", version=1, config=config,
            measurements_path=out, resources_path=tmp_path / "alert_probe.resources.parquet",
        )  # fmt: skip
    assert seen["during_run"] is True, "no alert reached the webhook while the job ran"
    assert len(receiver.received) == 1  # the 1 PiB threshold never fired, the other once
    arrived_at, body = receiver.received[0]
    assert arrived_at >= t_before_return
    assert body["alert"]["metric"] == "rss_bytes"
    assert body["alert"]["threshold"] == 1
    assert body["alert"]["value"] > 1e6  # a Python process's RSS, read from the live file
    assert body["text"].startswith("ALERT harness/alert_probe: rss_bytes")
    assert any("ALERT harness/alert_probe: rss_bytes" in r.getMessage() for r in caplog.records)
    rows = read_measurements(out)
    alert_rows = rows[rows["metric"] == alerts.ALERT_METRIC]
    assert len(alert_rows) == 1
    row = alert_rows.iloc[0]
    assert row["case"] == "job" and row["status"] == alerts.ALERT_STATUS
    params = json.loads(row["params"])
    assert params["threshold"] == 1 and params["value"] > 1e6
    assert params["webhook"] == "delivered: HTTP 204"
    assert len(frame[frame["metric"] == alerts.ALERT_METRIC]) == 1


def test_no_threshold_crossed_no_alert(tmp_path: Path) -> None:
    config = {"alerts": {"thresholds": [{"metric": "rss_bytes", "above": 2**50}], "poll_s": 0.05}}

    def job() -> pd.DataFrame:
        time.sleep(0.5)  # the watcher polls during this
        return _job_rows()

    frame = run_measured(
        job, suite="harness", name="alert_probe", version=1, config=config,
        measurements_path=tmp_path / "m.parquet", resources_path=tmp_path / "r.parquet",
    )  # fmt: skip
    assert (frame["metric"] == alerts.ALERT_METRIC).sum() == 0


def test_error_rate_of_a_load_run_fires_once_until_it_clears() -> None:
    """Half of a tracked run's requests fail: error_rate 0.5 is above 0.2; it fires once,
    stays quiet while still above, clears under it and fires again."""
    run = RunResult(mode="closed")  # registers itself (RunResult.__post_init__)
    th = alerts.Threshold("error_rate", 0.2)
    with alerts.AlertWatcher([th], job="t", poll_s=60.0, min_requests=10) as watcher:
        for i in range(10):
            run.add(i, i, i + 1, "ok" if i % 2 else "timeout", 0, None)
        assert [a.value for a in watcher.check()] == [0.5]
        for i in range(10):
            run.add(i, i, i + 1, "timeout", 0, None)
        assert watcher.check() == []  # still above: no second alert
        for i in range(10):
            run.add(i, i, i + 1, "ok", 0, None)
        assert watcher.check() == []  # cleared
        for i in range(10):
            run.add(i, i, i + 1, "error:HTTP500", 0, None)
        assert [a.value for a in watcher.check()] == [1.0]
        assert watcher.check() == []  # fewer than min_requests new: not judged
    assert len(watcher.alerts) == 2


def test_for_s_needs_the_figure_above_for_that_long() -> None:
    run = RunResult(mode="closed")
    th = alerts.Threshold("error_rate", 0.2, for_s=0.3)
    with alerts.AlertWatcher([th], job="t", poll_s=60.0, min_requests=1) as watcher:
        run.add(0, 0, 1, "timeout", 0, None)
        assert watcher.check() == []  # above, but not for 0.3 s yet
        time.sleep(0.35)
        run.add(0, 0, 1, "timeout", 0, None)
        assert len(watcher.check()) == 1


def test_unreachable_webhook_is_recorded_not_raised() -> None:
    run = RunResult(mode="closed")
    watcher = alerts.AlertWatcher(
        [alerts.Threshold("error_rate", 0.0)], job="t", poll_s=60.0, min_requests=1,
        webhook_url="http://127.0.0.1:9/closed", webhook_timeout_s=1.0,
    )  # fmt: skip
    with watcher:
        run.add(0, 0, 1, "timeout", 0, None)
        watcher.check()
    assert watcher.alerts[0].webhook.startswith("failed: ")


def test_alert_line_goes_to_the_console_when_stderr_is_the_log(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """run_benchmark.py points sys.stderr at the job's log; the console still gets the line."""
    import io
    import sys

    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    run = RunResult(mode="closed")
    with alerts.AlertWatcher(
        [alerts.Threshold("error_rate", 0.1)], job="suite/bench", poll_s=60.0, min_requests=1
    ) as watcher:
        run.add(0, 0, 1, "timeout", 0, None)
        watcher.check()
    assert "ALERT suite/bench: error_rate = 1 above 0.1" in capfd.readouterr().err
