"""Sections ``pathways`` (P=3 vs P=1) and ``objects`` (4 vs 1 object at P=3)."""

from __future__ import annotations

import argparse
from typing import Any

from sam2long_stream.benchmark.defaults import GOALS
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.common import make_tracker, track
from sam2long_stream.benchmark.timing import interleave, summary


def bench_pathways(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Per-frame step time with 3 pathways vs 1 (tree otherwise on), 1 object."""
    steps = {
        "P=3": track(make_tracker(args, num_pathways=3), scene, 1),
        "P=1": track(make_tracker(args, num_pathways=1), scene, 1),
    }
    times = interleave(steps, scene.frame, args.warmup + args.frames, args.warmup, args.device)
    out = summary(times, *steps)
    out["goal"] = GOALS["pathways"]
    return out


def bench_objects(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Per-frame step time with 4 objects vs 1 object, both at P=3 (objects 1-3 follow the
    three shapes, object 4 the disc again: see `Scene.prompt_boxes`)."""
    steps = {
        "4 objects": track(make_tracker(args, num_pathways=3), scene, 4),
        "1 object": track(make_tracker(args, num_pathways=3), scene, 1),
    }
    times = interleave(steps, scene.frame, args.warmup + args.frames, args.warmup, args.device)
    out = summary(times, *steps)
    out["goal"] = GOALS["objects"]
    return out
