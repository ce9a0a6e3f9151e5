"""Tests of the resource sampler: table shape, peaks that cannot be missed, growth, robustness."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import psutil
import pytest

from forgebench import sampler as sampler_mod
from forgebench.sampler import ResourceSampler, growth_rate

MIB = 2**20
ALLOC = 200 * MIB
PEAK_MARGIN = 190 * MIB
BLOCK_S = 1.0
HOLD_S = 0.05
RUNS = 20

# A child that allocates and touches 200 MiB, holds it 50 ms and exits.
CHILD_ALLOC = textwrap.dedent(
    f"""
    import time
    buf = bytearray({ALLOC})
    buf[::4096] = bytes(len(range(0, {ALLOC}, 4096)))  # touch every page
    time.sleep({HOLD_S})
    """
)


def _touch_alloc() -> bytearray:
    buf = bytearray(ALLOC)
    buf[::4096] = bytes(len(range(0, ALLOC, 4096)))  # one write per page: all resident
    return buf


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _floor(baseline: int, sampler: ResourceSampler) -> int:
    """The process's lowest RSS around the block: under load the kernel may reclaim some of
    its file-backed pages mid-block, and the spike is judged above what was left."""
    rss = sampler.samples().query("metric == 'rss_bytes'")["value"]
    return int(min(baseline, rss.min())) if len(rss) else baseline


def _spike_block(moment: float) -> tuple[int, dict]:
    """A ~1 s sampled block with a 200 MiB spike of 50 ms at ``moment`` in this process."""
    baseline = _rss()
    with ResourceSampler(gpu=False) as s:
        t0 = time.perf_counter()
        time.sleep(moment)
        buf = _touch_alloc()
        time.sleep(HOLD_S)
        del buf
        time.sleep(max(0.0, BLOCK_S - (time.perf_counter() - t0)))
    return _floor(baseline, s), s.summary()


# Runs in a fresh interpreter (as a benchmark job does): a child spikes and exits in-block.
CHILD_DRIVER = textwrap.dedent(
    f"""
    import json, subprocess, sys, time
    import psutil
    from forgebench.sampler import ResourceSampler
    moment = float(sys.argv[1])
    baseline = psutil.Process().memory_info().rss
    with ResourceSampler(gpu=False) as s:
        t0 = time.perf_counter()
        time.sleep(moment)
        subprocess.run([sys.executable, "-c", {CHILD_ALLOC!r}], check=True)
        time.sleep(max(0.0, {BLOCK_S} - (time.perf_counter() - t0)))
    rss = s.samples().query("metric == 'rss_bytes'")["value"]
    print(json.dumps([int(min(baseline, rss.min())), s.summary()]))
    """
)


def _assert_peaks_caught(moments, results) -> None:
    """Every run reports the spike, and the kernel marks alone catch it too (not luck)."""
    short = [
        (
            round(float(m), 3),
            (summary["peak_rss_bytes"] - base) / MIB,
            ((summary["peak_rss_marks_bytes"] or 0) - base) / MIB,
            summary["peak_rss_source"],
        )
        for m, (base, summary) in zip(moments, results, strict=True)
        if min(summary["peak_rss_bytes"], summary["peak_rss_marks_bytes"] or 0) < base + PEAK_MARGIN
    ]
    assert not short, f"peaks missed (moment s, MiB above baseline, by marks, source): {short}"


def test_samples_table_columns_and_dtypes():
    with ResourceSampler(interval_s=0.05, gpu=False) as s:
        sum(i * i for i in range(300_000))
        time.sleep(0.25)
    df = s.samples()
    assert list(df.columns) == ["t_s", "metric", "unit", "value"]
    assert df["t_s"].dtype == np.float64
    assert df["value"].dtype == np.float64
    assert df["metric"].map(type).eq(str).all() and df["unit"].map(type).eq(str).all()
    metrics = set(df["metric"])
    assert {"cpu_percent", "rss_bytes", "num_threads", "num_processes"} <= metrics
    assert metrics <= {
        "cpu_percent",
        "rss_bytes",
        "num_threads",
        "num_processes",
        "io_read_bytes",
        "io_write_bytes",
    }
    units = dict(zip(df["metric"], df["unit"], strict=True))
    assert units["cpu_percent"] == "percent" and units["rss_bytes"] == "bytes"
    assert df["t_s"].is_monotonic_increasing and df["t_s"].iloc[0] < 0.01
    assert np.isfinite(df["value"]).all() and (df["value"] >= 0).all()
    rss = df.loc[df["metric"] == "rss_bytes", "value"]
    assert (rss > 10 * MIB).all()
    summary = s.summary()
    assert summary["n_samples"] == rss.size >= 4
    assert summary["interval_s"] == 0.05
    assert 0.25 < summary["duration_s"] < 2.0
    assert summary["peak_rss_bytes"] >= rss.max()
    assert summary["peak_rss_reset"] is True
    assert summary["cpu_percent_mean"] > 0 and summary["cpu_percent_max"] > 0
    json.dumps(summary)  # plain values: the runner stores it in provenance


def test_peak_in_measured_process_is_never_missed():
    rng = np.random.default_rng(20261126)
    moments = rng.uniform(0.05, BLOCK_S - 0.2, RUNS)
    results = [_spike_block(float(m)) for m in moments]
    _assert_peaks_caught(moments, results)


def test_peak_in_exited_child_is_never_missed():
    # Each block runs in a fresh interpreter, as each benchmark job is its own process:
    # ru_maxrss of reaped children is a lifetime maximum, only telling when it rises, and it
    # includes what a child inherits at fork, so a parent larger than the child's spike
    # (a fork of a pytest that loaded torch) would hide it: a known limit of the marks.
    rng = np.random.default_rng(7)
    moments = rng.uniform(0.05, BLOCK_S - 0.3, RUNS)
    results = []
    batch = 4
    for start in range(0, RUNS, batch):
        running = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD_DRIVER, str(float(m))],
                stdout=subprocess.PIPE,
                text=True,
            )
            for m in moments[start : start + batch]
        ]
        for proc in running:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            baseline, summary = json.loads(out)
            results.append((baseline, summary))
    _assert_peaks_caught(moments, results)


# Grows steadily by one chunk every 20 ms (a leak of a fixed size per request, say): the
# staircase gives the regression residuals of a real leak, so its CI has a real width.
GROWER = textwrap.dedent(
    """
    import mmap, sys, time
    rate, duration, step = int(sys.argv[1]), float(sys.argv[2]), 0.02
    size = int(rate * duration) + (1 << 20)
    m = mmap.mmap(-1, size)
    m.madvise(mmap.MADV_NOHUGEPAGE)  # grow by the chunk, not by 2 MiB huge pages
    page, touched = mmap.PAGESIZE, 0
    print("ready", flush=True)
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration:
        target = min(size, int(rate * step * (elapsed // step)))
        while touched < target:
            m[touched] = 1
            touched += page
        time.sleep(0.001)
    sys.stdin.read()
    """
)


def test_memory_growth_matches_known_rate():
    rate = 64 * MIB  # bytes per second
    expected = rate / MIB * 3600  # MB (2**20 bytes) per hour
    with subprocess.Popen(
        [sys.executable, "-c", GROWER, str(rate), "2.0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as grower:
        try:
            assert grower.stdout.readline().strip() == "ready"
            time.sleep(0.05)
            with ResourceSampler(grower.pid, interval_s=0.05, gpu=False) as s:
                time.sleep(1.0)
        finally:
            grower.stdin.close()
            grower.wait(10)
    summary = s.summary()
    slope, (low, high) = summary["memory_growth_mb_per_hour"], summary["memory_growth_ci"]
    assert slope == pytest.approx(expected, rel=0.05)
    # The grower paces itself by its own clock, so its true rate is the nominal one only to
    # about 1%; the interval must reach that band (a 95% CI misses a point value 1 in 20).
    assert low <= expected * 1.01 and high >= expected * 0.99
    assert high - low < 0.2 * expected


def test_growth_rate_statistics():
    assert growth_rate([]) == (None, None)
    assert growth_rate([(0.0, 1.0), (1.0, 2.0)]) == (None, None)
    assert growth_rate([(1.0, 5.0), (1.0, 6.0), (1.0, 7.0)]) == (None, None)
    line = [(t, 1000.0 + MIB * t) for t in (0.0, 1.0, 2.0, 3.0)]
    slope, (low, high) = growth_rate(line)
    assert slope == pytest.approx(3600.0) and low == pytest.approx(high)
    noisy = [(t, MIB * t + (MIB if i % 2 else -MIB)) for i, t in enumerate(range(10))]
    slope, (low, high) = growth_rate(noisy)
    assert low < 3600.0 < high and low < slope < high


def test_cpu_of_reaped_child_counts_once():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass"
    with ResourceSampler(gpu=False) as s:
        subprocess.run([sys.executable, "-c", busy], check=True)
        time.sleep(0.3)  # the child is reaped; its CPU now sits in our children fields
    summary = s.summary()
    assert 0.38 < summary["cpu_time_s"] < 0.7
    cpu = s.samples().query("metric == 'cpu_percent'")["value"]
    assert cpu.max() < 150  # one busy core (±10 % at 10 Hz), no double count at hand-over


def test_io_of_reaped_child_is_kept(tmp_path):
    def written() -> int:
        return psutil.Process().io_counters().write_bytes

    before = written()
    probe = tmp_path / "probe"
    with open(probe, "wb") as fh:
        fh.write(b"\0" * MIB)
        fh.flush()
        os.fsync(fh.fileno())
    if written() - before < MIB:
        pytest.skip("this file system does not account writes in /proc/<pid>/io")
    target = tmp_path / "out"
    code = (
        f"import os\nwith open({str(target)!r}, 'wb') as f:\n"
        f"    f.write(b'x' * {8 * MIB}); f.flush(); os.fsync(f.fileno())"
    )
    with ResourceSampler(interval_s=0.05, gpu=False) as s:
        subprocess.run([sys.executable, "-c", code], check=True)
        time.sleep(0.15)
    assert s.summary()["io_write_bytes"] >= 8 * MIB


def test_measured_process_that_exits_keeps_its_counts():
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    proc = subprocess.Popen([sys.executable, "-c", busy])
    with ResourceSampler(proc.pid, interval_s=0.02, gpu=False) as s:
        proc.wait()
        time.sleep(0.1)
    summary = s.summary()
    assert 0.2 < summary["cpu_time_s"] < 0.5  # not dropped when the process went away
    assert summary["peak_rss_bytes"] > 5 * MIB
    nproc = s.samples().query("metric == 'num_processes'")["value"]
    assert nproc.iloc[0] == 1 and nproc.iloc[-1] == 0


def _own_tree() -> int:
    """This process and the children it already has: earlier tests may leave one behind
    (multiprocessing's resource tracker, after a test used a process pool)."""
    return 1 + len(psutil.Process().children(recursive=True))


def test_vanishing_children_do_not_crash():
    base = _own_tree()
    with ResourceSampler(interval_s=0.005, gpu=False) as s:
        sleeper = subprocess.Popen(["sleep", "30"])
        for _ in range(15):
            subprocess.run(["true"], check=True)
        time.sleep(0.05)
        sleeper.kill()
        sleeper.wait()
        time.sleep(0.05)
    summary = s.summary()
    assert summary["sampler_errors"] == 0
    df = s.samples()
    assert np.isfinite(df["value"]).all()
    nproc = df.query("metric == 'num_processes'")["value"]
    assert nproc.max() >= base + 1 and nproc.iloc[-1] == base
    assert summary["peak_rss_bytes"] > 0 and summary["cpu_time_s"] >= 0


def test_process_that_vanishes_between_listing_and_reading(monkeypatch):
    ghost = subprocess.Popen(["sleep", "30"])
    ghost.kill()
    ghost.wait()  # its pid is listed below but no longer exists
    real_list = ResourceSampler._list_tree
    monkeypatch.setattr(ResourceSampler, "_list_tree", lambda self: [*real_list(self), ghost.pid])

    base = _own_tree()
    child = subprocess.Popen(["sleep", "30"])
    real_cpu_times = psutil.Process.cpu_times

    def flaky_cpu_times(proc):
        if proc.pid == child.pid:
            raise psutil.ZombieProcess(proc.pid)
        return real_cpu_times(proc)

    monkeypatch.setattr(psutil.Process, "cpu_times", flaky_cpu_times)
    try:
        with ResourceSampler(interval_s=0.02, gpu=False) as s:
            time.sleep(0.15)
    finally:
        child.kill()
        child.wait()
    summary = s.summary()
    assert summary["sampler_errors"] == 0 and summary["n_samples"] >= 3
    nproc = s.samples().query("metric == 'num_processes'")["value"]
    assert (nproc == base + 1).all()  # this tree and the live child; the ghost is not invented


def test_nested_sampler_keeps_outer_peak():
    # The inner sampler resets this process's VmHWM; the outer one must not lose its peak.
    baseline = _rss()
    with ResourceSampler(interval_s=30, gpu=False) as outer:
        buf = _touch_alloc()
        del buf
        with ResourceSampler(interval_s=30, gpu=False) as inner:
            time.sleep(0.01)
    assert outer.summary()["peak_rss_bytes"] >= baseline + PEAK_MARGIN
    assert inner.summary()["peak_rss_bytes"] < baseline + 100 * MIB


def test_sampler_is_single_use_and_summary_waits_for_the_end():
    s = ResourceSampler(gpu=False)
    with pytest.raises(RuntimeError):
        s.samples()
    with s, pytest.raises(RuntimeError):
        s.summary()
    with pytest.raises(RuntimeError), s:
        pass
    with pytest.raises(ValueError):
        ResourceSampler(interval_s=0)


def test_no_gpu_means_no_gpu_metrics(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as without nvidia-ml-py
    with ResourceSampler(interval_s=0.05, gpu=True) as s:
        time.sleep(0.1)
    assert not s.samples()["metric"].str.startswith("gpu").any()
    assert not any(k.startswith("gpu") or "gpu" in k for k in s.summary())


def test_gpu_library_missing_means_no_gpu_metrics(monkeypatch):
    fake = _fake_nvml(init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with ResourceSampler(interval_s=0.05) as s:
        time.sleep(0.06)
    assert not any("gpu" in k for k in s.summary())


class _Obj(types.SimpleNamespace):
    pass


def _fake_nvml(init_error: bool = False, devices: int = 2) -> types.ModuleType:
    """A stand-in for pynvml with the calls the sampler makes."""
    fake = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    fake.NVMLError = NVMLError
    fake.calls = {"init": 0, "shutdown": 0}

    def nvmlInit():
        if init_error:
            raise NVMLError("NVML Shared Library Not Found")
        fake.calls["init"] += 1

    def nvmlShutdown():
        fake.calls["shutdown"] += 1

    def util(handle):
        if handle == 1:
            raise NVMLError_NotSupported()  # as a MIG instance answers
        return _Obj(gpu=40, memory=10)

    def procs(handle):
        return [
            _Obj(pid=os.getpid(), usedGpuMemory=(handle + 1) * 100 * MIB),
            _Obj(pid=1, usedGpuMemory=999 * MIB),  # not in the tree
            _Obj(pid=os.getpid(), usedGpuMemory=None),  # not available
        ]

    fake.nvmlInit = nvmlInit
    fake.nvmlShutdown = nvmlShutdown
    fake.nvmlDeviceGetCount = lambda: devices
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetHandleByUUID = lambda u: {"GPU-a": 0, "GPU-b": 1}[u]
    fake.nvmlDeviceGetUtilizationRates = util
    fake.nvmlDeviceGetMemoryInfo = lambda h: _Obj(used=(h + 1) * MIB * 1000, total=80 * 2**30)
    fake.nvmlDeviceGetComputeRunningProcesses = procs
    return fake


def test_gpu_metrics_when_a_device_is_present(monkeypatch):
    fake = _fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with ResourceSampler(interval_s=0.02) as s:
        time.sleep(0.1)
    assert fake.calls == {"init": 1, "shutdown": 1}
    df = s.samples()
    by_metric = df.groupby("metric")["value"]
    assert (by_metric.get_group("gpu_util_percent") == 40).all()  # device 1 cannot tell
    assert (by_metric.get_group("gpu_memory_bytes") == 3000 * MIB).all()
    assert (by_metric.get_group("gpu_process_memory_bytes") == 300 * MIB).all()
    summary = s.summary()
    assert summary["gpu_device_count"] == 2
    assert summary["gpu_util_percent_max"] == 40
    assert summary["peak_gpu_memory_bytes"] == 3000 * MIB
    assert summary["peak_gpu_process_memory_bytes"] == 300 * MIB


@pytest.mark.parametrize(
    ("visible", "count"), [("", 0), ("1", 1), ("GPU-b,0", 2), ("0,7,1", 1), ("-1", 0)]
)
def test_gpu_follows_cuda_visible_devices(monkeypatch, visible, count):
    fake = _fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with ResourceSampler(interval_s=10) as s:
        pass
    assert s.summary().get("gpu_device_count", 0) == count
    assert fake.calls["init"] == fake.calls["shutdown"] == 1


@pytest.mark.gpu
def test_real_gpu_when_present():
    try:
        import pynvml

        pynvml.nvmlInit()
        devices = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception:
        devices = 0
    if not devices or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        pytest.skip("no NVIDIA GPU visible")
    with ResourceSampler(interval_s=0.05) as s:
        time.sleep(0.2)
    summary = s.summary()
    assert summary["gpu_device_count"] >= 1
    assert math.isfinite(summary["peak_gpu_memory_bytes"])
    assert {"gpu_util_percent", "gpu_memory_bytes"} <= set(s.samples()["metric"])


def test_module_reads_its_own_marks():
    # The kernel interfaces the peak logic stands on exist here.
    assert sampler_mod._read_status(os.getpid())[1] is not None
    assert sampler_mod._start_ticks(os.getpid()) is not None
