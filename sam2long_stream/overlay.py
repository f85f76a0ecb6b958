"""Masks drawn over the frames they were computed from: the node's overlay video and PNG,
and `sam2long-stream view`. numpy, PyAV and Pillow only (no torch), so `view` starts fast."""

from __future__ import annotations

import os
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from sam2long_stream.limits import shown

_PALETTE = (
    (255, 64, 64),
    (64, 200, 255),
    (255, 200, 40),
    (120, 255, 90),
    (230, 90, 255),
    (255, 140, 60),
    (60, 255, 200),
    (255, 255, 255),
)


def object_colour(object_id: int) -> tuple[int, int, int]:
    """A stable colour per object id (the same in the node's overlay and in `view`)."""
    return _PALETTE[(object_id - 1) % len(_PALETTE)]


def check_video_path(path: str) -> None:
    """ValueError unless FFmpeg can write a video named `path` (its extension names an
    output format): found when the command starts, not at the first frame."""
    import av

    ext = os.path.splitext(path)[1].lower().lstrip(".")
    known = {
        e.lower()
        for name in av.formats_available
        if (fmt := av.ContainerFormat(name)).is_output
        for e in fmt.extensions
    }
    if ext not in known:
        raise ValueError(f"cannot tell a video format from {shown(path)}: use .mp4, .mkv or .avi")


def check_image_path(path: str) -> None:
    """ValueError unless Pillow can write an image named `path` (.png, .jpg, ...)."""
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    if Image.registered_extensions().get(ext) not in Image.SAVE:
        raise ValueError(f"cannot tell an image format from {shown(path)}: use .png")


def draw_masks(rgb: np.ndarray, masks: Mapping[int, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """The frame with each mask tinted in its object's colour and outlined."""
    out = rgb.astype(np.float32)
    edges = []
    for oid, mask in masks.items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != rgb.shape[:2] or not m.any():
            continue
        colour = np.array(object_colour(oid), dtype=np.float32)
        out[m] = out[m] * (1.0 - alpha) + colour * alpha
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        edges.append((m & ~inner, colour))
    for edge, colour in edges:
        out[edge] = colour
    return np.clip(out, 0, 255).astype(np.uint8)


class OverlayWriter:
    """A video (and optionally a PNG of the last frame) of masks drawn over frames.

    The caller pairs each frame with the masks computed from it; the node does that in
    its loop, where both are at hand, so the overlay is exact. H.264 (libx264) when this
    PyAV has it, else MPEG-4 Part 2. Frames are timed by `time_s` (variable frame rate,
    millisecond resolution), see `write`. The video keeps the first frame's size: later
    frames of another size are padded or cropped to it.
    """

    def __init__(self, path: str | None, png: str | None = None) -> None:
        import av

        self.path, self.png = path, png
        self.frames = 0  # drawn: into the video, or for the PNG (of the last one)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None  # (height, width), even
        self._t0: float | None = None
        self._last_pts = -1  # ms in the video
        self._last_time: float | None = None  # the caller's time_s of that frame
        self._step_ms = 100  # the last gap between frames, for clocks that restart
        self._last: np.ndarray | None = None
        if path is not None:
            check_video_path(path)
        if png is not None:
            check_image_path(png)
        self.codec = next((c for c in ("libx264", "mpeg4") if c in av.codecs_available), None)
        if path is not None and self.codec is None:
            raise OSError("this PyAV has neither libx264 nor mpeg4: cannot write an overlay video")
        for target in (path, png):
            if target:
                parent = os.path.dirname(os.path.abspath(target))
                os.makedirs(parent, exist_ok=True)
                if not os.access(parent, os.W_OK):
                    raise OSError(f"cannot write to {parent}")

    def write(self, rgb: np.ndarray, masks: Mapping[int, np.ndarray], time_s: float) -> None:
        """Draw `masks` on `rgb` (the frame they were computed from) and append it.

        `time_s` is the frame's time in seconds from any origin: use the source's pts
        when the frame has one (see `frame_time_s`), so a file's overlay keeps the file's
        timing however fast it was read; else the capture wall-clock time. A clock that
        goes backwards (an RTSP reconnect, a looped file) continues one frame gap after
        the previous frame instead of piling frames onto one instant.
        """
        image = draw_masks(rgb, masks)
        self._last = image
        if self.path is not None:
            self._append(image, time_s)
        self.frames += 1

    def _append(self, image: np.ndarray, time_s: float) -> None:
        import av

        if self._container is None:
            h, w = image.shape[:2]
            self._size = (h + h % 2, w + w % 2)  # yuv420p needs even sides
            self._container = av.open(self.path, "w")
            stream = self._container.add_stream(self.codec, rate=10)
            stream.height, stream.width = self._size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            if self.codec == "libx264":
                stream.options = {"preset": "veryfast", "crf": "23"}
            else:
                stream.bit_rate = 2_000_000
            self._stream = stream
        image = _fit(image, self._size)  # type: ignore[arg-type]
        pts = self._video_ms(float(time_s))
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _video_ms(self, time_s: float) -> int:
        """Where a frame of time `time_s` goes in the video, in ms (strictly increasing)."""
        if self._t0 is None or self._last_time is None:
            self._t0 = time_s
        elif time_s < self._last_time:  # the source's clock restarted: re-anchor
            self._t0 = time_s - (self._last_pts + self._step_ms) / 1000
        pts = max(self._last_pts + 1, round((time_s - self._t0) * 1000))
        if self._last_pts >= 0:
            self._step_ms = pts - self._last_pts
        self._last_pts, self._last_time = pts, time_s
        return pts

    def close(self) -> None:
        """Finish the video and write the PNG. Idempotent."""
        if self._container is not None:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None
        if self.png and self._last is not None:
            from PIL import Image

            Image.fromarray(self._last).save(self.png)
            self._last = None


def frame_time_s(pts: float | None, capture_time_ns: int) -> float:
    """The time to give `OverlayWriter.write` for a frame: its pts when the source
    stamps frames, else its capture wall-clock time."""
    return float(pts) if pts is not None else capture_time_ns / 1e9


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    image = image[:h, :w]
    ph, pw = h - image.shape[0], w - image.shape[1]
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return np.ascontiguousarray(image)


# --------------------------------------------------------------------------- statistics
