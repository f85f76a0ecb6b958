"""Control requests, on the control server's thread: what it may touch and how long it
waits.

* ``status``: a snapshot, at once.
* ``set``, ``remove_object``, ``reset``: checked against the stream's
  object ledger (or the node's streams) and recorded at once; the loop applies them
  between frames, in the order the requests came. The reply says so (``applies``).
* ``add_object``: checked at once (the ledger, the last frame's size), then handed to
  the loop, which applies it with the stream's next frame; the reply waits for that
  frame for `wait_bound` seconds: at least ``control_wait_s`` (2.5 s), 3x the recent
  p95 tick time when frames are slow, never more than `MAX_WAIT_S` (8 s: the
  ControlClient waits 10 s). Past the bound the prompt stays queued and the reply says
  ``"applied": false, "queued": true``; its outcome then goes to the log and the status
  topic. So a slow frame never makes a request fail.
* ``add_stream``: the source is opened (not started) here, and a file probed, so a bad
  URL or file is refused at once; the loop adds and starts it, within the same bound.
* ``remove_stream``: the loop removes it between frames; the reply waits for that,
  within the same bound, so once it says ``"removed": true`` the id is free. Until the
  loop is done, every request naming the id says it is being removed.

What this needs from the node is the small `ControlledNode` protocol below (the `Node`
provides it), so this module does not depend on the node's own.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from sam2long_stream.control import (
    AddObject,
    AddStream,
    AddZone,
    RemoveObject,
    RemoveStream,
    RemoveZone,
    Request,
    Reset,
    SetOption,
    Status,
)
from sam2long_stream.node.commands import Command, CommandState
from sam2long_stream.node.events import zone_request
from sam2long_stream.node.stream import Stream
from sam2long_stream.redact import redact_text
from sam2long_stream.settings import NodeConfig, StreamConfig

log = logging.getLogger(__name__)

MAX_WAIT_S = 8.0  # below ControlClient's default timeout (10 s), so the reply arrives
BETWEEN_FRAMES = "between frames: frames the node starts tracking from now on"
REMOVED = "between frames: the stream's source stops, its last status is stopped"


def wait_bound(minimum_s: float, recent_p95_s: float | None) -> float:
    """How long an add_object reply waits for its frame (see the module docstring)."""
    slow = 0.0 if recent_p95_s is None else 3.0 * recent_p95_s
    return min(MAX_WAIT_S, max(minimum_s, slow))


class ControlledNode(Protocol):
    """What the control thread may ask of the node; every call is thread-safe."""

    config: NodeConfig
    device: str

    @property
    def state(self) -> str: ...

    @property
    def accepting(self) -> bool:
        """Whether requests that change something are taken (while the node runs)."""
        ...

    def status(self, stream_id: str | None = None) -> dict[str, Any]: ...

    def find(self, stream_id: str | None) -> Stream:
        """The stream a request names, or the only one; ValueError otherwise."""
        ...

    def submit(self, cmd: Command) -> None:
        """Hand a checked request to the loop."""
        ...

    def recent_tick_p95_s(self) -> float | None: ...

    def reserve_stream_id(self, stream_id: str | None) -> str:
        """Hold an id (or the first free camN) for a stream being built; ValueError if taken."""
        ...

    def release_stream_id(self, stream_id: str) -> None: ...

    def new_stream(self, config: StreamConfig) -> Stream:
        """A stream for add_stream, its source opened; ValueError/OSError for a bad one."""
        ...

    def mark_removing(self, stream_id: str) -> None:
        """Hide a stream until the loop removes it; ValueError for an unknown one."""
        ...


class RequestHandler:
    """The node's `ControlHandler` (control thread only)."""

    def __init__(self, node: ControlledNode) -> None:
        self._node = node

    def frame_size(self, stream: str | None) -> tuple[int, int] | None:
        try:
            return self._node.find(stream).frame_size()
        except ValueError:  # no such stream: the request is refused when handled
            return None

    def handle(self, req: Request) -> dict[str, Any]:
        node = self._node
        if isinstance(req, Status):
            return node.status(req.stream)
        if not node.accepting:
            raise ValueError(f"the node is {node.state}; nothing changed")
        if isinstance(req, AddStream):
            return self._add_stream(req)
        if isinstance(req, RemoveStream):
            return self._remove_stream(req)
        s = node.find(req.stream)
        if isinstance(req, AddObject):
            return self._add_object(s, req)
        if isinstance(req, AddZone | RemoveZone):
            return zone_request(s, req)  # track events' zones (issue #19)
        if isinstance(req, RemoveObject):
            s.record_remove(req.object_id)  # ValueError: unknown id
            self._enqueue(Command(req, s.id, object_id=req.object_id), detach=True)
            return {"object_id": req.object_id, "stream": s.id, "applies": BETWEEN_FRAMES}
        if isinstance(req, Reset):
            removed = s.record_reset()
            self._enqueue(Command(req, s.id), detach=True)
            return {"removed": removed, "stream": s.id, "applies": BETWEEN_FRAMES}
        if isinstance(req, SetOption):
            if req.key != "num_pathways":
                raise ValueError(f"unknown option {req.key!r}")
            dataclasses.replace(node.config.tracker, num_pathways=req.value)  # validates
            s.record_pathways(int(req.value))
            current = s.status(node.device).num_pathways
            return {
                "key": req.key,
                "value": req.value,
                "stream": s.id,
                "num_pathways": current,
                "pending_num_pathways": req.value,
                "applies": "from the frame the next add_object is applied to, to every "
                "object of the stream",
            }
        raise ValueError(f"unsupported request {type(req).__name__}")

    # -- helpers ------------------------------------------------------------------------

    def _enqueue(self, cmd: Command, detach: bool = False) -> None:
        if detach:
            cmd.detach()
        self._node.submit(cmd)

    def _bound(self) -> float:
        node = self._node
        return wait_bound(node.config.control_wait_s, node.recent_tick_p95_s())

    def _wait(self, cmd: Command) -> tuple[bool, CommandState, int | None, float]:
        """Wait for the loop within the bound; (done, state then, seq, bound)."""
        bound = self._bound()
        if cmd.done.wait(bound):
            return True, CommandState.DONE, None, bound
        state, seq = cmd.detach()
        return state is CommandState.DONE, state, seq, bound

    def _add_object(self, s: Stream, req: AddObject) -> dict[str, Any]:
        size = s.frame_size()
        if size is not None:
            # Refuse at once what cannot fit the current frame; re-checked on the frame
            # it is applied to (the size may change).
            try:
                req.prompt.validate(*size)
            except ValueError as exc:
                which = "" if req.object_id is None else f" {req.object_id}"
                raise ValueError(f"object{which}: {exc}") from None
        oid = s.claim(req.object_id, s.config.max_objects)  # ValueError: stream full
        cmd = Command(req, s.id, object_id=oid)
        self._enqueue(cmd)
        done, state, seq, bound = self._wait(cmd)
        if done:
            return cmd.outcome()
        note = (
            f"being applied with frame seq {seq}; that frame took longer than {bound:.1f} s"
            if state is CommandState.APPLYING
            else f"no frame was tracked within {bound:.1f} s"
        )
        return {
            "object_id": oid,
            "stream": s.id,
            "applied": False,
            "queued": True,
            "note": f"{note}; the prompt is applied to the next frame (failures then go to "
            "the log and the status topic)",
        }

    def _add_stream(self, req: AddStream) -> dict[str, Any]:
        node = self._node
        sid = node.reserve_stream_id(req.stream)
        try:
            template = node.config.streams[0]
            config = dataclasses.replace(
                template,
                source=req.source,
                stream_id=sid,
                prompts=dict(req.prompts),
                max_frames=None,
                overlay_out=None,
                overlay_png=None,
                zones=(),
                source_options={},
            )
            stream = node.new_stream(config)
        except (ValueError, OSError) as exc:
            node.release_stream_id(sid)
            text = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise ValueError(
                f"stream {sid}: {text or type(exc).__name__}; nothing changed"
            ) from None
        cmd = Command(req, sid)
        cmd.payload = stream
        self._enqueue(cmd)
        done, _, _, bound = self._wait(cmd)
        if done:
            return cmd.outcome()
        return {
            "stream": sid,
            "source": stream.name,
            "started": False,
            "queued": True,
            "note": f"the node did not get to it within {bound:.1f} s; it starts the stream "
            "between its next frames",
        }

    def _remove_stream(self, req: RemoveStream) -> dict[str, Any]:
        """Reply once the stream is gone, so its id is free for add_stream at once; past
        the wait bound, say that the removal is still under way instead."""
        sid = req.stream
        self._node.mark_removing(sid)
        cmd = Command(req, sid)
        self._enqueue(cmd)
        done, _, _, bound = self._wait(cmd)
        if done:
            return {**cmd.outcome(), "applies": REMOVED}
        return {
            "stream": sid,
            "removed": False,
            "removing": True,
            "applies": REMOVED,
            "note": f"the node did not finish removing it within {bound:.1f} s; until it "
            f"has, status and add_stream say {sid!r} is being removed (retry in a moment)",
        }
