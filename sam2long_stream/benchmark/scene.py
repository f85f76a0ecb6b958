"""The bench's video: the package's one synthetic scene, at the camera frame size."""

from __future__ import annotations

import numpy as np

from sam2long_stream.benchmark.defaults import FRAME_HEIGHT, FRAME_WIDTH
from sam2long_stream.sources.synthetic import OBJECT_NAMES, moving_shapes_frame

Box = tuple[int, int, int, int]


class Scene:
    """Deterministic endless video: `sources.synthetic.moving_shapes_frame` (a disc, a
    square and a triangle crossing over a textured background), drawn at `width` x
    `height` -- the same frames as ``synthetic://moving-shapes`` and the tests.

    Frames are made on demand, so a 2,000-frame run does not hold 2,000 frames; the last
    one is kept, since a step and its prompt boxes read the same frame.
    """

    OBJECTS: tuple[int, ...] = tuple(OBJECT_NAMES)  # object ids of the shapes: 1, 2, 3

    def __init__(self, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH, seed: int = 0):
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self._last: tuple[int, np.ndarray, dict[int, Box]] | None = None

    def _draw(self, i: int) -> tuple[np.ndarray, dict[int, Box]]:
        if self._last is None or self._last[0] != i:
            rgb, boxes = moving_shapes_frame(i, self.width, self.height, self.seed)
            self._last = (i, rgb, boxes)
        return self._last[1], self._last[2]

    def frame(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) frame number i."""
        return self._draw(i)[0]

    def box(self, obj_id: int, i: int = 0) -> Box:
        """Visible box (x0, y0, x1, y1) of shape `obj_id` on frame i: a prompt."""
        boxes = self._draw(i)[1]
        if obj_id not in boxes:
            raise ValueError(f"shape {obj_id} is hidden on frame {i}: no box to prompt with")
        return boxes[obj_id]

    def prompt_boxes(self, num_objects: int) -> list[Box]:
        """Frame-0 boxes for `num_objects` objects, one shape each in id order; with more
        objects than shapes the shapes repeat (an object's cost does not depend on which
        pixels it follows)."""
        return [self.box(self.OBJECTS[k % len(self.OBJECTS)]) for k in range(num_objects)]
