"""Atomic file writes: an interrupted write leaves the old file or no file, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _about_target(exc: OSError, target: Path, tmp: Path) -> OSError | None:
    """``exc`` reworded to name ``target`` when it is about the write itself (it names the
    temporary file, its folder or no file at all), else None: a disk-full or permission
    error should say which result could not be written, not a hidden ``.tmp`` name."""
    about_write = exc.filename is None or str(exc.filename) in (str(tmp), str(target.parent))
    if not about_write and str(tmp) not in str(exc):
        return None
    return _naming(exc, target, tmp)


def _naming(exc: OSError, target: Path, tmp: Path | None = None) -> OSError:
    """An OSError like ``exc`` (same errno, so the same subclass: ``PermissionError``
    stays one) that names ``target``: ``[Errno 28] No space left on device: '<target>'``."""
    if exc.errno:
        return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target))
    text = str(exc).replace(str(tmp), str(target)) if tmp else str(exc)
    return OSError(f"could not write {target}: {text}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same directory, so the final ``os.replace`` is a
    rename within one file system: atomic on POSIX, also on the shared storage of a
    cluster. On any exception the temporary file is removed and nothing appears; an
    OSError about the write (disk full, permission denied) names ``path``, the file the
    caller asked for, with the error's errno kept (so ``PermissionError`` stays one).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any file
    except OSError as exc:  # the folder cannot be made or written: about the target
        raise _naming(exc, target) from exc
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        reworded = _about_target(exc, target, tmp) if isinstance(exc, OSError) else None
        if reworded is None:
            raise
        raise reworded from exc


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
