"""Soak test: stream many synthetic frames through the whole node and watch for leaks.

    python -m sam2long_stream.testing.soak --frames 100000 --image-size 256 \
        --checkpoints 1000,10000,100000         # or tools/soak.py in a checkout

Synthetic moving shapes (as fast as the tracker takes them, ``--policy all``) -> the
real node (tracker with random weights, ZeroMQ publisher) -> a subscriber on a thread of
this process that decodes every message. ``--engine scripted`` puts the engine double
(`testing.engine_double.ScriptedEngine`: scripted candidates, no neural network) under the
real tracker instead of sam2, so a 10^5-frame run of everything around the model (source,
queue, tracker pools and memory, publisher, subscriber) takes minutes, not days; the
image size is then the double's own (32), ``--image-size`` does not apply. Reported:

* RSS of the process at each checkpoint (frames processed), and the ratio of the last to
  the first (the goal: <= 1.02, i.e. no growth once warmed up);
* messages lost: masks seqs the node published that the subscriber never received
  (with ``--policy all`` every frame is published, so the goal is zero);
* errors: tracker failures, publish errors, malformed messages, node errors, and
  ERROR log records of the package.

Exit status 0 when nothing was lost and nothing failed (and, with ``--max-ratio``, the
memory ratio is within it); 1 otherwise. ``--json FILE`` writes the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.sources import moving_shapes_frame
from sam2long_stream.transport.subscriber import MasksMessage, StatusMessage, Subscriber

log = logging.getLogger("soak")

ENGINES = ("sam2", "scripted")


@dataclass
class Checkpoint:
    target: int  # the checkpoint asked for
    frames: int  # frames processed when it was taken (the loop is polled: a few more)
    rss_mib: float
    elapsed_s: float
    fps: float | None


@dataclass
class SoakReport:
    frames: int
    image_size: int
    frame_size: str
    engine: str
    pathways: int
    objects: int
    frames_processed: int = 0
    received: int = 0
    lost: int = 0
    first_lost: list[int] = field(default_factory=list)
    dropped_messages: int = 0
    failed_frames: int = 0
    bad_messages: int = 0
    wrong_objects: int = 0
    error_logs: int = 0
    node_error: str | None = None
    errors: int = 0
    checkpoints: list[Checkpoint] = field(default_factory=list)
    memory_ratio: float | None = None
    peak_rss_mib: float = 0.0  # highest RSS sampled (every 50 ms) during the run
    elapsed_s: float = 0.0
    fps: float | None = None

    def lines(self) -> list[str]:
        out = [
            f"soak: {self.frames_processed}/{self.frames} frames, frame {self.frame_size}, "
            f"engine {self.engine}, image size {self.image_size}, {self.pathways} pathways, "
            f"{self.objects} objects, "
            f"{self.elapsed_s:.0f} s ({self.fps or 0:.2f} fps)",
        ]
        for c in self.checkpoints:
            out.append(
                f"  at {c.target:>7} frames ({c.frames}): RSS {c.rss_mib:8.1f} MiB  "
                f"({c.elapsed_s:7.0f} s, {c.fps or 0:.2f} fps)"
            )
        ratio = "n/a" if self.memory_ratio is None else f"{self.memory_ratio:.4f}"
        out.append(
            f"memory ratio (last / first checkpoint): {ratio}; peak RSS {self.peak_rss_mib:.1f} MiB"
        )
        out.append(
            f"messages: {self.received} received, {self.lost} lost"
            + (f" (first seqs {self.first_lost})" if self.first_lost else "")
            + f", {self.dropped_messages} dropped by the publisher"
        )
        out.append(
            f"errors: {self.errors} (tracker failures {self.failed_frames}, malformed "
            f"{self.bad_messages}, wrong objects {self.wrong_objects}, error logs "
            f"{self.error_logs}, node {self.node_error or 'ok'})"
        )
        return out


class _ErrorCounter(logging.Handler):
    """Counts ERROR records of the package during the soak."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0
        self.first: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(record.getMessage())


