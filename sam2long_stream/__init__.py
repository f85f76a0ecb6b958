"""sam2long-stream: an online SAM2Long tracker node for live video.

The tracker names are loaded lazily (PEP 562) so that `sam2long_stream.transport.subscriber` and the
wire format stay importable without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ObjectScore", "Prompt", "StepResult", "Tracker", "TrackerConfig"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from sam2long_stream.tracker import ObjectScore, Prompt, StepResult, Tracker, TrackerConfig


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sam2long_stream import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module 'sam2long_stream' has no attribute {name!r}")
