"""RTSP camera input: PyAV (FFmpeg) decoding on a thread, with reconnects.

Cameras drop, reboot and come back; a tracker node must outlive that. The thread
connects, decodes, and when the stream dies waits with capped exponential backoff and
tries again, telling the node what happens through events. `seq` keeps counting across
reconnects so downstream never sees it go backwards.

Interruption: FFmpeg blocks inside open/read, so every blocking call carries PyAV's
timeout (its interrupt callback) and the thread checks the stop flag between packets and
during backoff. A dead server (connection closed or refused) is noticed at once; a hung
one (connected, sending nothing) within `timeout_s`.
"""

from __future__ import annotations

import logging
import time

import av

from sam2long_stream.limits import check_frame_size
from sam2long_stream.redact import redact_text, redact_url
from sam2long_stream.sources.base import (
    EventCallback,
    FrameCallback,
    ThreadedSource,
    one_line,
)
from sam2long_stream.sources.frame import Frame, SourceEvent
from sam2long_stream.sources.hwdecode import HwDecode

log = logging.getLogger(__name__)

TRANSPORTS = ("tcp", "udp")

__all__ = ["TRANSPORTS", "RtspSource", "describe_error", "redact_url"]  # redact_url: old home


class RtspSource(ThreadedSource):
    """Frames from an rtsp:// or rtsps:// URL.

    Events: "connected" (first frame after each (re)connect; width, height, url),
    "resolution" (first frame and every size change), "disconnected" (reason) when a
    stream that delivered frames ends or fails, "error" (message) when a connection
    attempt fails, "reconnecting" (attempt, delay_s) before each retry. With
    `reconnect=False` the source ends after one session: "error" if it failed, then
    "eos" (as every source that stops on its own, see base.py).

    Retries wait 0.25 s, then twice as long each time, at most ``backoff_max_s`` (1 s):
    a camera that comes back is tracked again within about a second of serving (an
    attempt at a dead port costs one refused TCP connect; at a hung one, ``timeout_s``).

    `hwaccel`: "none" (software), "auto" or a device type ("cuda", "vaapi", ...); when
    the device cannot be used the stream decodes in software (see hwdecode.py).
    `decode_path` says what is in use: "software", a device type, or None before the
    first connection.
    """

    thread_name = "rtsp-source"

    def __init__(
        self,
        url: str,
        transport: str = "tcp",
        timeout_s: float = 2.0,
        reconnect: bool = True,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 1.0,
        hwaccel: str = "none",
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown RTSP transport {transport!r}: expected tcp or udp")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.url = url
        self.transport = transport
        self.timeout_s = float(timeout_s)
        self.reconnect = bool(reconnect)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        super().__init__()
        self._on_frame: FrameCallback | None = None
        self._on_event: EventCallback | None = None
        self._seq = 0
        self._size: tuple[int, int] | None = None
        self._refused = False  # a frame larger than the node accepts came: no retries
        self._safe_url = redact_url(url)
        self._decode = HwDecode(hwaccel, self._safe_url)  # ValueError for an unknown name
        self.hwaccel = self._decode.requested

    @property
    def decode_path(self) -> str | None:
        """The decode in use: "software", a device type, or None before connecting."""
        return self._decode.path

    # -- ThreadedSource ---------------------------------------------------------------

    @property
    def join_timeout_s(self) -> float:  # type: ignore[override]
        """`stop` is bounded by the read timeout even if FFmpeg is blocked on a hung server."""
        return self.timeout_s + 1.0

    # -- internals ------------------------------------------------------------------

    def _emit(self, kind: str, **detail: object) -> None:
        if self._on_event is not None:  # guarded, redacted and muted after stop (base.py)
            self._on_event(SourceEvent(kind, dict(detail)))

    def _options(self) -> dict[str, str]:
        return {
            "rtsp_transport": self.transport,
            # socket I/O timeout inside FFmpeg's RTSP demuxer, in microseconds
            "timeout": str(int(self.timeout_s * 1e6)),
            # start decoding at once: the SDP carries SPS/PPS, no long probing needed
            "analyzeduration": "0",
            "probesize": "32",
            "flags": "low_delay",
            "max_delay": "0",
            "reorder_queue_size": "0",
        }

    def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        self._on_frame, self._on_event = on_frame, on_event
        delay = self.backoff_initial_s
        attempt = 0
        while not self._stop.is_set():
            delivered, _clean = self._session()
            if self._stop.is_set() or self._refused:
                break
            if not self.reconnect:
                # a failure has already been reported as "error"/"disconnected"; the
                # thread's end sends "eos" either way (base.py)
                break
            if delivered:
                delay, attempt = self.backoff_initial_s, 0
            attempt += 1
            self._emit("reconnecting", attempt=attempt, delay_s=round(delay, 3))
            if self._stop.wait(delay):
                break
            delay = min(delay * 2.0, self.backoff_max_s)

    def _session(self) -> tuple[bool, bool]:
        """One connection: open, decode until it ends. Returns (delivered any frame,
        ended cleanly at end of stream)."""
        container = None
        while container is None:
            began = time.monotonic()
            hwaccel = self._decode.hwaccel()
            try:
                container = av.open(
                    self.url,
                    options=self._options(),
                    timeout=(self.timeout_s, self.timeout_s),
                    hwaccel=hwaccel,
                )
            except Exception as exc:  # FFmpeg raises many types; all mean "could not open"
                if hwaccel is not None and self._decode.open_failed():
                    continue  # the device went away: open again, decoding in software
                if time.monotonic() - began >= self.timeout_s:
                    why = f"no answer within {self.timeout_s:g} s"
                else:
                    why = describe_error(exc, self.timeout_s)
                self._emit("error", message=f"cannot open {self._safe_url}: {why}")
                return False, False

        delivered = False
        reason = "end of stream"
        clean = True
        packets = None
        try:
            if not container.streams.video:
                self._emit("error", message=f"no video stream in {self._safe_url}")
                return False, False
            stream = container.streams.video[0]
            self._decode.opened(stream)
            packets = container.demux(stream)
            while not self._stop.is_set():
                began = time.monotonic()
                packet = next(packets, None)
                if packet is None:
                    break
                # When PyAV's read timeout interrupts FFmpeg's RTSP demuxer, the demuxer
                # first hands out the frame it still held and fails only on the next
                # read, one more timeout later. A read that lasted the whole timeout
                # therefore means the server went silent: end the session now.
                stalled = time.monotonic() - began >= self.timeout_s
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    frames = []  # a damaged packet; the next key frame recovers
                for frame in frames:
                    self._decode.decoded(frame)
                    if not self._deliver(frame, first=not delivered):
                        return delivered, False  # refused for good (reported)
                    delivered = True
                if stalled:
                    reason, clean = f"no data for {self.timeout_s:g} s", False
                    break
        except Exception as exc:
            reason = describe_error(exc, self.timeout_s)
            clean = False
        finally:
            try:
                if packets is not None:
                    packets.close()  # type: ignore[attr-defined]  # a generator; av says Iterator
                container.close()
            except Exception as exc:
                log.debug("closing %s failed: %s", self._safe_url, one_line(exc))

        if self._stop.is_set():
            return delivered, False
        if delivered:
            self._emit("disconnected", reason=reason)
        elif not clean:
            self._emit("error", message=f"{self._safe_url}: {reason}")
        else:
            self._emit("error", message=f"{self._safe_url}: stream ended before any frame")
        return delivered, clean

    def _deliver(self, frame: av.VideoFrame, first: bool) -> bool:
        """Convert and hand on one frame; False (after an "error" event) for a frame
        larger than the node accepts: the camera's setting, so no reconnect helps."""
        try:
            check_frame_size(frame.width, frame.height)
        except ValueError as exc:
            self._refused = True
            self._emit("error", message=f"{self._safe_url}: {exc}")
            return False
        rgb = frame.to_ndarray(format="rgb24")  # downloads a hardware frame first
        capture_time_ns = time.time_ns()
        size = (int(rgb.shape[1]), int(rgb.shape[0]))
        if first:
            self._emit("connected", url=self._safe_url, width=size[0], height=size[1])
        if size != self._size:
            self._size = size
            self._emit("resolution", width=size[0], height=size[1])
        if self._stop.is_set() or self._on_frame is None:
            return True
        out = Frame(rgb=rgb, seq=self._seq, pts=frame.time, capture_time_ns=capture_time_ns)
        self._seq += 1
        self._on_frame(out)
        return True


def describe_error(exc: BaseException, timeout_s: float | None = None) -> str:
    """A short, human reason for a PyAV/FFmpeg failure (never a traceback)."""
    if isinstance(exc, av.error.ExitError):  # PyAV's interrupt callback fired
        return f"timed out after {timeout_s:g} s" if timeout_s else "timed out"
    if isinstance(exc, EOFError):
        return "end of stream"
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact_text(str(reason).strip().rstrip("."))
