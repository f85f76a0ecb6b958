"""The tracker node: one live source in; masks and status out over ZeroMQ; control in.

Data flows one way::

    source thread(s) --Frame--> FrameQueue --> tracker loop --> Publisher (PUB socket)
                                                   ^
    control server thread --_Command queue---------'

* The tracker loop is the only thread that touches the Tracker (it is not thread-safe)
  and the Publisher (a ZeroMQ socket is not thread-safe either). It is the thread that
  calls `run()`.
* Source callbacks only put frames into the FrameQueue and events into a deque; the loop
  turns events into status messages.
* The control server's thread never touches the tracker. It parses a request (see
  `control/protocol.py`), checks what it can against the last frame size, puts a
  `_Command` on a queue and waits (``control_timeout_s``) for the loop to carry it out,
  then replies with the outcome. `add_object` is applied with the next processed frame
  and its reply says on which one (or why not: a box outside that frame gets
  ``ok: false``). If no frame comes within the timeout (no frame yet, or the source is
  reconnecting), the prompt stays queued, the reply says ``"applied": false, "queued":
  true``, and it is applied to the next frame that arrives. A request's ``frame_seq`` is
  informative only (an online tracker cannot go back): the reply's ``seq`` tells which
  frame the prompt went with. `status` is answered from a snapshot without waiting for
  the loop; remove_object, reset and set are carried out by the loop between frames.
* ``set num_pathways P`` does not touch any running pool at once: the node remembers P,
  and when the next `add_object` prompt is applied it calls
  ``tracker.set_num_pathways(P)`` (the tracker is not rebuilt). The tracker
  has one config, so from that frame on *every* object's pool is kept at P pathways
  (`Tracker.set_num_pathways`: existing pools grow from copies of their pathways or keep
  their best at their next frame), not only the new object's.
* Objects survive source reconnects and resolution changes: the tracker is built once
  and never rebuilt (masks simply come at the new frame size).
* Faults (docs/operations.md): a source error after the first frame is never fatal; a
  tracker exception skips the frame (out of memory also empties the CUDA cache) and
  ``unhealthy_after`` of them in a row make the state "unhealthy" until a frame works.
* Security and health: every bind must be loopback unless ``allow_remote``; with
  ``curve_secret``/``curve_clients`` the ZeroMQ sockets are CurveZMQ servers that admit
  only the listed client keys; ``http`` serves /healthz and /metrics (health.py).

Timing, per processed frame: ``queue`` (frame age when the loop takes it), ``track``
(`Tracker.step`), ``publish`` (encode and send the masks), ``overlay`` (optional video).
``decode`` is the CPU time the source's delivering thread spends between two frames
(demux, H.264 decode and RGB conversion for RTSP; for WebRTC, aiortc decodes on a thread
of its own, so only the RGB conversion is seen). Node overhead =
(total decode CPU + total publish time) / total tracker time.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from sam2long_stream import security
from sam2long_stream.control import (
    DEFAULT_ADDRESS,
    AddObject,
    ControlServer,
    RemoveObject,
    Request,
    Reset,
    SetOption,
    Status,
)
from sam2long_stream.health import HealthServer, NodeMetrics
from sam2long_stream.overlay import OverlayWriter
from sam2long_stream.sources import Frame, FrameQueue, SourceEvent, check_hwaccel, open_source
from sam2long_stream.sources.frame_queue import POLICIES
from sam2long_stream.sources.rtsp import redact_url
from sam2long_stream.tracker import Prompt, StepResult, Tracker, TrackerConfig
from sam2long_stream.transport import Publisher, wire

log = logging.getLogger(__name__)

DEFAULT_PUB = "tcp://127.0.0.1:5556"
_TICK_S = 0.1  # the loop looks at commands, events and the stop flag at least this often


class NodeError(Exception):
    """The node could not run: the source failed before its first frame, or an initial
    prompt does not fit the first frame. The message is one sentence for the user."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs. Validated on construction (ValueError)."""

    source: str  # a URL `open_source` accepts
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    prompts: Mapping[int, Prompt] = field(default_factory=dict)  # applied to the first frame
    pub: str = DEFAULT_PUB
    control: str | None = DEFAULT_ADDRESS  # None: no control socket
    stream_id: str = "cam0"
    policy: str = "latest"  # "latest" drops frames to stay live; "all" tracks every frame
    max_frames: int | None = None  # stop after this many frames taken from the source
    source_options: Mapping[str, Any] = field(default_factory=dict)
    overlay_out: str | None = None  # write masks over the source frames to this video
    overlay_png: str | None = None  # ... and the last such frame to this PNG
    encoding: str = "rle"
    hwm: int = 32
    status_interval_s: float = 1.0
    unhealthy_after: int = 5  # consecutive tracker failures before status says unhealthy
    control_timeout_s: float = 2.5  # < ControlClient's default 5 s, so replies arrive
    fail_fast: bool = True  # a source error before the first frame stops the node
    torch_threads: int | None = None  # torch.set_num_threads (process-wide) when given
    # Security (see security.py): non-loopback binds need allow_remote; CurveZMQ needs
    # both the node's secret key file and a directory of authorised client public keys.
    allow_remote: bool = False
    curve_secret: str | None = None  # node.key_secret
    curve_clients: str | None = None  # directory of authorised clients' *.key
    http: str | None = None  # HOST:PORT of /healthz and /metrics; None: off
    health_grace_s: float = 30.0  # /healthz says 503 after this long without a frame
    max_objects: int = 128  # objects tracked plus prompts waiting for a frame
    # Video decoding of RTSP/file sources: "none" (software), "auto" or a device type
    # ("cuda", ...); falls back to software with a warning (sources/hwdecode.py).
    hwaccel: str = "none"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError("source must be a non-empty URL or path")
        if not isinstance(self.tracker, TrackerConfig):
            raise ValueError("tracker must be a TrackerConfig")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        wire.check_stream_id(self.stream_id)
        if self.encoding not in wire.ENCODINGS:
            raise ValueError(f"encoding must be one of {wire.ENCODINGS}, got {self.encoding!r}")
        for oid, prompt in self.prompts.items():
            if type(oid) is not int or not 0 <= oid <= wire.MAX_OBJECT_ID:
                raise ValueError(f"object ids must be ints in 0..{wire.MAX_OBJECT_ID}, got {oid!r}")
            if not isinstance(prompt, Prompt):
                raise ValueError(f"prompt for object {oid} must be a Prompt, got {prompt!r}")
        if self.max_frames is not None and (
            type(self.max_frames) is not int or self.max_frames < 1
        ):
            raise ValueError(f"max_frames must be an int >= 1, got {self.max_frames!r}")
        if type(self.hwm) is not int or self.hwm < 1:
            raise ValueError(f"hwm must be an int >= 1, got {self.hwm!r}")
        if type(self.unhealthy_after) is not int or self.unhealthy_after < 1:
            raise ValueError(f"unhealthy_after must be an int >= 1, got {self.unhealthy_after!r}")
        for name in ("status_interval_s", "control_timeout_s", "health_grace_s"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if self.torch_threads is not None and (
            type(self.torch_threads) is not int or self.torch_threads < 1
        ):
            raise ValueError(f"torch_threads must be an int >= 1, got {self.torch_threads!r}")
        if type(self.max_objects) is not int or not 1 <= self.max_objects <= wire.MAX_OBJECTS:
            raise ValueError(
                f"max_objects must be an int in 1..{wire.MAX_OBJECTS}, got {self.max_objects!r}"
            )
        if (self.curve_secret is None) != (self.curve_clients is None):
            raise ValueError(
                "CurveZMQ needs both curve_secret (the node's .key_secret file) and "
                "curve_clients (a directory of authorised client .key files)"
            )
        object.__setattr__(self, "hwaccel", check_hwaccel(self.hwaccel))  # ValueError
        self.remote_binds()  # the loopback rule; raises ValueError

    def remote_binds(self) -> list[str]:
        """The sockets other hosts could reach ("pub", "control", "http"). Raises
        ValueError for a malformed address or a non-loopback one without allow_remote."""
        binds: list[tuple[str, str, str | None]] = [
            ("publisher", self.pub, security.zmq_bind_host(self.pub))
        ]
        if self.control:
            binds.append(("control socket", self.control, security.zmq_bind_host(self.control)))
        if self.http:
            binds.append(("HTTP endpoint", self.http, security.parse_http_address(self.http)[0]))
        listener = security.source_listener(self.source)
        if listener is not None:  # whip://: the WHIP endpoint and its browser page
            binds.append(("WHIP listener", *listener))
        return [
            what
            for what, address, host in binds
            if security.check_bind(what, address, host, self.allow_remote)
        ]


# --------------------------------------------------------------------------- commands


class _Command:
    """One control request on its way to the loop, and its outcome.

    States: queued -> taken (executed at once) | held (an add waiting for a frame) ->
    applying -> done. The control thread may cancel a command still queued.
    """

    def __init__(self, request: Request | None, prompt: Prompt | None = None) -> None:
        self.request = request
        self.prompt = prompt if prompt is not None else getattr(request, "prompt", None)
        self.object_id: int | None = getattr(request, "object_id", None)
        self.initial = request is None  # a prompt from NodeConfig: failures are fatal
        self.state = "queued"
        self.detached = False  # the control thread replied already (queued prompt)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.error: str | None = None

    def finish(self, reply: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.lock:
            self.state = "done"
            self.reply, self.error = reply or {}, error
        self.done.set()

    def outcome(self) -> dict[str, Any]:
        if self.error is not None:
            raise ValueError(self.error)
        return dict(self.reply or {})


# --------------------------------------------------------------------------- overlay


class _Stats:
    """Counters and timings; written by the loop (and the source thread for decode),
    read by `status()` under the node's lock."""

    def __init__(self) -> None:
        self.frames = 0  # frames taken from the queue
        self.processed = 0  # tracked and published
        self.failed = 0  # tracker raised
        self.consecutive_failures = 0
        self.publish_errors = 0
        self.sums = dict.fromkeys(("queue", "track", "publish", "overlay"), 0.0)
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


def _percentile(values: Any, q: float) -> float | None:
    vals = list(values)
    return float(np.percentile(vals, q)) if vals else None


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA/MPS), or a RuntimeError that says so (older torch,
    other backends), or the host's MemoryError."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def _release_cached_memory() -> None:
    """After an OOM: give the allocator's cached blocks back (no-op without CUDA)."""
    import gc

    import torch

    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as exc:  # a broken CUDA context: the next frame will say so
        log.warning("emptying the CUDA cache failed: %s", _one_line(exc))


def _plain(value: Any) -> Any:
    """Event details as plain JSON values (anything else becomes its str)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


# --------------------------------------------------------------------------- the node


class Node:
    """Source -> tracker -> publisher, with a control socket. See the module docstring.

    ``Node(config)`` opens the source (not started), binds the sockets and builds the
    tracker, so configuration mistakes raise ValueError/OSError here, before `run`.
    Pass ``tracker`` to reuse a built one (tests, embedding): its own config then wins
    over ``config.tracker``, and `run` resets its objects first.
    """

    def __init__(self, config: NodeConfig, *, tracker: Tracker | None = None) -> None:
        self.config = config
        remote = config.remote_binds()  # the loopback rule (NodeConfig checked it too)
        source_options = dict(config.source_options)
        if config.hwaccel != "none":
            source_options["hwaccel"] = config.hwaccel
        self._source = open_source(config.source, **source_options)
        self._source_name = redact_url(config.source)
        self._publisher: Publisher | None = None
        self._control: ControlServer | None = None
        self._overlay: OverlayWriter | None = None
        self._http: HealthServer | None = None
        self._zmq_context: zmq.Context | None = None  # own context: only with CurveZMQ
        self._authenticator: Any = None
        try:
            curve = None
            if config.curve_secret is not None:
                curve = security.load_secret(config.curve_secret, "node CURVE secret")
                security.check_clients_dir(config.curve_clients or "")
                # ZAP (who may connect) is per context: a context of our own, so nodes
                # in one process each keep their own list of clients.
                self._zmq_context = zmq.Context()
                self._authenticator = security.start_authenticator(
                    self._zmq_context, config.curve_clients or ""
                )
            self._publisher = Publisher(
                config.pub,
                config.stream_id,
                hwm=config.hwm,
                encoding=config.encoding,
                context=self._zmq_context,
                curve=curve,
            )
            if config.control:
                self._control = ControlServer(
                    config.control, self, context=self._zmq_context, curve=curve
                )
            self.metrics = NodeMetrics(config.stream_id, self.status, lambda: self.health()[0])
            if config.http:
                host, port = security.parse_http_address(config.http)
                self._http = HealthServer(host, port, self.health, self.metrics.render)
            if config.overlay_out or config.overlay_png:
                self._overlay = OverlayWriter(config.overlay_out, config.overlay_png)
            if config.torch_threads:
                import torch

                torch.set_num_threads(config.torch_threads)
            self._tracker = tracker if tracker is not None else Tracker(config.tracker)
        except BaseException:
            self._close_sockets()
            raise
        self.endpoint: str = self._publisher.endpoint
        self.control_endpoint: str | None = self._control.endpoint if self._control else None
        self.http_endpoint: str | None = self._http.url if self._http else None
        if hasattr(self._source, "attach_page"):  # WHIP: the browser page (web/), a client
            from sam2long_stream.web import PageConfig  # of the PUB and control sockets

            page = PageConfig(
                self.endpoint, self.control_endpoint, config.stream_id, curve=curve is not None
            )
            self._source.attach_page(page)
        exposed = [w for w in remote if w in ("HTTP endpoint", "WHIP listener") or curve is None]
        if exposed:
            log.warning(
                "%s reachable from other hosts without authentication%s",
                " and ".join(exposed),
                "" if curve is None else " (CurveZMQ covers the ZeroMQ sockets, not HTTP/WHIP)",
            )

        self._lock = threading.Lock()  # guards _stats, _snapshot, _state
        self._stats = _Stats()
        self._state = "created"
        self._snapshot: dict[str, Any] = {"objects": [], "pathways": {}}
        self._stop = threading.Event()
        self._queue = FrameQueue(config.policy)
        self._events: collections.deque[SourceEvent] = collections.deque()
        self._commands: queue.Queue[_Command] = queue.Queue()
        self._held: list[_Command] = []  # loop thread only
        self._accepting = False
        self._pending_pathways: int | None = None  # set, waiting for the next prompt
        self._meta: dict[int, Frame] = {}  # tracker frame index -> frame (for lagged output)
        self._source_state = "starting"
        self._source_up = False
        self._ever_frame = False
        self._ever_connected = False
        self._eos = False
        self._fatal: str | None = None
        self._last_error: str | None = None  # the last tracker failure
        self._decode_clock: dict[int, int] = {}
        self._ran = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what `run` raised, when run by `start`
        self._summary: dict[str, Any] | None = None
        self._started_t: float | None = None
        for oid, prompt in config.prompts.items():
            cmd = _Command(None, prompt)
            cmd.object_id, cmd.state = oid, "held"
            self._held.append(cmd)

    # -- lifecycle --------------------------------------------------------------------

    @property
    def tracker(self) -> Tracker:
        return self._tracker

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def run(self) -> dict[str, Any]:
        """Track until `stop()`, ``max_frames``, the end of a finite source, or a fatal
        error; always stops the source and closes the sockets. Returns the summary.
        Raises NodeError when the source fails before its first frame or an initial
        prompt does not fit the first frame."""
        with self._lock:
            if self._ran:
                raise RuntimeError("a Node runs once; build a new one")
            self._ran = True
            self._state = "waiting"
        try:
            self._tracker.reset()
            self._started_t = time.monotonic()
            self._accepting = True
            if self._control is not None:
                self._control.start()
            if self._http is not None:
                self._http.start()
            self._publish_status("starting", source=self._source_name)
            self._source.start(self._on_frame, self._on_event)
            self._loop()
        finally:
            self._shutdown()
        if self._fatal is not None:
            raise NodeError(self._fatal)
        assert self._summary is not None
        return self._summary

    def wait_for_subscribers(self, timeout_s: float, topic: str | None = None) -> bool:
        """Before `run`/`start` only: wait until some subscription for ``topic`` (default:
        this stream's masks) reached the publisher. ZeroMQ delivers only what is published
        after that ("slow joiner"), so a ``policy="all"`` run that must not lose its first
        frames (a soak, an evaluation) waits here first. True when one arrived."""
        with self._lock:
            if self._ran:
                raise RuntimeError("wait_for_subscribers is for a node that has not started")
        assert self._publisher is not None
        topic = topic if topic is not None else wire.masks_topic(self.config.stream_id)
        deadline = time.monotonic() + timeout_s
        while not self._publisher.has_subscribers(topic):
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
        sets a flag, which the loop checks every 0.1 s and between frames)."""
        self._stop.set()

    def close(self) -> None:
        """Release the sockets of a node that will not run (`run` closes its own)."""
        with self._lock:
            ran = self._ran
        if not ran:
            self._close_sockets()

    # -- source callbacks (source threads) --------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        now = time.thread_time_ns()
        ident = threading.get_ident()
        last = self._decode_clock.get(ident)
        if last is None and len(self._decode_clock) >= 64:  # short-lived decoder threads
            self._decode_clock.clear()
        self._decode_clock[ident] = now
        if last is not None:
            with self._lock:
                self._stats.decode_s += (now - last) / 1e9
                self._stats.decoded += 1
        self._queue.put(frame)

    def _on_event(self, event: SourceEvent) -> None:
        self._events.append(event)

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        next_status = time.monotonic()
        max_frames = self.config.max_frames
        while not self._stop.is_set():
            self._drain_commands()
            self._handle_events()
            if self._fatal is not None:
                return
            now = time.monotonic()
            if now >= next_status:
                self._publish_periodic()
                next_status = now + self.config.status_interval_s
            frame = self._queue.get(timeout=_TICK_S)
            if frame is None:
                if self._eos and len(self._queue) == 0:
                    return
                continue
            self._drain_commands()  # requests that arrived while waiting
            # A source emits an event (connected, resolution) before the frame it is
            # about: publishing pending events now keeps the status topic ahead of the
            # masks of that frame.
            self._handle_events()
            if self._fatal is not None:
                return
            self._process(frame)
            if self._fatal is not None:
                return
            if max_frames is not None and self._stats.frames >= max_frames:
                return

    def _handle_events(self) -> None:
        while self._events:
            ev = self._events.popleft()
            detail = {k: _plain(v) for k, v in ev.detail.items()}
            if "message" in detail:
                detail["error"] = str(detail.pop("message"))
            for reserved in ("schema", "type", "stream_id", "state", "time_ns"):
                detail.pop(reserved, None)
            if ev.kind in ("connected", "disconnected", "reconnecting", "error"):
                self._source_state = ev.kind
            if ev.kind == "connected":
                if self._ever_connected:
                    with self._lock:
                        self._stats.reconnects += 1
                self._source_up = self._ever_connected = True
            elif ev.kind in ("disconnected", "error"):
                if ev.kind == "disconnected":
                    with self._lock:
                        self._stats.source_disconnects += 1
                self._source_up = False
            elif ev.kind == "resolution":
                with self._lock:
                    previous = (self._stats.width, self._stats.height)
                size = (detail.get("width"), detail.get("height"))
                if previous[0] is not None and previous != size:
                    detail.setdefault("previous_width", previous[0])
                    detail.setdefault("previous_height", previous[1])
            elif ev.kind == "eos":
                self._eos = True
            if self.config.fail_fast and not (self._ever_frame or self._ever_connected):
                if ev.kind == "error":
                    self._fatal = detail.get("error") or f"{self._source_name}: source error"
                elif ev.kind == "eos":
                    self._fatal = f"{self._source_name}: the source ended before any frame"
            if self._fatal is not None:
                level = logging.DEBUG  # raised as NodeError: the caller reports it
            elif ev.kind in ("connected", "resolution", "eos"):
                level = logging.INFO
            else:
                level = logging.WARNING
            log.log(level, "source %s: %s %s", self._source_name, ev.kind, detail or "")
            self._publish_status(ev.kind, time_ns=ev.time_ns, **detail)
            if self._fatal is not None:
                return

    def _process(self, frame: Frame) -> None:
        cfg = self.config
        taken_ns = time.time_ns()
        self._ever_frame = True
        self._source_up = True
        height, width = frame.height, frame.width
        applying = self._take_prompts(height, width, frame.seq)
        if self._fatal is not None:
            for cmd in applying:
                cmd.finish(error="the node stopped: an initial prompt does not fit the frame")
            return
        prompts = {cmd.object_id: cmd.prompt for cmd in applying}
        if applying and self._pending_pathways is not None:
            self._tracker.set_num_pathways(self._pending_pathways)
            log.info("num_pathways is now %d", self._pending_pathways)
            self._pending_pathways = None
        index = self._tracker.frame_index
        self._meta[index] = frame
        for old in [i for i in self._meta if i < index - self._tracker.config.lag - 1]:
            del self._meta[old]

        with self._lock:
            st = self._stats
            st.last_taken_t = time.monotonic()
            if st.width is not None and (width, height) != (st.width, st.height):
                st.resolution_changes += 1
                log.info(
                    "frame size changed from %dx%d to %dx%d at seq %d: objects kept, masks "
                    "now at the new size",
                    st.width,
                    st.height,
                    width,
                    height,
                    frame.seq,
                )
        t0 = time.perf_counter()
        try:
            lagged = self._tracker.step(frame.rgb, prompts or None)  # type: ignore[arg-type]
        except Exception as exc:
            self._tracker_failed(frame, exc, applying, time.perf_counter() - t0)
            return
        t1 = time.perf_counter()
        live = self._tracker.latest
        assert live is not None
        try:
            self._publisher.publish_masks(  # type: ignore[union-attr]
                live, frame, dropped_frames=self._queue.dropped
            )
            if lagged is not None and self._tracker.config.lag > 0:
                self._publish_lagged(lagged)
        except (ValueError, OSError) as exc:
            self._stats.publish_errors += 1
            log.error("publishing frame seq %d failed: %s", frame.seq, _one_line(exc))
        t2 = time.perf_counter()
        published_ns = time.time_ns()
        overlay_s = 0.0
        if self._overlay is not None:
            try:
                self._overlay.write(frame.rgb, live.masks, frame.capture_time_ns / 1e9)
            except Exception as exc:
                log.error("overlay disabled: %s", _one_line(exc))
                self._overlay = None
            overlay_s = time.perf_counter() - t2

        for cmd in applying:
            score = live.scores.get(cmd.object_id)  # type: ignore[arg-type]
            reply = {
                "object_id": cmd.object_id,
                "applied": True,
                "seq": frame.seq,
                "frame_index": live.frame_index,
                "present": None if score is None else score.present,
                "area": None if score is None else score.area,
            }
            self._finish(cmd, reply=reply)

        recovered = self._stats.consecutive_failures >= cfg.unhealthy_after
        now = time.monotonic()
        latency_ms = (published_ns - frame.capture_time_ns) / 1e6
        self.metrics.observe_latency(latency_ms / 1000)
        switches = sum(1 for s in live.scores.values() if s.pathway_switched)
        with self._lock:
            st = self._stats
            st.frames += 1
            st.processed += 1
            st.consecutive_failures = 0
            st.sums["queue"] += max(0, taken_ns - frame.capture_time_ns) / 1e9
            st.sums["track"] += t1 - t0
            st.sums["publish"] += t2 - t1
            st.sums["overlay"] += overlay_s
            st.latency_ms.append(latency_ms)
            st.recent_latency_ms.append(latency_ms)
            st.frame_times.append(now)
            st.first_frame_t = st.first_frame_t or now
            st.last_frame_t = now
            st.width, st.height = width, height
            st.pathway_switches += switches
            self._state = "running"
            self._snapshot = {
                "objects": live.object_ids,
                "pathways": {str(k): s.pathway_id for k, s in live.scores.items()},
                "seq": frame.seq,
                "frame_index": live.frame_index,
            }
        if recovered:
            log.info("tracker recovered on frame seq %d", frame.seq)
            self._publish_periodic()

    def _publish_lagged(self, lagged: StepResult) -> None:
        meta = self._meta.get(lagged.frame_index)
        if meta is None:  # a frame of an earlier stream this tracker saw: not ours
            return
        self._publisher.publish_masks(  # type: ignore[union-attr]
            lagged, meta, dropped_frames=self._queue.dropped, lag=self._tracker.config.lag
        )

    def _tracker_failed(
        self,
        frame: Frame,
        exc: Exception,
        applying: list[_Command],
        spent_s: float,
    ) -> None:
        """Skip the frame, count it, and after `unhealthy_after` in a row say so.

        Out of GPU memory is one such failure: the caching allocator's free blocks are
        handed back so the next frame has a chance, and the node goes on. A failed
        `Tracker.step` changes nothing, so the prompts it carried were not applied.
        """
        cfg = self.config
        oom = _is_out_of_memory(exc)
        log.error(
            "frame seq %d skipped: tracker failed%s: %s",
            frame.seq,
            " (out of memory)" if oom else "",
            _one_line(exc),
        )
        if oom:
            _release_cached_memory()
        self._last_error = f"frame seq {frame.seq}: {_one_line(exc)}"
        for cmd in applying:
            if cmd.initial:  # nobody to tell: try again with the next frame
                with cmd.lock:
                    cmd.state = "held"
                self._held.append(cmd)
                continue
            self._finish(
                cmd,
                error=f"the tracker failed on frame seq {frame.seq} ({_one_line(exc)}); "
                "the prompt was not applied",
            )
        with self._lock:
            st = self._stats
            st.frames += 1
            st.failed += 1
            st.consecutive_failures += 1
            st.sums["track"] += spent_s
            n = st.consecutive_failures
            if n >= cfg.unhealthy_after:
                self._state = "unhealthy"
        if n == cfg.unhealthy_after:
            log.error("unhealthy: %d consecutive tracker failures", n)
            self._publish_periodic(error=_one_line(exc))

    # -- commands (loop thread) -------------------------------------------------------

    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            with cmd.lock:
                if cmd.state == "cancelled":
                    continue
                cmd.state = "taken"
            try:
                self._execute(cmd)
            except ValueError as exc:
                self._finish(cmd, error=str(exc))
            except Exception as exc:
                log.exception("control request %r failed", cmd.request)
                self._finish(cmd, error=f"internal error: {_one_line(exc)}")

    def _execute(self, cmd: _Command) -> None:
        req = cmd.request
        tracker = self._tracker
        if isinstance(req, AddObject):
            oid = req.object_id
            if oid is None:
                used = set(tracker.object_ids) | {c.object_id for c in self._held}
                oid = next(i for i in range(1, len(used) + 2) if i not in used)
            cmd.object_id = oid
            ids = set(tracker.object_ids) | {c.object_id for c in self._held}
            if oid not in ids and len(ids) >= self.config.max_objects:
                raise ValueError(
                    f"the node tracks at most {self.config.max_objects} objects (counting "
                    "prompts waiting for a frame); remove one first"
                )
            size = (self._stats.height, self._stats.width)
            if size[0] is not None and size[1] is not None:
                # Refuse at once what cannot fit the current frame; re-checked on the
                # frame it is applied to (the size may change).
                try:
                    req.prompt.validate(size[0], size[1])
                except ValueError as exc:
                    raise ValueError(f"object {oid}: {exc}") from None
            # One held prompt per object: a newer one replaces it (bounds the backlog
            # while no frame comes, however many requests arrive).
            for older in [c for c in self._held if c.object_id == oid]:
                self._held.remove(older)
                self._finish(older, error="superseded by a later prompt for the same object")
            with cmd.lock:
                cmd.state = "held"
            self._held.append(cmd)
        elif isinstance(req, RemoveObject):
            oid = req.object_id
            held = [c for c in self._held if c.object_id == oid]
            if oid not in tracker.object_ids and not held:
                raise ValueError(f"unknown object id {oid}; tracked: {tracker.object_ids}")
            if oid in tracker.object_ids:
                tracker.remove_object(oid)
            self._cancel_held(held, f"object {oid} was removed before its prompt was applied")
            self._set_objects(tracker.object_ids)
            self._finish(cmd, reply={"object_id": oid})
        elif isinstance(req, Reset):
            removed = tracker.object_ids
            tracker.reset()
            self._cancel_held(list(self._held), "cancelled by a reset")
            self._set_objects([])
            self._finish(cmd, reply={"removed": removed})
        elif isinstance(req, SetOption):
            if req.key != "num_pathways":
                raise ValueError(f"unknown option {req.key!r}")
            dataclasses.replace(tracker.config, num_pathways=req.value)  # validates
            self._pending_pathways = int(req.value)
            self._finish(
                cmd,
                reply={
                    "key": req.key,
                    "value": req.value,
                    "num_pathways": tracker.config.num_pathways,
                    "pending_num_pathways": req.value,
                    "applies": "from the frame the next add_object is applied to, to every object",
                },
            )
        else:  # Status never comes here
            raise ValueError(f"unsupported request {type(req).__name__}")

    def _take_prompts(self, height: int, width: int, seq: int) -> list[_Command]:
        """The held prompts that fit this frame; the others are refused (or fatal when
        they came from the config)."""
        applying: dict[int, _Command] = {}
        for cmd in self._held:
            try:
                cmd.prompt.validate(height, width)  # type: ignore[union-attr]
            except ValueError as exc:
                msg = f"object {cmd.object_id}: {exc} (frame seq {seq})"
                if cmd.initial:
                    self._fatal = f"initial prompt for {msg}"
                self._finish(cmd, error=msg)
                continue
            previous = applying.pop(cmd.object_id, None)  # type: ignore[arg-type]
            if previous is not None:
                self._finish(previous, error="superseded by a later prompt for the same object")
            with cmd.lock:
                cmd.state = "applying"
            applying[cmd.object_id] = cmd  # type: ignore[index]
        self._held = []
        return list(applying.values())

    def _cancel_held(self, cmds: list[_Command], why: str) -> None:
        for cmd in cmds:
            self._held.remove(cmd)
            self._finish(cmd, error=why)

    def _finish(
        self, cmd: _Command, reply: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        cmd.finish(reply, error)
        if error is not None and cmd.detached:
            # Nobody waits for this reply any more: say it in the log and on status.
            log.error("prompt for object %s not applied: %s", cmd.object_id, error)
            self._publish_status("error", error=f"prompt for object {cmd.object_id}: {error}")

    def _set_objects(self, ids: list[int]) -> None:
        with self._lock:
            self._snapshot = {
                **self._snapshot,
                "objects": list(ids),
                "pathways": {
                    k: v for k, v in self._snapshot.get("pathways", {}).items() if int(k) in ids
                },
            }

    # -- control (control server thread) ---------------------------------------------

    def handle(self, req: Request) -> dict[str, Any]:
        """ControlHandler: answer `status` from a snapshot; hand everything else to the
        loop and wait for its outcome (see the module docstring)."""
        if isinstance(req, Status):
            return self.status()
        if not self._accepting:
            raise ValueError(f"the node is {self.state}; nothing changed")
        cmd = _Command(req)
        self._commands.put(cmd)
        timeout = self.config.control_timeout_s
        if cmd.done.wait(timeout):
            return cmd.outcome()
        with cmd.lock:
            if cmd.state == "queued":
                cmd.state = "cancelled"
                raise ValueError(
                    f"the node did not take the request within {timeout:g} s (busy on a "
                    "frame); nothing changed"
                )
            if cmd.state == "held":
                cmd.detached = True
                return {
                    "object_id": cmd.object_id,
                    "applied": False,
                    "queued": True,
                    "note": f"no frame arrived within {timeout:g} s; the prompt will be "
                    "applied to the next frame (failures then go to the log and the "
                    "status topic)",
                }
        # Being applied on the current frame: that ends within one tracker step.
        if cmd.done.wait(60.0):
            return cmd.outcome()
        raise ValueError("the tracker step applying this prompt did not finish within 60 s")

    def status(self) -> dict[str, Any]:
        """The node's state, counters, timings and objects (thread-safe)."""
        with self._lock:
            st = self._stats
            times = list(st.frame_times)
            recent = list(st.recent_latency_ms)
            fps = None
            if len(times) >= 2 and times[-1] > times[0]:
                fps = (len(times) - 1) / (times[-1] - times[0])
            body: dict[str, Any] = {
                "state": self._state,
                "stream_id": self.config.stream_id,
                "source": self._source_name,
                "source_state": self._source_state,
                # "software", the hardware device decoding, or None (not yet / no decoder)
                "decode_path": getattr(self._source, "decode_path", None),
                "width": st.width,
                "height": st.height,
                "frames": st.frames,
                "frames_processed": st.processed,
                "failed_frames": st.failed,
                "consecutive_failures": st.consecutive_failures,
                "last_error": self._last_error,
                "fps": _round(fps),
                "latency_ms": _round(_percentile(recent, 50), 1),
                "latency_p95_ms": _round(_percentile(recent, 95), 1),
                "dropped_frames": self._queue.dropped,
                "dropped_messages": self._publisher.dropped_messages if self._publisher else 0,
                "reconnects": st.reconnects,
                "source_disconnects": st.source_disconnects,
                "resolution_changes": st.resolution_changes,
                "pathway_switches": st.pathway_switches,
                "objects": list(self._snapshot.get("objects", [])),
                "pathways": dict(self._snapshot.get("pathways", {})),
                "num_pathways": self._tracker.config.num_pathways,
                "pending_num_pathways": self._pending_pathways,
                "lag": self._tracker.config.lag,
                "held_prompts": len(self._held),
                "uptime_s": _round(
                    None if self._started_t is None else time.monotonic() - self._started_t, 1
                ),
                "timings_ms": self._timings_locked(),
            }
        return body

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, a small JSON body) for ``/healthz``: healthy while the node runs or
        waits for its first frame, the tracker is not failing frame after frame, and a
        frame came within ``health_grace_s`` (of the last frame, or of the start)."""
        now = time.monotonic()
        with self._lock:
            state = self._state
            st = self._stats
            last_frame = st.last_taken_t
            failures = st.consecutive_failures
            started = self._started_t
        if self._stop.is_set() and state in ("waiting", "running", "unhealthy"):
            state = "stopping"
        reasons: list[str] = []
        if state not in ("waiting", "running", "unhealthy"):
            reasons.append(f"the node is {state}")
        elif state == "unhealthy":
            reasons.append(f"the tracker failed on the last {failures} frames ({self._last_error})")
        since = last_frame if last_frame is not None else started
        idle = None if since is None else now - since
        grace = self.config.health_grace_s
        if idle is not None and idle > grace and state != "stopped":
            what = "no frame yet" if last_frame is None else "no frame"
            reasons.append(f"{what} for {idle:.0f} s (> {grace:g} s; source {self._source_state})")
        body: dict[str, Any] = {
            "status": "ok" if not reasons else "unhealthy",
            "state": state,
            "stream_id": self.config.stream_id,
            "source_state": self._source_state,
            "seconds_since_frame": None if idle is None else round(idle, 1),
            "consecutive_failures": failures,
        }
        if reasons:
            body["reasons"] = reasons
        return not reasons, body

    def _timings_locked(self) -> dict[str, Any]:
        st = self._stats
        n = max(1, st.processed + st.failed)
        out = {k: round(1000 * v / n, 2) for k, v in st.sums.items()}
        out["decode"] = round(1000 * st.decode_s / st.decoded, 2) if st.decoded else None
        track = st.sums["track"]
        out["overhead"] = round((st.decode_s + st.sums["publish"]) / track, 4) if track else None
        return out

    # -- status messages (loop thread) -------------------------------------------------

    def _publish_status(self, state: str, **fields: Any) -> None:
        if self._publisher is None:
            return
        try:
            self._publisher.publish_status(state, **fields)
        except (ValueError, TypeError) as exc:
            log.error("status %s not published: %s", state, _one_line(exc))

    def _publish_periodic(self, **extra: Any) -> None:
        s = self.status()
        if s["state"] == "unhealthy":
            state = "unhealthy"
            extra.setdefault("error", s["last_error"])
        elif not self._ever_frame or not self._source_up:
            state = "waiting"
        else:
            state = "running"
        fields = {
            k: s[k]
            for k in (
                "width",
                "height",
                "fps",
                "latency_ms",
                "dropped_frames",
                "frames_processed",
                "failed_frames",
                "objects",
                "num_pathways",
                "source_state",
                "decode_path",
                "timings_ms",
            )
        }
        fields.update(extra)
        self._publish_status(state, **fields)

    # -- shutdown ---------------------------------------------------------------------

    def _shutdown(self) -> None:
        self._accepting = False
        with self._lock:
            self._state = "stopping"
        try:
            self._source.stop()
        except Exception as exc:
            log.warning("stopping the source failed: %s", _one_line(exc))
        self._queue.close()
        if self._tracker.config.lag > 0 and self._fatal is None:
            try:
                for result in self._tracker.flush():
                    self._publish_lagged(result)
            except Exception as exc:
                log.error("flushing lagged results failed: %s", _one_line(exc))
        while True:  # nobody will execute these any more
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                break
            cmd.finish(error="the node stopped; nothing changed")
        for cmd in self._held:
            cmd.finish(error="the node stopped before a frame arrived")
        self._held = []
        if self._control is not None:
            self._control.stop()
        if self._overlay is not None:
            try:
                self._overlay.close()
            except Exception as exc:
                log.error("finishing the overlay failed: %s", _one_line(exc))
        summary = self.summary()
        with self._lock:
            self._state = "error" if self._fatal else "stopped"
        self._summary = summary
        final = {k: v for k, v in summary.items() if k not in ("stream_id",)}
        if self._fatal:
            self._publish_status("error", error=self._fatal, **final)
        self._publish_status("stopped", **final)
        self._close_sockets()

    def _close_sockets(self) -> None:
        """Close every socket the node bound; idempotent."""
        if self._control is not None:
            self._control.stop()
        if self._publisher is not None:
            self._publisher.close()
        if self._http is not None:
            try:
                self._http.stop()
            except Exception as exc:
                log.warning("stopping the HTTP endpoint failed: %s", _one_line(exc))
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._zmq_context is not None:
            ctx, self._zmq_context = self._zmq_context, None
            if self._control is not None and self._control.alive:
                log.warning("control thread still busy: leaving its ZeroMQ context open")
            else:
                ctx.term()  # every socket is closed: returns at once (after the linger)

    def summary(self) -> dict[str, Any]:
        """Totals for the run so far: frames, fps, latency percentiles, timings and the
        node overhead ((decode CPU + publish) / tracker time)."""
        with self._lock:
            st = self._stats
            lat = list(st.latency_ms)
            span = (
                st.last_frame_t - st.first_frame_t
                if st.first_frame_t is not None and st.last_frame_t is not None
                else 0.0
            )
            fps = (st.processed - 1) / span if span > 0 and st.processed > 1 else None
            return {
                "stream_id": self.config.stream_id,
                "frames": st.frames,
                "frames_processed": st.processed,
                "failed_frames": st.failed,
                "dropped_frames": self._queue.dropped,
                "dropped_messages": self._publisher.dropped_messages if self._publisher else 0,
                "fps": _round(fps),
                "latency_ms": _round(_percentile(lat, 50), 1),
                "latency_p95_ms": _round(_percentile(lat, 95), 1),
                "decoded_frames": st.decoded,
                "decode_s": round(st.decode_s, 4),
                "track_s": round(st.sums["track"], 4),
                "publish_s": round(st.sums["publish"], 4),
                "overlay_s": round(st.sums["overlay"], 4),
                "timings_ms": self._timings_locked(),
                "node_overhead": self._timings_locked()["overhead"],
                "overlay_frames": self._overlay.frames if self._overlay else 0,
            }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few human lines (CLI and demo)."""
    t = summary.get("timings_ms") or {}

    def ms(v: Any) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    overhead = summary.get("node_overhead")
    lines = [
        f"frames: {summary['frames_processed']} tracked, {summary['failed_frames']} failed, "
        f"{summary['dropped_frames']} dropped by the queue policy; "
        f"fps {summary['fps'] if summary['fps'] is not None else 'n/a'}",
        f"latency capture->publish: p50 {ms(summary['latency_ms'])}, "
        f"p95 {ms(summary['latency_p95_ms'])}; dropped messages {summary['dropped_messages']}",
        f"per frame: decode {ms(t.get('decode'))} (CPU, {summary['decoded_frames']} frames), "
        f"queue {ms(t.get('queue'))}, tracker {ms(t.get('track'))}, "
        f"publish {ms(t.get('publish'))}, overlay {ms(t.get('overlay'))}",
        "node overhead = (decode + publish) / tracker time = "
        + ("n/a" if overhead is None else f"{100 * overhead:.2f} %")
        + f" ({summary['decode_s']:.3f} s + {summary['publish_s']:.3f} s) / "
        f"{summary['track_s']:.3f} s",
    ]
    return "\n".join(lines)
