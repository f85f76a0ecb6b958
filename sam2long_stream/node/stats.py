"""Counters and timings of a node's streams and of its ticks.

Written by the loop (and, for decode time, by a source's thread) under the owner's lock;
read by `status()`/`summary()` as frozen snapshots taken under that lock, which become
dicts only at the wire edge (`as_dict`).

Timing, per processed frame: ``queue`` (frame age when the loop takes it), ``track``
(the stream's share of the tick's tracker call), ``publish`` (encode and send the
masks), ``overlay`` (optional video). ``decode`` is the CPU time the source's delivering
thread spends between two frames (demux, H.264 decode and RGB conversion for RTSP; for
WebRTC, aiortc decodes on a thread of its own, so only the RGB conversion is seen).
Node overhead = (total decode CPU + total publish time) / total tracker time.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PHASES = ("queue", "track", "publish", "overlay")


def percentile(values: Iterable[float], q: float) -> float | None:
    vals = list(values)
    return float(np.percentile(vals, q)) if vals else None


def rounded(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


class StreamStats:
    """One stream's counters (mutable; the stream's lock guards it)."""

    def __init__(self) -> None:
        self.frames = 0  # frames taken from the queue
        self.processed = 0  # tracked and published
        self.failed = 0  # tracker raised
        self.consecutive_failures = 0
        self.publish_errors = 0  # masks or status messages that could not be sent
        self.sums = dict.fromkeys(PHASES, 0.0)
        self.decode_s = 0.0
        self.decoded = 0  # frames whose decode CPU was measured
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=20_000)
        self.recent_latency_ms: collections.deque[float] = collections.deque(maxlen=30)
        self.frame_times: collections.deque[float] = collections.deque(maxlen=32)
        self.first_frame_t: float | None = None
        self.last_frame_t: float | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.last_taken_t: float | None = None  # monotonic: the last frame taken (any outcome)
        self.reconnects = 0  # "connected" events after the first
        self.source_disconnects = 0
        self.resolution_changes = 0
        self.pathway_switches = 0  # summed over objects
        self.overlay_frames = 0
        self.dropped_messages = 0  # the publisher's count for this stream (loop copies it)

    def timings(self) -> Timings:
        n = max(1, self.processed + self.failed)
        ms = {k: round(1000 * v / n, 2) for k, v in self.sums.items()}
        track = self.sums["track"]
        return Timings(
            decode=round(1000 * self.decode_s / self.decoded, 2) if self.decoded else None,
            overhead=round((self.decode_s + self.sums["publish"]) / track, 4) if track else None,
            **ms,
        )

    def recent_fps(self) -> float | None:
        times = self.frame_times
        if len(times) >= 2 and times[-1] > times[0]:
            return (len(times) - 1) / (times[-1] - times[0])
        return None


@dataclass(frozen=True)
class Timings:
    """Mean milliseconds per frame of each phase, decode CPU, and the overhead ratio."""

    queue: float
    track: float
    publish: float
    overlay: float
    decode: float | None
    overhead: float | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StreamStatus:
    """A stream's state as `status` reports it (the field names are the wire's)."""

    state: str
    stream_id: str
    source: str  # redacted
    source_state: str
    decode_path: str | None  # "software", the hardware device decoding, or None (not yet)
    device: str  # the tracker's torch device ("cpu", "cuda:0", ...)
    width: int | None
    height: int | None
    frames: int
    frames_processed: int
    failed_frames: int
    consecutive_failures: int
    last_error: str | None
    fps: float | None
    latency_ms: float | None
    latency_p95_ms: float | None
    dropped_frames: int
    dropped_messages: int
    publish_errors: int
    reconnects: int
    source_disconnects: int
    resolution_changes: int
    pathway_switches: int
    objects: list[int]
    pathways: dict[str, int]
    num_pathways: int
    pending_num_pathways: int | None
    lag: int
    held_prompts: int
    uptime_s: float | None
    timings_ms: Timings

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["objects"] = list(self.objects)
        out["pathways"] = dict(self.pathways)
        out["timings_ms"] = self.timings_ms.as_dict()
        return out


@dataclass(frozen=True)
class StreamSummary:
    """A stream's totals for the run so far."""

    stream_id: str
    frames: int
    frames_processed: int
    failed_frames: int
    dropped_frames: int
    dropped_messages: int
    publish_errors: int
    fps: float | None
    latency_ms: float | None
    latency_p95_ms: float | None
    decoded_frames: int
    decode_s: float
    track_s: float
    publish_s: float
    overlay_s: float
    timings_ms: Timings
    node_overhead: float | None
    overlay_frames: int
    removed: bool = False  # removed over the control socket before the node stopped
    # for the node's totals, not on the wire
    latencies: tuple[float, ...] = field(default=(), repr=False)
    span: tuple[float, float] | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("latencies", "span")
        }
        out["timings_ms"] = self.timings_ms.as_dict()
        return out


