"""Run untrusted Python programs (model-written code plus its tests) in a throwaway jail.

Threat model. A candidate is hostile and may do anything Python can: loop, fork, allocate,
write files, open sockets, spawn ``setsid`` daemons, close or flood stdout, exit early with
status 0, monkeypatch builtins, read the host's files. Each candidate therefore runs in its own
process tree (``_jail.py``) with: a distinct unused uid/gid per concurrent slot (never root; no
capabilities, no supplementary groups, ``no_new_privs`` so setuid binaries do not elevate); new
network (no interface up: nothing reachable, loopback included), mount, pid, IPC and UTS
namespaces; a chroot whose only content is the read-only system dirs (/usr, /bin, /lib*, /etc),
the interpreter's stdlib, five device nodes, its own /proc and a size- and inode-limited tmpfs
for /tmp, /var/tmp and /dev/shm (so the repository, datasets, /root and /home, host processes
and the host's temp dirs are invisible, and the disk cannot be filled); rlimits on address
space, CPU time, file size, processes (per slot uid) and open files; an in-process CPU-time
timer plus a wall-clock kill from the host (``timeout_s + startup_grace_s``). Afterwards the
namespace's init exits, so the kernel kills every process left in it, its tmpfs vanishes, and
the host sweeps and kills any process still owned by the slot uid. Pass is decided only by a
128-bit random token the trusted runner writes to a pipe after the program (candidate then
tests) ran to the end without an exception: printing, exit codes, ``sys.exit``/``os._exit``,
closing stdio or killing the runner can only produce a fail.

Out of scope, as in human-eval and HF ``code_eval``: the candidate shares its interpreter with
the tests that judge it, so code aimed at this harness (reading the token from the runner's
memory) or at the test's semantics (an object whose ``__eq__`` is always true) can forge a pass;
that is a scoring question, not host safety. Kernel exploits are out of scope. Memory is bounded
per process (address space x process limit), not by a cgroup.

Requires root (the uid switch and namespaces). Without root this module refuses with
``SandboxUnavailable`` instead of running anything unsandboxed: a user-namespace fallback would
run candidates as the invoking user, sharing its per-user limits and its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pwd
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from forgebench.errors import ForgebenchError

log = logging.getLogger(__name__)

JAIL = Path(__file__).with_name("_jail.py")
SETUP_ERROR = 86
ENV_PREFIX = "FORGEBENCH_CODE_EXEC_"
CONFIG_KEY = "evaluation.code_execution"


class SandboxUnavailable(ForgebenchError):
    """The jail cannot be built here; nothing was run."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits per candidate; each field also reads ``FORGEBENCH_CODE_EXEC_<FIELD>``."""

    workers: int = 2  # candidates run at once (one slot uid each)
    timeout_s: float = 3.0  # program CPU time (code_eval: 3 s of wall time)
    startup_grace_s: float = 10.0  # extra wall time for interpreter start on a loaded host
    memory_mb: int = 1024  # RLIMIT_AS per process
    max_processes: int = 8  # RLIMIT_NPROC for the slot uid (threads count)
    max_file_mb: int = 16  # RLIMIT_FSIZE
    max_open_files: int = 64  # RLIMIT_NOFILE
    tmpfs_mb: int = 64  # /tmp + /var/tmp + /dev/shm together
    uid_base: int = 1_900_000_000  # slot uids are uid_base .. uid_base + max_slots - 1
    max_slots: int = 256

    def validate(self) -> SandboxConfig:
        checks = {
            "workers": self.workers >= 1,
            "timeout_s": self.timeout_s > 0,
            "startup_grace_s": self.startup_grace_s >= 0,
            "memory_mb": self.memory_mb >= 64,
            "max_processes": self.max_processes >= 1,
            "max_file_mb": self.max_file_mb >= 1,
            "max_open_files": self.max_open_files >= 16,
            "tmpfs_mb": self.tmpfs_mb >= 1,
            "uid_base": self.uid_base >= 65536 and self.uid_base + self.max_slots < 2**31,
            "max_slots": self.max_slots >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ForgebenchError(
                    f"{CONFIG_KEY}.{key}: value {getattr(self, key)!r} is out of range "
                    f"(see SandboxConfig.validate)"
                )
        return self


def _from_env() -> SandboxConfig:
    values: dict[str, Any] = {}
    for f in fields(SandboxConfig):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            kind = float if f.type in ("float", float) else int
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ForgebenchError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r}: expected a number ({CONFIG_KEY})"
                ) from exc
    return SandboxConfig(**values).validate()


