"""The MQTT bridge: a node's ZeroMQ output (events, status, optionally masks) to an MQTT
broker, for the stacks that speak MQTT (Home Assistant, Node-RED, NVRs, DeepStream's
broker). Topics are in `topics` and docs/integrations.md.

Threads: paho-mqtt's network thread (``loop_start``) connects, reconnects with capped
exponential backoff (``reconnect_delay_set``), and sends; the thread that calls `run`
reads the ZeroMQ subscriber and publishes. paho's ``publish`` is thread-safe.

While the broker is away, QoS >= 1 messages wait in paho's outgoing queue, bounded by
``max_queued_messages_set(queue_size)``: a message that does not fit is dropped and
counted here (``dropped``, ``dropped_events``), reported on stderr and on
``<prefix>/bridge/status``; nothing grows without bound. Retained state (objects,
zones) does not queue: while disconnected only the newest payload per topic is kept
(one per object and zone) and sent on reconnect, so the retained state is right
afterwards even when events were dropped. A QoS 0 message sent while disconnected is
lost (counted as dropped).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sam2long_stream.mqtt import topics
from sam2long_stream.mqtt.config import BridgeConfig
from sam2long_stream.transport.subscriber import Subscriber
from sam2long_stream.transport.wire import EventMessage, MasksMessage, StatusMessage, dumps_json

log = logging.getLogger(__name__)

# CONNACK refusals that retrying cannot fix (MQTT 3.1.1 codes 4/5; MQTT 5 0x86/0x87).
_AUTH_REFUSED = {4, 5, 0x86, 0x87}
_QUIET_S = 30.0  # the same connection complaint at most this often on stderr


class BridgeError(ConnectionError):
    """The bridge cannot go on (the broker refused its credentials, or its TLS
    certificate fails verification): one line."""


@dataclass
class BridgeStats:
    """Counters, as on ``<prefix>/bridge/status``."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    events: int = 0  # event messages received from the node
    masks: int = 0  # masks messages received
    masks_sent: int = 0
    published: int = 0  # messages handed to the client (queued or sent)
    dropped: int = 0  # messages that did not fit the queue (or QoS 0 while disconnected)
    dropped_events: int = 0  # of which events
    queued: int = 0  # QoS >= 1 messages not yet acknowledged by the broker
    queue_size: int = 0
    missed: int = 0  # events/masks the node published that never reached the bridge


