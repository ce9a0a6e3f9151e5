"""Model directories in Hugging Face format: written atomically, checked for the files
AutoModelForCausalLM and AutoTokenizer need, weights counted from safetensors headers."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError

MANIFEST = "forgebench_model.json"
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_TOKENIZERS = ("tokenizer.json", "tokenizer.model", ("vocab.json", "merges.txt"))


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """A temporary directory beside ``out_dir``, renamed onto it only on success, so an
    interrupted build leaves no half-written model behind."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def weight_files(path: Path) -> list[Path]:
    """The safetensors files holding the weights (the shards an index lists, or the one)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / s for s in shards]
    return [path / "model.safetensors"]


def validate_model_dir(path: Path, key: str) -> list[Path]:
    """Check ``path`` is a loadable HF causal-LM directory: config.json with a model_type,
    safetensors weights (single or sharded, every shard present) and tokenizer files.
    Returns the weight files; raises ForgebenchError naming ``key`` and what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise ForgebenchError(f"{key}: {path} is not a directory")
    problems = []
    config = path / "config.json"
    if not config.is_file():
        problems.append("config.json is missing")
    else:
        try:
            if "model_type" not in json.loads(config.read_text()):
                problems.append("config.json has no model_type")
        except (OSError, ValueError) as exc:
            problems.append(f"config.json does not parse ({exc})")
    if not any((path / w).is_file() for w in _WEIGHTS):
        problems.append(
            "no weights: expected model.safetensors or model.safetensors.index.json "
            "(save with safe_serialization; pickled .bin weights are not accepted)"
        )
    else:
        try:
            missing = [w.name for w in weight_files(path) if not w.is_file()]
        except (OSError, ValueError, KeyError) as exc:
            missing = [f"(index unreadable: {exc})"]
        if missing:
            problems.append(f"weight shards missing: {missing}")
    has_tokenizer = any(
        all((path / f).is_file() for f in t) if isinstance(t, tuple) else (path / t).is_file()
        for t in _TOKENIZERS
    )
    if not has_tokenizer:
        problems.append(
            "no tokenizer: expected tokenizer.json, tokenizer.model or vocab.json+merges.txt"
        )
    if problems:
        raise ForgebenchError(
            f"{key}: {path} is not a usable model directory: {'; '.join(problems)}"
        )
    return weight_files(path)


def safetensors_param_count(files: list[Path]) -> int:
    """Parameters stored in safetensors files, read from their headers (no weights loaded)."""
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="np") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                total += math.prod(fh.get_slice(name).get_shape())
    return total


def write_manifest(model_dir: Path, doc: Mapping[str, Any]) -> None:
    """What the directory holds and how it was made, beside the model files."""
    (Path(model_dir) / MANIFEST).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))


def quiet_progress() -> None:
    """No transformers progress bars in job logs (a model job logs its own progress)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