_config: SandboxConfig | None = None
_config_lock = threading.Lock()


def configure(**overrides: Any) -> SandboxConfig:
    """Set the process-wide limits (environment defaults, then ``overrides``); returns them."""
    global _config
    unknown = set(overrides) - {f.name for f in fields(SandboxConfig)}
    if unknown:
        raise ForgebenchError(f"{CONFIG_KEY}: unknown keys {sorted(unknown)}")
    with _config_lock:
        _config = replace(_from_env(), **overrides).validate()
        return _config


def current_config() -> SandboxConfig:
    """The configured limits, or those from the environment if ``configure`` was never called."""
    global _config
    with _config_lock:
        if _config is None:
            _config = _from_env()
        return _config


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str  # "passed", "failed: <Exception>: <msg>", "timed out", "killed: <why>"
    wall_s: float
    uid: int


# ---- slots: one unused uid per concurrent candidate, locked across processes -------------


class _Slots:
    """uids handed out to worker threads; an flock per uid keeps other processes off it."""

    def __init__(self) -> None:
        self._free: list[int] = []
        self._held: dict[int, int] = {}  # uid -> lock fd (kept open for the process lifetime)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_use = 0

    def _lock_dir(self) -> Path:
        base = Path("/run") if os.access("/run", os.W_OK) else Path("/var/tmp")
        path = base / "forgebench-sandbox"
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if st.st_uid != 0 or st.st_mode & 0o077:
            raise SandboxUnavailable(f"{path}: slot lock dir must be owned by root, mode 0700")
        return path

    def _claim(self, cfg: SandboxConfig) -> int:
        lock_dir = self._lock_dir()
        for uid in range(cfg.uid_base, cfg.uid_base + cfg.max_slots):
            if uid in self._held or _uid_known(uid):
                continue
            fd = os.open(lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held[uid] = fd
            return uid
        raise SandboxUnavailable(
            f"{CONFIG_KEY}.uid_base: no free sandbox uid in {cfg.uid_base}.."
            f"{cfg.uid_base + cfg.max_slots - 1} (all locked by other runs or in /etc/passwd)"
        )

    def acquire(self, cfg: SandboxConfig) -> int:
        with self._cond:
            while self._in_use >= cfg.workers:
                self._cond.wait()
            uid = self._free.pop() if self._free else self._claim(cfg)
            self._in_use += 1
        _kill_uid(uid)  # a crashed earlier run holding this uid left nothing we keep
        return uid

    def release(self, uid: int) -> None:
        with self._cond:
            self._free.append(uid)
            self._in_use -= 1
            self._cond.notify()

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)


_slots = _Slots()


def sandbox_uids() -> list[int]:
    """Slot uids this process has used (for checks that nothing of theirs is left)."""
    return _slots.held()


