"""A newcomer follows the README: its examples for an own model, an own lm-eval task on
local data, an own service and an own database are run as the README prints them, so this
test breaks when the README changes.

Each example is the README's fenced ``bash`` block that writes ``my-model.yaml``,
``my-task.yaml``, ``my-service.yaml`` or ``my-database.yaml``, run by bash in a sandbox
checkout (the repository's files linked, its own results/) whose default config is the
tiny test config (tests/configs/tiny.yaml over config/config.yaml), so real runs take
seconds. The only edits are the ones the README asks of a reader, plus one: the model path
is a tiny model made here, and the model and task examples run as dry runs (an evaluation
is minutes of CPU; its schedule is what is checked). Nothing needs a GPU or the internet;
the database example needs the Debian package postgresql (skipped without it, failing under
CI=true).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"
LINKED = ("rules", "scripts", "src", "envs", "profiles", "report", "suites", "tests", ".venv")

pytestmark = [pytest.mark.workflow, pytest.mark.timeout(900)]


def readme_example(writes: str) -> str:
    """The README's one fenced bash block that writes the file ``writes``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if f"> {writes}" in b]
    assert len(blocks) == 1, f"the README has {len(blocks)} bash blocks writing {writes}"
    return blocks[0]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The repository as a newcomer's clone, with the tiny config as its default."""
    from snakemake.utils import update_config

    from forgebench.config import load_yaml

    root = tmp_path_factory.mktemp("clone")
    for name in LINKED:
        (root / name).symlink_to(REPO / name)
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    (root / "config").mkdir()
    for item in (REPO / "config").iterdir():
        if item.name != "config.yaml":
            (root / "config" / item.name).symlink_to(item)
    config = load_yaml(REPO / "config" / "config.yaml")
    update_config(config, load_yaml(TINY))
    # The dataset mirror is found from the repository root; this clone lies elsewhere.
    config["datasets"]["mirror"] = str((REPO / config["datasets"]["mirror"]).resolve())
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def run_example(block: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    script = cwd / "example.sh"
    script.write_text(block)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-euo", "pipefail", str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def test_own_model(checkout, tmp_path):
    from tiny_models import make_tiny_llama

    model = make_tiny_llama(tmp_path / "my-model")
    block = readme_example("my-model.yaml")
    assert "/data/my-model" in block and ".venv/bin/snakemake --cores 2" in block
    block = block.replace("/data/my-model", str(model))  # the README: "your folder"
    block = block.replace(".venv/bin/snakemake --cores 2", ".venv/bin/snakemake -n --cores 2")
    out = run_example(block, checkout).stdout
    stats = out.split("Job stats:", 1)[1].split("total", 1)[0]
    rules = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    # The model's reference job, its evaluation and suite scores, report and history;
    # no benchmark, compression or other model.
    assert {"model", "evaluate_model", "report", "history"} <= set(rules)
    assert rules["evaluate_model"] == "1" and rules["model"] == "1"
    assert not {"benchmark", "compress_model", "compare_models"} & set(rules)
    assert "results/raw/eval/mine.parquet" in out and "cognate" not in out


def test_own_task(checkout):
    """The README's lm-eval built-in task on a local JSONL file, as a dry run: the one
    configured model's evaluation reads the file (a job input) and nothing else is built."""
    block = readme_example("my-task.yaml")
    assert ".venv/bin/snakemake --cores 2" in block
    block = block.replace(".venv/bin/snakemake --cores 2", ".venv/bin/snakemake -n --cores 2")
    out = run_example(block, checkout).stdout
    stats = out.split("Job stats:", 1)[1].split("total", 1)[0]
    rules = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    assert rules["evaluate_model"] == "1", rules
    assert not {"benchmark", "compress_model", "compare_models"} & set(rules)
    job = out.split("rule evaluate_model:", 1)[1].split("wildcards:", 1)[0]
    assert "my-data/sciq-test.jsonl" in job, job
    (checkout / "my-data" / "sciq-test.jsonl").unlink()  # the parse-time check names it
    proc = subprocess.run([".venv/bin/snakemake", "-n", "--cores", "1", "--configfile",
                           "config/eval-only.yaml", "my-task.yaml"], cwd=checkout,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert "'evaluation.local_data.sciq'" in said and "sciq-test.jsonl" in said, said


def test_own_service(checkout):
    from forgebench.record import read_measurements

    out = run_example(readme_example("my-service.yaml"), checkout).stdout
    # The README's last command prints the rows by case and status; the user's server
    # answered (ok rows) in both load scenarios the overlay names.
    assert re.search(r"^load_\S+\s+ok\s+\d+$", out, re.M), out
    assert re.search(r"^spike\s", out, re.M), out
    rows = read_measurements(checkout / "results/raw/service/load_scenarios.parquet")
    ok = rows[rows["status"] == "ok"]
    assert {"load", "spike"} <= {c.split("_")[0] for c in ok["case"]}
    for table in ("responsiveness", "load_scenarios"):
        rows = read_measurements(checkout / f"results/raw/service/{table}.parquet")
        targets = {json.loads(p).get("target") for p in rows["params"]}
        assert "external" in targets  # the README's server was measured, not the built-in app


def test_own_database(checkout):
    from postgres_server import find_binaries

    pytest.importorskip("psycopg")
    if find_binaries() is None:  # a skip fails under CI=true (tests/conftest.py)
        pytest.skip("PostgreSQL binaries not found (Debian package postgresql)")
    out = run_example(readme_example("my-database.yaml"), checkout).stdout
    for case in ("query:tables", "query:timeout_settings"):
        # The overlay's 50 executions (and the warm-up row), every one ok.
        found = re.search(rf"^{re.escape(case)}\s+latency\s+ok\s+(\d+)$", out, re.M)
        assert found and int(found.group(1)) >= 50, out
    assert "error" not in out and "mismatch" not in out, out
