"""What a tracker step accepts: an RGB uint8 frame and ``{object id: Prompt}``.

Checked before any model call, so a bad input raises ValueError with nothing changed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sam2long_stream.tracker.config import Prompt


def check_frame(frame: object, prompts: object) -> np.ndarray:
    """The frame as a contiguous (H, W, 3) uint8 array; ValueError naming what is wrong."""
    if frame is None:
        what = "prompts need the frame they refer to" if prompts else "frame is None"
        raise ValueError(f"{what}: pass an RGB uint8 array (H, W, 3)")
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 8 or frame.shape[1] < 8:
        raise ValueError(f"frame must have shape (H, W, 3) with H, W >= 8, got {frame.shape}")
    return np.ascontiguousarray(frame)


def check_prompts(prompts: object, height: int, width: int) -> dict[int, Prompt]:
    """The prompts fitted to a (height, width) frame (a box sticking out is clipped)."""
    if prompts is None:
        return {}
    if not isinstance(prompts, Mapping):
        raise ValueError("prompts must be a dict {object_id: Prompt}")
    out: dict[int, Prompt] = {}
    for object_id, prompt in prompts.items():
        if isinstance(object_id, bool) or not isinstance(object_id, int | np.integer):
            raise ValueError(f"object ids must be ints, got {object_id!r}")
        if object_id < 0:
            raise ValueError(f"object ids must be >= 0, got {object_id}")
        if not isinstance(prompt, Prompt):
            raise ValueError(f"prompt for object {object_id} must be a Prompt, got {prompt!r}")
        try:
            out[int(object_id)] = prompt.fit(height, width)  # a box sticking out is clipped
        except ValueError as e:
            raise ValueError(f"object {object_id}: {e}") from None
    return out
