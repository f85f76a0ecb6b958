"""Shared test fixtures.

RTSP camera: the real gst-rtsp-server test camera (tools/rtsp_camera.py) run by Debian's
system python as a subprocess on a free 127.0.0.1 port. Tests that need it FAIL (not
skip) when its Debian packages are missing: `make test` installs them when root.
"""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sam2long_stream.benchmark import CAMERA_SCRIPT, SYSTEM_PYTHON, camera_problem

REPO_ROOT = Path(__file__).resolve().parents[1]
CAMERA_DEBIAN_PACKAGES = (
    "gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 "
    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@functools.cache
def _camera_check() -> str | None:
    """None when the test camera can run, else why not (cached for the session)."""
    detail = camera_problem()
    if detail is None:
        return None
    if CAMERA_DEBIAN_PACKAGES not in detail:
        detail += f"; install: {CAMERA_DEBIAN_PACKAGES}"
    return f"the RTSP test camera cannot run: {detail} (`make test` installs them as root)"


def require_rtsp_camera() -> None:
    """Fail the calling test with the missing Debian packages named."""
    reason = _camera_check()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


class RtspCamera:
    """One tools/rtsp_camera.py process; can be killed (a crash), frozen (a hang) and
    restarted on the same port."""

    def __init__(
        self, port: int, path: str = "/cam", width: int = 320, height: int = 240, fps: int = 15
    ) -> None:
        self.port, self.path = port, path
        self.width, self.height, self.fps = width, height, fps
        self.url = f"rtsp://127.0.0.1:{port}{path}"
        self.proc: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by close()

    def start(self, ready_timeout_s: float = 15.0) -> str:
        """Start and wait for the READY line; retries while the port is still taken by
        a process that just died. Returns the URL."""
        deadline = time.monotonic() + ready_timeout_s
        while True:
            line = self._spawn(deadline)
            if line == f"READY {self.url}":
                return self.url
            self._reap()
            if time.monotonic() >= deadline:
                self._log.seek(0)
                raise RuntimeError(
                    f"RTSP camera did not become ready (got {line!r}); log:\n{self._log.read()}"
                )
            time.sleep(0.2)

    def _spawn(self, deadline: float) -> str:
        cmd = [
            SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port), "--path", self.path,
            "--width", str(self.width), "--height", str(self.height), "--fps", str(self.fps),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO_ROOT
        )
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.append(self.proc.stdout.readline().strip()), daemon=True
        )
        reader.start()
        reader.join(max(0.1, deadline - time.monotonic()))
        return lines[0] if lines else ""

    def kill(self) -> None:
        """Die like a crashed camera (SIGKILL): the TCP connection just closes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self._reap()

    def freeze(self) -> None:
        """Hang like a wedged camera (SIGSTOP): connections stay open, nothing arrives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def terminate(self) -> int | None:
        """Stop cleanly (SIGTERM); returns the exit code."""
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
        """Start again on the same port (after kill/terminate)."""
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
        self.terminate()
        self._log.close()


@pytest.fixture
def rtsp_camera_factory() -> Iterator[Callable[..., RtspCamera]]:
    """Make started cameras: `cam = rtsp_camera_factory(width=320, height=240)`; every
    camera is stopped at teardown."""
    require_rtsp_camera()
    cameras: list[RtspCamera] = []

    def make(**kwargs: int | str) -> RtspCamera:
        cam = RtspCamera(free_port(), **kwargs)  # type: ignore[arg-type]
        cameras.append(cam)
        cam.start()
        return cam

    yield make
    for cam in cameras:
        cam.close()


@pytest.fixture
def rtsp_camera(rtsp_camera_factory: Callable[..., RtspCamera]) -> str:
    """URL of a running 320x240 15 fps test camera."""
    return rtsp_camera_factory().url


@pytest.fixture
def no_thread_tracebacks() -> Iterator[None]:
    """No exception may escape any thread (node loop, sources, control, HTTP): the
    components must log and report instead. Modules opt in with `pytestmark`."""
    escaped: list[str] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        escaped.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
    assert not escaped, escaped
