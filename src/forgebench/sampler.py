"""The resource sampler every benchmark runs under: CPU, memory, I/O and GPU of a process tree.

Why it looks the way it does:

* **Tree, not process.** A benchmark's work often happens in children (servers, tools,
  worker pools), so the measured process (``pid``, default this one) and, with
  ``include_children``, all its descendants are sampled every ``interval_s`` seconds by a
  background thread. Descendants are found through ``/proc/<pid>/task/<tid>/children``
  (cost grows with the tree, not with every process on the machine as psutil's
  ``children(recursive=True)`` does, which alone costs over 1 ms a tick); psutil's walk
  is the fallback on kernels without that file. ``psutil.Process`` objects are cached by
  pid across ticks.
* **Peaks do not depend on luck.** A 50 ms spike between two 100 ms ticks is invisible to
  sampling, so the kernel's high-water marks are read beside the samples:

  - ``VmHWM`` (peak RSS) of every live tree process, at every tick and at exit. At
    ``__enter__`` the marks of the processes already in the tree are reset by writing
    ``5`` to ``/proc/<pid>/clear_refs`` (allowed for one's own processes, for any as
    root); a process whose reset fails has its mark ignored (``peak_rss_reset`` is
    False), so a lifetime peak from before the block never leaks in. Processes born
    during the block need no reset: their whole life is inside it.
  - ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (KiB on Linux), read at enter and exit, for
    children that exit between ticks. It is the largest peak of any child this process
    ever reaped (grandchildren reaped by it included): a lifetime maximum, so it only
    tells something when it *rose* during the block (then a child reaped in the block
    peaked at the new value). A process that measures several blocks with similar-sized
    short-lived children learns their peaks from it in the first block only; the
    workflow runs each benchmark in a fresh process. It is used only when the measured
    process is this one (its reaped children are then the tree's), not when a child of
    an older process was reaped in the block (its maximum may predate the block). A
    child's value also covers its memory before ``exec``, i.e. this process's (under
    vfork its VmHWM, under fork its RSS), so only a value above this process's own peak
    is taken as the child's own.

  Per-process marks need not coincide in time, so they are never added to each other
  (that would be an upper bound, not a peak). The tree peak from marks is a lower
  bound: the measured process's own mark, or a descendant's mark plus the lowest RSS
  the measured process was sampled at during the block (it lives through the block).
  ``peak_rss_bytes = max(peak of the sampled tree RSS, that bound)``, and
  ``peak_rss_source`` says which won (``sampled`` on ties); both parts are in the
  summary too (``peak_rss_sampled_bytes``, ``peak_rss_marks_bytes``).
* **RSS semantics.** Tree RSS is the sum of the processes' RSS, so pages shared between
  them (``fork`` copies, shared libraries) count once per process, as ``ps`` shows them.
* **CPU and I/O are cumulative counters, not guesses.** Each process's counters include
  its reaped children (``cutime``/``cstime``; ``/proc/<pid>/io`` merges them too), so the
  tree total over the live processes stays correct when a child exits and is reaped:
  its counts move into its parent's. Processes are read parents first, so that hand-over
  cannot be counted twice within a tick. ``cpu_percent`` is the tree's CPU time over a
  sampling interval in % of one core (200 = two busy cores), from counters with 10 ms
  kernel resolution (±10 % at 10 Hz). When the sampler measures its own process its own
  thread's CPU is subtracted. With ``include_children=False`` only the process's own
  CPU counts, but its I/O still includes children it reaped (the kernel merges them).
* **Vanishing processes.** A process that exits between listing and reading is left out
  of that tick's sums (nothing is invented); psutil's NoSuchProcess, ZombieProcess and
  AccessDenied never escape a tick.
* **Cheap.** A tick of a one-process tree costs about 0.12 ms of CPU (0.3-0.4 ms on a
  loaded machine with cold caches): 0.1-0.4 % of one core at 10 Hz. When the sampler runs
  in the measured process it holds the GIL for about that long per tick and releases it
  during every read; ``harness/sampler_overhead`` measures the resulting slowdown of a
  CPU-bound pure-Python workload. ``summary()["sampler_cpu_s"]`` is the sampler's own CPU.
* **GPU.** With ``gpu=True`` and NVML present (``pynvml``), the devices in
  ``CUDA_VISIBLE_DEVICES`` (all devices if unset; indices are taken in NVML order, UUIDs
  are looked up) report utilization (summed over devices, % of one GPU; NVML averages it
  over its own sample period), used memory (summed) and, where the driver reports it,
  the memory of the tree's own processes (``gpu_process_memory_bytes``; absent inside
  containers whose pids NVML cannot see). No NVML or no device: no GPU metrics, no error.

Usage::

    with ResourceSampler(interval_s=0.1) as sampler:
        run_benchmark()
    table = sampler.samples()   # long format: t_s, metric, unit, value (float64)
    figures = sampler.summary()  # peaks, means, totals, memory growth (after the block)

Metrics (unit): ``cpu_percent`` (percent), ``rss_bytes``, ``io_read_bytes``,
``io_write_bytes`` (bytes, cumulative since enter; storage-level, from /proc/<pid>/io;
absent if unreadable), ``num_threads``, ``num_processes`` (count), and with a GPU
``gpu_util_percent`` (percent), ``gpu_memory_bytes``, ``gpu_process_memory_bytes``
(bytes). A tick is taken at enter (t_s 0, no cpu_percent yet) and at exit. Memory growth
is the least-squares slope of tree RSS in MB (2**20 bytes) per hour with a t-based 95 %
CI widened for the samples' autocorrelation (AR(1)), None under three samples.

Live view: with ``live_path``, the sampler thread also rewrites a small JSON file there
every ``live_every_s`` seconds while the block runs (the latest value of each metric, the
peak RSS so far, the elapsed time), atomically by rename, and removes it when the block
ends, so ``forgebench watch`` can show a running job's CPU and memory; the samples
themselves are still written once, by the caller, after the block.

Limits: ``clear_refs`` also resets what the kernel later reports as the process's own
``ru_maxrss`` (to its parent or ``time -v``); samplers nested in one process hand their
marks over before resetting, other tools cannot be told. A zombie child not yet reaped
when the block ends has lost its memory map and shows no peak beyond what ticks saw.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import resource
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pandas as pd
import psutil

__all__ = ["ResourceSampler", "SoakNeed", "growth_rate", "live_path_for", "soak_needed"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_MIB = 2**20

# Samplers alive in this process, told before another one resets a VmHWM they read.
_ACTIVE: set[ResourceSampler] = set()
_ACTIVE_LOCK = threading.Lock()


def live_path_for(resources_path: str | os.PathLike[str]) -> str:
    """Where a job's live sampler file goes: beside its resource table,
    ``<name>.resources.live.json`` for ``<name>.resources.parquet``."""
    path = os.fspath(resources_path)
    return path.removesuffix(".parquet") + ".live.json"


def _children_file_supported() -> bool:
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


_HAVE_CHILDREN_FILE = _children_file_supported()


def _direct_children(pid: int, skip_tid: str = "") -> list[int]:
    """Children of every thread of ``pid`` but ``skip_tid`` ([] once it is gone)."""
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        if tid == skip_tid:
            continue
        try:
            with open(f"{base}/{tid}/children", "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # the thread exited meanwhile
        if data:
            out.extend(int(x) for x in data.split())
    return out


def _status_kb(data: bytes, key: bytes) -> int | None:
    i = data.find(key)
    if i < 0:
        return None
    j = data.find(b"\n", i + len(key))
    return int(data[i + len(key) : j].split()[0])


def _read_status(pid: int) -> tuple[int, int | None, int] | None:
    """(RSS bytes, VmHWM bytes or None, threads) from one read; None if the process is gone.

    RSS and the mark come from the same snapshot, so RSS <= VmHWM always holds. A zombie has
    no memory map: RSS 0, no mark.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    rss = _status_kb(data, b"\nVmRSS:")
    hwm = _status_kb(data, b"\nVmHWM:")
    threads = _status_kb(data, b"\nThreads:")
    return (
        (rss or 0) * 1024,
        None if hwm is None else hwm * 1024,
        threads or 0,
    )


