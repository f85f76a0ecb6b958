"""Benchmark of the tracker's per-frame cost, as ratios measured within one run.

    sam2long-stream bench                      # all sections, ~1-2 minutes on 2 cores
    sam2long-stream bench --sections memory --memory-frames 200   # 2,000-frame check

Absolute times on a shared, noisy machine say little, so every figure is a ratio of two
configurations run in the same process on the same frames, interleaved frame by frame
(the order rotates every frame), so that load spikes hit both sides alike. Each side's
figure is the median of its per-frame times after a warm-up (prompt frame, filling
memory bank); the number of timed frames is reported with it.

Sections: ``pathways`` (P=3 vs P=1), ``objects`` (4 vs 1 object at P=3), ``vs-sam2``
(our tracker vs sam2's own SAM2VideoPredictor), ``memory`` (RSS after N vs 10 N
frames, and the tracker's retained memory entries, which must stay bounded) and ``node``
(the whole node on a live RTSP stream: node overhead, and glass-to-publish latency
measured at a ZeroMQ subscriber; see `bench_node`).

Prints a table with the goal and PASS/MISS next to each figure and writes JSON
(``--json``). Importable: ``main(argv) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import gc
import io
import json
import os
import platform
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from sam2long_stream import Tracker

SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node", "fps")
DEFAULT_SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node")
GOALS = {"pathways": 1.3, "objects": 1.5, "memory": 1.02, "node": 0.05}
FRAME_HEIGHT, FRAME_WIDTH = 240, 320  # a small camera-like frame; the model sees image_size

# Defaults sized so that the whole default run takes about a minute or two on 2 CPU cores.
DEFAULT_FRAMES = 12
DEFAULT_WARMUP = 8  # prompt frame + filling the 7-frame spatial memory bank
DEFAULT_MEMORY_FRAMES = 6
DEFAULT_NODE_FRAMES = 30  # node section: frames tracked after the warm-up (~10 s on CPU)
DEFAULT_CAMERA_FPS = 15


# -- synthetic scene ------------------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    size: int
    color: tuple[int, int, int]
    start: tuple[int, int]  # x, y of the top-left corner on frame 0
    velocity: tuple[int, int]  # pixels per frame; shapes bounce off the frame edges
    disc: bool


class Scene:
    """Deterministic endless video: four shapes bouncing over a fixed textured background.

    Frames are made on demand, so a 2,000-frame run does not hold 2,000 frames.
    Kept inside the bench (not tests/scenes.py) so the tool runs without the test suite.
    """

    SHAPES = (
        _Shape(44, (230, 200, 40), (20, 30), (3, 2), False),
        _Shape(40, (20, 60, 220), (240, 150), (-2, -3), True),
        _Shape(36, (200, 40, 60), (150, 40), (-3, 2), False),
        _Shape(38, (40, 200, 90), (60, 170), (2, -2), True),
    )

    def __init__(self, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH, seed: int = 0):
        """The scene is drawn at 320x240 and scaled (nearest) to `width` x `height`."""
        rng = np.random.default_rng(seed)
        self.out_height, self.out_width = height, width
        self.height, self.width = FRAME_HEIGHT, FRAME_WIDTH
        self._background = rng.integers(
            40, 120, size=(FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8
        )
        self._yy, self._xx = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
        self._rows = np.arange(height) * FRAME_HEIGHT // height
        self._cols = np.arange(width) * FRAME_WIDTH // width

    def _corner(self, shape: _Shape, i: int) -> tuple[int, int]:
        def bounce(start: int, v: int, span: int) -> int:
            p = (start + v * i) % (2 * span)
            return p if p < span else 2 * span - p

        return (
            bounce(shape.start[0], shape.velocity[0], self.width - shape.size),
            bounce(shape.start[1], shape.velocity[1], self.height - shape.size),
        )

    def frame(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame number i."""
        img = self._background.copy()
        for s in self.SHAPES:
            x, y = self._corner(s, i)
            if s.disc:
                r = s.size / 2
                inside = (self._xx - x - r) ** 2 + (self._yy - y - r) ** 2 < r * r
                img[inside] = s.color
            else:
                img[y : y + s.size, x : x + s.size] = s.color
        if (self.out_height, self.out_width) != (self.height, self.width):
            img = img[self._rows][:, self._cols]
        return img

    def box(self, shape: int, i: int = 0) -> tuple[int, int, int, int]:
        """Box (x0, y0, x1, y1) of shape number `shape` on frame i: the prompt."""
        s = self.SHAPES[shape]
        x, y = self._corner(s, i)
        fx, fy = self.out_width / self.width, self.out_height / self.height
        return (
            int(x * fx),
            int(y * fy),
            min(int((x + s.size) * fx), self.out_width),
            min(int((y + s.size) * fy), self.out_height),
        )


