#!/usr/bin/env python3
"""Status of one SLURM job for Snakemake's cluster-generic executor: running/success/failed.

    status.py JOBID      (JOBID as `sbatch --parsable` printed it, `ID` or `ID;CLUSTER`)

squeue first: it needs no accounting database and knows finished jobs for MinJobAge
seconds (300 by default). sacct next, where the site runs slurmdbd. A job neither knows is
reported failed. When SLURM does not answer (a busy controller), it prints "running" so
Snakemake asks again later: any non-zero exit would stop the whole workflow.
"""

from __future__ import annotations

import subprocess
import sys

RUNNING = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "RESV_DEL_HOLD",
    "SIGNALING",
    "STAGE_OUT",
    "SUSPENDED",
    "STOPPED",
    "SPECIAL_EXIT",
}
SUCCESS = {"COMPLETED"}
# everything else is failed: FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...


def _query(cmd: list[str]) -> tuple[str | None, bool]:
    """(first state word, whether SLURM answered at all)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"status.py: {cmd[0]}: {exc}", file=sys.stderr)
        return None, False
    if proc.returncode != 0:
        # "Invalid job id specified": SLURM answered, it does not know the job
        answered = "invalid job id" in proc.stderr.lower()
        if not answered:
            print(f"status.py: {cmd[0]}: {proc.stderr.strip()}", file=sys.stderr)
        return None, answered
    words = proc.stdout.split()
    # sacct prints "CANCELLED by 0"; squeue one word per job
    return (words[0].rstrip("+") if words else None), True


def status(job_id: str) -> str:
    job_id = job_id.split(";")[0].strip()
    state, squeue_answered = _query(
        ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={job_id}"]
    )
    sacct_answered = False
    if state is None:
        state, sacct_answered = _query(
            [
                "sacct",
                "--noheader",
                "--allocations",
                "--parsable2",
                "--format=State",
                f"--jobs={job_id}",
            ]
        )
    if state is None:
        if not squeue_answered and not sacct_answered:
            return "running"  # SLURM did not answer: ask again later
        print(f"status.py: job {job_id} unknown to squeue and sacct", file=sys.stderr)
        return "failed"
    if state in RUNNING:
        return "running"
    if state in SUCCESS:
        return "success"
    return "failed"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: status.py JOBID")
    print(status(sys.argv[1]))
