"""Run untrusted Python programs (model-written code) against their tests in a throwaway jail.

Threat model. A candidate is hostile and may do anything Python can: loop, fork, allocate,
write files, open sockets, spawn ``setsid`` daemons, close or flood stdout, exit early with
status 0, monkeypatch builtins, walk the interpreter's frames and memory (``sys._getframe``,
``gc``, ``ctypes``), install signal, ``atexit`` and trace hooks, start threads. Each candidate
runs in its own jail (``_jail.py``): new network (no interface up), mount, pid, IPC and UTS
namespaces; a chroot holding only the read-only system dirs, the stdlib, five device nodes, its
own /proc and a size- and inode-limited tmpfs; no capabilities, no supplementary groups,
``no_new_privs``; rlimits on CPU time, file size, processes (per uid) and open files; an
in-process CPU-time timer and a wall-clock kill from the host (``timeout_s +
startup_grace_s``). Every process of a run is in one cgroup per run (``cgroups.py``): a memory
limit over all of them together (``memory_mb``, swap included), a pids limit, and teardown by
freezing the cgroup, killing its processes and waiting until the kernel reports it empty and
removed. Where no cgroup is writable, memory is capped per process (``memory_mb`` divided by
``max_processes``) and teardown waits, up to a time limit, for the run's uids to have no
process left; a run that does not empty in time is that candidate's failure, not the task's.

Who decides. The candidate's program and the tests run in two processes of two different
unprivileged uids. The tests run in the harness, which alone holds the pipe the verdict goes
to; names the tests take from the candidate (the function under test, helpers of the prompt)
are proxies: each call is one question to the candidate and one answer back, as plain data
(tagged JSON, decoded into builtin types only, never pickle). The candidate cannot read or
signal the harness (another uid, not dumpable), so it cannot learn the 128-bit token the host
checks or write the verdict; answering twice (a fork), not answering, exiting (silently, from
``atexit``, a ``finally`` or a signal handler) or leaving a second process behind all score as
failures, and each answer is judged once, by one process, so forking cannot try both answers.
A candidate value that is not plain data stays in the candidate as an opaque handle: the tests
can call it and get or set its attributes; comparing it or using it as a value fails.

Out of scope. The names the tests take from the candidate are the candidate's to define: a
prompt helper the tests call to check an answer (HumanEval/32's ``poly``) can be redefined by
the completion, as in every harness that runs prompt plus completion. Builtins are never taken
from the candidate. Kernel exploits are out of scope.

Requires root (uid switch, namespaces, cgroups). Without root this module refuses with
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
from forgebench.evaluation.code_exec.cgroups import SlotCgroup

log = logging.getLogger(__name__)

JAIL = Path(__file__).with_name("_jail.py")
SETUP_ERROR = 86
ENV_PREFIX = "FORGEBENCH_CODE_EXEC_"
TEARDOWN_WAIT_S = 10.0  # how long the kernel gets to empty a slot after SIGKILL


class SandboxUnavailable(ForgebenchError):
    """The jail cannot be built here; nothing was run."""


def env_key(name: str) -> str:
    """The environment variable that sets ``SandboxConfig.<name>`` (its only config key)."""
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class SandboxConfig:
    """Limits per candidate; each field is read from ``FORGEBENCH_CODE_EXEC_<FIELD>``."""

    workers: int = 2  # candidates run at once (one slot each)
    timeout_s: float = 3.0  # program CPU time (code_eval: 3 s of wall time)
    startup_grace_s: float = 10.0  # extra wall time for interpreter start on a loaded host
    memory_mb: int = 1024  # all processes of one run together (cgroup); per process as well
    max_processes: int = 8  # the candidate's processes (threads count)
    max_file_mb: int = 16  # RLIMIT_FSIZE
    max_open_files: int = 64  # RLIMIT_NOFILE
    tmpfs_mb: int = 64  # /tmp + /var/tmp + /dev/shm together
    uid_base: int = 1_900_000_000  # candidate uids uid_base.., judge uids uid_base + max_slots..
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
            "uid_base": self.uid_base >= 65536 and self.uid_base + 2 * self.max_slots < 2**31,
            "max_slots": self.max_slots >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ForgebenchError(
                    f"{env_key(key)} (sandbox limit {key}): value {getattr(self, key)!r} is "
                    f"out of range (see SandboxConfig.validate)"
                )
        return self


def _from_env() -> SandboxConfig:
    values: dict[str, Any] = {}
    for f in fields(SandboxConfig):
        raw = os.environ.get(env_key(f.name))
        if raw is not None:
            kind = float if f.type in ("float", float) else int
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ForgebenchError(f"{env_key(f.name)}={raw!r}: expected a number") from exc
    return SandboxConfig(**values).validate()


_config: SandboxConfig | None = None
_config_lock = threading.Lock()


def configure(**overrides: Any) -> SandboxConfig:
    """Set the process-wide limits (environment defaults, then ``overrides``); returns them."""
    global _config
    unknown = set(overrides) - {f.name for f in fields(SandboxConfig)}
    if unknown:
        raise ForgebenchError(
            f"sandbox limits: unknown {sorted(unknown)}; known: "
            f"{', '.join(f.name for f in fields(SandboxConfig))} (set as {ENV_PREFIX}<NAME>)"
        )
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
    status: str  # "passed", "failed: <why>", "timed out", "killed: <why>"
    wall_s: float
    uid: int
    processes_killed: int = 0  # distinct processes SIGKILLed at teardown
    peak_memory_bytes: int | None = None  # the slot cgroup's high-water mark, all processes


# ---- slots: an unused uid pair per concurrent candidate, locked across processes ----------


class _Slots:
    """Candidate uids handed out to worker threads; an flock per uid keeps other processes off
    it. The judge (harness) uid of slot ``u`` is ``u + max_slots``."""

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
            if uid in self._held or _uid_known(uid) or _uid_known(uid + cfg.max_slots):
                continue
            fd = os.open(lock_dir / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if _sweep_uids((uid, uid + cfg.max_slots), TEARDOWN_WAIT_S)[1]:
                continue  # a crashed run left processes that do not die: keep it locked, skip
            self._held[uid] = fd
            return uid
        raise SandboxUnavailable(
            f"{env_key('uid_base')}: no free sandbox uid in {cfg.uid_base}.."
            f"{cfg.uid_base + cfg.max_slots - 1} (all locked by other runs or in /etc/passwd)"
        )

    def acquire(self, cfg: SandboxConfig) -> int:
        with self._cond:
            while self._in_use >= cfg.workers:
                self._cond.wait()
            try:
                uid = self._free.pop() if self._free else self._claim(cfg)
            except BaseException:
                self._cond.notify()
                raise
            self._in_use += 1
        return uid

    def release(self, uid: int, reusable: bool = True) -> None:
        """Give the slot back; a slot whose teardown failed stays locked and is never reused."""
        with self._cond:
            if reusable:
                self._free.append(uid)
            self._in_use -= 1
            self._cond.notify()

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._held)


_slots = _Slots()


def sandbox_uids() -> list[int]:
    """Candidate and judge uids this process has used (to check nothing of theirs is left)."""
    cfg = current_config()
    held = _slots.held()
    return sorted(held + [u + cfg.max_slots for u in held])


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


def _sweep_uids(uids: Sequence[int], wait_s: float) -> tuple[int, list[int]]:
    """SIGKILL the uids' processes until none is left or ``wait_s`` passed (no cgroup here).

    Returns (distinct processes killed, pids still alive)."""
    killed: set[int] = set()
    deadline = time.monotonic() + wait_s
    while True:
        pids = [p for u in uids for p in pids_of_uid(u)]
        if not pids or time.monotonic() > deadline:
            return len(killed), pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat; /proc/.../children is optional)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields_after_name = fh.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if len(fields_after_name) > 1 and int(fields_after_name[1]) == pid:
                found.append(int(entry.name))
    return found


# ---- running ---------------------------------------------------------------------------------


def _stdlib_paths() -> list[str]:
    base = os.path.realpath(sys.base_prefix)
    return [p for p in sys.path if p and os.path.realpath(p).startswith(base + os.sep)]


def _job(
    program: str, tests: str, cfg: SandboxConfig, uid: int, token: str, fd: int, cgroup: bool
) -> dict[str, Any]:
    cpu = math.ceil(cfg.timeout_s) + 1
    mib = 1024 * 1024
    # with a cgroup the slot's memory is bounded as a whole; without, each process gets its
    # share so that max_processes of them together stay within memory_mb
    per_process = cfg.memory_mb if cgroup else cfg.memory_mb // cfg.max_processes
    return {
        "program": program,
        "tests": tests,
        "token": token,
        "result_fd": fd,
        "uid": uid,
        "judge_uid": uid + cfg.max_slots,
        "timeout_s": cfg.timeout_s,
        "tmpfs_bytes": cfg.tmpfs_mb * mib,
        "tmpfs_inodes": 4096,
        "expose": [os.path.realpath(sys.base_prefix)],
        "sys_path": _stdlib_paths(),
        "rlimits": {
            "RLIMIT_CORE": 0,
            "RLIMIT_CPU": cpu,
            "RLIMIT_AS": per_process * mib,
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


@dataclass
class _Teardown:
    processes_killed: int
    clean: bool  # nothing of the run is left (kernel-confirmed with a cgroup)
    peak_memory_bytes: int | None
    oom_kills: int


def _teardown(
    proc: subprocess.Popen, cgroup: SlotCgroup | None, uids: tuple[int, int]
) -> _Teardown:
    """Kill what is left of the run and wait for the kernel to confirm it is gone.

    The bootstrap is spared until the jail's init is dead, so it reaps init (no zombie)."""
    if cgroup is not None:
        killed = cgroup.kill(spare=proc.pid) if proc.poll() is None else 0
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TEARDOWN_WAIT_S)
        killed += cgroup.kill()  # the bootstrap, if it did not exit; anything else left
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TEARDOWN_WAIT_S)
        empty = cgroup.wait_empty(TEARDOWN_WAIT_S)
        peak, ooms = cgroup.peak_memory_bytes(), cgroup.oom_kills()
        removed = empty and cgroup.remove()
        return _Teardown(len(cgroup.killed), empty and removed, peak, ooms)
    killed = 0
    if proc.poll() is None:
        for pid in _children(proc.pid):  # the jail's init: its death empties the namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TEARDOWN_WAIT_S)
        if proc.poll() is None:
            proc.kill()
            killed += 1
            proc.wait()
    swept, left = _sweep_uids(uids, TEARDOWN_WAIT_S)
    return _Teardown(killed + swept, not left, None, 0)


