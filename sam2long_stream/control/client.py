"""Client for the control socket: send prompts and settings to a running node.

    from sam2long_stream.control import ControlClient
    with ControlClient("tcp://127.0.0.1:5557") as c:
        c.add_object(1, box=[10, 20, 200, 180])

``request`` returns the reply dict as is; the helpers raise ControlError when the reply
says ``ok: false``. A timeout raises TimeoutError and leaves the client usable.

With a node of several streams, pass ``stream="cam1"`` to the helpers (or give the
client a default ``stream``); with one stream it may be left out.

The default timeout (10 s) is longer than the most the node waits before it answers
(8 s, see node/control.py), so a slow frame gives a "queued" reply, not a timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import zmq

from sam2long_stream.control.protocol import DEFAULT_ADDRESS, ControlError
from sam2long_stream.limits import quote
from sam2long_stream.security import apply_client, client_keys
from sam2long_stream.transport.wire import dumps_json, rle_from_mask

DEFAULT_TIMEOUT_S = 10.0  # > node.control.MAX_WAIT_S: the node's reply always comes first
MAX_REPLY_BYTES = 16 << 20  # replies are small JSON objects; anything bigger is refused


class ControlClient:
    """A REQ socket with a timeout. A REQ socket that timed out is stuck waiting for its
    reply, so it is replaced by a fresh one. Safe to share between threads (one request
    at a time).

    CurveZMQ: ``curve_secret`` is this client's ``.key_secret`` file, ``curve_server`` the
    node's public ``.key`` file. A node that does not accept the key never answers: the
    request raises TimeoutError."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        context: zmq.Context | None = None,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_server: str | os.PathLike[str] | None = None,
        stream: str | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.stream = stream  # the helpers' default "stream" field
        self._keys = client_keys(
            None if curve_secret is None else str(curve_secret),
            None if curve_server is None else str(curve_server),
        )
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.REQ)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
            if self._keys is not None:
                apply_client(sock, self._keys)
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            why = zmq.strerror(exc.errno) if exc.errno else str(exc)  # str(exc) has the address
            raise ValueError(f"cannot connect to {quote(self.address)}: {why}") from None
        return sock

    def request(
        self, req: Mapping[str, Any] | bytes | str, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Send one request (a dict, or raw JSON bytes/str) and return the reply dict."""
        data = req if isinstance(req, bytes) else req.encode() if isinstance(req, str) else None
        if data is None:
            data = dumps_json(req)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._sock.closed:
                raise RuntimeError("control client is closed")
            deadline = time.monotonic() + timeout
            try:
                self._sock.send(data, zmq.NOBLOCK)
            except zmq.Again:  # no connection yet: REQ cannot queue; wait for one
                if not self._sock.poll(int(timeout * 1000), zmq.POLLOUT):
                    self._reset()
                    raise TimeoutError(f"no control server at {self.address}") from None
                self._sock.send(data, zmq.NOBLOCK)
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait_ms, zmq.POLLIN):
                self._reset()
                raise TimeoutError(f"no reply from {self.address} within {timeout:g} s")
            raw = self._sock.recv()
        try:
            reply = json.loads(raw)
        except ValueError as e:
            raise ControlError(f"reply is not valid JSON: {e}") from None
        if not isinstance(reply, dict) or "ok" not in reply:
            raise ControlError(f"reply is not a control reply: {raw[:100]!r}")
        return reply

    def _reset(self) -> None:
        self._sock.close(linger=0)
        self._sock = self._connect()

    def _checked(self, req: dict[str, Any], stream: str | None = None) -> dict[str, Any]:
        stream = stream if stream is not None else self.stream
        if stream is not None and "stream" not in req:
            req = {**req, "stream": stream}
        return _ok(self.request(req))

    def add_object(
        self,
        object_id: int | None = None,
        *,
        box: Sequence[float] | None = None,
        points: Sequence[Sequence[float]] | None = None,
        labels: Sequence[int] | None = None,
        mask: np.ndarray | None = None,
        frame_seq: int | None = None,
        stream: str | None = None,
    ) -> dict[str, Any]:
        """Prompt an object; the reply carries the ``object_id`` used (the node picks one
        when None). ``mask`` is a bool (H, W) array, sent as COCO RLE."""
        req: dict[str, Any] = {"op": "add_object"}
        if object_id is not None:
            req["object_id"] = int(object_id)
        if box is not None:
            req["box"] = [float(v) for v in box]
        if points is not None:
            req["points"] = [[float(x), float(y)] for x, y in points]
        if labels is not None:
            req["labels"] = [int(v) for v in labels]
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            req["mask"] = {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle_from_mask(m)}
        if frame_seq is not None:
            req["frame_seq"] = int(frame_seq)
        return self._checked(req, stream)

    def remove_object(self, object_id: int, *, stream: str | None = None) -> dict[str, Any]:
        return self._checked({"op": "remove_object", "object_id": int(object_id)}, stream)

    def reset(self, *, stream: str | None = None) -> dict[str, Any]:
        """Forget every object (of the stream)."""
        return self._checked({"op": "reset"}, stream)

    def status(self, *, stream: str | None = None) -> dict[str, Any]:
        return self._checked({"op": "status"}, stream)

    def set(self, key: str, value: Any, *, stream: str | None = None) -> dict[str, Any]:
        """Change a runtime option (see protocol.SETTABLE)."""
        return self._checked({"op": "set", "key": key, "value": value}, stream)

    def add_stream(
        self,
        source: str,
        stream: str | None = None,
        prompts: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Start tracking one more camera; the reply carries its ``stream`` id.
        ``prompts``: object id -> add_object fields (``box``, ``points``/``labels``)."""
        req: dict[str, Any] = {"op": "add_stream", "source": source}
        if stream is not None:
            req["stream"] = stream
        if prompts:
            req["prompts"] = [{"object_id": int(k), **dict(v)} for k, v in prompts.items()]
        return _ok(self.request(req))

    def add_zone(
        self,
        name: str,
        polygon: list[list[float]] | list[tuple[float, float]],
        *,
        enter: float | None = None,
        leave: float | None = None,
        stream: str | None = None,
    ) -> dict[str, Any]:
        """Add or replace a named polygon zone (frame pixels) for zone events."""
        req: dict[str, Any] = {"op": "add_zone", "name": name}
        req["polygon"] = [[float(x), float(y)] for x, y in polygon]
        if enter is not None:
            req["enter"] = enter
        if leave is not None:
            req["leave"] = leave
        return self._checked(req, stream)

    def remove_zone(self, name: str, *, stream: str | None = None) -> dict[str, Any]:
        return self._checked({"op": "remove_zone", "name": name}, stream)

    def remove_stream(self, stream: str) -> dict[str, Any]:
        """Stop one stream; the others go on."""
        return _ok(self.request({"op": "remove_stream", "stream": stream}))

    def close(self) -> None:
        with self._lock:
            if not self._sock.closed:
                self._sock.close(linger=0)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ok(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "request refused")))
    return reply
