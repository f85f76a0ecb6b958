"""The online SAM2Long tracker: a pathway pool per object on top of sam2's model code.

`Tracker` (and with it torch and sam2) is imported on first use, so the light types
(`Prompt`, `TrackerConfig`, `StepResult`) serve the wire format and client without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sam2long_stream.tracker.config import Prompt, TrackerConfig
from sam2long_stream.tracker.results import ObjectScore, StepResult

__all__ = ["ObjectScore", "Prompt", "StepResult", "Tracker", "TrackerConfig"]

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker


def __getattr__(name: str) -> Any:
    if name == "Tracker":
        from sam2long_stream.tracker.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'sam2long_stream.tracker' has no attribute {name!r}")
