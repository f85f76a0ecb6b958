"""The source contract the node consumes (`FrameSource`), and `ThreadedSource`, the base
of sources whose whole work is one loop on one thread."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from sam2long_stream.sources.frame import Frame, SourceEvent

log = logging.getLogger(__name__)


FrameCallback = Callable[[Frame], None]
EventCallback = Callable[[SourceEvent], None]


class FrameSource(ABC):
    """A producer of frames running on its own thread(s).

    `start` returns at once; frames and events arrive through the callbacks, called from
    the source's thread. `stop` is idempotent and joins the threads.
    """

    @abstractmethod
    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...


def guarded(callback: FrameCallback | EventCallback) -> Callable[[Any], None]:
    """A consumer's bug must not kill the source's thread: log it and go on."""

    def call(arg: Any) -> None:
        try:
            callback(arg)
        except Exception:
            log.exception("source callback %r failed", callback)

    return call


class ThreadedSource(FrameSource):
    """A source whose whole work is one loop on one thread: subclasses write `_run`,
    which gets guarded callbacks and should return soon after `_stop` is set."""

    thread_name = "source"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        if self._thread is not None:
            raise RuntimeError("source already started")
        self._thread = threading.Thread(
            target=self._run,
            args=(guarded(on_frame), guarded(on_event)),
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    @abstractmethod
    def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None: ...
