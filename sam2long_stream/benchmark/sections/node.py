"""Section ``node``: the whole node on a live RTSP stream -- node overhead, and
glass-to-publish latency measured at a ZeroMQ subscriber."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sam2long_stream.benchmark.defaults import GOALS
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.common import make_tracker
from sam2long_stream.benchmark.timing import percentiles, sync
from sam2long_stream.testing.camera import CameraUnavailable, RtspCamera, camera_problem

if TYPE_CHECKING:
    from sam2long_stream import Tracker


def timed_preprocess(tracker: Tracker, device: str) -> list[float] | None:
    """Wrap this tracker's ``engine.preprocess`` (resize + normalise, called inside
    `Tracker.step`) so each call's wall time lands in the returned list; None when the
    engine has no such method. On CUDA the device is synchronised around each call, so
    an asynchronous upload and resize are counted where they happen."""
    engine: Any = tracker.engine  # Sam2Engine's, not part of the Engine protocol
    inner = getattr(engine, "preprocess", None)
    if inner is None:
        return None
    spent: list[float] = []

    def preprocess(rgb: np.ndarray) -> torch.Tensor:
        sync(device)
        t0 = time.perf_counter()
        out = inner(rgb)
        sync(device)
        spent.append(time.perf_counter() - t0)
        return out

    engine.preprocess = preprocess  # this instance only: the bench's own tracker
    return spent


def node_run(args: argparse.Namespace, url: str, source_options: dict[str, Any]) -> dict[str, Any]:
    """One Node (P=3, 1 box-prompted object, policy "latest") on `url` until it has taken
    ``warmup + node_frames`` frames, with a real ZeroMQ Subscriber in this process
    receiving every masks message. Totals are taken over the frames tracked after the
    subscriber got the warm-up's messages: a `Node.summary` snapshot then, and the final
    summary."""
    from sam2long_stream import Prompt
    from sam2long_stream.node import Node, NodeConfig
    from sam2long_stream.transport.subscriber import MasksMessage, Subscriber

    tracker = make_tracker(args, num_pathways=3)
    preprocess = timed_preprocess(tracker, args.device)
    width, height = args.frame_size
    total = args.warmup + args.node_frames
    config = NodeConfig.one_stream(
        url,
        prompts={1: Prompt(box=(width // 4, height // 4, 3 * width // 4, 3 * height // 4))},
        pub="tcp://127.0.0.1:*",
        control=None,
        stream_id="bench",
        policy="latest",
        jitter_frames=args.jitter_frames,
        max_frames=total,
        source_options=source_options,
    )
    node = Node(config, tracker=tracker)
    sub = Subscriber(node.endpoint, topics=("masks/",), stream_id="bench")
    received: list[tuple[int, int, int, int]] = []  # seq, capture, publish, received (ns)
    snap: dict[str, Any] | None = None
    try:
        if not node.wait_for_subscribers(10.0):
            raise RuntimeError("the subscriber did not reach the node's publisher in 10 s")
        t0 = time.perf_counter()
        node.start()
        deadline = time.monotonic() + 60.0 + 20.0 * total  # a wedged stream must not hang
        ended = late = False
        while True:
            msg = sub.recv(timeout_s=0.2)
            if isinstance(msg, MasksMessage):
                received.append(
                    (msg.seq, msg.capture_time_ns, msg.publish_time_ns, msg.received_time_ns)
                )
                if len(received) == args.warmup:
                    snap = node.summary()
                continue
            if ended:  # the node stopped and nothing more came for 0.2 s
                break
            ended = node.join(0)
            if not ended and time.monotonic() > deadline:
                late = True
                node.stop()
                ended = node.join(30)
        wall = time.perf_counter() - t0
    finally:
        node.stop()
        node.join(30)
        sub.close()
    if node.error is not None:
        raise node.error
    final = node.summary()
    counted = ("frames_processed", "failed_frames", "decoded_frames", "dropped_frames")
    base = snap or dict.fromkeys((*counted, "decode_s", "publish_s", "track_s"), 0)

    def delta(key: str) -> float:
        return round(final[key] - base[key], 6)

    steps0 = base["frames_processed"] + base["failed_frames"]
    steps1 = final["frames_processed"] + final["failed_frames"]
    frames = final["frames_processed"] - base["frames_processed"]
    decode_s, publish_s, track_s = delta("decode_s"), delta("publish_s"), delta("track_s")
    # preprocess[j] is the j-th Tracker.step's: one engine.preprocess call per step.
    pre_s = (
        round(sum(preprocess[steps0:steps1]), 6)
        if preprocess and len(preprocess) == steps1
        else None
    )
    overhead = None
    if pre_s is not None and track_s - pre_s > 0:
        overhead = (decode_s + pre_s + publish_s) / (track_s - pre_s)
    timed = received[args.warmup :]
    glass = [(r - c) / 1e6 for _, c, _, r in timed]
    inside = [(p - c) / 1e6 for _, c, p, _ in timed]
    return {
        "frames": frames,
        "steps": steps1 - steps0,
        "whole_run": snap is None,  # fewer messages than the warm-up: totals of the run
        "stopped_at_deadline": late,  # the stream stalled: figures of what came before
        "decoded_frames": delta("decoded_frames"),
        "decode_s": decode_s,
        "preprocess_s": pre_s,
        "publish_s": publish_s,
        "track_s": track_s,
        "overhead": overhead,
        "node_overhead": (decode_s + publish_s) / track_s if track_s else None,
        "node_overhead_whole_run": final["node_overhead"],
        "received": len(received),
        "latency_frames": len(timed),
        "latency_ms": percentiles(glass),
        "node_latency_ms": percentiles(inside),
        "latency_samples_ms": [round(x, 2) for x in glass],
        "dropped_frames": delta("dropped_frames"),
        "failed_frames": delta("failed_frames"),
        "tracker_fps": final["fps"],
        "wall_s": wall,
        "summary": final,
    }


def bench_node(args: argparse.Namespace, _scene: Scene) -> dict[str, Any]:
    """The node end to end on a live RTSP stream: node overhead and glass-to-publish
    latency.

    The RTSP test camera (`sam2long_stream.testing.RtspCamera`) serves H.264 at
    ``--frame-size`` and ``--camera-fps``; a Node (`sam2long_stream.node`, P=3, one
    box-prompted object, policy "latest") reads it over TCP and publishes masks to a
    `transport.Subscriber` in this process. It runs ``--warmup`` + ``--node-frames``
    frames; figures cover the frames after the warm-up.

    * Glass: a frame's ``capture_time_ns``, which the RTSP source stamps (wall clock)
      right after FFmpeg decoded the frame and converted it to RGB, before it is queued.
      Network transfer, jitter buffering, demux and decode of that frame come *before*
      glass and are not in the latency; the camera's own encode neither. Latency =
      ``received_time_ns`` (the subscriber's wall clock when it took the message off the
      socket) - ``capture_time_ns``: the wait in the node's queue (policy "latest": a
      frame waits for the step in progress), tracking, encoding and the ZeroMQ hop.
      ``node_latency_ms`` is the same up to ``publish_time_ns`` (in the node).
    * Node overhead, by definition: (decode + preprocess + publish) / (tracker
      step - preprocess). The preprocess (resize to the model's square input and
      normalise, ``engine.preprocess``) runs *inside* `Tracker.step`, so the bench times
      it there and moves it from the tracker side to the overhead side. Decode is the CPU
      time of the source thread between frames (demux, H.264 decode, RGB conversion) for
      *every* frame the camera delivers, including frames the "latest" policy drops;
      publish is the wall time to encode and send the masks. Turning masks into
      frame-size masks (upsampling, result building) stays in the tracker side.
      ``node_overhead`` is the node's own figure, (decode + publish) / tracker step,
      preprocess inside the step, as `Node.summary` and ``sam2long-stream run`` report it.

    Without the RTSP camera (no GStreamer packages) the latency is skipped with the
    reason, and the overhead is measured on ``synthetic://moving-shapes`` (the bench's
    scene, in real time at the same size and rate) instead; its "decode" is then the
    scene's rendering.
    """
    width, height = args.frame_size
    out: dict[str, Any] = {
        "camera_fps": args.camera_fps,
        "jitter_frames": args.jitter_frames,
        "frame_size": [height, width],
        "warmup": args.warmup,
        "node_frames": args.node_frames,
        "goal": GOALS["node"],
        "skipped": None,
    }
    from sam2long_stream.node import NodeError

    try:
        problem = camera_problem()
        if problem is not None:
            raise CameraUnavailable(problem)
        with RtspCamera(width=width, height=height, fps=args.camera_fps) as camera:
            url = camera.url
            out.update(source=url, transport="tcp")
            out.update(node_run(args, url, {"transport": "tcp"}))
        return out
    except CameraUnavailable as exc:
        out["skipped"] = f"no live RTSP stream: {exc}"
    except NodeError as exc:
        out["skipped"] = f"the node failed on the RTSP stream: {exc}"
    url = (
        f"synthetic://moving-shapes?width={width}&height={height}&fps={args.camera_fps}&realtime=1"
    )
    out.update(source=url, transport=None)
    out.update(node_run(args, url, {}))
    out["latency_ms"] = out["node_latency_ms"] = None  # not a live RTSP stream
    out["latency_samples_ms"] = []
    return out