# -- timing ---------------------------------------------------------------------------
def _sync(device: str) -> None:
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
            _sync(device)
            t0 = time.perf_counter()
            steps[name](i, frame)
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def _summary(times: dict[str, list[float]], num: str, den: str) -> dict[str, Any]:
    """Median ms per side, their ratio, and the median of the per-frame paired ratios."""
    a, b = times[num], times[den]
    return {
        "times_ms": {num: [round(1e3 * x, 2) for x in a], den: [round(1e3 * x, 2) for x in b]},
        "median_ms": {num: 1e3 * statistics.median(a), den: 1e3 * statistics.median(b)},
        "ratio": statistics.median(a) / statistics.median(b),
        "paired_ratio_median": statistics.median(x / y for x, y in zip(a, b, strict=True)),
        "frames": len(a),
    }


def _verdict(ratio: float, goal: float | None) -> str:
    if goal is None:
        return "info"
    return "PASS" if ratio <= goal else "MISS"


# -- sections -------------------------------------------------------------------------
def _tracker(args: argparse.Namespace, **overrides: Any) -> Tracker:
    from sam2long_stream import Tracker, TrackerConfig

    cfg = TrackerConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        image_size=args.image_size,
        precision=args.precision,
        compile=getattr(args, "compile", False),
        **overrides,
    )
    return Tracker(cfg)


def _prompted(tracker: Tracker, prompts: dict[int, Any]) -> Step:
    """A step function: `prompts` on frame 0, then track."""
    return lambda i, frame: tracker.step(frame, prompts if i == 0 else None)


def _track(tracker: Tracker, scene: Scene, num_objects: int) -> Step:
    """A step function: prompt `num_objects` shapes on frame 0, then track."""
    from sam2long_stream import Prompt

    return _prompted(tracker, {k + 1: Prompt(box=scene.box(k)) for k in range(num_objects)})


def bench_pathways(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Per-frame step time with 3 pathways vs 1 (tree otherwise on), 1 object."""
    steps = {
        "P=3": _track(_tracker(args, num_pathways=3), scene, 1),
        "P=1": _track(_tracker(args, num_pathways=1), scene, 1),
    }
    times = interleave(steps, scene.frame, args.warmup + args.frames, args.warmup, args.device)
    out = _summary(times, *steps)
    out["goal"] = GOALS["pathways"]
    return out


def bench_objects(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Per-frame step time with 4 objects vs 1 object, both at P=3."""
    steps = {
        "4 objects": _track(_tracker(args, num_pathways=3), scene, 4),
        "1 object": _track(_tracker(args, num_pathways=3), scene, 1),
    }
    times = interleave(steps, scene.frame, args.warmup + args.frames, args.warmup, args.device)
    out = _summary(times, *steps)
    out["goal"] = GOALS["objects"]
    return out


def _jpeg_frames(folder: str, scene: Scene, total: int) -> list[np.ndarray]:
    """Write frames 0..total-1 as sam2's JPEG folder; return the decoded JPEGs."""
    from PIL import Image

    frames = []
    for i in range(total):
        path = Path(folder) / f"{i:05d}.jpg"
        Image.fromarray(scene.frame(i)).save(path, quality=95)
        frames.append(np.array(Image.open(path).convert("RGB")))
    return frames


@contextlib.contextmanager
def _sam2_predictor(
    args: argparse.Namespace,
    model: str,
    state_dict: dict[str, torch.Tensor],
    folder: str,
    boxes: Sequence[tuple[int, int, int, int]],
    bf16: bool,
    vos_optimized: bool = False,
) -> Iterator[Step]:
    """sam2's own SAM2VideoPredictor on `folder` with our weights, prompted with `boxes`
    on frame 0; yields a step function that advances ``propagate_in_video`` one frame.

    sam2's GPU recipe is bf16 autocast, as ours: the predictor gets the same. Without
    sam2._C it warns that hole filling is off and its tqdm bars would garble the report,
    so both are silenced while it runs.
    """
    from sam2.build_sam import build_sam2_video_predictor

    from sam2long_stream.tracker.config import model_config_name

    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        with contextlib.redirect_stdout(io.StringIO()):  # vos_optimized prints a banner
            predictor = build_sam2_video_predictor(
                model_config_name(model),
                ckpt_path=None,
                device=args.device,
                hydra_overrides_extra=overrides,
                vos_optimized=vos_optimized,
            )
        predictor.load_state_dict(state_dict)
        autocast = torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=bf16)
        state = predictor.init_state(folder)
        with autocast:
            for k, box in enumerate(boxes):
                predictor.add_new_points_or_box(state, 0, k + 1, box=box)
        frames_out = predictor.propagate_in_video(state)

        def step(i: int, _frame: np.ndarray) -> None:
            with autocast:
                index, _, _ = next(frames_out)
            assert index == i, (index, i)

        try:
            yield step
        finally:
            frames_out.close()
            del predictor, state
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()


