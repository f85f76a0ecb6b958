"""Subscriber SDK: receive masks and status from a sam2long-stream node.

Light on purpose: pyzmq, numpy and :mod:`sam2long_stream.transport.wire` only, no torch::

    from sam2long_stream.transport import Subscriber
    for msg in Subscriber("tcp://127.0.0.1:5556"):
        print(msg.seq, {i: m.sum() for i, m in msg.masks.items()})
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator

import zmq

from sam2long_stream.limits import quote
from sam2long_stream.security import apply_client, client_keys
from sam2long_stream.transport.wire import (
    EventMessage,
    MasksMessage,
    Message,
    StatusMessage,
    WireFormatError,
    check_stream_id,
    decode,
    loads_json,
)

__all__ = [
    "EventMessage",
    "MasksMessage",
    "Message",
    "StatusMessage",
    "Subscriber",
    "WireFormatError",
]

log = logging.getLogger(__name__)

_POLL_SLICE_MS = 200  # blocking waits poll in slices so Ctrl-C is noticed promptly


class Subscriber:
    """A SUB socket connected to a node, yielding decoded messages.

    ``topics`` are prefixes: "masks/" (every stream), "masks-lagged/", "status/", or
    a full topic. With ``stream_id``, each prefix ending in "/" gets the id appended and
    messages of other streams are dropped (a prefix alone would also match "cam10" for
    "cam1"). Messages that fail validation are skipped and counted in ``bad_messages``.

    ``conflate=True`` keeps only the newest message: each ``recv`` drains what is queued
    and returns the last one (``skipped`` counts the rest). ZMQ_CONFLATE itself cannot be
    used, it breaks multipart messages.

    ``missed`` counts the masks and event messages the node published on a subscribed
    topic that never arrived here (gaps in the header's ``pub_seq`` / ``event_seq``, after
    the first message of each topic): this subscriber's own losses when it reads too
    slowly. Messages dropped by ``conflate`` arrived and are not counted there. A
    ``pub_seq`` that goes back means the node restarted; counting starts over from it.

    CurveZMQ: ``curve_secret`` is this client's ``.key_secret`` file and ``curve_server``
    the node's public ``.key`` file (both or neither). A node that does not accept the
    key sends nothing: ``recv`` just times out.

    ``max_message_bytes`` caps each received frame (ZMQ_MAXMSGSIZE): a peer that sends
    more is disconnected before the bytes are buffered. The default fits any mask of the
    wire format's largest frame size in ``bits`` and any realistic RLE.
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5556",
        topics: Iterable[str] | str = ("masks/",),
        stream_id: str | None = None,
        *,
        conflate: bool = False,
        hwm: int = 100,
        context: zmq.Context | None = None,
        curve_secret: str | os.PathLike[str] | None = None,
        curve_server: str | os.PathLike[str] | None = None,
        max_message_bytes: int = 64 << 20,
    ) -> None:
        if isinstance(topics, str):
            topics = (topics,)
        topics = tuple(topics)
        if not topics:
            raise ValueError('subscribe to at least one topic prefix ("" means everything)')
        if stream_id is not None:
            check_stream_id(stream_id)
            topics = tuple(t + stream_id if t.endswith("/") else t for t in topics)
        self.address = address
        self.topics = topics
        self.stream_id = stream_id
        self.conflate = conflate
        self.received = 0  # valid messages returned
        self.bad_messages = 0  # messages that failed validation, skipped
        self.skipped = 0  # valid messages dropped by conflate or the stream_id filter
        self.missed = 0  # masks messages published but never received (pub_seq gaps)
        self._last_pub_seq: dict[str, int] = {}
        self.last_error: str | None = None
        keys = client_keys(
            None if curve_secret is None else str(curve_secret),
            None if curve_server is None else str(curve_server),
        )
        ctx = context or zmq.Context.instance()
        self._sock = ctx.socket(zmq.SUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, min(hwm, 4) if conflate else hwm)
            self._sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
            if keys is not None:
                apply_client(self._sock, keys)
            for t in topics:
                self._sock.setsockopt(zmq.SUBSCRIBE, t.encode())
            self._sock.connect(address)
        except zmq.ZMQError as exc:
            self._sock.close(linger=0)
            why = zmq.strerror(exc.errno) if exc.errno else str(exc)  # str(exc) has the address
            raise ValueError(f"cannot connect to {quote(address)}: {why}") from None

    @property
    def closed(self) -> bool:
        return self._sock.closed

    def _poll(self, deadline: float | None) -> bool:
        while not self._sock.closed:
            if deadline is None:
                wait = _POLL_SLICE_MS
            else:
                wait = max(0, min(_POLL_SLICE_MS, int((deadline - time.monotonic()) * 1000)))
            if self._sock.poll(wait, zmq.POLLIN):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return False

    def recv(self, timeout_s: float | None = None) -> Message | None:
        """Next valid message, or None after ``timeout_s`` seconds (None: wait forever)
        or once closed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._poll(deadline):
            parts = self._sock.recv_multipart(zmq.NOBLOCK)
            if self.conflate:
                while self._sock.poll(0, zmq.POLLIN):
                    self._note_pub_seq(parts)
                    parts = self._sock.recv_multipart(zmq.NOBLOCK)
                    self.skipped += 1
            try:
                msg = decode(parts)
            except WireFormatError as e:
                self.bad_messages += 1
                self.last_error = str(e)
                log.warning("skipping malformed message: %s", e)
                continue
            if isinstance(msg, MasksMessage):
                self._count_gap(msg.topic, msg.pub_seq)
            elif isinstance(msg, EventMessage):
                self._count_gap(msg.topic, msg.event_seq)
            if self.stream_id is not None and msg.stream_id != self.stream_id:
                self.skipped += 1
                continue
            self.received += 1
            return msg
        return None

    def _count_gap(self, topic: str, pub_seq: int | None) -> None:
        if pub_seq is None or (
            self.stream_id is not None and topic.rpartition("/")[2] != self.stream_id
        ):
            return  # unnumbered, or another stream's (a prefix match on the wire)
        last = self._last_pub_seq.get(topic)
        if last is not None and pub_seq > last:
            self.missed += pub_seq - last - 1
        self._last_pub_seq[topic] = pub_seq

    def _note_pub_seq(self, parts: list[bytes]) -> None:
        """A message conflate skips without decoding: read just its number, so that it
        does not count as missed."""
        try:
            header = loads_json(parts[1])
            pub_seq = header.get("pub_seq") if isinstance(header, dict) else None
            if isinstance(pub_seq, int) and not isinstance(pub_seq, bool):
                self._count_gap(parts[0].decode("ascii"), pub_seq)
        except (IndexError, UnicodeDecodeError, ValueError):
            pass  # malformed: decode() would have rejected it too

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        msg = self.recv()
        if msg is None:
            raise StopIteration
        return msg

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
