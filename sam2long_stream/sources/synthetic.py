"""A deterministic moving-shapes scene with ground truth, for tests, demos and evaluation.

Three shapes (1: disc, 2: square, 3: triangle) move on smooth Lissajous paths over a
noisy textured background. They are drawn in id order (the triangle is on top), and the
paths cross, so shapes occlude each other at times: the case a long-term tracker must
survive. Everything is a pure function of (index, width, height, seed).
"""

from __future__ import annotations

import functools
import logging
import math
import time

import numpy as np

from sam2long_stream.limits import MAX_FRAME_SIDE, check_fps, quote
from sam2long_stream.sources.base import EventCallback, FrameCallback, ThreadedSource
from sam2long_stream.sources.frame import Frame, SourceEvent

log = logging.getLogger(__name__)

OBJECT_NAMES = {1: "disc", 2: "square", 3: "triangle"}
_COLOURS = {1: (230, 60, 50), 2: (60, 200, 80), 3: (60, 120, 240)}


def _shape_params(seed: int) -> dict[int, tuple[float, float, float, float]]:
    """Per-shape path parameters (freq_x, freq_y, phase_x, phase_y), derived from seed."""
    rng = np.random.default_rng(seed)
    params = {}
    base = ((0.021, 0.033), (0.027, 0.019), (0.017, 0.025))  # radians per frame
    for obj_id, (fx, fy) in zip(OBJECT_NAMES, base, strict=True):
        jx, jy, px, py = (
            rng.uniform(0.85, 1.15),
            rng.uniform(0.85, 1.15),
            *rng.uniform(0, 2 * math.pi, 2),
        )
        params[obj_id] = (fx * jx, fy * jy, float(px), float(py))
    return params


def _centres(index: int, width: int, height: int, seed: int) -> dict[int, tuple[float, float]]:
    size = min(width, height)
    margin = 0.16 * size
    ax, ay = width / 2 - margin, height / 2 - margin
    out = {}
    for obj_id, (fx, fy, px, py) in _shape_params(seed).items():
        out[obj_id] = (
            width / 2 + ax * math.sin(fx * index + px),
            height / 2 + ay * math.sin(fy * index + py),
        )
    return out


def _full_masks(index: int, width: int, height: int, seed: int) -> dict[int, np.ndarray]:
    """Each shape's whole (amodal) mask, ignoring occlusion."""
    size = min(width, height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    masks = {}
    for obj_id, (cx, cy) in _centres(index, width, height, seed).items():
        if obj_id == 1:
            r = 0.12 * size
            masks[obj_id] = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif obj_id == 2:
            h = 0.11 * size
            masks[obj_id] = (np.abs(xx - cx) <= h) & (np.abs(yy - cy) <= h)
        else:
            r = 0.15 * size
            angle = 0.02 * index  # the triangle slowly spins
            pts = [
                (
                    cx + r * math.cos(angle + k * 2 * math.pi / 3),
                    cy + r * math.sin(angle + k * 2 * math.pi / 3),
                )
                for k in range(3)
            ]
            inside = np.ones((height, width), dtype=bool)
            for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
                inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
            masks[obj_id] = inside
    return masks


def moving_shapes_masks(
    index: int, width: int, height: int, seed: int = 0
) -> dict[int, np.ndarray]:
    """Visible ground-truth mask (bool HxW) per object id, occlusion applied."""
    full = _full_masks(index, width, height, seed)
    covered = np.zeros((height, width), dtype=bool)
    visible: dict[int, np.ndarray] = {}
    for obj_id in sorted(full, reverse=True):  # topmost first
        visible[obj_id] = full[obj_id] & ~covered
        covered |= full[obj_id]
    return {obj_id: visible[obj_id] for obj_id in sorted(visible)}


@functools.lru_cache(maxsize=8)
def _background(width: int, height: int, seed: int) -> np.ndarray:
    """A static textured background: soft gradient plus blotchy low-frequency noise."""
    rng = np.random.default_rng(seed + 7919)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 40 + 30 * (xx / max(1, width - 1)) + 20 * (yy / max(1, height - 1))
    coarse = rng.uniform(-12, 12, size=(height // 16 + 2, width // 16 + 2)).astype(np.float32)
    blotches = np.kron(coarse, np.ones((16, 16), dtype=np.float32))[:height, :width]
    grain = rng.normal(0, 6, size=(height, width)).astype(np.float32)
    grey = base + blotches + grain
    bg = np.stack([grey * 0.9, grey, grey * 1.1], axis=-1)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    bg.setflags(write=False)
    return bg


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def moving_shapes_frame(
    index: int, width: int = 320, height: int = 240, seed: int = 0
) -> tuple[np.ndarray, dict[int, tuple[int, int, int, int]]]:
    """Frame `index` of the scene: (RGB uint8 HxWx3, {object id: visible box (x0, y0,
    x1, y1), exclusive end}). A fully hidden object has no box."""
    masks = moving_shapes_masks(index, width, height, seed)
    rgb = _background(width, height, seed).astype(np.int16)
    for obj_id, mask in masks.items():
        rgb[mask] = _COLOURS[obj_id]
    rng = np.random.default_rng((seed, index))
    rgb += rng.integers(-4, 5, size=rgb.shape, dtype=np.int16)  # sensor noise
    boxes = {obj_id: box for obj_id, m in masks.items() if (box := _box(m)) is not None}
    return np.clip(rgb, 0, 255).astype(np.uint8), boxes


class SyntheticSource(ThreadedSource):
    """Frames of `moving_shapes_frame`, paced at `fps` when `realtime` (else as fast as
    the consumer takes them); ends with "eos" after `frames` frames (None: never)."""

    thread_name = "synthetic-source"

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 15.0,
        frames: int | None = None,
        seed: int = 0,
        realtime: bool = True,
    ) -> None:
        for name, side in (("width", width), ("height", height)):
            if isinstance(side, bool) or not isinstance(side, int):
                raise ValueError(f"synthetic source needs an integer {name}, got {quote(side)}")
            if not 16 <= side <= MAX_FRAME_SIDE:
                raise ValueError(
                    f"synthetic source needs {name} in 16..{MAX_FRAME_SIDE} (the largest "
                    f"frame side the node accepts), got {quote(side)}"
                )
        fps = check_fps(fps, "synthetic source fps")
        if frames is not None and (
            isinstance(frames, bool) or not isinstance(frames, int) or frames < 0
        ):
            raise ValueError(f"synthetic source needs frames >= 0, got {quote(frames)}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"synthetic source needs a seed in 0..{2**32 - 1}, got {quote(seed)}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames, self.seed, self.realtime = frames, int(seed), bool(realtime)
        super().__init__()

    def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        size = {"width": self.width, "height": self.height}
        on_event(SourceEvent("connected", dict(size)))
        on_event(SourceEvent("resolution", dict(size)))
        t0 = time.monotonic()
        index = 0
        while not self._stop.is_set() and (self.frames is None or index < self.frames):
            if self.realtime:
                delay = t0 + index / self.fps - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            rgb, _ = moving_shapes_frame(index, self.width, self.height, self.seed)
            on_frame(Frame(rgb=rgb, seq=index, pts=index / self.fps))
            index += 1
        if not self._stop.is_set():
            on_event(SourceEvent("eos", {"frames": index}))
