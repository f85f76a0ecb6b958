"""What every part of the node shares: its state, and the status topic they publish on.

The `Node` is built in layers, each a module of one idea on top of the one before:
`base` (this: shared state, status messages), `snapshots` (status, summary, health and
metric snapshots, from any thread), `membership` (adding, starting and ending streams),
`execution` (control commands, applied by the loop) and `loop` (the `Node`: its
lifecycle and the tick). `Node.__init__` sets every attribute declared here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import zmq

from sam2long_stream.health import NodeMetrics
from sam2long_stream.node.commands import Command
from sam2long_stream.node.sockets import Sockets
from sam2long_stream.node.stats import StreamSummary, TickStats
from sam2long_stream.node.stream import Stream
from sam2long_stream.redact import redact_text
from sam2long_stream.settings import NodeConfig
from sam2long_stream.tracker import StepResult
from sam2long_stream.transport import Publisher

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker

log = logging.getLogger("sam2long_stream.node.loop")  # the node's one log, as before the split


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = redact_text(text if len(text) <= 300 else text[:297] + "...")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NodeBase:
    """The node's shared state (see `loop` for the threads that touch it)."""

    config: NodeConfig
    device: str
    metrics: NodeMetrics
    _lock: threading.Lock  # guards _streams membership, _phase, _ticks, ...
    _wake: threading.Event  # a frame, an event or a command arrived
    _stop: threading.Event
    _commands: queue.Queue[Command]
    _streams: dict[str, Stream]
    _reserved: set[str]  # ids of streams being added (control thread)
    _removing: set[str]  # ids of streams being removed
    _removed: list[StreamSummary]  # the final summaries of removed streams (bounded)
    _removed_untold: int  # removed streams beyond that bound
    _ticks: TickStats
    _phase: str
    _accepting: bool
    _fatal: str | None
    _started_t: float | None
    _tracker: Tracker | None
    _sockets: Sockets
    _publisher: Publisher  # the loop's alone

    @property
    def page_sockets(self) -> tuple[str, str | None, bool]:
        """What a browser page needs to find the node: PUB, control, CurveZMQ on."""
        sockets = self._sockets
        return sockets.endpoint, sockets.control_endpoint, self.config.curve_secret is not None

    def _loop_streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams.values())

    def _may_fail_fast(self, s: Stream) -> bool:
        with self._lock:
            alone = len(self._streams) == 1
        return self.config.fail_fast and alone and s.initial

    # -- status messages (loop thread) ------------------------------------------------

    def _publish_status(self, s: Stream, state: str, **fields: Any) -> None:
        """Publish on the stream's status topic; an "error" also becomes the stream's
        ``last_error``, so `status` never shows an error state without its reason."""
        if state == "error":
            s.set_last_error(str(fields.get("error") or "error"))
        if self._publisher is None:
            return
        try:
            self._publisher.publish_status(state, stream_id=s.id, **fields)
        except (ValueError, TypeError, zmq.ZMQError) as exc:
            with s.lock:
                s.stats.publish_errors += 1
            log.error("stream %s: status %s not published: %s", s.id, state, one_line(exc))

    def _periodic_status(self) -> None:
        now = time.monotonic()
        for s in self._loop_streams():
            if not s.finished and s.started and now >= s.next_status:
                self._publish_periodic(s)
                s.next_status = now + self.config.status_interval_s

    def _publish_periodic(self, s: Stream, **extra: Any) -> None:
        st = self._stream_status(s)
        if st["state"] == "unhealthy":
            state = "unhealthy"
            extra.setdefault("error", st["last_error"])
        elif not s.ever_frame or not s.source_up:
            state = "waiting"
        else:
            state = "running"
        fields = {
            k: st[k]
            for k in (
                "width",
                "height",
                "fps",
                "latency_ms",
                "dropped_frames",
                "frames_processed",
                "failed_frames",
                "publish_errors",
                "objects",
                "num_pathways",
                "source_state",
                "decode_path",
                "device",
                "timings_ms",
            )
        }
        fields.update(extra)
        fields["zones"] = s.tracks.zone_names()
        self._publish_status(s, state, **fields)

    def _publish_lagged(self, s: Stream, lagged: StepResult) -> None:
        meta = s.meta.get(lagged.frame_index)
        if meta is None:  # a frame of an earlier run this tracker saw: not ours
            return
        assert self._publisher is not None
        self._publisher.publish_masks(
            lagged,
            meta,
            dropped_frames=s.queue.dropped,
            lag=s.tracker.config.lag,
            stream_id=s.id,
        )

    def _stream_status(self, s: Stream) -> dict[str, Any]:
        return s.status(self.device).as_dict()
