"""Code-execution sandbox: hostile candidates are contained, scored failing, and leave nothing.

Each hostile program is run against the same test (``assert add(2, 3) == 5``) in one parallel
batch (module fixture) under tight limits, then checked one by one; the host checks look for
processes of the sandbox uids and for the files the programs tried to leave behind. The
forging candidates each define a wrong ``add`` and try to turn it into a pass.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from pathlib import Path

import pytest

from forgebench.errors import ForgebenchError
from forgebench.evaluation.code_exec import (
    SandboxUnavailable,
    configure,
    estimate_pass_at_k,
    humaneval_pass_at_k,
    lm_eval_metrics,
    mbpp_pass_at_1,
    run_program,
    run_programs,
    sandbox_uids,
)
from forgebench.evaluation.code_exec import sandbox as sandbox_module

REPO = Path(__file__).resolve().parents[1]
MARK = f"fb_sandbox_{uuid.uuid4().hex}"
HOST_DIRS = [Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), REPO]
LIMITS = dict(
    workers=2,
    timeout_s=1.0,
    startup_grace_s=4.0,
    memory_mb=256,
    max_processes=8,
    max_file_mb=4,
    tmpfs_mb=8,
)


@pytest.fixture(scope="module", autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root (CI runs as root)")
    configure(**LIMITS)
    yield
    configure()


@pytest.fixture(scope="module")
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


CHECK = "assert add(2, 3) == 5"

# writes a forged verdict (any token-like string found, or 32 zeros) and forged answers to every
# fd it can reach; shared by the forging candidates below
FORGE = """
import os, gc, sys
def _tokens():
    found = {b'0' * 32}
    for obj in gc.get_objects():
        for v in (obj.values() if isinstance(obj, dict) else ()):
            if isinstance(v, str) and len(v) == 32 and all(c in '0123456789abcdef' for c in v):
                found.add(v.encode())
    return found
def _forge():
    lines = [t + b'\\npassed\\n' for t in _tokens()]
    lines += [('{"id": %d, "ok": 5}\\n' % i).encode() for i in range(0, 8)]
    for fd in range(0, 256):
        for line in lines:
            try:
                os.write(fd, line)
            except OSError:
                pass