def stream_summary(stream_id: str, st: StreamStats, dropped_frames: int) -> StreamSummary:
    """Totals of one stream (call under its lock)."""
    span = (
        (st.first_frame_t, st.last_frame_t)
        if st.first_frame_t is not None and st.last_frame_t is not None
        else None
    )
    seconds = span[1] - span[0] if span else 0.0
    fps = (st.processed - 1) / seconds if seconds > 0 and st.processed > 1 else None
    lat = tuple(st.latency_ms)
    timings = st.timings()
    return StreamSummary(
        stream_id=stream_id,
        frames=st.frames,
        frames_processed=st.processed,
        failed_frames=st.failed,
        dropped_frames=dropped_frames,
        dropped_messages=st.dropped_messages,
        publish_errors=st.publish_errors,
        fps=rounded(fps),
        latency_ms=rounded(percentile(lat, 50), 1),
        latency_p95_ms=rounded(percentile(lat, 95), 1),
        decoded_frames=st.decoded,
        decode_s=round(st.decode_s, 4),
        track_s=round(st.sums["track"], 4),
        publish_s=round(st.sums["publish"], 4),
        overlay_s=round(st.sums["overlay"], 4),
        timings_ms=timings,
        node_overhead=timings.overhead,
        overlay_frames=st.overlay_frames,
        latencies=lat,
        span=span,
    )


class TickStats:
    """The loop's ticks: how many frames each tracker call took, and how long it ran
    (the node's lock guards it)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.frames = 0  # frames stepped, over all ticks
        self.max_batch = 0
        self.fallbacks = 0  # ticks whose batched call failed and went stream by stream
        self.recent_s: collections.deque[float] = collections.deque(maxlen=64)

    def record(self, size: int, seconds: float, fell_back: bool) -> None:
        self.ticks += 1
        self.frames += size
        self.max_batch = max(self.max_batch, size)
        self.fallbacks += int(fell_back)
        self.recent_s.append(seconds)

    def recent_p95_s(self) -> float | None:
        return percentile(self.recent_s, 95)

    def as_dict(self) -> dict[str, Any]:
        p95 = self.recent_p95_s()
        return {
            "ticks": self.ticks,
            "mean_batch": round(self.frames / self.ticks, 2) if self.ticks else None,
            "max_batch": self.max_batch,
            "fallbacks": self.fallbacks,
            "tick_p95_ms": None if p95 is None else round(1000 * p95, 1),
        }


def node_summary(
    streams: Sequence[StreamSummary], ticks: Mapping[str, Any], device: str
) -> dict[str, Any]:
    """The node's totals over its streams (with one stream: that stream's figures),
    plus ``streams`` (each stream's summary) and ``batching`` (the ticks)."""
    lat = [v for s in streams for v in s.latencies]
    spans = [s.span for s in streams if s.span is not None]
    processed = sum(s.frames_processed for s in streams)
    seconds = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else 0.0
    fps = (processed - 1) / seconds if seconds > 0 and processed > 1 else None
    decoded = sum(s.decoded_frames for s in streams)
    sums = {k: sum(getattr(s, f"{k}_s") for s in streams) for k in ("decode", "track", "publish")}
    overlay_s = sum(s.overlay_s for s in streams)
    n = max(1, sum(s.frames_processed + s.failed_frames for s in streams))
    queue_ms = sum(
        s.timings_ms.queue * max(1, s.frames_processed + s.failed_frames) for s in streams
    )
    timings = Timings(
        queue=round(queue_ms / n, 2) if streams else 0.0,
        track=round(1000 * sums["track"] / n, 2),
        publish=round(1000 * sums["publish"] / n, 2),
        overlay=round(1000 * overlay_s / n, 2),
        decode=round(1000 * sums["decode"] / decoded, 2) if decoded else None,
        overhead=(
            round((sums["decode"] + sums["publish"]) / sums["track"], 4) if sums["track"] else None
        ),
    )
    out: dict[str, Any] = {
        "stream_id": streams[0].stream_id if len(streams) == 1 else None,
        "frames": sum(s.frames for s in streams),
        "frames_processed": processed,
        "failed_frames": sum(s.failed_frames for s in streams),
        "dropped_frames": sum(s.dropped_frames for s in streams),
        "dropped_messages": sum(s.dropped_messages for s in streams),
        "publish_errors": sum(s.publish_errors for s in streams),
        "fps": rounded(fps),
        "latency_ms": rounded(percentile(lat, 50), 1),
        "latency_p95_ms": rounded(percentile(lat, 95), 1),
        "decoded_frames": decoded,
        "decode_s": round(sums["decode"], 4),
        "track_s": round(sums["track"], 4),
        "publish_s": round(sums["publish"], 4),
        "overlay_s": round(overlay_s, 4),
        "timings_ms": timings.as_dict(),
        "node_overhead": timings.overhead,
        "overlay_frames": sum(s.overlay_frames for s in streams),
        "device": device,
        "batching": dict(ticks),
        "streams": _by_id(streams),
    }
    return out


def _by_id(streams: Sequence[StreamSummary]) -> dict[str, dict[str, Any]]:
    """Each stream's summary by id; a removed stream under ``"<id> (removed)"`` (a second
    one of that id ``"<id> (removed #2)"``, ...), so an id added again keeps both."""
    out: dict[str, dict[str, Any]] = {}
    for s in sorted(streams, key=lambda s: not s.removed):  # removed ones came first
        key = s.stream_id
        if s.removed:
            key = f"{s.stream_id} (removed)"
            n = 1
            while key in out:
                n += 1
                key = f"{s.stream_id} (removed #{n})"
        out[key] = s.as_dict()
    return out
