"""Atomic writes: an I/O error names the file the caller asked for, not the hidden
temporary file beside it, and leaves neither behind."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest

from forgebench.atomic import write_bytes_atomic, write_text_atomic

# A file-size limit makes the kernel refuse the write exactly as a full disk or quota does
# (EFBIG instead of ENOSPC), without filling a real disk.
_OVER_THE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from forgebench.atomic import write_bytes_atomic
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
    try:
        write_bytes_atomic(sys.argv[1], b"x" * 100_000)
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc.filename, str(exc), sep="|")
    """
)


def test_a_refused_write_names_the_final_path(tmp_path):
    target = tmp_path / "results" / "bench.parquet"
    proc = subprocess.run(
        [sys.executable, "-c", _OVER_THE_LIMIT, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    _, code, filename, message = proc.stdout.strip().split("|")
    assert int(code) == errno.EFBIG and filename == str(target)
    assert str(target) in message and ".tmp" not in message
    assert list(target.parent.iterdir()) == []  # neither the file nor its temporary


def test_an_unwritable_folder_names_the_final_path(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    target = blocker / "bench" / "run.json"
    with pytest.raises(OSError) as info:
        write_text_atomic(target, "{}")
    assert info.value.filename == str(target) and str(target) in str(info.value)


def test_errors_about_other_files_are_left_alone(tmp_path):
    """An error reading an input inside the block is not reworded as the target's."""
    from forgebench.atomic import atomic_path

    missing = tmp_path / "input.bin"
    with pytest.raises(FileNotFoundError) as info, atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(missing.read_bytes())
    assert info.value.filename == str(missing)
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(tmp_path / "ok.bin", b"ok")
    assert (tmp_path / "ok.bin").read_bytes() == b"ok"
