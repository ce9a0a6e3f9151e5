"""Sandbox bootstrap: run as root in a fresh ``python -I -S`` interpreter, one per candidate.

Standard library only, no forgebench imports: it runs before any untrusted code, reads its job
(JSON) from stdin and never returns to the caller's interpreter. Layout of one run::

    bootstrap (host pid ns, root, already in the slot's cgroup) -- unshare(mnt, net, pid, ...)
      init (pid 1 of the new pid ns, root): private mounts, chroot jail, then forks two
        candidate (slot uid): runs the model's program, then answers calls, one JSON line each
        harness (judge uid): runs the tests; names the tests take from the candidate's program
                             are proxies that ask the candidate; writes the verdict

The verdict is written only by the harness, a process of another uid that holds the only
result pipe: the candidate cannot read its memory (/proc/<pid>/mem and ptrace need the same
uid), signal it, or reach the pipe. What crosses from candidate to harness is plain data
(JSON, decoded into builtin types only), so no candidate object ever runs code in the harness:
a value that is not plain data stays in the candidate as an opaque handle whose only uses are
calling it and reading or setting attributes; comparing, hashing, iterating or testing its
truth fails the test. One answer per question, matched by number: forked copies answering
twice, silence, garbage or an exit count as failures, and every answer is judged once by the
single harness process, so a fork can never try both answers.

When init exits (after the harness) the kernel SIGKILLs every process left in the pid
namespace, and its tmpfs mounts vanish. Exit status: 0 after the harness finished (whatever
the candidate did), SETUP_ERROR if the jail could not be built.
"""

import builtins
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
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
DEVICES = ("null", "zero", "full", "random", "urandom")
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
MAX_LINE = 64 * 1024 * 1024  # one answer, encoded

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


