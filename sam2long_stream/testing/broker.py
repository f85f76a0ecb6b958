"""Debian's mosquitto as a test broker on a free loopback port, with a generated config.

`make test` installs it as root (Makefile, like the RTSP camera's packages). The broker
can be stopped and started again on the same port with its persistence (retained
messages, persistent sessions) kept, which is how the tests and the benchmark take it
away mid-stream.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sam2long_stream.testing.camera import free_port, listens

DEBIAN_PACKAGE = "mosquitto"


def mosquitto_problem() -> str | None:
    """None when mosquitto can run here, else why not."""
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        return "Debian's mosquitto is not installed (`make test` installs it as root)"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Mosquitto:
    """A mosquitto process on 127.0.0.1:`port`. ``users`` ({name: password}) turns
    anonymous access off and writes a password file with ``mosquitto_passwd -b``;
    ``tls`` (certificate and key files) adds a TLS listener on `tls_port` next to the
    plain one, so a test can publish over TLS and read back in the clear."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        persistence: bool = True,
        tls: tuple[str, str] | None = None,
    ) -> None:
        problem = mosquitto_problem()
        if problem is not None:
            raise RuntimeError(problem)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sam2long-mosquitto-"))
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if users else 'true'}",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:  # else it drops to user mosquitto, who cannot write self.dir
            lines.append("user root")
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.dir}/",
                "autosave_interval 0",
            ]
        self.tls_port = free_port() if tls else None
        if tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"certfile {tls[0]}",
                f"keyfile {tls[1]}",
            ]
        if users:
            pwfile = self.dir / "passwd"
            pwfile.touch(mode=0o600)
            for user, password in users.items():
                subprocess.run(
                    [_binary("mosquitto_passwd"), "-b", str(pwfile), user, password],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines.append(f"password_file {pwfile}")
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this broker has no TLS listener (Mosquitto(tls=...))")
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self, timeout: float = 30.0) -> Mosquitto:
        """Start (or start again) and wait until it accepts connections."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [_binary("mosquitto"), "-c", str(self.config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-500:]}")
            if listens(self.port):
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop it (SIGTERM saves its persistence; SIGKILL does not)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class MqttInbox:
    """A paho-mqtt subscriber on ``subs`` (QoS 1) keeping every message it gets, with
    waits; ``clean=False`` with a fixed ``client_id`` is a persistent session (the
    broker keeps messages for it while it reconnects)."""

    def __init__(
        self, port: int, subs: tuple[str, ...], client_id: str = "", clean: bool = True
    ) -> None:
        import paho.mqtt.client as mqtt  # the mqtt extra; only this class needs it
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[tuple[str, bytes, bool]] = []
        self.received_ns: list[int] = []  # time.time_ns() of each message's arrival
        self._lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 2)

        def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            for t in subs:
                c.subscribe(t, qos=1)
            self.connected.set()

        def on_disconnect(*_: Any) -> None:
            self.connected.clear()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            now = time.time_ns()
            with self._lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
                self.received_ns.append(now)

        self.client.on_connect = on_connect
        self.client.on_disconnect = on_disconnect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(30):
            raise RuntimeError(f"the MQTT subscriber did not connect to port {port}")

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def timed(self, topic: str) -> list[tuple[int, bytes]]:
        """(arrival time_ns, payload) of each message on ``topic``."""
        with self._lock:
            pairs = zip(self.received_ns, self.messages, strict=True)
            return [(ns, p) for ns, (t, p, _) in pairs if t == topic]

    def json(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.on(topic)]

    def wait(self, done: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                with self._lock:
                    seen = sorted({t for t, _, _ in self.messages})
                raise AssertionError(f"timed out waiting for {what}; topics seen: {seen}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