class _Receiver:
    """A subscriber on its own thread: every masks seq, decoded, objects checked."""

    def __init__(self, endpoint: str, object_ids: list[int], frames: int) -> None:
        self.sub = Subscriber(endpoint, topics=("masks/", "status/"), hwm=10_000)
        self.object_ids = object_ids
        # one byte per frame, allocated up front: a set of seqs would grow with the run
        # (about 70 bytes a frame) and show up as the very growth the soak looks for
        self.seen = bytearray(frames)
        self.received = 0  # distinct seqs in range
        self.out_of_range = 0  # seqs >= frames: malformed for this run
        self.wrong_objects = 0
        self.stopped = threading.Event()  # a "stopped" status arrived
        self._quit = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="soak-subscriber", daemon=True)

    def start(self) -> _Receiver:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._quit.is_set():
                msg = self.sub.recv(timeout_s=0.2)
                if isinstance(msg, MasksMessage):
                    masks = msg.masks  # decode every mask: that is what a client does
                    shapes_ok = all(m.shape == (msg.height, msg.width) for m in masks.values())
                    if msg.object_ids != self.object_ids or not shapes_ok:
                        self.wrong_objects += 1
                    if not 0 <= msg.seq < len(self.seen):
                        self.out_of_range += 1
                    elif not self.seen[msg.seq]:
                        self.seen[msg.seq] = 1
                        self.received += 1
                elif isinstance(msg, StatusMessage) and msg.state == "stopped":
                    self.stopped.set()
        except Exception as exc:  # reported, not raised: the soak goes on
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self._quit.set()
        self._thread.join(5)
        self.sub.close()


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / (1 << 20)


