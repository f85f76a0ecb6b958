"""Tracker configuration and prompts, validated up front so bad input fails with a clear
`ValueError` before any model work is done."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from sam2long_stream.limits import quote

# Accepted model names -> sam2 hydra config. Checkpoint-style names are aliases so users
# can pass what their file is called (sam2.1_hiera_base_plus.pt -> sam2.1_hiera_base_plus).
_SIZES = {
    "t": "t",
    "tiny": "t",
    "s": "s",
    "small": "s",
    "b+": "b+",
    "base_plus": "b+",
    "l": "l",
    "large": "l",
}


def model_config_name(model: str) -> str:
    """Map a model name (e.g. ``sam2.1_hiera_t`` or ``sam2_hiera_large``) to its sam2
    config; the project's own models (``sam2long_mini``) name their config file."""
    from sam2long_stream.models import OWN_MODELS

    if model in OWN_MODELS:
        return str(OWN_MODELS[model][0])
    for family, folder in (("sam2.1_hiera_", "sam2.1"), ("sam2_hiera_", "sam2")):
        if model.startswith(family) and model[len(family) :] in _SIZES:
            return f"configs/{folder}/{family}{_SIZES[model[len(family) :]]}.yaml"
    known = ", ".join(
        [*OWN_MODELS]
        + [f"{f}{s}" for f in ("sam2.1_hiera_", "sam2_hiera_") for s in ("t", "s", "b+", "l")]
    )
    raise ValueError(f"unknown model {quote(model)}; expected one of: {known}")


# The tree off: one pathway, no memory selection, no attention modulation. This is SAM 2
# (tests/test_sam2_equivalence.py). One pathway alone is not: it keeps SAM2Long's
# object-aware memory bank (frames scored absent or below iou_threshold stay out).
TREE_OFF: Mapping[str, Any] = MappingProxyType(
    dict(num_pathways=1, memory_selection=False, attention_modulation=False)
)


@dataclass(frozen=True)
class TrackerConfig:
    """Everything that defines a tracker. Defaults are the SAM2Long reference values."""

    model: str = "sam2.1_hiera_t"
    checkpoint: str | None = None  # official .pt ({"model": state_dict}); None = random init
    seed: int = 0  # used for the random init when no checkpoint is given
    device: str = "auto"  # CUDA when present, else the CPU; or a torch device name
    image_size: int | None = 256  # None keeps the config's 1024
    num_pathways: int = 3
    iou_threshold: float = 0.1  # memory eligibility: predicted IoU above this ...
    uncertainty: float = 2.0  # ... and pool selection is "certain" when max |logit| > this
    memory_selection: bool = True
    attention_modulation: bool = True
    lag: int = 0  # publish frame t from the best pathway at t + lag
    max_conditioning_frames: int = 16  # prompts kept per object; the oldest go first
    precision: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 on CUDA, fp32 elsewhere
    preprocess: str = "auto"  # pil (SAM 2's exact resize) | torch (on the device) | auto
    # torch.compile the image encoder and memory attention (eager again, with one warning,
    # if compiling fails); compile_backend is torch.compile's backend ("aot_eager" traces
    # and recompiles exactly as "inductor" does, without generating code: cheap for tests)
    compile: bool = False
    compile_backend: str = "inductor"
    # Which object pointers a pathway attends to (docs/algorithm.md): "reference" is the
    # official SAM2Long code (every valid memory frame but the oldest, at temporal
    # positions by rank); "sam2" is SAM 2's rule on the selected frames (the previous frame
    # plus the latest eligible ones, at their true distance).
    pointer_rule: str = "reference"
    # Length of the stream when known in advance (a file). The official code, offline,
    # narrows the pointer window to min(length, 16) frames; a live stream (None) keeps 16.
    stream_length: int | None = None

    def __post_init__(self) -> None:
        model_config_name(self.model)
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size < 64 or self.image_size % 64
        ):
            raise ValueError(
                f"image_size must be a multiple of 64 (>= 64), got {quote(self.image_size)}"
            )
        if not isinstance(self.num_pathways, int) or not 1 <= self.num_pathways <= 16:
            raise ValueError(
                f"num_pathways must be an int in 1..16, got {quote(self.num_pathways)}"
            )
        if not isinstance(self.lag, int) or self.lag < 0:
            raise ValueError(f"lag must be an int >= 0, got {quote(self.lag)}")
        if not (math.isfinite(self.iou_threshold) and 0 <= self.iou_threshold < 1):
            raise ValueError(f"iou_threshold must be in [0, 1), got {quote(self.iou_threshold)}")
        if not (math.isfinite(self.uncertainty) and self.uncertainty >= 0):
            raise ValueError(f"uncertainty must be >= 0, got {quote(self.uncertainty)}")
        if not isinstance(self.max_conditioning_frames, int) or self.max_conditioning_frames < 1:
            raise ValueError("max_conditioning_frames must be an int >= 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {quote(self.precision)}")
        if self.preprocess not in ("auto", "pil", "torch"):
            raise ValueError(f"preprocess must be auto, pil or torch, got {quote(self.preprocess)}")
        if self.pointer_rule not in ("reference", "sam2"):
            raise ValueError(
                f"pointer_rule must be reference or sam2, got {quote(self.pointer_rule)}"
            )
        if self.stream_length is not None and (
            not isinstance(self.stream_length, int) or self.stream_length < 2
        ):
            raise ValueError(f"stream_length must be an int >= 2, got {quote(self.stream_length)}")
        if not isinstance(self.compile_backend, str) or not self.compile_backend:
            raise ValueError(f"compile_backend must be a name, got {quote(self.compile_backend)}")


