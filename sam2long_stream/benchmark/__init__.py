"""Benchmark of the tracker's per-frame cost, as ratios measured within one run.

    sam2long-stream bench                      # all sections, ~1-2 minutes on 2 cores
    sam2long-stream bench --sections memory --memory-frames 200   # 2,000-frame check

Absolute times on a shared, noisy machine say little, so every figure is a ratio of two
configurations run in the same process on the same frames, interleaved frame by frame
(the order rotates every frame), so that load spikes hit both sides alike. Each side's
figure is the median of its per-frame times after a warm-up (prompt frame, filling
memory bank); the number of timed frames is reported with it.

Sections: ``pathways`` (P=3 vs P=1), ``objects`` (4 vs 1 object at P=3), ``vs-sam2``
(our tracker vs sam2's own SAM2VideoPredictor), ``memory`` (RSS after N vs 10 N
frames, and the tracker's retained memory entries, which must stay bounded), ``node``
(the whole node on a live RTSP stream: node overhead, and glass-to-publish latency
measured at a ZeroMQ subscriber; see `sections.node.bench_node`), ``fps`` (the GPU
table) and ``streams`` (one node process with N streams against N single-stream
processes, real ``sam2long-stream run`` subprocesses; see
`sections.streams.bench_streams`; minutes, so not in the default run). Every section
runs on the same synthetic scene (`scene.Scene`: the moving shapes of
`sam2long_stream.sources.synthetic`), the node section on the RTSP test camera, the
streams section on ``synthetic://moving-shapes`` sources.

Prints a table with the goal and PASS/MISS next to each figure and writes JSON
(``--json``). Importable: ``main(argv, prog) -> int``.

Modules: `defaults` (sections, goals, default sizes), `scene`, `timing` (interleaving,
medians, RSS), `sections` (one module per section group, `sections.RUNNERS`), `report`
(the table) and `cli` (arguments, `main`).
"""

from sam2long_stream.benchmark.cli import main, parse_args
from sam2long_stream.benchmark.defaults import ANCHOR_FPS, DEFAULT_SECTIONS, GOALS, SECTIONS
from sam2long_stream.benchmark.report import format_table
from sam2long_stream.benchmark.scene import Scene

__all__ = [
    "ANCHOR_FPS",
    "DEFAULT_SECTIONS",
    "GOALS",
    "SECTIONS",
    "Scene",
    "format_table",
    "main",
    "parse_args",
]
