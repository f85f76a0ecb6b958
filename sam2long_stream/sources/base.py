"""The source contract the node consumes (`FrameSource`), and `ThreadedSource`, the base
of sources whose whole work is one loop on one thread.

Event contract (what every source promises, and what the node relies on):

* Frames and events arrive through the two callbacks given to `start`, from the
  source's own thread(s); a callback that raises is logged, never fatal to the source.
* ``connected`` (width, height; first frame of each session), ``resolution`` (width,
  height; first frame and each size change), ``disconnected`` (reason; a session that
  delivered frames ended), ``reconnecting`` (attempt, delay_s), ``error`` (message: one
  line, never a traceback) and ``eos`` (frames: how many were delivered).
* A source that stops on its own, for whatever reason (end of file, a decode error, a
  refused connection without reconnect, an unexpected exception), says so: ``error``
  with a message when it failed, then ``eos`` as its very last event. A consumer that
  waits for ``eos`` therefore never waits forever. `ThreadedSource` makes this a
  property of the thread itself, not of each subclass's code paths.
* After `stop` returns no callback is called, and no ``eos`` is sent for a stop the
  consumer asked for.
* Nothing a source shows (events, log lines, errors, ``repr``) contains a secret from
  its URL: they go through `sam2long_stream.redact`.
"""

from __future__ import annotations

import logging
import threading
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from sam2long_stream.redact import redact_text, redact_url
from sam2long_stream.sources.frame import Frame, SourceEvent

log = logging.getLogger(__name__)


FrameCallback = Callable[[Frame], None]
EventCallback = Callable[[SourceEvent], None]


class FrameSource(ABC):
    """A producer of frames running on its own thread(s).

    `start` returns at once; frames and events arrive through the callbacks, called from
    the source's thread, as the module docstring's event contract says. `stop` is
    idempotent and joins the threads.
    """

    @abstractmethod
    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    def request_stop(self) -> None:
        """Ask the source to stop without waiting for it (`stop` still follows): a node
        stopping many streams tells them all first, so none keeps working, and then
        joins each one. The default does nothing (`stop` alone does the job)."""
        return None

    @property
    def label(self) -> str:
        """What this source reads, safe to show: its URL or path, redacted."""
        target = getattr(self, "url", None) or getattr(self, "path", None)
        return redact_url(str(target)) if target else type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r}>"


def safe_event(event: SourceEvent) -> SourceEvent:
    """The event with every string in its detail redacted (a message may quote a URL)."""
    if not any(isinstance(v, str) and "://" in v for v in event.detail.values()):
        return event
    detail = {k: redact_text(v) if isinstance(v, str) else v for k, v in event.detail.items()}
    return SourceEvent(event.kind, detail, event.time_ns)


def one_line(exc: BaseException) -> str:
    """An exception as one short, redacted sentence fragment, for error events."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def log_traceback(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a bug's traceback at ERROR, redacted: exception texts may quote a URL."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logger.error("%s\n%s", redact_text(what), redact_text(trace.rstrip()))


def guarded(callback: FrameCallback | EventCallback) -> Callable[[Any], None]:
    """A consumer's bug must not kill the source's thread: log it and go on."""

    def call(arg: Any) -> None:
        try:
            callback(arg)
        except Exception as exc:
            log_traceback(log, f"source callback {callback!r} failed", exc)

    return call


class ThreadedSource(FrameSource):
    """A source whose whole work is one loop on one thread: subclasses write `_run`,
    which gets guarded callbacks and should return soon after `_stop` is set.

    The thread keeps the event contract whatever `_run` does: an exception escaping it
    becomes an ``error`` event, and when `_run` ends without `stop` having been called
    the last event is ``eos`` (sent here if `_run` did not send it). Events are
    redacted, and none are delivered once `stop` was called.
    """

    thread_name = "source"
    join_timeout_s = 5.0  # how long `stop` waits for the thread

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        if self._thread is not None:
            raise RuntimeError("source already started")
        self._thread = threading.Thread(
            target=self._main,
            args=(guarded(on_frame), guarded(on_event)),
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.join_timeout_s)
            if thread.is_alive():  # blocked in a library call; the daemon thread stays mute
                log.warning("%r: thread did not stop within %g s", self, self.join_timeout_s)

    def _main(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        """The thread: `_run`, then whatever the event contract still asks for."""
        delivered = 0
        ended = False

        def frame(f: Frame) -> None:
            nonlocal delivered
            if not self._stop.is_set():
                delivered += 1
                on_frame(f)

        def event(e: SourceEvent) -> None:
            nonlocal ended
            if not self._stop.is_set() and not ended:
                ended = e.kind == "eos"
                on_event(safe_event(e))

        try:
            self._run(frame, event)
        except Exception as exc:
            log_traceback(log, f"source {self.label} failed", exc)
            message = f"source {self.label} failed: {one_line(exc)}"
            event(SourceEvent("error", {"message": message}))
        finally:
            event(SourceEvent("eos", {"frames": delivered}))

    @abstractmethod
    def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None: ...
