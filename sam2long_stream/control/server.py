"""The control socket: a REP server on its own thread that turns JSON requests into
typed requests for a handler and always answers, whatever arrives.

Oversized requests: up to ``max_message_bytes`` is served; larger ones up to twice that
get an error reply; beyond that ZMQ_MAXMSGSIZE makes zmq drop the sender's connection
before the bytes are buffered (the client then times out), so memory stays bounded.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from sam2long_stream.control.protocol import (
    MAX_REQUEST_BYTES,
    ControlError,
    Request,
    decode_request,
    parse_request,
)
from sam2long_stream.transport.wire import dumps_json

if TYPE_CHECKING:
    from sam2long_stream.security import CurveKeys

log = logging.getLogger(__name__)

_POLL_MS = 50  # how often the thread looks at the stop event


class ControlHandler(Protocol):
    """What the node implements. Return the reply's extra fields (``ok`` is added);
    raise ValueError with a clear sentence to refuse a request."""

    def handle(self, req: Request) -> dict[str, Any]: ...

    def frame_size(self, stream: str | None) -> tuple[int, int] | None:
        """The (height, width) of the stream's current frame, None when unknown."""
        ...


def _error(message: str) -> bytes:
    return dumps_json({"ok": False, "error": message})


class ControlServer:
    """Bind a REP socket at once (so a bad address fails in the caller), serve on a
    thread after ``start()``. ``stop()`` returns within about 50 ms plus the time of a
    request being handled, and closes the socket. ``curve`` makes it a CurveZMQ server:
    clients the context's ZAP authenticator refuses never get a reply."""

    def __init__(
        self,
        address: str,
        handler: ControlHandler,
        max_message_bytes: int = MAX_REQUEST_BYTES,
        *,
        context: zmq.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self._handler = handler
        self._curve = curve
        self._max = max_message_bytes
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.requests = 0  # requests answered
        self.errors = 0  # of which answered with ok: false
        self._sock = self._bind(address)
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def _bind(self, address: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self._max + 4096)
        sock.setsockopt(zmq.SNDTIMEO, 1000)
        try:
            if self._curve is not None:
                from sam2long_stream.security import apply_server

                apply_server(sock, self._curve)
            sock.bind(address)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            raise OSError(f"cannot bind control socket to {address}: {e}") from e
        return sock

    def start(self) -> ControlServer:
        if self._thread is not None:
            raise RuntimeError("control server already started")
        self._thread = threading.Thread(target=self._run, name="control-server", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the serving thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        self._stop.set()
        if self._thread is None:
            if not self._sock.closed:
                self._sock.close(linger=0)
            return
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("control server thread still busy after %.1f s", timeout_s)

    def __enter__(self) -> ControlServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving (on the server thread only) ---------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if not self._sock.poll(_POLL_MS, zmq.POLLIN):
                        continue
                    parts = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                except zmq.ZMQError as e:
                    log.error("control socket receive failed (%s); rebinding", e)
                    self._rebind()
                    continue
                reply = self.serve(parts)
                try:
                    self._sock.send(reply)
                except zmq.ZMQError as e:
                    log.error("control reply could not be sent (%s); rebinding", e)
                    self._rebind()
        finally:
            self._sock.close(linger=0)

    def _rebind(self) -> None:
        self._sock.close(linger=0)
        self._sock = self._bind(self.endpoint)

    def serve(self, parts: list[bytes]) -> bytes:
        """One request's frames to its reply bytes; never raises."""
        self.requests += 1
        reply = self._reply(parts)
        if not reply.startswith(b'{"ok":true'):
            self.errors += 1
        return reply

    def _reply(self, parts: list[bytes]) -> bytes:
        if len(parts) != 1:
            return _error(f"a request is one JSON frame, got {len(parts)} frames")
        try:
            req = parse_request(decode_request(parts[0], self._max), self._handler.frame_size)
        except ControlError as e:
            return _error(str(e))
        except Exception:  # a bug must not end the control thread: the node needs it
            log.exception("control request could not be parsed")
            return _error("internal error while reading the request; see the node log")
        try:
            result = self._handler.handle(req)
        except ValueError as e:
            return _error(str(e) or f"{type(req).__name__} refused")
        except Exception:
            log.exception("control handler failed on %r", req)
            return _error(f"internal error while handling {type(req).__name__}; see the node log")
        reply: dict[str, Any] = {"ok": True}
        try:
            reply.update(result or {})
            return dumps_json(reply)
        except (TypeError, ValueError):
            log.exception("control handler returned a reply that is not JSON: %r", reply)
            return _error("internal error: the reply could not be encoded; see the node log")
