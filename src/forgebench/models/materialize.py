"""Put a configured model at results/models/<name>/ in Hugging Face format: built locally
(the cognate builder), referenced from the hub cache (fetched there only where the config
allows going online) or from a local directory, or converted from a GGUF file
(forgebench.models.gguf: once per file digest), and return measurement rows.

A hub or path model is not copied: results/models/<name>/ holds a link per file to the
hub cache's snapshot or to the folder, read in place, and ``source.json`` recording where
they point and each file's size and sha256 (``verify_reference`` checks them again). A
path model's files are its job's inputs, so changing them reruns the job and everything
that reads the model."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.models.files import (
    MANIFEST,
    safetensors_param_count,
    staged_dir,
    validate_model_dir,
    weight_files,
    write_manifest,
)
from forgebench.record import Recorder

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"  # what a hub or path model's links point to, with digests
SUITE = "models"
BENCHMARK = "build"
BUILD_VERSION = 1
SOURCES = ("build", "hub", "path", "gguf")
#: Keys each source reads; any other key is a mistake the config check names.
SOURCE_KEYS = {
    "build": {
        "source",
        "description",
        "threads",
        "init_seed",
        "architecture",
        "tokenizer",
        "training",
    },
    "hub": {"source", "description", "threads", "repo_id", "revision", "allow_online"},
    "path": {"source", "description", "threads", "path"},
    "gguf": {"source", "description", "threads", "path", "package", "file"},
}

#: Files a hub download keeps: what AutoModelForCausalLM/AutoTokenizer need, nothing else.
HUB_PATTERNS = [
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
]


def _key(name: str, field: str) -> str:
    return f"models.{name}.{field}"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files_under(folder: Path, patterns: list[str] | None) -> list[str]:
    """Files a reference covers, relative to ``folder``, sorted: every non-hidden file
    (``patterns``: only names matching one of them) but the two this module writes beside
    them (never through a link into the folder)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(root).relative_to(folder)
        for f in files:
            if f.startswith(".") or str(rel / f) in (MANIFEST, SOURCE_FILE):
                continue
            if patterns is None or any(fnmatch.fnmatch(str(rel / f), p) for p in patterns):
                out.append(str(rel / f))
    return sorted(out)


def _link_model(
    src: Path, dst: Path, out_dir: Path, files: list[str], relative: bool
) -> dict[str, Any]:
    """Link each of ``files`` under ``src`` into ``dst`` (the staging directory of
    ``out_dir``) and return their ``{name: {bytes, sha256}}`` and the overall digest.

    ``relative`` links resolve from ``out_dir`` (a sibling of ``dst``, so the same target
    from either), which keeps them valid when the checkout moves with the folder in it."""
    entries: dict[str, dict[str, Any]] = {}
    for name in files:
        target = src / name
        link = dst / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if relative:
            where = os.path.abspath((out_dir / name).parent)
            os.symlink(os.path.relpath(os.path.abspath(target), where), link)
        else:
            os.symlink(os.path.abspath(target), link)
        entries[name] = {"bytes": target.stat().st_size, "sha256": _file_digest(target)}
    overall = hashlib.sha256(
        "".join(f"{n}\0{e['sha256']}\n" for n, e in sorted(entries.items())).encode()
    ).hexdigest()
    return {"files": entries, "digest": overall}


