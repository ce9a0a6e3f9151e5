"""Stored runs exported and imported by path: a CI job's baseline from another machine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from forgebench import cli, history, run_archive
from forgebench.errors import ForgebenchError
from tests.test_history import raw_frame, write_raw


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, str]:
    frame = raw_frame({("persistent", "rtt", "s"): np.linspace(1e-3, 2e-3, 20)})
    raw = write_raw(tmp_path / "a", frame)
    root = tmp_path / "a" / "history"
    return root, history.append_run([raw], root)


def test_export_then_import_gives_the_same_run(stored, tmp_path):
    root, rid = stored
    archive = run_archive.export_run(root, "latest", tmp_path / "out")
    assert archive.name == f"run_id={rid}.tar.gz"
    other = tmp_path / "b" / "history"
    assert run_archive.import_run(other, archive) == rid
    rows, prov = history.load_run(other, rid)
    assert history.run_id_of(rows) == rid and prov["run_id"] == rid
    assert run_archive.import_run(other, archive) == rid  # twice: nothing added
    assert list(history.list_runs(other)["run_id"]) == [rid]


def test_an_archive_changed_after_export_is_refused(stored, tmp_path):
    root, rid = stored
    path = root / f"run_id={rid}" / "measurements.parquet"
    table = pq.read_table(path)
    values = table.column("value").to_numpy(zero_copy_only=False).copy()
    values[1] *= 0.5  # a faster baseline, edited by hand
    table = table.set_column(table.schema.get_field_index("value"), "value", [values])
    pq.write_table(table, path)
    archive = run_archive.export_run(root, rid, tmp_path / "x.tar.gz")
    with pytest.raises(ForgebenchError, match="changed after export"):
        run_archive.import_run(tmp_path / "c" / "history", archive)
    assert not (tmp_path / "c" / "history" / f"run_id={rid}").exists()


def test_an_archive_with_paths_outside_its_run_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ForgebenchError, match="outside its run folder"):
        run_archive.import_run(tmp_path / "h", archive)
    assert not (tmp_path / "escape.txt").exists()


def test_cli_history_export_and_import(stored, tmp_path, capsys):
    root, rid = stored
    results = root.parent
    assert (
        cli.main(["history", "--results", str(results), "export", "latest", "--to", str(tmp_path)])
        == 0
    )
    archive = Path(capsys.readouterr().out.strip())
    assert archive.is_file()
    assert cli.main(["history", "--results", str(tmp_path / "new"), "import", str(archive)]) == 0
    assert rid in capsys.readouterr().out
    assert cli.main(["history", "--results", str(tmp_path / "new")]) == 0
    assert rid in capsys.readouterr().out


def test_cli_compare_shows_changes_first_and_filters(tmp_path, capsys):
    """Only changed metrics by default (the rest counted), --all, filters, JSON and Markdown."""
    import json

    from tests.test_history import CONFIG, build_history

    results = tmp_path / "results"
    root, ids = build_history(tmp_path, [1.0, 1.3])
    results.mkdir()
    root.rename(results / "history")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    base = ["compare", ids[0], ids[1], "--results", str(results), "--config", str(config)]

    assert cli.main([*base, "--format", "json", "--all"]) == 0
    every = json.loads(capsys.readouterr().out)
    verdicts = {r["verdict"] for r in every["comparisons"]}
    assert "suspected regression" in verdicts and every["not_shown"] == {}

    assert cli.main([*base, "--format", "json"]) == 0
    changed = json.loads(capsys.readouterr().out)
    shown = changed["comparisons"]
    assert shown and all(r["verdict"] not in ("no change", "inconclusive") for r in shown)
    assert len(shown) + sum(changed["not_shown"].values()) == len(every["comparisons"])

    assert cli.main([*base, "--metric", "nope", "--all"]) == 0
    assert "no metric to show" in capsys.readouterr().out

    assert cli.main([*base, "--format", "markdown", "--verdict", "suspected regression"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| suite/benchmark |") and len(table) >= 3
    assert all("suspected regression" in line for line in table[2:] if line.startswith("|"))
