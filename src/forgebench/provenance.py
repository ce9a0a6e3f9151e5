"""Provenance: where, on what and from which code a result was produced.

Small ``collect_*`` functions each add the keys they can read to one dict (pyperf's
``collect_metadata`` pattern). A key whose value cannot be read is left out rather than
guessed. The dict is stored in every results file's metadata and in the run manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import psutil

KEY_PACKAGES = (
    "forgebench",
    "snakemake",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "psutil",
    "torch",
    "transformers",
    "lm_eval",
)


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the config as canonical JSON: equal configs hash equal whatever their order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def collect_git(meta: dict[str, Any], code_dir: str | None = None) -> None:
    """Commit of the workflow's checkout (``code_dir``, default the working directory),
    and whether it had local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=code_dir,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=code_dir,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return
    meta["git_commit"] = commit
    meta["git_dirty"] = bool(dirty)


def collect_host(meta: dict[str, Any]) -> None:
    """Host and, under a scheduler, the node and job the result was produced on."""
    meta["host"] = socket.gethostname()
    meta["platform"] = platform.platform()
    for env, key in (("SLURMD_NODENAME", "slurm_node"), ("SLURM_JOB_ID", "slurm_job_id")):
        if os.environ.get(env):
            meta[key] = os.environ[env]


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def collect_cpu_memory(meta: dict[str, Any]) -> None:
    """CPU model, logical and physical cores, usable cores and total memory."""
    model = _cpu_model()
    if model:
        meta["cpu_model"] = model
    meta["cpu_count_logical"] = psutil.cpu_count(logical=True)
    physical = psutil.cpu_count(logical=False)
    if physical:
        meta["cpu_count_physical"] = physical
    if hasattr(os, "sched_getaffinity"):
        meta["cpu_count_usable"] = len(os.sched_getaffinity(0))
    meta["memory_total_bytes"] = psutil.virtual_memory().total


def collect_gpu(meta: dict[str, Any]) -> None:
    """GPU names and memory through NVML; nothing is added when there is no GPU."""
    try:
        import pynvml
    except ImportError:
        return
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                {
                    "index": i,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                }
            )
        meta["gpus"] = gpus
        meta["nvidia_driver"] = pynvml.nvmlSystemGetDriverVersion()
    finally:
        pynvml.nvmlShutdown()


def collect_python(meta: dict[str, Any]) -> None:
    """Python implementation and version, and versions of the packages results depend on."""
    meta["python"] = f"{platform.python_implementation()} {sys.version.split()[0]}"
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    meta["packages"] = versions


COLLECTORS = (collect_host, collect_cpu_memory, collect_gpu, collect_python)


def collect_provenance(
    config: Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    code_dir: str | None = None,
) -> dict[str, Any]:
    """Everything a reader needs to judge whether two results are comparable.

    ``code_dir`` is a directory inside the workflow's git checkout (a rule passes
    ``snakemake.scriptdir``); ``config_hash`` covers the config the job received.
    """
    meta: dict[str, Any] = {}
    if config is not None:
        meta["config_hash"] = config_hash(config)
    if seed is not None:
        meta["seed"] = int(seed)
    collect_git(meta, code_dir)
    for collect in COLLECTORS:
        collect(meta)
    return meta
