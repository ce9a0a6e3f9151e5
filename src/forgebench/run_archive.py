"""Stored runs as portable archives: a CI job that starts from a fresh clone compares its
run against a baseline run made elsewhere.

``export_run`` packs ``results/history/run_id=<id>/`` into one ``.tar.gz``; ``import_run``
unpacks it into another history and checks, before the run becomes visible, that its
measurement rows still hash to its id (forgebench.history's run id is the digest of the
rows), so a damaged or edited archive is refused rather than compared against.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from forgebench import history
from forgebench.errors import ForgebenchError

SUFFIX = ".tar.gz"


def export_run(history_root: str | os.PathLike[str], ref: str, out: str | os.PathLike[str]) -> Path:
    """Write the stored run ``ref`` (id, prefix, ``latest``, ``previous``) to ``out``.

    ``out`` may be a directory (the archive is named ``run_id=<id>.tar.gz`` in it) or a
    file path ending in ``.tar.gz``. Returns the archive's path."""
    rid = history.resolve_run(history_root, ref)
    source = Path(history_root) / f"{history.PARTITION}{rid}"
    target = Path(out)
    if target.is_dir() or not str(target).endswith(SUFFIX):
        target = target / f"{history.PARTITION}{rid}{SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    os.replace(tmp, target)
    return target


def _members(tar: tarfile.TarFile) -> str:
    """The one top-level ``run_id=<id>`` folder of an archive; refuses anything else."""
    tops = set()
    for member in tar.getmembers():
        parts = Path(member.name).parts
        if not parts or member.name.startswith("/") or ".." in parts:
            raise ForgebenchError(f"archive member {member.name!r} is outside its run folder")
        if not (member.isfile() or member.isdir()):
            raise ForgebenchError(f"archive member {member.name!r} is not a plain file")
        tops.add(parts[0])
    if len(tops) != 1 or not next(iter(tops)).startswith(history.PARTITION):
        raise ForgebenchError(
            f"an exported run holds one folder run_id=<id>/, found {sorted(tops)}; "
            "make archives with `forgebench history export`"
        )
    return next(iter(tops))


def import_run(history_root: str | os.PathLike[str], archive: str | os.PathLike[str]) -> str:
    """Add the run in ``archive`` (from :func:`export_run`, or a run folder) to
    ``history_root``; return its id. Nothing happens if it is stored already."""
    src = Path(archive)
    if not src.exists():
        raise ForgebenchError(f"{src} does not exist: give a file from `forgebench history export`")
    root = Path(history_root)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".import.") as tmp:
        if src.is_dir():
            if not src.name.startswith(history.PARTITION):
                raise ForgebenchError(f"{src} is not a stored run folder (run_id=<id>)")
            name = src.name
            shutil.copytree(src, Path(tmp) / name)
        else:
            with tarfile.open(src, "r:*") as tar:
                name = _members(tar)
                tar.extractall(tmp, filter="data")
        rid = name[len(history.PARTITION) :]
        rows, _ = history.load_run(tmp, rid)
        actual = history.run_id_of(rows)
        if actual != rid:
            raise ForgebenchError(
                f"{src}: its rows hash to {actual}, not to its id {rid}: the archive was "
                "changed after export; refusing to compare against it"
            )
        final = root / name
        if final.exists():
            return rid
        os.rename(Path(tmp) / name, final)
    return rid