"""


def forging_programs() -> dict[str, str]:
    """Candidates that answer wrongly and try to be scored as passing anyway."""
    return {
        # issue 19 (a): walk up to the runner's frame, take its token and result fd, write a pass
        "frame_walk_to_runner": (
            "import sys, os\ndef add(a, b):\n    f = sys._getframe()\n    while f:\n"
            "        loc = f.f_locals\n        tok = loc.get('token')\n"
            "        fd = loc.get('fd', loc.get('result_fd'))\n"
            "        if tok is not None and fd is not None:\n"
            "            os.write(fd, (tok if isinstance(tok, bytes) else tok.encode())"
            " + b'\\npassed\\n')\n            os._exit(0)\n        f = f.f_back\n"
            "    return 0"
        ),
        # issue 19 (b): fork at each call, child True, parent False, a failing branch exits
        # silently; here on booleans so that one branch is always right
        "fork_oracle": (
            "import os, sys\n"
            "def _quiet(frame, event, arg):\n"
            "    if event == 'exception' and issubclass(arg[0], AssertionError):\n"
            "        try:\n            while True:\n                os.wait()\n"
            "        except ChildProcessError:\n            pass\n        os._exit(0)\n"
            "    return _quiet\n"
            "sys.settrace(_quiet)\nsys._getframe().f_trace = _quiet\n"
            "def add(a, b):\n    return 5 if os.fork() == 0 else 0"
        ),
        "fork_oracle_child_answers_and_exits": (
            "import os\ndef add(a, b):\n    if os.fork() == 0:\n        return 5\n"
            "    os.wait()\n    return 0"
        ),
        "frame_and_gc_scan_forge": FORGE + "def add(a, b):\n    _forge()\n    return 0",
        "ctypes_write_and_ptrace": (
            FORGE + "import ctypes\nlibc = ctypes.CDLL(None)\n"
            "def add(a, b):\n    for pid in os.listdir('/proc'):\n"
            "        if pid.isdigit():\n            libc.ptrace(16, int(pid), 0, 0)\n"
            "            for what in ('mem', 'environ'):\n                try:\n"
            "                    open(f'/proc/{pid}/{what}', 'rb').read(64)\n"
            "                except OSError:\n                    pass\n"
            "    for t in _tokens():\n        for fd in range(256):\n"
            "            libc.write(fd, t + b'\\npassed\\n', 39)\n    return 0"
        ),
        "signal_handler_forges": (
            FORGE + "import signal\n"
            "def _h(*a):\n    _forge()\n    os._exit(0)\n"
            "for s in (signal.SIGPROF, signal.SIGALRM, signal.SIGTERM, signal.SIGXCPU):\n"
            "    signal.signal(s, _h)\n"
            "def add(a, b):\n    signal.alarm(1)\n    while True:\n        pass"
        ),
        "thread_answers_for_main": (
            FORGE + "import threading\n"
            "threading.Thread(target=lambda: [_forge() for _ in range(20)], daemon=True).start()"
            "\ndef add(a, b):\n    return 0"
        ),
        "atexit_forges": (
            FORGE + "import atexit\natexit.register(_forge)\n"
            "def add(a, b):\n    raise SystemExit(0)"
        ),
        "os_exit_from_finally": (
            "import os\ndef add(a, b):\n    try:\n        return 0\n    finally:\n"
            "        os._exit(0)"
        ),
        "kill_the_judge": (
            "import os, signal\ndef add(a, b):\n    for pid in os.listdir('/proc'):\n"
            "        if pid.isdigit() and int(pid) != os.getpid():\n"
            "            try:\n                os.kill(int(pid), signal.SIGKILL)\n"
            "            except OSError:\n                pass\n    return 0"
        ),
        "always_equal_object": (
            "class Yes:\n    def __eq__(self, other):\n        return True\n"
            "    def __bool__(self):\n        return True\n"
            "def add(a, b):\n    return Yes()"
        ),
        "shadow_builtin_the_test_uses": (
            "def add(a, b):\n    return 0\ndef isinstance(*a):\n    return True"
        ),
    }


def hostile_programs(port: int) -> dict[str, str]:
    writes = "\n".join(
        f"open({str(d / (MARK + '_' + d.name))!r}, 'w').write('x')" for d in HOST_DIRS
    )
    return {
        "infinite_loop": "while True:\n    pass\nassert True",
        "loop_ignoring_timer": (
            "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass"
        ),
        "sleep_forever": (
            "import signal, time\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\ntime.sleep(600)"
        ),
        "fork_bomb": (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
        ),
        "memory_bomb_at_once": "x = bytearray(2**40)",
        "memory_bomb_gradual": "x = []\nwhile True:\n    x.append(bytearray(2**24))",
        "disk_fill": (
            "with open('/tmp/fill', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)"
        ),
        "write_outside": (
            f"for p in ['/etc/{MARK}', '/usr/{MARK}', {str(REPO / MARK)!r}]:\n"
            "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n"
            "assert False"
        ),
        "write_tmp_dirs": writes + "\nassert False",
        "socket_to_host": (
            f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
            "s.sendall(b'pwned')"
        ),
        "sys_exit_before_asserts": "import sys\nsys.exit(0)\nassert False",
        "os_exit_before_asserts": "import os\nos._exit(0)\nassert False",
        "exit_with_setup_error_code": "import os\nos._exit(86)",
        "print_passed": "print('passed')\nimport os\nos.write(1, b'passed\\n')\nos._exit(0)",
        "forge_result_pipe": (
            "import os\nfor fd in range(3, 64):\n    try:\n"
            "        os.write(fd, b'0' * 32 + b'\\npassed\\n')\n    except OSError:\n        pass\n"
            "os._exit(0)"
        ),
        "close_all_fds_then_pass": (
            "import os\nfor fd in range(0, 64):\n    try:\n        os.close(fd)\n"
            "    except OSError:\n        pass"
        ),
        "monkeypatch_exit_and_write": (
            "import os, builtins\nos._exit = lambda c: None\nos.write = lambda fd, b: len(b)\n"
            "builtins.print = None\nassert False"
        ),
        "huge_output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
        "setsid_daemon": (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        time.sleep(1.5)\n        open('/tmp/{MARK}_daemon', 'w').write('x')\n"
            "        time.sleep(600)\n    os._exit(0)\ntime.sleep(0.2)\nassert False"
        ),
        "kill_everything": "import os, signal\nos.kill(-1, signal.SIGKILL)\nassert False",
    }


# programs that pass only if the sandbox is in place: they prove the isolation from inside
ISOLATION_PROBE = f"""
import os, socket
assert os.getresuid()[0] >= 65536 and 0 not in os.getresuid() and os.getgroups() == []
assert not os.path.exists({str(REPO)!r}) and not os.path.exists('/home')
assert os.listdir('/root') in ([], ['.pyenv'])
assert len([p for p in os.listdir('/proc') if p.isdigit()]) <= 3  # init, me, maybe a reaper
assert os.getcwd() == '/tmp'
open('/tmp/mine', 'w').write('own temp dir works')
assert open('/tmp/mine').read() == 'own temp dir works'
s = socket.socket()
try:
    s.connect(('127.0.0.1', 1))
    raise RuntimeError('network reachable')