def _write_source(model_dir: Path, doc: Mapping[str, Any]) -> None:
    (Path(model_dir) / SOURCE_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def verify_reference(model_dir: str | Path) -> dict[str, Any]:
    """Check that a hub or path model's links still hold the files its job hashed: every
    linked file has its recorded size and sha256. Returns ``source.json``; raises
    ForgebenchError naming the model and each file that changed or went missing."""
    model_dir = Path(model_dir)
    doc = json.loads((model_dir / SOURCE_FILE).read_text())
    problems = []
    for name, entry in sorted(doc["files"].items()):
        path = model_dir / name
        if not path.is_file():
            target = os.readlink(path) if path.is_symlink() else "no link"
            problems.append(f"{name} is missing (its link: {target})")
        elif path.stat().st_size != entry["bytes"] or _file_digest(path) != entry["sha256"]:
            problems.append(f"{name} changed since the model job hashed it")
    if problems:
        raise ForgebenchError(
            f"models.{doc['name']}: {model_dir} no longer references what was recorded: "
            f"{'; '.join(problems)}. Rerun its job: snakemake --forcerun model"
        )
    return doc


def _record_files(rec: Recorder, name: str, params: Mapping[str, Any], model_dir: Path) -> None:
    files = weight_files(model_dir)
    rec.add(name, params, "param_count", "count", False, float(safetensors_param_count(files)))
    rec.add(
        name,
        params,
        "weights_file_bytes",
        "bytes",
        False,
        float(sum(f.stat().st_size for f in files)),
    )


def _check_tokenizer(model_dir: Path, key: str) -> None:
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # any failure means the directory is unusable
        raise ForgebenchError(f"{key}: tokenizer in {model_dir} does not load: {exc}") from exc


def _from_path(name: str, spec: Mapping[str, Any], out_dir: Path, rec: Recorder) -> None:
    if not spec.get("path"):
        raise ForgebenchError(f"{_key(name, 'path')}: required for source 'path'")
    src = Path(str(spec["path"])).expanduser()
    validate_model_dir(src, _key(name, "path"))
    params = {"source": "path", "path": str(src)}
    t0 = time.perf_counter()
    with staged_dir(out_dir) as tmp:
        ref = _link_model(
            src, tmp, out_dir, _files_under(src, None), relative=not src.is_absolute()
        )
        _check_tokenizer(tmp, _key(name, "path"))
        _write_source(tmp, {"name": name, "source": "path", "path": str(src.resolve()), **ref})
        write_manifest(tmp, {"name": name, "source": "path", "spec": dict(spec)})
    rec.add(name, params, "materialize_time", "s", False, time.perf_counter() - t0)
    _record_files(rec, name, params, out_dir)


def _from_hub(name: str, spec: Mapping[str, Any], out_dir: Path, rec: Recorder) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id = spec.get("repo_id")
    if not repo_id:
        raise ForgebenchError(f"{_key(name, 'repo_id')}: required for source 'hub'")
    revision = spec.get("revision") or None
    allow = bool(spec.get("allow_online", False))
    t0 = time.perf_counter()
    if allow:
        try:
            local = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS)
        except Exception as exc:  # network, auth, missing repo: all user-fixable
            raise ForgebenchError(
                f"{_key(name, 'repo_id')}: could not download {repo_id!r} from the Hugging Face "
                f"Hub: {exc}"
            ) from exc
    else:
        try:  # a copy already in the local HF cache needs no network
            local = snapshot_download(
                repo_id, revision=revision, allow_patterns=HUB_PATTERNS, local_files_only=True
            )
        except (LocalEntryNotFoundError, OSError, ValueError) as exc:
            raise ForgebenchError(
                f"models.{name}: source 'hub' needs {repo_id!r} from the Hugging Face Hub, "
                f"which is not in the local cache, and going online is not allowed "
                f"({_key(name, 'allow_online')} is false). Set {_key(name, 'allow_online')}: "
                f"true, or download it elsewhere and use source: path"
            ) from exc
    local = Path(local)
    validate_model_dir(local, _key(name, "repo_id"))
    params = {"source": "hub", "repo_id": repo_id, "revision": revision or "main"}
    with staged_dir(out_dir) as tmp:
        # The snapshot folder is named by the commit it holds.
        ref = _link_model(local, tmp, out_dir, _files_under(local, HUB_PATTERNS), relative=False)
        _check_tokenizer(tmp, _key(name, "repo_id"))
        _write_source(
            tmp,
            {
                "name": name,
                "source": "hub",
                "repo_id": repo_id,
                "revision": revision or "main",
                "commit": local.name,
                "path": str(local),
                **ref,
            },
        )
        write_manifest(tmp, {"name": name, "source": "hub", "spec": dict(spec)})
    rec.add(name, params, "materialize_time", "s", False, time.perf_counter() - t0)
    _record_files(rec, name, params, out_dir)