def soak(
    frames: int,
    image_size: int = 256,
    pathways: int = 3,
    checkpoints: list[int] | None = None,
    width: int = 256,
    height: int = 256,
    objects: int = 2,
    threads: int | None = None,
    progress: bool = False,
    engine: str = "sam2",
) -> SoakReport:
    """Run the soak and return its report (see the module docstring).

    `engine`: "sam2" (the model, random weights, at `image_size`) or "scripted" (the
    engine double under the real tracker; `image_size` is the double's own)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    marks = sorted(set(checkpoints or [])) or [frames]
    if marks[-1] > frames:
        raise ValueError(f"checkpoint {marks[-1]} is beyond --frames {frames}")
    _, boxes = moving_shapes_frame(0, width, height)
    ids = sorted(boxes)[:objects]
    tracker: Tracker | None = None
    if engine == "scripted":
        from sam2long_stream.testing.engine_double import SIZE, ScriptedEngine
    config = NodeConfig.one_stream(
        f"synthetic://moving-shapes?width={width}&height={height}&realtime=0&frames={frames}",
        tracker=TrackerConfig(image_size=image_size, num_pathways=pathways),
        prompts={i: Prompt(box=tuple(float(v) for v in boxes[i])) for i in ids},
        pub="tcp://127.0.0.1:*",
        control=None,
        policy="all",
        stream_id="soak",
        hwm=1000,
        torch_threads=threads,
    )
    if engine == "scripted":  # views not recorded: that list would grow for the whole run
        tracker = Tracker(config.tracker, engine=ScriptedEngine(record_views=False))
    report = SoakReport(
        frames=frames,
        image_size=SIZE if engine == "scripted" else image_size,  # the config's is unused
        frame_size=f"{width}x{height}",
        engine=engine,
        pathways=pathways,
        objects=len(ids),
    )
    counter = _ErrorCounter()
    package_log = logging.getLogger("sam2long_stream")
    package_log.addHandler(counter)
    node = Node(config, tracker=tracker)
    receiver = _Receiver(node.endpoint, ids, frames).start()
    try:
        if not node.wait_for_subscribers(10.0):
            raise RuntimeError("the subscriber did not reach the node within 10 s")
        if not node.wait_for_subscribers(10.0, "status/soak"):
            raise RuntimeError("the status subscription did not reach the node within 10 s")
        t0 = time.monotonic()
        node.start()
        pending = list(marks)
        last_print = t0
        while pending:
            done = node.join(0.05)
            processed = node.status()["frames_processed"]
            report.peak_rss_mib = max(report.peak_rss_mib, round(_rss_mib(), 1))
            while pending and (processed >= pending[0] or done):
                elapsed = time.monotonic() - t0
                cp = Checkpoint(
                    target=pending[0],
                    frames=processed,
                    rss_mib=round(_rss_mib(), 1),
                    elapsed_s=round(elapsed, 1),
                    fps=round(processed / elapsed, 3) if elapsed > 0 else None,
                )
                report.checkpoints.append(cp)
                pending.pop(0)
                if progress:
                    print(f"  checkpoint {cp}", file=sys.stderr, flush=True)
            if done:
                break
            if progress and time.monotonic() - last_print > 60:
                last_print = time.monotonic()
                print(
                    f"  {processed} frames, RSS {_rss_mib():.1f} MiB", file=sys.stderr, flush=True
                )
        node.join()
        report.elapsed_s = round(time.monotonic() - t0, 1)
        receiver.stopped.wait(10.0)  # the node's last message: everything before it is in
        summary = node.summary()
    finally:
        node.stop()
        node.join(30)
        receiver.close()
        package_log.removeHandler(counter)
    report.frames_processed = summary["frames_processed"]
    report.failed_frames = summary["failed_frames"]
    report.dropped_messages = summary["dropped_messages"]
    report.fps = summary["fps"]
    report.received = receiver.received
    # policy "all": every frame the tracker handled was published with seq 0, 1, 2, ...
    published = min(report.frames_processed + report.failed_frames, frames)
    report.first_lost = [i for i in range(published) if not receiver.seen[i]][:10]
    report.lost = max(0, report.frames_processed - receiver.received)
    report.bad_messages = receiver.sub.bad_messages + receiver.out_of_range
    report.wrong_objects = receiver.wrong_objects
    report.error_logs = counter.count
    report.node_error = (
        f"{type(node.error).__name__}: {node.error}" if node.error is not None else receiver.error
    )
    report.errors = (
        report.failed_frames
        + report.bad_messages
        + report.wrong_objects
        + report.error_logs
        + (1 if report.node_error else 0)
        + (1 if report.frames_processed + report.failed_frames < frames else 0)
    )
    if len(report.checkpoints) >= 2 and report.checkpoints[0].rss_mib > 0:
        report.memory_ratio = round(
            report.checkpoints[-1].rss_mib / report.checkpoints[0].rss_mib, 4
        )
    return report


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,N,...: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"checkpoints must be >= 1: {text!r}")
    return values


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    return w, h


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames to stream (1e5)")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="sam2",
        help="sam2: the model (random weights); scripted: the engine double, no network (sam2)",
    )
    parser.add_argument(
        "--image-size", type=int, default=256, help="tracker image size, engine sam2 (256)"
    )
    parser.add_argument("--pathways", type=int, default=3, help="pathways per object (3)")
    parser.add_argument(
        "--checkpoints",
        type=_ints,
        default=None,
        help="frame counts to report RSS at (default 1000,10000,100000, capped at --frames)",
    )
    parser.add_argument("--frame-size", type=_size, default=(256, 256), help="WxH (256x256)")
    parser.add_argument("--objects", type=int, default=2, help="objects prompted (1..3; 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--max-ratio", type=float, default=None, help="fail above this ratio")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="soak: %(levelname)s %(name)s: %(message)s")
    checkpoints = args.checkpoints or [c for c in (1000, 10_000, 100_000) if c <= args.frames]
    report = soak(
        args.frames,
        image_size=args.image_size,
        pathways=args.pathways,
        checkpoints=checkpoints or [args.frames],
        width=args.frame_size[0],
        height=args.frame_size[1],
        objects=args.objects,
        threads=args.threads,
        progress=True,
        engine=args.engine,
    )
    print("\n".join(report.lines()), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(report), indent=2) + "\n")
    ok = report.lost == 0 and report.errors == 0
    if args.max_ratio is not None and report.memory_ratio is not None:
        ok = ok and report.memory_ratio <= args.max_ratio
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
