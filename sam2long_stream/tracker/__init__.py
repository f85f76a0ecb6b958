"""The online SAM2Long tracker: a pathway pool per object on top of sam2's model code."""

from sam2long_stream.tracker.config import Prompt, TrackerConfig
from sam2long_stream.tracker.results import ObjectScore, StepResult
from sam2long_stream.tracker.tracker import Tracker

__all__ = ["ObjectScore", "Prompt", "StepResult", "Tracker", "TrackerConfig"]
