"""The synthetic long-tracking scenes: seeded, exact visible-pixel ground truth, and the
events they promise (an occluded target is wholly hidden, an exited one is out of the
frame, a distractor is a look-alike that comes close), written as a DAVIS set that the
evaluation readers load."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from sam2long_stream.evaluation import list_videos, load_video
from sam2long_stream.scenes import EVENT_KINDS, HELD_OUT_SEED_START, make_scene
from sam2long_stream.scenes.davis import EVENTS_FILE, write_davis


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, b = make_scene(7, 96, 72, 20), make_scene(7, 96, 72, 20)
    for i in (0, 9, 19):
        rgb_a, masks_a = a.frame(i)
        rgb_b, masks_b = b.frame(i)
        assert np.array_equal(rgb_a, rgb_b)
        assert masks_a.keys() == masks_b.keys()
        assert all(np.array_equal(masks_a[k], masks_b[k]) for k in masks_a)
    assert not np.array_equal(make_scene(8, 96, 72, 20).frame(0)[0], a.frame(0)[0])


def test_visible_masks_are_disjoint_and_show_the_object() -> None:
    """Every visible pixel belongs to one target only, and a target's pixels are drawn
    from its own texture (the ground truth is what the frame shows)."""
    scene = make_scene(3, 160, 120, 40, num_targets=3)
    for i in range(0, 40, 3):
        rgb, masks = scene.frame(i)
        total = sum(m.astype(int) for m in masks.values())
        assert total.max() <= 1
        for obj, mask in masks.items():
            if mask.sum() < 30:
                continue
            tile = next(a.look.tile for a in scene.actors if a.target == obj)
            colours = rgb[mask].astype(float)
            lo, hi = tile.reshape(-1, 3).min(0) - 40, tile.reshape(-1, 3).max(0) + 40
            inside = ((colours >= lo) & (colours <= hi)).all(axis=1).mean()
            assert inside > 0.9, (i, obj, inside)


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_each_event_happens_as_announced(kind: str) -> None:
    seen = 0
    for seed in range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + 6):
        scene = make_scene(seed, 160, 120, 80, events=(kind,))
        events = [e for e in scene.events if e.kind == kind and e.target == 1]
        for event in events:
            seen += 1
            areas = [int(scene.frame(i)[1][1].sum()) for i in range(event.start, event.end)]
            if kind == "occlusion":  # wholly hidden for the hold, visible around it
                assert min(areas) == 0
                assert scene.frame(max(0, event.start - 4))[1][1].sum() > 0
            elif kind == "exit":  # gone while out, back at the end
                assert min(areas) == 0
                if event.end < scene.num_frames:
                    assert scene.frame(event.end)[1][1].sum() > 0
            else:  # a look-alike of the target's shape comes within reach
                twin = [a for a in scene.actors if not a.target and a.look.shape is not None]
                target = next(a for a in scene.actors if a.target == 1)
                mid = (event.start + event.end) // 2
                dist = min(
                    np.hypot(a.path.x[mid] - target.path.x[mid], a.path.y[mid] - target.path.y[mid])
                    for a in twin
                    if a.look.shape == target.look.shape
                )
                assert dist < 2 * target.look.radius * target.path.scale[mid]
    assert seen >= 4


def test_scenes_command_writes_a_davis_set_with_every_event_kind(tmp_path) -> None:
    out = tmp_path / "set"
    proc = subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "scenes", "--out", str(out),
         "--videos", "6", "--frames", "40", "--width", "96", "--height", "72"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = list_videos(out, "davis")
    assert len(names) == 6
    assert (out / "ImageSets" / "2017" / "val.txt").read_text().split() == names
    meta = json.loads((out / EVENTS_FILE).read_text())
    assert meta["seeds"][0] == HELD_OUT_SEED_START
    kinds = Counter(e["kind"] for events in meta["events"].values() for e in events)
    assert set(kinds) == set(EVENT_KINDS)
    video = load_video(out, names[0], "davis")
    assert len(video.frames) == 40 and (video.height, video.width) == (72, 96)
    gt, _ = video.read_gt(0)
    scene = make_scene(HELD_OUT_SEED_START, 96, 72, 40, events=(EVENT_KINDS[0],))
    assert all(np.array_equal(gt[o], scene.frame(0)[1][o]) for o in scene.targets)


def test_write_davis_is_reproducible(tmp_path) -> None:
    a = write_davis(tmp_path / "a", [5, 6], 64, 64, 12)
    b = write_davis(tmp_path / "b", [5, 6], 64, 64, 12)
    assert a == b
    for name in a:
        folder_a = tmp_path / "a" / "Annotations" / "480p" / name
        folder_b = tmp_path / "b" / "Annotations" / "480p" / name
        for f in folder_a.iterdir():
            assert f.read_bytes() == (folder_b / f.name).read_bytes()


def test_gain_table_groups_objects_by_the_events_they_met() -> None:
    from sam2long_stream.scenes.gain import format_gain, gain_table

    def result(scores: dict[str, dict[int, float]]) -> dict:
        return {
            "videos": {
                v: {"objects": {str(o): {"J&F": s} for o, s in objs.items()}}
                for v, objs in scores.items()
            }
        }

    report = {
        "results": {
            "1": result({"a": {1: 0.5, 2: 0.9}, "b": {1: 0.6}}),
            "3": result({"a": {1: 0.8, 2: 0.9}, "b": {1: 0.5}}),
        }
    }
    events = {
        "a": [{"kind": "occlusion", "object": 1, "start": 3, "end": 9}],
        "b": [{"kind": "exit", "object": 1, "start": 2, "end": 7}],
    }
    table = gain_table(report, events, "1", "3")

    def means(v):  # (base, new, gain, n)
        return (v.base, v.new, v.gain, v.n)

    assert means(table["kinds"]["occlusion"]) == pytest.approx((0.5, 0.8, 0.3, 1))
    assert means(table["kinds"]["exit"]) == pytest.approx((0.6, 0.5, -0.1, 1))
    assert table["kinds"]["distractor"] is None
    assert means(table["kinds"]["none"]) == pytest.approx((0.9, 0.9, 0.0, 1))
    everything = table["all"]
    assert means(everything) == pytest.approx((2.0 / 3, 2.2 / 3, 0.2 / 3, 3))
    diffs = np.array([0.3, 0.0, -0.1])  # per object: the standard error is over objects
    assert everything.se == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert (everything.better, everything.worse) == (1, 1)  # the unchanged one is neither
    from sam2long_stream.scenes.gain import compare_table, object_scores

    wide = compare_table(object_scores(report, "1"), object_scores(report, "3"), events, 0.2)
    assert (wide["all"].better, wide["all"].worse) == (1, 0)  # -0.1 is within 0.2
    assert "(by > 20 points)" in format_gain(wide, "P=1", "P=3")
    assert means(table["videos"]["a"]) == pytest.approx((0.7, 0.85, 0.15, 2))
    text = format_gain(table, "P=1", "P=3")
    assert "| event: occlusion | 50.0 | 80.0 | +30.0 (s.e. 0.0) | 1 / 0 | 1 |" in text
    assert "| b |" in text and "| b |" not in format_gain(table, "P=1", "P=3", videos=False)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--videos", "2"], "the following arguments are required: --out"),
        (["--out", "x", "--videos", "0"], "need --videos >= 1"),
        (["--out", "x", "--first-seed", "-5"], "--first-seed must be in 0.."),
        (["--out", "x", "--width", "5000"], "at most 4096"),
    ],
)
def test_scenes_bad_flags_are_one_line(args, expect, capsys) -> None:
    from sam2long_stream.scenes.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert expect in err and err.count("\n") == 1 and "Traceback" not in err