@dataclass(frozen=True)
class Prompt:
    """A box (x0, y0, x1, y1), points [(x, y), ...] with labels (1 positive, 0 negative),
    or a bool mask (H, W), all in frame pixels. Box and points may be combined."""

    box: Sequence[float] | None = None
    points: Sequence[Sequence[float]] | None = None
    labels: Sequence[int] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)

    def validate(self, height: int, width: int) -> None:
        """Raise ValueError unless the prompt makes sense on a frame of this size.

        Points must lie inside the frame. A box must overlap it: one partly outside is
        accepted (a user drawing near the edge should not get an error) and `fit`
        clips it; one wholly outside is refused."""
        if self.box is None and self.points is None and self.mask is None:
            raise ValueError("a prompt needs a box, points or a mask")
        if self.mask is not None and (self.box is not None or self.points is not None):
            raise ValueError("a mask prompt cannot be combined with a box or points")
        if self.box is not None:
            _check_box(self.box, height, width)
        if self.points is not None or self.labels is not None:
            _check_points(self.points, self.labels, height, width)
        if self.mask is not None:
            mask = np.asarray(self.mask)
            if mask.shape != (height, width):
                raise ValueError(f"mask prompt has shape {mask.shape}, frame is {(height, width)}")
            if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
                raise ValueError("mask prompt must be boolean (or 0/1)")
            if not mask.any():
                raise ValueError("mask prompt is empty")

    def fit(self, height: int, width: int) -> Prompt:
        """The prompt the engine should get on a frame of this size: validated (as
        `validate`), with a box that sticks out of the frame clipped to it."""
        self.validate(height, width)
        if self.box is None:
            return self
        x0, y0, x1, y1 = (float(v) for v in self.box)
        clipped = (
            min(max(x0, 0.0), float(width)),
            min(max(y0, 0.0), float(height)),
            min(max(x1, 0.0), float(width)),
            min(max(y1, 0.0), float(height)),
        )
        if clipped == (x0, y0, x1, y1):
            return self
        return dataclasses.replace(self, box=clipped)


def _check_box(box: Sequence[float], height: int, width: int) -> None:
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers x0, y0, x1, y1, got {quote(box)}") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"box has non-finite values: {quote(box)}")
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box is empty or inverted (need x0 < x1, y0 < y1): {quote(box)}")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:  # partly outside: `fit` clips
        raise ValueError(f"box {quote(box)} lies wholly outside the {width}x{height} frame")


def _check_points(points, labels, height: int, width: int) -> None:
    if points is None or labels is None:
        raise ValueError("points and labels must be given together")
    try:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        lab = np.asarray(labels, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"points must be [(x, y), ...], got {quote(points)}") from None
    if len(pts) == 0 or len(pts) != len(lab):
        raise ValueError(f"need as many labels as points (>= 1), got {len(pts)} and {len(lab)}")
    if not np.isfinite(pts).all():
        raise ValueError("points have non-finite values")
    if not np.isin(lab, (0, 1)).all():
        raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {quote(list(labels))}")
    if (
        (pts[:, 0] < 0).any()
        or (pts[:, 0] >= width).any()
        or (pts[:, 1] < 0).any()
        or (pts[:, 1] >= height).any()
    ):
        raise ValueError(f"points {quote(pts.tolist())} lie outside the {width}x{height} frame")
