"""``sam2long-stream bench``: arguments, running the sections, the JSON report."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sam2long_stream import settings
from sam2long_stream.benchmark.defaults import (
    DEFAULT_CAMERA_FPS,
    DEFAULT_FRAMES,
    DEFAULT_MEMORY_FRAMES,
    DEFAULT_NODE_FRAMES,
    DEFAULT_SECTIONS,
    DEFAULT_STREAMS_COUNTS,
    DEFAULT_STREAMS_SECONDS,
    DEFAULT_WARMUP,
    FPS_DEFAULT_MODEL,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    SECTIONS,
)
from sam2long_stream.benchmark.report import format_table
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections import RUNNERS
from sam2long_stream.models import (
    RANDOM_WEIGHTS,
    add_weight_flags,
    read_checkpoint,
    resolve_weights,
)
from sam2long_stream.tracker.config import TrackerConfig
from sam2long_stream.tracker.engine import resolve_device

DESCRIPTION = "Benchmark of the tracker's per-frame cost, as ratios measured within one run."


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _counts(text: str) -> list[int]:
    try:
        counts = [_positive(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected counts such as 1,2,4, got {text!r}") from None
    return counts


def _arms(text: str) -> list[str]:
    chosen = [a.strip() for a in text.split(",") if a.strip()]
    if chosen == ["both"]:
        chosen = ["processes", "one"]
    if not chosen or any(a not in ("processes", "one") for a in chosen):
        raise argparse.ArgumentTypeError(f"choose from processes, one or both, got {text!r}")
    return [a for a in ("processes", "one") if a in chosen]


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
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_weight_flags(p)
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
    jitter = settings.BY_KEY["jitter_frames"]
    p.add_argument(
        "--jitter-frames",
        type=_positive,
        default=jitter.default,
        metavar="N",
        help=f"node section: the node's {jitter.flag} (default {jitter.default}): {jitter.help}",
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
        "(the GPU table: one row per model and object count) and streams (minutes)",
    )
    p.add_argument(
        "--models",
        type=lambda t: [m.strip() for m in t.split(",") if m.strip()],
        default=None,
        help="fps section: comma-separated models (default: sam2.1_hiera_t, the anchors' tiny)",
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
    p.add_argument(
        "--streams-seconds",
        type=_seconds,
        default=DEFAULT_STREAMS_SECONDS,
        help="streams section: measured seconds per arm and stream count, after the "
        f"warm-up (default {DEFAULT_STREAMS_SECONDS:g})",
    )
    p.add_argument(
        "--streams-counts",
        type=_counts,
        default=list(DEFAULT_STREAMS_COUNTS),
        help="streams section: stream counts N (default "
        f"{','.join(map(str, DEFAULT_STREAMS_COUNTS))}; the GPU goal is at 8)",
    )
    p.add_argument(
        "--streams-arms",
        type=_arms,
        default=["processes", "one"],
        help="streams section: processes (N single-stream processes), one (one process "
        "with N streams), or both (default processes,one)",
    )
    p.add_argument(
        "--streams-process-threads",
        type=_positive,
        default=None,
        metavar="T",
        help="streams section: torch threads of each of the N single-stream processes "
        "(default: --threads, as for the one process)",
    )
    p.add_argument(
        "--streams-node-args",
        default="",
        metavar="ARGS",
        help="streams section: extra run options for the one-process node, e.g. "
        "'--max-batch 4 --max-wait 0.02'",
    )
    p.add_argument(
        "--threads",
        type=_positive,
        default=cores or 1,
        help="torch threads (streams section: of every node process)",
    )
    p.add_argument("--json", default="bench-out/bench.json", help="where to write results")
    args = p.parse_args(argv)
    args.models = args.models or [FPS_DEFAULT_MODEL]
    # One image size for every section and model (the model's own by default), so that
    # models and arms are compared at the same size; checkpoints resolve per model.
    _, args.image_size = resolve_weights(args.model, args.checkpoint, args.image_size)
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (frame 0 is the prompt frame)")
    try:  # what the sections would meet only after minutes of other sections
        resolve_device(args.device)
        for model in dict.fromkeys([args.model, *args.models]):
            TrackerConfig(model=model, image_size=args.image_size)
        if args.checkpoint not in (None, RANDOM_WEIGHTS):
            read_checkpoint(args.checkpoint)
    except ValueError as e:
        p.error(str(e))
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
    checkpoint, image_size = resolve_weights(args.model, args.checkpoint, args.image_size)
    weights = checkpoint or "random weights"  # of --model; other models resolve their own
    print(f"$ {command}")
    print(
        f"{args.model} @ {image_size} px ({weights}), device {args.device} "
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
            "checkpoint": checkpoint,
            "image_size": image_size,
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
            "streams_seconds": args.streams_seconds,
            "streams_counts": args.streams_counts,
            "streams_arms": args.streams_arms,
            "streams_process_threads": args.streams_process_threads or args.threads,
            "streams_node_args": args.streams_node_args,
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
