"""Several Trackers that share one engine, advanced together.

Stand-in on the ``node`` branch: `step_many` steps each tracker in turn (the ``batch``
branch replaces it with one batched model call giving the same answers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from sam2long_stream.tracker.config import Prompt
from sam2long_stream.tracker.results import StepResult

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker


def step_many(
    trackers: Sequence[Tracker],
    frames: Sequence[np.ndarray],
    prompts: Sequence[Mapping[int, Prompt] | None] | None = None,
) -> list[StepResult | None]:
    """``[t.step(frame, prompts=p) for ...]``: each element is what `Tracker.step`
    returns (the live result, or the lagged one with ``lag > 0``)."""
    if len(trackers) != len(frames):
        raise ValueError(f"{len(trackers)} trackers but {len(frames)} frames")
    if prompts is None:
        prompts = [None] * len(trackers)
    if len(prompts) != len(trackers):
        raise ValueError(f"{len(trackers)} trackers but {len(prompts)} prompt sets")
    return [t.step(f, prompts=p) for t, f, p in zip(trackers, frames, prompts, strict=True)]
