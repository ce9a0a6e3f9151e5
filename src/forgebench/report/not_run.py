"""Tables a run did not produce, the last good copy of each, and the report after a
failed job.

Why this exists: Snakemake starts a job only once all its inputs exist, so with one
benchmark failing the report and history rules never run, ``--keep-going`` or not. The
workflow's ``onerror`` hook (rules/report.smk) therefore builds the history entry and the
report in-process from the tables that exist and are current, through
:func:`report_after_failure`; the report lists each missing table, why it is missing and
its job's log, and ``results/summary/not_run.json`` keeps that list so that
``forgebench report`` and ``forgebench gate`` see the same thing later.

Snakemake also deletes a job's outputs before it reruns and after it fails, so the
previous run's table of a failing job would be lost. Every report therefore keeps a hard
link (a copy where links are not possible) to each table it read under
``results/archive/``; a report missing a table points to that last good copy, marked
stale, and uses none of its rows in a verdict (its numbers are from another run).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from forgebench.atomic import write_text_atomic
from forgebench.report.format import relative_to_results

log = logging.getLogger(__name__)

#: In results/summary/: the tables the last report found missing (a JSON list).
NOT_RUN_FILE = "not_run.json"
#: Under results/: the last good copy of every table a report read, same layout as raw/.
ARCHIVE_DIR = "archive"

JOB_FAILED = "not run: job failed"
UPSTREAM_FAILED = "not run: a job it needs failed"
NO_TABLE = "not run: no table"
#: A job the run needed that never started and needs no failed job: Snakemake stopped
#: scheduling (a failure without --keep-going, or an interrupted run).
STOPPED = "not run: the run stopped"

ENTRY_KEYS = ("table", "suite", "benchmark", "status", "log", "last_good")


def resources_of(table: str | Path) -> Path:
    """The sampler table the benchmark rule writes beside a raw table."""
    p = Path(table)
    return p.with_name(p.name.removesuffix(".parquet") + ".resources.parquet")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # raw tables are replaced by rename, never rewritten in place
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def keep_last_good(paths: Iterable[str | Path], results: str | Path) -> list[Path]:
    """Keep each raw table (and its resource table) under ``results/archive/``, replacing
    the copy of an earlier run; return the archived tables. A hard link costs no space
    and survives Snakemake deleting the original before its job reruns."""
    out = []
    for path in paths:
        src = Path(path)
        dst = Path(results, ARCHIVE_DIR, relative_to_results(str(src)))
        for a, b in ((src, dst), (resources_of(src), resources_of(dst))):
            if a.is_file() and not (b.exists() and os.path.samefile(a, b)):
                _link_or_copy(a, b)
        out.append(dst)
    return out


def _suite_and_name(table: str) -> tuple[str, str]:
    """``raw/<suite>/.../<name>.parquet`` as (suite, name)."""
    parts = Path(table).parts
    rest = parts[parts.index("raw") + 1 :] if "raw" in parts else parts
    suite = rest[0] if len(rest) > 1 else ""
    name = "/".join(rest[1:]).removesuffix(".parquet") if len(rest) > 1 else rest[-1]
    return suite, name


def entry(
    table: str | Path, status: str, log_path: str | None, results: str | Path
) -> dict[str, Any]:
    """One missing table as the report, not_run.json and the gate show it. ``table`` and
    ``last_good`` are relative to the results folder, ``log`` to the working directory."""
    key = relative_to_results(str(table))
    suite, name = _suite_and_name(key)
    archived = Path(results, ARCHIVE_DIR, key)
    return {
        "table": key,
        "suite": suite,
        "benchmark": name,
        "status": status,
        "log": log_path,
        "last_good": f"{ARCHIVE_DIR}/{key}" if archived.is_file() else None,
    }


def read_not_run(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a not_run.json; none when it is absent."""
    p = Path(path)
    if not p.is_file():
        return []
    return [{k: e.get(k) for k in ENTRY_KEYS} for e in json.loads(p.read_text(encoding="utf-8"))]


def write_not_run(path: str | Path, entries: Sequence[Mapping[str, Any]]) -> None:
    """Write the list (empty after a complete run, so an old failure never lingers)."""
    rows = sorted(({k: e.get(k) for k in ENTRY_KEYS} for e in entries), key=lambda e: e["table"])
    write_text_atomic(path, json.dumps(rows, indent=2, sort_keys=True) + "\n")


