"""Wall time of a pytest suite run sequentially and with pytest-xdist workers.

Why this shape: a test suite is run many times a day, and pytest-xdist is the usual way
to spread it over cores; whether that pays depends on how long the tests are against
what each worker pays to start (an interpreter, the imports, collection). So the
configured suite (default: forgebench's own fast unit tests, as they are) is run as a
whole, the way a developer runs it, in fresh ``sys.executable -m pytest`` processes:

* case ``sequential``: pytest without the xdist plugin (``-p no:xdist``), i.e. what the
  suite costs without it;
* case ``xdist_<n>`` for each configured worker count (``-n 2``, ``-n auto``).

Choices worth knowing when reading the results:

* ``wall_time`` (seconds) is measured around the pytest process, from just before its
  start to its exit: collection, worker start-up and teardown included.
* Equal work is checked, not assumed: every run writes a JUnit XML report, and the
  outcome of every test (passed, failed, skipped, error) must match the reference run
  (the first sequential run that completed); a run that differs is a ``mismatch`` and
  its wall time does not count. Failing tests are allowed, as long as the same ones fail
  on every side. The counts are rows too (``tests_passed``, ``tests_failed``,
  ``tests_skipped``, ``tests_error``).
* Paths are resolved against the working directory (the workflow's, i.e. the repository
  root), and pytest runs there, so its ``pyproject.toml``/conftest apply as they would
  for a developer. Every run gets ``-p no:cacheprovider`` (no ``.pytest_cache`` state
  carried between runs) and the configured ``-m`` marker expression.
* ``PYTEST_ADDOPTS`` and the xdist worker variables of a surrounding pytest are removed
  from the children's environment: they would change what every side runs.
* Rounds are interleaved: each round runs every case once, in an order drawn from the
  seed. ``warmup_rounds`` rounds come first and are kept, flagged ``warmup``;
  ``repetition`` counts all rounds.
* Without pytest-xdist installed the xdist cases are ``unavailable`` rows.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import random
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, utcnow
from forgebench.system.import_time import ChildResult, run_timed

BENCHMARK_VERSION = 1
SUITE = "system"
NAME = "parallel_tests"
KEY = f"suites.{SUITE}.benchmarks.{NAME}"
SEQUENTIAL = "sequential"
OUTCOMES = ("passed", "failed", "skipped", "error")
XDIST_PIN = "pytest-xdist==3.8.0"
# forgebench's fast unit tests that need no external component; see config/config.yaml.
DEFAULT_PATHS = ("tests/test_stats.py", "tests/test_config.py")
DEFAULT_MARKERS = "not slow and not workflow"
# A surrounding pytest (or the user's shell) must not change what the children run.
_DROPPED_ENV = (
    "PYTEST_ADDOPTS",
    "PYTEST_CURRENT_TEST",
    "PYTEST_XDIST_WORKER",
    "PYTEST_XDIST_WORKER_COUNT",
    "PYTEST_XDIST_TESTRUNUID",
)
_CREATED_RE = re.compile(r"created: (\d+)/(\d+) workers")
# pytest's exit codes other than 0 (all passed) and 1 (some failed).
_EXIT_STATUS = {
    2: "error:PytestInterrupted",
    3: "error:PytestInternalError",
    4: "error:PytestUsageError",
    5: "error:NoTestsCollected",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The validated config; ``paths`` as given, checked to exist under ``cwd``."""

    paths: tuple[str, ...]
    markers: str
    workers: tuple[str, ...]  # "2", "auto", "logical"
    rounds: int
    warmup_rounds: int
    timeout_s: float
    cwd: Path


def case_name(workers: str | None) -> str:
    """``sequential`` or ``xdist_<workers>`` (``xdist_2``, ``xdist_auto``)."""
    return SEQUENTIAL if workers is None else f"xdist_{workers}"


def check_paths(paths: Sequence[str], cwd: Path) -> tuple[str, ...]:
    """Every path (``file.py``, a directory or ``file.py::test``) must exist under ``cwd``."""
    if not paths:
        raise ForgebenchError(f"{KEY}.paths: needs at least one test file or directory")
    for path in paths:
        target = Path(str(path).split("::", 1)[0])
        full = target if target.is_absolute() else cwd / target
        if not full.exists():
            raise ForgebenchError(
                f"{KEY}.paths: {path!r} does not exist (looked for {full}, relative paths "
                f"being resolved against {cwd}); list existing test files or directories"
            )
    return tuple(str(p) for p in paths)


def _workers(values: Any) -> tuple[str, ...]:
    out = []
    for value in values or []:
        text = str(value)
        if text not in ("auto", "logical") and not (text.isdigit() and int(text) >= 1):
            raise ForgebenchError(
                f"{KEY}.workers: {value!r} is not a worker count; use integers >= 1, "
                "'auto' (physical cores) or 'logical' (logical cores)"
            )
        out.append(text)
    if len(set(out)) != len(out):
        raise ForgebenchError(f"{KEY}.workers: {list(values)} lists a worker count twice")
    return tuple(out)