def _drop_to(job: dict, uid: int, root: str, keep: tuple[int, ...]) -> None:
    """rlimits, chroot, no_new_privs, the given uid/gid, /dev/null stdio, only ``keep`` fds."""
    for res, value in job["rlimits"].items():
        resource.setrlimit(getattr(resource, res), (value, value))
    os.chroot(root)
    os.chdir("/tmp")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid,) * 3 or os.getresgid() != (uid,) * 3:
        raise OSError("uid/gid switch did not take")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")
    null = os.open("/dev/null", os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    last = 3
    for fd in sorted(keep):
        os.closerange(last, fd)
        last = fd + 1
    os.closerange(last, 65536)
    os.environ.clear()
    os.environ.update(
        PATH="/usr/bin:/bin", HOME="/tmp", TMPDIR="/tmp", LANG="C.UTF-8", OMP_NUM_THREADS="1"
    )
    sys.path[:] = job["sys_path"]
    sys.set_int_max_str_digits(0)


# ---- plain data: the only thing that crosses between candidate and harness ------------------

_PLAIN = (type(None), bool, int, float, str)


def encode(value, handles: list | None = None):
    """JSON-ready form; containers tagged so tuples, sets and dict keys survive. Objects that
    are not plain data become handles when ``handles`` is given, else TypeError."""
    if type(value) in _PLAIN:
        return value
    for base in (bool, int, float, str):  # subclasses arrive as their base type
        if isinstance(value, base):
            return base(value)
    if isinstance(value, list | tuple | set | frozenset):
        tag = {list: "l", tuple: "t", set: "s", frozenset: "fs"}
        kind = next(t for t in (list, tuple, frozenset, set) if isinstance(value, t))
        return [tag[kind], [encode(v, handles) for v in value]]
    if isinstance(value, dict):
        tag = "c" if type(value).__name__ == "Counter" else "d"
        return [tag, [[encode(k, handles), encode(v, handles)] for k, v in value.items()]]
    if isinstance(value, bytes | bytearray):
        return ["b" if isinstance(value, bytes) else "ba", bytes(value).hex()]
    if isinstance(value, complex):
        return ["j", [value.real, value.imag]]
    ref = getattr(value, "_fb_ref", None)
    if isinstance(ref, list):  # a harness-side proxy going back to the candidate
        return ref
    if handles is None:
        raise TypeError(f"{type(value).__name__} is not plain data")
    handles.append(value)
    return ["h", len(handles) - 1]


def decode(data, on_ref=None):
    """The value ``encode`` made; handles and global refs go through ``on_ref``."""
    if not isinstance(data, list):
        return data
    tag, body = data
    if tag in ("l", "t", "s", "fs"):
        items = [decode(v, on_ref) for v in body]
        return {"l": list, "t": tuple, "s": set, "fs": frozenset}[tag](items)
    if tag in ("d", "c"):
        pairs = {decode(k, on_ref): decode(v, on_ref) for k, v in body}
        if tag == "c":
            import collections

            return collections.Counter(pairs)
        return pairs
    if tag in ("b", "ba"):
        raw = bytes.fromhex(body)
        return raw if tag == "b" else bytearray(raw)
    if tag == "j":
        return complex(body[0], body[1])
    if tag in ("h", "g") and on_ref is not None:
        return on_ref(data)
    raise ValueError(f"unknown tag {tag!r}")


# ---- candidate: run the program, then answer calls ------------------------------------------


class _Timeout(BaseException):
    pass


def _candidate(job: dict, root: str, ready: int, req_r: int, resp_w: int) -> None:
    """Runs in the forked candidate process; never returns."""
    _exit, _write, _close, _read = os._exit, os.write, os.close, os.read
    _dumps, _loads = json.dumps, json.loads
    _drop_to(job, job["uid"], root, (ready, req_r, resp_w))
    program, timeout = job["program"], job["timeout_s"]
    job.clear()

    def _alarm(signum, frame):
        raise _Timeout

    def send(msg: dict) -> None:
        data = (_dumps(msg) + "\n").encode()
        while data:
            data = data[_write(resp_w, data) :]

    signal.signal(signal.SIGPROF, _alarm)
    _write(ready, b"ok")  # from here on, whatever happens is the program's doing
    _close(ready)
    namespace: dict = {}
    handles: list = []
    # CPU time (ITIMER_PROF) over the whole run, not wall time: a loaded host must not turn a
    # correct program into a timeout; sleeping programs meet the host's wall-clock kill.
    try:
        signal.setitimer(signal.ITIMER_PROF, timeout)
        exec(compile(program, "<candidate>", "exec"), namespace)
        send({"id": 0, "ok": None})
    except _Timeout:
        send({"id": 0, "timeout": True})
        _exit(0)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, MemoryError: all failures
        send({"id": 0, "raise": [type(exc).__name__, str(exc)[:200]]})
        _exit(0)

    def resolve(ref):
        return namespace[ref[1]] if ref[0] == "g" else handles[ref[1]]

    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = _read(req_r, 1 << 16)
            if not chunk:
                _exit(0)
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        req = _loads(line)
        try:
            op = req["op"]
            if op == "describe":
                out = {}
                for name in req["names"]:
                    if name in namespace:
                        value = namespace[name]
                        if type(value).__name__ == "module":
                            out[name] = ["module", value.__name__]
                        elif callable(value):
                            out[name] = ["callable", type(value).__name__]
                        else:
                            out[name] = ["value", encode(value, handles)]
                result = out
            elif op == "call":
                args = [decode(a, resolve) for a in req["args"]]
                kwargs = {k: decode(v, resolve) for k, v in req["kwargs"].items()}
                result = encode(resolve(req["target"])(*args, **kwargs), handles)
            elif op == "getattr":
                result = encode(getattr(resolve(req["target"]), req["name"]), handles)
            elif op == "end":
                result = None
            elif op == "setattr":
                setattr(resolve(req["target"]), req["name"], decode(req["value"], resolve))
                result = None
            else:
                raise ValueError(f"unknown op {op!r}")
            send({"id": req["id"], "ok": result})
        except _Timeout:
            send({"id": req["id"], "timeout": True})
            _exit(0)
        except BaseException as exc:
            send({"id": req["id"], "raise": [type(exc).__name__, str(exc)[:200]]})


# ---- harness: run the tests, ask the candidate, write the verdict ---------------------------


class Verdict(BaseException):
    """Ends the tests with a fixed outcome; a BaseException so test code cannot catch it."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class RemoteError(Exception):
    """An exception raised in the candidate whose type is not a builtin exception."""


class Channel:
    """Questions to the candidate, one JSON line each, answers matched by number."""

    def __init__(self, req_w: int, resp_r: int) -> None:
        self.req_w, self.resp_r = req_w, resp_r
        self.next_id = 0
        self.buf = b""

    def answer(self, expect_id: int):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise Verdict("failed: answer too large")
            chunk = os.read(self.resp_r, 1 << 16)
            if not chunk:
                raise Verdict("failed: candidate ended without answering")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
            ok = isinstance(msg, dict) and msg.get("id") == expect_id
        except ValueError:
            ok = False
        if not ok:
            raise Verdict("failed: malformed or unexpected answer from candidate")
        if "timeout" in msg:
            raise Verdict("timed out")
        if "raise" in msg:
            name, text = str(msg["raise"][0]), str(msg["raise"][1])
            if expect_id == 0:  # the program itself did not run to its end
                raise Verdict(f"failed: {name}: {text}")
            kind = getattr(builtins, name, None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = RemoteError
            raise kind(f"{name}: {text}")
        if "ok" not in msg:
            raise Verdict("failed: malformed or unexpected answer from candidate")
        return msg["ok"]

    def ask(self, request: dict):
        self.next_id += 1
        request["id"] = self.next_id
        data = (json.dumps(request) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.req_w, data) :]
        except BrokenPipeError:
            raise Verdict("failed: candidate ended without answering") from None
        return self.answer(self.next_id)


class Remote:
    """A name or object of the candidate: callable, attributes readable and settable, else
    opaque (comparing or using it as a value fails the test)."""

    __slots__ = ("_fb_channel", "_fb_ref")

    def __init__(self, ref: list, channel: Channel) -> None:
        object.__setattr__(self, "_fb_ref", ref)
        object.__setattr__(self, "_fb_channel", channel)

    def __call__(self, *args, **kwargs):
        req = {"op": "call", "target": self._fb_ref, "args": [encode(a) for a in args]}
        req["kwargs"] = {k: encode(v) for k, v in kwargs.items()}
        return _from_candidate(self._fb_channel.ask(req), self._fb_channel)

    def __getattr__(self, name: str):
        data = self._fb_channel.ask({"op": "getattr", "target": self._fb_ref, "name": name})
        return _from_candidate(data, self._fb_channel)

    def __setattr__(self, name: str, value) -> None:
        req = {"op": "setattr", "target": self._fb_ref, "name": name, "value": encode(value)}
        self._fb_channel.ask(req)

    def _fb_opaque(self, *args, **kwargs):
        raise TypeError("an object of the candidate's that is not plain data cannot be used here")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _fb_opaque
    __bool__ = __len__ = __iter__ = __contains__ = __getitem__ = __hash__ = _fb_opaque
    __add__ = __radd__ = __sub__ = __mul__ = __index__ = __int__ = __float__ = _fb_opaque


def _from_candidate(data, channel: Channel):
    return decode(data, lambda ref: Remote(ref, channel))


def _names_used(code) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_used(const)
    return names


def _literal(node) -> bool:
    import ast

    kinds = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp, ast.unaryop)
    return all(isinstance(n, (*kinds, ast.expr_context)) for n in ast.walk(node))


def _builtins_under_test(tests: str) -> set[str]:
    """Builtin names the tests check as the function under test, ``assert NAME(literals) ...``
    (MBPP 126 defines ``sum``); any other builtin the tests use stays the real one, so a
    candidate cannot redefine ``abs`` or ``isinstance`` to pass a check."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(tests)):
        if isinstance(node, ast.Assert):
            expr = node.test.left if isinstance(node.test, ast.Compare) else node.test
            if (
                isinstance(expr, ast.Call)
                and isinstance(expr.func, ast.Name)
                and hasattr(builtins, expr.func.id)
                and all(_literal(a) for a in [*expr.args, *(k.value for k in expr.keywords)])
            ):
                found.add(expr.func.id)
    return found


def _run_tests(tests: str, channel: Channel) -> str:
    channel.answer(0)  # the candidate's program ran to its end
    code = compile(tests, "<tests>", "exec")
    under_test = _builtins_under_test(tests)
    wanted = sorted(n for n in _names_used(code) if not hasattr(builtins, n) or n in under_test)
    namespace: dict = {"__name__": "__main__"}
    if wanted:
        described = channel.ask({"op": "describe", "names": wanted})
        for name, (kind, data) in dict(described).items():
            if kind == "module" and data.split(".")[0] in sys.stdlib_module_names:
                namespace[name] = __import__(data, fromlist=["_"])
            elif kind == "callable":
                namespace[name] = Remote(["g", name], channel)
            elif kind == "value":
                namespace[name] = _from_candidate(data, channel)
    exec(code, namespace)
    channel.ask({"op": "end"})  # a second answerer still owing an answer shows up here
    return "passed"


def _forked(uid: int) -> bool:
    """More than one process of the candidate's uid in the jail (zombies included)."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as fh:
                    uids = next(line for line in fh if line.startswith(b"Uid:")).split()[1:]
            except (OSError, StopIteration):
                continue
            count += str(uid).encode() in uids
    return count > 1


def _unasked_answers(channel: Channel) -> bool:
    """Data the candidate sent that no question asked for (a second answerer)."""
    if channel.buf.strip():
        return True
    os.set_blocking(channel.resp_r, False)
    try:
        return bool(os.read(channel.resp_r, 1))
    except BlockingIOError:
        return False


def _harness(job: dict, root: str, ready: int, req_w: int, resp_r: int) -> None:
    """Runs in the forked harness process; never returns."""
    result_fd, token, tests = job["result_fd"], job["token"].encode(), job["tests"]
    cand_uid = job["uid"]
    _drop_to(job, job["judge_uid"], root, (ready, req_w, resp_r, result_fd))
    job.clear()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    os.write(ready, b"ok")
    os.close(ready)
    channel = Channel(req_w, resp_r)
    try:
        outcome = _run_tests(tests, channel)
        # checked in this order: a second answerer that is gone had written before it went
        if _forked(cand_uid):
            outcome = "failed: candidate forked (more than one process answering)"
        elif _unasked_answers(channel):
            outcome = "failed: answers nobody asked for (more than one answerer)"
    except Verdict as exc:
        outcome = exc.outcome
    except BaseException as exc:
        outcome = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    try:
        line = token if outcome == "passed" else b"-"
        os.write(result_fd, line + b"\n" + outcome.encode("utf-8", "replace")[:400] + b"\n")
    finally:
        os._exit(0)


# ---- init and bootstrap ----------------------------------------------------------------------


def _spawn(role, job: dict, root: str, fds: tuple[int, ...], close: tuple[int, ...]):
    """Fork ``role``; returns (pid, ready read end). The child reports "ok" once set up."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        for fd in close:
            os.close(fd)
        try:
            role(job, root, ready_w, *fds)
        except BaseException as exc:
            os.write(ready_w, f"error: {exc}".encode())
        os._exit(SETUP_ERROR)
    os.close(ready_w)
    return pid, ready_r


def _init(job: dict) -> None:
    """pid 1 of the namespace: build the jail, fork candidate and harness, reap, exit once the
    harness is done (which kills the rest). SETUP_ERROR unless both reported "ok"."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    try:
        root = _build_root(job)
    except Exception as exc:
        print(f"sandbox setup failed: {exc}", file=sys.stderr, flush=True)
        os._exit(SETUP_ERROR)
    req_r, req_w = os.pipe()
    resp_r, resp_w = os.pipe()
    result_fd = job["result_fd"]
    cand, cand_ready = _spawn(_candidate, job, root, (req_r, resp_w), (req_w, resp_r, result_fd))
    judge, judge_ready = _spawn(_harness, job, root, (req_w, resp_r), (req_r, resp_w))
    for fd in (req_r, req_w, resp_r, resp_w, result_fd):
        os.close(fd)
    reports = {}
    while judge not in reports:
        pid, _ = os.wait()
        if pid in (cand, judge):
            reports[pid] = os.read(cand_ready if pid == cand else judge_ready, 4096)
    if cand not in reports:  # still running: it got "ok" out if it reached the program
        os.set_blocking(cand_ready, False)
        try:
            reports[cand] = os.read(cand_ready, 4096)
        except BlockingIOError:
            reports[cand] = b"(no report)"
    bad = {k: v for k, v in reports.items() if v != b"ok"}
    if bad:
        text = "; ".join(v.decode(errors="replace") for v in bad.values())
        print(f"sandbox setup failed: {text}", file=sys.stderr, flush=True)
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
    _, status = os.waitpid(init, 0)  # always reaped here: init never becomes a zombie
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else SETUP_ERROR)


if __name__ == "__main__":
    main()