def split_present(
    expected: Sequence[str | Path], results: str | Path
) -> tuple[list[Path], list[dict[str, Any]]]:
    """For ``forgebench report``: the expected tables that exist and are current, and an
    entry for each one that is not. A reason recorded by the workflow (not_run.json) is
    kept for a table still missing, or present but not rewritten since (an outdated table
    whose job never started); any other missing table is "not run: no table"."""
    recorded_path = Path(results, "summary", NOT_RUN_FILE)
    recorded = {e["table"]: e for e in read_not_run(recorded_path)}
    written = recorded_path.stat().st_mtime if recorded_path.is_file() else 0.0
    present, missing = [], []
    for path in map(Path, expected):
        known = recorded.get(relative_to_results(str(path)))
        if path.is_file() and not (known and path.stat().st_mtime <= written):
            present.append(path)
        elif known:
            missing.append(entry(path, known["status"], known["log"], results))
        else:
            missing.append(entry(path, NO_TABLE, None, results))
    return present, missing


def report_after_failure(
    *,
    current: Sequence[str],
    not_run: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    with_history: bool,
    results: str | Path = "results",
    code_dir: str | None = None,
    log_path: str | Path = "logs/report/after-failure.log",
) -> list[str]:
    """The history and report rules' work on the tables that exist and are current,
    after a failed job; return the lines the workflow prints. Runs in the Snakemake
    process (one worker: a spawned pool would re-import Snakemake's main module)."""
    from forgebench.history import update_history
    from forgebench.report.build import build_report

    results = Path(results)
    summary = results / "summary"
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(Path(log_path), mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("forgebench")
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    lines = []
    try:
        if not current:
            return [f"no raw table exists: no report (details in {log_path})"]
        history_ok = False
        if with_history:
            try:
                update_history(
                    list(current),
                    str(results / "history"),
                    run_json=summary / "run.json",
                    comparison_path=summary / "baseline_comparison.parquet",
                    regressions_path=summary / "regressions.parquet",
                    history_cfg=config["history"],
                    statistics=config["statistics"],
                    seed=int(config["seed"]),
                )
                history_ok = True
            except Exception as exc:  # the report still shows what exists
                log.exception("history after a failed job")
                lines.append(f"history not updated ({type(exc).__name__}: {exc})")
        build_report(
            list(current),
            **report_paths(results, history=history_ok),
            code_dir=code_dir,
            statistics=config["statistics"],
            comparisons=config["comparisons"],
            targets=config["targets"],
            seed=int(config["seed"]),
            not_run=not_run,
        )
        keep_last_good(current, results)
        lines.append(
            f"report of the {len(current)} tables that exist written to "
            f"{results / 'report' / 'index.html'}; {len(not_run)} missing: "
            + ", ".join(f"{e['table']} ({e['status']})" for e in not_run[:5])
            + (" ..." if len(not_run) > 5 else "")
        )
    except Exception as exc:  # the workflow's own error is what the user must see first
        log.exception("report after a failed job")
        lines.append(
            f"the report could not be rebuilt ({type(exc).__name__}: {exc}; {log_path}); "
            f"{results / 'report' / 'index.html'} is from an earlier run"
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
    return lines


def report_paths(results: str | Path, *, history: bool) -> dict[str, Any]:
    """Where the report rule writes under ``results``, and the history inputs it reads
    when the history exists: one layout for the rule, the CLI and the onerror hook."""
    results = Path(results)
    summary, report = results / "summary", results / "report"
    paths: dict[str, Any] = {
        "summary_path": summary / "summary.parquet",
        "verdicts_path": summary / "verdicts.parquet",
        "not_run_path": summary / NOT_RUN_FILE,
        "provenance_path": report / "provenance.json",
        "html_path": report / "index.html",
        "markdown_path": report / "summary.md",
        "json_path": report / "summary.json",
        "plots_dir": report / "plots",
        "pages_dir": report / "pages",
    }
    if history:
        paths.update(
            run_info_path=str(summary / "run.json"),
            baseline_comparison_path=str(summary / "baseline_comparison.parquet"),
            regressions_path=str(summary / "regressions.parquet"),
            history_dir=str(results / "history"),
        )
    return paths