def bench_vs_sam2(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Our tracker (tree off; P=3 tree on) vs sam2's SAM2VideoPredictor, same weights.

    The predictor reads a JPEG folder; we feed our trackers the same decoded JPEGs.
    Its per-frame time is that of one ``next()`` on ``propagate_in_video``. It decodes,
    resizes and normalises the whole video in ``init_state`` (untimed), whereas our
    per-frame time includes that preprocessing and building the result; so the ratio
    slightly favours the predictor.
    """
    from sam2long_stream import Prompt

    total = args.warmup + args.frames
    tree_off = _tracker(args, num_pathways=1, memory_selection=False, attention_modulation=False)
    tree_on = _tracker(args, num_pathways=3)
    with tempfile.TemporaryDirectory(prefix="bench-jpg-") as folder:
        frames = _jpeg_frames(folder, scene, total)
        sam2_step = _sam2_predictor(
            args,
            args.model,
            tree_off.model.state_dict(),
            folder,
            [scene.box(0)],
            tree_off.engine.bf16,
            args.vos_optimized,
        )
        with sam2_step as predictor_step:
            prompts = {1: Prompt(box=scene.box(0))}
            steps: dict[str, Step] = {
                "tree off": lambda i, frame: tree_off.step(frame, prompts if i == 0 else None),
                "P=3 tree": lambda i, frame: tree_on.step(frame, prompts if i == 0 else None),
                "sam2 predictor": predictor_step,
            }
            times = interleave(steps, frames.__getitem__, total, args.warmup, args.device)
    off = _summary(times, "tree off", "sam2 predictor")
    on = _summary(times, "P=3 tree", "sam2 predictor")
    return {
        "times_ms": {**off["times_ms"], **on["times_ms"]},
        "median_ms": {**off["median_ms"], **on["median_ms"]},
        "ratio_tree_off": off["ratio"],
        "ratio_tree_on": on["ratio"],
        "paired_ratio_median_tree_off": off["paired_ratio_median"],
        "paired_ratio_median_tree_on": on["paired_ratio_median"],
        "frames": off["frames"],
        "vos_optimized": args.vos_optimized,
        "goal": None,
    }


# SAM 2.1's published FPS at P=1 (A100, vos_optimized): the GPU goal is P=3 at >= these.
ANCHOR_FPS = {
    "sam2.1_hiera_t": 91.2,
    "sam2.1_hiera_s": 84.8,
    "sam2.1_hiera_b+": 64.1,
    "sam2.1_hiera_l": 39.5,
}


def bench_fps(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Frames per second of our tracker at P=1 and P=3 and of sam2's predictor, for each
    model in ``--models`` and each object count in ``--fps-objects``, interleaved per
    frame on the same JPEG-decoded frames (same weights). FPS is 1000 / median step ms.
    """
    from sam2long_stream import Prompt

    total = args.warmup + args.frames
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-jpg-") as folder:
        frames = _jpeg_frames(folder, scene, total)
        for model in args.models:
            margs = argparse.Namespace(**{**vars(args), "model": model})
            trackers = {p: _tracker(margs, num_pathways=p) for p in (1, 3)}
            weights = trackers[1].model.state_dict()
            for n in args.fps_objects:
                boxes = [scene.box(k % len(scene.SHAPES)) for k in range(n)]
                prompts = {k + 1: Prompt(box=b) for k, b in enumerate(boxes)}
                for t in trackers.values():
                    t.reset()
                steps: dict[str, Step] = {
                    f"P={p}": _prompted(t, prompts) for p, t in trackers.items()
                }
                t0 = time.perf_counter()
                sam2_step = _sam2_predictor(
                    margs,
                    model,
                    weights,
                    folder,
                    boxes,
                    trackers[1].engine.bf16,
                    args.vos_optimized,
                )
                with sam2_step as predictor_step:
                    steps["sam2 predictor"] = predictor_step
                    times = interleave(steps, frames.__getitem__, total, args.warmup, args.device)
                wall = time.perf_counter() - t0
                med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
                row = {
                    "model": model,
                    "objects": n,
                    "median_ms": med,
                    "fps": {k: 1e3 / v for k, v in med.items()},
                    "ratio_P3_P1": med["P=3"] / med["P=1"],
                    "ratio_P3_sam2": med["P=3"] / med["sam2 predictor"],
                    "anchor_fps": ANCHOR_FPS.get(model),
                    "frames": len(times["P=1"]),
                    "wall_s": wall,
                }
                rows.append(row)
                print(
                    f"    {model} x{n}: "
                    + ", ".join(f"{k} {v:.1f} FPS" for k, v in row["fps"].items())
                    + f" ({wall:.0f} s incl. predictor build)",
                    flush=True,
                )
            del trackers, weights
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return {"rows": rows, "vos_optimized": args.vos_optimized, "goal": None}


def _malloc_trim() -> None:
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


def retained(tracker) -> dict[str, Any]:
    """What the tracker keeps: history entries per pathway and the bytes they hold.

    This peeks at internals (``tracker._objects[id].pool[p].history``, ``.conditioning``,
    ``.recent``): no public API exposes the pools. ``view_bytes`` counts the tensors
    themselves; ``storage_bytes`` counts the storages they keep alive (a row view of a
    batched tensor keeps the whole batch).
    """
    lengths, with_features = [], []
    tensors: dict[int, torch.Tensor] = {}

    def add(t: object) -> None:
        if isinstance(t, torch.Tensor):
            tensors[id(t)] = t

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
    tracker = _tracker(args, num_pathways=3)
    step = _track(tracker, scene, 2)
    n = args.memory_frames
    snaps: dict[str, dict[str, Any]] = {}
    curve: list[tuple[int, int]] = []  # (frames, RSS) every N frames: plateau or slope?
    t0 = time.perf_counter()
    for i in range(10 * n):
        step(i, scene.frame(i))
        if (i + 1) % n == 0:
            gc.collect()
            _sync(args.device)
            _malloc_trim()
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


# -- node: overhead and glass-to-publish latency on a live RTSP stream ------------------
CAMERA_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "rtsp_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # gst-rtsp-server's bindings come from Debian packages


class CameraUnavailable(Exception):
    """The RTSP test camera cannot run here; the message says why (one line)."""


def camera_problem() -> str | None:
    """None when tools/rtsp_camera.py can run here, else why not (one line): no source
    checkout, no system python, or its GStreamer packages missing (its ``--check``)."""
    if not CAMERA_SCRIPT.is_file():
        return f"{CAMERA_SCRIPT} not found (run from a source checkout)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (tools/rtsp_camera.py needs it)"
    try:
        check = subprocess.run(
            [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--check"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "tools/rtsp_camera.py --check hung"
    if check.returncode != 0:
        detail = " ".join((check.stdout + check.stderr).split())
        return detail or f"tools/rtsp_camera.py --check exited {check.returncode}"
    return None


@contextlib.contextmanager
def rtsp_camera(width: int, height: int, fps: int, ready_timeout_s: float = 20.0) -> Iterator[str]:
    """tools/rtsp_camera.py (H.264 over RTSP, gst-rtsp-server) run by Debian's
    /usr/bin/python3 on a free 127.0.0.1 port; yields its rtsp:// URL and stops it after.

    Raises CameraUnavailable when it cannot run (no source checkout, no system python,
    missing GStreamer packages, or it did not print READY in time).
    """
    problem = camera_problem()
    if problem is not None:
        raise CameraUnavailable(problem)
    cmd = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", "0", "--path", "/cam"]
    cmd += ["--width", str(width), "--height", str(height), "--fps", str(fps)]
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], ready_timeout_s)
            line = proc.stdout.readline().strip() if ready else ""
            if not line.startswith("READY rtsp://"):
                log.seek(0)
                why = " ".join(log.read().split())[-400:]
                raise CameraUnavailable(
                    f"the RTSP camera did not start within {ready_timeout_s:g} s "
                    f"(stdout {line!r}; stderr {why!r})"
                )
            yield line.split(" ", 1)[1]
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _timed_preprocess(tracker: Tracker, device: str) -> list[float] | None:
    """Wrap this tracker's ``engine.preprocess`` (resize + normalise, called inside
    `Tracker.step`) so each call's wall time lands in the returned list; None when the
    engine has no such method. On CUDA the device is synchronised around each call, so
    an asynchronous upload and resize are counted where they happen."""
    engine = tracker.engine
    inner = getattr(engine, "preprocess", None)
    if inner is None:
        return None
    spent: list[float] = []

    def preprocess(rgb: np.ndarray) -> torch.Tensor:
        _sync(device)
        t0 = time.perf_counter()
        out = inner(rgb)
        _sync(device)
        spent.append(time.perf_counter() - t0)
        return out

    engine.preprocess = preprocess  # this instance only: the bench's own tracker
    return spent


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(max(values))}