def _read_hwm(pid: int) -> int | None:
    st = _read_status(pid)
    return None if st is None else st[1]


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
        return int(data.rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _reset_hwm(pid: int, owner: ResourceSampler) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS; other samplers here first take their reading."""
    with _ACTIVE_LOCK:
        others = [s for s in _ACTIVE if s is not owner]
    for other in others:
        other._absorb_hwm(pid)
    try:
        with open(f"/proc/{pid}/clear_refs", "wb") as fh:
            fh.write(b"5")
        return True
    except OSError:
        return False


@dataclass(slots=True)
class _Proc:
    proc: psutil.Process
    born_in_block: bool  # its whole life (CPU, I/O, peak) lies inside the block
    hwm_trusted: bool  # its VmHWM covers only the block
    io_ok: bool = True


class _Gpu:
    """NVML devices visible to this job; every call that fails is switched off, not retried."""

    def __init__(self) -> None:
        import pynvml  # nvidia-ml-py

        self.nvml = pynvml
        pynvml.nvmlInit()
        try:
            self.handles = self._visible_handles()
        except Exception:
            pynvml.nvmlShutdown()
            raise
        self.util_ok = [True] * len(self.handles)
        self.mem_ok = [True] * len(self.handles)
        self.proc_ok = [True] * len(self.handles)

    def _visible_handles(self) -> list[Any]:
        nvml = self.nvml
        count = nvml.nvmlDeviceGetCount()
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        if env is None:
            return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        handles = []
        for token in (t.strip() for t in env.split(",")):
            if not token:
                break
            try:
                index = int(token)
            except ValueError:
                try:
                    handles.append(nvml.nvmlDeviceGetHandleByUUID(token))
                except nvml.NVMLError:
                    break  # CUDA also stops at the first entry it cannot resolve
                continue
            if not 0 <= index < count:
                break
            handles.append(nvml.nvmlDeviceGetHandleByIndex(index))
        return handles

    def read(self, pids: set[int]) -> tuple[float | None, float | None, float | None]:
        """(utilization % summed, used bytes summed, bytes used by ``pids``); None if unknown."""
        nvml = self.nvml
        util = mem = proc_mem = None
        for i, handle in enumerate(self.handles):
            if self.util_ok[i]:
                try:
                    util = (util or 0.0) + float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except nvml.NVMLError:
                    self.util_ok[i] = False  # e.g. MIG instances do not report it
            if self.mem_ok[i]:
                try:
                    mem = (mem or 0.0) + float(nvml.nvmlDeviceGetMemoryInfo(handle).used)
                except nvml.NVMLError:
                    self.mem_ok[i] = False
            if self.proc_ok[i]:
                try:
                    infos = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                except nvml.NVMLError:
                    self.proc_ok[i] = False
                    continue
                for info in infos:
                    used = getattr(info, "usedGpuMemory", None)
                    if info.pid in pids and used is not None:
                        proc_mem = (proc_mem or 0.0) + float(used)
        return util, mem, proc_mem

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


def _machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (every core, idle and iowait
    excluded), or None where the kernel does not say."""
    try:
        t = psutil.cpu_times()
    except (psutil.Error, OSError):
        return None
    busy = ("user", "nice", "system", "irq", "softirq", "steal")  # guest is inside user
    return float(sum(getattr(t, name, 0.0) for name in busy))


def _open_gpu() -> _Gpu | None:
    try:
        gpu = _Gpu()
    except Exception:  # no pynvml, no driver, no library: sample without GPU
        return None
    if not gpu.handles:
        gpu.close()
        return None
    return gpu


def _advance(
    prev: dict[int, float], cur: dict[int, float], gone: set[int], born: set[int]
) -> float:
    """Increase of a tree counter between ticks; updates ``prev`` in place.

    A process that disappeared from the tree takes its count with it into its reaper's
    children fields, which ``cur`` now holds, so its last value is subtracted; one that is
    listed but could not be read keeps its last value. A process first seen now counts in
    full if born during the block, else it only sets its baseline.
    """
    delta = 0.0
    for pid, value in cur.items():
        last = prev.get(pid)
        if last is not None:
            delta += value - last
        elif pid in born:
            delta += value
        prev[pid] = value
    for pid in gone:
        last = prev.pop(pid, None)
        if last is not None:
            delta -= last
    return delta


class ResourceSampler:
    """Samples a process tree's CPU, memory, I/O (and GPU) in a background thread.

    ``pid`` is the measured process (default: this one); ``include_children`` adds all its
    descendants; ``gpu`` enables NVML sampling when a device is present. Use it as a context
    manager; afterwards ``samples()`` gives the long table and ``summary()`` the figures.
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        interval_s: float = 0.1,
        include_children: bool = True,
        gpu: bool = True,
        live_path: str | os.PathLike[str] | None = None,
        live_every_s: float = 1.0,
    ) -> None:
        if not interval_s > 0 or not math.isfinite(interval_s):
            raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s}")
        self.pid = os.getpid() if pid is None else int(pid)
        self.interval_s = float(interval_s)
        self.include_children = include_children
        self.gpu = gpu
        self.live_path = None if live_path is None else os.fspath(live_path)
        self.live_every_s = float(live_every_s)
        self._latest: dict[str, float] = {}
        self._self_measure = self.pid == os.getpid()
        self._lock = threading.Lock()  # held by a tick; samples() takes it for a snapshot
        self._mark_lock = threading.Lock()  # marks only, so other samplers never wait on a tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = "new"
        # sample columns
        self._t: list[float] = []
        self._metric: list[str] = []
        self._unit: list[str] = []
        self._value: list[float] = []

    # ---- context manager -------------------------------------------------------------

    def __enter__(self) -> ResourceSampler:
        if self._state != "new":
            raise RuntimeError("a ResourceSampler measures one block; create a new one")
        psutil.Process(self.pid)  # NoSuchProcess for a bad pid: the caller's mistake
        self._procs: dict[int, _Proc] = {}
        self._reset_ok = True
        self._prev_cpu: dict[int, float] = {}
        self._prev_read: dict[int, float] = {}
        self._prev_write: dict[int, float] = {}
        self._cpu_total = 0.0
        self._read_total = 0.0
        self._write_total = 0.0
        self._pend_cpu = 0.0
        self._pend_dt = 0.0
        self._min_cpu_dt = max(0.5 * self.interval_s, 2.0 / _CLK_TCK)
        self._last_t = 0.0
        self._sampler_cpu_seen = 0.0
        self._thread_cpu_final = 0.0
        self._caller_cpu = 0.0
        self._n_ticks = 0
        self._errors = 0
        self._last_error: str | None = None
        self._sampled_peak = 0
        self._root_min_rss: int | None = None
        self._root_hwm: int | None = None
        self._desc_hwm: int | None = None
        self._gpu_util: list[float] = []
        self._gpu_mem_peak: float | None = None
        self._gpu_proc_peak: float | None = None
        self._io_enabled = True
        # Children reaped by this process are the tree's only when it is the measured one.
        self._use_rusage = self.include_children and self._self_measure
        self._root_trusted = False
        self._old_child_reaped = False
        self._rusage_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        self._rusage_after = self._rusage_before
        self._gpu: _Gpu | None = _open_gpu() if self.gpu else None

        self._machine_busy0 = _machine_busy_s()
        self._machine_busy1 = self._machine_busy0
        cpu0 = time.thread_time()
        self._enter_ticks = math.floor(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)
        self._t0 = time.perf_counter()
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        self._state = "running"
        try:
            self._tick(first=True)
            self._caller_cpu += time.thread_time() - cpu0
            self._thread = threading.Thread(
                target=self._run, name="forgebench-sampler", daemon=True
            )
            self._thread.start()
        except BaseException:
            self._finish()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.live_path)
        cpu0 = time.thread_time()
        try:
            self._tick()
        finally:
            self._caller_cpu += time.thread_time() - cpu0
            self._finish()

    def _finish(self) -> None:
        self._duration = self._last_t
        self._machine_busy1 = _machine_busy_s()
        self._rusage_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
        if self._gpu is not None:
            self._gpu.close()
        self._procs.clear()
        self._state = "done"

    # ---- sampling --------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.interval_s
        next_t = self._t0 + interval
        next_live = self._t0
        while True:
            delay = next_t - time.perf_counter()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._stop.is_set():
                break
            try:
                self._tick()
            except Exception as exc:  # a sampler bug must not kill the benchmark
                self._errors += 1
                self._last_error = repr(exc)
            now = time.perf_counter()
            if self.live_path is not None and now >= next_live:
                next_live = now + self.live_every_s
                self._write_live(now - self._t0)
            next_t += interval
            if next_t <= now:  # fell behind: resume on the grid, no burst of catch-up ticks
                next_t += math.ceil((now - next_t) / interval + 1e-9) * interval
        self._thread_cpu_final = time.thread_time()

    def _list_tree(self) -> list[int]:
        """The measured pid and, with include_children, its descendants, parents first."""
        if not self.include_children:
            return [self.pid]
        if not _HAVE_CHILDREN_FILE:
            try:
                kids = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                return []
            return [self.pid] + [k.pid for k in kids]
        # The sampler's own thread never forks: one file less to read per tick.
        thread = self._thread if self._self_measure else None
        out = [self.pid, *_direct_children(self.pid, str(thread.native_id) if thread else "")]
        i = 1
        while i < len(out):
            out.extend(_direct_children(out[i]))
            i += 1
        return out

    def _adopt(self, pid: int, first: bool) -> _Proc | None:
        """Start tracking ``pid``: cache its psutil object, decide whether its mark is valid."""
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            return None
        start = _start_ticks(pid)
        born = not first and start is not None and start >= self._enter_ticks
        trusted = born or _reset_hwm(pid, self)
        if first and not trusted:
            self._reset_ok = False
        if pid == self.pid:
            self._root_trusted = trusted
        entry = _Proc(proc, born, trusted)
        self._procs[pid] = entry
        return entry

    def _absorb_hwm(self, pid: int) -> None:
        """Another sampler is about to reset ``pid``'s mark: keep what it says now."""
        if self._state != "running":
            return
        entry = self._procs.get(pid)
        if entry is None or not entry.hwm_trusted:
            return
        hwm = _read_hwm(pid)
        if hwm is not None:
            self._note_hwm(pid, hwm)

    def _note_hwm(self, pid: int, hwm: int) -> None:
        with self._mark_lock:
            if pid == self.pid:
                self._root_hwm = max(self._root_hwm or 0, hwm)
            else:
                self._desc_hwm = max(self._desc_hwm or 0, hwm)

    def _forget_departed(self, listed: set[int]) -> set[int]:
        """Drop counter baselines of processes no longer in the tree; return the reaped ones.

        A reaped process's counts now sit in its reaper's children fields, so the caller
        subtracts them; one still alive left the tree (re-parented) and keeps what it counted.
        """
        departed = {
            p for prev in (self._prev_cpu, self._prev_read, self._prev_write) for p in prev
        } - listed
        gone = set()
        for p in departed:
            # The measured process has no reaper in the tree: what it counted stays counted.
            if p == self.pid or psutil.pid_exists(p):
                for prev in (self._prev_cpu, self._prev_read, self._prev_write):
                    prev.pop(p, None)
            else:
                gone.add(p)
        return gone

    def _write_live(self, t: float) -> None:
        """The live file: latest values so far (see the module docstring)."""
        assert self.live_path is not None
        doc = {"pid": self.pid, "t_s": round(t, 3), "updated_unix": time.time(),
               "peak_rss_bytes": self._sampled_peak, **self._latest}  # fmt: skip
        tmp = f"{self.live_path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.live_path)
        except OSError as exc:  # a watcher's convenience must not fail the benchmark
            self._errors += 1
            self._last_error = repr(exc)

    def _emit(self, t: float, metric: str, unit: str, value: float) -> None:
        self._latest[metric] = float(value)
        self._t.append(t)
        self._metric.append(metric)
        self._unit.append(unit)
        self._value.append(float(value))

    def _tick(self, *, first: bool = False) -> None:
        with self._lock:
            in_thread = threading.current_thread() is self._thread
            sampler_cpu = time.thread_time() if in_thread else self._thread_cpu_final
            t = time.perf_counter() - self._t0
            pids = self._list_tree()
            listed = set(pids)
            want_children = self.include_children
            rss_sum = threads_sum = nproc = 0
            cur_cpu: dict[int, float] = {}
            cur_read: dict[int, float] = {}
            cur_write: dict[int, float] = {}
            born: set[int] = set()
            for pid in pids:
                entry = self._procs.get(pid)
                if entry is None:
                    entry = self._adopt(pid, first)
                    if entry is None:
                        continue
                if entry.born_in_block:
                    born.add(pid)
                status = _read_status(pid)
                if status is None:
                    continue  # gone between listing and reading
                rss, hwm, threads = status
                nproc += 1
                rss_sum += rss
                threads_sum += threads
                if pid == self.pid and (self._root_min_rss is None or rss < self._root_min_rss):
                    self._root_min_rss = rss
                if hwm is not None and entry.hwm_trusted:
                    self._note_hwm(pid, hwm)
                proc = entry.proc
                try:
                    ct = proc.cpu_times()
                    total = ct.user + ct.system
                    if want_children:
                        total += ct.children_user + ct.children_system
                    cur_cpu[pid] = total
                except psutil.Error:
                    pass
                if entry.io_ok and self._io_enabled:
                    try:
                        io = proc.io_counters()
                        cur_read[pid] = float(io.read_bytes)
                        cur_write[pid] = float(io.write_bytes)
                    except psutil.AccessDenied:
                        entry.io_ok = False
                    except (psutil.Error, AttributeError):
                        pass
            for pid in [p for p in self._procs if p not in listed]:
                if not self._procs.pop(pid).born_in_block and pid != self.pid:
                    self._old_child_reaped = True
            if first:
                self._io_enabled = self.pid in cur_read  # /proc/<pid>/io unreadable: no I/O
            gone = self._forget_departed(listed)
            d_cpu = _advance(self._prev_cpu, cur_cpu, gone, born)
            if self._self_measure:
                d_cpu -= sampler_cpu - self._sampler_cpu_seen
            self._sampler_cpu_seen = sampler_cpu
            d_read = _advance(self._prev_read, cur_read, gone, born)
            d_write = _advance(self._prev_write, cur_write, gone, born)
            self._n_ticks += 1
            dt = t - self._last_t
            self._last_t = t
            if nproc:
                self._emit(t, "rss_bytes", "bytes", rss_sum)
                self._sampled_peak = max(self._sampled_peak, rss_sum)
                self._emit(t, "num_threads", "count", threads_sum)
            self._emit(t, "num_processes", "count", nproc)
            if not first:
                self._cpu_total += d_cpu
                self._read_total += d_read
                self._write_total += d_write
                self._pend_cpu += d_cpu
                self._pend_dt += dt
                if self._pend_dt >= self._min_cpu_dt:
                    pct = max(0.0, 100.0 * self._pend_cpu / self._pend_dt)
                    self._emit(t, "cpu_percent", "percent", pct)
                    self._pend_cpu = self._pend_dt = 0.0
            if self._io_enabled:
                self._emit(t, "io_read_bytes", "bytes", max(0.0, self._read_total))
                self._emit(t, "io_write_bytes", "bytes", max(0.0, self._write_total))
            if self._gpu is not None:
                self._tick_gpu(t, listed)

    def _tick_gpu(self, t: float, pids: set[int]) -> None:
        assert self._gpu is not None
        util, mem, proc_mem = self._gpu.read(pids)
        if util is not None:
            self._emit(t, "gpu_util_percent", "percent", util)
            self._gpu_util.append(util)
        if mem is not None:
            self._emit(t, "gpu_memory_bytes", "bytes", mem)
            self._gpu_mem_peak = max(self._gpu_mem_peak or 0.0, mem)
        if proc_mem is not None:
            self._emit(t, "gpu_process_memory_bytes", "bytes", proc_mem)
            self._gpu_proc_peak = max(self._gpu_proc_peak or 0.0, proc_mem)

    # ---- results ---------------------------------------------------------------------

    def samples(self) -> pd.DataFrame:
        """All samples so far as a long table: t_s, metric, unit, value (float64)."""
        if self._state == "new":
            raise RuntimeError("the sampler has not been entered")
        with self._lock:
            cols = (list(self._t), list(self._metric), list(self._unit), list(self._value))
        return pd.DataFrame(
            {
                "t_s": pd.Series(cols[0], dtype="float64"),
                "metric": pd.Series(cols[1], dtype=str),
                "unit": pd.Series(cols[2], dtype=str),
                "value": pd.Series(cols[3], dtype="float64"),
            }
        )

    def summary(self) -> dict[str, Any]:
        """Figures of the finished block (plain Python values, JSON-friendly)."""
        if self._state != "done":
            raise RuntimeError("summary() is available once the with-block has ended")
        duration = self._duration
        marks_peak, marks_source = self._marks_peak()
        peak, source = self._sampled_peak, "sampled"
        if marks_peak is not None and marks_peak > peak:
            peak, source = marks_peak, marks_source
        cpu_values = [
            v for m, v in zip(self._metric, self._value, strict=True) if m == "cpu_percent"
        ]
        cpu_time = max(0.0, self._cpu_total)
        slope, ci = self._memory_growth()
        out: dict[str, Any] = {
            "peak_rss_bytes": int(peak),
            "peak_rss_source": source,
            "peak_rss_reset": bool(self._reset_ok),
            "peak_rss_sampled_bytes": int(self._sampled_peak),
            "peak_rss_marks_bytes": marks_peak,
            "cpu_time_s": cpu_time,
            "cpu_percent_mean": 100.0 * cpu_time / duration if duration > 0 else None,
            "cpu_percent_max": max(cpu_values) if cpu_values else None,
            "io_read_bytes": int(max(0.0, self._read_total)) if self._io_enabled else None,
            "io_write_bytes": int(max(0.0, self._write_total)) if self._io_enabled else None,
            "duration_s": duration,
            "n_samples": self._n_ticks,
            "interval_s": self.interval_s,
            "memory_growth_mb_per_hour": slope,
            "memory_growth_ci": ci,
            "sampler_cpu_s": self._thread_cpu_final + self._caller_cpu,
            "foreign_cpu_percent_mean": self._foreign_percent(cpu_time, duration),
            "sampler_errors": self._errors,
        }
        if self._last_error is not None:
            out["sampler_last_error"] = self._last_error
        if self._gpu is not None:
            out["gpu_device_count"] = len(self._gpu.handles)
            if self._gpu_util:
                out["gpu_util_percent_max"] = max(self._gpu_util)
                out["gpu_util_percent_mean"] = sum(self._gpu_util) / len(self._gpu_util)
            if self._gpu_mem_peak is not None:
                out["peak_gpu_memory_bytes"] = int(self._gpu_mem_peak)
            if self._gpu_proc_peak is not None:
                out["peak_gpu_process_memory_bytes"] = int(self._gpu_proc_peak)
        return out

    def _foreign_percent(self, tree_cpu_s: float, duration: float) -> float | None:
        """CPU that processes outside the measured tree used while it ran, in percent of
        one core (machine-wide busy time minus the tree's): what makes a timing noisy."""
        if self._machine_busy0 is None or self._machine_busy1 is None or duration <= 0:
            return None
        foreign = self._machine_busy1 - self._machine_busy0 - tree_cpu_s
        return max(0.0, 100.0 * foreign / duration)

    def _marks_peak(self) -> tuple[int | None, str]:
        """Lower bound of the tree's peak RSS from kernel marks alone, and which mark gave it.

        Marks of different processes are never added together (their peaks need not
        coincide); a descendant's mark gets the measured process's lowest sampled RSS added,
        since that process lives through the whole block.
        """
        floor = self._root_min_rss or 0
        marks: list[tuple[int, str]] = []
        if self._root_hwm is not None:
            marks.append((self._root_hwm, "vmhwm"))
        if self._desc_hwm is not None:
            marks.append((self._desc_hwm + floor, "vmhwm"))
        children_peak = self._children_peak()
        if children_peak is not None:
            # A child's ru_maxrss also covers its memory before exec, which is this
            # process's (vfork: its VmHWM then; fork: its RSS then). Only a value above this
            # process's own peak is surely the child's own, so only that gets the floor.
            own = children_peak > (self._root_hwm or 0)
            marks.append((children_peak + (floor if own else 0), "ru_maxrss_children"))
        if not marks:
            return None, "vmhwm"
        value, source = max(marks, key=lambda m: m[0])
        return int(value), source

    def _children_peak(self) -> int | None:
        """Peak RSS of children reaped during the block, when ru_maxrss can tell it.

        It cannot when the lifetime maximum did not rise, when a child older than the block
        was reaped (its maximum may predate the block) or when this process's own mark
        could not be reset (a child's value may be that stale mark, inherited before exec).
        """
        if not (self._use_rusage and self._root_trusted) or self._old_child_reaped:
            return None
        if self._rusage_after <= self._rusage_before:
            return None
        return self._rusage_after

    def rss_points(self) -> list[tuple[float, float]]:
        """(t_s, tree RSS bytes) of every tick: what the growth slope is fitted to."""
        with self._lock:
            return [
                (t, v)
                for t, m, v in zip(self._t, self._metric, self._value, strict=True)
                if m == "rss_bytes"
            ]

    def _memory_growth(self) -> tuple[float | None, tuple[float, float] | None]:
        """Least-squares slope of tree RSS over time in MB (2**20 bytes) per hour, 95 % CI."""
        return growth_rate(self.rss_points())


@dataclass(frozen=True, slots=True)
class _LineFit:
    """Least-squares line through (t, value) points, with its residuals' noise."""

    slope: float  # value units per second
    sxx: float  # sum (t - tbar)**2
    sd: float  # residual standard deviation (n - 2 degrees of freedom)
    rho: float  # lag-1 autocorrelation of the residuals in time order, clipped to [0, 0.99]
    n: int

    @property
    def inflation(self) -> float:
        """AR(1) variance inflation of the slope: n over the effective sample size."""
        return (1 + self.rho) / (1 - self.rho)


def _fit_line(points: list[tuple[float, float]], scale: float = 1.0) -> _LineFit | None:
    """The fit, values multiplied by ``scale``; None under three points or one time."""
    n = len(points)
    if n < 3:
        return None
    pts = sorted(points)
    t = [p[0] for p in pts]
    v = [p[1] * scale for p in pts]
    t_mean, v_mean = sum(t) / n, sum(v) / n
    sxx = sum((x - t_mean) ** 2 for x in t)
    if sxx <= 0:
        return None
    slope = sum((x - t_mean) * (y - v_mean) for x, y in zip(t, v, strict=True)) / sxx
    res = [y - v_mean - slope * (x - t_mean) for x, y in zip(t, v, strict=True)]
    ss = sum(r * r for r in res)
    rho = sum(a * b for a, b in itertools.pairwise(res)) / ss if ss > 0 else 0.0
    return _LineFit(slope, sxx, math.sqrt(ss / (n - 2)), min(max(rho, 0.0), 0.99), n)


def growth_rate(
    points: list[tuple[float, float]], confidence: float = 0.95
) -> tuple[float | None, tuple[float, float] | None]:
    """Slope of bytes over seconds as MB/hour with a t-based CI; (None, None) under 3 points.

    Why a CI: a leak test needs to tell "grows" from "noise", and the slope alone cannot.
    RSS samples are autocorrelated (a heap keeps a step for many ticks), so the OLS
    standard error ``sd / sqrt(sxx)`` is inflated by ``sqrt((1 + rho) / (1 - rho))`` (AR(1),
    rho the residuals' lag-1 autocorrelation, clipped to [0, 0.99]) and the t quantile
    takes the effective sample size's degrees of freedom; an iid interval would claim up
    to 14x the precision the samples hold.
    """
    fit = _fit_line(points)
    if fit is None:
        return None, None
    se = fit.sd / math.sqrt(fit.sxx) * math.sqrt(fit.inflation)
    df = max(fit.n / fit.inflation - 2.0, 1.0)
    from scipy.stats import t as student_t  # imported late: only summaries need it

    half = float(student_t.ppf(0.5 + confidence / 2, df)) * se
    scale = 3600.0 / _MIB
    return fit.slope * scale, ((fit.slope - half) * scale, (fit.slope + half) * scale)


@dataclass(frozen=True, slots=True)
class SoakNeed:
    """How long a soak must be for :func:`growth_rate`'s interval to decide, and from what."""

    needed_s: float  # soak length at which the slope's interval decides (see soak_needed)
    residual_sd_mb: float  # sd of the RSS residuals around the fitted line, MB
    lag1_autocorr: float  # of the residuals, clipped to [0, 0.99]
    interval_s: float  # median time between samples
    n: int
    n_eff: float  # n * (1 - rho) / (1 + rho)


def soak_needed(
    points: list[tuple[float, float]],
    margin_mb_per_h: float,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
) -> SoakNeed | None:
    """The soak length whose growth interval decides a ``margin_mb_per_h`` question, from
    the residual noise of a measured (short) soak; None under four points.

    Why: a memory-growth target is only worth running at a length that can decide it, and
    that length follows from the noise, not from a guess. The OLS slope's standard error
    is ``SE = sigma / sqrt(sum (t - tbar)**2)``; over ``n = T / dt`` evenly spaced samples
    ``sum (t - tbar)**2 ~ n T**2 / 12``. RSS samples are autocorrelated (the heap keeps a
    step for many ticks), so ``n`` is replaced by the AR(1) effective sample size
    ``n (1 - rho) / (1 + rho)`` (rho: lag-1 autocorrelation of the residuals), which gives
    ``SE(T) = sigma * sqrt(12 dt (1 + rho) / (1 - rho)) / T**1.5``. The interval decides
    with probability ``power`` (as ``stats.units_needed``) once
    ``(z_a + z_b) SE(T) <= margin``, i.e. ``T = (s / margin)**(2/3)`` with
    ``s = (z_a + z_b) sigma sqrt(12 dt (1 + rho) / (1 - rho))``; ``power=0.5`` is the
    plain rule "the 95% half-width below the margin". It extrapolates the short soak's
    noise: stationary noise is assumed, and a heap that steps by whole arenas is bounded
    apart (``scenarios.min_conclusive_s``)."""
    if len(points) < 4:
        return None
    fit = _fit_line(points, 1.0 / _MIB)
    if fit is None:
        return None
    sd, rho = fit.sd, fit.rho
    t = sorted(p[0] for p in points)
    gaps = sorted(b - a for a, b in itertools.pairwise(t))
    dt = gaps[len(gaps) // 2]
    from scipy.stats import norm  # imported late: only summaries need it

    z = float(norm.ppf(0.5 + confidence / 2)) + float(norm.ppf(power))
    scale = z * sd * math.sqrt(12.0 * dt * (1 + rho) / (1 - rho))  # MB * s**0.5
    margin_mb_per_s = margin_mb_per_h / 3600.0
    needed = (scale / margin_mb_per_s) ** (2.0 / 3.0) if scale > 0 else 0.0
    return SoakNeed(needed, sd, rho, dt, fit.n, fit.n / fit.inflation)
