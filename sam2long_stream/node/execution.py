"""Control commands on the loop thread: held prompts taken with a frame, the other
requests applied between frames, and every reply (or, when nobody waits any more, the
log and the status topic).

The control thread (node/control.py) checks and records a request, then `submit`s it;
only the loop executes it, since only the loop may touch the trackers.
"""

from __future__ import annotations

import queue
from typing import Any

from sam2long_stream.control import (
    AddObject,
    AddStream,
    RemoveObject,
    RemoveStream,
    Reset,
)
from sam2long_stream.node.base import log, one_line
from sam2long_stream.node.commands import Command, CommandState
from sam2long_stream.node.events import publish_events
from sam2long_stream.node.membership import Membership
from sam2long_stream.node.stream import Stream
from sam2long_stream.sources import Frame


class Execution(Membership):
    """Commands from the control thread, executed by the loop."""

    @property
    def accepting(self) -> bool:
        """Whether requests that change something are taken (while the node runs)."""
        return self._accepting

    def submit(self, cmd: Command) -> None:
        """Hand a checked request to the loop (any thread)."""
        self._commands.put(cmd)
        self._wake.set()

    def recent_tick_p95_s(self) -> float | None:
        """The p95 of recent tick times (for how long a control reply waits)."""
        with self._lock:
            return self._ticks.recent_p95_s()

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
        if isinstance(req, RemoveStream) and s is not None:
            self._remove_stream(s)  # an ended stream too: that frees its id
            cmd.finish({"stream": s.id, "removed": True})
            log.info("stream %s removed", s.id)
            return
        if s is None or s.finished:
            raise ValueError(f"stream {cmd.stream_id} ended; nothing changed")
        if isinstance(req, AddObject):
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
            publish_events(self._publisher, s, s.tracks.end([oid], "removed"))
            s.tracked_changed(s.tracker.object_ids)
            cmd.finish({"object_id": oid})
        elif isinstance(req, Reset):
            s.tracker.reset()
            self._cancel_held(s, list(s.held), "reset")
            publish_events(self._publisher, s, s.tracks.end(None, "reset"))
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