def _from_gguf(name: str, spec: Mapping[str, Any], out_dir: Path, rec: Recorder) -> None:
    """Link the model folder to the GGUF file's converted HF folder (converted once per
    file digest, forgebench.models.gguf), recording the GGUF file and its tensor types."""
    from forgebench.models.gguf import (
        CACHE_DIR,
        converted_folder,
        gguf_file,
        tensor_types,
        type_summary,
    )

    t0 = time.perf_counter()
    path = gguf_file(spec, name)
    digest = _file_digest(path)
    folder, conversion = converted_folder(path, digest, out_dir.parent / CACHE_DIR)
    types = tensor_types(path)
    gguf_doc = {
        "path": str(path.resolve()),
        "package": spec.get("package"),
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": digest,
        "tensor_types": types,
        "tensor_type_counts": type_summary(types),
    }
    params = {"source": "gguf", "file": path.name, "gguf_sha256": digest}
    with staged_dir(out_dir) as tmp:
        ref = _link_model(folder, tmp, out_dir, _files_under(folder, None), relative=True)
        validate_model_dir(tmp, _key(name, "source"))
        _check_tokenizer(tmp, _key(name, "source"))
        n_params = safetensors_param_count(weight_files(tmp))
        _write_source(
            tmp,
            {
                "name": name,
                "source": "gguf",
                "gguf": gguf_doc,
                "param_count": n_params,
                "conversion": conversion,
                "path": str(folder.resolve()),
                **ref,
            },
        )
        write_manifest(tmp, {"name": name, "source": "gguf", "spec": dict(spec)})
    rec.add(name, params, "materialize_time", "s", False, time.perf_counter() - t0)
    if not conversion["reused"]:
        rec.add(name, params, "gguf_conversion_time", "s", False, conversion["convert_s"])
    rec.add(name, params, "gguf_file_bytes", "bytes", False, float(gguf_doc["bytes"]))
    rec.add(name, params, "gguf_bits_per_param", "bits", False, 8.0 * gguf_doc["bytes"] / n_params)
    _record_files(rec, name, params, out_dir)


def materialize(
    name: str,
    spec: Mapping[str, Any],
    *,
    datasets_dir: Path,
    out_dir: Path,
    seed: int,
    threads: int | None = None,
) -> pd.DataFrame:
    """Produce the model ``name`` at ``out_dir`` (its own directory, e.g.
    results/models/<name>) from its config ``spec``; return measurement rows (suite
    "models", benchmark "build", case ``name``).

    ``threads`` sets torch's intra-op threads for the duration (the job's thread count).
    """
    source = spec.get("source")
    if source not in SOURCES:
        raise ForgebenchError(
            f"{_key(name, 'source')}: {source!r} is not one of {', '.join(SOURCES)}"
        )
    stray = sorted(set(spec) - SOURCE_KEYS[source])
    if stray:
        raise ForgebenchError(
            f"{_key(name, stray[0])}: not used by source {source!r} (keys for it: "
            f"{', '.join(sorted(SOURCE_KEYS[source]))})"
        )
    rec = Recorder(SUITE, BENCHMARK, BUILD_VERSION)
    out_dir = Path(out_dir)
    log.info("model %s: materializing from source %r into %s", name, source, out_dir)
    if source == "path":
        _from_path(name, spec, out_dir, rec)
    elif source == "hub":
        _from_hub(name, spec, out_dir, rec)
    elif source == "gguf":
        _from_gguf(name, spec, out_dir, rec)
    else:
        import torch

        from forgebench.models.cognate import build_cognate

        previous = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(int(threads))
        try:
            build_cognate(
                name, spec, datasets_dir=Path(datasets_dir), out_dir=out_dir, seed=seed, rec=rec
            )
        finally:
            torch.set_num_threads(previous)
    return rec.frame()
