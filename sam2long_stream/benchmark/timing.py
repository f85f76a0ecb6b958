"""Timing helpers: contestants interleaved frame by frame, medians and ratios, RSS."""

from __future__ import annotations

import contextlib
import ctypes
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def sync(device: str) -> None:
    """Wait for the device's queued work, so wall times cover it (no-op off CUDA)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


Step = Callable[[int, np.ndarray], object]  # (frame index, RGB frame) -> anything


def interleave(
    steps: dict[str, Step],
    frame_of: Callable[[int], np.ndarray],
    total: int,
    warmup: int,
    device: str,
) -> dict[str, list[float]]:
    """Call every step on frames 0..total-1, rotating their order each frame.

    Returns per-frame wall times (seconds) of the frames after the warm-up. Running the
    contestants back to back on each frame is what makes their ratio robust to noise.
    Frames are made before the clock starts, so scene drawing is not timed.
    """
    names = list(steps)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(total):
        frame = frame_of(i)
        k = i % len(names)
        for name in names[k:] + names[:k]:
            sync(device)
            t0 = time.perf_counter()
            steps[name](i, frame)
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def summary(times: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    """Median ms per side, their ratio, and the median of the per-frame paired ratios."""
    a, b = times[num], times[den]
    return {
        "times_ms": {num: [round(1e3 * x, 2) for x in a], den: [round(1e3 * x, 2) for x in b]},
        "median_ms": {num: 1e3 * statistics.median(a), den: 1e3 * statistics.median(b)},
        "ratio": statistics.median(a) / statistics.median(b),
        "paired_ratio_median": statistics.median(x / y for x, y in zip(a, b, strict=True)),
        "frames": len(a),
    }


def verdict(ratio: float, goal: float | None) -> str:
    """PASS/MISS against a goal (the ratio must be at most the goal); "info" without."""
    if goal is None:
        return "info"
    return "PASS" if ratio <= goal else "MISS"


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 and max of `values`; None when there are none."""
    if not values:
        return None
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(max(values))}


def malloc_trim() -> None:
    """Give glibc's free heap pages back, so RSS tracks live memory, not allocator slack.

    Without it RSS swings by tens of MiB from frame to frame, far more than the 2 % the
    memory goal resolves. A no-op where the C library is not glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int:
    """Resident set size of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)
