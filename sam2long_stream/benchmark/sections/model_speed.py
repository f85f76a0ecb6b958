"""Section ``model-speed``: the bundled model's tracked frames per second against SAM 2.1
tiny (``sam2.1_hiera_t``) at the same image size, both at P=3 with one object,
interleaved in one run (random weights for the reference: they cost what trained ones do)."""

from __future__ import annotations

import argparse
from typing import Any

from sam2long_stream.benchmark.defaults import GOALS, SPEED_REFERENCE
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.common import make_tracker, track
from sam2long_stream.benchmark.timing import interleave, summary
from sam2long_stream.models import BUNDLED_MODEL


def bench_model_speed(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    bundled = make_tracker(args, model=BUNDLED_MODEL, num_pathways=3)
    reference = make_tracker(args, model=SPEED_REFERENCE, checkpoint="random", num_pathways=3)
    steps = {SPEED_REFERENCE: track(reference, scene, 1), BUNDLED_MODEL: track(bundled, scene, 1)}
    times = interleave(steps, scene.frame, args.warmup + args.frames, args.warmup, args.device)
    out = summary(times, *steps)  # ratio: the reference's time over the bundled model's
    out["image_size"] = args.image_size
    out["goal"] = GOALS["model-speed"]
    return out
