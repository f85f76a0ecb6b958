"""The overlay video keeps the source's timing: frames are placed by their pts, written
with PyAV and read back with PyAV."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from sam2long_stream.overlay import OverlayWriter, frame_time_s
from sam2long_stream.sources import moving_shapes_frame


def read_times(path: Path) -> tuple[list[float], float]:
    """(each frame's time in seconds, the stream's duration in seconds)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(f.time) for f in container.decode(stream)]
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
    return times, duration


def write(path: Path, times: list[float]) -> None:
    writer = OverlayWriter(str(path))
    for i, t in enumerate(times):
        rgb, _ = moving_shapes_frame(i, 96, 64)
        mask = np.zeros((64, 96), bool)
        mask[10:30, 20 + i : 40 + i] = True
        writer.write(rgb, {1: mask}, t)
    writer.close()
    assert writer.frames == len(times)


def test_twenty_frames_at_10_fps_last_two_seconds(tmp_path: Path) -> None:
    # pts of a file at 10 fps; the wall clock of a file read as fast as possible would
    # be a few ms apart. The node gives frame_time_s(frame.pts, frame.capture_time_ns).
    capture_ns = 1_700_000_000_000_000_000
    times = [frame_time_s(i / 10, capture_ns + i * 8_000_000) for i in range(20)]
    assert times[1] - times[0] == pytest.approx(0.1)
    out = tmp_path / "overlay.mp4"
    write(out, times)
    got, duration = read_times(out)
    assert len(got) == 20
    assert got[0] == pytest.approx(0.0, abs=1e-3)
    assert got[-1] == pytest.approx(1.9, abs=0.01)
    assert duration == pytest.approx(2.0, abs=0.05)


def test_wall_clock_is_used_when_a_frame_has_no_pts(tmp_path: Path) -> None:
    base = 1_700_000_000_000_000_000
    times = [frame_time_s(None, base + i * 50_000_000) for i in range(10)]  # 20 fps
    out = tmp_path / "wall.mp4"
    write(out, times)
    got, _ = read_times(out)
    assert got[-1] == pytest.approx(0.45, abs=0.01)


def test_a_clock_that_restarts_continues_after_the_previous_frame(tmp_path: Path) -> None:
    # a looped file or an RTSP reconnect: pts 0 .. 0.9, then 0 .. 0.9 again
    times = [i / 10 for i in range(10)] * 2
    out = tmp_path / "restart.mp4"
    write(out, times)
    got, duration = read_times(out)
    assert len(got) == 20
    assert all(b > a for a, b in itertools.pairwise(got)), got
    assert got[-1] == pytest.approx(1.9, abs=0.01)  # one frame gap at the restart
    assert duration == pytest.approx(2.0, abs=0.05)
