"""`make demo`: RTSP test camera -> tracker node -> ZeroMQ -> subscriber, with an overlay.

    .venv/bin/python tools/demo.py [--checkpoint model.pt --model NAME]

1. writes a held-out synthetic scene (`sam2long_stream.scenes`: textured objects, an
   occluder that hides one completely, a look-alike that crosses it, an exit and
   re-entry, a panning background) and starts the RTSP test camera playing it
   (gst-rtsp-server under Debian's python3, 320x240 at 10 fps) on a free port;
2. prompts every object with its box on frame 0 (the demo made the scene, so it knows
   them); each RTSP client's pipeline starts at frame 0, and the node takes every frame
   in order (policy all), so the node's first frame is that frame 0;
3. runs the node in this process (its loop on a thread) with the bundled sam2long_mini
   model unless a checkpoint is given; it writes demo-out/overlay.mp4 (masks on the
   very frames they were computed from);
4. subscribes with the client SDK for one pass of the scene, scores every received mask
   against the scene's ground truth (mean IoU per object), writes demo-out/overlay.png
   (a strip of frames with the received masks), prints fps, latency and dropped frames,
   and stops everything (the camera process is reaped) even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: the package is here
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation import db_eval_iou  # noqa: E402
from sam2long_stream.models import BUNDLED_MODEL, resolve_weights  # noqa: E402
from sam2long_stream.scenes import EVENT_KINDS, HELD_OUT_SEED_START, make_scene  # noqa: E402
from sam2long_stream.scenes.davis import write_jpeg_frames  # noqa: E402
from sam2long_stream.testing import RtspCamera, camera_problem  # noqa: E402

SEED = HELD_OUT_SEED_START + 90_001  # held out: training draws its scenes below the start
NO_CHECKPOINT = (
    "random weights: the masks are meaningless; leave out CHECKPOINT/MODEL for the bundled "
    "sam2long_mini, or run `make demo CHECKPOINT=/path/sam2.1_hiera_tiny.pt MODEL=sam2.1_hiera_t`"
)


def banner(text: str) -> None:
    line = "!" * min(100, len(text) + 4)
    print(f"{line}\n! {text}\n{line}", flush=True)


def start_camera(width: int, height: int, fps: int, frames: str) -> RtspCamera:
    """Start the RTSP test camera playing `frames` on a free port; `.url` is its URL."""
    problem = camera_problem()
    if problem is not None:
        raise RuntimeError(f"the RTSP test camera cannot run: {problem}")
    camera = RtspCamera(width=width, height=height, fps=fps, frames=frames)
    try:
        camera.start()
    except BaseException:
        camera.close()
        raise
    return camera


def write_strip(path: Path, shots: list[tuple[np.ndarray, dict[int, np.ndarray]]]) -> None:
    """A row of frames with the received masks drawn on them (the README's picture)."""
    from PIL import Image

    from sam2long_stream.overlay import draw_masks

    tiles = [draw_masks(rgb, masks) for rgb, masks in shots]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(path)


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f} ms" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkpoint", help="official-format .pt (default: the bundled sam2long_mini weights)"
    )
    ap.add_argument("--model", default=BUNDLED_MODEL)
    ap.add_argument("--frames", type=int, default=120, help="scene length, one pass (120)")
    ap.add_argument("--out-dir", default=str(REPO / "demo-out"))
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=None, help="default: the model's own")
    ap.add_argument("--seed", type=int, default=SEED, help="the scene's seed (held out)")
    args = ap.parse_args(argv)

    def on_term(_signum: int, _frame: Any) -> None:
        # Once: a second Ctrl-C must not cut the (bounded) cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also where a parent shell made it ignored

    checkpoint, image_size = resolve_weights(args.model, args.checkpoint, args.image_size)
    if checkpoint is None:
        banner(NO_CHECKPOINT)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overlay_mp4, overlay_png = out_dir / "overlay.mp4", out_dir / "overlay.png"
    camera = None
    node = None
    try:
        from sam2long_stream import Prompt, TrackerConfig
        from sam2long_stream.node import Node, NodeConfig, format_summary
        from sam2long_stream.transport.subscriber import Subscriber

        scene = make_scene(args.seed, args.width, args.height, args.frames, events=EVENT_KINDS)
        folder = tempfile.mkdtemp(prefix="demo-scene-")
        camera = start_camera(
            args.width, args.height, args.fps, str(write_jpeg_frames(scene, folder))
        )
        kinds = ", ".join(
            f"{e.kind} (object {e.target}, frames {e.start}-{e.end})" for e in scene.events
        )
        print(
            f"camera: {camera.url} ({args.width}x{args.height} @ {args.fps} fps, scene {args.seed})"
        )
        print(f"  events: {kinds}")
        boxes = scene.boxes(0)
        print(f"prompts on frame 0: {boxes}")
        config = NodeConfig.one_stream(
            source=camera.url,
            tracker=TrackerConfig(model=args.model, checkpoint=checkpoint, image_size=image_size),
            prompts={obj: Prompt(box=box) for obj, box in boxes.items()},
            policy="all",
            pub="tcp://127.0.0.1:*",
            control="tcp://127.0.0.1:*",
            stream_id="demo",
            overlay_out=str(overlay_mp4),
        )
        node = Node(config)
        print(f"node: {args.model} @ {image_size} px ({checkpoint or 'random weights'})")
        print(f"  masks on {node.endpoint}, control on {node.control_endpoint}")
        latencies: list[float] = []
        scores: dict[int, list[float]] = {obj: [] for obj in boxes}
        shots: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []
        strip = sorted(set(np.linspace(0, args.frames - 1, 6).round().astype(int).tolist()))
        wanted = set(strip)
        received = 0
        empty = np.zeros((args.height, args.width), bool)  # an object not in a message
        with Subscriber(node.endpoint, topics=("masks/", "status/")) as sub:
            node.start()
            next_report = 0.0
            while node.join(0) is False and received < args.frames:
                msg = sub.recv(timeout_s=0.5)
                now = time.monotonic()
                if msg is not None and hasattr(msg, "seq"):
                    received += 1
                    latencies.append(msg.latency_ms)
                    index = 0 if msg.pts is None else round(msg.pts * args.fps) % args.frames
                    rgb, truth = scene.frame(index)
                    got = msg.masks
                    for obj in scores:
                        scores[obj].append(db_eval_iou(truth[obj], got.get(obj, empty)))
                    if index in wanted:
                        shots.append((rgb, got))
                        wanted.discard(index)
                    if now >= next_report:
                        objs = ", ".join(
                            f"{o['id']}: {'present' if o['present'] else 'absent'} {o['area']}"
                            for o in msg.objects
                        )
                        print(
                            f"  frame {index:4d}  latency {msg.latency_ms:6.0f} ms  [{objs}]",
                            flush=True,
                        )
                        next_report = now + 2.0
                elif msg is not None and msg.state in ("error", "disconnected", "unhealthy"):
                    print(f"  status: {msg.state} {msg.get('error') or msg.get('reason') or ''}")
            node.stop()
            node.join(20)
        if node.error is not None:
            raise node.error
        summary = node.summary()
        if shots:
            write_strip(overlay_png, shots)
        print()
        print(f"overlay video: {overlay_mp4} ({summary['overlay_frames']} frames)")
        print(f"overlay image: {overlay_png} (frames {strip})")
        print(f"received {received} masks messages; end-to-end latency (capture -> receive): ")
        print(f"  p50 {percentile(latencies, 50)}, p95 {percentile(latencies, 95)}")
        per_obj = ", ".join(f"object {o}: {np.mean(v):.3f}" for o, v in scores.items() if v)
        print(f"mean IoU with the scene's ground truth: {per_obj}")
        print(format_summary(summary))
        if checkpoint is None:
            print()
            banner(NO_CHECKPOINT)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
            node.join(20)
            node.close()
        if camera is not None:
            camera.close()


if __name__ == "__main__":
    sys.exit(main())
