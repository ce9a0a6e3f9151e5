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
from forgebench.registry import BENCHMARKS

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny_cluster.yaml"
SLURM_PROFILE = REPO / "profiles" / "slurm"
GENERIC_PROFILE = REPO / "profiles" / "cluster-generic"
RUN_TIMEOUT = 300  # seconds per Snakemake run; the tiny config takes about 70 s on SLURM
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


class Snakemake:
    """Snakemake on the tiny config in ``workdir``, started at once, stopped by SIGINT after
    RUN_TIMEOUT; its output goes to a file (a pipe could fill while another run is awaited).
    """

    def __init__(self, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        bound = ["timeout", "-s", "INT", "-k", "30", str(RUN_TIMEOUT)]
        smk = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
        cmd = [*bound, *smk, "--directory", str(workdir), "--configfile", str(TINY), *args]
        self.workdir = workdir
        self.log = workdir.with_name(workdir.name + ".out")
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )
        self.returncode: int | None = None
        self.output = ""

    def wait(self) -> Snakemake:
        try:
            self.returncode = self.proc.wait(timeout=RUN_TIMEOUT + 60)
        finally:
            if self.proc.poll() is None:  # `timeout` itself hung: end it (snakemake is its child)
                self.proc.kill()
                self.proc.wait()
        self.output = self.log.read_text(errors="replace")
        assert self.returncode not in (124, 137), (
            f"snakemake still ran after {RUN_TIMEOUT} s (hung?):\n{self.output[-4000:]}"
        )
        return self


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> Snakemake:
    return Snakemake(workdir, *args, env=env).wait()


def profile_config_entries(profile: Path) -> list[str]:
    """The profile's `config:` list: a `--config` on the command line replaces it."""
    return yaml.safe_load((profile / "config.yaml").read_text())["config"]


def profile_limits(profile: Path) -> dict[str, int]:
    """The profile's `limits` (what one node offers), as the workflow reads them."""
    entry = next(e for e in profile_config_entries(profile) if e.startswith("limits="))
    return yaml.safe_load(entry.split("=", 1)[1])


def raw_tables(workdir: Path) -> list[Path]:
    raw = workdir / "results" / "raw"
    return sorted(p for p in raw.rglob("*.parquet") if not p.name.endswith(".resources.parquet"))


def job_records(workdir: Path) -> dict[str, dict]:
    """Provenance of every job's output: each raw table and the report's provenance.json."""
    out = {str(p.relative_to(workdir)): record.read_provenance(p) for p in raw_tables(workdir)}
    report = workdir / "results" / "report" / "provenance.json"
    out[str(report.relative_to(workdir))] = json.loads(report.read_text())
    return out


