"""The bench's sections, goals and default sizes."""

from __future__ import annotations

SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node", "fps")
DEFAULT_SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node")
GOALS = {"pathways": 1.3, "objects": 1.5, "memory": 1.02, "node": 0.05}
FRAME_HEIGHT, FRAME_WIDTH = 240, 320  # a small camera-like frame; the model sees image_size

# Defaults sized so that the whole default run takes about a minute or two on 2 CPU cores.
DEFAULT_FRAMES = 12
DEFAULT_WARMUP = 8  # prompt frame + filling the 7-frame spatial memory bank
DEFAULT_MEMORY_FRAMES = 6
DEFAULT_NODE_FRAMES = 30  # node section: frames tracked after the warm-up (~10 s on CPU)
DEFAULT_CAMERA_FPS = 15

# SAM 2.1's published FPS at P=1 (A100, vos_optimized): the GPU goal is P=3 at >= these.
ANCHOR_FPS = {
    "sam2.1_hiera_t": 91.2,
    "sam2.1_hiera_s": 84.8,
    "sam2.1_hiera_b+": 64.1,
    "sam2.1_hiera_l": 39.5,
}
