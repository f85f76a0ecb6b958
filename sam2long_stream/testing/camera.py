"""Start and stop the RTSP test camera (`rtsp_camera.py`, gst-rtsp-server) from Python.

The camera's GObject bindings come from Debian packages, so it runs under the system
python (``/usr/bin/python3``), from its path inside this package: it works the same from a
source checkout and from an installed wheel. Used by the benchmark's node section, the
test fixtures and the demo (`make demo`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from sam2long_stream.testing.rtsp_camera import DEBIAN_PACKAGES

__all__ = [
    "CAMERA_SCRIPT",
    "DEBIAN_PACKAGES",
    "SYSTEM_PYTHON",
    "CameraUnavailable",
    "RtspCamera",
    "camera_problem",
    "free_port",
]

CAMERA_SCRIPT = Path(__file__).resolve().with_name("rtsp_camera.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # gst-rtsp-server's bindings come from Debian packages


class CameraUnavailable(RuntimeError):
    """The RTSP test camera cannot run here or did not start; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listens(port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port` (a server that
    started in the background is ready)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def camera_problem() -> str | None:
    """None when the camera can run here, else why not (one line): no system python, or
    its GStreamer packages missing (the script's ``--check`` names the Debian packages).

    Reads `SYSTEM_PYTHON` and `CAMERA_SCRIPT` when called, so a test can point them
    elsewhere.
    """
    script = CAMERA_SCRIPT
    if not script.is_file():
        return f"{script} not found (an incomplete installation)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP test camera needs it)"
    try:
        check = subprocess.run(
            [SYSTEM_PYTHON, str(script), "--check"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return f"{script.name} --check hung"
    if check.returncode != 0:
        detail = " ".join((check.stdout + check.stderr).split())
        return detail or f"{script.name} --check exited {check.returncode}"
    return None


class RtspCamera:
    """One camera process serving ``rtsp://127.0.0.1:<port><path>``.

    It can be killed (a crash), frozen (a hang) and restarted on the same port, which is
    what the reliability tests need. ``port=0`` lets the camera pick a free port; `url`
    and `port` are the bound ones once `start` returned. As a context manager it starts
    on entry and stops on exit.
    """

    def __init__(
        self,
        port: int = 0,
        path: str = "/cam",
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        protocols: str = "all",  # "udp" or "tcp": serve only that RTSP lower transport
        frames: str | None = None,  # a folder of 00000.jpg, ... to play in a loop
    ) -> None:
        self.frames = frames
        self.port, self.path = int(port), path if path.startswith("/") else "/" + path
        self.protocols = protocols
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.proc: subprocess.Popen[str] | None = None
        self._log: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - see close()

    @property
    def url(self) -> str:
        """The camera's URL (with port 0 before `start`, the bound port after)."""
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, ready_timeout_s: float = 20.0) -> str:
        """Start and wait until it serves (its READY line); returns the URL.

        Retries while the port is still held by a camera that just died. Raises
        CameraUnavailable when it did not serve within `ready_timeout_s`.
        """
        deadline = time.monotonic() + ready_timeout_s
        while True:
            line = self._spawn(deadline)
            if line.startswith("READY rtsp://") and (self.port == 0 or line == f"READY {self.url}"):
                self.port = int(line.rsplit(":", 1)[1].split("/", 1)[0])
                return self.url
            self._reap()
            if time.monotonic() >= deadline:
                raise CameraUnavailable(
                    f"the RTSP camera did not start within {ready_timeout_s:g} s "
                    f"(stdout {line!r}; stderr {self._log_tail()!r})"
                )
            time.sleep(0.2)

    def _spawn(self, deadline: float) -> str:
        """Start one process; its first stdout line, or "" if none came by `deadline`."""
        cmd = [
            SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port), "--path", self.path,
            "--width", str(self.width), "--height", str(self.height), "--fps", str(self.fps),
            "--protocols", self.protocols,
        ] + (["--frames", self.frames] if self.frames else [])  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select(
            [self.proc.stdout], [], [], max(0.1, deadline - time.monotonic())
        )
        return self.proc.stdout.readline().strip() if ready else ""

    def _log_tail(self, chars: int = 400) -> str:
        self._log.seek(0)
        text = " ".join(self._log.read().split())[-chars:]
        self._log.seek(0, os.SEEK_END)
        return text

    def kill(self) -> None:
        """Die like a crashed camera (SIGKILL): the TCP connection just closes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self._reap()

    def freeze(self) -> None:
        """Hang like a wedged camera (SIGSTOP): connections stay open, nothing arrives."""
        if self.proc is None:
            raise RuntimeError("the camera is not running")
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Undo `freeze` (SIGCONT)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def terminate(self) -> int | None:
        """Stop cleanly (SIGTERM); returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.thaw()
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._reap()

    def restart(self) -> str:
        """Start again on the same port (after kill/terminate); returns the URL."""
        self.kill()
        return self.start()

    def _reap(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()

    def close(self) -> None:
        """Stop the process and release the log file."""
        try:
            self.terminate()
        finally:
            with contextlib.suppress(OSError):
                self._log.close()

    def __enter__(self) -> RtspCamera:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
