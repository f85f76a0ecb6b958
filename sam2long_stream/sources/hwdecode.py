"""Optional hardware video decoding for the PyAV sources (RTSP cameras, files).

``hwaccel`` is ``"none"`` (software, the default), ``"auto"`` (the first device type
that really opens, else software) or a device type FFmpeg names (``"cuda"``,
``"vaapi"``, ...). Hardware decoding must never cost the stream, so every way it can be
unusable ends in software decoding with one log line saying why:

* the FFmpeg build has no such device type, or no built-in decoder that can use it
  (FFmpeg's ``*_qsv``/``*_cuvid`` decoders are separate codecs; PyAV's hwaccel works
  through the regular decoders' hardware configs);
* no device opens (no GPU, no driver): PyAV raises from ``av.open(..., hwaccel=...)``
  itself when the device cannot be created, so the device is probed *before* the first
  open, and again when an open with it fails;
* the stream's codec has no hardware config for the device (``is_hwaccel`` is False);
* the decoder initialised the device but handed out software frames (an unsupported
  profile or size: FFmpeg falls back inside the decoder, ``allow_software_fallback``).
  Only the first frame tells, so :attr:`HwDecode.path` is set from what the decoder
  actually produced: a hardware frame has a ``sw_format``, a software frame has none.

Hardware frames are downloaded to system memory and converted by
``frame.to_ndarray(format="rgb24")`` (PyAV's reformatter transfers ``hw_frames_ctx``
frames first), so sources still hand the tracker RGB uint8 numpy arrays.

A named type FFmpeg does not know at all (a typo) is a ValueError at configuration time.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import av
import av.logging
from av.codec.codec import Codec
from av.codec.hwaccel import HWAccel, HWDeviceType, hwdevices_available

from sam2long_stream.limits import quote
from sam2long_stream.redact import redact_text

log = logging.getLogger(__name__)

NONE, AUTO, SOFTWARE = "none", "auto", "software"
# Tried in this order by "auto" (those the FFmpeg build has).
AUTO_ORDER = ("cuda", "vaapi", "videotoolbox", "d3d11va", "d3d12va", "qsv", "vdpau", "vulkan")
# Decoders used to probe a device type before the stream's codec is known.
PROBE_CODECS = ("h264", "hevc", "av1", "vp9", "mpeg4", "mpeg2video", "vp8", "mjpeg")
REPROBE_INTERVAL_S = 30.0  # at most this often after an open with the device fails


def device_types() -> list[str]:
    """Device types the loaded FFmpeg build supports (listed: not that a device exists)."""
    try:
        return list(hwdevices_available())
    except Exception:  # an FFmpeg without hwcontext support
        return []


def check_hwaccel(value: object) -> str:
    """The normalised setting, or ValueError for a name FFmpeg does not know at all.
    A real device type missing from this build passes: it falls back to software with a
    warning when the stream opens (so one config can serve hosts with other builds)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"hwaccel must be none, auto or a device type, got {quote(value)}")
    name = value.strip().lower()
    if name in (NONE, AUTO) or name in device_types():
        return name
    if name in HWDeviceType.__members__:
        return name
    known = ", ".join([NONE, AUTO, *device_types()])
    raise ValueError(f"unknown hwaccel {quote(value)}: expected one of {known}")


def probe_device(device_type: str) -> str | None:
    """None when a `device_type` device opens here, else why not (short, one line)."""
    if device_type not in device_types():
        have = ", ".join(device_types()) or "none"
        return f"this FFmpeg build has no {device_type} support (it has: {have})"
    codec = _probe_codec(device_type)
    if codec is None:
        return f"no FFmpeg decoder here can decode on {device_type}"
    ffmpeg_says: list[str] = []
    try:
        with _ffmpeg_log(ffmpeg_says):
            HWAccel(device_type, allow_software_fallback=True).create(codec)
    except NotImplementedError:
        return f"no FFmpeg decoder here can decode on {device_type}"
    except Exception as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        reasons = ffmpeg_says[:2]  # FFmpeg's own words first: "Cannot load libcuda.so.1"
        errno_text = str(reason).strip().rstrip(".")
        if errno_text not in reasons:
            reasons.append(errno_text)
        return f"no usable {device_type} device ({'; '.join(reasons)})"
    return None


_log_lock = threading.Lock()


@contextlib.contextmanager
def _ffmpeg_log(into: list[str]) -> Iterator[None]:
    """Collect FFmpeg's own error lines from this thread (they name the missing
    library or driver). PyAV passes FFmpeg's log on only while a level is set, so one is
    set for the duration and the previous one restored."""
    with _log_lock:
        previous = av.logging.get_level()
        if previous is None or previous < av.logging.ERROR:
            av.logging.set_level(av.logging.ERROR)
        logs: list = []
        try:
            with av.logging.Capture(local=True) as logs:
                yield
        finally:
            av.logging.set_level(previous)
            for entry in logs:
                message = str(entry[2]).strip().rstrip(".")
                if entry[0] <= av.logging.ERROR and message:
                    into.append(message)


