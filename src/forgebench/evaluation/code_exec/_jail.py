"""Sandbox bootstrap: run as root in a fresh ``python -I -S`` interpreter, one per candidate.

Standard library only, no forgebench imports: it runs before any untrusted code, reads its job
(JSON) from stdin and never returns to the caller's interpreter. Layout of one run::

    bootstrap (host pid ns, root) -- unshare(mnt, net, pid, ipc, uts) -- waits for init
      init (pid 1 of the new pid ns, root): private mounts, chroot jail, then forks
        candidate (slot uid/gid, no capabilities, no_new_privs, rlimits): runs the program

When init exits the kernel SIGKILLs every process left in the pid namespace (daemons that
called setsid included), and the namespace's tmpfs mounts vanish with it. Exit status of
this script: 0 after the candidate finished (whatever it did), SETUP_ERROR if the jail could
not be built (the caller raises; candidates are never run unsandboxed).
"""

import ctypes
import json
import os
import resource
import signal
import sys

SETUP_ERROR = 86
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = [None if v is None else v.encode() for v in (source, target, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {target}")


def _bind_readonly(source: str, target: str) -> None:
    # MS_REMOUNT always with MS_BIND: it changes this bind mount only, never the host's superblock
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _build_root(job: dict) -> str:
    """A tmpfs holding only the allow-listed system dirs (read-only) and writable /tmp."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # first: nothing below propagates to the host
    root = "/tmp"  # the host's /tmp is shadowed in this mount namespace only
    size = f"size={job['tmpfs_bytes']},nr_inodes={job['tmpfs_inodes']},mode=0755"
    _mount("fbsandbox", root, "tmpfs", MS_NOSUID | MS_NODEV, size)
    for name in SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), root + host)
        elif os.path.isdir(host):
            os.mkdir(root + host)
            _bind_readonly(host, root + host)
    for path in job["expose"]:  # the interpreter's stdlib, wherever it lives
        inside = root + path
        if not os.path.exists(inside):
            os.makedirs(inside)
            _bind_readonly(path, inside)
    for name in ("tmp", "var/tmp", "dev/shm"):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        os.chmod(f"{root}/{name}", 0o1777)
    for dev in DEVICES:
        with open(f"{root}/dev/{dev}", "w"):
            pass
        _mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, MS_BIND)
    os.mkdir(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | 8)  # 8: MS_NOEXEC
    return root


def _candidate(job: dict, root: str, ready: int) -> None:
    """Runs in the forked candidate process; never returns."""
    _exit, _write, _close = os._exit, os.write, os.close  # immune to the program's monkeypatching
    fd = job["result_fd"]
    for res, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, res), (value, value))
    os.chroot(root)
    os.chdir("/tmp")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.setgroups([])
    os.setresgid(job["gid"], job["gid"], job["gid"])
    os.setresuid(job["uid"], job["uid"], job["uid"])
    if os.getresuid() != (job["uid"],) * 3 or os.getresgid() != (job["gid"],) * 3:
        raise OSError("uid/gid switch did not take")
    null = os.open("/dev/null", os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    os.environ.clear()
    os.environ.update(
        PATH="/usr/bin:/bin", HOME="/tmp", TMPDIR="/tmp", LANG="C.UTF-8", OMP_NUM_THREADS="1"
    )
    sys.path[:] = job["sys_path"]
    token, program, timeout = job["token"].encode(), job["program"], job["timeout_s"]
    job.clear()

    class _Timeout(BaseException):
        pass

    def _alarm(signum, frame):
        raise _Timeout

    signal.signal(signal.SIGPROF, _alarm)
    _write(ready, b"ok")  # from here on, whatever happens is the program's doing
    _close(ready)
    os.closerange(3, fd)
    os.closerange(fd + 1, 65536)
    outcome = "passed"
    # CPU time (ITIMER_PROF), not wall time as human-eval: a loaded host must not turn a correct
    # program into a timeout; sleeping programs meet the host's wall-clock kill instead.
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout)
        exec(compile(program, "<candidate>", "exec"), {})
        signal.setitimer(signal.ITIMER_PROF, 0)
    except _Timeout:
        outcome = "timed out"
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, MemoryError: all failures
        outcome = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        signal.setitimer(signal.ITIMER_PROF, 0)
        line = token if outcome == "passed" else b"-"
        _write(fd, line + b"\n" + outcome.encode("utf-8", "replace")[:400] + b"\n")
    finally:
        _exit(0)


def _init(job: dict) -> None:
    """pid 1 of the namespace: build the jail, run the candidate, reap, exit (kills the rest).

    Exit status is decided here, never by the candidate: SETUP_ERROR unless the candidate
    process reported "ok" on the ready pipe before the program started.
    """
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    # getppid() is 0 across the pid-namespace boundary, so a bootstrap that died before the
    # prctl cannot be detected here; the host's killpg and uid sweep cover that window.
    try:
        root = _build_root(job)
    except Exception as exc:
        print(f"sandbox setup failed: {exc}", file=sys.stderr, flush=True)
        os._exit(SETUP_ERROR)
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        try:
            _candidate(job, root, ready_w)
        except BaseException as exc:
            os.write(ready_w, f"error: {exc}".encode())
        os._exit(SETUP_ERROR)
    os.close(ready_w)
    os.close(job["result_fd"])
    while True:
        pid, _ = os.wait()
        if pid == child:
            break
    report = os.read(ready_r, 4096)
    if report != b"ok":
        print(f"sandbox setup failed: {report.decode(errors='replace')}", file=sys.stderr)
        os._exit(SETUP_ERROR)
    os._exit(0)


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    try:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        _check(_libc.unshare(flags), "unshare")
    except OSError as exc:
        print(f"sandbox setup failed: {exc}", file=sys.stderr, flush=True)
        os._exit(SETUP_ERROR)
    init = os.fork()
    if init == 0:
        _init(job)
    os.close(job["result_fd"])
    _, status = os.waitpid(init, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else SETUP_ERROR)


if __name__ == "__main__":
    main()
