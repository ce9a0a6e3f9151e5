"""The per-job time table of a finished run, from Snakemake's own log.

docs/performance.md records the default run's jobs with their threads and core-seconds;
this reads them from the log Snakemake wrote (``.snakemake/log/<stamp>.snakemake.log``,
the newest by default), so the table is the run's, not a recollection. Core-seconds are
claimed ones (threads × wall seconds, whole seconds as the log stamps them): what the
schedule spends, whether or not a job keeps its cores busy.

    .venv/bin/python tools/job_times.py [LOG] [--top N]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\w+):$")
_FIELD = re.compile(r"^\s+(jobid|threads|wildcards): (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+)(?: \(Rule: (\w+)\))?")
_MESSAGE = re.compile(r"^Job (\d+): (.*)$")  # a rule with a `message:` prints this instead


@dataclass
class Job:
    rule: str
    wildcards: str = ""
    threads: int = 1
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def seconds(self) -> float:
        if self.started is None or self.finished is None:
            return float("nan")
        return (self.finished - self.started).total_seconds()

    @property
    def name(self) -> str:
        return f"{self.rule} {self.wildcards}".strip()


def parse(lines: list[str]) -> dict[int, Job]:
    """jobid -> Job, from a Snakemake log (start stamp, rule, threads, finish stamp)."""
    jobs: dict[int, Job] = {}
    stamp: datetime | None = None
    current: Job | None = None
    for line in lines:
        line = line.rstrip("\n")
        if m := _STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            current = None
        elif m := _RULE.match(line):
            current = Job(m.group(1), started=stamp)
        elif m := _MESSAGE.match(line):
            jobs[int(m.group(1))] = Job("", wildcards=m.group(2)[:60], started=stamp)
        elif current is not None and (m := _FIELD.match(line)):
            key, value = m.groups()
            if key == "jobid":
                jobs[int(value)] = current
            elif key == "threads":
                current.threads = int(value)
            else:
                current.wildcards = value
        elif m := _FINISHED.match(line):
            job = jobs.get(int(m.group(1)))
            if job is not None:
                job.finished = stamp
                if not job.rule:
                    job.rule = m.group(2) or ""
                    job.wildcards = job.wildcards.removeprefix(f"{job.rule}:").strip()
    return jobs


def table(jobs: dict[int, Job], top: int) -> str:
    done = sorted(
        (j for j in jobs.values() if j.finished is not None and j.rule != "all"),
        key=lambda j: -j.seconds,
    )
    if not done:
        return "no finished jobs in this log"
    start = min(j.started for j in done if j.started is not None)
    end = max(j.finished for j in done if j.finished is not None)
    wall = (end - start).total_seconds()
    core_s = sum(j.seconds * j.threads for j in done)
    rows = [
        "| job | threads | s | core-s |",
        "|---|---|---|---|",
        *(
            f"| {j.name} | {j.threads} | {j.seconds:.0f} | {j.seconds * j.threads:.0f} |"
            for j in done[:top]
        ),
    ]
    rest = done[top:]
    if rest:
        rows.append(
            f"| {len(rest)} other jobs | | {sum(j.seconds for j in rest):.0f} "
            f"| {sum(j.seconds * j.threads for j in rest):.0f} |"
        )
    rows.append(
        f"\n{len(done)} jobs; first start to last finish {wall:.0f} s; "
        f"{core_s:.0f} claimed core-seconds"
    )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", nargs="?", help="a .snakemake.log (default: the newest)")
    parser.add_argument("--top", type=int, default=30, help="jobs listed one by one")
    args = parser.parse_args()
    path = Path(args.log) if args.log else None
    if path is None:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            print("no Snakemake log under .snakemake/log", file=sys.stderr)
            return 1
        path = logs[-1]
    print(f"{path}\n")
    print(table(parse(path.read_text().splitlines()), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
