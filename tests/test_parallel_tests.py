"""system/parallel_tests: sequential vs pytest-xdist runs of a suite, outcomes checked.

The suites run here are tiny ones generated in tmp_path, as input for the runner only;
the benchmark's default workload is forgebench's own unit tests.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from forgebench.errors import ForgebenchError
from forgebench.record import COLUMNS
from forgebench.system import parallel_tests
from forgebench.system.parallel_tests import count_outcomes, parse_junit

SCHEMA = Path(__file__).resolve().parents[1] / "config" / "schemas" / "system.schema.yaml"

SUITE = """
import pytest


def test_adds():
    assert 1 + 1 == 2


@pytest.mark.parametrize("n", range(3))
def test_param(n):
    assert n >= 0


def test_always_fails():
    assert 1 == 2


@pytest.mark.skip(reason="skipped on every side")
def test_skipped():
    pass


@pytest.mark.slow
def test_deselected_by_marker():
    pass
"""

# Passes only outside xdist workers: sequential and parallel sides disagree.
DIFFERS = """
import os


def test_outside_xdist_only():
    assert "PYTEST_XDIST_WORKER" not in os.environ
"""


def _suite(root: Path, *extra: str) -> Path:
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    (root / "test_suite.py").write_text(SUITE)
    for i, text in enumerate(extra):
        (root / f"test_extra_{i}.py").write_text(text)
    return root


def _cfg(**kw):
    cfg = {
        "paths": ["test_suite.py"],
        "markers": "not slow",
        "workers": [2],
        "rounds": 1,
        "warmup_rounds": 0,
        "timeout_s": 120,
    }
    cfg.update(kw)
    return cfg


def _need_xdist():
    if importlib.util.find_spec("xdist") is None:
        pytest.skip("pytest-xdist is not installed (tools/setup.sh --test installs it)")


def _by(frame, metric):
    sel = frame[frame["metric"] == metric]
    return dict(zip(sel["case"], sel["value"], strict=True)), dict(
        zip(sel["case"], sel["status"], strict=True)
    )


def test_same_failures_on_every_side_are_ok(tmp_path, monkeypatch):
    _need_xdist()
    monkeypatch.chdir(_suite(tmp_path))
    frame = parallel_tests.run(_cfg(), seed=1)
    assert list(frame.columns) == list(COLUMNS)
    assert (frame["status"] == "ok").all(), frame[frame["status"] != "ok"]
    wall, _ = _by(frame, "wall_time")
    assert set(wall) == {"sequential", "xdist_2"}
    assert all(0 < v < 120 for v in wall.values())
    for metric, expected in (
        ("tests_passed", 4),
        ("tests_failed", 1),
        ("tests_skipped", 1),
        ("tests_error", 0),
    ):
        values, _ = _by(frame, metric)
        assert values == {"sequential": expected, "xdist_2": expected}, metric
    params = frame.groupby("case")["params"].unique()
    assert '"workers":null' in params["sequential"][0]
    assert (
        '"resolved_workers":2' in params["xdist_2"][0] and '"workers":"2"' in params["xdist_2"][0]
    )
    assert not (tmp_path / ".pytest_cache").exists()  # -p no:cacheprovider


def test_a_test_that_differs_makes_a_mismatch(tmp_path, monkeypatch):
    _need_xdist()
    monkeypatch.chdir(_suite(tmp_path, DIFFERS))
    frame = parallel_tests.run(_cfg(paths=["."]), seed=1)
    wall, status = _by(frame, "wall_time")
    assert status == {"sequential": "ok", "xdist_2": "mismatch"}
    assert wall["sequential"] > 0 and wall["xdist_2"] != wall["xdist_2"]  # NaN
    failed, _ = _by(frame, "tests_failed")
    assert failed == {"sequential": 1, "xdist_2": 2}  # the counts show what differed


def test_without_xdist_its_cases_are_unavailable(tmp_path, monkeypatch):
    monkeypatch.chdir(_suite(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "xdist" else real(name, *a)
    )
    frame = parallel_tests.run(_cfg(workers=[2, "auto"]), seed=1)
    _, status = _by(frame, "wall_time")
    assert status == {"sequential": "ok", "xdist_2": "unavailable", "xdist_auto": "unavailable"}
    assert frame.loc[frame["status"] == "unavailable", "value"].isna().all()


def test_hanging_suite_is_a_timeout(tmp_path, monkeypatch):
    (tmp_path / "test_hangs.py").write_text(
        "import threading\n\ndef test_hangs():\n    threading.Event().wait()\n"
    )
    monkeypatch.chdir(tmp_path)
    frame = parallel_tests.run(_cfg(paths=["test_hangs.py"], workers=[], timeout_s=3), seed=1)
    assert set(frame["status"]) == {"timeout"} and frame["value"].isna().all()
    assert len(frame) == 5  # wall_time and the four counts


def test_order_within_rounds_follows_the_seed(tmp_path):
    s = parallel_tests.settings(
        _cfg(workers=[2, "auto"], rounds=3, warmup_rounds=1), cwd=_suite(tmp_path)
    )
    order = parallel_tests.run_order
    assert order(s, 3) == order(s, 3)
    assert any(order(s, 3) != order(s, seed) for seed in (4, 5, 6))
    assert sorted(order(s, 3), key=str) == sorted(order(s, 4), key=str)
    assert [r for r, _ in order(s, 3)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_missing_path_names_the_config_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ForgebenchError) as err:
        parallel_tests.run(_cfg(paths=["tests/test_nothing_here.py"]), seed=1)
    message = str(err.value)
    assert "suites.system.benchmarks.parallel_tests.paths" in message
    assert "tests/test_nothing_here.py" in message and str(tmp_path) in message


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"paths": []}, "paths"),
        ({"workers": [0]}, "workers"),
        ({"workers": ["many"]}, "workers"),
        ({"rounds": 0}, "rounds"),
        ({"timeout_s": -1}, "timeout_s"),
    ],
)
def test_mistakes_name_the_key(tmp_path, monkeypatch, cfg, key):
    monkeypatch.chdir(_suite(tmp_path))
    with pytest.raises(ForgebenchError, match=rf"parallel_tests\.{key}"):
        parallel_tests.run(_cfg(**cfg), seed=1)


def test_parse_junit_outcomes(tmp_path):
    report = tmp_path / "r.xml"
    report.write_text(
        """<?xml version="1.0"?><testsuites><testsuite>
        <testcase classname="t" name="ok"/>
        <testcase classname="t" name="bad"><failure message="x"/></testcase>
        <testcase classname="t" name="skip"><skipped/></testcase>
        <testcase classname="t" name="broken"><error/></testcase>
        <testcase classname="t" name="twice"><failure/></testcase>
        <testcase classname="t" name="twice"><error/></testcase>
        </testsuite></testsuites>"""
    )
    outcomes = parse_junit(report)
    assert outcomes == {
        "t::ok": "passed",
        "t::bad": "failed",
        "t::skip": "skipped",
        "t::broken": "error",
        "t::twice": "error+failed",
    }
    assert count_outcomes(outcomes) == {"passed": 1, "failed": 1, "skipped": 1, "error": 2}


def test_default_paths_exist_in_the_repository(repo):
    s = parallel_tests.settings({}, cwd=repo)
    assert all((repo / p).is_file() for p in s.paths)
    assert not any("parallel_tests" in p or "import_time" in p for p in s.paths)


def test_schema_fragment_defaults_match_the_code(repo):
    schema = yaml.safe_load(SCHEMA.read_text())
    Draft202012Validator.check_schema(schema)
    props = schema["properties"]["benchmarks"]["properties"]["parallel_tests"]["properties"]
    d = {k: v["default"] for k, v in props.items() if k != "enabled"}
    s = parallel_tests.settings({}, cwd=repo)
    assert list(s.paths) == d["paths"] and s.markers == d["markers"]
    assert list(s.workers) == [str(w) for w in d["workers"]]
    assert (s.rounds, s.warmup_rounds, s.timeout_s) == (
        d["rounds"],
        d["warmup_rounds"],
        d["timeout_s"],
    )
    validator = Draft202012Validator(schema)
    good = {"benchmarks": {"parallel_tests": _cfg(workers=[2, "auto"])}}
    assert not list(validator.iter_errors(good))
    bad = {"benchmarks": {"parallel_tests": _cfg(workers=["all"])}}
    assert list(validator.iter_errors(bad))
