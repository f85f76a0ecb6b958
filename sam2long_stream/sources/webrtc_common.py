"""Shared plumbing for the WebRTC sources: a private asyncio loop thread, ICE address
scoping, and the frame/event emitter that turns aiortc frames into `Frame`s."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import av

from sam2long_stream.limits import check_frame_size
from sam2long_stream.redact import redact_text
from sam2long_stream.sources.base import EventCallback, FrameCallback, safe_event
from sam2long_stream.sources.base import one_line as one_line  # re-exported for whip/whep
from sam2long_stream.sources.frame import Frame, SourceEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOPBACK_ADDRESSES: tuple[str, ...] = ("127.0.0.1",)

# ---------------------------------------------------------------------------------------
# ICE host-candidate scoping
#
# aioice 0.13 has no option to choose which interfaces host candidates come from: its
# module-level `get_host_addresses` lists every interface and explicitly drops 127.0.0.1.
# So on a loopback-only box aiortc gathers nothing, and on a normal box it advertises
# every interface. We wrap that one function, once, with a per-thread override: a loop
# thread that asked for specific addresses gets exactly those; every other thread keeps
# aioice's stock behaviour.
# ---------------------------------------------------------------------------------------

_ice_scope = threading.local()
_patch_lock = threading.Lock()
_patched = False


def _install_ice_scope() -> None:
    """Wrap aioice's address lister once so loop threads can scope their candidates."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        import aioice.ice as aioice_ice

        original = aioice_ice.get_host_addresses

        def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
            override: tuple[str, ...] | None = getattr(_ice_scope, "addresses", None)
            if override is None:
                return original(use_ipv4, use_ipv6)
            return [
                a
                for a in override
                if (use_ipv6 if ipaddress.ip_address(a).version == 6 else use_ipv4)
            ]

        aioice_ice.get_host_addresses = get_host_addresses
        _patched = True


def is_loopback_host(host: str | None) -> bool:
    """True for 'localhost' and 127.0.0.0/8 / ::1 literals."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_ice_addresses(host: str | None) -> tuple[str, ...] | None:
    """Loopback peers only need loopback candidates; anything else keeps aioice's default."""
    return LOOPBACK_ADDRESSES if is_loopback_host(host) else None


def rtc_configuration() -> Any:
    """No STUN/TURN: aiortc would otherwise try stun.l.google.com, unreachable here."""
    from aiortc import RTCConfiguration

    return RTCConfiguration(iceServers=[])


# ---------------------------------------------------------------------------------------
# Loop thread
# ---------------------------------------------------------------------------------------


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Log stray task errors as one line instead of asyncio's multi-line traceback."""
    exc = context.get("exception")
    msg = context.get("message", "")
    if exc is not None:
        log.warning("webrtc loop: %s: %s", redact_text(str(msg)), one_line(exc))
    else:
        log.warning("webrtc loop: %s", redact_text(str(msg)))


class LoopThread:
    """An asyncio loop on its own daemon thread, so aiortc never touches the caller's loop.

    `pause()`/`resume()` freeze the loop without closing anything; the test peers use it
    to imitate a peer that vanishes without saying goodbye.
    """

    def __init__(self, name: str, ice_addresses: Sequence[str] | None = None) -> None:
        self.name = name
        self._ice_addresses = tuple(ice_addresses) if ice_addresses is not None else None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._pausing = False
        self._paused = threading.Event()
        self._resume = threading.Event()

    def start(self) -> None:
        if self._ice_addresses is not None:
            _install_ice_scope()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def _run(self) -> None:
        _ice_scope.addresses = self._ice_addresses
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_loop_exception_handler)
        self.loop = loop
        self._ready.set()
        try:
            while True:
                loop.run_forever()
                if not self._pausing:
                    break
                self._paused.set()
                self._resume.wait()
                self._resume.clear()
                self._pausing = False
                self._paused.clear()
            self._drain(loop)
        except Exception as exc:  # never a traceback out of a source thread
            log.warning("%s: loop thread failed: %s", self.name, one_line(exc))
        finally:
            with contextlib.suppress(Exception):
                loop.close()

    @staticmethod
    def _drain(loop: asyncio.AbstractEventLoop) -> None:
        """Cancel what is left so aiortc's tasks do not warn about being destroyed."""
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            gathered = asyncio.gather(*pending, return_exceptions=True)
            try:
                loop.run_until_complete(asyncio.wait_for(gathered, 1.0))
            except Exception as exc:
                log.debug("loop drain: %s", exc)
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception as exc:
            log.debug("loop drain: %s", exc)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        assert self.loop is not None, "LoopThread.start() first"
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for its result (raises what it raises)."""
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def pause(self) -> None:
        """Freeze the loop: sockets stay open but nothing is sent or answered."""
        if self.loop is None or self._pausing:
            return
        self._pausing = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._paused.wait(3.0)

    def resume(self) -> None:
        if self._pausing:
            self._resume.set()
            deadline = time.monotonic() + 3.0
            while self._paused.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the loop and join the thread; idempotent."""
        if self._thread is None:
            return
        self.resume()
        if self.loop is not None and not self.loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: loop thread did not stop within %.1f s", self.name, timeout)
        self._thread = None


