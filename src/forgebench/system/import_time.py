"""Import time of configured modules in fresh interpreters, and what makes it fast or slow.

Why this shape: a CLI, a Snakemake job and a test worker each pay for their imports
before doing any work, once per process. Every measurement here is therefore a fresh
``sys.executable -X importtime`` subprocess, and three questions are asked of it:

* **How long does importing M take, and which modules are to blame?** Case
  ``warm_cache_<M>`` runs ``-c "import M"`` for every configured module; the
  ``-X importtime`` breakdown gives the slowest imported modules.
* **What does the bytecode cache save?** For ``cache_modules``, case ``cold_cache_<M>``
  runs the same import with ``PYTHONPYCACHEPREFIX`` set to a fresh, empty directory, so
  every module outside the interpreter's frozen core is compiled from source again;
  ``warm_cache_<M>`` uses a prefix directory that the warm-up round already filled. Both
  sides use the prefix mechanism alike; no system cache (page cache) is dropped, and the
  warm-up round has read every source file, so both sides read sources from memory.
* **What do lazy imports buy a CLI?** ``cli_lazy`` runs the real ``forgebench --help``
  (``python -m forgebench.cli``), ``cli_eager`` the same CLI after importing its
  dependencies at top level (``forgebench.system.eager_cli``); both with the warm prefix.

Choices worth knowing when reading the results:

* ``import_time`` (the headline, seconds) is the wall time of the whole subprocess,
  measured around it (``perf_counter`` from just before ``Popen`` to its exit): what a
  user waits for, interpreter start and exit included. ``import_cumulative`` (seconds)
  is the top-level cumulative figure ``-X importtime`` reports for M itself (with its
  parent packages for a dotted name): the import alone, without interpreter start-up.
  ``modules_imported`` counts the modules in the breakdown.
* Every run, CLI runs included, carries ``-X importtime``; its per-module stderr line is
  a cost paid alike by both sides of every comparison.
* Every run uses a pycache prefix in a temporary directory, so results do not depend on
  whether the installation ships ``.pyc`` files or ``PYTHONDONTWRITEBYTECODE`` is set
  (it is removed for the children), and nothing is written into the installation.
* Equal work is checked, not assumed: a module run must import exactly the set of
  modules the warm-up import of that module did (else ``mismatch``), and ``cli_eager``
  must print byte-for-byte the stdout of ``cli_lazy``'s warm-up run (else ``mismatch``).
* Runs are grouped in rounds; the order within each round is drawn from the seed, so
  drift of the machine falls on every case alike. Round 0 is the warm-up (rows kept,
  flagged ``warmup``); ``repetition`` is the round index, warm-up included.
* The slowest ``top_modules`` imported modules of each case are chosen by their median
  self time over the measured runs; each run then gets a ``self_time`` and a
  ``cumulative_time`` row for each of them (params ``imported`` and ``rank``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, utcnow

BENCHMARK_VERSION = 1
SUITE = "system"
NAME = "import_time"
KEY = f"suites.{SUITE}.benchmarks.{NAME}"
SRC_DIR = Path(__file__).resolve().parents[2]  # the directory holding this forgebench
LAZY_CLI = ("-m", "forgebench.cli", "--help")
EAGER_CLI = ("-m", "forgebench.system.eager_cli", "--help")
DEFAULT_MODULES = ("torch", "transformers", "pandas", "lm_eval", "forgebench")
DEFAULT_CACHE_MODULES = ("lm_eval",)  # see config/config.yaml for why only this one
# Settings the children must not inherit: they would change what is timed.
_DROPPED_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONPROFILEIMPORTTIME")
_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_IMPORTTIME_RE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( +)(\S.*?)\s*$")
_EXCEPTION_RE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b")

log = logging.getLogger(__name__)


# ----------------------------------------------------------------- child processes


@dataclass
class ChildResult:
    """What one subprocess did: exit code (None after a timeout), wall time and output."""

    returncode: int | None
    wall_s: float
    stdout: bytes
    stderr: bytes

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_timed(
    cmd: Sequence[str], *, env: Mapping[str, str], cwd: str | Path, timeout_s: float
) -> ChildResult:
    """Run ``cmd`` in its own session; wall time from just before start to its exit.

    On timeout (or any interruption) the whole process group is killed, so workers or
    servers the command started cannot outlive it.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=str(cwd),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        wall = time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        return ChildResult(None, time.perf_counter() - t0, out, err)
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        _kill_group(proc.pid)  # leftovers of a finished run (none expected)
    return ChildResult(proc.returncode, wall, out, err)


