"""The node: its streams, the loop that tracks them, and the sockets it serves.

Data flows one way::

    source threads --Frame--> one FrameQueue per stream --> the loop --> Publisher (PUB)
                                                              ^
    control server thread --Command queue --------------------'

Threads and what they own:

* The loop (the thread that calls `run()`) is the only one that touches the Trackers
  (not thread-safe), the Publisher (a ZeroMQ socket is not either), the streams' held
  prompts and the streams dict's membership. Each tick takes the next waiting frame of
  every stream that has one (policy "latest" keeps only the newest ``jitter_frames``,
  by default one; "all" keeps every frame; at most ``max_batch`` streams, the
  one served longest ago first, so none starves), waits at most ``max_wait_s`` for the
  other live streams once one frame is ready, and advances all of them with one
  `tracker.step_many` call; if that raises, it steps them one by one, so one
  stream's problem never costs the others their frame.
* Source threads only call `Stream.on_frame`/`on_event`.
* The control thread (node/control.py) answers at once what needs no tracker (status,
  set, remove_object, reset, remove_stream: recorded under the stream's lock, applied by
  the loop between frames) and waits, for a bound derived from recent tick times, for
  what does (add_object's "applied on frame seq N", add_stream).
* `status()`, `summary()` and `health()` read snapshots under the locks, from any thread.

Faults (docs/operations.md): a source error after the first frame is never fatal; a
tracker exception skips the frame (out of memory also empties the CUDA cache:
`tracker.memory`) and ``unhealthy_after`` of them in a row make the stream "unhealthy"
until a frame works. With one stream and ``fail_fast``, a source that fails before its
first frame, or an initial prompt that does not fit it, ends the node (NodeError); with
several streams that stream reports the error and the others go on.

Objects survive source reconnects and resolution changes: a stream's tracker is built
once and never rebuilt (masks simply come at the new frame size).

The `Node` is built in layers, one module each: `base` (shared state, status
messages), `snapshots` (status, summary, health, metrics), `membership` (streams added,
started, ended), `execution` (control commands) and this module (lifecycle and the tick).

This package imports no torch: `Tracker` is imported when the node builds one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from sam2long_stream.health import NodeMetrics
from sam2long_stream.node.base import log, one_line
from sam2long_stream.node.commands import Command, CommandState
from sam2long_stream.node.control import RequestHandler
from sam2long_stream.node.events import publish_events
from sam2long_stream.node.execution import Execution
from sam2long_stream.node.membership import overlay_paths
from sam2long_stream.node.sockets import Sockets
from sam2long_stream.node.stats import StreamSummary, TickStats
from sam2long_stream.node.stream import Stream
from sam2long_stream.settings import NodeConfig
from sam2long_stream.sources import Frame
from sam2long_stream.tracker import StepResult, TrackerConfig
from sam2long_stream.transport import wire

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker

TICK_S = 0.1  # the loop looks at commands, events and the stop flag at least this often


class NodeError(Exception):
    """The node could not run: its one stream's source failed before its first frame,
    or an initial prompt does not fit the first frame. One sentence for the user."""


class Node(Execution):
    """Sources -> one tracker per stream on one shared model -> publisher, with a control
    socket. See the module docstring.

    ``Node(config)`` opens the sources (not started), binds the sockets and builds the
    trackers, so configuration mistakes raise ValueError/OSError here, before `run`.
    Pass ``tracker`` to reuse a built one (tests, embedding): the first stream uses it,
    the others share its engine; its own config then wins over ``config.tracker``, and
    `run` resets its objects first.
    """

    def __init__(self, config: NodeConfig, *, tracker: Tracker | None = None) -> None:
        if not isinstance(config, NodeConfig):
            raise ValueError("config must be a NodeConfig (sam2long_stream.settings)")
        self.config = config
        self._lock = threading.Lock()  # guards _streams membership, _phase, _ticks, ...
        self._wake = threading.Event()  # a frame, an event or a command arrived
        self._stop = threading.Event()
        self._commands: queue.Queue[Command] = queue.Queue()
        self._streams: dict[str, Stream] = {}
        self._reserved: set[str] = set()  # ids of streams being added (control thread)
        self._removing: set[str] = set()  # ids of streams being removed
        self._removed: list[StreamSummary] = []  # removed streams' final summaries
        self._removed_untold = 0
        self._ticks = TickStats()
        self._phase = "created"
        self._accepting = False
        self._fatal: str | None = None
        self._ran = False
        self._tick_no = 0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what `run` raised, when run by `start`
        self._summary: dict[str, Any] | None = None
        self._started_t: float | None = None
        self.metrics = NodeMetrics(self._metric_snapshots)
        self._sockets = Sockets(config, RequestHandler(self), self.health, self.metrics.render)
        self._publisher = self._sockets.publisher  # the loop's alone
        try:
            if config.torch_threads:
                import torch

                torch.set_num_threads(config.torch_threads)
            self._tracker = tracker if tracker is not None else self._build_tracker(config.tracker)
            several = len(config.streams) > 1
            for k, stream_config in enumerate(config.streams):
                trk = self._tracker if k == 0 else self.new_tracker()
                s = Stream(
                    overlay_paths(stream_config, several),
                    trk,
                    self._wake,
                    initial=True,
                    node=config,
                )
                s.attach_page(*self.page_sockets)
                self._streams[s.id] = s
        except BaseException:
            for s in self._streams.values():
                if s.overlay is not None:
                    s.overlay.close()
            self._sockets.close()
            raise
        self.device: str = str(getattr(self._tracker.engine, "device", "unknown"))
        self.endpoint: str = self._sockets.endpoint
        self.control_endpoint: str | None = self._sockets.control_endpoint
        self.http_endpoint: str | None = self._sockets.http_endpoint

    @staticmethod
    def _build_tracker(config: TrackerConfig) -> Tracker:
        from sam2long_stream.tracker.tracker import Tracker

        return Tracker(config)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def tracker(self) -> Tracker:
        """The first stream's tracker (the one given to the constructor, if any)."""
        assert self._tracker is not None
        return self._tracker

    def run(self) -> dict[str, Any]:
        """Track until `stop()`, the end of every stream (``max_frames``, a finite
        source), or a fatal error; always stops the sources and closes the sockets.
        Returns the summary. Raises NodeError for a fatal error (see the module doc)."""
        with self._lock:
            if self._ran:
                raise RuntimeError("a Node runs once; build a new one")
            self._ran = True
            self._phase = "running"
        try:
            for s in self.streams():
                s.set_state("waiting")  # what status says from now on until a frame
                s.tracker.reset()
            self._started_t = time.monotonic()
            self._accepting = True
            self._sockets.start()
            for s in self.streams():
                self._start_stream(s)
            self._loop()
        finally:
            self._shutdown()
        if self._fatal is not None:
            raise NodeError(self._fatal)
        assert self._summary is not None
        return self._summary

    def wait_for_subscribers(self, timeout_s: float, topic: str | None = None) -> bool:
        """Before `run`/`start` only: wait until some subscription for ``topic`` (default:
        every stream's masks) reached the publisher. ZeroMQ delivers only what is
        published after that ("slow joiner"), so a ``policy="all"`` run that must not
        lose its first frames (a soak, an evaluation) waits here first."""
        with self._lock:
            if self._ran:
                raise RuntimeError("wait_for_subscribers is for a node that has not started")
        assert self._publisher is not None
        topics = [topic] if topic is not None else [wire.masks_topic(s) for s in self.stream_ids]
        deadline = time.monotonic() + timeout_s
        while not all(self._publisher.has_subscribers(t) for t in topics):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def start(self) -> Node:
        """Run on a background thread (tests, embedding); see `join` and `error`."""

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # kept for the caller: see `error`
                self.error = exc
                log.debug("node run ended with %r", exc, exc_info=True)

        self._thread = threading.Thread(target=target, name="node-loop", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a `start`ed node to end; True when it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Ask the node to stop; returns at once (safe from a signal handler: it only
        sets flags, which the loop checks every 0.1 s and between frames)."""
        self._stop.set()
        self._wake.set()

    def close(self) -> None:
        """Release the sockets of a node that will not run (`run` closes its own)."""
        with self._lock:
            ran = self._ran
        if not ran:
            for s in self.streams():
                if s.overlay is not None:
                    s.overlay.close()
            self._sockets.close()

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_commands()
            self._handle_events()
            if self._fatal is not None:
                return
            self._periodic_status()
            self._end_streams()
            if self._all_ended():
                return
            batch = self._gather()
            if not batch:
                continue
            self._drain_commands()  # requests that arrived while waiting
            # A source emits an event (connected, resolution) before the frame it is
            # about: publishing pending events now keeps the status topic ahead of the
            # masks of that frame.
            self._handle_events()
            if self._fatal is not None:
                return
            self._tick(batch)
            if self._fatal is not None:
                return

    def _gather(self) -> list[tuple[Stream, Frame]]:
        """The frames of this tick (see the module docstring); [] after TICK_S without
        one, or at once when a command or source event wants handling."""
        deadline = time.monotonic() + TICK_S
        while True:
            self._wake.clear()
            live = [s for s in self._loop_streams() if not s.finished]
            ready = [s for s in live if len(s.queue)]
            if ready or self._stop.is_set():
                break
            if not self._commands.empty() or any(s.events for s in live):
                return []
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            self._wake.wait(left)
        if not ready:
            return []
        wait_for = [s for s in live if s not in ready and s.source_up and not s.eos]
        end = time.monotonic() + self.config.max_wait_s
        while wait_for and len(ready) < self.config.max_batch and not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            more = [s for s in wait_for if len(s.queue)]
            if more:
                ready += more
                wait_for = [s for s in wait_for if s not in more]
                continue
            self._wake.wait(left)
        ready.sort(key=lambda s: s.last_served)  # served longest ago first: none starves
        batch = []
        for s in ready[: self.config.max_batch]:
            frame = s.queue.get(timeout=0)
            if frame is not None:
                batch.append((s, frame))
        return batch

    # -- source events ----------------------------------------------------------------

    def _handle_events(self) -> None:
        for s in self._loop_streams():
            if not s.finished:
                self._stream_events(s)
                if self._fatal is not None:
                    return

    def _stream_events(self, s: Stream) -> None:
        for ev, detail in s.take_events():
            if not (s.ever_frame or s.ever_connected) and self._may_fail_fast(s):
                if ev.kind == "error":
                    self._fatal = detail.get("error") or f"{s.name}: source error"
                elif ev.kind == "eos":
                    self._fatal = f"{s.name}: the source ended before any frame"
            if self._fatal is not None:
                level = logging.DEBUG  # raised as NodeError: the caller reports it
            elif ev.kind in ("connected", "resolution", "eos"):
                level = logging.INFO
            else:
                level = logging.WARNING
            log.log(level, "stream %s (%s): %s %s", s.id, s.name, ev.kind, detail or "")
            self._publish_status(s, ev.kind, time_ns=ev.time_ns, **detail)
            if self._fatal is not None:
                return

    # -- a tick -----------------------------------------------------------------------

    def _tick(self, batch: list[tuple[Stream, Frame]]) -> None:
        from sam2long_stream.tracker.tracker import step_many

        self._tick_no += 1
        work: list[tuple[Stream, Frame, list[Command]]] = []
        for s, frame in batch:
            s.last_served = self._tick_no
            applying = self._take_prompts(s, frame)
            if self._fatal is not None:
                for _, _, cmds in work:
                    for cmd in cmds:
                        cmd.finish(error="the node stopped: an initial prompt does not fit")
                for cmd in applying:
                    cmd.finish(error="the node stopped: an initial prompt does not fit the frame")
                return
            self._before_step(s, frame, applying)
            work.append((s, frame, applying))
        taken_ns = time.time_ns()
        outcomes: list[tuple[StepResult | None, BaseException | None, float]] = []
        fell_back = False
        t0 = time.perf_counter()
        if len(work) == 1:
            outcomes.append(self._step_one(*work[0]))
        else:
            try:
                results = step_many(
                    [s.tracker for s, _, _ in work],
                    [f.rgb for _, f, _ in work],
                    [self._prompts(cmds) for _, _, cmds in work],
                )
                share = (time.perf_counter() - t0) / len(work)
                outcomes = [(r, None, share) for r in results]
            except Exception as exc:
                fell_back = True
                self._after_oom(exc)
                log.warning(
                    "batched step of %d streams failed (%s); stepping them one by one",
                    len(work),
                    one_line(exc),
                )
                # step_many is all or nothing: no tracker moved, each can go alone
                outcomes = [self._step_one(s, frame, cmds) for s, frame, cmds in work]
        tick_s = time.perf_counter() - t0
        with self._lock:
            self._ticks.record(len(work), tick_s, fell_back)
        for (s, frame, cmds), (lagged, failure, spent) in zip(work, outcomes, strict=True):
            if failure is not None:
                self._tracker_failed(s, frame, failure, cmds, spent)
            else:
                self._publish_frame(s, frame, lagged, cmds, spent, taken_ns)

    @staticmethod
    def _prompts(cmds: list[Command]) -> dict[int, Any] | None:
        return {cmd.object_id: cmd.prompt for cmd in cmds} or None  # type: ignore[misc]

    def _step_one(
        self, s: Stream, frame: Frame, cmds: list[Command]
    ) -> tuple[StepResult | None, BaseException | None, float]:
        t0 = time.perf_counter()
        try:
            lagged = s.tracker.step(frame.rgb, self._prompts(cmds))
        except Exception as exc:
            self._after_oom(exc)
            return None, exc, time.perf_counter() - t0
        return lagged, None, time.perf_counter() - t0

    @staticmethod
    def _after_oom(exc: BaseException) -> None:
        from sam2long_stream.tracker.memory import is_out_of_memory, release_cached_memory

        if is_out_of_memory(exc):
            release_cached_memory()

    def _before_step(self, s: Stream, frame: Frame, applying: list[Command]) -> None:
        if applying:
            p = s.apply_pending_pathways()
            if p is not None:
                log.info("stream %s: num_pathways is now %d", s.id, p)
        s.begin_frame(frame)

    def _publish_frame(
        self,
        s: Stream,
        frame: Frame,
        lagged: StepResult | None,
        applying: list[Command],
        track_s: float,
        taken_ns: int,
    ) -> None:
        live = s.tracker.latest
        assert live is not None
        # before the masks go out: a client that saw them finds their objects in status
        s.tracked_changed(live.object_ids, {str(k): sc.pathway_id for k, sc in live.scores.items()})
        t1 = time.perf_counter()
        publish_failed = False
        try:
            self._publisher.publish_masks(
                live, frame, dropped_frames=s.queue.dropped, stream_id=s.id
            )
            if lagged is not None and s.tracker.config.lag > 0:
                self._publish_lagged(s, lagged)
        except (ValueError, OSError) as exc:
            publish_failed = True
            s.set_last_error(f"publishing frame seq {frame.seq} failed: {one_line(exc)}")
            log.error(
                "stream %s: publishing frame seq %d failed: %s", s.id, frame.seq, one_line(exc)
            )
        publish_events(self._publisher, s, s.tracks.frame(live, frame))  # track events
        publish_s = time.perf_counter() - t1
        published_ns = time.time_ns()
        overlay_s = s.write_overlay(frame, live.masks)
        for cmd in applying:
            score = live.scores.get(cmd.object_id)  # type: ignore[arg-type]
            reply = {
                "object_id": cmd.object_id,
                "stream": s.id,
                "applied": True,
                "seq": frame.seq,
                "frame_index": live.frame_index,
                "present": None if score is None else score.present,
                "area": None if score is None else score.area,
            }
            self._finish(s, cmd, reply=reply)
        latency_s = (published_ns - frame.capture_time_ns) / 1e9
        self.metrics.observe_latency(s.id, latency_s)
        recovered = s.record_frame(
            frame,
            live,
            queued_s=max(0, taken_ns - frame.capture_time_ns) / 1e9,
            latency_ms=1000 * latency_s,
            times=(track_s, publish_s, overlay_s),
            publish_failed=publish_failed,
            dropped_messages=self._publisher.dropped_by_stream.get(s.id, 0),
            unhealthy_after=self.config.unhealthy_after,
        )
        if recovered:
            log.info("stream %s: tracker recovered on frame seq %d", s.id, frame.seq)
            self._publish_periodic(s)

    def _tracker_failed(
        self,
        s: Stream,
        frame: Frame,
        exc: BaseException,
        applying: list[Command],
        spent_s: float,
    ) -> None:
        """Skip the frame, count it, and after `unhealthy_after` in a row say so.

        Out of GPU memory is one such failure (the cache was emptied already). A failed
        `Tracker.step` changes nothing, so the prompts it carried were not applied.
        """
        from sam2long_stream.tracker.memory import is_out_of_memory

        oom = is_out_of_memory(exc)
        log.error(
            "stream %s: frame seq %d skipped: tracker failed%s: %s",
            s.id,
            frame.seq,
            " (out of memory)" if oom else "",
            one_line(exc),
        )
        s.set_last_error(f"frame seq {frame.seq}: {one_line(exc)}")
        for cmd in applying:
            if cmd.initial:  # nobody to tell: try again with the next frame
                cmd.move(CommandState.HELD)
                s.held.append(cmd)
                continue
            self._finish(
                s,
                cmd,
                error=f"the tracker failed on frame seq {frame.seq} ({one_line(exc)}); "
                "the prompt was not applied",
            )
        s.sync_held()
        unhealthy_after = self.config.unhealthy_after
        n = s.record_failure(spent_s, unhealthy_after)
        if n == unhealthy_after:
            log.error("stream %s: unhealthy: %d consecutive tracker failures", s.id, n)
            self._publish_periodic(s, error=one_line(exc))

    # -- shutdown ---------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._accepting = False
        with self._lock:
            self._phase = "stopping"
        streams = self._loop_streams()
        for s in streams:  # all at once: at the cap, none keeps decoding while one stops
            s.source.request_stop()
        for s in streams:
            self._finish_stream(s)
        while True:  # nobody will execute these any more
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                break
            if isinstance(cmd.payload, Stream) and cmd.payload.overlay is not None:
                cmd.payload.overlay.close()
            cmd.finish(error="the node stopped; nothing changed")
        self._sockets.stop_control()
        summary = self.summary()
        with self._lock:
            self._phase = "error" if self._fatal else "stopped"
        self._summary = summary
        self._sockets.close()
