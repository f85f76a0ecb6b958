"""Frame sources (RTSP, WebRTC, files, a synthetic scene) and `open_source`, which picks
one from a URL so the node and the tools take a single `--source` string."""

from __future__ import annotations

import inspect
import os
import urllib.parse
from typing import Any

from sam2long_stream.limits import quote, shorten
from sam2long_stream.redact import redact_text, redact_url
from sam2long_stream.sources.base import EventCallback, FrameCallback, FrameSource
from sam2long_stream.sources.file import FileSource
from sam2long_stream.sources.frame import Frame, SourceEvent
from sam2long_stream.sources.frame_queue import FrameQueue
from sam2long_stream.sources.hwdecode import check_hwaccel
from sam2long_stream.sources.rtsp import TRANSPORTS, RtspSource
from sam2long_stream.sources.synthetic import (
    SyntheticSource,
    moving_shapes_frame,
    moving_shapes_masks,
)

__all__ = [
    "EventCallback",
    "FileSource",
    "Frame",
    "FrameCallback",
    "FrameQueue",
    "FrameSource",
    "RtspSource",
    "SourceEvent",
    "SyntheticSource",
    "check_hwaccel",
    "moving_shapes_frame",
    "moving_shapes_masks",
    "open_source",
]

_EXPECTED = (
    "expected rtsp://, rtsps://, whip://, whep+http(s)://, synthetic://moving-shapes "
    "or a video file path"
)
_SYNTHETIC_PARAMS: dict[str, type] = {
    "width": int,
    "height": int,
    "fps": float,
    "frames": int,
    "seed": int,
    "realtime": bool,
}


def open_source(url: str, **options: Any) -> FrameSource:
    """Build the source a URL names (not started). `options` go to its constructor;
    one it does not take is a ValueError, as is an unsupported URL or a missing file.
    Error messages show the URL redacted (redact.py).

    Two per-stream settings are taken by every kind and used where they mean something,
    so one node-wide value can cover mixed streams (settings.py passes both always):
    ``rtsp_transport="tcp"|"udp"`` is RtspSource's `transport` (cameras that refuse
    interleaved TCP need "udp"); ``realtime=True|False`` paces file and synthetic
    sources by their timestamps (a ``realtime=`` in a synthetic URL wins). Live sources
    (RTSP, WebRTC) are real time by nature and ignore it; WebRTC ignores the transport.

    rtsp:// rtsps://                 -> RtspSource(url, **options)
    whip://host:port/path            -> webrtc.WhipSource.from_url(url)  (we listen)
    whep+http(s)://host/path         -> webrtc.WhepSource.from_url(url)  (we pull)
    synthetic://moving-shapes?width=320&height=240&fps=15&frames=N&seed=0&realtime=1
    file:///path/video.mp4 or a path -> FileSource(path, **options)

    RTSP and file sources take ``hwaccel="none"|"auto"|<device type>`` (hwdecode.py);
    the WebRTC and synthetic sources do not decode with FFmpeg and refuse it.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"empty source: {_EXPECTED}")
    url = url.strip()
    try:
        scheme = urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError as exc:  # e.g. an unclosed "[" in the host
        raise ValueError(f"bad source URL {quote(redact_url(url))}: {exc}") from None
    options = dict(options)
    transport = options.pop("rtsp_transport", None)
    realtime = options.pop("realtime", None)
    if transport is not None and transport not in TRANSPORTS:
        raise ValueError(f"unknown RTSP transport {transport!r}: expected tcp or udp")

    if scheme in ("rtsp", "rtsps"):
        if transport is not None and options.setdefault("transport", transport) != transport:
            raise ValueError(
                f"transport={options['transport']!r} and rtsp_transport={transport!r} "
                "disagree: give one"
            )
        return _build(RtspSource, "rtsp", url, options)
    if scheme in ("whip", "whep", "whep+http", "whep+https"):
        try:
            from sam2long_stream.sources import webrtc
        except ImportError as exc:
            raise ValueError(f"WebRTC sources are not available here ({exc})") from exc
        cls = webrtc.WhipSource if scheme == "whip" else webrtc.WhepSource
        return _from_url(cls, scheme.split("+")[0], url, options)
    if scheme == "synthetic":
        return _synthetic(url, options, realtime)
    if realtime is not None:
        options["realtime"] = bool(realtime)
    if scheme == "file":
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.unquote(parts.path)
        if parts.netloc and parts.netloc != "localhost":  # file://relative/path
            path = urllib.parse.unquote(parts.netloc) + path
        return _file(path, options)
    if scheme:
        raise ValueError(f"unsupported source {quote(redact_url(url))}: {_EXPECTED}")
    return _file(url, options)


def _file(path: str, options: dict[str, Any]) -> FrameSource:
    if not os.path.isfile(path):
        raise ValueError(f"no such file: {shorten(path)} ({_EXPECTED})")
    return _build(FileSource, "file", path, options)


def _synthetic(url: str, options: dict[str, Any], realtime: bool | None) -> FrameSource:
    parts = urllib.parse.urlsplit(url)
    name = (parts.netloc + parts.path).strip("/")
    if name != "moving-shapes":
        raise ValueError(
            f"unknown synthetic source {quote(name)}: expected synthetic://moving-shapes"
        )
    params: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        kind = _SYNTHETIC_PARAMS.get(key)
        if kind is None:
            raise ValueError(
                f"unknown synthetic parameter {quote(key)}: expected {', '.join(_SYNTHETIC_PARAMS)}"
            )
        try:
            params[key] = _parse_bool(value) if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"bad value for synthetic parameter {key}: {quote(value)}") from None
    if realtime is not None:
        params.setdefault("realtime", bool(realtime))
    params.update(options)
    return _build(SyntheticSource, "synthetic", None, params)


def _from_url(cls: Any, kind: str, url: str, options: dict[str, Any]) -> FrameSource:
    """`cls.from_url(url)`; options, if any, override what the URL gave (the class keeps
    each constructor argument as an attribute of the same name)."""
    try:
        source = cls.from_url(url)
    except ValueError as exc:  # its message may quote the URL
        raise ValueError(redact_text(str(exc))) from None
    if not options:
        return source
    accepted = inspect.signature(cls).parameters
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to {kind} sources")
    kwargs = {name: getattr(source, name) for name in accepted if hasattr(source, name)}
    kwargs.update(options)
    return cls(**kwargs)


def _parse_bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on", ""):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _build(cls: type, kind: str, target: str | None, options: dict[str, Any]) -> FrameSource:
    """Construct `cls`, turning an option it does not take into a readable ValueError."""
    accepted = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(k for k in options if k not in accepted and not takes_any)
    if unknown:
        raise ValueError(f"option(s) {', '.join(unknown)} do not apply to {kind} sources")
    return cls(**options) if target is None else cls(target, **options)