def failure_status(result: ChildResult) -> str:
    """``timeout``, or ``error:<Exception>`` from the child's traceback, else its exit code."""
    if result.timed_out:
        return "timeout"
    lines = [
        line
        for line in result.stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("import time:")
    ]
    if lines:
        match = _EXCEPTION_RE.match(lines[-1])
        if match:
            return f"error:{match.group(1)}"
    return f"error:ExitCode{result.returncode}" if result.returncode >= 0 else "error:Signal"


# ------------------------------------------------------------------ -X importtime


@dataclass(frozen=True)
class ImportLine:
    """One line of ``-X importtime``: a module, its nesting depth and its times in s."""

    name: str
    depth: int
    self_s: float
    cumulative_s: float


def parse_importtime(stderr: str) -> list[ImportLine]:
    """The ``-X importtime`` lines of ``stderr``, in order; other lines are ignored."""
    lines = []
    for raw in stderr.splitlines():
        match = _IMPORTTIME_RE.match(raw)
        if match:  # the header ("self [us]") has no digits and does not match
            self_us, cum_us, indent, name = match.groups()
            lines.append(
                ImportLine(name, (len(indent) - 1) // 2, int(self_us) * 1e-6, int(cum_us) * 1e-6)
            )
    return lines


def top_level_cumulative(lines: Sequence[ImportLine], module: str) -> float | None:
    """Seconds ``import module`` took by ``-X importtime``: the depth-0 entries of the
    module and its parent packages; None if it was imported during interpreter start-up."""
    parts = module.split(".")
    names = {".".join(parts[: i + 1]) for i in range(len(parts))}
    found = [ln.cumulative_s for ln in lines if ln.depth == 0 and ln.name in names]
    return sum(found) if found else None


# ------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One kind of run: a module import with a warm or cold cache, or one CLI variant."""

    case: str
    argv: tuple[str, ...]
    cache: str  # "warm" or "cold"
    module: str | None = None  # None for the CLI cases
    reference: str = ""  # case whose warm-up run defines the expected answer

    @property
    def params(self) -> dict[str, Any]:
        if self.module is None:
            return {"cli": self.case.removeprefix("cli_"), "argv": list(self.argv)}
        return {"module": self.module, "bytecode_cache": self.cache}


def module_job(module: str, cache: str) -> Job:
    return Job(
        case=f"{cache}_cache_{module}",
        argv=("-c", f"import {module}"),
        cache=cache,
        module=module,
        reference=f"warm_cache_{module}",
    )


CLI_LAZY = Job("cli_lazy", LAZY_CLI, "warm", reference="cli_lazy")
CLI_EAGER = Job("cli_eager", EAGER_CLI, "warm", reference="cli_lazy")


@dataclass(frozen=True)
class Settings:
    """The validated config."""

    modules: tuple[str, ...]
    cache_modules: tuple[str, ...]
    cli: bool
    repetitions: int
    rounds: int
    top_modules: int
    timeout_s: float


def _check_modules(names: Sequence[Any], key: str, *, allow_empty: bool) -> tuple[str, ...]:
    names = [str(n) for n in names]
    if not names and not allow_empty:
        raise ForgebenchError(f"{KEY}.{key}: needs at least one module name; got an empty list")
    for name in names:
        if not _MODULE_RE.match(name):
            raise ForgebenchError(
                f"{KEY}.{key}: {name!r} is not a module name (dotted Python identifiers, "
                "e.g. 'pandas' or 'torch.nn')"
            )
        top = name.split(".")[0]
        if importlib.util.find_spec(top) is None:
            raise ForgebenchError(
                f"{KEY}.{key}: module {top!r} is not installed for {sys.executable}; "
                "install it or remove it from the list"
            )
    return tuple(dict.fromkeys(names))


def settings(cfg: Mapping[str, Any]) -> Settings:
    """Check the config section; every mistake names its key."""
    out = Settings(
        modules=_check_modules(cfg.get("modules", DEFAULT_MODULES), "modules", allow_empty=False),
        cache_modules=_check_modules(
            cfg.get("cache_modules", DEFAULT_CACHE_MODULES), "cache_modules", allow_empty=True
        ),
        cli=bool(cfg.get("cli", True)),
        repetitions=int(cfg.get("repetitions", 3)),
        rounds=int(cfg.get("rounds", 5)),
        top_modules=int(cfg.get("top_modules", 10)),
        timeout_s=float(cfg.get("timeout_s", 300.0)),
    )
    for key in ("repetitions", "rounds"):
        if getattr(out, key) < 1:
            raise ForgebenchError(f"{KEY}.{key}: must be >= 1, got {getattr(out, key)}")
    if out.top_modules < 0:
        raise ForgebenchError(f"{KEY}.top_modules: must be >= 0, got {out.top_modules}")
    if not out.timeout_s > 0:
        raise ForgebenchError(f"{KEY}.timeout_s: must be > 0, got {out.timeout_s}")
    return out


def schedule(s: Settings) -> list[list[Job]]:
    """The jobs of each round, round 0 being the warm-up that fills the warm cache.

    Module imports run ``repetitions`` times; the two sides of each comparison (cold and
    warm cache of ``cache_modules``, eager and lazy CLI) run ``rounds`` times.
    """
    warm_modules = tuple(dict.fromkeys(s.modules + s.cache_modules))
    rounds: list[list[Job]] = [[module_job(m, "warm") for m in warm_modules]]
    if s.cli:
        rounds[0] += [CLI_LAZY, CLI_EAGER]
    compared = s.rounds if (s.cache_modules or s.cli) else 0
    for r in range(max(s.repetitions, compared)):
        jobs = [
            module_job(m, "warm")
            for m in warm_modules
            if r < s.repetitions or (m in s.cache_modules and r < s.rounds)
        ]
        if r < s.rounds:
            jobs += [module_job(m, "cold") for m in s.cache_modules]
            if s.cli:
                jobs += [CLI_LAZY, CLI_EAGER]
        rounds.append(jobs)
    return rounds


def run_order(s: Settings, seed: int) -> list[tuple[int, Job]]:
    """(round, job) in the order they run: the schedule, shuffled within each round."""
    rng = random.Random(seed)
    out: list[tuple[int, Job]] = []
    for round_, jobs in enumerate(schedule(s)):
        jobs = list(jobs)
        rng.shuffle(jobs)
        out += [(round_, job) for job in jobs]
    return out


def child_env(pycache_prefix: Path) -> dict[str, str]:
    """The children's environment: this forgebench importable, the given pycache prefix."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["PYTHONPYCACHEPREFIX"] = str(pycache_prefix)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Run:
    """One executed job: where it ran in the schedule and what came back."""

    job: Job
    round: int
    started_at: datetime
    result: ChildResult
    lines: list[ImportLine] = field(default_factory=list)
    status: str = "ok"

    @property
    def warmup(self) -> bool:
        return self.round == 0

    @property
    def imported(self) -> frozenset[str]:
        return frozenset(ln.name for ln in self.lines)


def execute(job: Job, *, round_: int, work_dir: Path, warm_prefix: Path, timeout_s: float) -> Run:
    """Run one job as a fresh interpreter; a cold job gets its own empty pycache prefix."""
    if job.cache == "cold":
        prefix = Path(tempfile.mkdtemp(prefix="cold-", dir=work_dir))
    else:
        prefix = warm_prefix
    env = child_env(prefix)
    cmd = [sys.executable, "-X", "importtime", *job.argv]
    started = utcnow()
    try:
        result = run_timed(cmd, env=env, cwd=work_dir, timeout_s=timeout_s)
    finally:
        if job.cache == "cold":
            _remove_tree(prefix)
    run = Run(job, round_, started, result)
    run.lines = parse_importtime(result.stderr.decode(errors="replace"))
    if result.returncode != 0:
        run.status = failure_status(result)
    return run


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _check_warm_prefix(warm_prefix: Path, warmup_runs: Sequence[Run]) -> None:
    """After the warm-up: a warm cache that stayed empty would make warm equal cold."""
    pyc = sum(1 for _ in warm_prefix.rglob("*.pyc"))
    log.info("warm pycache prefix holds %d .pyc files after the warm-up", pyc)
    if pyc == 0 and any(r.status == "ok" for r in warmup_runs):
        raise ForgebenchError(
            f"{KEY}: the warm-up imports wrote no bytecode into the pycache prefix "
            f"{warm_prefix} (is {sys.executable} run with -B?), so a warm "
            "and a cold bytecode cache would be the same thing"
        )


# ------------------------------------------------------------------------ checks


def check_answers(runs: Sequence[Run]) -> None:
    """Mark runs whose answer differs from their reference case's first good run.

    A module run must import the same modules as the reference; a CLI run must print the
    same stdout. With no good reference run there is nothing to check against, and the
    run's timing cannot count (``error:NoReference``).
    """
    reference: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.round):
        if run.status == "ok" and run.job.case not in reference:
            reference[run.job.case] = run
    for run in runs:
        if run.status != "ok":
            continue
        ref = reference.get(run.job.reference)
        if ref is None:
            run.status = "error:NoReference"
        elif run is ref:
            continue
        elif run.job.module is None:
            if run.result.stdout != ref.result.stdout:
                run.status = "mismatch"
                log.warning(
                    "%s round %d printed %d bytes that differ from %s's %d bytes",
                    run.job.case,
                    run.round,
                    len(run.result.stdout),
                    ref.job.case,
                    len(ref.result.stdout),
                )
        elif run.imported != ref.imported:
            run.status = "mismatch"
            extra = sorted(run.imported - ref.imported)[:5]
            missing = sorted(ref.imported - run.imported)[:5]
            log.warning(
                "%s round %d imported other modules than %s round %d: extra %s, missing %s",
                run.job.case,
                run.round,
                ref.job.case,
                ref.round,
                extra,
                missing,
            )


# -------------------------------------------------------------------------- rows


def slowest_modules(runs: Sequence[Run], n: int) -> list[str]:
    """The ``n`` imported modules with the largest median self time over ``runs``."""
    if n <= 0 or not runs:
        return []
    per_module: dict[str, list[float]] = {}
    for run in runs:
        totals: dict[str, float] = {}
        for ln in run.lines:
            totals[ln.name] = totals.get(ln.name, 0.0) + ln.self_s
        for name, value in totals.items():
            per_module.setdefault(name, []).append(value)
    # A module missing from a run counts as 0 there, so one slow outlier cannot rank it.
    medians = {
        name: statistics.median(values + [0.0] * (len(runs) - len(values)))
        for name, values in per_module.items()
    }
    return sorted(medians, key=lambda name: (-medians[name], name))[:n]


def add_rows(rec: Recorder, runs: Sequence[Run], top_n: int) -> None:
    """The headline rows of every run, then the breakdown rows of the measured ok runs."""
    params = {job: job.params for job in {run.job for run in runs}}
    for run in runs:
        job, ok = run.job, run.status == "ok"
        common = {"repetition": run.round, "warmup": run.warmup, "started_at": run.started_at}
        wall = run.result.wall_s if ok else math.nan
        rec.add(job.case, params[job], "import_time", "s", False, wall, status=run.status, **common)
        if job.module is not None:
            cumulative = top_level_cumulative(run.lines, job.module) if ok else None
            status = run.status
            if ok and cumulative is None:
                status = "unavailable"  # already imported while the interpreter started
            value = cumulative if cumulative is not None else math.nan
            rec.add(
                job.case,
                params[job],
                "import_cumulative",
                "s",
                False,
                value,
                status=status,
                **common,
            )
        lines_ok = run.status in ("ok", "mismatch")
        rec.add(
            job.case,
            params[job],
            "modules_imported",
            "count",
            False,
            len(run.lines) if lines_ok else math.nan,
            status="ok" if lines_ok else run.status,
            **common,
        )
    by_case: dict[Job, list[Run]] = {}
    for run in runs:
        if run.status == "ok" and not run.warmup:
            by_case.setdefault(run.job, []).append(run)
    for job, case_runs in sorted(by_case.items(), key=lambda kv: kv[0].case):
        top = slowest_modules(case_runs, top_n)
        for rank, name in enumerate(top, start=1):
            p = {**params[job], "imported": name, "rank": rank}
            for run in case_runs:
                entries = [ln for ln in run.lines if ln.name == name]
                if not entries:
                    continue
                common = {"repetition": run.round, "started_at": run.started_at}
                self_s = sum(ln.self_s for ln in entries)
                cum_s = sum(ln.cumulative_s for ln in entries)
                rec.add(job.case, p, "self_time", "s", False, self_s, **common)
                rec.add(job.case, p, "cumulative_time", "s", False, cum_s, **common)


# --------------------------------------------------------------------------- run


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Run every round in seeded order; return one row per run and metric, plus the
    breakdown of the slowest modules.

    cfg keys (config/schemas/system.schema.yaml): ``modules``, ``cache_modules``, ``cli``,
    ``repetitions``, ``rounds``, ``top_modules``, ``timeout_s``.
    """
    s = settings(cfg)
    order = run_order(s, seed)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="forgebench-import-") as tmp:
        work_dir = Path(tmp)
        warm_prefix = work_dir / "warm-pycache"
        warm_prefix.mkdir()
        for round_, job in order:
            if round_ == 1 and runs[-1].round == 0:
                _check_warm_prefix(warm_prefix, runs)
            run_ = execute(
                job,
                round_=round_,
                work_dir=work_dir,
                warm_prefix=warm_prefix,
                timeout_s=s.timeout_s,
            )
            runs.append(run_)
            log.log(
                logging.INFO if run_.status == "ok" else logging.WARNING,
                "[%d/%d] round %d%s %s: %.3f s, %d modules imported, %s",
                len(runs),
                len(order),
                round_,
                " (warm-up)" if round_ == 0 else "",
                job.case,
                run_.result.wall_s,
                len(run_.lines),
                run_.status,
            )
    check_answers(runs)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    add_rows(rec, runs, s.top_modules)
    return rec.frame()