REPO = Path(__file__).resolve().parents[3]


def _base(paths: Sequence[str]) -> Path:
    """The working directory if the paths are there, else the repository root: the
    default paths are this repository's tests, wherever ``snakemake --directory`` runs."""
    here = Path.cwd()
    for base in (here, REPO):
        if all((base / str(p).split("::", 1)[0]).exists() for p in paths):
            return base
    return here


def settings(cfg: Mapping[str, Any], cwd: Path | None = None) -> Settings:
    """Check the config section; every mistake names its key."""
    paths = list(cfg.get("paths", DEFAULT_PATHS))
    cwd = _base(paths) if cwd is None else cwd
    out = Settings(
        paths=check_paths(paths, cwd),
        markers=str(cfg.get("markers", DEFAULT_MARKERS)),
        workers=_workers(cfg.get("workers", [2, "auto"])),
        rounds=int(cfg.get("rounds", 4)),
        warmup_rounds=int(cfg.get("warmup_rounds", 1)),
        timeout_s=float(cfg.get("timeout_s", 90.0)),
        cwd=cwd,
    )
    if out.rounds < 1:
        raise ForgebenchError(f"{KEY}.rounds: must be >= 1, got {out.rounds}")
    if out.warmup_rounds < 0:
        raise ForgebenchError(f"{KEY}.warmup_rounds: must be >= 0, got {out.warmup_rounds}")
    if not out.timeout_s > 0:
        raise ForgebenchError(f"{KEY}.timeout_s: must be > 0, got {out.timeout_s}")
    return out


def pytest_command(s: Settings, workers: str | None, junit_path: Path) -> list[str]:
    """The pytest command line of one run: the same on every side but for the workers."""
    cmd = [sys.executable, "-m", "pytest", *s.paths, "-p", "no:cacheprovider"]
    if s.markers:
        cmd += ["-m", s.markers]
    cmd += ["--junitxml", str(junit_path)]
    cmd += ["-p", "no:xdist"] if workers is None else ["-n", workers]
    return cmd


def child_env() -> dict[str, str]:
    """The inherited environment without settings that would change what pytest runs."""
    return {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}


def parse_junit(path: Path) -> dict[str, str]:
    """Outcome per test id (``classname::name``) from a pytest JUnit XML report.

    A test reported more than once (a failure and a teardown error) gets its outcomes
    joined, e.g. ``error+failed``, so any change in either shows as a difference.
    """
    root = ET.parse(path).getroot()
    found: dict[str, set[str]] = {}
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        tags = {child.tag for child in case}
        if "error" in tags:
            outcome = "error"
        elif "failure" in tags:
            outcome = "failed"
        elif "skipped" in tags:
            outcome = "skipped"
        else:
            outcome = "passed"
        found.setdefault(test_id, set()).add(outcome)
    return {test_id: "+".join(sorted(outcomes)) for test_id, outcomes in found.items()}


def count_outcomes(outcomes: Mapping[str, str]) -> dict[str, int]:
    """Tests per outcome; a test with several outcomes counts once, under its worst."""
    counts: Counter[str] = Counter()
    for outcome in outcomes.values():
        parts = outcome.split("+")
        counts[next(o for o in ("error", "failed", "skipped", "passed") if o in parts)] += 1
    return {o: counts.get(o, 0) for o in OUTCOMES}


@dataclass
class Run:
    """One pytest run and what came of it."""

    case: str
    workers: str | None
    round: int
    warmup: bool
    started_at: datetime
    result: ChildResult | None = None  # None: not run (xdist unavailable)
    outcomes: dict[str, str] | None = None
    resolved_workers: int | None = None
    status: str = "ok"
    differences: list[str] = field(default_factory=list)


def execute(s: Settings, workers: str | None, *, round_: int, warmup: bool, tmp: Path) -> Run:
    """One pytest run in a fresh process, with its JUnit report parsed."""
    junit = tmp / f"junit-{round_}-{case_name(workers)}.xml"
    run = Run(case_name(workers), workers, round_, warmup, utcnow())
    run.result = run_timed(
        pytest_command(s, workers, junit), env=child_env(), cwd=s.cwd, timeout_s=s.timeout_s
    )
    stdout = run.result.stdout.decode(errors="replace")
    created = _CREATED_RE.search(stdout)
    if created:
        run.resolved_workers = int(created.group(2))
    code = run.result.returncode
    if code is None:
        run.status = "timeout"
    elif code not in (0, 1):
        run.status = _EXIT_STATUS.get(code, f"error:PytestExit{code}")
        tail = (stdout.strip().splitlines() or [""])[-1]
        log.warning("%s exited with %s: %s", run.case, code, tail)
    elif not junit.exists():
        run.status = "error:NoJunitReport"
    else:
        try:
            run.outcomes = parse_junit(junit)
        except ET.ParseError:
            run.status = "error:NoJunitReport"
    return run


