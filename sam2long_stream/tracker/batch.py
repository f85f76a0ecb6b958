"""Many camera streams, one model: advance several trackers in one batched step.

Each stream keeps its own `Tracker` (its objects, pools, frame numbering, lag); the
trackers share one engine (one model in memory). `step_many` encodes the frames of all
streams in one image-encoder call, then runs memory attention, the mask decoder and the
memory encoder once over all pathways x objects x streams (grouped by memory layout, as
within one stream). Each stream's results equal what its own `Tracker.step` would give
on the same frames; `Tracker.step` is this function for one stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sam2long_stream.tracker.config import Prompt
from sam2long_stream.tracker.engine import MemoryView
from sam2long_stream.tracker.results import StepResult
from sam2long_stream.tracker.tracker import Tracker, _Pending, _Tick, _track


@torch.inference_mode()
def step_many(
    trackers: Sequence[Tracker],
    frames: Sequence[np.ndarray],
    prompts: Sequence[Mapping[int, Prompt] | None] | None = None,
) -> list[StepResult | None]:
    """Advance every tracker by its frame (frames[i] for trackers[i], any sizes), applying
    prompts[i] to trackers[i]; return what each `Tracker.step` would return, in order
    (the live result, or with ``lag=L`` the result of frame t - L or None).

    The trackers must share one engine object and be distinct. All or nothing: if any
    part fails (bad input, out of memory), no tracker changes and no prompt is applied,
    so the caller can skip the tick (or retry the streams one by one).
    """
    trackers = list(trackers)
    frames = list(frames)
    if prompts is None:
        prompts = [None] * len(trackers)
    prompts = list(prompts)
    if len(frames) != len(trackers) or len(prompts) != len(trackers):
        raise ValueError(
            f"step_many needs one frame and one prompts entry per tracker: got "
            f"{len(trackers)} trackers, {len(frames)} frames, {len(prompts)} prompts"
        )
    if not trackers:
        return []
    for i, tr in enumerate(trackers):
        if not isinstance(tr, Tracker):
            raise ValueError(f"trackers[{i}] is not a Tracker: {type(tr).__name__}")
    engine = trackers[0].engine
    if any(tr.engine is not engine for tr in trackers):
        raise ValueError("step_many needs trackers that share one engine (one model)")
    if len({id(tr) for tr in trackers}) != len(trackers):
        raise ValueError("step_many got the same tracker twice")

    ticks: list[_Tick] = []
    for i, (tr, frame, p) in enumerate(zip(trackers, frames, prompts, strict=True)):
        try:
            ticks.append(tr._begin(frame, p))
        except ValueError as e:
            if len(trackers) == 1:
                raise
            raise ValueError(f"stream {i}: {e}") from None

    n = len(trackers)
    saved = [tr._snapshot() for tr in trackers]
    try:
        active = [k for k in range(n) if trackers[k]._needs_features(ticks[k])]
        features: Any = engine.encode_many([ticks[k].rgb for k in active]) if active else None
        for column, k in enumerate(active):
            ticks[k].column = column
            trackers[k]._apply_prompts(ticks[k], features)
        views: list[MemoryView] = []
        pending: list[_Pending] = []
        for k in active:
            pending += trackers[k]._collect(ticks[k], views)
        if pending:
            _track(engine, features, views, pending)
        live = [trackers[k]._result(ticks[k].frame, lagged=False) for k in range(n)]
    except BaseException:
        for k in range(n):
            trackers[k]._objects = saved[k]
        raise
    return [trackers[k]._finish(ticks[k], live[k]) for k in range(n)]
