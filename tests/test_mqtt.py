"""The MQTT bridge with a real broker: Debian's mosquitto on loopback, the real node
(engine double for scripted presence, the real tracker), ZeroMQ, the bridge as the
`sam2long-stream mqtt` process, and a paho-mqtt subscriber.

Skipped (with the reason) only when mosquitto is not installed; `make test` installs it
when run as root.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.cli import main
from sam2long_stream.events import Zone
from sam2long_stream.mqtt import topics
from sam2long_stream.mqtt.config import parse_broker_url
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.testing.broker import Mosquitto, mosquitto_problem
from sam2long_stream.testing.broker import MqttInbox as Inbox
from sam2long_stream.testing.camera import free_port
from sam2long_stream.testing.engine_double import ScriptedEngine
from sam2long_stream.testing.event_scene import (
    EVENT_SCENE,
    EXPECTED_EVENTS,
    flicker,
    right_half,
    script_for,
)
from tests.conftest import REPO_ROOT

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt missing: pip install '.[mqtt]'")

needs_broker = pytest.mark.skipif(mosquitto_problem() is not None, reason=str(mosquitto_problem()))
W, H = 64, 48
PASSWORD = "s3cret-Pa55"


# --------------------------------------------------------------------------- helpers


def retained(port: int, topic: str, timeout: float = 30.0) -> bytes:
    """The retained message of ``topic``, read by a fresh client."""
    inbox = Inbox(port, (topic,))
    try:
        inbox.wait(lambda: bool(inbox.on(topic)), f"retained {topic}", timeout)
        return inbox.on(topic)[-1]
    finally:
        inbox.close()


class BridgeProcess:
    """`sam2long-stream mqtt` as a subprocess, its stderr collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sam2long_stream.cli", "mqtt", *args],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if re.search(pattern, line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no stderr line matching {pattern!r}: {self.lines}")

    def finish(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self._reader.join(10)
        return rc


def scene_node(source: str, script: Any, lost_after: str, zones: tuple = ()) -> Node:
    config = NodeConfig.one_stream(
        source,
        tracker=TrackerConfig(num_pathways=1),
        prompts={1: Prompt(box=(2.0, 2.0, 20.0, 40.0))},
        pub="tcp://127.0.0.1:*",
        control=None,
        policy="all",
        stream_id="door",
        lost_after=lost_after,
        zones=zones,
    )
    return Node(config, tracker=Tracker(config.tracker, engine=ScriptedEngine(script)))


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


# --------------------------------------------------------------------------- no broker


@pytest.mark.parametrize(
    "url, needle",
    [
        ("mqtt://user:hunter2@127.0.0.1:1883", "not in the URL"),
        ("http://127.0.0.1:1883", "scheme must be mqtt:// or mqtts://"),
        ("mqtt://:1883", "has no host"),
        ("mqtt://127.0.0.1:99999", "bad --broker"),
        ("127.0.0.1:1883", "must be mqtt://"),
        ("mqtt://127.0.0.1:1883/x", "no path"),
    ],
)
def test_bad_broker_urls_are_one_line_exit_2(url: str, needle: str, capsys: Any) -> None:
    rc = main(["mqtt", "--pub", "tcp://127.0.0.1:5556", "--broker", url])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("sam2long-stream: error: "), err
    assert needle in err[0] and "hunter2" not in err[0]


def test_bad_prefix_pub_and_missing_password_file(capsys: Any, tmp_path: Any) -> None:
    args = ["mqtt", "--pub", "tcp://127.0.0.1:5556", "--broker", "mqtt://u@127.0.0.1:1"]
    for pub in ("tcp://nohost:notaport", "127.0.0.1:5556", "tcp://*:5556"):
        assert main(["mqtt", "--pub", pub, "--broker", "mqtt://127.0.0.1:1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sam2long-stream: error: --pub: bad address")
    assert main([*args, "--prefix", "a/#"]) == 2
    assert "--prefix must be topic levels" in capsys.readouterr().err
    assert main([*args, "--password-file", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sam2long-stream: error: password file not found: {tmp_path / 'nope'}"]


def test_broker_url_parsing() -> None:
    u = parse_broker_url("mqtts://alice@broker.local")
    assert (u.host, u.port, u.tls, u.username) == ("broker.local", 8883, True, "alice")
    assert str(parse_broker_url("mqtt://[::1]:1884")) == "mqtt://[::1]:1884"


def test_home_assistant_discovery_payloads() -> None:
    topic, payload = topics.object_discovery("homeassistant", "sam2long", "cam.0", 7)
    assert topic == "homeassistant/binary_sensor/sam2long/sam2long_cam_0_object_7/config"
    config = json.loads(payload)
    assert config["state_topic"] == "sam2long/cam.0/objects/7"
    assert config["availability_topic"] == "sam2long/available"
    assert config["device_class"] == "presence" and "value_json.present" in config["value_template"]
    topic, payload = topics.zone_discovery("homeassistant", "sam2long", "door", "porch")
    config = json.loads(payload)
    assert config["device_class"] == "occupancy"
    assert config["state_topic"] == "sam2long/door/zones/porch"


# --------------------------------------------------------------------------- with a broker


@pytest.mark.mqtt
@needs_broker
def test_scene_events_over_mqtt_in_order_once_each_then_last_will(broker: Mosquitto) -> None:
    """The scripted scene's events arrive on <prefix>/door/events in order, once each;
    retained object and zone state and HA discovery are right; killing the bridge
    fires its last will (available: offline)."""
    zone = Zone("right", tuple(map(tuple, right_half(W, H))))
    source = f"synthetic://moving-shapes?width={W}&height={H}&frames={len(EVENT_SCENE)}&realtime=0"
    node = scene_node(source, script_for(EVENT_SCENE), "2f", (zone,))
    inbox = Inbox(broker.port, ("sam2long/#", "homeassistant/#"))
    bridge = BridgeProcess(
        "--pub", node.endpoint, "--broker", broker.url, "--ha-discovery", "--status-interval", "1"
    )
    try:
        inbox.wait(lambda: b"online" in inbox.on("sam2long/available"), "available online")
        assert node.wait_for_subscribers(60, "events/door")
        node.start()
        events_topic = "sam2long/door/events"
        inbox.wait(lambda: any(e["type"] == "end" for e in inbox.json(events_topic)), "end")
        assert node.join(60) and node.error is None
        events = inbox.json(events_topic)
        got = [
            (e["type"], e["zone"], e["frame_index"] if e["reason"] is None else None)
            for e in events
        ]
        assert got == list(EXPECTED_EVENTS), got
        assert [e["event_seq"] for e in events] == list(range(len(events)))
        state = json.loads(retained(broker.port, "sam2long/door/objects/1"))
        assert state["state"] == "ended" and state["present"] is False
        assert state["last_event"] == "end" and state["zones"] == []
        zone_state = json.loads(retained(broker.port, "sam2long/door/zones/right"))
        assert zone_state == {
            "stream_id": "door",
            "zone": "right",
            "occupied": False,
            "count": 0,
            "objects": [],
        }
        # the zone was occupied by object 1 between its enter and leave
        assert any(z["objects"] == [1] for z in inbox.json("sam2long/door/zones/right"))
        for kind in ("object_1", "zone_right"):
            cfg = f"homeassistant/binary_sensor/sam2long/sam2long_door_{kind}/config"
            assert json.loads(retained(broker.port, cfg))["availability_topic"] == (
                "sam2long/available"
            )
        inbox.wait(lambda: bool(inbox.on("sam2long/bridge/status")), "bridge status")
        status = json.loads(inbox.on("sam2long/bridge/status")[-1])
        assert status["dropped"] == 0 and status["connected"] is True
        assert bridge.finish(signal.SIGKILL) == -signal.SIGKILL
        inbox.wait(lambda: inbox.on("sam2long/available")[-1:] == [b"offline"], "last will")
        assert retained(broker.port, "sam2long/available") == b"offline"
    finally:
        node.stop()
        node.join(30)
        bridge.finish(signal.SIGKILL)
        inbox.close()


@pytest.mark.mqtt
@needs_broker
def test_broker_restart_mid_stream(broker: Mosquitto) -> None:
    """The broker goes away while events flow (10 per second) and comes back on the
    same port: the bridge reconnects; events of the outage wait in its queue (QoS 1)
    up to its bound, and exactly the ones beyond it are missing and counted; the
    retained state is right afterwards; a clean exit says offline."""
    queue = 25
    source = f"synthetic://moving-shapes?width={W}&height={H}&fps=10"
    node = scene_node(source, script_for(flicker), "1f")
    # a persistent session: the broker keeps what arrives for it while it reconnects
    inbox = Inbox(broker.port, ("sam2long/#",), client_id="test-inbox", clean=False)
    bridge = BridgeProcess(
        "--pub",
        node.endpoint,
        "--broker",
        broker.url,
        "--queue-size",
        str(queue),
        "--reconnect-max",
        "2",
        "--status-interval",
        "1",
    )
    from sam2long_stream.transport.subscriber import EventMessage, Subscriber

    produced: list[int] = []
    counter = Subscriber(node.endpoint, topics=("events/",))
    stop_counting = threading.Event()

    def count() -> None:
        while not stop_counting.is_set():
            msg = counter.recv(timeout_s=0.2)
            if isinstance(msg, EventMessage):
                produced.append(msg.event_seq)

    counting = threading.Thread(target=count, daemon=True)
    events_topic = "sam2long/door/events"
    try:
        inbox.wait(lambda: b"online" in inbox.on("sam2long/available"), "available online")
        assert node.wait_for_subscribers(60, "events/door")
        counting.start()
        node.start()
        inbox.wait(lambda: len(inbox.json(events_topic)) >= 5, "events before the outage")
        broker.stop()
        bridge.wait_line("lost the broker")
        outage_from = max(produced) + 1  # from here on, events can only wait in the queue
        deadline = time.monotonic() + 120
        while max(produced) < outage_from + 2 * queue + 10:
            assert time.monotonic() < deadline, "the node stopped producing events"
            time.sleep(0.05)
        outage_to = max(produced) + 1
        broker.start()
        bridge.wait_line("reconnected to")
        assert inbox.connected.wait(60)
        node.stop()
        assert node.join(60) and node.error is None
        stop_counting.set()
        counting.join(10)
        inbox.wait(lambda: any(e["type"] == "end" for e in inbox.json(events_topic)), "end")
        last = max(produced)
        assert bridge.finish(signal.SIGTERM) == 0
        summary = bridge.wait_line(r"stopped: \d+ events")
        found = re.search(r"\((\d+) events\)", summary)
        assert found is not None, summary
        dropped_events = int(found.group(1))
        got = {e["event_seq"] for e in inbox.json(events_topic)}  # QoS 1: at least once
        missing = set(range(last + 1)) - got
        assert dropped_events > 0 and len(missing) == dropped_events, (summary, sorted(missing))
        assert missing <= set(range(outage_from - queue, outage_to + 20)), sorted(missing)
        assert any("queue full" in line for line in bridge.lines), bridge.lines
        # the outage's events that the queue held arrived, no more than its bound
        held = got & set(range(outage_from, outage_to))
        assert 0 < len(held) <= queue, (len(held), queue)
        state = json.loads(retained(broker.port, "sam2long/door/objects/1"))
        assert state["state"] == "ended" and state["last_event"] == "end"
        assert retained(broker.port, "sam2long/available") == b"offline"
    finally:
        stop_counting.set()
        counter.close()
        node.stop()
        node.join(30)
        bridge.finish(signal.SIGKILL)
        inbox.close()


@pytest.mark.mqtt
@needs_broker
def test_wrong_password_is_one_line_and_never_printed() -> None:
    with Mosquitto(users={"alice": PASSWORD}) as b:
        pub = f"tcp://127.0.0.1:{free_port()}"
        url = f"mqtt://alice@127.0.0.1:{b.port}"
        wrong = BridgeProcess("--pub", pub, "--broker", url, env={"SAM2LONG_MQTT_PASSWORD": "nope"})
        assert wrong.proc.wait(120) == 1
        wrong.finish()
        errors = [line for line in wrong.lines if line.startswith("sam2long-stream: error:")]
        assert len(errors) == 1 and "refused the connection" in errors[0], wrong.lines
        assert "Traceback" not in "\n".join(wrong.lines) and "nope" not in "\n".join(wrong.lines)
        right = BridgeProcess(
            "--pub", pub, "--broker", url, env={"SAM2LONG_MQTT_PASSWORD": PASSWORD}
        )
        try:
            right.wait_line("connected to mqtt://alice@127.0.0.1")
        finally:
            assert right.finish() == 0
        assert PASSWORD not in "\n".join(right.lines)


@pytest.mark.mqtt
@needs_broker
def test_mqtts_with_the_brokers_ca_and_a_wrong_one(tmp_path: Any) -> None:
    """mqtts:// with --tls-ca: the bridge connects over TLS and what it publishes arrives
    (read back on the broker's plain listener); with a CA that did not sign the broker's
    certificate it says so in one line and exits 1 (retrying cannot fix it)."""
    from sam2long_stream.testing.tls import self_signed

    cert, key = self_signed(tmp_path)
    other_ca, _ = self_signed(tmp_path, "other-")
    with Mosquitto(tls=(cert, key)) as b:
        pub = f"tcp://127.0.0.1:{free_port()}"
        inbox = Inbox(b.port, ("sam2long/available",))
        good = BridgeProcess("--pub", pub, "--broker", b.tls_url, "--tls-ca", cert)
        try:
            good.wait_line(rf"connected to mqtts://127\.0\.0\.1:{b.tls_port}")
            inbox.wait(lambda: b"online" in inbox.on("sam2long/available"), "online over TLS")
        finally:
            assert good.finish() == 0
            inbox.close()
        wrong = BridgeProcess("--pub", pub, "--broker", b.tls_url, "--tls-ca", other_ca)
        assert wrong.proc.wait(120) == 1
        wrong.finish()
        errors = [x for x in wrong.lines if x.startswith("sam2long-stream: error:")]
        assert len(errors) == 1, wrong.lines
        assert "certificate" in errors[0] and "--tls-ca" in errors[0], errors
        assert not any("connected to" in x for x in wrong.lines), wrong.lines
        assert "Traceback" not in "\n".join(wrong.lines), wrong.lines


@pytest.mark.mqtt
@needs_broker
def test_masks_rate_limits_the_masks_topic(broker: Mosquitto) -> None:
    """--masks-rate 2 on a 20 fps stream: masks reach <prefix>/<stream>/masks at most
    twice per second (the rest is skipped, never queued), each a COCO RLE of the frame
    that decodes to the object's mask; without the flag there is no masks topic."""
    from sam2long_stream.transport.wire import mask_from_rle

    fps, seconds, rate = 20, 4, 2.0
    frames = fps * seconds
    source = f"synthetic://moving-shapes?width={W}&height={H}&fps={fps}&frames={frames}"
    node = scene_node(source, script_for(flicker), "1f")
    inbox = Inbox(broker.port, ("sam2long/+/masks", "sam2long/available"))
    bridge = BridgeProcess(
        "--pub", node.endpoint, "--broker", broker.url, "--masks-rate", str(rate)
    )
    try:
        inbox.wait(lambda: b"online" in inbox.on("sam2long/available"), "available online")
        assert node.wait_for_subscribers(60, "masks/door")
        node.start()
        assert node.join(120) and node.error is None
        inbox.wait(lambda: len(inbox.on("sam2long/door/masks")) >= 2, "masks messages")
        assert bridge.finish() == 0
        masks = inbox.json("sam2long/door/masks")
        stamps = [
            ns
            for (topic, _, _), ns in zip(inbox.messages, inbox.received_ns, strict=True)
            if topic == "sam2long/door/masks"
        ]
        assert len(masks) < frames / 3, len(masks)  # far fewer than the frames
        span_s = (stamps[-1] - stamps[0]) / 1e9
        assert len(masks) - 1 <= rate * span_s + 1, (len(masks), span_s)
        for m in masks:
            assert m["type"] == "masks" and m["stream_id"] == "door"
            for obj in m["objects"]:
                mask = mask_from_rle(obj["rle"], m["height"], m["width"])
                assert int(mask.sum()) == obj["area"]
        assert [m["frame_index"] for m in masks] == sorted({m["frame_index"] for m in masks})
    finally:
        node.stop()
        node.join(30)
        bridge.finish(signal.SIGKILL)
        inbox.close()