def _uid_known(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def pids_of_uid(uid: int) -> list[int]:
    """Host processes whose real, effective or saved uid is ``uid``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Uid:"):
                        if str(uid).encode() in line.split()[1:4]:
                            found.append(int(entry.name))
                        break
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def _kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` until none is left; returns how many were found."""
    total = 0
    for _ in range(100):
        pids = pids_of_uid(uid)
        if not pids:
            return total
        total += len(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    raise SandboxUnavailable(f"processes of sandbox uid {uid} survive SIGKILL: {pids_of_uid(uid)}")


# ---- running ---------------------------------------------------------------------------------


def _stdlib_paths() -> list[str]:
    base = os.path.realpath(sys.base_prefix)
    return [p for p in sys.path if p and os.path.realpath(p).startswith(base + os.sep)]


def _job(program: str, cfg: SandboxConfig, uid: int, token: str, fd: int) -> dict[str, Any]:
    cpu = math.ceil(cfg.timeout_s) + 1
    mib = 1024 * 1024
    return {
        "program": program,
        "token": token,
        "result_fd": fd,
        "uid": uid,
        "gid": uid,
        "timeout_s": cfg.timeout_s,
        "tmpfs_bytes": cfg.tmpfs_mb * mib,
        "tmpfs_inodes": 4096,
        "expose": [os.path.realpath(sys.base_prefix)],
        "sys_path": _stdlib_paths(),
        "rlimits": {
            "RLIMIT_CORE": 0,
            "RLIMIT_CPU": cpu,
            "RLIMIT_AS": cfg.memory_mb * mib,
            "RLIMIT_FSIZE": cfg.max_file_mb * mib,
            "RLIMIT_NPROC": cfg.max_processes,
            "RLIMIT_NOFILE": cfg.max_open_files,
            "RLIMIT_MEMLOCK": 0,
            "RLIMIT_MSGQUEUE": 0,
        },
    }


def _require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "code execution needs root to run candidates as a separate unprivileged uid in "
            "private namespaces (found euid "
            f"{os.geteuid()}); run the evaluation as root (as CI does) or in a container. "
            "Refusing to execute model-written code unsandboxed."
        )


def _read_result(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)


def _run_in_slot(program: str, cfg: SandboxConfig, uid: int) -> ExecResult:
    token = secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    job = json.dumps(_job(program, cfg, uid, token, write_fd)).encode()
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(JAIL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(write_fd,),
            start_new_session=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
        )
    finally:
        os.close(write_fd)
    killed = ""
    try:
        _, err = proc.communicate(job, timeout=cfg.timeout_s + cfg.startup_grace_s)
    except subprocess.TimeoutExpired:
        killed = "killed: wall-clock timeout"
        os.killpg(proc.pid, signal.SIGKILL)  # bootstrap + ns init; init's death kills the ns
        _, err = proc.communicate()
    wall = time.perf_counter() - started
    raw = _read_result(read_fd)
    leftover = _kill_uid(uid)
    if proc.returncode == SETUP_ERROR:
        raise SandboxUnavailable(f"sandbox setup failed: {err.decode(errors='replace').strip()}")
    if leftover:
        log.warning("sandbox uid %d: killed %d processes that outlived their jail", uid, leftover)
    lines = raw.split(b"\n")
    passed = not killed and len(lines) >= 2 and lines[0] == token.encode() and lines[1] == b"passed"
    if killed:
        status = killed
    elif len(lines) >= 2 and lines[1]:
        status = lines[1].decode(errors="replace")
    else:
        status = f"killed: no result (exit {proc.returncode})"
    if status == "passed" and not passed:
        status = "failed: forged result"
    return ExecResult(passed=passed, status=status, wall_s=wall, uid=uid)


def run_program(program: str, config: SandboxConfig | None = None) -> ExecResult:
    """Run one program in a fresh jail; passed only if it ran to the end without an exception."""
    _require_root()
    cfg = config or current_config()
    uid = _slots.acquire(cfg)
    try:
        return _run_in_slot(program, cfg, uid)
    finally:
        _slots.release(uid)


def run_programs(programs: Sequence[str], config: SandboxConfig | None = None) -> list[ExecResult]:
    """Run programs in parallel, up to ``workers`` at once; results in input order."""
    _require_root()
    cfg = config or current_config()
    if len(programs) <= 1 or cfg.workers == 1:
        return [run_program(p, cfg) for p in programs]
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(pool.map(lambda p: run_program(p, cfg), programs))
