"""The environment section: where every raw table was measured (host, CPU, Python,
packages, git commit), and what each benchmark ran with.

Why: a number is only comparable with another measured on the same machine and code.
The main page shows what every table shares; pages/environment.html lists each table's
own provenance and configuration.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench import plots, record
from forgebench.report.format import relative_to_results

ENV_KEYS = (
    "host",
    "slurm_node",
    "platform",
    "cpu_model",
    "cpu_count_logical",
    "cpu_count_usable",
    "memory_total_bytes",
    "gpus",
    "nvidia_driver",
    "python",
    "git_commit",
    "git_dirty",
    "seed",
    "config_hash",
)


def environment(paths: Sequence[str]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """Keys equal across every raw table (packages last), and per table what it was run
    with."""
    provs = [(p, record.read_provenance(p)) for p in paths]
    common: list[tuple[str, str]] = []
    for key in ENV_KEYS:
        values = {json.dumps(prov.get(key), sort_keys=True, default=str) for _, prov in provs}
        if len(values) == 1 and provs and key in provs[0][1]:
            common.append((key, str(provs[0][1][key])))
        elif len(values) > 1:
            common.append((key, "differs between tables (see the environment page)"))
    if provs:
        packages = provs[0][1].get("packages", {})
        common += [(f"package {k}", str(v)) for k, v in sorted(packages.items())]
    per_input = []
    for path, prov in provs:
        bench = prov.get("benchmark", {})
        per_input.append(
            {
                "path": relative_to_results(path),
                "benchmark": f"{bench.get('suite', '?')}/{bench.get('name', '?')} "
                f"v{bench.get('version', '?')}",
                "seed": str(prov.get("seed", "—")),
                "git": f"{prov.get('git_commit', '—')}"
                + (" (dirty)" if prov.get("git_dirty") else ""),
                "host": f"{prov.get('host', '—')} ({prov.get('cpu_model', '—')})",
                "config_hash": str(prov.get("config_hash", "—"))[:12],
                "config": json.dumps(bench.get("config", {}), sort_keys=True, indent=1),
            }
        )
    return common, per_input


def resource_tables(
    measurement_paths: Sequence[str], resource_paths: Sequence[str] | None
) -> dict[tuple[str, str], pd.DataFrame]:
    """The sampler tables beside the raw tables, keyed by (suite, benchmark)."""
    if resource_paths is None:
        derived = [p[: -len(".parquet")] + ".resources.parquet" for p in measurement_paths]
        resource_paths = [p for p in derived if Path(p).is_file()]
    tables = {}
    for path in sorted(str(p) for p in resource_paths):
        bench = record.read_provenance(path).get("benchmark", {})
        name = str(bench.get("name", Path(path).name.split(".")[0]))
        if bench.get("job_subject"):  # one job per model of one benchmark (evaluations)
            name = f"{name} ({bench['job_subject']})"
        key = (str(bench.get("suite", Path(path).parent.name)), name)
        tables[key] = record.read_resources(path)
    return tables


def plan_resource_figures(
    measurement_paths: Sequence[str],
    resource_paths: Sequence[str] | None,
    plots_dir: str | Path,
    jobs: list[plots.FigureJob],
) -> list[plots.Figure]:
    """Per-job resource timelines (RSS and CPU over time), for pages/resources.html only:
    drawn on request (``resource_figures``), since a run has one per job."""
    return plots.resource_timelines(
        resource_tables(measurement_paths, resource_paths), plots_dir, jobs=jobs
    )
