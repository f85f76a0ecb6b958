"""The bench's sections, goals and default sizes."""

from __future__ import annotations

SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node", "model-speed", "fps", "streams")
DEFAULT_SECTIONS = ("pathways", "objects", "vs-sam2", "memory", "node")  # not the last three
GOALS = {"pathways": 1.3, "objects": 1.5, "memory": 1.02, "node": 0.05, "model-speed": 5.0}
SPEED_REFERENCE = "sam2.1_hiera_t"  # model-speed: the bundled model's fps against this one
FPS_DEFAULT_MODEL = "sam2.1_hiera_t"  # fps: the GPU table's default row (its anchors' tiny)
FRAME_HEIGHT, FRAME_WIDTH = 240, 320  # a small camera-like frame; the model sees image_size

# Defaults sized so that the whole default run takes about a minute or two on 2 CPU cores.
DEFAULT_FRAMES = 12
DEFAULT_WARMUP = 8  # prompt frame + filling the 7-frame spatial memory bank
DEFAULT_MEMORY_FRAMES = 6
DEFAULT_NODE_FRAMES = 30  # node section: frames tracked after the warm-up (~10 s on CPU)
DEFAULT_CAMERA_FPS = 15

# Section streams (issue 11): N streams in one process against N single-stream processes.
# Several minutes per run (two arms per N, --streams-seconds each), so not a default section.
DEFAULT_STREAMS_SECONDS = 60.0  # measured window per arm and N, after the warm-up
DEFAULT_STREAMS_COUNTS = (1, 2, 4)
# One process / N processes: total RSS <= 0.35x and aggregate tracked fps >= 1.0x (CPU,
# N = 4); p95 latency of the slowest stream / the fastest one in one process <= 1.25x
# (CPU, N = 4); aggregate fps >= 3x on a GPU at N = 8.
STREAMS_GOALS = {"rss_ratio": 0.35, "fps_ratio": 1.0, "p95_spread": 1.25, "gpu_fps_ratio": 3.0}
STREAMS_GOAL_N = {"cpu": 4, "gpu": 8}  # the stream count each set of goals is judged at

# SAM 2.1's published FPS at P=1 (A100, vos_optimized): the GPU goal is P=3 at >= these.
ANCHOR_FPS = {
    "sam2.1_hiera_t": 91.2,
    "sam2.1_hiera_s": 84.8,
    "sam2.1_hiera_b+": 64.1,
    "sam2.1_hiera_l": 39.5,
}