def _probe_codec(device_type: str) -> Codec | None:
    for name in PROBE_CODECS:
        try:
            codec = Codec(name, "r")
            if any(
                config.device_type.name == device_type and config.is_supported
                for config in codec.hardware_configs
            ):
                return codec
        except Exception:  # not in this build, or a device type PyAV has no name for
            continue
    return None


class HwDecode:
    """The decode path of one source, across its (re)connections. Not thread-safe
    except :attr:`path`, which other threads may read at any time.

    Per connection: ``hwaccel()`` gives what to pass to ``av.open``; when that open
    raises, ``open_failed()`` says whether to retry at once in software (the device
    went away); ``opened(stream)`` and ``decoded(frame)`` check what the decoder really
    does. :attr:`path` is "software", a device type, or None before the first open.
    """

    def __init__(self, requested: str, what: str) -> None:
        self.requested = check_hwaccel(requested)
        self.what = what  # the URL or path, for log lines
        self.path: str | None = SOFTWARE if self.requested == NONE else None
        self._device: str | None = None  # the device type in use; None: software
        self._resolved = self.requested == NONE
        self._session_device: str | None = None  # device passed to the current open
        self._check_frame = False
        self._codec = "?"
        self._said: set[str] = set()
        self._said_lock = threading.Lock()
        self._last_probe = 0.0

    def hwaccel(self) -> HWAccel | None:
        """What to pass as ``av.open(hwaccel=...)`` for the next connection."""
        if not self._resolved:
            self._resolve()
        self._session_device = self._device
        self._check_frame = False
        if self._device is None:
            return None
        return HWAccel(self._device, allow_software_fallback=True)

    def open_failed(self) -> bool:
        """``av.open`` with the device raised. True when the device no longer opens (it
        is dropped: retry now in software); False when the failure is the stream's own
        (report it as usual). Probes at most every REPROBE_INTERVAL_S seconds."""
        device = self._session_device
        if device is None or self._device != device:
            return False
        now = time.monotonic()
        if now - self._last_probe < REPROBE_INTERVAL_S:
            return False
        self._last_probe = now
        why = probe_device(device)
        if why is None:
            return False
        self._device = None
        self._fall_back(why)
        return True

    def opened(self, stream: av.video.stream.VideoStream) -> None:
        """After a successful open: did the stream's decoder take the device?"""
        ctx = stream.codec_context
        self._codec = ctx.name if ctx is not None else "?"
        device = self._session_device
        if device is None:
            self.path = SOFTWARE
            return
        if ctx is None or not ctx.is_hwaccel:
            self._session_device = None
            self._fall_back(f"{device} cannot decode {self._codec} here (no hardware config)")
            return
        self._check_frame = True  # the first frame tells whether it really did

    def decoded(self, frame: av.VideoFrame) -> None:
        """Every decoded frame (cheap: only the first of each connection is looked at)."""
        if not self._check_frame:
            return
        self._check_frame = False
        device = self._session_device
        if frame.sw_format is not None:  # a hardware frame, downloaded by to_ndarray
            self.path = device
            return
        self._fall_back(
            f"the {device} decoder could not take this {self._codec} "
            f"{frame.width}x{frame.height} {frame.format.name} stream"
        )

    # -- internals -------------------------------------------------------------------

    def _resolve(self) -> None:
        self._resolved = True
        self._last_probe = time.monotonic()
        if self.requested != AUTO:
            why = probe_device(self.requested)
            if why is None:
                self._device = self.requested
            else:
                self._fall_back(why)
            return
        tried: list[str] = []
        for device in (d for d in AUTO_ORDER if d in device_types()):
            why = probe_device(device)
            if why is None:
                self._device = device
                log.info("hwaccel auto: decoding %s on %s", self.what, device)
                return
            tried.append(why)
        self.path = SOFTWARE
        detail = "; ".join(tried) if tried else "this FFmpeg build has no usable device type"
        self._say(f"hwaccel auto: decoding {self.what} in software ({detail})", logging.INFO)

    def _fall_back(self, why: str) -> None:
        self.path = SOFTWARE
        level = logging.INFO if self.requested == AUTO else logging.WARNING
        self._say(f"hwaccel {self.requested}: {why}; decoding {self.what} in software", level)

    def _say(self, message: str, level: int) -> None:
        """Log each distinct message once per source (reconnects do not repeat it)."""
        with self._said_lock:
            if message in self._said:
                return
            self._said.add(message)
        log.log(level, "%s", redact_text(message))  # FFmpeg's lines may quote the URL
