"""The unchanged workflow on a real one-node SLURM cluster, through the Snakemake profiles.

tests/cluster/slurm_cluster.py starts munged, slurmctld and slurmd under a temporary folder
(installing Debian's packages first when missing, which needs root). The tiny config then
runs through profiles/slurm (snakemake-executor-plugin-slurm) and profiles/cluster-generic
(sbatch + status.py), and locally for comparison. Each SLURM run is bounded by
`timeout -s INT` (Snakemake stops on SIGINT, cancelling its jobs), so a lost job fails the
test instead of hanging it. Skips only where SLURM is missing and cannot be installed;
under CI=true that skip is a failure (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from forgebench import record

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
SLURM_PROFILE = REPO / "profiles" / "slurm"
GENERIC_PROFILE = REPO / "profiles" / "cluster-generic"
RUN_TIMEOUT = 300  # seconds per Snakemake run; the tiny config takes about 30 s on SLURM
SLURM_JOBS = 3  # benchmark network/echo_latency, benchmark harness/sampler_overhead, report
FAIL = "harness/sampler_overhead"

pytestmark = [pytest.mark.workflow, pytest.mark.needs("slurm")]


def _load_cluster_module():
    path = REPO / "tests" / "cluster" / "slurm_cluster.py"
    spec = importlib.util.spec_from_file_location("forgebench_test_slurm_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


slurm_cluster = _load_cluster_module()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = slurm_cluster.missing_packages()
    if missing and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        pytest.skip(f"SLURM packages missing ({' '.join(missing)}); installing needs root + apt")
    with slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None):
    """Snakemake on the tiny config in ``workdir``, stopped by SIGINT after RUN_TIMEOUT."""
    cmd = [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        str(RUN_TIMEOUT),
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(TINY),
        *args,
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT + 60
    )
    proc.output = proc.stdout + proc.stderr
    assert proc.returncode not in (124, 137), (
        f"snakemake still ran after {RUN_TIMEOUT} s (hung?):\n{proc.output[-4000:]}"
    )
    return proc


def profile_config_entries(profile: Path) -> list[str]:
    """The profile's `config:` list: a `--config` on the command line replaces it."""
    return yaml.safe_load((profile / "config.yaml").read_text())["config"]


def raw_tables(workdir: Path) -> list[Path]:
    raw = workdir / "results" / "raw"
    return sorted(p for p in raw.rglob("*.parquet") if not p.name.endswith(".resources.parquet"))


def job_records(workdir: Path) -> dict[str, dict]:
    """Provenance of every job's output: each raw table and the report's provenance.json."""
    out = {str(p.relative_to(workdir)): record.read_provenance(p) for p in raw_tables(workdir)}
    report = workdir / "results" / "report" / "provenance.json"
    out[str(report.relative_to(workdir))] = json.loads(report.read_text())
    return out


def assert_ran_as_slurm_jobs(workdir: Path, submitted: list[str], cluster) -> None:
    """Every job's provenance names its own SLURM job, one Snakemake submitted, on the node."""
    records = job_records(workdir)
    assert len(records) == SLURM_JOBS, sorted(records)
    ids = {where: prov.get("slurm_job_id") for where, prov in records.items()}
    assert all(ids.values()), f"a job ran outside SLURM: {ids}"
    assert len(set(ids.values())) == SLURM_JOBS, f"jobs share a SLURM job: {ids}"
    assert set(ids.values()) <= set(submitted), (ids, submitted)
    nodes = {where: prov.get("slurm_node") for where, prov in records.items()}
    assert set(nodes.values()) == {cluster.node_name}, nodes
    squeue = cluster.client(
        "squeue", "--noheader", "--states=all", "--format=%i %T", f"--jobs={','.join(ids.values())}"
    )
    states = dict(line.split() for line in squeue.stdout.splitlines())
    assert states == dict.fromkeys(ids.values(), "COMPLETED"), squeue.stdout + squeue.stderr


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-run")
    proc = snakemake(workdir, "--profile", str(SLURM_PROFILE), env=cluster.env())
    assert proc.returncode == 0, proc.output[-6000:]
    return workdir, proc


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local-run")
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.output[-6000:]
    return workdir


def test_slurm_profile_runs_every_job_as_its_own_slurm_job(slurm_run, cluster):
    workdir, proc = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", proc.output)
    assert len(submitted) == SLURM_JOBS, proc.output[-4000:]
    assert_ran_as_slurm_jobs(workdir, submitted, cluster)
    assert "localrule all:" in proc.output  # the aggregation target stays on this host


def _outputs(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if p.is_file()}


def _schema(path: Path) -> list[tuple[str, str]]:
    return [(field.name, str(field.type)) for field in pq.read_schema(path)]


def _row_keys(path: Path) -> set[tuple[str, str, str, str]]:
    frame = record.read_measurements(path)
    return set(frame[["suite", "benchmark", "case", "metric"]].itertuples(index=False, name=None))


def test_slurm_run_matches_a_local_run(slurm_run, local_run):
    workdir, _ = slurm_run
    assert _outputs(workdir) == _outputs(local_run)
    for rel in sorted(_outputs(local_run)):
        if rel.endswith(".parquet"):
            assert _schema(workdir / rel) == _schema(local_run / rel), rel
    assert [p.relative_to(workdir) for p in raw_tables(workdir)] == [
        p.relative_to(local_run) for p in raw_tables(local_run)
    ]
    for table in raw_tables(local_run):
        rel = table.relative_to(local_run)
        assert _row_keys(workdir / rel) == _row_keys(table), rel


def test_failing_job_is_reported_not_hung(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-fail")
    # Snakemake parses `{fail_benchmarks: [a/b]}` with YAML, so the list arrives as a list.
    # A `--config` replaces the profile's `config:` list, so its limits are given again.
    config = [*profile_config_entries(SLURM_PROFILE), f"testing={{fail_benchmarks: [{FAIL}]}}"]
    proc = snakemake(
        workdir, "--profile", str(SLURM_PROFILE), "--config", *config, env=cluster.env()
    )
    assert proc.returncode != 0, proc.output[-4000:]
    assert re.search(r"Error in rule benchmark:", proc.output), proc.output[-4000:]
    assert "wildcards: suite=harness, benchmark=sampler_overhead" in proc.output
    assert "failing on purpose" in proc.output  # show-failed-logs printed the job's log
    # keep-going: the other benchmark still ran, as a SLURM job; nothing downstream did
    echo = workdir / "results" / "raw" / "network" / "echo_latency.parquet"
    assert record.read_provenance(echo).get("slurm_job_id")
    assert not (workdir / "results" / "raw" / "harness" / "sampler_overhead.parquet").exists()
    assert not (workdir / "results" / "summary" / "summary.parquet").exists()


def test_cluster_generic_profile(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("generic-run")
    # An absolute profile path: Snakemake resolves the profile's status.py against it, and
    # a relative one would no longer be found once --directory changed the working folder.
    proc = snakemake(workdir, "--profile", str(GENERIC_PROFILE), env=cluster.env())
    assert proc.returncode == 0, proc.output[-6000:]
    submitted = re.findall(r"with external jobid '(\d+)'", proc.output)
    assert len(submitted) == SLURM_JOBS, proc.output[-4000:]
    assert_ran_as_slurm_jobs(workdir, submitted, cluster)
    logs = sorted(p.stem for p in (workdir / "logs" / "slurm").rglob("*.log"))
    assert logs == sorted(submitted)  # sbatch --output=logs/slurm/{rule}/%j.log