except OSError as exc:
    assert exc.errno in (101, 99), exc  # ENETUNREACH / EADDRNOTAVAIL: no interface is up
for path in ('/etc/{MARK}', '/usr/{MARK}'):
    try:
        open(path, 'w')
        raise RuntimeError(path + ' writable')
    except OSError as exc:
        assert exc.errno == 30, exc  # EROFS
"""


ZOMBIES_BEFORE: set[int] = set()


@pytest.fixture(scope="module")
def outcomes(listener):
    ZOMBIES_BEFORE.update(_zombies())
    progs = hostile_programs(listener.getsockname()[1])
    progs.update(forging_programs())
    jobs = [(p, CHECK) for p in progs.values()]
    names = list(progs)
    names.append("control_pass")
    jobs.append(("def add(a, b):\n    return a + b", CHECK))
    names.append("isolation_probe")
    jobs.append((ISOLATION_PROBE, ""))
    names.append("plain_data_roundtrip")
    jobs.append(ROUNDTRIP)
    results = run_programs(jobs)
    return dict(zip(names, results, strict=True))


# values of every plain type cross intact; a candidate class is usable through handles
ROUNDTRIP = (
    "import collections\nclass Node:\n    def __init__(self, d):\n"
    "        self.d, self.left = d, None\n"
    "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n"
    "def echo(*a, **k):\n    return a, k\n"
    "def count(s):\n    return collections.Counter(s)\nLIMIT = (3, frozenset({1}))",
    "import math\nv = [1, 2.5, -0.0, float('inf'), 'x\\u00e9', None, True, (1, [2]), {3: {4}},"
    " frozenset({5}), b'\\x00', bytearray(b'y'), 1j, 10**400, {(1, 2): 'k'}]\n"
    "assert echo(*v, k=v) == (tuple(v), {'k': v})\nassert math.isnan(echo(math.nan)[0][0])\n"
    "assert [type(x) for x in echo(*v)[0]] == [type(x) for x in v]\n"
    "assert count('aab') == {'a': 2, 'b': 1} and LIMIT == (3, frozenset({1}))\n"
    "r = Node(1)\nr.left = Node(2)\nr.left.left = Node(3)\nassert depth(r) == 3 and r.left.d == 2\n"
    "try:\n    r == r\n    raise RuntimeError('handle compared')\nexcept TypeError:\n    pass",
)


@pytest.mark.parametrize("name", sorted(hostile_programs(0)) + sorted(forging_programs()))
def test_hostile_candidate_fails(outcomes, name):
    result = outcomes[name]
    assert not result.passed, result
    assert result.wall_s < LIMITS["timeout_s"] + LIMITS["startup_grace_s"] + 2


def test_control_and_isolation_probe_pass(outcomes):
    for name in ("control_pass", "isolation_probe", "plain_data_roundtrip"):
        assert outcomes[name].passed, outcomes[name]


def test_how_each_was_stopped(outcomes):
    assert outcomes["infinite_loop"].status == "timed out"
    assert outcomes["huge_output"].status == "timed out"
    # RLIMIT_CPU (SIGXCPU) kills the candidate, or on a loaded host the wall-clock kill first
    assert outcomes["loop_ignoring_timer"].status in (
        "killed: wall-clock timeout",
        "failed: candidate ended without answering",
    )
    assert outcomes["sleep_forever"].status == "killed: wall-clock timeout"
    assert "MemoryError" in outcomes["memory_bomb_at_once"].status
    # per-process limit (MemoryError) or the slot's cgroup limit (OOM kill), whichever first
    gradual = outcomes["memory_bomb_gradual"].status
    assert "MemoryError" in gradual or "slot memory limit" in gradual, gradual
    assert outcomes["sys_exit_before_asserts"].status.startswith("failed: SystemExit")
    assert outcomes["socket_to_host"].status.startswith("failed: OSError")
    assert outcomes["forge_result_pipe"].status.startswith("failed: malformed")
    assert outcomes["always_equal_object"].status.startswith("failed: TypeError: an object")
    for name in ("os_exit_from_finally", "fork_oracle_child_answers_and_exits"):
        assert outcomes[name].status.startswith("failed: "), outcomes[name]


def test_nothing_connected_to_the_host_listener(outcomes, listener):
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_host_is_unharmed(outcomes):
    uids = sandbox_uids()
    assert uids and all(u >= 65536 for u in uids)
    for uid in uids:
        assert sandbox_module.pids_of_uid(uid) == [], f"processes of sandbox uid {uid} left"
    left = [p for d in HOST_DIRS if d.is_dir() for p in d.glob(f"*{MARK}*")]
    assert left == []
    for d in HOST_DIRS[:3]:
        owned = [e.path for e in os.scandir(d) if e.stat(follow_symlinks=False).st_uid in uids]
        assert owned == []


def test_no_zombie_left(outcomes):
    # the jail's init is reaped by the bootstrap even after a wall-clock kill
    assert outcomes["sleep_forever"].status == "killed: wall-clock timeout"
    assert _zombies() - ZOMBIES_BEFORE == set()


def test_without_cgroups_teardown_is_a_timed_wait_and_failures_stay_per_candidate(monkeypatch):
    monkeypatch.setattr(sandbox_module.SlotCgroup, "create", classmethod(lambda *a: None))
    zombies_before = _zombies()
    jobs = [
        ("import time\ntime.sleep(600)", CHECK),
        (hostile_programs(0)["setsid_daemon"], CHECK),
        ("def add(a, b):\n    return a + b", CHECK),
    ]
    slow, daemon, good = run_programs(jobs)
    assert slow.status == "killed: wall-clock timeout" and slow.processes_killed >= 1
    assert not daemon.passed and good.passed
    for uid in sandbox_uids():
        assert sandbox_module.pids_of_uid(uid) == []
    assert _zombies() - zombies_before == set()


def test_daemon_did_not_outlive_the_jail(outcomes):
    import time

    time.sleep(2.0)  # the daemon would have written its marker after 1.5 s
    assert not Path(f"/tmp/{MARK}_daemon").exists()
    for uid in sandbox_uids():
        assert sandbox_module.pids_of_uid(uid) == []


def test_builtin_named_function_under_test_but_not_a_judging_builtin():
    # MBPP 126 defines ``sum`` and tests it; a candidate redefining ``abs`` must not judge itself
    assert run_program("def sum(a, b):\n    return a + b", "assert sum(1, 2) == 3").passed
    forged = run_program(
        "def add(a, b):\n    return 0\ndef abs(x):\n    return 0",
        "assert abs(add(2, 3) - 5) < 1e-6",
    )
    assert not forged.passed and forged.status.startswith("failed: AssertionError")


def test_prefetched_scores_equal_direct_ones():
    ok, bad = "def add(a, b):\n    return a + b", "def add(a, b):\n    return a * b"
    refs = ["assert add(2, 3) == 5", "assert add(1, 1) == 2"]
    preds = [[ok, bad, ok], [bad, ok]]
    direct = humaneval_pass_at_k(refs, preds, k=[1, 2])
    assert lm_eval_metrics.prefetch(refs, preds) == 5
    per_doc = [humaneval_pass_at_k([r], [p], k=[1, 2]) for r, p in zip(refs, preds, strict=True)]
    assert lm_eval_metrics._pending == {}  # every queued result was taken
    assert direct == {k: sum(d[k] for d in per_doc) / 2 for k in direct}


def test_refuses_without_root(monkeypatch):
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable, match="unsandboxed"):
        run_program("x = 1", "assert x == 1")


def test_bad_config_names_the_key(monkeypatch):
    with pytest.raises(ForgebenchError, match="FORGEBENCH_CODE_EXEC_WORKERS"):
        configure(workers=0)
    with pytest.raises(ForgebenchError, match=r"unknown.*FORGEBENCH_CODE_EXEC_"):
        configure(worker=2)
    monkeypatch.setenv("FORGEBENCH_CODE_EXEC_TIMEOUT_S", "soon")
    with pytest.raises(ForgebenchError, match="FORGEBENCH_CODE_EXEC_TIMEOUT_S"):
        configure()
    monkeypatch.setenv("FORGEBENCH_CODE_EXEC_TIMEOUT_S", "2.5")
    assert configure(workers=3).timeout_s == 2.5
    configure(**LIMITS)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 1, 1, 0.2),
        (10, 3, 2, 1 - 21 / 45),  # 1 - C(7,2)/C(10,2)
        (10, 0, 5, 0.0),
        (3, 3, 1, 1.0),
        (4, 2, 3, 1.0),  # fewer than k wrong ones: any k-subset holds a correct one
        (200, 13, 100, 1 - math.comb(187, 100) / math.comb(200, 100)),
    ],
)
def test_estimate_pass_at_k_hand_values(n, c, k, expected):
    assert estimate_pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_estimate_pass_at_k_rejects_nonsense():
    for args in [(3, 4, 1), (3, 1, 0), (3, 1, 4), (-1, 0, 1)]:
        with pytest.raises(ValueError):
            estimate_pass_at_k(*args)


def test_lm_eval_dropins_score_like_code_eval():
    ok, bad = "def add(a, b):\n    return a + b", "def add(a, b):\n    return a * b"
    ref = "assert add(2, 3) == 5"
    assert humaneval_pass_at_k([ref], [[ok]], k=[1]) == {"pass@1": 1.0}
    assert humaneval_pass_at_k([ref], [[ok, bad, bad, bad]], k=[1, 2, 5]) == {
        "pass@1": 0.25,
        "pass@2": 0.5,
    }
    assert humaneval_pass_at_k([ref, ref], [[ok], [bad]], k=1) == {"pass@1": 0.5}
    assert mbpp_pass_at_1(ref, [ok]) == 1.0
    assert mbpp_pass_at_1([ref], [[bad]]) == 0.0
    assert isinstance(mbpp_pass_at_1(ref, [ok]), float)


EIGHT_GIGABYTES = """
import os, time
kids = []
for _ in range(7):
    pid = os.fork()
    if pid == 0:
        block = b'x' * 10**9  # written, so resident
        time.sleep(2)
        os._exit(0)
    kids.append(pid)