def check_outcomes(runs: Sequence[Run]) -> None:
    """Mark runs whose per-test outcomes differ from the reference run as ``mismatch``.

    The reference is the first sequential run that completed, else the first run that
    did: pytest without xdist is the ground truth of what the suite does.
    """
    done = [r for r in runs if r.status == "ok" and r.outcomes is not None]
    if not done:
        return
    reference = next((r for r in done if r.workers is None), done[0])
    expected = reference.outcomes or {}
    for run in done:
        got = run.outcomes or {}
        diff = sorted(
            f"{test}: {expected.get(test, 'absent')} -> {got.get(test, 'absent')}"
            for test in set(expected) | set(got)
            if expected.get(test) != got.get(test)
        )
        if diff:
            run.status = "mismatch"
            run.differences = diff
            log.warning(
                "%s round %d: %d tests differ from %s round %d: %s",
                run.case,
                run.round,
                len(diff),
                reference.case,
                reference.round,
                "; ".join(diff[:5]) + (" ..." if len(diff) > 5 else ""),
            )


def add_rows(rec: Recorder, runs: Sequence[Run], s: Settings) -> None:
    """Per run: ``wall_time`` (NaN unless ok) and the outcome counts of a completed run."""
    base = {"paths": list(s.paths), "markers": s.markers}
    params: dict[tuple[str, int | None], dict[str, Any]] = {}
    for run in runs:
        key = (run.case, run.resolved_workers)
        if key not in params:
            params[key] = {**base, "workers": run.workers}  # None: sequential
            if run.resolved_workers is not None:
                params[key]["resolved_workers"] = run.resolved_workers
        p = params[key]
        common = {"repetition": run.round, "warmup": run.warmup, "started_at": run.started_at}
        ok = run.status == "ok"
        wall = run.result.wall_s if ok and run.result is not None else math.nan
        rec.add(run.case, p, "wall_time", "s", False, wall, status=run.status, **common)
        counts = count_outcomes(run.outcomes) if run.outcomes is not None else None
        for outcome in OUTCOMES:
            value = counts[outcome] if counts is not None else math.nan
            status = "ok" if counts is not None else run.status
            rec.add(
                run.case,
                p,
                f"tests_{outcome}",
                "count",
                outcome == "passed",
                value,
                status=status,
                **common,
            )


def run_order(s: Settings, seed: int) -> list[tuple[int, str | None]]:
    """(round, workers) in the order they run: every case once per round, seeded order."""
    rng = random.Random(seed)
    out: list[tuple[int, str | None]] = []
    for round_ in range(s.warmup_rounds + s.rounds):
        sides: list[str | None] = [None, *s.workers]
        rng.shuffle(sides)
        out += [(round_, workers) for workers in sides]
    return out


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Run the suite sequentially and with each worker count, interleaved in seeded order.

    cfg keys (config/schemas/system.schema.yaml): ``paths``, ``markers``, ``workers``,
    ``rounds``, ``warmup_rounds``, ``timeout_s``.
    """
    s = settings(cfg)
    has_xdist = importlib.util.find_spec("xdist") is not None
    if not has_xdist and s.workers:
        log.warning(
            "pytest-xdist is not installed for %s: the xdist cases are recorded as "
            "unavailable; install %s (tools/setup.sh does)",
            sys.executable,
            XDIST_PIN,
        )
    order = run_order(s, seed)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="forgebench-pytest-") as tmp:
        for round_, workers in order:
            warmup = round_ < s.warmup_rounds
            if workers is not None and not has_xdist:
                run_ = Run(case_name(workers), workers, round_, warmup, utcnow())
                run_.status = "unavailable"
            else:
                run_ = execute(s, workers, round_=round_, warmup=warmup, tmp=Path(tmp))
            runs.append(run_)
            counts = count_outcomes(run_.outcomes) if run_.outcomes is not None else {}
            log.log(
                logging.INFO if run_.status == "ok" else logging.WARNING,
                "[%d/%d] round %d%s %s: %s, %s",
                len(runs),
                len(order),
                round_,
                " (warm-up)" if warmup else "",
                run_.case,
                f"{run_.result.wall_s:.2f} s" if run_.result else "not run",
                ", ".join(f"{n} {o}" for o, n in counts.items()) or run_.status,
            )
    check_outcomes(runs)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    add_rows(rec, runs, s)
    return rec.frame()