def _node_run(args: argparse.Namespace, url: str, source_options: dict[str, Any]) -> dict[str, Any]:
    """One Node (P=3, 1 box-prompted object, policy "latest") on `url` until it has taken
    ``warmup + node_frames`` frames, with a real ZeroMQ Subscriber in this process
    receiving every masks message. Totals are taken over the frames tracked after the
    subscriber got the warm-up's messages: a `Node.summary` snapshot then, and the final
    summary."""
    from sam2long_stream import Prompt
    from sam2long_stream.node import Node, NodeConfig
    from sam2long_stream.transport.subscriber import MasksMessage, Subscriber

    tracker = _tracker(args, num_pathways=3)
    preprocess = _timed_preprocess(tracker, args.device)
    width, height = args.frame_size
    total = args.warmup + args.node_frames
    config = NodeConfig(
        source=url,
        prompts={1: Prompt(box=(width // 4, height // 4, 3 * width // 4, 3 * height // 4))},
        pub="tcp://127.0.0.1:*",
        control=None,
        stream_id="bench",
        policy="latest",
        max_frames=total,
        source_options=source_options,
    )
    node = Node(config, tracker=tracker)
    sub = Subscriber(node.endpoint, topics=("masks/",), stream_id="bench")
    received: list[tuple[int, int, int, int]] = []  # seq, capture, publish, received (ns)
    snap: dict[str, Any] | None = None
    try:
        if not node.wait_for_subscribers(10.0):
            raise RuntimeError("the subscriber did not reach the node's publisher in 10 s")
        t0 = time.perf_counter()
        node.start()
        deadline = time.monotonic() + 60.0 + 20.0 * total  # a wedged stream must not hang
        ended = late = False
        while True:
            msg = sub.recv(timeout_s=0.2)
            if isinstance(msg, MasksMessage):
                received.append(
                    (msg.seq, msg.capture_time_ns, msg.publish_time_ns, msg.received_time_ns)
                )
                if len(received) == args.warmup:
                    snap = node.summary()
                continue
            if ended:  # the node stopped and nothing more came for 0.2 s
                break
            ended = node.join(0)
            if not ended and time.monotonic() > deadline:
                late = True
                node.stop()
                ended = node.join(30)
        wall = time.perf_counter() - t0
    finally:
        node.stop()
        node.join(30)
        sub.close()
    if node.error is not None:
        raise node.error
    final = node.summary()
    counted = ("frames_processed", "failed_frames", "decoded_frames", "dropped_frames")
    base = snap or dict.fromkeys((*counted, "decode_s", "publish_s", "track_s"), 0)

    def delta(key: str) -> float:
        return round(final[key] - base[key], 6)

    steps0 = base["frames_processed"] + base["failed_frames"]
    steps1 = final["frames_processed"] + final["failed_frames"]
    frames = final["frames_processed"] - base["frames_processed"]
    decode_s, publish_s, track_s = delta("decode_s"), delta("publish_s"), delta("track_s")
    # preprocess[j] is the j-th Tracker.step's: one engine.preprocess call per step.
    pre_s = (
        round(sum(preprocess[steps0:steps1]), 6)
        if preprocess and len(preprocess) == steps1
        else None
    )
    model_s = track_s - pre_s if pre_s is not None else None
    timed = received[args.warmup :]
    glass = [(r - c) / 1e6 for _, c, _, r in timed]
    inside = [(p - c) / 1e6 for _, c, p, _ in timed]
    return {
        "frames": frames,
        "steps": steps1 - steps0,
        "whole_run": snap is None,  # fewer messages than the warm-up: totals of the run
        "stopped_at_deadline": late,  # the stream stalled: figures of what came before
        "decoded_frames": delta("decoded_frames"),
        "decode_s": decode_s,
        "preprocess_s": pre_s,
        "publish_s": publish_s,
        "track_s": track_s,
        "overhead": (decode_s + pre_s + publish_s) / model_s if model_s else None,
        "node_overhead": (decode_s + publish_s) / track_s if track_s else None,
        "node_overhead_whole_run": final["node_overhead"],
        "received": len(received),
        "latency_frames": len(timed),
        "latency_ms": _percentiles(glass),
        "node_latency_ms": _percentiles(inside),
        "latency_samples_ms": [round(x, 2) for x in glass],
        "dropped_frames": delta("dropped_frames"),
        "failed_frames": delta("failed_frames"),
        "tracker_fps": final["fps"],
        "wall_s": wall,
        "summary": final,
    }


def bench_node(args: argparse.Namespace, _scene: Scene) -> dict[str, Any]:
    """The node end to end on a live RTSP stream: node overhead and glass-to-publish
    latency.

    tools/rtsp_camera.py serves H.264 at ``--frame-size`` and ``--camera-fps``; a Node
    (`sam2long_stream.node`, P=3, one box-prompted object, policy "latest") reads it over
    TCP and publishes masks to a `transport.Subscriber` in this process. It
    runs ``--warmup`` + ``--node-frames`` frames; figures cover the frames after the
    warm-up.

    * Glass: a frame's ``capture_time_ns``, which the RTSP source stamps (wall clock)
      right after FFmpeg decoded the frame and converted it to RGB, before it is queued.
      Network transfer, jitter buffering, demux and decode of that frame come *before*
      glass and are not in the latency; the camera's own encode neither. Latency =
      ``received_time_ns`` (the subscriber's wall clock when it took the message off the
      socket) - ``capture_time_ns``: the wait in the node's queue (policy "latest": a
      frame waits for the step in progress), tracking, encoding and the ZeroMQ hop.
      ``node_latency_ms`` is the same up to ``publish_time_ns`` (in the node).
    * Node overhead, as the issue defines it: (decode + preprocess + publish) / (tracker
      step - preprocess). The preprocess (resize to the model's square input and
      normalise, ``engine.preprocess``) runs *inside* `Tracker.step`, so the bench times
      it there and moves it from the tracker side to the overhead side. Decode is the CPU
      time of the source thread between frames (demux, H.264 decode, RGB conversion) for
      *every* frame the camera delivers, including frames the "latest" policy drops;
      publish is the wall time to encode and send the masks. Turning masks into
      frame-size masks (upsampling, result building) stays in the tracker side.
      ``node_overhead`` is the node's own figure, (decode + publish) / tracker step,
      preprocess inside the step, as `Node.summary` and ``sam2long-stream run`` report it.

    Without the RTSP camera (no GStreamer packages) the latency is skipped with the
    reason, and the overhead is measured on ``synthetic://moving-shapes`` (real time at
    the same size and rate) instead; its "decode" is then the scene's rendering.
    """
    width, height = args.frame_size
    out: dict[str, Any] = {
        "camera_fps": args.camera_fps,
        "frame_size": [height, width],
        "warmup": args.warmup,
        "node_frames": args.node_frames,
        "goal": GOALS["node"],
        "skipped": None,
    }
    from sam2long_stream.node import NodeError

    try:
        with rtsp_camera(width, height, args.camera_fps) as url:
            out.update(source=url, transport="tcp")
            out.update(_node_run(args, url, {"transport": "tcp"}))
        return out
    except CameraUnavailable as exc:
        out["skipped"] = f"no live RTSP stream: {exc}"
    except NodeError as exc:
        out["skipped"] = f"the node failed on the RTSP stream: {exc}"
    url = (
        f"synthetic://moving-shapes?width={width}&height={height}&fps={args.camera_fps}&realtime=1"
    )
    out.update(source=url, transport=None)
    out.update(_node_run(args, url, {}))
    out["latency_ms"] = out["node_latency_ms"] = None  # not a live RTSP stream
    out["latency_samples_ms"] = []
    return out


RUNNERS: dict[str, Callable[[argparse.Namespace, Scene], dict[str, Any]]] = {
    "pathways": bench_pathways,
    "objects": bench_objects,
    "vs-sam2": bench_vs_sam2,
    "memory": bench_memory,
    "node": bench_node,
    "fps": bench_fps,
}


# -- report ---------------------------------------------------------------------------
def _rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, ...]]:
    """Table rows: section, figure, the two sides, ratio, goal, verdict, frames."""
    rows: list[tuple[str, ...]] = []

    def add(
        section: str,
        figure: str,
        sides: str,
        ratio: float | str | None,
        goal: str,
        verdict: str,
        frames: str,
    ) -> None:
        rows.append(
            (
                section,
                figure,
                sides,
                "-" if ratio is None else ratio if isinstance(ratio, str) else f"{ratio:.3f}x",
                goal,
                verdict,
                frames,
            )
        )

    def ms(r: dict[str, Any], a: str, b: str) -> str:
        return f"{r['median_ms'][a]:.0f} / {r['median_ms'][b]:.0f} ms"

    if r := results.get("pathways"):
        g = r["goal"]
        add(
            "pathways",
            "step P=3 / P=1, 1 object",
            ms(r, "P=3", "P=1"),
            r["ratio"],
            f"<= {g}x",
            _verdict(r["ratio"], g),
            str(r["frames"]),
        )
    if r := results.get("objects"):
        g = r["goal"]
        add(
            "objects",
            "step 4 / 1 objects, P=3",
            ms(r, "4 objects", "1 object"),
            r["ratio"],
            f"<= {g}x",
            _verdict(r["ratio"], g),
            str(r["frames"]),
        )
    if r := results.get("vs-sam2"):
        for key, label, side in (
            ("ratio_tree_off", "tree off / SAM2VideoPredictor", "tree off"),
            ("ratio_tree_on", "P=3 tree / SAM2VideoPredictor", "P=3 tree"),
        ):
            add(
                "vs-sam2",
                label,
                ms(r, side, "sam2 predictor"),
                r[key],
                "-",
                "info",
                str(r["frames"]),
            )
    if r := results.get("memory"):
        g, n = r["goal"], r["N"]
        a, b = r["after_10N"], r["after_N"]
        frames = f"{10 * n} / {n}"
        mib = f"{a['rss_bytes'] / 2**20:.0f} / {b['rss_bytes'] / 2**20:.0f} MiB"
        add(
            "memory",
            "RSS after 10N / N frames",
            mib,
            r["rss_ratio"],
            f"<= {g}x",
            _verdict(r["rss_ratio"], g),
            frames,
        )
        if "cuda_allocated_ratio" in r:
            ca, cb = a["cuda_allocated_bytes"] / 2**20, b["cuda_allocated_bytes"] / 2**20
            add(
                "memory",
                "CUDA allocated 10N / N",
                f"{ca:.0f} / {cb:.0f} MiB",
                r["cuda_allocated_ratio"],
                f"<= {g}x",
                _verdict(r["cuda_allocated_ratio"], g),
                frames,
            )
        kib = f"{a['storage_bytes'] / 2**10:.0f} / {b['storage_bytes'] / 2**10:.0f} KiB"
        add(
            "memory",
            "tensors held by pools 10N / N",
            kib,
            r["retained_storage_ratio"],
            "-",
            "info",
            frames,
        )
        entries = f"{a['max_entries_per_pathway']} / {b['max_entries_per_pathway']}"
        add(
            "memory",
            "max entries per pathway 10N / N",
            entries,
            None,
            f"<= {r['entries_bound']}",
            "PASS" if r["entries_bounded"] else "MISS",
            frames,
        )
    if r := results.get("node"):
        rows.extend(_node_rows(r))
    return rows


def _node_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    """The node section's rows (see `bench_node` for what each figure covers)."""
    rows: list[tuple[str, ...]] = []
    n, g = r["frames"], r["goal"]
    live = r["latency_ms"] is not None
    where = "" if live else " (synthetic source)"

    def per_frame(seconds: float) -> str:
        return f"{1e3 * seconds / n:.1f}" if n else "-"

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f} %"

    if r["overhead"] is not None:
        model = r["track_s"] - r["preprocess_s"]
        sides = (
            f"{per_frame(r['decode_s'])} + {per_frame(r['preprocess_s'])} + "
            f"{per_frame(r['publish_s'])} / {per_frame(model)} ms"
        )
        verdict = _verdict(r["overhead"], g)
    else:
        sides, verdict = "preprocess not separable", "-"
    rows.append(
        (
            "node",
            f"node overhead (decode+preprocess+publish) / model{where}",
            sides,
            pct(r["overhead"]),
            f"<= {100 * g:g} %",
            verdict,
            str(n),
        )
    )
    rows.append(
        (
            "node",
            f"node's overhead (decode+publish) / Tracker.step{where}",
            f"{per_frame(r['decode_s'])} + {per_frame(r['publish_s'])} / "
            f"{per_frame(r['track_s'])} ms",
            pct(r["node_overhead"]),
            "-",
            "info",
            str(n),
        )
    )
    if live:
        lat, inside = r["latency_ms"], r["node_latency_ms"]
        rows.append(
            (
                "node",
                "glass-to-publish p50 / p95, subscriber",
                f"{lat['p50']:.0f} / {lat['p95']:.0f} ms",
                "-",
                "-",
                "info",
                str(r["latency_frames"]),
            )
        )
        rows.append(
            (
                "node",
                "glass-to-publish p50 / p95, in node",
                f"{inside['p50']:.0f} / {inside['p95']:.0f} ms",
                "-",
                "-",
                "info",
                str(r["latency_frames"]),
            )
        )
    else:
        rows.append(
            ("node", "glass-to-publish p50 / p95", "skipped (see below)", "-", "-", "SKIP", "0")
        )
    return rows


