"""Shared test fixtures.

RTSP camera: the real gst-rtsp-server test camera (`sam2long_stream.testing.RtspCamera`,
run by Debian's system python) as a subprocess on a free 127.0.0.1 port. Tests that need
it FAIL (not skip) when its Debian packages are missing: `make test` installs them when
root.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sam2long_stream.testing.camera import (
    DEBIAN_PACKAGES,
    RtspCamera,
    camera_problem,
    free_port,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
__all__ = ["REPO_ROOT", "RtspCamera", "free_port", "require_rtsp_camera", "wait_for"]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy and return that; fail naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


@functools.cache
def _camera_check() -> str | None:
    """None when the test camera can run, else why not (cached for the session)."""
    detail = camera_problem()
    if detail is None:
        return None
    if DEBIAN_PACKAGES not in detail:
        detail += f"; install: {DEBIAN_PACKAGES}"
    return f"the RTSP test camera cannot run: {detail} (`make test` installs them as root)"


def require_rtsp_camera() -> None:
    """Fail the calling test with the missing Debian packages named."""
    reason = _camera_check()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@pytest.fixture
def rtsp_camera_factory() -> Iterator[Callable[..., RtspCamera]]:
    """Make started cameras: `cam = rtsp_camera_factory(width=320, height=240)`; every
    camera is stopped at teardown."""
    require_rtsp_camera()
    cameras: list[RtspCamera] = []

    def make(**kwargs: Any) -> RtspCamera:
        cam = RtspCamera(**kwargs)  # port 0: the camera binds a free port itself
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
