"""`forgebench watch`: follow a running workflow from another terminal.

Why it works the way it does: Snakemake's console is the log of one scheduler, not a
view of the run, and the jobs' own progress lines go to logs/<rule>/. When the workflow
starts, its onstart hook writes the plan (logs/workflow/plan.json: every job the run
needs, its outputs and log, and how long it took the last time it ran, from Snakemake's
metadata); watch joins that plan with Snakemake's log of this run (which jobs started,
finished or failed) and with each running job's live sampler file (its CPU and memory
now, forgebench.sampler). The time left is the sum of the last durations of the jobs
still to run (less what the running ones have done): job time, an upper bound on the
wall time when jobs run side by side, and unknown for jobs that never ran before.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from forgebench.sampler import live_path_for

#: Written by the workflow's onstart hook, relative to its working directory.
PLAN = "logs/workflow/plan.json"
#: A live file not rewritten for this long belongs to a job that is gone.
LIVE_STALE_S = 10.0

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_MESSAGE = re.compile(r"^Job (\d+): ")
_FINISHED = re.compile(r"^Finished jobid: (\d+)")
_ERROR = re.compile(r"^Error in rule (\S+):$")


def write_plan(
    path: str | Path, jobs: Iterable[Mapping[str, Any]], snakemake_log: str | None
) -> None:
    """The onstart hook's record of the run: the jobs it needs and where its log goes."""
    doc = {"started_unix": time.time(), "snakemake_log": snakemake_log, "jobs": list(jobs)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def mark_ended(path: str | Path, outcome: str) -> None:
    """The onsuccess/onerror hooks' note that the run is over, so watch stops."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        doc.update(ended_unix=time.time(), outcome=outcome)
        tmp = Path(f"{p}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
        tmp.replace(p)
    except (OSError, ValueError):  # no plan (watching is a convenience): nothing to mark
        return


def _running(workdir: Path) -> bool:
    """Whether a Snakemake process works in ``workdir`` (its working directory, or its
    ``--directory``), found by its command line, so also while it still parses."""
    import psutil

    here = workdir.resolve()
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmd = proc.info["cmdline"] or []
            if not any(Path(c).name == "snakemake" for c in cmd[:3]):
                continue
            if {"-n", "--dry-run", "--dryrun"} & set(cmd):
                continue  # a dry run writes no plan
            cwd = Path(proc.info["cwd"] or "/")
            named = [cmd[k + 1] for k, c in enumerate(cmd[:-1]) if c in ("-d", "--directory")]
            if (cwd / named[-1] if named else cwd).resolve() == here:
                return True
        except (psutil.Error, OSError):
            continue
    return False


@dataclass
class JobState:
    """One planned job and what the log and its live file say about it."""

    jobid: int
    rule: str
    name: str
    outputs: list[str]
    log: list[str]
    previous_s: float | None
    state: str = "waiting"  # waiting, running, done, failed
    started: float | None = None
    live: dict[str, Any] = field(default_factory=dict)


def _stamp(text: str) -> float | None:
    try:
        return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y").timestamp()
    except ValueError:
        return None


def parse_log(lines: Iterable[str]) -> dict[int, tuple[str, float | None]]:
    """Snakemake's log of a run: jobid -> (started | done | failed, when it started)."""
    out: dict[int, tuple[str, float | None]] = {}
    when: float | None = None
    in_error = False
    for line in lines:
        line = line.rstrip("\n")
        m = _STAMP.match(line)
        if m:
            when, in_error = _stamp(m.group(1)), False
            continue
        if _ERROR.match(line):
            in_error = True
            continue
        m = _JOBID.match(line) or _MESSAGE.match(line)
        if m:
            jid = int(m.group(1))
            if in_error:
                out[jid] = ("failed", out.get(jid, ("", when))[1])
            elif jid not in out:
                out[jid] = ("started", when)
            continue
        m = _FINISHED.match(line)
        if m:
            jid = int(m.group(1))
            out[jid] = ("done", out.get(jid, ("", None))[1])
    return out


def _read_live(job: JobState, now: float) -> dict[str, Any]:
    for out in job.outputs:
        if not out.endswith(".resources.parquet"):
            continue
        path = Path(live_path_for(out))
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if now - float(doc.get("updated_unix", 0)) <= LIVE_STALE_S:
            return doc
    return {}


def snapshot(workdir: str | Path = ".", now: float | None = None) -> tuple[dict, list[JobState]]:
    """The plan and every planned job's state now (paths relative to ``workdir``)."""
    work = Path(workdir)
    plan_path = work / PLAN
    if not plan_path.is_file():
        raise FileNotFoundError(
            f"{plan_path} is missing: start the workflow (`snakemake --cores N`) first; "
            "its onstart hook writes the plan"
        )
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    now = time.time() if now is None else now
    log_path = plan.get("snakemake_log")
    events: dict[int, tuple[str, float | None]] = {}
    if log_path:
        path = Path(log_path) if Path(log_path).is_absolute() else work / log_path
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as fh:
                events = parse_log(fh)
    jobs = []
    for j in plan["jobs"]:
        job = JobState(
            int(j["jobid"]), j["rule"], j["name"], list(j["outputs"]), list(j["log"]),
            j.get("previous_s"),
        )  # fmt: skip
        state, started = events.get(job.jobid, ("waiting", None))
        job.state = "running" if state == "started" else state
        job.started = started
        if job.state == "running":
            job.live = _read_live(
                JobState(job.jobid, "", "", [str(work / o) for o in job.outputs], [], None), now
            )
        jobs.append(job)
    return plan, jobs


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


def _bytes(n: Any) -> str:
    try:
        v = float(n)
    except (TypeError, ValueError):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if v < 1024 or unit == "GiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return "?"


def time_left(jobs: Sequence[JobState], now: float) -> tuple[float, int]:
    """Job time left by the last durations, and how many unfinished jobs have none."""
    left, unknown = 0.0, 0
    for job in jobs:
        if job.state in ("done", "failed"):
            continue
        if job.previous_s is None:
            unknown += 1
            continue
        ran = now - job.started if job.state == "running" and job.started else 0.0
        left += max(job.previous_s - ran, 0.0)
    return left, unknown


def format_snapshot(
    plan: Mapping[str, Any], jobs: Sequence[JobState], now: float, workdir: str | Path = "."
) -> list[str]:
    """A few lines: counts and time left, then one line per running or failed job."""
    counts = {s: sum(j.state == s for j in jobs) for s in ("done", "running", "failed", "waiting")}
    left, unknown = time_left(jobs, now)
    head = (
        f"{counts['done']} of {len(jobs)} jobs done, {counts['running']} running, "
        f"{counts['failed']} failed, {counts['waiting']} waiting; "
        f"about {_duration(left)} of job time left by their last durations"
    )
    if unknown:
        head += f" ({unknown} never ran before: not counted)"
    lines = [head]
    for job in jobs:
        if job.state == "running":
            ran = now - job.started if job.started else None
            line = f"  running  {job.rule} {job.name}  {_duration(ran)}"
            line += f" of ~{_duration(job.previous_s)}" if job.previous_s is not None else ""
            if job.live:
                cpu = job.live.get("cpu_percent")  # absent until a whole interval passed
                line += f"  cpu {float(cpu):.0f}%" if cpu is not None else "  cpu ?"
                line += (
                    f"  rss {_bytes(job.live.get('rss_bytes'))}"
                    f" (peak {_bytes(job.live.get('peak_rss_bytes'))})"
                )
            lines.append(line)
        elif job.state == "failed":
            log = f"  log {job.log[0]}" if job.log else ""
            lines.append(f"  FAILED   {job.rule} {job.name}{log}")
    if "ended_unix" in plan:
        lines.append(f"the run ended: {plan.get('outcome')}")
    if finished(plan, jobs):
        report = Path(workdir, "results", "report", "index.html")
        if report.is_file() and report.stat().st_mtime >= float(plan.get("started_unix", 0)):
            lines.append(f"report: {report.resolve()}")
    return lines


def finished(plan: Mapping[str, Any], jobs: Sequence[JobState]) -> bool:
    """The run is over: its hooks said so, or every job is done or failed."""
    return "ended_unix" in plan or not any(j.state in ("running", "waiting") for j in jobs)


def watch(workdir: str | Path = ".", interval_s: float = 2.0, once: bool = False) -> int:
    """Print a snapshot every ``interval_s`` until the run ends; 1 when a job failed.

    A plan that is missing, or marked ended while a Snakemake process works in the
    directory, is the last run's or none yet: the new run is parsing or building its DAG,
    so watch waits for its plan (or for the ending run to exit)."""
    work = Path(workdir)
    while True:
        now = time.time()
        try:
            plan, jobs = snapshot(work, now)
        except FileNotFoundError:
            if once or not _running(work):
                raise
            plan, jobs = {}, []
        old = not jobs or "ended_unix" in plan
        if not once and old and _running(work):
            stamp = f"[{datetime.fromtimestamp(now):%H:%M:%S}]"
            print(f"{stamp} Snakemake is starting or ending in {work.resolve()}: waiting",
                  flush=True)  # fmt: skip
            time.sleep(interval_s)
            continue
        print(f"[{datetime.fromtimestamp(now):%H:%M:%S}] " + "\n".join(
            format_snapshot(plan, jobs, now, work)), flush=True)  # fmt: skip
        if once or finished(plan, jobs):
            return 1 if any(j.state == "failed" for j in jobs) else 0
        if not _running(work):
            print("no Snakemake process works in this directory: the run stopped")
            return 1
        time.sleep(interval_s)