def snakefile_localrules() -> set[str]:
    """The rules the Snakefile's ``localrules:`` block keeps on the submitting host."""
    text = (REPO / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", text, re.MULTILINE)
    return set(re.findall(r"\w+", block.group(1))) if block else set()


def planned_cluster_jobs(output: str) -> int:
    """Jobs Snakemake planned ("Job stats" table), less those of localrules (`all`)."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE))
    # Local rules print "localrule X:", or "Job N: <message>" where they have a message
    # (`all` does): the Snakefile's `localrules:` block names them either way.
    local = set(re.findall(r"^localrule (\w+):$", output, re.MULTILINE)) | snakefile_localrules()
    assert "all" in local, output[-4000:]  # the aggregation target stays on this host
    return sum(int(n) for rule, n in counts.items() if rule not in local)


def assert_ran_as_slurm_jobs(workdir: Path, output: str, submitted: list[str], cluster, profile):
    """Each planned job was its own SLURM job, COMPLETED on the node, as provenance records."""
    assert len(submitted) == len(set(submitted)) == planned_cluster_jobs(output), output[-4000:]
    records = job_records(workdir)
    ids = {where: prov.get("slurm_job_id") for where, prov in records.items()}
    assert all(ids.values()), f"a job ran outside SLURM: {ids}"
    assert len(set(ids.values())) == len(ids), f"jobs share a SLURM job: {ids}"
    assert set(ids.values()) <= set(submitted), (ids, submitted)
    nodes = {where: prov.get("slurm_node") for where, prov in records.items()}
    assert set(nodes.values()) == {cluster.node_name}, nodes
    squeue = cluster.client(
        "squeue",
        "--noheader",
        "--states=all",
        "--format=%i %T %C %m",
        f"--jobs={','.join(submitted)}",
    )
    jobs = {job: rest for job, *rest in map(str.split, squeue.stdout.splitlines())}
    assert {job: state for job, (state, *_) in jobs.items()} == dict.fromkeys(
        submitted, "COMPLETED"
    ), squeue.stdout + squeue.stderr
    # The rule's threads reached sbatch: every core of a node (limits.cpus) for a
    # timing-sensitive benchmark and for the report (it runs alone at the end, with a
    # worker per core), else one; memory within limits.mem_mb.
    limits = profile_limits(profile)
    for where, job in ids.items():
        bench = records[where].get("benchmark")
        whole_node = where.endswith("report/provenance.json") or (
            bench and BENCHMARKS.get(bench["suite"], bench["name"]).timing_sensitive
        )
        cpus, mem = jobs[job][1], jobs[job][2]
        assert int(cpus) == (limits["cpus"] if whole_node else 1), (where, jobs[job])
        assert mem.endswith("M") and 0 < int(mem[:-1]) <= limits["mem_mb"], (where, mem)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny config through profiles/slurm and, at the same time, locally.

    The local run only gives the reference outputs (schemas, row keys), so it may share the
    cores: it overlaps the SLURM run, whose executor mostly waits between status checks.
    """
    local = Snakemake(tmp_path_factory.mktemp("local-run"), "--cores", "2")
    try:
        workdir = tmp_path_factory.mktemp("slurm-run")
        slurm = snakemake(workdir, "--profile", str(SLURM_PROFILE), env=cluster.env())
    finally:
        local.wait()
    assert slurm.returncode == 0, slurm.output[-6000:]
    assert local.returncode == 0, local.output[-6000:]
    return workdir, slurm, local.workdir


@pytest.fixture(scope="module")
def slurm_run(runs):
    return runs[0], runs[1]


@pytest.fixture(scope="module")
def local_run(runs):
    return runs[2]


def test_slurm_profile_runs_every_job_as_its_own_slurm_job(slurm_run, cluster):
    workdir, proc = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", proc.output)
    assert_ran_as_slurm_jobs(workdir, proc.output, submitted, cluster, SLURM_PROFILE)


def _outputs(workdir: Path) -> dict[str, Path]:
    """Result files by relative path, the history's run id (a hash of each run's own rows)
    generalised so that two runs' files pair up."""
    return {
        re.sub(r"run_id=[0-9a-f]+", "run_id=*", str(p.relative_to(workdir))): p
        for p in (workdir / "results").rglob("*")
        if p.is_file()
    }


def _schema(path: Path) -> list[tuple[str, str]]:
    return [(field.name, str(field.type)) for field in pq.read_schema(path)]


def _row_keys(path: Path) -> set[tuple[str, str, str, str]]:
    frame = record.read_measurements(path)
    return set(frame[["suite", "benchmark", "case", "metric"]].itertuples(index=False, name=None))


def test_slurm_run_matches_a_local_run(slurm_run, local_run):
    workdir, _ = slurm_run
    remote, local = _outputs(workdir), _outputs(local_run)
    assert set(remote) == set(local)
    for rel in sorted(local):
        if rel.endswith(".parquet"):
            assert _schema(remote[rel]) == _schema(local[rel]), rel
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
    target = f"results/raw/{FAIL}.parquet"  # only the failing job: quick
    # --retries 0: the profile's retry would double the time, and after a failure the
    # plugin only exits once its (growing) status-check interval has run out.
    args = ["--profile", str(SLURM_PROFILE), "--retries", "0", "--config", *config, "--", target]
    proc = snakemake(workdir, *args, env=cluster.env())
    assert proc.returncode != 0, proc.output[-4000:]
    assert "Error in rule benchmark:" in proc.output, proc.output[-4000:]
    assert f"wildcards: suite={FAIL.split('/')[0]}, benchmark={FAIL.split('/')[1]}" in proc.output
    assert "failing on purpose" in proc.output  # show-failed-logs printed the job's log
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", proc.output)
    assert not (workdir / target).exists()


def test_cluster_generic_profile(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("generic-run")
    # An absolute profile path: Snakemake resolves the profile's status.py against it, and
    # a relative one would no longer be found once --directory changed the working folder.
    proc = snakemake(workdir, "--profile", str(GENERIC_PROFILE), env=cluster.env())
    assert proc.returncode == 0, proc.output[-6000:]
    submitted = re.findall(r"with external jobid '(\d+)'", proc.output)
    assert_ran_as_slurm_jobs(workdir, proc.output, submitted, cluster, GENERIC_PROFILE)
    logs = sorted(p.stem for p in (workdir / "logs" / "slurm").rglob("*.log"))
    assert logs == sorted(submitted)  # sbatch --output=logs/slurm/{rule}/%j.log