# ---------------------------------------------------------------------------------------
# Frame / event emitter
# ---------------------------------------------------------------------------------------


def video_frame_to_rgb(frame: av.VideoFrame) -> Any:
    """aiortc hands out decoded yuv420p frames; the tracker wants RGB uint8 HxWx3."""
    return frame.to_ndarray(format="rgb24")


def frame_pts_seconds(frame: av.VideoFrame) -> float | None:
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


class Emitter:
    """Owns the callbacks, the monotonic seq (across sessions) and the size bookkeeping."""

    def __init__(self, name: str, on_frame: FrameCallback, on_event: EventCallback) -> None:
        self.name = redact_text(name)
        self._on_frame = on_frame
        self._on_event = on_event
        self._seq = 0
        self._size: tuple[int, int] | None = None
        self._refused: tuple[int, int] | None = None  # the size of frames being dropped
        self._lock = threading.Lock()

    def event(self, kind: str, **detail: Any) -> None:
        try:
            self._on_event(safe_event(SourceEvent(kind, dict(detail))))
        except Exception as exc:
            log.warning("%s: on_event callback raised %s", self.name, one_line(exc))

    def error(self, message: str) -> None:
        message = redact_text(message)
        log.warning("%s", message)
        self.event("error", message=message)

    def new_session(self) -> None:
        """The next frame starts a session: it gets "connected", not "resolution"."""
        self._size = None

    def frame(self, vframe: av.VideoFrame, **connected_detail: Any) -> None:
        """Convert and deliver one frame; emits connected/resolution as the size demands.
        A frame larger than the node accepts is dropped, with one "error" per size."""
        try:
            check_frame_size(vframe.width, vframe.height)
        except ValueError as exc:
            if self._refused != (vframe.width, vframe.height):
                self._refused = (vframe.width, vframe.height)
                self.error(f"{self.name}: {exc}; frames of this size are dropped")
            return
        self._refused = None
        try:
            rgb = video_frame_to_rgb(vframe)
        except Exception as exc:
            log.warning("%s: frame conversion failed: %s", self.name, one_line(exc))
            return
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        if self._size is None:
            self._size = (w, h)
            self.event("connected", width=w, height=h, **connected_detail)
        elif self._size != (w, h):
            self._size = (w, h)
            self.event("resolution", width=w, height=h)
        with self._lock:
            seq = self._seq
            self._seq += 1
        out = Frame(rgb=rgb, seq=seq, pts=frame_pts_seconds(vframe), capture_time_ns=time.time_ns())
        try:
            self._on_frame(out)
        except Exception as exc:
            log.warning("%s: on_frame callback raised %s", self.name, one_line(exc))


async def drain_track(track: Any) -> None:
    """Read and drop a track we do not use (audio): aiortc's receive queue is unbounded."""
    from aiortc.mediastreams import MediaStreamError

    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        return
    except Exception as exc:
        log.debug("drain_track: %s", exc)


async def consume_video(
    track: Any,
    emitter: Emitter,
    idle_timeout_s: float,
    first_frame_timeout_s: float,
    on_first_frame: Any = None,
    active: Any = None,
    **connected_detail: Any,
) -> str:
    """Pump a remote video track into the emitter until it ends or goes quiet.

    Returns why it stopped. The idle timeout is what catches a peer that vanished
    without closing: ICE consent freshness would only notice after ~30 s. ``active``
    (a callable) says whether the session still stands: Python 3.11's ``wait_for`` can
    return a frame that arrived as the task was being cancelled, and a frame of an
    ended session must not reach the emitter (it would announce "connected" again).
    """
    from aiortc.mediastreams import MediaStreamError

    got_frame = False
    while True:
        timeout = idle_timeout_s if got_frame else first_frame_timeout_s
        try:
            vframe = await asyncio.wait_for(track.recv(), timeout)
        except TimeoutError:
            if got_frame:
                return f"no frame for {idle_timeout_s:g} s"
            return f"no video within {first_frame_timeout_s:g} s"
        except MediaStreamError:
            return "track ended"
        if active is not None and not active():
            return "session ended"
        if not got_frame:
            got_frame = True
            if on_first_frame is not None:
                on_first_frame()
        emitter.frame(vframe, **connected_detail)
