"""A control request on its way from the control thread to the loop, and its outcome."""

from __future__ import annotations

import enum
import threading
from typing import Any

from sam2long_stream.control import Request
from sam2long_stream.tracker.config import Prompt


class CommandState(enum.Enum):
    """Where a command is. Only the loop moves it past QUEUED; DONE is final.

    QUEUED (in the node's command queue) -> TAKEN (the loop carries it out between
    frames) | HELD (an add_object waiting for its stream's next frame) -> APPLYING (on
    the frame being tracked) -> DONE. A HELD command goes back to HELD when the tracker
    failed on that frame and the prompt came from the config (nobody to tell).
    """

    QUEUED = "queued"
    TAKEN = "taken"
    HELD = "held"
    APPLYING = "applying"
    DONE = "done"


class Command:
    """One request (or an initial prompt, ``request`` None) and its outcome. The control
    thread waits on `done`; when it stops waiting (`detach`), failures go to the log and
    the status topic instead of a reply."""

    def __init__(
        self,
        request: Request | None,
        stream_id: str,
        *,
        prompt: Prompt | None = None,
        object_id: int | None = None,
    ) -> None:
        self.request = request
        self.stream_id = stream_id
        self.prompt: Prompt | None = (
            prompt if prompt is not None else getattr(request, "prompt", None)
        )
        self.object_id = object_id if object_id is not None else getattr(request, "object_id", None)
        self.initial = request is None  # a prompt from the config
        self.payload: Any = None  # what the control thread prepared (add_stream: the stream)
        self.seq: int | None = None  # the frame it is being applied with (APPLYING)
        self._lock = threading.Lock()
        self._state = CommandState.HELD if self.initial else CommandState.QUEUED
        self._detached = False
        self.done = threading.Event()
        self.reply: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def state(self) -> CommandState:
        with self._lock:
            return self._state

    def move(self, state: CommandState, seq: int | None = None) -> None:
        """Loop thread: advance the state (never out of DONE)."""
        with self._lock:
            if self._state is not CommandState.DONE:
                self._state = state
                if seq is not None:
                    self.seq = seq

    def detach(self) -> tuple[CommandState, int | None]:
        """Control thread: stop waiting; returns the state it was in then (DONE: the
        outcome is ready after all, read it)."""
        with self._lock:
            if self._state is not CommandState.DONE:
                self._detached = True
            return self._state, self.seq

    def finish(self, reply: dict[str, Any] | None = None, error: str | None = None) -> bool:
        """Loop thread: record the outcome once; True when nobody waits for it any more
        (the caller reports a failure elsewhere)."""
        with self._lock:
            if self._state is CommandState.DONE:
                return False
            self._state = CommandState.DONE
            self.reply, self.error = reply or {}, error
            detached = self._detached
        self.done.set()
        return detached

    def outcome(self) -> dict[str, Any]:
        """The reply's fields, or ValueError with the reason it failed."""
        if self.error is not None:
            raise ValueError(self.error)
        return dict(self.reply or {})
