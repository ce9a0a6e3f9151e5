"""File operations as a Python application does them, beside fio doing the same work.

Why this shape: "file operations under 200 ms" means little without saying which
operations, on which filesystem, and how fast that filesystem can go at all. So each
round does, for every configured size, what an application saving and loading files does
(in the results filesystem, ``directory``):

* ``write_fsync``: ``open(O_CREAT|O_TRUNC)``, ``write`` in ``block_bytes`` chunks,
  ``fsync``, ``close``; then ``rename`` onto the final name (the atomic-save idiom);
  ``write_fsync_rename`` is the two together, what the application waits for;
* ``read``: ``open``, ``read`` in ``block_bytes`` chunks, ``close``; the bytes read are
  compared with those written (a mismatch is a failed row, not a timing);
* ``stat`` and ``delete`` (``unlink``) of each file.

Every operation of every file is a latency row. Beside it, in the same round and in a
seeded order, fio (Debian's package; the anchor) writes the same number of files of the
same size with the same block size and an fsync at each close (``--fsync_on_close``,
``psync`` engine, files created at open), then reads them back. fio's throughput is its
``io_bytes`` over its job runtime; ours is the same bytes over the summed times of the
same operations. Their ratio per round is the comparison, paired by round. Both read
from the page cache (the files were just written; fio with ``--invalidate=0``): the read
figures are the cost of the system calls and copies, not of the disk, and say so.

fio reports its runtime in whole milliseconds: a ratio whose fio job ran under
``MIN_FIO_MS`` is not written (its error would exceed 10%), and the fio row says why in
its params. fio missing is an "unavailable" row, a fio failure an "error" row.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forgebench.errors import ForgebenchError
from forgebench.record import Recorder, utcnow

BENCHMARK_VERSION = 1
SUITE = "system"
NAME = "file_operations"
KEY = f"suites.{SUITE}.benchmarks.{NAME}"
OPS = ("write_fsync", "rename", "write_fsync_rename", "read", "stat", "delete")
MIN_FIO_MS = 10  # fio's runtime resolution is 1 ms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    directory: Path
    sizes: tuple[int, ...]
    files: tuple[int, ...]
    block_bytes: int
    rounds: int
    warmup_rounds: int
    timeout_s: float


def settings(cfg: Mapping[str, Any]) -> Settings:
    """Checked settings; ``files`` gives one count per size (or one for all)."""
    sizes = tuple(int(s) for s in cfg["sizes"])
    files = cfg.get("files", 10)
    counts = tuple(int(f) for f in files) if isinstance(files, Sequence) else (int(files),)
    if len(counts) == 1:
        counts = counts * len(sizes)
    if len(counts) != len(sizes):
        raise ForgebenchError(
            f"{KEY}.files: {len(counts)} counts for {len(sizes)} sizes; give one per size"
        )
    return Settings(
        directory=Path(cfg.get("directory", "results/.scratch/file_operations")),
        sizes=sizes,
        files=counts,
        block_bytes=int(cfg.get("block_bytes", 1 << 20)),
        rounds=int(cfg["rounds"]),
        warmup_rounds=int(cfg.get("warmup_rounds", 1)),
        timeout_s=float(cfg.get("timeout_s", 120.0)),
    )


def size_label(size: int) -> str:
    """4096 -> '4KiB', 1048576 -> '1MiB'."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


@dataclass
class PythonRound:
    """Per-file latencies (s) of each operation, NaN where it failed, and its errors."""

    times: dict[str, list[float]]
    errors: dict[str, list[str]]


def _write_file(path: Path, payload: bytes, block: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(payload)
        for start in range(0, len(payload), block):
            os.write(fd, view[start : start + block])
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: Path, size: int, block: int) -> bytearray:
    """Read into a buffer of the expected size, ``block`` bytes a call (fio's pattern)."""
    out = bytearray(size)
    view = memoryview(out)
    got = 0
    with open(path, "rb", buffering=0) as fh:
        while got < size and (n := fh.readinto(view[got : got + block])):
            got += n
        extra = fh.read(1)
    return out[:got] + extra if got < size or extra else out


