"""The online SAM2Long tracker: a pathway pool per object on top of sam2's model code.

`Tracker` and `step_many` (and with them torch and sam2) are imported on first use, so the
light types (`Prompt`, `TrackerConfig`, `StepResult`) serve the wire format and client
without torch; so are the out-of-memory helpers (`is_out_of_memory`,
`release_cached_memory`), which import torch only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam2long_stream.tracker.config import Prompt, TrackerConfig
from sam2long_stream.tracker.memory import is_out_of_memory, release_cached_memory
from sam2long_stream.tracker.results import ObjectScore, StepResult

__all__ = [
    "ObjectScore",
    "Prompt",
    "StepResult",
    "Tracker",
    "TrackerConfig",
    "is_out_of_memory",
    "release_cached_memory",
    "step_many",
]

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker, step_many


def __getattr__(name: str) -> Any:
    if name == "Tracker":
        from sam2long_stream.tracker.tracker import Tracker

        return Tracker
    if name == "step_many":
        from sam2long_stream.tracker.tracker import step_many

        return step_many
    raise AttributeError(f"module 'sam2long_stream.tracker' has no attribute {name!r}")
