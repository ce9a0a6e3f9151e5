"""What the Snakefile asks of the package: enabled benchmarks, their outputs and resources.

Kept out of rules/common.smk so that every branch has a test, and light to import (no
pandas) so that an up-to-date workflow starts in well under the 5 s budget.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from forgebench.errors import ForgebenchError
from forgebench.registry import BENCHMARKS, BenchmarkSpec

RAW = "results/raw/{suite}/{benchmark}.parquet"
RAW_RESOURCES = "results/raw/{suite}/{benchmark}.resources.parquet"
SUMMARY = "results/summary/summary.parquet"
RUN = "results/summary/run.json"
REPORT = "results/report/index.html"


def enabled_benchmarks(config: Mapping[str, Any]) -> Iterator[BenchmarkSpec]:
    """Specs of the benchmarks the config switches on, in config order."""
    for suite, section in config.get("suites", {}).items():
        if not section.get("enabled", True):
            continue
        for name, bench_cfg in section.get("benchmarks", {}).items():
            if bench_cfg.get("enabled", True):
                yield BENCHMARKS.get(suite, name)


def benchmark_config(config: Mapping[str, Any], suite: str, name: str) -> dict[str, Any]:
    """The config section a benchmark's ``run`` receives (without the ``enabled`` switch)."""
    section = config["suites"][suite]["benchmarks"][name]
    return {k: v for k, v in section.items() if k != "enabled"}


def raw_outputs(config: Mapping[str, Any]) -> list[str]:
    """Measurement files of every enabled benchmark: the report's inputs."""
    return [RAW.format(suite=s.suite, benchmark=s.name) for s in enabled_benchmarks(config)]


def final_outputs(config: Mapping[str, Any]) -> list[str]:
    """Targets of ``rule all``: the raw results of each enabled suite, the run's entry in
    the history and the report."""
    return [*raw_outputs(config), SUMMARY, RUN, REPORT]


def check_references(config: Mapping[str, Any]) -> None:
    """Checks the schema cannot express: comparisons and targets name things that exist."""
    known = {s.key for s in BENCHMARKS}
    comparisons = {c["name"] for c in config.get("comparisons", [])}
    for i, comp in enumerate(config.get("comparisons", [])):
        key = f"{comp['suite']}/{comp['benchmark']}"
        if key not in known:
            BENCHMARKS.get(comp["suite"], comp["benchmark"])  # raises with close matches
        if comp["baseline"] == comp["candidate"]:
            raise ForgebenchError(f"config key 'comparisons.{i}': baseline and candidate are equal")
    for i, target in enumerate(config.get("targets", [])):
        if "comparison" in target and (
            "benchmark" in target or target["statistic"] != "improvement"
        ):
            raise ForgebenchError(
                f"config key 'targets.{i}': a target on a comparison has statistic "
                "'improvement' and no suite/benchmark/case/metric"
            )
        if "benchmark" in target and target["statistic"] == "improvement":
            raise ForgebenchError(
                f"config key 'targets.{i}': 'improvement' needs a 'comparison', not a benchmark"
            )
        if "comparison" not in target and "benchmark" not in target:
            continue  # a target nothing measures: reported as "not measured"
        if "comparison" in target:
            if target["comparison"] not in comparisons:
                raise ForgebenchError(
                    f"config key 'targets.{i}.comparison': no comparison named "
                    f"{target['comparison']!r}; defined: {sorted(comparisons)}"
                )
        elif f"{target['suite']}/{target['benchmark']}" not in known:
            BENCHMARKS.get(target["suite"], target["benchmark"])


def wildcard_pattern(values: list[str]) -> str:
    """A wildcard constraint matching exactly the given names."""
    return "|".join(sorted(values))