def python_round(directory: Path, size: int, files: int, payload: bytes, block: int) -> PythonRound:
    """Save, load, stat and delete ``files`` files of ``size`` bytes, each op timed."""
    times: dict[str, list[float]] = {op: [] for op in OPS}
    errors: dict[str, list[str]] = {op: [] for op in OPS}
    clock = time.perf_counter
    names = [directory / f"py-{size}-{i}" for i in range(files)]
    for name in names:
        tmp = name.with_suffix(".tmp")
        try:
            t0 = clock()
            _write_file(tmp, payload, block)
            t1 = clock()
            os.rename(tmp, name)
            t2 = clock()
            times["write_fsync"].append(t1 - t0)
            times["rename"].append(t2 - t1)
            times["write_fsync_rename"].append(t2 - t0)
            for op in ("write_fsync", "rename", "write_fsync_rename"):
                errors[op].append("")
        except OSError as exc:
            for op in ("write_fsync", "rename", "write_fsync_rename"):
                times[op].append(float("nan"))
                errors[op].append(f"{type(exc).__name__}: {exc}")
    for name in names:
        for op, fn in (
            ("read", lambda p: _read_file(p, size, block)),
            ("stat", lambda p: os.stat(p)),
            ("delete", lambda p: os.unlink(p)),
        ):
            try:
                t0 = clock()
                got = fn(name)
                elapsed = clock() - t0
            except OSError as exc:
                times[op].append(float("nan"))
                errors[op].append(f"{type(exc).__name__}: {exc}")
                continue
            problem = ""
            if op == "read" and got != payload:
                problem = f"mismatch: read {len(got)} bytes that differ from those written"
            elif op == "stat" and got.st_size != size:
                problem = f"mismatch: stat says {got.st_size} bytes, {size} written"
            times[op].append(float("nan") if problem else elapsed)
            errors[op].append(problem)
    return PythonRound(times, errors)


@dataclass
class FioResult:
    """One fio job: bytes moved and runtime, or why there is none."""

    status: str
    io_bytes: int = 0
    runtime_ms: int = 0
    detail: str = ""

    @property
    def throughput(self) -> float:
        if self.status != "ok" or self.runtime_ms <= 0:
            return float("nan")
        return self.io_bytes / (self.runtime_ms / 1000.0)