block = b'x' * 10**9
codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in kids]
assert codes == [0] * 7, codes
def add(a, b):
    return a + b
"""


def _zombies() -> set[int]:
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if stat.rpartition(")")[2].split()[0] == "Z":
                found.add(int(entry.name))
    return found


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable")


def test_eight_gigabytes_in_one_slot_stop_at_the_slot_limit():
    """8 processes x 1 GB (written) under a 1 GiB slot: the kernel's high-water mark of the
    slot and the host's available memory both stay within the limit; nothing is left."""
    import threading
    import time

    probe = sandbox_module.SlotCgroup.create("probe-" + uuid.uuid4().hex[:8], 2**30, 8)
    if probe is None:
        pytest.skip("no writable cgroup on this host (rlimit fallback)")
    assert probe.remove()
    limit = 2**30
    cfg = configure(**{**LIMITS, "memory_mb": 1024, "timeout_s": 5.0, "startup_grace_s": 10.0})
    zombies_before = _zombies()
    low, stop = [_mem_available()], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            low[0] = min(low[0], _mem_available())
            time.sleep(0.005)

    baseline = _mem_available()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = run_program(EIGHT_GIGABYTES, CHECK, cfg)
    finally:
        stop.set()
        sampler.join()
        configure(**LIMITS)
    host_loss = baseline - low[0]
    print(
        f"\n8 x 1 GB in a 1 GiB slot: {result.status}; slot peak "
        f"{result.peak_memory_bytes / 2**20:.0f} MiB, host MemAvailable drop "
        f"{host_loss / 2**20:.0f} MiB, processes killed at teardown {result.processes_killed}"
    )
    assert not result.passed
    assert "slot memory limit" in result.status, result.status
    # What the slot took from the host is the kernel's own peak for its cgroup: at most the
    # limit. MemAvailable is only a sanity bound: it moves with every other process and
    # the page cache (80 MiB to 1.6 GiB drops measured here for the same 1 GiB slot), so
    # it only has to rule out the 8 GB escaping the slot.
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes <= limit
    assert host_loss <= 2 * limit + 512 * 2**20, f"{host_loss / 2**20:.0f} MiB left the slot?"
    assert _zombies() - zombies_before == set()
    for uid in sandbox_uids():
        assert sandbox_module.pids_of_uid(uid) == []
