"""Prompts near the frame's edge: a box partly outside is clipped to the frame (no error),
a box wholly outside and points outside are refused."""

from __future__ import annotations

import numpy as np
import pytest

from sam2long_stream.tracker import Prompt

H, W = 48, 64


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ((-10, -5, 20, 30), (0.0, 0.0, 20.0, 30.0)),
        ((50, 40, 90, 70), (50.0, 40.0, 64.0, 48.0)),
        ((-1e4, 10, 1e4, 20), (0.0, 10.0, 64.0, 20.0)),
        ((63.5, 47.5, 65, 49), (63.5, 47.5, 64.0, 48.0)),  # a sliver inside still counts
    ],
)
def test_a_box_partly_outside_is_clipped(box: tuple, clipped: tuple) -> None:
    prompt = Prompt(box=box)
    prompt.validate(H, W)  # accepted: a user drawing near the edge gets no error
    fitted = prompt.fit(H, W)
    assert fitted.box == clipped
    assert prompt.box == box  # the original is untouched (frozen)


def test_a_box_inside_and_other_prompts_come_back_as_they_are() -> None:
    inside = Prompt(box=(0, 0, W, H), points=[(5, 5)], labels=[1])
    assert inside.fit(H, W) is inside
    mask = np.zeros((H, W), bool)
    mask[3:9, 4:12] = True
    masked = Prompt(mask=mask)
    assert masked.fit(H, W) is masked
    pts = Prompt(points=[(0, 0), (W - 1, H - 1)], labels=[1, 0])
    assert pts.fit(H, W) is pts
    combined = Prompt(box=(-5, 2, 30, 20), points=[(10, 10)], labels=[1])
    fitted = combined.fit(H, W)
    assert fitted.box == (0.0, 2.0, 30.0, 20.0) and fitted.points == [(10, 10)]


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (Prompt(box=(W + 5, 0, W + 50, 30)), "wholly outside the 64x48 frame"),
        (Prompt(box=(-30, -30, 0, 10)), "wholly outside"),  # touching the edge is outside
        (Prompt(box=(10, H, 20, H + 5)), "wholly outside"),
        (Prompt(points=[(5, H)], labels=[1]), "outside the 64x48 frame"),
        (Prompt(points=[(-0.5, 3)], labels=[1]), "outside"),
        (Prompt(box=(10, 10, 5, 20)), "empty or inverted"),
    ],
)
def test_refused_by_validate_and_fit(prompt: Prompt, message: str) -> None:
    for check in (prompt.validate, prompt.fit):
        with pytest.raises(ValueError, match=message) as info:
            check(H, W)
        assert "\n" not in str(info.value)


def test_the_tracker_tracks_the_clipped_box() -> None:
    """Through the real model: a box sticking out of the frame gives exactly the masks
    of the same box clipped to the frame (the engine never sees the outside part)."""
    import numpy as np

    from sam2long_stream import Tracker, TrackerConfig
    from sam2long_stream.sources import moving_shapes_frame

    frames = [moving_shapes_frame(t, 96, 80)[0] for t in range(2)]
    config = TrackerConfig(image_size=64, device="cpu", seed=0)
    outside, clipped = Tracker(config), Tracker(config)
    a = [outside.step(frames[0], prompts={1: Prompt(box=(-20, 10, 60, 95))})]
    b = [clipped.step(frames[0], prompts={1: Prompt(box=(0, 10, 60, 80))})]
    a.append(outside.step(frames[1]))
    b.append(clipped.step(frames[1]))
    for ra, rb in zip(a, b, strict=True):
        assert ra is not None and rb is not None
        assert np.array_equal(ra.masks[1], rb.masks[1])
