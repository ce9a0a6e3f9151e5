"""Put a configured model at results/models/<name>/ in Hugging Face format: built locally
(the cognate builder), fetched from the hub (only where the config allows going online) or
copied from a local directory, and return measurement rows for what was measured."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.models.files import (
    safetensors_param_count,
    staged_dir,
    validate_model_dir,
    weight_files,
    write_manifest,
)
from forgebench.record import Recorder

log = logging.getLogger(__name__)

SUITE = "models"
BENCHMARK = "build"
BUILD_VERSION = 1
SOURCES = ("build", "hub", "path")
#: Keys each source reads; any other key is a mistake the config check names.
SOURCE_KEYS = {
    "build": {"source", "description", "init_seed", "architecture", "tokenizer", "training"},
    "hub": {"source", "description", "repo_id", "revision", "allow_online"},
    "path": {"source", "description", "path"},
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


def _copy_model(src: Path, dst: Path) -> None:
    for item in sorted(Path(src).iterdir()):
        if item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)


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
        _copy_model(src, tmp)
        _check_tokenizer(tmp, _key(name, "path"))
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
    validate_model_dir(Path(local), _key(name, "repo_id"))
    params = {"source": "hub", "repo_id": repo_id, "revision": revision or "main"}
    with staged_dir(out_dir) as tmp:
        _copy_model(Path(local), tmp)
        _check_tokenizer(tmp, _key(name, "repo_id"))
        write_manifest(tmp, {"name": name, "source": "hub", "spec": dict(spec)})
    rec.add(name, params, "materialize_time", "s", False, time.perf_counter() - t0)
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
