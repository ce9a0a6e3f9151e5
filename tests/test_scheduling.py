"""What a config change makes Snakemake rerun, judged by Snakemake's own rerun triggers.

A completed run of the tiny config is faked in a copy of the checkout: every output file
is created, then `snakemake --touch --forceall` records each job's metadata (params,
inputs, code) as a real run would, in seconds rather than the minutes of a real run. A
dry-run after a config change then schedules exactly the jobs Snakemake would rerun.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from forgebench import workflow as fw

TINY = REPO / "tests" / "configs" / "tiny.yaml"
#: What the workflow reads from the checkout when it is parsed (the package is installed).
CHECKOUT_PARTS = ("Snakefile", "rules", "config/schema.yaml", "config/schemas", "scripts", "envs")


def snakemake(cwd: Path, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _directory_outputs(repo: Path) -> re.Pattern:
    """Outputs the rules declare as directory("..."), as one pattern over output paths."""
    literals = re.findall(r'directory\(\s*"([^"]+)"', "".join(
        p.read_text() for p in sorted((repo / "rules").glob("*.smk"))
    ))  # fmt: skip
    alternatives = [re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) for p in literals]
    return re.compile("|".join(alternatives))


def fake_completed_run(repo: Path, *configs: str) -> None:
    """Every output of the configs' DAG exists and is recorded as made by its job."""
    summary = snakemake(repo, "--summary", "--configfile", *configs)
    dirs = _directory_outputs(repo)
    for line in summary.splitlines():
        path = line.split("\t")[0]
        if not path.startswith("results/"):
            continue
        out = repo / path
        if dirs.fullmatch(path):
            out.mkdir(parents=True, exist_ok=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.touch()
    snakemake(repo, "--touch", "--forceall", "--configfile", *configs)


def scheduled(out: str) -> tuple[Counter, list[str]]:
    """The dry-run's job count per rule and each job's wildcards line."""
    counts: Counter = Counter()
    table = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines():
        m = re.fullmatch(r"([a-z_]+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts, re.findall(r"^\s+wildcards: (.+)$", out, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with the mirror beside it, after a (faked) tiny run."""
    root = tmp_path_factory.mktemp("place") / "a"
    repo = root / "forgebench"
    for part in CHECKOUT_PARTS:
        src, dst = REPO / part, repo / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    shutil.copy2(TINY, repo / "tiny.yaml")
    # A folder, not a link to the real mirror: a link would hide the checkout's path from
    # a job parameter that resolved it. A dry-run reads nothing from it, but the workflow
    # checks at parse time that the files it will read are there: each is linked in.
    mirror = root / "shared" / "datasets"
    real = (REPO / "../shared/datasets").resolve()
    for src in real.rglob("*"):
        if src.is_file():
            dst = mirror / src.relative_to(real)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    mirror.mkdir(parents=True, exist_ok=True)
    fake_completed_run(repo, "tiny.yaml")
    assert "Nothing to be done" in snakemake(repo, "-n", "--configfile", "tiny.yaml")
    return repo


NEW_MODELS = {
    "hub": {"source": "hub", "repo_id": "HuggingFaceTB/SmolLM2-135M"},
    "path": {"source": "path", "path": "../my-model"},
}


@pytest.mark.workflow
@pytest.mark.parametrize("source", sorted(NEW_MODELS))
def test_adding_a_model_schedules_only_its_jobs(checkout, tmp_path, source):
    """Its build, its evaluation, its suite scores and its pair; then the report and the
    history, which read every record. No existing evaluation, score or pair reruns."""
    if source == "path":
        folder = checkout.parent / "my-model"
        folder.mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (folder / name).write_text("{}")
    overlay = tmp_path / "more.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "models": {"mine": NEW_MODELS[source]},
                "evaluation": {
                    "models": ["cognate", "mine"],
                    "paired": [{"baseline": "cognate", "candidate": "mine"}],
                },
            }
        )
    )
    out = snakemake(checkout, "-n", "--configfile", "tiny.yaml", str(overlay))
    counts, wildcards = scheduled(out)
    tiny = yaml.safe_load(TINY.read_text())
    assert counts == {
        "model": 1,
        "evaluate_model": 1,
        "score_suite": len(tiny["evaluation"]["suites"]),
        "compare_models": 1,
        "report": 1,
        "history": 1,
        "all": 1,
    }, out[-3000:]
    assert wildcards and all("mine" in w for w in wildcards), wildcards


@pytest.mark.workflow
def test_moving_the_checkout_reruns_nothing(checkout):
    """No job parameter holds the checkout's absolute path (the mirror's included)."""
    place = checkout.parent
    moved = place.with_name("b")
    place.rename(moved)
    try:
        out = snakemake(moved / checkout.name, "-n", "--configfile", "tiny.yaml")
    finally:
        moved.rename(place)
    assert "Nothing to be done" in out, out[-3000:]


def test_job_params_are_equal_for_two_checkout_locations():
    """The mirror and a relative path model, as jobs receive them, do not name where the
    checkout is; absolute paths a person configured are kept as they are."""
    config = {"models": {"mine": {"source": "path", "path": "../models/mine"}}}
    section = {"mirror": "../shared/datasets", "allow_online": False}
    a, b = "/home/one/forgebench", "/srv/elsewhere/deep/forgebench"
    assert fw.job_datasets_config(section, a, a) == fw.job_datasets_config(section, b, b)
    assert fw.job_datasets_config(section, a, a)["mirror"] == "../shared/datasets"
    assert fw.model_job_spec(config, "mine", a, a) == fw.model_job_spec(config, "mine", b, b)
    # --directory elsewhere: the job's working directory, not the checkout, is the base.
    assert fw.job_datasets_config(section, a, "/home/one/run")["mirror"] == "../shared/datasets"
    absolute = {**section, "mirror": "/data/mirror"}
    assert fw.job_datasets_config(absolute, a, a)["mirror"] == "/data/mirror"
