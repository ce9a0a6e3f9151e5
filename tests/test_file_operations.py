"""system/file_operations: every operation a row, failures rows too, fio beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forgebench.errors import ForgebenchError
from forgebench.system import file_operations as fo


def _cfg(tmp_path: Path, **over: object) -> dict:
    cfg = {
        "directory": str(tmp_path / "files"),
        "sizes": [4096, 65536],
        "files": [4, 2],
        "block_bytes": 16384,
        "rounds": 2,
        "warmup_rounds": 0,
    }
    cfg.update(over)
    return cfg


def test_every_operation_of_every_file_is_a_row_and_the_directory_is_removed(
    tmp_path: Path,
) -> None:
    df = fo.run(_cfg(tmp_path), seed=3)
    lat = df[df.metric == "latency"]
    for op in fo.OPS:
        assert len(lat[lat.case == f"python_{op}_4KiB"]) == 4 * 2
        assert len(lat[lat.case == f"python_{op}_64KiB"]) == 2 * 2
    assert (lat.status == "ok").all() and (lat.value > 0).all()
    # the save is the write+fsync and the rename, file by file
    key = ["repetition", "sample"]
    parts = (
        lat[lat.case == "python_write_fsync_4KiB"].set_index(key).value
        + lat[lat.case == "python_rename_4KiB"].set_index(key).value
    )
    whole = lat[lat.case == "python_write_fsync_rename_4KiB"].set_index(key).value
    assert (whole - parts).abs().max() < 1e-3
    assert not (tmp_path / "files").exists()


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (tools/setup.sh)")
def test_fio_moves_the_same_bytes_and_the_ratio_is_paired_by_round(tmp_path: Path) -> None:
    df = fo.run(_cfg(tmp_path, sizes=[1 << 20], files=[8], block_bytes=1 << 20), seed=4)
    fio = df[df.case == "fio_write_fsync_1MiB"]
    assert len(fio) == 2 and (fio.status == "ok").all()
    ours = df[(df.case == "python_write_fsync_1MiB") & (df.metric == "throughput")]
    ratio = df[df.case == "python_vs_fio_write_fsync_1MiB"]
    for r in (0, 1):
        row = ratio[ratio.repetition == r]
        if row.empty:  # fio's whole-millisecond runtime was too short to divide by
            continue
        expect = ours[ours.repetition == r].value.item() / fio[fio.repetition == r].value.item()
        assert row.value.item() == pytest.approx(expect)


def test_a_read_that_returns_other_bytes_is_a_mismatch_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fo._read_file

    def corrupt(path: Path, size: int, block: int) -> bytes:
        data = bytearray(real(path, size, block))
        data[0] ^= 0xFF
        return bytes(data)

    monkeypatch.setattr(fo, "_read_file", corrupt)
    df = fo.run(_cfg(tmp_path, sizes=[4096], files=[3], rounds=1), seed=5)
    reads = df[(df.case == "python_read_4KiB") & (df.metric == "latency")]
    assert (reads.status == "mismatch").all() and reads.value.isna().all()
    tput = df[(df.case == "python_read_4KiB") & (df.metric == "throughput")]
    assert (tput.status != "ok").all()


def test_without_fio_its_rows_say_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fo.shutil, "which", lambda name: None)
    df = fo.run(_cfg(tmp_path, sizes=[4096], files=[2], rounds=1), seed=6)
    fio = df[df.case.str.startswith("fio_")]
    assert len(fio) == 2 and (fio.status == "unavailable").all()
    ratio = df[df.case.str.startswith("python_vs_fio_")]
    assert (ratio.status == "unavailable").all()


def test_file_counts_must_match_the_sizes(tmp_path: Path) -> None:
    with pytest.raises(ForgebenchError, match="files"):
        fo.settings(_cfg(tmp_path, files=[1, 2, 3]))