def _run_in_slot(program: str, tests: str, cfg: SandboxConfig, uid: int) -> tuple[ExecResult, bool]:
    """One run in slot ``uid``; returns the result and whether the slot may be reused."""
    token = secrets.token_hex(16)
    nonce = secrets.token_hex(4)
    cgroup = SlotCgroup.create(
        f"slot-{uid}-{nonce}", cfg.memory_mb * 1024 * 1024, cfg.max_processes + 3
    )  # + bootstrap, init and harness
    read_fd, write_fd = os.pipe()
    job = json.dumps(_job(program, tests, cfg, uid, token, write_fd, cgroup is not None))
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
        if cgroup is not None:
            cgroup.add(proc.pid)  # before it reads its job, so before it can fork
        _, err = proc.communicate(job.encode(), timeout=cfg.timeout_s + cfg.startup_grace_s)
    except subprocess.TimeoutExpired:
        killed = "killed: wall-clock timeout"
    finally:
        end = _teardown(proc, cgroup, (uid, uid + cfg.max_slots))
    if killed:
        _, err = proc.communicate()  # already exited: collects stderr, closes the pipes
    wall = time.perf_counter() - started
    raw = _read_result(read_fd)
    # the jail's own failure; not when anything of the run was killed (by us or the OOM killer)
    if proc.returncode == SETUP_ERROR and not killed and end.clean and not end.oom_kills:
        raise SandboxUnavailable(f"sandbox setup failed: {err.decode(errors='replace').strip()}")
    if end.processes_killed:
        log.info("sandbox uid %d: killed %d processes at teardown", uid, end.processes_killed)
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
    if not passed and end.oom_kills:
        status = f"killed: slot memory limit ({cfg.memory_mb} MiB) reached; {status}"
    if not end.clean:
        passed = False
        status = "killed: processes of this run outlived teardown; " + status
        log.error("sandbox uid %d: teardown incomplete, slot retired", uid)
    result = ExecResult(passed, status, wall, uid, end.processes_killed, end.peak_memory_bytes)
    return result, end.clean


def run_program(program: str, tests: str = "", config: SandboxConfig | None = None) -> ExecResult:
    """Run ``program`` in a fresh jail, then ``tests`` against it in a separate judge process.

    Passed only if the program ran to its end and the tests then ran to theirs without an
    exception, every call into the program answered once, as plain data."""
    _require_root()
    cfg = config or current_config()
    uid = _slots.acquire(cfg)
    reusable = False
    try:
        result, reusable = _run_in_slot(program, tests, cfg, uid)
        return result
    finally:
        _slots.release(uid, reusable)


def run_programs(
    jobs: Sequence[tuple[str, str]], config: SandboxConfig | None = None
) -> list[ExecResult]:
    """Run (program, tests) pairs in parallel, up to ``workers`` at once; results in order."""
    _require_root()
    cfg = config or current_config()
    if len(jobs) <= 1 or cfg.workers == 1:
        return [run_program(p, t, cfg) for p, t in jobs]
    with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], cfg), jobs))
