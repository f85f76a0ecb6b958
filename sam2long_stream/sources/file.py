"""Frames from a video file, for offline runs, evaluation and reproducible demos."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import av

from sam2long_stream.limits import check_frame_size, shorten
from sam2long_stream.redact import redact_text
from sam2long_stream.sources.base import EventCallback, FrameCallback, ThreadedSource
from sam2long_stream.sources.frame import Frame, SourceEvent
from sam2long_stream.sources.hwdecode import HwDecode

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0  # `probe`'s bound: an add_stream reply stays within the client's wait


class FileSource(ThreadedSource):
    """Decode the first video stream of any container PyAV reads.

    `realtime=True` paces frames by their pts: frame k arrives at the wall-clock time of
    the first frame plus its pts minus the first pts, as a camera would deliver it (the
    node's "latest" policy then tracks what a live run would); otherwise frames come as
    fast as the consumer takes them. A damaged packet is skipped and reported as one
    "error" at the end; a file that cannot be read is an "error"; every run ends with
    "eos" (base.py). `loop=True` starts over at the end,
    with pts and seq continuing to increase; otherwise the source ends with "eos".
    `hwaccel` and `decode_path` are as for RtspSource (see hwdecode.py).
    """

    thread_name = "file-source"

    def __init__(
        self,
        path: str | os.PathLike[str],
        realtime: bool = False,
        loop: bool = False,
        hwaccel: str = "none",
    ):
        self.path = os.fspath(path)
        self.realtime = bool(realtime)
        self.loop = bool(loop)
        self._decode = HwDecode(hwaccel, self.path)  # ValueError for an unknown name
        self.hwaccel = self._decode.requested
        super().__init__()
        self._seq = 0

    def probe(self, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[int, int]:
        """Open the file and decode its first frame within `timeout_s`; (width, height).

        ValueError, in one line, for a file that is no video, has no decodable frame,
        takes longer than the bound, or whose frames are larger than the node accepts:
        the node checks a file this way before it says a stream was added, so the reply
        is the truth (a stream that would only fail later is refused instead). Decodes
        in software; damaged packets are skipped, as `_run` does.
        """
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["size"] = _first_frame_size(self.path)
            except (av.error.FFmpegError, OSError) as exc:  # (some are ValueErrors too)
                outcome["error"] = _describe(exc, self.path)
            except ValueError as exc:  # ours: already one line
                outcome["error"] = str(exc)
            except Exception as exc:  # a bug or a PyAV surprise: still one line
                outcome["error"] = _describe(exc, self.path)

        thread = threading.Thread(target=work, name="file-probe", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():  # the daemon thread ends with its read; nothing waits for it
            raise ValueError(f"cannot read {_shown(self.path)}: no frame within {timeout_s:g} s")
        if "error" in outcome:
            raise ValueError(outcome["error"])
        width, height = outcome["size"]
        try:
            check_frame_size(width, height)
        except ValueError as exc:
            raise ValueError(f"{_shown(self.path)}: {exc}") from None
        return width, height

    @property
    def decode_path(self) -> str | None:
        """The decode in use: "software", a device type, or None before opening."""
        return self._decode.path

    def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        """Decode packet by packet: a damaged packet is skipped (the next key frame
        recovers) and reported once at the end; a file that cannot be opened or read
        any further is an "error". Either way the thread's end sends "eos" (base.py)."""
        size: tuple[int, int] | None = None
        pts_offset = 0.0
        wall0: float | None = None
        first = True
        damaged = 0
        damage: str | None = None
        while not self._stop.is_set():
            hwaccel = self._decode.hwaccel()
            try:
                container = av.open(self.path, hwaccel=hwaccel)
            except (av.error.FFmpegError, OSError) as exc:
                if hwaccel is not None and self._decode.open_failed():
                    continue  # the device went away: open again, decoding in software
                on_event(SourceEvent("error", {"message": _describe(exc, self.path)}))
                return
            last_pts: float | None = None
            step = 0.0
            try:
                if not container.streams.video:
                    on_event(SourceEvent("error", {"message": f"no video stream in {self.path}"}))
                    return
                stream = container.streams.video[0]
                self._decode.opened(stream)
                rate = stream.average_rate or stream.guessed_rate
                step = 1.0 / float(rate) if rate else 0.0
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError as exc:
                        damaged += 1
                        if damage is None:
                            damage = _reason(exc)
                            log.warning(
                                "%s: skipping a damaged packet (%s)", redact_text(self.path), damage
                            )
                        continue
                    for frame in frames:
                        if self._stop.is_set():
                            return
                        pts = frame.time
                        if pts is None:
                            pts = (last_pts + step) if last_pts is not None else 0.0
                        else:
                            pts += pts_offset
                        last_pts = pts
                        if self.realtime:  # frame at wall0 + pts: as its camera took it
                            now = time.monotonic()
                            if wall0 is None:
                                wall0 = now - pts
                            delay = wall0 + pts - now
                            if delay > 0 and self._stop.wait(delay):
                                return
                        self._decode.decoded(frame)
                        try:
                            check_frame_size(frame.width, frame.height)
                        except ValueError as exc:  # never one failing message per frame
                            message = redact_text(f"{self.path}: {exc}")
                            on_event(SourceEvent("error", {"message": message}))
                            return
                        rgb = frame.to_ndarray(format="rgb24")  # downloads a hardware frame
                        if first:
                            on_event(SourceEvent("connected", _wh(rgb)))
                            first = False
                        if size != (rgb.shape[1], rgb.shape[0]):
                            size = (rgb.shape[1], rgb.shape[0])
                            on_event(SourceEvent("resolution", _wh(rgb)))
                        frame_out = Frame(
                            rgb=rgb, seq=self._seq, pts=pts, capture_time_ns=time.time_ns()
                        )
                        on_frame(frame_out)
                        self._seq += 1
            except av.error.FFmpegError as exc:
                on_event(SourceEvent("error", {"message": _describe(exc, self.path)}))
                return
            finally:
                container.close()
                if damaged and not self._stop.is_set():
                    message = redact_text(
                        f"{self.path}: skipped {damaged} damaged packet(s) ({damage})"
                    )
                    on_event(SourceEvent("error", {"message": message}))
                    damaged, damage = 0, None
            if not self.loop or last_pts is None:
                break
            pts_offset = last_pts + step
        if not self._stop.is_set():
            on_event(SourceEvent("eos", {"frames": self._seq}))


def _first_frame_size(path: str) -> tuple[int, int]:
    """(width, height) of the first frame that decodes; ValueError when none does."""
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"no video stream in {_shown(path)}")
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue  # damaged: the next key frame may decode
            for frame in frames:
                return int(frame.width), int(frame.height)
    raise ValueError(f"no video frame could be decoded from {_shown(path)}")


def _wh(rgb) -> dict[str, int]:
    return {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])}


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)


def _shown(path: str) -> str:
    """A path as messages show it: redacted, then shortened (limits.shorten)."""
    return shorten(redact_text(path))


def _describe(exc: BaseException, path: str) -> str:
    return f"cannot read {_shown(path)}: {shorten(redact_text(_reason(exc)), 200)}"
