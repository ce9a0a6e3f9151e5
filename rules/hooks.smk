# What the workflow's hooks (Snakefile: onstart, onsuccess, onerror) do, as functions:
# the plan `forgebench watch` follows, and the report of a run in which a job failed.
import os
from pathlib import Path

from forgebench import watch as fw_watch


def report_after_failure():
    """In the onerror hook: the history and report rules' work on the tables that exist
    and are current (forgebench.report.not_run says why the rules themselves cannot run).
    Nothing when this run did not ask for the report (a run of a single target)."""
    try:
        return _report_after_failure()
    except Exception as exc:  # the failed job's own error is what the user must see
        return [f"no report of this run ({type(exc).__name__}: {exc})"]


def _report_after_failure():
    from forgebench.report import not_run as fw_not_run

    dag = workflow.dag
    if dag is None or not any(job.rule.name == "report" for job in dag.jobs):
        return []
    # Snakemake's scheduler keeps the jobs that failed (no public API says which did).
    failed = set(getattr(workflow.scheduler, "failed", ()))
    unfinished = {}  # output -> a job this run needed and did not finish
    for job in dag.needrun_jobs(exclude_finished=False):
        if not dag.finished(job):
            unfinished.update({str(f): job for f in job.output})

    def failed_log(job):
        # The log of the job itself when it failed, else of a failed job it needs.
        seen, todo = set(), [job]
        while todo:
            j = todo.pop()
            if j in failed:
                status = (
                    fw_not_run.JOB_FAILED if j is job else fw_not_run.UPSTREAM_FAILED
                )
                return status, str(j.log[0]) if j.log else None
            seen.add(j)
            todo += [d for d in dag.dependencies[j] if d not in seen]
        return fw_not_run.STOPPED, None

    current, missing = [], []
    for path in fw.raw_outputs(config):
        job = unfinished.get(path)
        if job is None and os.path.isfile(path):
            current.append(path)
            continue
        status, log = failed_log(job) if job else (fw_not_run.NO_TABLE, None)
        missing.append(fw_not_run.entry(path, status, log, "results"))
    return fw_not_run.report_after_failure(
        current=current,
        not_run=missing,
        config=config,
        with_history=workflow.is_rule("history"),
        code_dir=str(Path(workflow.basedir, "scripts")),
    )


def write_run_plan(logfiles):
    """In the onstart hook: every job this run needs, for `forgebench watch`, with how
    long it took the last time it ran (Snakemake's metadata of its first output)."""
    from forgebench import watch as fw_watch

    def previous_s(job):
        try:
            meta = workflow.persistence.metadata(job.output[0])
        except Exception:  # no record, or a persistence backend without one
            return None
        if meta is None or meta.starttime is None or meta.endtime is None:
            return None
        return max(0.0, meta.endtime - meta.starttime)

    try:
        jobs = [
            {
                "jobid": job.jobid,
                "rule": job.rule.name,
                "name": "/".join(str(v) for v in job.wildcards),
                "outputs": [str(f) for f in job.output],
                "log": [str(f) for f in job.log],
                "previous_s": previous_s(job) if job.output else 0.0,
            }
            for job in sorted(workflow.dag.needrun_jobs(), key=lambda j: j.jobid)
        ]
        fw_watch.write_plan(fw_watch.PLAN, jobs, logfiles[0] if logfiles else None)
    except Exception as exc:  # watching is a convenience: it never stops the run
        print(f"forgebench watch has no plan of this run ({type(exc).__name__}: {exc})")