def _notes(results: dict[str, dict[str, Any]]) -> list[str]:
    """Lines printed under the table: what a figure means, or why one is missing."""
    r = results.get("node")
    if not r:
        return []
    lines = [
        f"node: {r['source']} ({r['transport'] or 'in-process'}), "
        f"{r['frame_size'][1]}x{r['frame_size'][0]} at {r['camera_fps']} fps, P=3, 1 object, "
        f"policy latest; {r['frames']} frames after {r['warmup']} warm-up, "
        f"{r['decoded_frames']} decoded, {r['dropped_frames']} dropped by the policy, "
        f"tracker {r['tracker_fps']} fps. Overhead, ms per tracked frame: decode (CPU, "
        "every decoded frame) + preprocess (resize+normalise, timed inside Tracker.step) "
        "+ publish / model (Tracker.step minus preprocess); the node's own figure keeps "
        "preprocess inside Tracker.step."
        + (
            " Glass = capture_time_ns, stamped by the RTSP source after decode and RGB "
            "conversion; latency = subscriber receive time - glass."
            if r["latency_ms"] is not None
            else ""
        )
    ]
    if r["skipped"]:
        lines.append(f"node: glass-to-publish latency skipped: {r['skipped']}")
        lines.append(
            "node: overhead measured on the synthetic source instead (its decode is the "
            "scene's rendering)"
        )
    return lines


