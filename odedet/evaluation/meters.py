"""Meters for benchmarks: peak memory of one step in a fresh process, and latency statistics.

Peak memory on CPU cannot be read back from PyTorch, and a process that already ran a step keeps
freed pages in its allocator, so each point is measured in a *fresh subprocess*:

1. the subprocess imports ``target`` ("package.module:function") and calls it with ``kwargs``;
   it builds the model and inputs and returns a zero-argument ``step`` callable;
2. ``warmup`` steps run and the memory they freed is returned to the OS (``malloc_trim``); the
   resident set size (RSS) then is the baseline (blocks >= 64 KiB are mmap-served, see
   ``_child_env``, so RSS follows live memory);
3. the peak-RSS mark is reset (Linux ``/proc/self/clear_refs``; elsewhere RSS is sampled every
   millisecond by a thread), ``step()`` runs once, and the new peak is read.

The reported ``peak_mb`` is the peak over the baseline: the memory the step itself needed
(activations, gradients, workspaces), not the interpreter or the weights. On CUDA the same
protocol uses ``torch.cuda.reset_peak_memory_stats`` / ``max_memory_allocated``.
"""
from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

_RESULT_TAG = "ODEDET_METER_RESULT "
_MB = 1024.0 * 1024.0


# -- peak memory ----------------------------------------------------------------------------
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field} line")
    return int(match.group(1)) / 1024.0


def _can_reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "5" resets the peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)
        _status_mb("VmHWM")
        return True
    except OSError:
        return False


class _RssSampler:
    """Fallback peak tracker: samples RSS (psutil) every ``interval`` s in a thread."""

    def __init__(self, interval: float = 1e-3):
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = self._proc.memory_info().rss / _MB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / _MB)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / _MB)


def _load_target(target: str) -> Callable:
    module_name, sep, fn_name = target.partition(":")
    if not sep:
        raise ValueError(f"memory target must look like 'package.module:function', got {target!r}")
    return getattr(importlib.import_module(module_name), fn_name)


def _measure_cpu(step: Callable) -> dict:
    import psutil

    gc.collect()
    baseline = psutil.Process().memory_info().rss / _MB
    if _can_reset_peak():
        t0 = time.perf_counter()
        step()
        seconds = time.perf_counter() - t0
        peak, method = _status_mb("VmHWM"), "VmHWM (/proc/self/clear_refs reset)"
    else:
        with _RssSampler() as sampler:
            t0 = time.perf_counter()
            step()
            seconds = time.perf_counter() - t0
        peak, method = sampler.peak, "RSS sampled every 1 ms (psutil)"
    return dict(baseline_mb=baseline, absolute_peak_mb=peak, method=method, step_seconds=seconds)


def _measure_cuda(step: Callable, device: str) -> dict:
    import torch

    gc.collect()
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device) / _MB
    torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / _MB
    return dict(baseline_mb=baseline, absolute_peak_mb=peak, method="torch.cuda.max_memory_allocated",
                step_seconds=seconds)


def _release_freed_memory() -> None:
    """Hand memory freed by the warm-up step back to the OS (glibc ``malloc_trim``), so the
    measured step's RSS peak is not hidden by pages the allocator kept."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _worker(spec: dict) -> dict:
    """Runs inside the fresh subprocess: build, warm up, reset the peak, run one step, report.

    The warm-up steps absorb one-time allocations (thread pools, kernel caches, lazily created
    buffers) into the baseline; the measured step is then a steady-state training step.
    """
    import torch

    torch.set_num_threads(int(spec["threads"]))
    device = spec.get("device", "cpu")
    step = _load_target(spec["target"])(**spec.get("kwargs", {}))
    for _ in range(int(spec.get("warmup", 0))):
        step()
    _release_freed_memory()
    out = _measure_cuda(step, device) if device.startswith("cuda") else _measure_cpu(step)
    out["peak_mb"] = out["absolute_peak_mb"] - out["baseline_mb"]
    return out


def _child_env() -> dict:
    """The subprocess's environment: glibc serves every block >= 64 KiB by mmap, so freed tensor
    memory leaves the process at once and RSS follows live memory instead of the allocator's
    heap fragmentation (which otherwise grows with the number of allocations made)."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    return env


