"""Snapshots of the node, from any thread: a stream's or the node's status, the run's
summary, ``/healthz`` and the per-stream figures behind ``/metrics``.

They read under the locks and never touch a tracker, so the control thread, the health
server and the caller may ask at any time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sam2long_stream.limits import quote
from sam2long_stream.node.base import NodeBase
from sam2long_stream.node.stats import node_summary
from sam2long_stream.node.stream import LIVE_STATES, Stream


class Snapshots(NodeBase):
    """The node's snapshots (see the module docstring)."""

    @property
    def stream_ids(self) -> list[str]:
        with self._lock:
            return [sid for sid in self._streams if sid not in self._removing]

    def streams(self) -> list[Stream]:
        """The current streams (a copy of the list; each is safe to snapshot)."""
        with self._lock:
            return [s for sid, s in self._streams.items() if sid not in self._removing]

    @property
    def state(self) -> str:
        """created, waiting, running, unhealthy, stopping, stopped or error. While the
        loop runs: "running" when some stream runs, else "unhealthy" when some stream's
        tracker fails, else "waiting"."""
        with self._lock:
            phase = self._phase
            streams = list(self._streams.values())
        if phase != "running":
            return phase
        states = {s.state for s in streams}
        for state in ("running", "unhealthy"):
            if state in states:
                return state
        return "waiting"

    def find(self, stream_id: str | None) -> Stream:
        """The stream a request names, or the only one; ValueError otherwise."""
        with self._lock:
            ids = [sid for sid in self._streams if sid not in self._removing]
            if stream_id is None:
                if len(ids) == 1:
                    return self._streams[ids[0]]
                if not ids:
                    raise ValueError("the node has no streams; add one with add_stream")
                raise ValueError(
                    f'the node has {len(ids)} streams ({listed(ids)}): name one with "stream"'
                )
            if stream_id in self._removing:
                raise ValueError(
                    f"stream {stream_id!r} is being removed; its id is free once that is "
                    "done (retry in a moment)"
                )
            if stream_id not in ids:
                raise ValueError(f"unknown stream {quote(stream_id)}; streams: {listed(ids)}")
            return self._streams[stream_id]

    def status(self, stream_id: str | None = None) -> dict[str, Any]:
        """A stream's state, counters, timings and objects (the named one, or the only
        one); with several streams and no name, the node's: its state, device, batching
        and each stream's status under ``streams``. Thread-safe; ValueError for an
        unknown stream."""
        streams = self.streams()
        if stream_id is not None or len(streams) == 1:
            return self._stream_status(self.find(stream_id))
        with self._lock:
            ticks = self._ticks.as_dict()
        return {
            "state": self.state,
            "device": self.device,
            "stream_ids": [s.id for s in streams],
            "uptime_s": (
                None if self._started_t is None else round(time.monotonic() - self._started_t, 1)
            ),
            "batching": ticks,
            "streams": {s.id: self._stream_status(s) for s in streams},
        }

    def summary(self) -> dict[str, Any]:
        """Totals for the run so far: frames, fps, latency percentiles, timings and the
        node overhead ((decode CPU + publish) / tracker time), over every stream the
        node has (with one stream, that stream's own), each stream's under
        ``streams`` and the ticks' batching under ``batching``."""
        with self._lock:
            ticks = self._ticks.as_dict()
            removed = list(self._removed)
            untold = self._removed_untold
        summaries = removed + [s.summary() for s in self._loop_streams()]
        out = node_summary(summaries, ticks, self.device)
        if untold:
            out["removed_streams_not_listed"] = untold
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, a small JSON body) for ``/healthz``. A stream is healthy while it
        runs or waits for its first frame, its tracker is not failing frame after frame,
        and a frame came within ``health_grace_s`` (of the last frame, or of its start).
        With one stream the node is that stream; with several it is healthy while it
        runs and some stream is (a restart cannot fix one dead camera, and would cost
        the others their state), and ``streams`` tells each one."""
        now = time.monotonic()
        stopping = self._stop.is_set()
        state = self.state
        if stopping and state in LIVE_STATES:
            state = "stopping"
        streams = self.streams()
        checks = [(s, *s.health(now, self.config.health_grace_s, stopping)) for s in streams]
        node_reasons = [] if state in LIVE_STATES else [f"the node is {state}"]
        if len(checks) == 1:
            body = checks[0][2]
            reasons = node_reasons + [
                r for r in body.get("reasons", []) if not r.startswith("the stream is")
            ]
            body = {**body, "state": state, "status": "ok" if not reasons else "unhealthy"}
            body.pop("reasons", None)
            if reasons:
                body["reasons"] = reasons
            return not reasons, body
        reasons = list(node_reasons)
        if checks and not any(ok for _, ok, _ in checks):
            reasons.append("no stream is healthy")
        body = {
            "status": "ok" if not reasons else "unhealthy",
            "state": state,
            "streams": {s.id: b for s, _, b in checks},
            "healthy_streams": sum(1 for _, ok, _ in checks if ok),
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body

    def _metric_snapshots(self) -> list[tuple[dict[str, Any], bool]]:
        """Each stream's status and health, for /metrics."""
        now = time.monotonic()
        stopping = self._stop.is_set()
        out = []
        for s in self.streams():
            ok = s.health(now, self.config.health_grace_s, stopping)[0]
            out.append((self._stream_status(s), ok))
        return out