def _grid(header: tuple[str, ...], body: list[tuple[str, ...]]) -> str:
    rows = [header, *body]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_fps_table(fps: dict[str, Any]) -> str:
    """One row per model and object count: FPS of each side and the goal check
    (P=3 at >= SAM 2.1's published P=1 FPS)."""
    sam2 = "sam2 vos_optimized" if fps.get("vos_optimized") else "sam2 predictor"
    header = (
        "model",
        "objects",
        "P=1 FPS",
        "P=3 FPS",
        f"{sam2} FPS",
        "P=3/P=1 time",
        "anchor P=1 FPS",
        "P=3 >= anchor",
        "frames",
    )
    body = []
    for r in fps["rows"]:
        f, anchor = r["fps"], r["anchor_fps"]
        ok = (
            "-"
            if anchor is None or r["objects"] != 1
            else ("PASS" if f["P=3"] >= anchor else "MISS")
        )
        body.append(
            (
                r["model"],
                str(r["objects"]),
                f"{f['P=1']:.1f}",
                f"{f['P=3']:.1f}",
                f"{f['sam2 predictor']:.1f}",
                f"{r['ratio_P3_P1']:.2f}x",
                "-" if anchor is None else f"{anchor}",
                ok,
                str(r["frames"]),
            )
        )
    return _grid(header, body)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    header = ("section", "figure", "median A / B", "ratio", "goal", "result", "frames")
    parts = []
    if rows := _rows(results):
        parts.append(_grid(header, rows))
    if notes := _notes(results):
        parts.append("\n".join(textwrap.fill(n, 100, subsequent_indent="  ") for n in notes))
    if "fps" in results:
        parts.append(format_fps_table(results["fps"]))
    return "\n\n".join(parts)


