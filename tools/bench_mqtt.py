"""MQTT bridge figures (docs/performance.md, "MQTT bridge"): the real node (engine
double under the real tracker: scripted presence, no neural network), ZeroMQ, the
`sam2long-stream mqtt` process, Debian's mosquitto on loopback and a paho subscriber.

1. latency: each event's arrival at the MQTT subscriber minus the publish time of the
   masks message of the frame it came from (one clock: all on this machine), p50/p95;
2. the bridge's CPU (user + system, from /proc via psutil) per 1,000 events;
3. a broker outage of --outage-s seconds at the default queue size: events produced,
   events that reached the subscriber (a persistent session), the bridge's drops.

    nice -n 19 python tools/bench_mqtt.py --events 10000 --outage-s 30 --out bench-mqtt.json
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.mqtt.config import DEFAULT_QUEUE
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.testing.broker import Mosquitto, MqttInbox
from sam2long_stream.testing.engine_double import ScriptedEngine
from sam2long_stream.testing.event_scene import flicker, script_for
from sam2long_stream.transport.subscriber import EventMessage, MasksMessage, Subscriber

W, H = 64, 48
ROOT = Path(__file__).resolve().parents[1]


def node_for(objects: int, fps: float) -> Node:
    """Every object flickers (present on even frames): with lost_after 1f each frame
    gives one event per object (lost, then found)."""
    config = NodeConfig.one_stream(
        f"synthetic://moving-shapes?width={W}&height={H}&fps={fps}",
        tracker=TrackerConfig(num_pathways=1),
        prompts={i: Prompt(box=(2.0, 2.0, 20.0, 40.0)) for i in range(1, objects + 1)},
        pub="tcp://127.0.0.1:*",
        control=None,
        policy="all",
        stream_id="bench",
        lost_after="1f",
        hwm=100_000,
    )
    engine = ScriptedEngine(script_for(flicker), record_views=False)
    return Node(config, tracker=Tracker(config.tracker, engine=engine))


class Recorder:
    """The node's own output over ZeroMQ: masks publish times by seq, event seqs."""

    def __init__(self, endpoint: str) -> None:
        self.sub = Subscriber(endpoint, topics=("masks/", "events/"), hwm=1_000_000)
        self.masks_ns: dict[int, int] = {}
        self.events: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.sub.recv(timeout_s=0.2)
            if isinstance(msg, MasksMessage):
                self.masks_ns[msg.seq] = msg.publish_time_ns
            elif isinstance(msg, EventMessage):
                self.events.append(msg.event_seq)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sub.close()


def bridge(pub: str, broker: Mosquitto, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "sam2long_stream.cli", "mqtt", "--pub", pub),
            *("--broker", broker.url, "--status-interval", "1", *extra),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return err


def wait(done: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def latency_and_cpu(events: int, objects: int, fps: float) -> dict[str, Any]:
    with Mosquitto(persistence=False) as broker:
        node = node_for(objects, fps)
        topic = "sam2long/bench/events"
        inbox = MqttInbox(broker.port, ("sam2long/bench/events", "sam2long/available"))
        proc = bridge(node.endpoint, broker)
        recorder = Recorder(node.endpoint).start()
        try:
            wait(lambda: b"online" in inbox.on("sam2long/available"), "the bridge", 60)
            node.wait_for_subscribers(60, "events/bench")
            node.wait_for_subscribers(60, "masks/bench")
            cpu = psutil.Process(proc.pid).cpu_times()
            cpu0 = cpu.user + cpu.system
            t0 = time.monotonic()
            node.start()
            wait(lambda: len(inbox.on(topic)) >= events, f"{events} events", 3600)
            cpu = psutil.Process(proc.pid).cpu_times()
            cpu_s = cpu.user + cpu.system - cpu0
            wall = time.monotonic() - t0
            node.stop()
            node.join(60)
            got = inbox.timed(topic)[:events]
            lat = []
            for arrived, payload in got:
                seq = json.loads(payload)["seq"]
                if seq in recorder.masks_ns:
                    lat.append((arrived - recorder.masks_ns[seq]) / 1e6)
        finally:
            node.stop()
            node.join(60)
            err = finish(proc)
            recorder.close()
            inbox.close()
    return {
        "events": len(got),
        "events_timed": len(lat),
        "objects": objects,
        "fps": fps,
        "events_per_s": round(len(got) / wall, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 2),
        "latency_ms_p95": round(float(np.percentile(lat, 95)), 2),
        "latency_ms_max": round(float(np.max(lat)), 2),
        "bridge_cpu_s": round(cpu_s, 3),
        "bridge_cpu_ms_per_1000_events": round(1000 * cpu_s / len(got) * 1000, 1),
        "bridge_summary": err.strip().splitlines()[-1] if err.strip() else "",
    }


def outage(outage_s: float, objects: int, fps: float) -> dict[str, Any]:
    during = 0
    with Mosquitto() as broker:
        node = node_for(objects, fps)
        topic = "sam2long/bench/events"
        inbox = MqttInbox(broker.port, ("sam2long/#",), client_id="bench-inbox", clean=False)
        proc = bridge(node.endpoint, broker)  # the default queue size
        recorder = Recorder(node.endpoint).start()
        try:
            wait(lambda: b"online" in inbox.on("sam2long/available"), "the bridge", 60)
            node.wait_for_subscribers(60, "events/bench")
            node.start()
            wait(lambda: len(inbox.on(topic)) >= 50, "events before the outage", 300)
            before = len(recorder.events)
            broker.stop()
            time.sleep(outage_s)  # the outage itself
            during = len(recorder.events) - before
            broker.start()
            wait(lambda: inbox.connected.is_set(), "the subscriber's reconnect", 120)
            wait(lambda: len(recorder.events) > before + during + 5 * objects, "more events", 120)
            node.stop()
            node.join(60)
            produced = set(recorder.events)
            wait(
                lambda: {json.loads(p)["event_seq"] for p in inbox.on(topic)} >= produced,
                "every event",
                120,
            )
        except RuntimeError:
            pass  # reported below as lost events
        finally:
            node.stop()
            node.join(60)
            err = finish(proc)
            recorder.close()
            inbox.close()
    got = {json.loads(p)["event_seq"] for p in inbox.on(topic)}
    produced = set(recorder.events)
    return {
        "outage_s": outage_s,
        "queue_size": DEFAULT_QUEUE,
        "events_produced": len(produced),
        "events_during_outage": during,
        "events_lost": len(produced - got),
        "bridge_summary": err.strip().splitlines()[-1] if err.strip() else "",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=10_000, help="events for latency and CPU")
    p.add_argument("--objects", type=int, default=50, help="objects (events per frame)")
    p.add_argument("--fps", type=float, default=10.0, help="frames per second of the source")
    p.add_argument("--outage-s", type=float, default=30.0, help="broker outage (0: skip)")
    p.add_argument("--outage-objects", type=int, default=5)
    p.add_argument("--out", default="bench-mqtt.json", help="JSON report")
    args = p.parse_args(argv)
    report: dict[str, Any] = {"command": " ".join(["tools/bench_mqtt.py", *sys.argv[1:]])}
    report["latency_cpu"] = latency_and_cpu(args.events, args.objects, args.fps)
    print(json.dumps(report["latency_cpu"], indent=1), flush=True)
    if args.outage_s > 0:
        report["outage"] = outage(args.outage_s, args.outage_objects, args.fps)
        print(json.dumps(report["outage"], indent=1), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
