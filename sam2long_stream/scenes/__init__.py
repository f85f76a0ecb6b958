"""Synthetic long-tracking scenes with exact ground truth: for training, evaluation,
tests and the demo camera (`make_scene`, `write_davis`)."""

from sam2long_stream.scenes.scene import (
    EVENT_KINDS,
    HELD_OUT_SEED_START,
    Event,
    Scene,
    make_scene,
)

__all__ = ["EVENT_KINDS", "HELD_OUT_SEED_START", "Event", "Scene", "make_scene"]