class Bridge:
    """One bridge (see the module docstring). ``say`` gets the one-line reports
    (connection changes, drops); the CLI sends them to stderr."""

    def __init__(self, config: BridgeConfig, say: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._say = say or (lambda line: log.warning("%s", line))
        self.stats = BridgeStats(queue_size=config.queue_size)
        self._stop = threading.Event()
        self._resync = threading.Event()  # (re)connected: send discovery and held state
        self._fatal: str | None = None
        self._lock = threading.Lock()  # stats written by paho's thread
        self._objects: set[tuple[str, int]] = set()
        self._zones: dict[tuple[str, str], set[int]] = {}
        self._held: dict[str, bytes] = {}  # retained topic -> newest payload, while away
        self._last_masks: dict[str, float] = {}
        self._last_said: dict[str, float] = {}
        self._reported_drops = 0
        want = ["events/", "status/"] + (["masks/"] if config.masks_rate > 0 else [])
        self._sub = Subscriber(
            config.pub,
            topics=want,
            stream_id=config.stream_id,
            hwm=100_000,
            curve_secret=config.curve_secret,
            curve_server=config.curve_server,
        )
        self._client = self._make_client()

    # -- the MQTT client ----------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=c.client_id or f"sam2long-bridge-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.max_queued_messages_set(c.queue_size)
        client.reconnect_delay_set(1, c.reconnect_max_s)
        client.will_set(topics.available(c.prefix), topics.OFFLINE, qos=1, retain=True)
        if c.broker.username is not None:
            client.username_pw_set(c.broker.username, c.password)
        if c.broker.tls:
            client.tls_set(ca_certs=c.tls_ca)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        return client

    def _say_quietly(self, key: str, line: str) -> None:
        now = time.monotonic()
        if now - self._last_said.get(key, -1e9) >= _QUIET_S:
            self._last_said[key] = now
            self._say(line)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        code = getattr(reason, "value", reason)
        if getattr(reason, "is_failure", bool(code)):
            if code in _AUTH_REFUSED:
                self._fatal = (
                    f"the broker {self.config.broker} refused the connection: {reason} "
                    "(check the user name and the password)"
                )
                self._stop.set()
            else:
                self._say_quietly("refused", f"the broker refused the connection: {reason}")
            return
        # QoS 0: never held back by a queue still full of the outage's messages
        client.publish(topics.available(self.config.prefix), topics.ONLINE, qos=0, retain=True)
        with self._lock:
            self.stats.connected = True
            self.stats.connects += 1
            again = self.stats.connects > 1
        self._last_said.pop("unreachable", None)
        self._say(f"{'reconnected' if again else 'connected'} to {self.config.broker}")
        self._resync.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            was = self.stats.connected
            self.stats.connected = False
            if was:
                self.stats.disconnects += 1
        if was and not self._stop.is_set():
            self._say(
                f"lost the broker ({reason}); reconnecting, backoff up to "
                f"{self.config.reconnect_max_s} s; messages wait in a queue of "
                f"{self.config.queue_size}"
            )

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        problem = self._certificate_problem() if self.config.broker.tls else None
        if problem is not None:  # retrying cannot fix a certificate: stop and say why
            self._fatal = (
                f"the TLS certificate of {self.config.broker} failed verification: {problem} "
                "(check --tls-ca)"
            )
            self._stop.set()
            return
        self._say_quietly("unreachable", f"cannot reach the broker {self.config.broker}; retrying")

    def _certificate_problem(self, timeout_s: float = 5.0) -> str | None:
        """Why the broker's certificate fails verification with this bridge's CA, or None
        (it verifies, or the broker cannot be reached). paho reports every failed
        connection alike, so a failed TLS connection is diagnosed with one handshake here."""
        host, port = self.config.broker.host, self.config.broker.port
        try:
            context = ssl.create_default_context(cafile=self.config.tls_ca)
            with (
                socket.create_connection((host, port), timeout=timeout_s) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                return None
        except ssl.SSLCertVerificationError as e:
            return e.verify_message or str(e)
        except OSError:  # unreachable, reset, or a TLS error that is not the certificate
            return None

    # -- publishing (the run thread) ----------------------------------------------------

    def _queued(self) -> int:
        # paho keeps QoS >= 1 messages until acknowledged; its queue is what is bounded
        return len(getattr(self._client, "_out_messages", ()))

    def _send(self, topic: str, payload: bytes | str, qos: int, retain: bool) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        lost = info.rc == mqtt.MQTT_ERR_QUEUE_SIZE or (
            qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS
        )
        if not lost:
            self.stats.published += 1
        return not lost

    def _publish_event(self, topic: str, payload: bytes) -> None:
        if not self._send(topic, payload, self.config.qos, False):
            self.stats.dropped += 1
            self.stats.dropped_events += 1

    def _publish_retained(self, topic: str, payload: bytes, qos: int | None = None) -> None:
        """Retained state: sent when connected; otherwise (or when it does not fit)
        only the newest payload per topic is held for the next connection."""
        retain = self.config.retain
        if not self.stats.connected or not self._send(
            topic, payload, self.config.qos if qos is None else qos, retain
        ):
            self._held[topic] = payload
        else:
            self._held.pop(topic, None)

    def _handle_event(self, msg: EventMessage) -> None:
        c, sid, oid = self.config, msg.stream_id, msg.object_id
        self.stats.events += 1
        if (sid, oid) not in self._objects:
            self._objects.add((sid, oid))
            if c.ha_discovery:
                self._publish_retained(*topics.object_discovery(c.ha_prefix, c.prefix, sid, oid), 1)
        self._publish_event(topics.events(c.prefix, sid), topics.event_payload(msg))
        self._publish_retained(topics.object_state(c.prefix, sid, oid), topics.state_payload(msg))
        if msg.zone is not None and msg.event in ("zone_enter", "zone_leave"):
            members = self._zone(sid, msg.zone)
            if msg.event == "zone_enter":
                members.add(oid)
            else:
                members.discard(oid)
            self._publish_zone(sid, msg.zone)
        if msg.event == "end":
            self._objects.discard((sid, oid))

    def _zone(self, sid: str, zone: str) -> set[int]:
        key = (sid, zone)
        if key not in self._zones:
            self._zones[key] = set()
            if self.config.ha_discovery:
                c = self.config
                self._publish_retained(*topics.zone_discovery(c.ha_prefix, c.prefix, sid, zone), 1)
            self._publish_zone(sid, zone)
        return self._zones[key]

    def _publish_zone(self, sid: str, zone: str) -> None:
        payload = topics.zone_payload(sid, zone, self._zones[(sid, zone)])
        self._publish_retained(topics.zone_state(self.config.prefix, sid, zone), payload)

    def _handle_status(self, msg: StatusMessage) -> None:
        zones = msg.get("zones")
        if isinstance(zones, list):
            for zone in zones:
                if isinstance(zone, str):
                    self._zone(msg.stream_id, zone)

    def _handle_masks(self, msg: MasksMessage) -> None:
        self.stats.masks += 1
        now = time.monotonic()
        if not self.stats.connected or now - self._last_masks.get(msg.stream_id, -1e9) < (
            1.0 / self.config.masks_rate
        ):
            return  # rate-limited, or nobody to send to: masks never queue
        self._last_masks[msg.stream_id] = now
        if self._send(
            topics.masks(self.config.prefix, msg.stream_id), topics.masks_payload(msg), 0, False
        ):
            self.stats.masks_sent += 1

    def _resend(self) -> None:
        """After a (re)connect: discovery configs (a restarted broker may have lost its
        retained messages) and the state held while away."""
        c = self.config
        if c.ha_discovery:
            for sid, oid in sorted(self._objects):
                self._publish_retained(*topics.object_discovery(c.ha_prefix, c.prefix, sid, oid), 1)
            for sid, zone in sorted(self._zones):
                self._publish_retained(*topics.zone_discovery(c.ha_prefix, c.prefix, sid, zone), 1)
        self._flush_held()

    def _flush_held(self) -> None:
        held, self._held = self._held, {}
        for topic, payload in held.items():
            self._publish_retained(topic, payload)

    def status(self) -> dict[str, Any]:
        with self._lock:
            self.stats.queued = self._queued()
            self.stats.missed = self._sub.missed
            return asdict(self.stats)

    def _report(self) -> None:
        st = self.status()
        if st["dropped"] > self._reported_drops:
            self._reported_drops = st["dropped"]
            self._say(
                f"queue full ({self.config.queue_size} messages waiting for the broker): "
                f"{st['dropped']} messages dropped so far, {st['dropped_events']} of them events"
            )
        if st["connected"]:
            self._flush_held()  # state that did not fit a full queue at reconnect
            body = dumps_json({**st, "time_ns": time.time_ns()})
            self._client.publish(topics.bridge_status(self.config.prefix), body, qos=0)

    # -- lifecycle ----------------------------------------------------------------------

    def run(self) -> BridgeStats:
        """Bridge until `stop` (or a fatal refusal: BridgeError); returns the counters."""
        c = self.config
        self._client.connect_async(c.broker.host, c.broker.port, keepalive=c.keepalive_s)
        self._client.loop_start()
        next_report = time.monotonic() + c.status_interval_s
        try:
            while not self._stop.is_set():
                if self._resync.is_set():
                    self._resync.clear()
                    self._resend()
                msg = self._sub.recv(timeout_s=0.1)
                if isinstance(msg, EventMessage):
                    self._handle_event(msg)
                elif isinstance(msg, StatusMessage):
                    self._handle_status(msg)
                elif isinstance(msg, MasksMessage):
                    self._handle_masks(msg)
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + c.status_interval_s
                    self._report()
        finally:
            self._close()
        if self._fatal is not None:
            raise BridgeError(self._fatal)
        return self.stats

    def stop(self) -> None:
        """Ask `run` to end (safe from a signal handler)."""
        self._stop.set()

    def _close(self, drain_s: float = 5.0) -> None:
        """Say offline (a clean disconnect does not fire the will), give queued
        messages a moment to leave, then disconnect."""
        try:
            if self._fatal is None and self.stats.connected:
                self._client.publish(
                    topics.available(self.config.prefix), topics.OFFLINE, qos=1, retain=True
                )
                deadline = time.monotonic() + drain_s
                while self._queued() and self.stats.connected and time.monotonic() < deadline:
                    time.sleep(0.05)
            self._report()
            self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._sub.close()
