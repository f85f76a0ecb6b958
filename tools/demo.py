"""`make demo`: RTSP test camera -> tracker node -> ZeroMQ -> subscriber, with an overlay.

    .venv/bin/python tools/demo.py [--checkpoint sam2.1_hiera_tiny.pt] --model sam2.1_hiera_t

1. starts the RTSP test camera (`sam2long_stream.testing.RtspCamera`: gst-rtsp-server
   under Debian's python3; two moving discs, 320x240 at 10 fps) on a free port;
2. prompts the blue disc with a box. Each RTSP client gets a fresh camera pipeline that
   starts at frame 0, so the demo reads frame 0 once itself, finds the blue disc by its
   colour, and gives the node that box: the node's first frame is that same frame 0;
3. runs the node in this process (its loop on a thread), which writes
   demo-out/overlay.mp4 and demo-out/overlay.png: masks drawn on the very frames they
   were computed from;
4. subscribes with the client SDK for ~20 s, then prints fps, latency, dropped frames and
   the node overhead ((decode + publish) / tracker time), and stops everything (the
   camera process is reaped) even on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout: the package is here
    sys.path.insert(0, str(REPO))

from sam2long_stream.testing import RtspCamera, camera_problem  # noqa: E402

BLUE = (60, 180, 240)  # the camera's second disc (foreground-color 0xff3cb4f0), drawn on top
NO_CHECKPOINT = (
    "random weights: the masks are meaningless without a real checkpoint; "
    "run `make demo CHECKPOINT=/path/sam2.1_hiera_tiny.pt`"
)


def banner(text: str) -> None:
    line = "!" * min(100, len(text) + 4)
    print(f"{line}\n! {text}\n{line}", flush=True)


def start_camera(width: int, height: int, fps: int) -> RtspCamera:
    """Start the RTSP test camera on a free port; `.url` is its URL."""
    problem = camera_problem()
    if problem is not None:
        raise RuntimeError(f"the RTSP test camera cannot run: {problem}")
    camera = RtspCamera(width=width, height=height, fps=fps)
    try:
        camera.start()
    except BaseException:
        camera.close()
        raise
    return camera


def blue_disc_box(url: str, margin: int = 6) -> tuple[int, int, int, int]:
    """Box around the blue disc in frame 0, as a fresh client (the node) will see it."""
    import av

    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5.0, 5.0)) as container:
        frame = next(container.decode(video=0))
        rgb = frame.to_ndarray(format="rgb24").astype(np.int16)
    blue = np.abs(rgb - np.array(BLUE)).sum(axis=-1) < 60
    ys, xs = np.nonzero(blue)
    if xs.size < 50:
        raise RuntimeError("could not find the blue disc in the camera's first frame")
    h, w = rgb.shape[:2]
    return (
        max(0, int(xs.min()) - margin),
        max(0, int(ys.min()) - margin),
        min(w, int(xs.max()) + 1 + margin),
        min(h, int(ys.max()) + 1 + margin),
    )


def percentile(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f} ms" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="SAM 2 checkpoint (.pt); without: random weights")
    ap.add_argument("--model", default="sam2.1_hiera_t")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to stream (20)")
    ap.add_argument("--frames", type=int, help="stop after this many tracked frames")
    ap.add_argument("--out-dir", default=str(REPO / "demo-out"))
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=256)
    args = ap.parse_args(argv)

    def on_term(_signum: int, _frame: Any) -> None:
        # Once: a second Ctrl-C must not cut the (bounded) cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also where a parent shell made it ignored

    if args.checkpoint is None:
        banner(NO_CHECKPOINT)
    out_dir = Path(args.out_dir)
    overlay_mp4, overlay_png = out_dir / "overlay.mp4", out_dir / "overlay.png"
    camera = None
    node = None
    try:
        from sam2long_stream import Prompt, TrackerConfig
        from sam2long_stream.node import Node, NodeConfig, format_summary
        from sam2long_stream.transport.subscriber import Subscriber

        camera = start_camera(args.width, args.height, args.fps)
        url = camera.url
        print(f"camera: {url} ({args.width}x{args.height} @ {args.fps} fps, moving discs)")
        box = blue_disc_box(url)
        print(f"prompt: object 1 = the blue disc, box {box} on frame 0")
        config = NodeConfig.one_stream(
            source=url,
            tracker=TrackerConfig(
                model=args.model, checkpoint=args.checkpoint, image_size=args.image_size
            ),
            prompts={1: Prompt(box=box)},
            pub="tcp://127.0.0.1:*",
            control="tcp://127.0.0.1:*",
            stream_id="demo",
            overlay_out=str(overlay_mp4),
            overlay_png=str(overlay_png),
        )
        node = Node(config)  # builds the tracker (~2 s)
        print(f"node: masks on {node.endpoint}, control on {node.control_endpoint}")
        latencies: list[float] = []
        received = 0
        with Subscriber(node.endpoint, topics=("masks/", "status/")) as sub:
            node.start()
            first: float | None = None
            next_report = 0.0
            while node.join(0) is False:
                msg = sub.recv(timeout_s=0.5)
                now = time.monotonic()
                if msg is not None and hasattr(msg, "seq"):
                    received += 1
                    latencies.append(msg.latency_ms)
                    first = first or now
                    if now >= next_report:
                        objs = ", ".join(
                            f"{o['id']}: {'present' if o['present'] else 'absent'}, "
                            f"area {o['area']}"
                            for o in msg.objects
                        )
                        print(
                            f"  seq {msg.seq:4d}  latency {msg.latency_ms:6.0f} ms  "
                            f"dropped {msg.dropped_frames:4d}  [{objs}]",
                            flush=True,
                        )
                        next_report = now + 2.0
                elif msg is not None and msg.state in ("error", "disconnected", "unhealthy"):
                    print(f"  status: {msg.state} {msg.get('error') or msg.get('reason') or ''}")
                if first is not None and now - first >= args.seconds:
                    break
                if args.frames is not None and received >= args.frames:
                    break
            node.stop()
            node.join(20)
        if node.error is not None:
            raise node.error
        summary = node.summary()
        print()
        print(f"overlay video: {overlay_mp4} ({summary['overlay_frames']} frames)")
        print(f"overlay image: {overlay_png}")
        print(f"received {received} masks messages; end-to-end latency (capture -> receive): ")
        print(f"  p50 {percentile(latencies, 50)}, p95 {percentile(latencies, 95)}")
        print(format_summary(summary))
        if args.checkpoint is None:
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
