"""The one frame type every source produces, and the events a source reports."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A decoded frame: RGB uint8 (H, W, 3) plus when it was taken and when it arrived."""

    rgb: np.ndarray
    seq: int  # assigned by the source: 0, 1, 2, ... over the source's whole life
    pts: float | None  # source timestamp in seconds (None when the source has none)
    capture_time_ns: int = field(default_factory=time.time_ns)  # wall clock at decode

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class SourceEvent:
    """Something the status topic should tell: connected, disconnected, reconnecting,
    resolution (detail: width, height), error (detail: message), eos; rejected (detail:
    message) when a source that waits for publishers (WHIP) refused one: not a source
    failure, so it neither changes the source state nor is fatal."""

    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    time_ns: int = field(default_factory=time.time_ns)
