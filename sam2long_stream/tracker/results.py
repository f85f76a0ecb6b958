"""What the tracker hands out per frame: plain numpy/Python values, no torch tensors.

Keeping results free of torch lets the node, the wire format and the subscriber SDK
consume them without knowing anything about the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ObjectScore(Mapping[str, Any]):
    """Per-object confidence of the published mask; readable as attributes or as a dict."""

    object_id: int
    iou: float  # predicted IoU of the chosen mask
    object_score_logit: float  # > 0: the model thinks the object is present
    cumulative_score: float  # sum of log(iou) along the chosen pathway since its prompt
    pathway_id: int  # lineage id of the pathway that produced the mask
    pathway_switched: bool  # the best pathway differs from the one of the previous frame
    present: bool
    area: int  # mask pixels at frame resolution
    bbox: tuple[int, int, int, int] | None  # x0, y0, x1, y1 inclusive; None when empty

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepResult:
    """Masks of one frame: one bool (H, W) array per tracked object at the frame's size."""

    frame_index: int
    height: int
    width: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, ObjectScore] = field(default_factory=dict)

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.masks)

    @property
    def pathway_switched(self) -> bool:
        """True when the best pathway of any object changed on this frame."""
        return any(s.pathway_switched for s in self.scores.values())
