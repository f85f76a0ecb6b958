"""One camera of a node: its source, frame queue, tracker, prompts, counters and overlay.

Ownership: the source's threads only call `on_frame`/`on_event` (queue, event deque,
decode clock). The loop owns everything else; the fields the control thread and
`status()` read (state, source state, last error, objects, the object ledger, pending
num_pathways, held prompt count, counters) live behind `lock`.

The object ledger is the set of ids that exist or are on their way (tracked, or prompted
and not yet refused) minus those whose removal is recorded: the control thread checks
and updates it at once when it accepts add_object/remove_object/reset, so a request's
reply never waits for a frame to know whether an id is free; the loop applies the
recorded change between frames, in the order the requests came.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sam2long_stream import security
from sam2long_stream.events import StreamEvents
from sam2long_stream.node.commands import Command
from sam2long_stream.node.stats import (
    StreamStats,
    StreamStatus,
    StreamSummary,
    percentile,
    rounded,
    stream_summary,
)
from sam2long_stream.overlay import OverlayWriter
from sam2long_stream.redact import redact_text, redact_url
from sam2long_stream.settings import NodeConfig, StreamConfig
from sam2long_stream.sources import Frame, FrameQueue, SourceEvent, open_source

if TYPE_CHECKING:
    from sam2long_stream.tracker.results import StepResult
    from sam2long_stream.tracker.tracker import Tracker

log = logging.getLogger(__name__)

# Stream states (the status topic's "state" for the stream's periodic messages).
LIVE_STATES = ("waiting", "running", "unhealthy")


def _plain(value: Any) -> Any:
    """Event details as plain JSON values (anything else becomes its str), with any
    source URL in them redacted."""
    if value is None or isinstance(value, bool | int | float | str):
        return redact_text(value) if isinstance(value, str) else value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return redact_text(str(value))


def source_options(config: StreamConfig, node: NodeConfig | None = None) -> dict[str, Any]:
    """The `open_source` options of a stream: its own, hwaccel, and the RTSP transport,
    the file pacing or the WHIP listener's TLS (the node's) where they apply."""
    options = dict(config.source_options)
    if config.hwaccel != "none":
        options["hwaccel"] = config.hwaccel
    url = config.source.strip()
    scheme = urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("rtsp", "rtsps"):
        options.setdefault("transport", config.rtsp_transport)
    elif scheme in ("", "file"):
        options.setdefault("realtime", config.realtime)
    elif scheme == "whip" and node is not None and node.tls_cert is not None:
        options.setdefault("tls_cert", node.tls_cert)
        options.setdefault("tls_key", node.tls_key)
    return options


class Stream:
    """One stream of a node (see the module docstring). Building it opens the source
    (not started) and the overlay writer; ValueError/OSError for a bad one."""

    def __init__(
        self,
        config: StreamConfig,
        tracker: Tracker,
        wake: threading.Event,
        *,
        initial: bool = False,
        node: NodeConfig | None = None,
    ) -> None:
        self.config = config
        self.initial = initial  # configured at start (not added over the control socket)
        self.id = config.stream_id
        self.name = redact_url(config.source)  # what the node shows of the source
        listener = security.source_listener(config.source)
        if listener is not None and node is not None:  # a whip:// stream added at run time
            security.check_bind("WHIP listener", *listener, node.allow_remote)
        self.source = open_source(config.source, **source_options(config, node))
        probe = getattr(self.source, "probe", None)
        if callable(probe):  # a file: refused now if it could only fail once started
            probe()
        live = config.policy == "latest"
        self.queue = FrameQueue(config.policy, config.jitter_frames if live else None)
        self.tracker = tracker
        self._wake = wake
        self.events: collections.deque[SourceEvent] = collections.deque()
        # track events (new, lost, found, end, zones): node/events.py publishes them
        self.tracks = StreamEvents(self.id, config.lost_after, config.zones)
        self._decode_clock: dict[int, int] = {}
        self.overlay: OverlayWriter | None = None
        if config.overlay_out or config.overlay_png:
            self.overlay = OverlayWriter(config.overlay_out, config.overlay_png)
        self.lock = threading.Lock()
        # -- behind `lock`
        self.stats = StreamStats()
        self._state = "created"
        self._source_state = "starting"
        self._last_error: str | None = None
        self._pending_pathways: int | None = None
        self._tracked: list[int] = []
        self._pathways: dict[str, int] = {}
        self._ledger: set[int] = set(config.prompts)
        self._held_count = 0
        self._num_pathways = tracker.config.num_pathways
        self._lag = tracker.config.lag
        self._started_t: float | None = None
        # -- loop thread only
        self.held: list[Command] = []
        self.meta: dict[int, Frame] = {}  # tracker frame index -> frame (lagged output)
        self.ever_frame = False
        self.ever_connected = False
        self.source_up = False
        self.eos = False
        self.started = False
        self.finished = False  # source stopped, final status published
        self.last_served = -1  # the tick that last stepped this stream
        self.next_status = 0.0
        for oid, prompt in config.prompts.items():
            self.held.append(Command(None, self.id, prompt=prompt, object_id=oid))
        self.sync_held()

    # -- source threads ---------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        now = time.thread_time_ns()
        ident = threading.get_ident()
        last = self._decode_clock.get(ident)
        if last is None and len(self._decode_clock) >= 64:  # short-lived decoder threads
            self._decode_clock.clear()
        self._decode_clock[ident] = now
        if last is not None:
            with self.lock:
                self.stats.decode_s += (now - last) / 1e9
                self.stats.decoded += 1
        self.queue.put(frame)
        self._wake.set()

    def on_event(self, event: SourceEvent) -> None:
        self.events.append(event)
        self._wake.set()

    # -- loop thread ------------------------------------------------------------------

    def attach_page(self, pub: str, control: str | None, curve: bool) -> None:
        """A whip:// source serves the browser page (web/): a client of the node's PUB
        and control sockets like any other, told where they are."""
        if hasattr(self.source, "attach_page"):
            from sam2long_stream.web import PageConfig

            self.source.attach_page(PageConfig(pub, control, self.id, curve=curve))

    def start(self) -> None:
        with self.lock:
            self._state = "waiting"
            self._started_t = time.monotonic()
        self.started = True
        self.source.start(self.on_frame, self.on_event)

    @property
    def ended(self) -> bool:
        """Nothing more will come: the source ended and its queue is empty."""
        return self.finished or (self.eos and len(self.queue) == 0)

    def take_events(self) -> list[tuple[SourceEvent, dict[str, Any]]]:
        """The source's pending events, with their effect on the stream applied (source
        state, counters) and their detail made plain JSON for the status topic."""
        out = []
        while self.events:
            ev = self.events.popleft()
            detail = {k: _plain(v) for k, v in ev.detail.items()}
            if "message" in detail:
                detail["error"] = str(detail.pop("message"))
            for reserved in ("schema", "type", "stream_id", "state", "time_ns"):
                detail.pop(reserved, None)
            if ev.kind in ("connected", "disconnected", "reconnecting", "error"):
                self.set_source_state(ev.kind)
            if ev.kind == "error":  # status says why, as long as it matters
                self.set_last_error(str(detail.get("error") or "source error"))
            if ev.kind == "connected":
                if self.ever_connected:
                    with self.lock:
                        self.stats.reconnects += 1
                self.source_up = self.ever_connected = True
            elif ev.kind in ("disconnected", "error"):
                if ev.kind == "disconnected":
                    with self.lock:
                        self.stats.source_disconnects += 1
                self.source_up = False
            elif ev.kind == "resolution":
                with self.lock:
                    previous = (self.stats.width, self.stats.height)
                size = (detail.get("width"), detail.get("height"))
                if previous[0] is not None and previous != size:
                    detail.setdefault("previous_width", previous[0])
                    detail.setdefault("previous_height", previous[1])
            elif ev.kind == "eos":
                self.eos = True
            out.append((ev, detail))
        return out

    def begin_frame(self, frame: Frame) -> None:
        """A frame is about to be tracked: keep it for lagged output, note its size."""
        self.ever_frame = True
        self.source_up = True
        index = self.tracker.frame_index
        self.meta[index] = frame
        for old in [i for i in self.meta if i < index - self.tracker.config.lag - 1]:
            del self.meta[old]
        width, height = frame.width, frame.height
        with self.lock:
            st = self.stats
            st.last_taken_t = time.monotonic()
            changed = st.width is not None and (width, height) != (st.width, st.height)
            if changed:
                st.resolution_changes += 1
                previous = (st.width, st.height)
        if changed:
            log.info(
                "stream %s: frame size changed from %dx%d to %dx%d at seq %d: objects kept, "
                "masks now at the new size",
                self.id,
                *previous,
                width,
                height,
                frame.seq,
            )

    def write_overlay(self, frame: Frame, masks: Mapping[int, Any]) -> float:
        """Draw the masks over the frame into the overlay video (if any); seconds spent.
        A failing writer is dropped (logged), the stream goes on."""
        if self.overlay is None:
            return 0.0
        t0 = time.perf_counter()
        try:
            self.overlay.write(frame.rgb, masks, frame.capture_time_ns / 1e9)
            frames = self.overlay.frames
        except Exception as exc:
            log.error("stream %s: overlay disabled: %s", self.id, redact_text(str(exc)))
            self.overlay = None
            return time.perf_counter() - t0
        with self.lock:
            self.stats.overlay_frames = frames
        return time.perf_counter() - t0

    def record_frame(
        self,
        frame: Frame,
        live: StepResult,
        *,
        queued_s: float,
        latency_ms: float,
        times: tuple[float, float, float],
        publish_failed: bool,
        dropped_messages: int,
        unhealthy_after: int,
    ) -> bool:
        """Count a tracked and published frame; True when it ends a run of failures
        long enough to have made the stream unhealthy."""
        track_s, publish_s, overlay_s = times
        switches = sum(1 for sc in live.scores.values() if sc.pathway_switched)
        now = time.monotonic()
        with self.lock:
            st = self.stats
            recovered = st.consecutive_failures >= unhealthy_after
            st.frames += 1
            st.processed += 1
            st.consecutive_failures = 0
            st.publish_errors += int(publish_failed)
            st.dropped_messages = dropped_messages
            st.sums["queue"] += queued_s
            st.sums["track"] += track_s
            st.sums["publish"] += publish_s
            st.sums["overlay"] += overlay_s
            st.latency_ms.append(latency_ms)
            st.recent_latency_ms.append(latency_ms)
            st.frame_times.append(now)
            st.first_frame_t = st.first_frame_t or now
            st.last_frame_t = now
            st.width, st.height = frame.width, frame.height
            st.pathway_switches += switches
            self._state = "running"
        return recovered

    def record_failure(self, spent_s: float, unhealthy_after: int) -> int:
        """Count a frame the tracker failed on; the failures in a row so far (the stream
        is "unhealthy" from `unhealthy_after` on)."""
        with self.lock:
            st = self.stats
            st.frames += 1
            st.failed += 1
            st.consecutive_failures += 1
            st.sums["track"] += spent_s
            if st.consecutive_failures >= unhealthy_after:
                self._state = "unhealthy"
            return st.consecutive_failures

    def set_state(self, state: str) -> None:
        with self.lock:
            self._state = state

    @property
    def state(self) -> str:
        with self.lock:
            return self._state

    def set_source_state(self, state: str) -> None:
        with self.lock:
            self._source_state = state

    def set_last_error(self, error: str) -> None:
        with self.lock:
            self._last_error = error

    def sync_held(self) -> None:
        """Publish the held prompt count for `status` (after the loop changed `held`)."""
        with self.lock:
            self._held_count = len(self.held)

    def apply_pending_pathways(self) -> int | None:
        """With a prompt about to be applied: take up a recorded num_pathways."""
        with self.lock:
            p, self._pending_pathways = self._pending_pathways, None
        if p is not None:
            self.tracker.set_num_pathways(p)
            with self.lock:
                self._num_pathways = p
        return p

    def tracked_changed(self, ids: list[int], pathways: dict[str, int] | None = None) -> None:
        with self.lock:
            self._tracked = list(ids)
            self._pathways = (
                dict(pathways)
                if pathways is not None
                else {k: v for k, v in self._pathways.items() if int(k) in ids}
            )

    def forget(self, object_id: int) -> None:
        """An add that came to nothing (refused, failed, cancelled): drop its ledger entry
        unless the object is tracked or another prompt for it is on its way."""
        if object_id in self.tracker.object_ids or any(c.object_id == object_id for c in self.held):
            return
        with self.lock:
            self._ledger.discard(object_id)

    # -- control thread ---------------------------------------------------------------

    def claim(self, object_id: int | None, max_objects: int) -> int:
        """Check an add_object against the ledger and record its id (picking the smallest
        free one when None). ValueError when the stream is full."""
        with self.lock:
            ids = self._ledger
            if object_id is None:
                object_id = next(i for i in range(1, len(ids) + 2) if i not in ids)
            if object_id not in ids and len(ids) >= max_objects:
                raise ValueError(
                    f"stream {self.id} tracks at most {max_objects} objects (counting "
                    "prompts waiting for a frame); remove one first"
                )
            ids.add(object_id)
            return object_id

    def frame_size(self) -> tuple[int, int] | None:
        with self.lock:
            h, w = self.stats.height, self.stats.width
        return None if h is None or w is None else (h, w)

    def record_remove(self, object_id: int) -> None:
        with self.lock:
            if object_id not in self._ledger:
                known = sorted(self._ledger)
                raise ValueError(f"unknown object id {object_id}; known: {known}")
            self._ledger.discard(object_id)

    def record_reset(self) -> list[int]:
        """Forget every object in the ledger; returns the tracked ones it removes."""
        with self.lock:
            removed = sorted(set(self._tracked) & self._ledger)
            self._ledger.clear()
            return removed

    def record_pathways(self, num_pathways: int) -> None:
        with self.lock:
            self._pending_pathways = num_pathways

    # -- snapshots (any thread) -------------------------------------------------------

    def frames_taken(self) -> int:
        with self.lock:
            return self.stats.frames

    def status(self, device: str) -> StreamStatus:
        with self.lock:
            st = self.stats
            recent = list(st.recent_latency_ms)
            return StreamStatus(
                state=self._state,
                stream_id=self.id,
                source=self.name,
                source_state=self._source_state,
                decode_path=getattr(self.source, "decode_path", None),
                device=device,
                width=st.width,
                height=st.height,
                frames=st.frames,
                frames_processed=st.processed,
                failed_frames=st.failed,
                consecutive_failures=st.consecutive_failures,
                last_error=self._last_error,
                fps=rounded(st.recent_fps()),
                latency_ms=rounded(percentile(recent, 50), 1),
                latency_p95_ms=rounded(percentile(recent, 95), 1),
                dropped_frames=self.queue.dropped,
                dropped_messages=st.dropped_messages,
                publish_errors=st.publish_errors,
                reconnects=st.reconnects,
                source_disconnects=st.source_disconnects,
                resolution_changes=st.resolution_changes,
                pathway_switches=st.pathway_switches,
                objects=[i for i in self._tracked if i in self._ledger],
                pathways={k: v for k, v in self._pathways.items() if int(k) in self._ledger},
                num_pathways=self._num_pathways,
                pending_num_pathways=self._pending_pathways,
                lag=self._lag,
                held_prompts=self._held_count,
                uptime_s=rounded(
                    None if self._started_t is None else time.monotonic() - self._started_t, 1
                ),
                timings_ms=st.timings(),
            )

    def summary(self) -> StreamSummary:
        with self.lock:
            return stream_summary(self.id, self.stats, self.queue.dropped)

    def health(self, now: float, grace_s: float, stopping: bool) -> tuple[bool, dict[str, Any]]:
        """(healthy, body) of this stream: see `Node.health`."""
        with self.lock:
            state = self._state
            last_frame = self.stats.last_taken_t
            failures = self.stats.consecutive_failures
            started = self._started_t
            source_state = self._source_state
            last_error = self._last_error
        if stopping and state in LIVE_STATES:
            state = "stopping"
        reasons: list[str] = []
        if state not in LIVE_STATES:
            reasons.append(f"the stream is {state}")
        elif state == "unhealthy":
            reasons.append(f"the tracker failed on the last {failures} frames ({last_error})")
        since = last_frame if last_frame is not None else started
        idle = None if since is None else now - since
        if idle is not None and idle > grace_s and state in (*LIVE_STATES, "stopping"):
            what = "no frame yet" if last_frame is None else "no frame"
            reasons.append(f"{what} for {idle:.0f} s (> {grace_s:g} s; source {source_state})")
        body: dict[str, Any] = {
            "status": "ok" if not reasons else "unhealthy",
            "state": state,
            "stream_id": self.id,
            "source_state": source_state,
            "seconds_since_frame": None if idle is None else round(idle, 1),
            "consecutive_failures": failures,
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body