def listed(ids: list[str], most: int = 8) -> str:
    """Stream ids for an error message: at most `most` of them, then how many more."""
    if not ids:
        return "none"
    more = f" and {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(ids[:most]) + more


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few human lines (CLI and demo); one more line per stream when
    the node had several."""
    t = summary.get("timings_ms") or {}

    def ms(v: Any) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    overhead = summary.get("node_overhead")
    lines = [
        f"frames: {summary['frames_processed']} tracked, {summary['failed_frames']} failed, "
        f"{summary['dropped_frames']} dropped by the queue policy; "
        f"fps {summary['fps'] if summary['fps'] is not None else 'n/a'}",
        f"latency capture->publish: p50 {ms(summary['latency_ms'])}, "
        f"p95 {ms(summary['latency_p95_ms'])}; dropped messages {summary['dropped_messages']}, "
        f"publish errors {summary.get('publish_errors', 0)}",
        f"per frame: decode {ms(t.get('decode'))} (CPU, {summary['decoded_frames']} frames), "
        f"queue {ms(t.get('queue'))}, tracker {ms(t.get('track'))}, "
        f"publish {ms(t.get('publish'))}, overlay {ms(t.get('overlay'))}",
        "node overhead = (decode + publish) / tracker time = "
        + ("n/a" if overhead is None else f"{100 * overhead:.2f} %")
        + f" ({summary['decode_s']:.3f} s + {summary['publish_s']:.3f} s) / "
        f"{summary['track_s']:.3f} s",
    ]
    streams = summary.get("streams") or {}
    if len(streams) > 1:
        b = summary.get("batching") or {}
        lines.append(
            f"{len(streams)} streams on one model ({summary.get('device')}): "
            f"{b.get('ticks', 0)} ticks, {b.get('mean_batch') or 0} frames per tick on "
            f"average (max {b.get('max_batch', 0)})"
        )
        for sid, s in streams.items():  # a removed one's key says so: "cam5 (removed)"
            lines.append(
                f"  {sid}: {s['frames_processed']} tracked, {s['failed_frames']} failed, "
                f"{s['dropped_frames']} dropped; fps {s['fps'] if s['fps'] is not None else 'n/a'}"
                f"; latency p50 {ms(s['latency_ms'])}, p95 {ms(s['latency_p95_ms'])}"
            )
    return "\n".join(lines)
