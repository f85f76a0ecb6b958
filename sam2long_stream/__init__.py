"""sam2long-stream: an online SAM2Long tracker node for live video."""

from sam2long_stream.tracker import ObjectScore, Prompt, StepResult, Tracker, TrackerConfig

__all__ = ["ObjectScore", "Prompt", "StepResult", "Tracker", "TrackerConfig"]
__version__ = "0.1.0"
