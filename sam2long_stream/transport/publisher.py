"""Publish tracker results without ever stalling the tracking loop.

The socket is an XPUB (subscribers see an ordinary PUB). Each send is first tried with
``XPUB_NODROP``: when a subscriber's queue (``hwm`` messages) is full it fails at once
with EAGAIN instead of dropping silently, so the node counts it (``dropped_messages``, on
the status topic). The same message is then sent again without NODROP, so it reaches
every subscriber that has room: one subscriber that stops reading loses only its own
messages, never the others'. ZeroMQ stops offering messages to a full subscriber until
it reads again, so ``dropped_messages`` counts the *episodes* in which some subscriber
fell behind, not every message it missed. Each masks message carries ``pub_seq``, the
publisher's number for it on its topic: a subscriber counts its own exact losses from
the gaps (``Subscriber.missed`` in the SDK).

XPUB also tells which topics someone subscribed to, which lets the publisher skip
encoding masks nobody listens to. ``count_drops=False`` gives a plain PUB (no counting,
no skipping).

Not thread-safe: use one Publisher from one thread (the node's loop).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import zmq

from sam2long_stream.transport import wire

if TYPE_CHECKING:
    from sam2long_stream.security import CurveKeys
    from sam2long_stream.sources.frame import Frame
    from sam2long_stream.tracker.results import StepResult

log = logging.getLogger(__name__)


class Publisher:
    """Masks and status on a bound PUB-compatible socket: of ``stream_id``, or of any
    stream named per call (a node with several cameras shares one socket).

    ``address`` may use a wildcard port (``tcp://127.0.0.1:*``); ``endpoint`` tells the one
    bound. ``encoding`` is the mask encoding, "rle" (compact for object masks) or "bits"
    (fixed size, cheaper for noisy masks). ``curve`` makes the socket a CurveZMQ server
    (the context needs a ZAP authenticator to restrict who may connect).
    """

    def __init__(
        self,
        address: str = "tcp://127.0.0.1:5556",
        stream_id: str = "cam0",
        hwm: int = 32,
        encoding: str = "rle",
        *,
        count_drops: bool = True,
        linger_ms: int = 100,
        context: zmq.Context | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.stream_id = wire.check_stream_id(stream_id)
        if encoding not in wire.ENCODINGS:
            raise ValueError(f"encoding must be one of {wire.ENCODINGS}, got {encoding!r}")
        if not isinstance(hwm, int) or hwm < 1:
            raise ValueError(f"hwm must be an int >= 1, got {hwm!r}")
        self.encoding = encoding
        self.sent = 0  # messages queued
        # messages some subscriber's full queue refused (the others still got them)
        self.dropped_messages = 0
        self.dropped_by_stream: dict[str, int] = {}  # the same, per stream id
        self.skipped = 0  # messages not built because nobody subscribed to their topic
        self._count_drops = count_drops
        self._linger_ms = linger_ms
        self._subscriptions: set[bytes] = set()
        self._pub_seq: dict[str, int] = {}  # next message number per masks topic
        ctx = context or zmq.Context.instance()
        self._sock = ctx.socket(zmq.XPUB if count_drops else zmq.PUB)
        try:
            self._sock.setsockopt(zmq.SNDHWM, hwm)
            self._sock.setsockopt(zmq.LINGER, linger_ms)
            if count_drops:
                self._sock.setsockopt(zmq.XPUB_NODROP, 1)
            if curve is not None:
                from sam2long_stream.security import apply_server

                apply_server(self._sock, curve)
            self._sock.bind(address)
        except zmq.ZMQError as e:
            self._sock.close(linger=0)
            raise OSError(f"cannot bind publisher to {address}: {e}") from e
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- subscriptions -----------------------------------------------------------------

    def _drain_subscriptions(self) -> None:
        """Read XPUB's (un)subscribe notices: without VERBOSE it reports a prefix when the
        first subscriber asks for it and when the last one goes."""
        if not self._count_drops:
            return
        while self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg[:1] == b"\x01":
                self._subscriptions.add(msg[1:])
            elif msg[:1] == b"\x00":
                self._subscriptions.discard(msg[1:])

    def has_subscribers(self, topic: str | None = None) -> bool:
        """Whether any subscriber wants ``topic`` (or anything, when None). Always True for
        a plain PUB (``count_drops=False``), which cannot tell."""
        if not self._count_drops:
            return True
        self._drain_subscriptions()
        if topic is None:
            return bool(self._subscriptions)
        t = topic.encode()
        return any(t.startswith(prefix) for prefix in self._subscriptions)

    # -- publishing --------------------------------------------------------------------

    def _send(self, parts: list[bytes], stream_id: str) -> bool:
        """Queue for every subscriber with room; count when one had none. Never blocks."""
        try:
            self._sock.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.Again:  # only XPUB with NODROP says so; a plain PUB drops silently
            self.dropped_messages += 1
            self.dropped_by_stream[stream_id] = self.dropped_by_stream.get(stream_id, 0) + 1
            # Lossy for this one message: the full subscriber misses it, the rest get it.
            self._sock.setsockopt(zmq.XPUB_NODROP, 0)
            try:
                self._sock.send_multipart(parts, zmq.NOBLOCK, copy=False)
            finally:
                self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self.sent += 1
        return True

    def publish_masks(
        self,
        result: StepResult,
        frame: Frame | None = None,
        *,
        seq: int | None = None,
        pts: float | None = None,
        capture_time_ns: int | None = None,
        dropped_frames: int = 0,
        lag: int = 0,
        stream_id: str | None = None,
    ) -> bool:
        """Publish one result on ``masks/<id>`` (``masks-lagged/<id>`` when ``lag > 0``).

        Frame metadata comes from ``frame`` or from ``seq``/``pts``/``capture_time_ns``
        (keywords win); ``stream_id`` defaults to the publisher's. Returns True when
        queued (for every subscriber with room), False when skipped (nobody subscribed);
        never blocks.
        """
        if frame is not None:
            seq = frame.seq if seq is None else seq
            pts = frame.pts if pts is None else pts
            capture_time_ns = frame.capture_time_ns if capture_time_ns is None else capture_time_ns
        if seq is None:
            raise ValueError("publish_masks needs a frame or seq")
        if capture_time_ns is None:
            capture_time_ns = time.time_ns()
        sid = self.stream_id if stream_id is None else wire.check_stream_id(stream_id)
        topic = wire.masks_topic(sid, lag)
        pub_seq = self._pub_seq.get(topic, 0)
        self._pub_seq[topic] = pub_seq + 1
        if not self.has_subscribers(topic):
            self.skipped += 1
            return False
        parts = wire.encode_masks(
            sid,
            result,
            seq=seq,
            pts=pts,
            capture_time_ns=capture_time_ns,
            dropped_frames=dropped_frames,
            lag=lag,
            encoding=self.encoding,
            pub_seq=pub_seq,
        )
        return self._send(parts, sid)

    def publish_status(self, state: str, *, stream_id: str | None = None, **fields: Any) -> bool:
        """Publish a status message (of ``stream_id``, default the publisher's);
        ``dropped_messages`` is filled in unless given (that stream's count when the
        publisher serves several)."""
        sid = self.stream_id if stream_id is None else wire.check_stream_id(stream_id)
        fields.setdefault(
            "dropped_messages",
            self.dropped_messages if stream_id is None else self.dropped_by_stream.get(sid, 0),
        )
        parts = wire.encode_status(sid, state, **fields)
        if not self.has_subscribers(wire.status_topic(sid)):
            self.skipped += 1
            return False
        return self._send(parts, sid)

    def publish_event(self, event: dict[str, Any], *, stream_id: str | None = None) -> bool:
        """Publish one track event (`sam2long_stream.events`) on ``events/<id>``, numbered
        per stream (``event_seq``, counted even when nobody listens, so gaps are losses)."""
        sid = self.stream_id if stream_id is None else wire.check_stream_id(stream_id)
        topic = wire.events_topic(sid)
        event_seq = self._pub_seq.get(topic, 0)
        self._pub_seq[topic] = event_seq + 1
        if not self.has_subscribers(topic):
            self.skipped += 1
            return False
        return self._send(wire.encode_event(sid, event, event_seq=event_seq), sid)

    def close(self) -> None:
        """Close the socket, giving queued messages up to ``linger_ms`` to leave."""
        if not self._sock.closed:
            self._sock.close(linger=self._linger_ms)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