def measure_peak_memory(
    target: str, kwargs: dict | None = None, *, device: str = "cpu", threads: int | None = None,
    warmup: int = 1, timeout: float = 900.0,
) -> dict:
    """Peak memory (MB over the post-build baseline) of one ``step()`` in a fresh subprocess.

    ``target`` names a function ``build(**kwargs) -> step`` as "package.module:function"; the
    kwargs must be JSON-serialisable. ``warmup`` steps run first (see ``_worker``). Returns ``peak_mb``, ``baseline_mb``, ``absolute_peak_mb``,
    ``method`` and ``step_seconds``. Raises ``RuntimeError`` with the child's stderr on failure.
    """
    import torch

    if ":" not in target:
        raise ValueError(f"memory target must look like 'package.module:function', got {target!r}")
    spec = dict(target=target, kwargs=kwargs or {}, device=device, warmup=warmup,
                threads=threads or torch.get_num_threads())
    proc = subprocess.run(
        [sys.executable, "-m", "odedet.evaluation.meters", json.dumps(spec)],
        capture_output=True, text=True, timeout=timeout, env=_child_env(),
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_RESULT_TAG):
            return json.loads(line[len(_RESULT_TAG):])
    raise RuntimeError(
        f"memory measurement of {target}({kwargs}) failed (exit {proc.returncode}):\n"
        f"{proc.stderr[-3000:]}"
    )


def allocation_probe(megabytes: float = 200.0) -> Callable:
    """A step that allocates and touches ``megabytes`` MB and frees them: the meter's self-check
    (its measured ``peak_mb`` must come out close to ``megabytes``)."""
    import torch

    numel = int(megabytes * _MB / 4)

    def step():
        buf = torch.ones(numel, dtype=torch.float32)  # ones() writes every page: really resident
        del buf

    return step


# -- latency -----------------------------------------------------------------------------------
@dataclasses.dataclass
class LatencyStats:
    """Seconds of repeated calls after warm-up; the median is the robust figure.

    ``times`` are wall-clock; ``cpu_times`` are this process's CPU seconds (all threads) over
    the same calls, which other processes' load barely changes (useful on shared machines).
    """

    times: list
    cpu_times: list = dataclasses.field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    def as_dict(self) -> dict:
        return dict(median_s=self.median, mean_s=self.mean, min_s=self.min, n=len(self.times))


def _synchronize(device) -> None:
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def measure_latency(fn: Callable, *, warmup: int = 2, repeat: int = 5, device=None) -> LatencyStats:
    """Time ``fn()`` ``repeat`` times after ``warmup`` untimed calls (CUDA-synchronised)."""
    return compare_latency({"fn": fn}, warmup=warmup, repeat=repeat, device=device)["fn"]


def compare_latency(
    fns: dict, *, warmup: int = 2, repeat: int = 5, device=None, progress=None
) -> dict:
    """Time several callables *interleaved*: each round runs every one once, in rotating order.

    On a shared machine the load drifts over seconds; interleaving exposes every callable to the
    same drift, so ratios of medians from one call are meaningful even when absolute times are
    noisy. Returns {name: LatencyStats}. ``progress`` (e.g. a tqdm bar) gets ``update(1)`` per
    timed round.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    _synchronize(device)
    stats = {name: LatencyStats([], []) for name in names}
    for r in range(repeat):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            _synchronize(device)
            t0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            _synchronize(device)
            stats[name].times.append(time.perf_counter() - t0)
            stats[name].cpu_times.append(time.process_time() - c0)
        if progress is not None:
            progress.update(1)
    return stats


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m odedet.evaluation.meters '<json spec>' (used by measure_peak_memory)")
    result = _worker(json.loads(sys.argv[1]))
    print(_RESULT_TAG + json.dumps(result), flush=True)