# -- command line ---------------------------------------------------------------------
def _sections(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    if chosen == ["all"]:
        return list(DEFAULT_SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(SECTIONS)} or all"
        )
    return [s for s in SECTIONS if s in chosen]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _frame_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 1280x720, got {text!r}") from None
    if w < 64 or h < 64:
        raise argparse.ArgumentTypeError(f"frame must be at least 64x64, got {text!r}")
    return w, h


def parse_args(
    argv: Sequence[str] | None, prog: str = "sam2long-stream bench"
) -> argparse.Namespace:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    p = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--checkpoint", default=None, help="official .pt; default: random weights")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="TrackerConfig.precision (auto: bf16 on CUDA, fp32 elsewhere)",
    )
    p.add_argument("--frames", type=_positive, default=DEFAULT_FRAMES, help="timed frames")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="untimed frames first (>= 1)")
    p.add_argument(
        "--memory-frames",
        type=_positive,
        default=DEFAULT_MEMORY_FRAMES,
        help="N: memory is measured after N and 10 N frames (200 -> the 2,000-frame check)",
    )
    p.add_argument(
        "--node-frames",
        type=_positive,
        default=DEFAULT_NODE_FRAMES,
        help="node section: frames tracked after the warm-up on the live RTSP stream",
    )
    p.add_argument(
        "--camera-fps",
        type=_positive,
        default=DEFAULT_CAMERA_FPS,
        help="node section: frame rate of the RTSP test camera",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="TrackerConfig.compile=True for every tracker the bench builds "
        "(torch.compile; compiling takes minutes)",
    )
    p.add_argument(
        "--sections",
        type=_sections,
        default=list(DEFAULT_SECTIONS),
        help=f"comma-separated, from {', '.join(SECTIONS)}; all = every one but fps "
        "(the GPU table: one row per model and object count)",
    )
    p.add_argument(
        "--models",
        type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
        default=None,
        help="fps section: comma-separated models (default: --model)",
    )
    p.add_argument(
        "--fps-objects",
        type=lambda t: [_positive(n) for n in t.split(",")],
        default=[1, 4],
        help="fps section: object counts (default 1,4)",
    )
    p.add_argument(
        "--vos-optimized",
        action="store_true",
        help="compare with sam2's vos_optimized predictor (torch.compile max-autotune; "
        "compiling takes minutes per model)",
    )
    p.add_argument(
        "--frame-size",
        type=_frame_size,
        default=(FRAME_WIDTH, FRAME_HEIGHT),
        help=f"camera frame WxH (default {FRAME_WIDTH}x{FRAME_HEIGHT})",
    )
    p.add_argument("--threads", type=_positive, default=cores or 1)
    p.add_argument("--json", default="bench-out/bench.json", help="where to write results")
    args = p.parse_args(argv)
    args.models = args.models or [args.model]
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (frame 0 is the prompt frame)")
    return args


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream bench") -> int:
    """Run the chosen sections, print the table, write the JSON. Returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, prog)
    torch.set_num_threads(args.threads)
    command = " ".join([prog, shlex.join(argv)]).strip()
    machine = {
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
    }
    weights = args.checkpoint or "random weights"
    print(f"$ {command}")
    print(
        f"{args.model} @ {args.image_size} px ({weights}), device {args.device} "
        f"({args.precision} precision), "
        f"{args.threads} threads of {machine['cpus']} CPUs, torch {torch.__version__}; "
        f"frames {args.frame_size[0]}x{args.frame_size[1]}, "
        f"warm-up {args.warmup}, timed {args.frames}, "
        f"memory N {args.memory_frames}, node frames {args.node_frames} "
        f"(camera {args.camera_fps} fps)" + (", torch.compile" if args.compile else ""),
        flush=True,
    )
    scene = Scene(height=args.frame_size[1], width=args.frame_size[0])
    results: dict[str, dict[str, Any]] = {}
    # Memory first: its RSS baseline should not sit on memory freed by other sections.
    for name in sorted(args.sections, key=lambda s: s != "memory"):
        t0 = time.perf_counter()
        results[name] = RUNNERS[name](args, scene)
        results[name]["wall_s"] = time.perf_counter() - t0
        print(f"  {name}: done in {results[name]['wall_s']:.0f} s", flush=True)
    print()
    print(format_table({name: results[name] for name in args.sections}))
    report = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            "model": args.model,
            "checkpoint": args.checkpoint,
            "image_size": args.image_size,
            "precision": args.precision,
            "frame_size": [args.frame_size[1], args.frame_size[0]],
            "models": args.models,
            "vos_optimized": args.vos_optimized,
            "frames": args.frames,
            "warmup": args.warmup,
            "memory_frames": args.memory_frames,
            "node_frames": args.node_frames,
            "camera_fps": args.camera_fps,
            "compile": args.compile,
        },
        "sections": results,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
