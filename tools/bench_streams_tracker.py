#!/usr/bin/env python3
"""Per-tick time of `step_many` over N streams vs N sequential `Tracker.step` calls.

All trackers share one engine (one model); each stream is its own synthetic scene with
one prompted object. Both ways run the same frames, interleaved tick by tick (so machine
noise hits both alike); the figure is the median per-tick time after a warm-up.

    PYTHONPATH=$PWD python tools/bench_streams_tracker.py --streams 1 2 4 --ticks 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from sam2long_stream.sources.synthetic import moving_shapes_frame
from sam2long_stream.tracker import Prompt, Tracker, TrackerConfig, step_many
from sam2long_stream.tracker.engine import Sam2Engine


def bench_streams(
    engine: Any, config: TrackerConfig, n: int, ticks: int, warmup: int, size: tuple[int, int]
) -> dict[str, Any]:
    """Median seconds per tick for N streams: batched (step_many) and sequential."""
    width, height = size
    scenes = [
        [moving_shapes_frame(t, width, height, seed=s)[0] for t in range(ticks + 1)]
        for s in range(n)
    ]
    boxes = [moving_shapes_frame(0, width, height, seed=s)[1] for s in range(n)]
    prompts = []
    for b in boxes:
        oid = min(b)
        x0, y0, x1, y1 = b[oid]
        prompts.append({oid: Prompt(box=(x0, y0, x1 - 1, y1 - 1))})
    seq = [Tracker(config, engine=engine) for _ in range(n)]
    bat = [Tracker(config, engine=engine) for _ in range(n)]
    for tr, frames, p in zip(seq, scenes, prompts, strict=True):
        tr.step(frames[0], prompts=p)
    step_many(bat, [f[0] for f in scenes], prompts)
    t_seq, t_bat = [], []
    for t in range(1, ticks + 1):
        frames = [f[t] for f in scenes]
        t0 = time.perf_counter()
        for tr, frame in zip(seq, frames, strict=True):
            tr.step(frame)
        t1 = time.perf_counter()
        step_many(bat, frames)
        t2 = time.perf_counter()
        if t > warmup:
            t_seq.append(t1 - t0)
            t_bat.append(t2 - t1)
    s, b = statistics.median(t_seq), statistics.median(t_bat)
    return {
        "streams": n,
        "sequential_ms": round(1000 * s, 1),
        "step_many_ms": round(1000 * b, 1),
        "step_many_over_sequential": round(b / s, 3),
        "ticks_measured": len(t_seq),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--ticks", type=int, default=12, help="tracked ticks per N")
    ap.add_argument("--warmup", type=int, default=3, help="first ticks not measured")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--num-pathways", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    config = TrackerConfig(
        image_size=args.image_size, num_pathways=args.num_pathways, device=args.device, seed=0
    )
    engine = Sam2Engine(config)
    for n in args.streams:  # one line per N as soon as it is measured
        row = bench_streams(engine, config, n, args.ticks, args.warmup, (320, 240))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
