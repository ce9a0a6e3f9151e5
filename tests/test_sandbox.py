"""Code-execution sandbox: hostile candidates are contained, scored failing, and leave nothing.

Each hostile program is run in one parallel batch (module fixture) under tight limits, then
checked one by one; the host checks look for processes of the sandbox uids and for the files
the programs tried to leave behind.
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


@pytest.fixture(scope="module")
def outcomes(listener):
    progs = hostile_programs(listener.getsockname()[1])
    progs["control_pass"] = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5"
    progs["isolation_probe"] = ISOLATION_PROBE
    results = run_programs(list(progs.values()))
    return dict(zip(progs, results, strict=True))


@pytest.mark.parametrize("name", sorted(hostile_programs(0)))
def test_hostile_candidate_fails(outcomes, name):
    result = outcomes[name]
    assert not result.passed, result
    assert result.wall_s < LIMITS["timeout_s"] + LIMITS["startup_grace_s"] + 2


def test_control_and_isolation_probe_pass(outcomes):
    assert outcomes["control_pass"].passed, outcomes["control_pass"]
    assert outcomes["isolation_probe"].passed, outcomes["isolation_probe"]


def test_how_each_was_stopped(outcomes):
    assert outcomes["infinite_loop"].status == "timed out"
    assert outcomes["huge_output"].status == "timed out"
    # RLIMIT_CPU (SIGXCPU) or, on a loaded host, the wall-clock kill first
    assert outcomes["loop_ignoring_timer"].status.startswith("killed: ")
    assert outcomes["sleep_forever"].status == "killed: wall-clock timeout"
    assert "MemoryError" in outcomes["memory_bomb_at_once"].status
    assert "MemoryError" in outcomes["memory_bomb_gradual"].status
    assert outcomes["sys_exit_before_asserts"].status.startswith("failed: SystemExit")
    assert outcomes["socket_to_host"].status.startswith("failed: OSError")
    assert outcomes["forge_result_pipe"].status == "failed: forged result"


def test_nothing_connected_to_the_host_listener(outcomes, listener):
    with pytest.raises(BlockingIOError):
        listener.accept()


def test_host_is_unharmed(outcomes):
    uids = sandbox_uids()
    assert uids and all(u >= LIMITS["workers"] for u in uids)
    for uid in uids:
        assert sandbox_module.pids_of_uid(uid) == [], f"processes of sandbox uid {uid} left"
    left = [p for d in HOST_DIRS if d.is_dir() for p in d.glob(f"*{MARK}*")]
    assert left == []
    for d in HOST_DIRS[:3]:
        owned = [e.path for e in os.scandir(d) if e.stat(follow_symlinks=False).st_uid in uids]
        assert owned == []


def test_daemon_did_not_outlive_the_jail(outcomes):
    import time

    time.sleep(2.0)  # the daemon would have written its marker after 1.5 s
    assert not Path(f"/tmp/{MARK}_daemon").exists()
    for uid in sandbox_uids():
        assert sandbox_module.pids_of_uid(uid) == []


def test_refuses_without_root(monkeypatch):
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable, match="unsandboxed"):
        run_program("assert True")


def test_bad_config_names_the_key(monkeypatch):
    with pytest.raises(ForgebenchError, match=r"evaluation\.code_execution\.workers"):
        configure(workers=0)
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
