"""forgebench gate: the exit code a CI job acts on, from a run's stored verdict tables."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from forgebench import cli, gate


def _write(results: Path, verdicts: list[dict], regressions: list[dict] | None = None) -> Path:
    summary = results / "summary"
    summary.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(verdicts).to_parquet(summary / "verdicts.parquet")
    if regressions is not None:
        pd.DataFrame(regressions).to_parquet(summary / "regressions.parquet")
    return results


TARGET = {"kind": "target", "name": "p50 under 1 ms", "statistic": "median", "op": "<",
          "threshold": 1e-3, "estimate": 2e-3, "ci_low": 1.5e-3, "ci_high": 2.5e-3}  # fmt: skip
COMPARISON = {"kind": "comparison", "name": "pool vs connect", "verdict": "regression",
              "improvement": -0.3, "improvement_ci": [-0.4, -0.2], "reason": "r"}  # fmt: skip


def _metric(verdict: str, **extra) -> dict:
    return {"suite": "network", "benchmark": "echo_latency", "case": "persistent",
            "metric": "rtt", "verdict": verdict, "improvement": -0.5,
            "improvement_ci": [-0.6, -0.4], "reason": "why", **extra}  # fmt: skip


def _run(results: Path, *extra: str) -> tuple[int, list[str]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["gate", "--results", str(results), *extra])
    return code, out.getvalue().splitlines()


def test_a_history_regression_fails_the_gate_and_is_named(tmp_path):
    results = _write(tmp_path, [{**TARGET, "verdict": "met"}], [_metric("regression")])
    code, lines = _run(results)
    assert code == 1
    assert any(
        "network/echo_latency persistent rtt" in line and "regression" in line for line in lines
    )
    assert len(lines) < 40


def test_a_suspected_regression_fails_unless_allowed(tmp_path):
    results = _write(tmp_path, [{**TARGET, "verdict": "met"}], [_metric("suspected regression")])
    assert _run(results)[0] == 1
    assert _run(results, "--allow-suspected")[0] == 0


def test_targets_fail_only_where_gated(tmp_path):
    results = _write(tmp_path, [{**TARGET, "verdict": "not met", "gate": False}])
    assert _run(results)[0] == 0
    results = _write(tmp_path / "g", [{**TARGET, "verdict": "not met", "gate": True}])
    code, lines = _run(results)
    assert code == 1 and any("p50 under 1 ms" in line for line in lines)
    inconclusive = _write(tmp_path / "i", [{**TARGET, "verdict": "inconclusive", "gate": True}])
    assert _run(inconclusive)[0] == 0
    assert _run(inconclusive, "--strict-targets")[0] == 1


def test_within_run_comparisons_fail_only_where_gated(tmp_path):
    assert _run(_write(tmp_path, [COMPARISON]))[0] == 0
    assert _run(_write(tmp_path / "g", [{**COMPARISON, "gate": True}]))[0] == 1
    failed = {**COMPARISON, "verdict": "failed", "gate": True}
    assert _run(_write(tmp_path / "f", [failed]))[0] == 1


def test_failures_in_the_history_fail_the_gate(tmp_path):
    results = _write(tmp_path, [], [_metric("failed")])
    assert _run(results)[0] == 1


def test_noisy_verdicts_are_shown_but_do_not_fail_by_default(tmp_path):
    results = _write(tmp_path, [], [_metric("regression", noisy=True)])
    code, lines = _run(results)
    assert code == 0 and any("noisy" in line for line in lines)
    assert _run(results, "--fail-on-noisy")[0] == 1


def test_improvements_and_no_change_pass(tmp_path):
    others = [_metric("improvement"), _metric("no change"), _metric("inconclusive")]
    results = _write(tmp_path, [{**TARGET, "verdict": "met", "gate": True}], others)
    assert _run(results)[0] == 0


def test_junit_xml_lists_every_verdict_and_each_failure(tmp_path):
    results = _write(
        tmp_path, [{**TARGET, "verdict": "met"}], [_metric("regression"), _metric("no change")]
    )
    junit = tmp_path / "out" / "gate.xml"
    assert _run(results, "--junit", str(junit))[0] == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert len(suite.findall("testcase/failure")) == 1


def test_missing_tables_exit_2_with_a_reason(tmp_path, capsys):
    assert cli.main(["gate", "--results", str(tmp_path)]) == 2
    assert "verdicts.parquet is missing" in capsys.readouterr().err


def test_the_workflow_summary_is_silent_without_verdicts(tmp_path):
    assert gate.workflow_summary(tmp_path) == []


@pytest.mark.parametrize("n", [100])
def test_the_terminal_summary_stays_short(tmp_path, n):
    regressions = [_metric("regression", case=f"c{i}") for i in range(n)]
    code, lines = _run(_write(tmp_path, [], regressions))
    assert code == 1 and len(lines) < 40 and any("and 70 more" in line for line in lines)
