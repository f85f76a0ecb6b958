"""The bench's sections: each is ``bench_<name>(args, scene) -> dict`` (JSON-ready).

`RUNNERS` maps a section's command-line name to its function.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.memory import bench_memory
from sam2long_stream.benchmark.sections.model_speed import bench_model_speed
from sam2long_stream.benchmark.sections.node import bench_node
from sam2long_stream.benchmark.sections.ratios import bench_objects, bench_pathways
from sam2long_stream.benchmark.sections.streams import bench_streams
from sam2long_stream.benchmark.sections.versus_sam2 import bench_fps, bench_vs_sam2

Runner = Callable[[argparse.Namespace, Scene], dict[str, Any]]

RUNNERS: dict[str, Runner] = {
    "pathways": bench_pathways,
    "objects": bench_objects,
    "vs-sam2": bench_vs_sam2,
    "memory": bench_memory,
    "node": bench_node,
    "model-speed": bench_model_speed,
    "fps": bench_fps,
    "streams": bench_streams,
}

__all__ = [
    "RUNNERS",
    "Runner",
    "bench_fps",
    "bench_memory",
    "bench_model_speed",
    "bench_node",
    "bench_objects",
    "bench_pathways",
    "bench_streams",
    "bench_vs_sam2",
]
