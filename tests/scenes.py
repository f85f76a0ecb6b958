"""Small deterministic test scenes (numpy only), shared by the tracker tests."""

from __future__ import annotations

import numpy as np


def moving_squares(
    num_frames: int, height: int = 96, width: int = 128, seed: int = 0
) -> list[np.ndarray]:
    """A bright square and a dark disc drifting over a textured background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 120, size=(height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(num_frames):
        img = background.copy()
        x0, y0 = 10 + 2 * i, 20 + i
        img[y0 : y0 + 30, x0 : x0 + 30] = (230, 200, 40)
        cx, cy = width - 30 - i, height // 2
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < 15**2] = (20, 60, 220)
        frames.append(img)
    return frames
