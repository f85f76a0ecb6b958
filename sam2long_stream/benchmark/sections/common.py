"""Trackers and step functions shared by the sections."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, cast

from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.timing import Step

if TYPE_CHECKING:
    from sam2long_stream import Tracker
    from sam2long_stream.tracker.engine import Sam2Engine


def make_tracker(args: argparse.Namespace, **overrides: Any) -> Tracker:
    """A Tracker configured from the bench's arguments, with `overrides` on top."""
    from sam2long_stream import Tracker, TrackerConfig
    from sam2long_stream.models import resolve_weights

    model = overrides.pop("model", args.model)
    checkpoint, image_size = resolve_weights(
        model,
        overrides.pop("checkpoint", args.checkpoint),
        overrides.pop("image_size", args.image_size),
    )
    cfg = TrackerConfig(
        model=model,
        checkpoint=checkpoint,
        device=args.device,
        image_size=image_size,
        precision=args.precision,
        compile=getattr(args, "compile", False),
        **overrides,
    )
    return Tracker(cfg)


def sam2_engine(tracker: Tracker) -> Sam2Engine:
    """The tracker's engine, which the bench always builds as a `Sam2Engine`."""
    return cast("Sam2Engine", tracker.engine)


def prompted(tracker: Tracker, prompts: dict[int, Any]) -> Step:
    """A step function: `prompts` on frame 0, then track."""
    return lambda i, frame: tracker.step(frame, prompts if i == 0 else None)


def track(tracker: Tracker, scene: Scene, num_objects: int) -> Step:
    """A step function: prompt `num_objects` shapes on frame 0, then track."""
    from sam2long_stream import Prompt

    boxes = scene.prompt_boxes(num_objects)
    return prompted(tracker, {k + 1: Prompt(box=box) for k, box in enumerate(boxes)})