def fio_job(
    directory: Path, size: int, files: int, block: int, rw: str, timeout_s: float
) -> FioResult:
    """fio writing (with an fsync at each close) or reading ``files`` files of ``size``."""
    exe = shutil.which("fio")
    if exe is None:
        return FioResult("unavailable", detail="fio is not installed (Debian package fio)")
    cmd = [
        exe,
        "--name=forgebench",
        f"--directory={directory}",
        f"--filename_format=fio-{size}.$filenum",
        f"--rw={rw}",
        f"--bs={min(block, size)}",
        f"--filesize={size}",
        f"--nrfiles={files}",
        "--openfiles=1",
        "--file_service_type=sequential",
        "--ioengine=psync",
        "--invalidate=0",
        "--create_on_open=1",
        "--output-format=json",
    ]
    if rw == "write":
        cmd.append("--fsync_on_close=1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return FioResult("timeout", detail=f"fio ran past {timeout_s:g} s")
    if proc.returncode != 0:
        return FioResult("error:FioFailed", detail=(proc.stderr or proc.stdout).strip()[-300:])
    try:
        job = json.loads(proc.stdout[proc.stdout.index("{") :])["jobs"][0]
        part = job[rw]
        return FioResult("ok", int(part["io_bytes"]), int(part["runtime"]))
    except (ValueError, KeyError, IndexError) as exc:
        return FioResult("error:FioOutput", detail=f"unreadable fio output: {exc}")


def _status(problem: str) -> str:
    """The record status of an operation's problem text ("" = ok)."""
    if not problem:
        return "ok"
    if problem.startswith("mismatch"):
        return "mismatch"
    return f"error:{problem.split(':', 1)[0]}"


def _remove_fio_files(directory: Path, size: int) -> None:
    for path in directory.glob(f"fio-{size}.*"):
        path.unlink(missing_ok=True)


def run(cfg: Mapping[str, Any], *, seed: int) -> pd.DataFrame:
    """Interleaved rounds of our file operations and fio's, every size in each round."""
    s = settings(cfg)
    rng = random.Random(seed)
    payload_rng = np.random.default_rng(seed)
    s.directory.mkdir(parents=True, exist_ok=True)
    rec = Recorder(SUITE, NAME, BENCHMARK_VERSION)
    base = {"directory": str(s.directory), "block_bytes": s.block_bytes}
    try:
        for round_ in range(s.warmup_rounds + s.rounds):
            warmup = round_ < s.warmup_rounds
            for size, files in zip(s.sizes, s.files, strict=True):
                payload = payload_rng.integers(0, 256, size, dtype=np.uint8).tobytes()
                label = size_label(size)
                params = {**base, "size_bytes": size, "files": files, "round": round_}
                order = ["python", "fio"]
                rng.shuffle(order)
                ours: PythonRound | None = None
                fio: dict[str, FioResult] = {}
                for side in order:
                    started = utcnow()
                    if side == "python":
                        ours = python_round(s.directory, size, files, payload, s.block_bytes)
                    else:
                        for rw in ("write", "read"):
                            fio[rw] = fio_job(
                                s.directory, size, files, s.block_bytes, rw, s.timeout_s
                            )
                        _remove_fio_files(s.directory, size)
                    log.info(
                        "round %d%s, %s x %d: %s done",
                        round_,
                        " (warm-up)" if warmup else "",
                        label,
                        files,
                        side,
                    )
                assert ours is not None
                _add_rows(rec, label, params, ours, fio, size, files, round_, warmup, started)
    finally:
        shutil.rmtree(s.directory, ignore_errors=True)
    return rec.frame()


def _add_rows(
    rec: Recorder,
    label: str,
    params: Mapping[str, Any],
    ours: PythonRound,
    fio: Mapping[str, FioResult],
    size: int,
    files: int,
    round_: int,
    warmup: bool,
    started: Any,
) -> None:
    for op in OPS:
        for i, (t, err) in enumerate(zip(ours.times[op], ours.errors[op], strict=True)):
            status = _status(err)
            rec.add(
                f"python_{op}_{label}",
                params if not err else {**params, "error": err},
                "latency",
                "s",
                False,
                t,
                repetition=round_,
                sample=i,
                warmup=warmup,
                status=status,
                started_at=started,
            )
    for op, rw in (("write_fsync", "write"), ("read", "read")):
        ok = [t for t, e in zip(ours.times[op], ours.errors[op], strict=True) if not e]
        all_ok = len(ok) == files
        first_failure = next((_status(e) for e in ours.errors[op] if e), "ok")
        ours_bps = size * files / sum(ok) if all_ok and sum(ok) > 0 else float("nan")
        rec.add(
            f"python_{op}_{label}",
            params,
            "throughput",
            "bytes/s",
            True,
            ours_bps,
            repetition=round_,
            warmup=warmup,
            status=first_failure,
            started_at=started,
        )
        theirs = fio[rw]
        fio_params = {**params, "fio_runtime_ms": theirs.runtime_ms}
        if theirs.detail:
            fio_params["detail"] = theirs.detail
        rec.add(
            f"fio_{op}_{label}",
            fio_params,
            "throughput",
            "bytes/s",
            True,
            theirs.throughput,
            repetition=round_,
            warmup=warmup,
            status=theirs.status,
            started_at=started,
        )
        if theirs.status == "ok" and theirs.runtime_ms < MIN_FIO_MS:
            continue  # fio's whole-millisecond runtime is too coarse for a ratio
        both = theirs.status == "ok" and all_ok
        rec.add(
            f"python_vs_fio_{op}_{label}",
            params,
            "throughput_ratio",
            "ratio",
            True,
            ours_bps / theirs.throughput if both else float("nan"),
            repetition=round_,
            warmup=warmup,
            status="ok" if both else (theirs.status if theirs.status != "ok" else first_failure),
            started_at=started,
        )
