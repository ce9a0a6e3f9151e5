"""Prepare one dataset: read its files from a mirror or download them, check every sha256,
convert, and only then write ``<out_dir>/<split>.parquet`` and ``manifest.json``.

Nothing is written before every input has passed its checksum and converted, so a corrupt
or substituted file leaves no output behind; the manifest is written last and marks the
folder complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from forgebench.atomic import atomic_path, write_text_atomic
from forgebench.datasets.catalog import (
    REBUILDS,
    ConversionError,
    DatasetSpec,
    SourceFile,
    get_spec,
)
from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, timeout_s: float, what: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise ForgebenchError(
            f"{what}: download of {url} failed: {exc}; set datasets.mirror to a folder laid "
            "out like ../shared/datasets to work offline"
        ) from exc


def _check(data: bytes, want: str, what: str, origin: str) -> None:
    got = sha256_bytes(data)
    if got != want:
        raise ForgebenchError(
            f"{what}: {origin} has sha256 {got}, expected {want}; the file is corrupt or a "
            "different version, so nothing was written (checksums: forgebench.datasets.catalog, "
            "or datasets.sources in the config)"
        )


def _fetch_online(src: SourceFile, timeout_s: float, what: str) -> tuple[bytes, str]:
    data = _download(src.url, timeout_s, what)
    origin = src.url
    if src.archive_member is not None:
        if src.archive_sha256 is not None:
            _check(data, src.archive_sha256, what, src.url)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                data = archive.read(src.archive_member)
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ForgebenchError(f"{what}: {src.url} has no member {src.archive_member}") from exc
        origin = f"{src.url}!{src.archive_member}"
    if src.rebuild is not None:
        try:
            data = REBUILDS[src.rebuild](data)
        except Exception as exc:
            raise ConversionError(
                f"{what}: rebuilding {origin} ({src.rebuild}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        origin = f"{origin} (rebuilt: {src.rebuild})"
    return data, origin


def _read_input(
    spec: DatasetSpec,
    role: str,
    src: SourceFile,
    mirror: Path | None,
    allow_online: bool,
    timeout_s: float,
) -> tuple[bytes, str]:
    """The checked bytes of one input and where they came from."""
    what = f"dataset {spec.name!r} ({role} file {src.mirror_path})"
    if mirror is not None:
        if not mirror.is_dir():
            raise ForgebenchError(
                f"dataset {spec.name!r}: datasets.mirror {str(mirror)!r} is not a folder; "
                "set datasets.mirror to a folder laid out like ../shared/datasets, or null "
                "with datasets.allow_online: true to download"
            )
        path = mirror / src.mirror_path
        if path.is_file():
            data = path.read_bytes()
            _check(data, src.sha256, what, str(path))
            return data, f"mirror:{path.resolve()}"
        if not allow_online:
            raise ForgebenchError(
                f"{what}: not found in datasets.mirror ({path}) and datasets.allow_online is "
                "false; fix datasets.mirror or set datasets.allow_online: true"
            )
    elif not allow_online:
        raise ForgebenchError(
            f"dataset {spec.name!r}: no local copy and downloads are off (datasets.mirror is "
            "null, datasets.allow_online is false); set datasets.mirror to a folder laid out "
            f"like ../shared/datasets, or datasets.allow_online: true to download {src.url}"
        )
    log.info("%s: downloading %s", spec.name, src.url)
    data, origin = _fetch_online(src, timeout_s, what)
    _check(data, src.sha256, what, origin)
    return data, origin


def with_overrides(spec: DatasetSpec, sources: Mapping[str, Any] | None) -> DatasetSpec:
    """Apply ``datasets.sources.<name>.<role>`` overrides (url, sha256, ...) to ``spec``."""
    overrides = (sources or {}).get(spec.name) or {}
    unknown = sorted(set(overrides) - set(spec.files))
    if unknown:
        raise ForgebenchError(
            f"datasets.sources.{spec.name}: unknown file role(s) {unknown}; "
            f"allowed: {sorted(spec.files)}"
        )
    files = {
        role: dataclasses.replace(src, **overrides.get(role, {}))
        for role, src in spec.files.items()
    }
    return dataclasses.replace(spec, files=files)


def prepare(
    name: str,
    *,
    mirror: Path | None,
    allow_online: bool,
    out_dir: Path,
    timeout_s: float = 60.0,
    sources: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/<split>.parquet`` for every split of ``name`` and return the manifest."""
    started = time.perf_counter()
    spec = with_overrides(get_spec(name), sources)
    mirror = Path(mirror) if mirror is not None else None
    inputs = {
        role: _read_input(spec, role, src, mirror, allow_online, timeout_s)
        for role, src in spec.files.items()
    }
    try:
        tables = spec.convert({role: data for role, (data, _) in inputs.items()})
    except Exception as exc:  # a converter's own error rarely says which dataset it was
        read = ", ".join(f"{role}: {origin}" for role, (_, origin) in inputs.items())
        raise ConversionError(
            f"dataset {name!r}: its files passed their sha256 check but could not be "
            f"converted ({type(exc).__name__}: {exc}); nothing was written. Files read: "
            f"{read}. A digest configured under datasets.sources.{name} that matches a "
            "truncated or different file lets it through: check that file and its sha256"
        ) from exc
    if tuple(tables) != spec.splits:
        raise AssertionError(f"{name}: converter gave splits {list(tables)}, not {spec.splits}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until rewritten
    splits = {}
    for split, table in tables.items():
        target = out_dir / f"{split}.parquet"
        with atomic_path(target) as tmp:
            pq.write_table(table, tmp)
        splits[split] = {
            "file": target.name,
            "rows": table.num_rows,
            "columns": table.column_names,
            "sha256": sha256_bytes(target.read_bytes()),
        }
        log.info("%s: %s split, %d rows -> %s", name, split, table.num_rows, target)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "dataset": name,
        "hf_schema": spec.hf_schema,
        "eval_split": spec.eval_split,
        "license": spec.license,
        "notes": spec.notes,
        "splits": splits,
        "inputs": {
            role: {
                "mirror_path": spec.files[role].mirror_path,
                "sha256": spec.files[role].sha256,
                "bytes": len(data),
                "source": spec.files[role].url,
                "read_from": origin,
            }
            for role, (data, origin) in inputs.items()
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def load_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest of a prepared dataset folder, or a ForgebenchError if it is incomplete."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ForgebenchError(f"{out_dir} is not a prepared dataset (no {MANIFEST})")
    return json.loads(path.read_text(encoding="utf-8"))
