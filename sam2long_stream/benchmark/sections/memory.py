"""Section ``memory``: RSS after N vs 10 N frames, and the tracker's retained memory
entries, which must stay bounded."""

from __future__ import annotations

import argparse
import gc
import time
from typing import TYPE_CHECKING, Any

import torch

from sam2long_stream.benchmark.defaults import GOALS
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.common import make_tracker, track
from sam2long_stream.benchmark.timing import malloc_trim, rss_bytes, sync

if TYPE_CHECKING:
    from sam2long_stream import Tracker


def _memory_entries(tracker: Tracker) -> tuple[list[int], list[int], list[torch.Tensor]]:
    """Per pathway of every object: its history entries, and how many of them carry
    spatial memory features; plus every tensor the memory holds (conditioning entries,
    history entries, recent low-res masks).

    The one place the bench reads tracker internals (``tracker._objects[id].pool[p]``:
    ``.history``, ``.recent``, and the object's ``.conditioning``).
    """
    lengths: list[int] = []
    with_features: list[int] = []
    tensors: list[torch.Tensor] = []

    def add(t: object) -> None:
        if isinstance(t, torch.Tensor):
            tensors.append(t)

    for obj in tracker._objects.values():
        for e in obj.conditioning:
            add(e.maskmem)
            add(e.obj_ptr)
        for p in obj.pool:
            lengths.append(len(p.history))
            with_features.append(sum(e.maskmem is not None for e in p.history))
            for e in p.history:
                add(e.maskmem)
                add(e.obj_ptr)
            for c in p.recent:
                add(c.low_res)
    return lengths, with_features, tensors


def retained(tracker: Tracker) -> dict[str, Any]:
    """What the tracker keeps: history entries per pathway and the bytes they hold.

    ``view_bytes`` counts the tensors themselves; ``storage_bytes`` counts the storages
    they keep alive (a row view of a batched tensor keeps the whole batch).
    """
    lengths, with_features, held = _memory_entries(tracker)
    tensors = {id(t): t for t in held}
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors.values()
    }
    return {
        "entries_per_pathway": lengths,
        "entries_with_features_per_pathway": with_features,
        "max_entries_per_pathway": max(lengths, default=0),
        "view_bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "storage_bytes": sum(storages.values()),
    }


def bench_memory(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """RSS (and CUDA allocated memory) after N and after 10 N frames of one tracker."""
    tracker = make_tracker(args, num_pathways=3)
    step = track(tracker, scene, 2)
    n = args.memory_frames
    snaps: dict[str, dict[str, Any]] = {}
    curve: list[tuple[int, int]] = []  # (frames, RSS) every N frames: plateau or slope?
    t0 = time.perf_counter()
    for i in range(10 * n):
        step(i, scene.frame(i))
        if (i + 1) % n == 0:
            gc.collect()
            sync(args.device)
            malloc_trim()
            curve.append((i + 1, rss_bytes()))
            if n >= 50:  # a long check: show it is alive
                print(f"  memory: {i + 1} frames, RSS {curve[-1][1] / 2**20:.1f} MiB", flush=True)
        if i + 1 in (n, 10 * n):
            snap: dict[str, Any] = {"frames": i + 1, "rss_bytes": curve[-1][1], **retained(tracker)}
            if args.device.startswith("cuda"):
                snap["cuda_allocated_bytes"] = torch.cuda.memory_allocated()
            snaps["N" if i + 1 == n else "10N"] = snap
    engine = tracker.engine
    # With memory selection, spatial memory and pointers may reach back to different
    # frames; a pathway keeps at most the union of both windows.
    bound = (engine.num_maskmem - 1) + (engine.max_obj_ptrs - 1)
    out: dict[str, Any] = {
        "N": n,
        "after_N": snaps["N"],
        "after_10N": snaps["10N"],
        "rss_ratio": snaps["10N"]["rss_bytes"] / snaps["N"]["rss_bytes"],
        "retained_storage_ratio": snaps["10N"]["storage_bytes"] / snaps["N"]["storage_bytes"],
        "rss_curve": curve,
        "entries_bound": bound,
        "entries_bounded": snaps["10N"]["max_entries_per_pathway"] <= bound,
        "seconds": time.perf_counter() - t0,
        "goal": GOALS["memory"],
    }
    if "cuda_allocated_bytes" in snaps["N"]:
        out["cuda_allocated_ratio"] = (
            snaps["10N"]["cuda_allocated_bytes"] / snaps["N"]["cuda_allocated_bytes"]
        )
    return out
