"""Debian's mosquitto as a test broker on a free loopback port, with a generated config.

`make test` installs it as root (Makefile, like the RTSP camera's packages). The broker
can be stopped and started again on the same port with its persistence (retained
messages, persistent sessions) kept, which is how the tests and the benchmark take it
away mid-stream.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sam2long_stream.testing.camera import free_port

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
    anonymous access off and writes a password file with ``mosquitto_passwd -b``."""

    def __init__(self, users: dict[str, str] | None = None, persistence: bool = True) -> None:
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
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not listen on {self.port}") from None
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
