"""The node: its streams, the loop that tracks them, and the sockets it serves.

Data flows one way::

    source threads --Frame--> one FrameQueue per stream --> the loop --> Publisher (PUB)
                                                              ^
    control server thread --Command queue --------------------'

Threads and what they own:

* The loop (the thread that calls `run()`) is the only one that touches the Trackers
  (not thread-safe), the Publisher (a ZeroMQ socket is not either), the streams' held
  prompts and the streams dict's membership. Each tick takes the newest frame of every
  stream that has one (policy "all": the next frame; at most ``max_batch`` streams, the
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

This package imports no torch: `Tracker` is imported when the node builds one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import zmq

from sam2long_stream.control import (
    AddObject,
    AddStream,
    RemoveObject,
    RemoveStream,
    Reset,
)
from sam2long_stream.health import NodeMetrics
from sam2long_stream.node.commands import Command, CommandState
from sam2long_stream.node.control import RequestHandler
from sam2long_stream.node.sockets import Sockets
from sam2long_stream.node.stats import TickStats, node_summary
from sam2long_stream.node.stream import LIVE_STATES, Stream
from sam2long_stream.redact import redact_text
from sam2long_stream.settings import NodeConfig, StreamConfig
from sam2long_stream.sources import Frame
from sam2long_stream.tracker import StepResult, TrackerConfig
from sam2long_stream.transport import wire

if TYPE_CHECKING:
    from sam2long_stream.tracker.tracker import Tracker

log = logging.getLogger(__name__)

TICK_S = 0.1  # the loop looks at commands, events and the stop flag at least this often


class NodeError(Exception):
    """The node could not run: its one stream's source failed before its first frame,
    or an initial prompt does not fit the first frame. One sentence for the user."""


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = redact_text(text if len(text) <= 300 else text[:297] + "...")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def overlay_paths(config: StreamConfig, several: bool) -> StreamConfig:
    """With several streams, a shared overlay path gets the stream id before its
    extension (``out.mp4`` -> ``out.cam1.mp4``) so streams never write one file."""
    if not several:
        return config
    changes: dict[str, Any] = {}
    for name in ("overlay_out", "overlay_png"):
        path = getattr(config, name)
        if path:
            stem, dot, ext = path.rpartition(".")
            changes[name] = (
                f"{stem}.{config.stream_id}.{ext}"
                if dot and "/" not in ext
                else (f"{path}.{config.stream_id}")
            )
    if not changes:
        return config
    import dataclasses

    return dataclasses.replace(config, **changes)


class Node:
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

    @property
    def page_sockets(self) -> tuple[str, str | None, bool]:
        """What a browser page needs to find the node: PUB, control, CurveZMQ on."""
        sockets = self._sockets
        return sockets.endpoint, sockets.control_endpoint, self.config.curve_secret is not None

    @staticmethod
    def _build_tracker(config: TrackerConfig) -> Tracker:
        from sam2long_stream.tracker.tracker import Tracker

        return Tracker(config)

    def new_tracker(self) -> Tracker:
        """A tracker for one more stream, sharing the first one's engine (one model)."""
        from sam2long_stream.tracker.tracker import Tracker

        assert self._tracker is not None
        return Tracker(self._tracker.config, engine=self._tracker.engine)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def tracker(self) -> Tracker:
        """The first stream's tracker (the one given to the constructor, if any)."""
        assert self._tracker is not None
        return self._tracker

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

    def _loop_streams(self) -> list[Stream]:
        with self._lock:
            return list(self._streams.values())

    def _all_ended(self) -> bool:
        """Every stream ended by itself (end of file, max_frames). A node whose streams
        were all removed over the control socket waits for add_stream instead."""
        streams = self._loop_streams()
        return bool(streams) and all(s.finished for s in streams)

    def _end_streams(self) -> None:
        for s in self._loop_streams():
            if s.finished:
                continue
            limit = s.config.max_frames
            if s.ended or (limit is not None and s.frames_taken() >= limit):
                self._finish_stream(s)

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

    def _may_fail_fast(self, s: Stream) -> bool:
        with self._lock:
            alone = len(self._streams) == 1
        return self.config.fail_fast and alone and s.initial

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
            log.error(
                "stream %s: publishing frame seq %d failed: %s", s.id, frame.seq, one_line(exc)
            )
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

    # -- prompts and commands (loop thread) -------------------------------------------

    def _take_prompts(self, s: Stream, frame: Frame) -> list[Command]:
        """The stream's held prompts that fit this frame; the others are refused (or
        fatal: an initial prompt of a node's only stream)."""
        applying: dict[int, Command] = {}
        for cmd in s.held:
            try:
                cmd.prompt.validate(frame.height, frame.width)  # type: ignore[union-attr]
            except ValueError as exc:
                msg = f"object {cmd.object_id}: {exc} (frame seq {frame.seq})"
                if cmd.initial and self._may_fail_fast(s):
                    self._fatal = f"initial prompt for {msg}"
                self._finish(s, cmd, error=msg)
                continue
            previous = applying.pop(cmd.object_id, None)  # type: ignore[arg-type]
            if previous is not None:
                self._finish(s, previous, error="superseded by a later prompt for the same object")
            cmd.move(CommandState.APPLYING, frame.seq)
            applying[cmd.object_id] = cmd  # type: ignore[index]
        s.held = []
        s.sync_held()
        return list(applying.values())

    def _finish(
        self,
        s: Stream | None,
        cmd: Command,
        reply: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        detached = cmd.finish(reply, error)
        if error is not None and s is not None and cmd.object_id is not None:
            s.forget(cmd.object_id)
        if error is not None and (detached or cmd.initial):
            # Nobody waits for this reply: say it in the log and on the status topic.
            what = f"prompt for object {cmd.object_id}" if cmd.object_id is not None else "request"
            log.error("stream %s: %s not applied: %s", cmd.stream_id, what, error)
            if s is not None and self._fatal is None:
                self._publish_status(s, "error", error=f"{what}: {error}")

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            cmd.move(CommandState.TAKEN)
            try:
                self._execute(cmd)
            except ValueError as exc:
                self._finish(self._streams.get(cmd.stream_id), cmd, error=str(exc))
            except Exception as exc:
                log.exception("control request %r failed", cmd.request)
                self._finish(
                    self._streams.get(cmd.stream_id), cmd, error=f"internal error: {one_line(exc)}"
                )

    def _execute(self, cmd: Command) -> None:
        req = cmd.request
        if isinstance(req, AddStream):
            self._add_stream(cmd)
            return
        s = self._streams.get(cmd.stream_id)
        if s is None or s.finished:
            raise ValueError(f"stream {cmd.stream_id} ended; nothing changed")
        if isinstance(req, RemoveStream):
            self._finish_stream(s, removed=True)
            with self._lock:
                del self._streams[s.id]
                self._removing.discard(s.id)
            cmd.finish({"stream": s.id})
            log.info("stream %s removed", s.id)
        elif isinstance(req, AddObject):
            oid = cmd.object_id
            # One held prompt per object: a newer one replaces it (bounds the backlog
            # while no frame comes, however many requests arrive).
            for older in [c for c in s.held if c.object_id == oid]:
                s.held.remove(older)
                older.finish(error="superseded by a later prompt for the same object")
            cmd.move(CommandState.HELD)
            s.held.append(cmd)
            s.sync_held()
        elif isinstance(req, RemoveObject):
            oid = req.object_id
            if oid in s.tracker.object_ids:
                s.tracker.remove_object(oid)
            self._cancel_held(s, [c for c in s.held if c.object_id == oid], "removed")
            s.tracked_changed(s.tracker.object_ids)
            cmd.finish({"object_id": oid})
        elif isinstance(req, Reset):
            s.tracker.reset()
            self._cancel_held(s, list(s.held), "reset")
            s.tracked_changed([])
            cmd.finish({})
        else:  # Status and set never come here
            raise ValueError(f"unsupported request {type(req).__name__}")

    def _cancel_held(self, s: Stream, cmds: list[Command], why: str) -> None:
        for cmd in cmds:
            s.held.remove(cmd)
            text = (
                f"object {cmd.object_id} was removed before its prompt was applied"
                if why == "removed"
                else "cancelled by a reset"
            )
            if cmd.finish(error=text):
                log.info("stream %s: prompt for object %s %s", s.id, cmd.object_id, text)
        s.sync_held()

    def _add_stream(self, cmd: Command) -> None:
        s: Stream = cmd.payload
        if self._stop.is_set():
            raise ValueError("the node is stopping; nothing changed")
        with self._lock:
            self._streams[s.id] = s
            self._reserved.discard(s.id)
        try:
            self._start_stream(s)
        except Exception as exc:
            self._publish_status(s, "error", error=one_line(exc))
            self._finish_stream(s)
            with self._lock:
                del self._streams[s.id]
            raise ValueError(f"stream {s.id} could not start: {one_line(exc)}") from None
        log.info("stream %s added: %s", s.id, s.name)
        cmd.finish({"stream": s.id, "source": s.name, "started": True})

    def _start_stream(self, s: Stream) -> None:
        self._publish_status(s, "starting", source=s.name)
        try:
            s.start()
        except Exception as exc:
            with self._lock:
                alone = len(self._streams) == 1
            if alone or not s.initial:
                raise
            # one of several configured streams: report it, the others go on
            log.error("stream %s: the source did not start: %s", s.id, one_line(exc))
            self._publish_status(s, "error", error=one_line(exc))
            self._finish_stream(s)

    # -- status messages (loop thread) ------------------------------------------------

    def _publish_status(self, s: Stream, state: str, **fields: Any) -> None:
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
        self._publish_status(s, state, **fields)

    # -- shutdown ---------------------------------------------------------------------

    def _finish_stream(self, s: Stream, removed: bool = False) -> None:
        """Stop a stream for good: its source, its lagged tail, its held prompts, its
        overlay; then its final status (``stopped`` with its summary)."""
        if s.finished:
            return
        s.finished = True
        try:
            s.source.stop()
        except Exception as exc:
            log.warning("stream %s: stopping the source failed: %s", s.id, one_line(exc))
        s.queue.close()
        if s.tracker.config.lag > 0 and self._fatal is None:
            try:
                for result in s.tracker.flush():
                    self._publish_lagged(s, result)
            except Exception as exc:
                log.error("stream %s: flushing lagged results failed: %s", s.id, one_line(exc))
        why = "the stream was removed" if removed else "the node stopped"
        for cmd in s.held:
            cmd.finish(error=f"{why} before a frame arrived")
        s.held = []
        s.sync_held()
        if s.overlay is not None:
            try:
                s.overlay.close()
            except Exception as exc:
                log.error("stream %s: finishing the overlay failed: %s", s.id, one_line(exc))
        with s.lock:
            if self._publisher is not None:
                s.stats.dropped_messages = self._publisher.dropped_by_stream.get(s.id, 0)
        fatal = self._fatal is not None and self._may_fail_fast(s)
        s.set_state("error" if fatal else "stopped")
        final = s.summary().as_dict()
        final.pop("stream_id", None)
        if fatal:
            self._publish_status(s, "error", error=self._fatal, **final)
        self._publish_status(s, "stopped", **final)

    def _shutdown(self) -> None:
        self._accepting = False
        with self._lock:
            self._phase = "stopping"
        for s in self._loop_streams():
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

    # -- snapshots (any thread) -------------------------------------------------------

    def _stream_status(self, s: Stream) -> dict[str, Any]:
        return s.status(self.device).as_dict()

    def _find(self, stream_id: str | None) -> Stream:
        """The stream a request names, or the only one; ValueError otherwise."""
        with self._lock:
            ids = [sid for sid in self._streams if sid not in self._removing]
            if stream_id is None:
                if len(ids) == 1:
                    return self._streams[ids[0]]
                if not ids:
                    raise ValueError("the node has no streams; add one with add_stream")
                raise ValueError(
                    f'the node has {len(ids)} streams ({", ".join(ids)}): name one with "stream"'
                )
            if stream_id not in ids:
                raise ValueError(
                    f"unknown stream {stream_id!r}; streams: {', '.join(ids) or 'none'}"
                )
            return self._streams[stream_id]

    def status(self, stream_id: str | None = None) -> dict[str, Any]:
        """A stream's state, counters, timings and objects (the named one, or the only
        one); with several streams and no name, the node's: its state, device, batching
        and each stream's status under ``streams``. Thread-safe; ValueError for an
        unknown stream."""
        streams = self.streams()
        if stream_id is not None or len(streams) == 1:
            return self._stream_status(self._find(stream_id))
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
        summaries = [s.summary() for s in self._loop_streams()]
        return node_summary(summaries, ticks, self.device)

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
        for sid, s in streams.items():
            lines.append(
                f"  {sid}: {s['frames_processed']} tracked, {s['failed_frames']} failed, "
                f"{s['dropped_frames']} dropped; fps {s['fps'] if s['fps'] is not None else 'n/a'}"
                f"; latency p50 {ms(s['latency_ms'])}, p95 {ms(s['latency_p95_ms'])}"
            )
    return "\n".join(lines)
