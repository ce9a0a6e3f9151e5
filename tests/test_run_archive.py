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
