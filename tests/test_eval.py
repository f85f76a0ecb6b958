"""J and F metrics, dataset loaders and the eval tool (``sam2long-stream eval``).

Metric tests check known answers: analytic values, an independent loop-based boundary
map and brute-force boundary matcher, and values computed once with the DAVIS 2017
toolkit itself (davis2017-evaluation's ``db_eval_iou`` and ``f_measure``, run with
opencv 5.0 and scikit-image 0.26, which are not installed here).

Pipeline tests build tiny DAVIS- and SA-V-format datasets and run ``run_eval`` with an
oracle predictor (ground truth back: J&F must be exactly 1), a shifted oracle (J&F must
equal the value computed here independently) and, once, the real random-weight tracker.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sam2long_stream.evaluation import (
    EvalError,
    ObjectScores,
    boundary_radius,
    compose_labels,
    db_eval_boundary,
    db_eval_iou,
    dilate_disk,
    disk,
    list_videos,
    load_video,
    scored_frames,
    seg2bmap,
    summarize,
)

H, W = 48, 64  # synthetic frames; diagonal 80 -> boundary tolerance ceil(0.64) = 1 px


@pytest.fixture(scope="module")
def tool():
    from sam2long_stream import evaluation

    return evaluation


# -- independent references ---------------------------------------------------------------
def rect(h: int, w: int, y0: int, x0: int, rh: int, rw: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[max(y0, 0) : y0 + rh, max(x0, 0) : x0 + rw] = True
    return m


def ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move a mask by (dy, dx); what leaves the frame is lost (no wrap-around)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    ys, xs = ys + dy, xs + dx
    keep = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    out[ys[keep], xs[keep]] = True
    return out


def bmap_loop(m: np.ndarray) -> np.ndarray:
    """seg2bmap by its definition, pixel by pixel: differs from E, S or SE neighbour;
    on the last row only E counts, on the last column only S, the corner never."""
    h, w = m.shape

    def at(y: int, x: int) -> bool:
        return bool(m[y, x]) if y < h and x < w else False

    b = np.zeros_like(m, dtype=bool)
    for y in range(h):
        for x in range(w):
            v = bool(m[y, x])
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                b[y, x] = v != at(y, x + 1)
            elif x == w - 1:
                b[y, x] = v != at(y + 1, x)
            else:
                b[y, x] = v != at(y, x + 1) or v != at(y + 1, x) or v != at(y + 1, x + 1)
    return b


def f_brute(gt: np.ndarray, pred: np.ndarray, radius: int) -> float:
    """Boundary F by explicit distances: a boundary pixel matches when one of the other
    boundary's pixels lies within Euclidean distance `radius`."""
    g, p = np.argwhere(bmap_loop(gt)), np.argwhere(bmap_loop(pred))
    if len(g) == 0 and len(p) == 0:
        return 1.0
    if len(g) == 0 or len(p) == 0:
        return 0.0
    d2 = ((p[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    precision = float(np.count_nonzero(d2.min(axis=1) <= radius**2)) / len(p)
    recall = float(np.count_nonzero(d2.min(axis=0) <= radius**2)) / len(g)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def j_ref(gt: np.ndarray, pred: np.ndarray) -> float:
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


# -- metrics: known answers -------------------------------------------------------------
def test_perfect_prediction_scores_one():
    m = ellipse(H, W, 20, 30, 9, 14)
    assert db_eval_iou(m, m) == 1.0
    assert db_eval_boundary(m, m) == 1.0


def test_empty_masks():
    e = np.zeros((H, W), bool)
    m = rect(H, W, 5, 5, 10, 10)
    assert db_eval_iou(e, e) == 1.0 and db_eval_boundary(e, e) == 1.0
    assert db_eval_iou(m, e) == 0.0 and db_eval_boundary(m, e) == 0.0  # missed object
    assert db_eval_iou(e, m) == 0.0 and db_eval_boundary(e, m) == 0.0  # false positive


def test_disjoint_masks_score_zero():
    a, b = rect(H, W, 2, 2, 10, 10), rect(H, W, 30, 40, 10, 10)
    assert db_eval_iou(a, b) == 0.0
    assert db_eval_boundary(a, b) == 0.0


def test_square_shifted_two_pixels():
    gt = rect(H, W, 10, 10, 20, 20)
    pred = shift(gt, 0, 2)
    assert db_eval_iou(gt, pred) == pytest.approx(360 / 440, abs=1e-15)
    # The 20x20 square's boundary is the ring of a 21x21 square (80 px), half a pixel
    # towards the origin. Shifted 2 px with a 1 px tolerance: top row 20/21 and bottom
    # row 19/20 match, the far vertical sides only 3 of 20 (left) and 0 of 19 (right):
    # precision = recall = 42/80.
    assert boundary_radius(gt.shape) == 1
    assert db_eval_boundary(gt, pred) == pytest.approx(42 / 80, abs=1e-15)
    assert db_eval_boundary(gt, pred) == pytest.approx(f_brute(gt, pred, 1), abs=1e-15)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_square_shift_within_tolerance_is_a_perfect_contour(k):
    gt = rect(H, W, 10, 10, 20, 20)
    pred = shift(gt, 0, k)
    r = boundary_radius(gt.shape)
    f = db_eval_boundary(gt, pred)
    assert f == pytest.approx(f_brute(gt, pred, r), abs=1e-15)
    assert (f == 1.0) == (k <= r)
    assert db_eval_iou(gt, pred) == pytest.approx(20 * (20 - k) / (20 * (20 + k)), abs=1e-15)


def test_tolerance_scales_with_the_diagonal():
    # 0.008 x diagonal, rounded up: 80 -> 1 px, 400 -> 4 px, 979.8 (DAVIS 480p) -> 8 px.
    assert boundary_radius((48, 64)) == 1
    assert boundary_radius((240, 320)) == 4
    assert boundary_radius((480, 854)) == 8
    assert boundary_radius((480, 854), bound_th=3) == 3  # >= 1: pixels, as the toolkit
    # The same 2 px shift is a miss on a small frame and a hit on a 5x larger one.
    small = rect(48, 64, 10, 10, 20, 20)
    large = rect(240, 320, 50, 50, 100, 100)
    assert db_eval_boundary(small, shift(small, 0, 2)) < 1
    assert db_eval_boundary(large, shift(large, 0, 2)) == 1.0
    assert db_eval_boundary(large, shift(large, 0, 4)) == 1.0
    assert db_eval_boundary(large, shift(large, 0, 5)) < 1
    assert db_eval_boundary(large, shift(large, 0, 5), bound_th=0.02) == 1.0  # 8 px


# Values from the DAVIS 2017 toolkit itself (db_eval_iou, f_measure with cv2.dilate and
# skimage disk), for these exact masks.
TOOLKIT = {
    "square_64x48_shift2": (0.8181818181818182, 0.525),
    "square_320x240_shift5": (0.8823529411764706, 0.525),
    "ellipse_854x480": (0.891279612370396, 0.5490477452994853),
    "blobs_vs_box_150x100": (0.24638137193203272, 0.23347398030942337),
    "edge_touching_64x48": (0.8307692307692308, 0.0),
}


def toolkit_case(name: str) -> tuple[np.ndarray, np.ndarray]:
    return {
        "square_64x48_shift2": lambda: (rect(48, 64, 10, 10, 20, 20), rect(48, 64, 10, 12, 20, 20)),
        "square_320x240_shift5": lambda: (
            rect(240, 320, 50, 60, 80, 80),
            rect(240, 320, 50, 65, 80, 80),
        ),
        "ellipse_854x480": lambda: (
            ellipse(480, 854, 240, 400, 120, 200),
            ellipse(480, 854, 247, 391, 110, 210),
        ),
        "blobs_vs_box_150x100": lambda: (
            ellipse(100, 150, 30, 40, 15, 25) | ellipse(100, 150, 70, 110, 20, 12),
            rect(100, 150, 20, 20, 60, 100),
        ),
        "edge_touching_64x48": lambda: (rect(48, 64, 30, 40, 30, 30), rect(48, 64, 28, 38, 30, 30)),
    }[name]()


@pytest.mark.parametrize("name", sorted(TOOLKIT))
def test_matches_the_davis_toolkit(name):
    gt, pred = toolkit_case(name)
    j, f = TOOLKIT[name]
    assert db_eval_iou(gt, pred) == j  # bit for bit: same arithmetic
    assert db_eval_boundary(gt, pred) == f


def test_void_pixels_are_left_out():
    gt = rect(H, W, 10, 10, 20, 20)
    pred = rect(H, W, 10, 10, 20, 25)  # 100 extra pixels at x 30..34
    void = np.zeros_like(gt)
    void[:, 30:] = True
    assert db_eval_iou(gt, pred) == pytest.approx(400 / 500)
    assert db_eval_iou(gt, pred, void) == 1.0
    assert db_eval_boundary(gt, pred, void) == 1.0


def test_full_frame_mask_has_no_boundary():
    # A toolkit quirk kept on purpose: seg2bmap of an all-true mask is empty.
    full = np.ones((H, W), bool)
    assert not seg2bmap(full).any()
    assert db_eval_boundary(full, full) == 1.0
    assert db_eval_boundary(full, rect(H, W, 5, 5, 10, 10)) == 0.0


masks = st.integers(2, 14).flatmap(
    lambda h: st.integers(2, 14).flatmap(
        lambda w: st.lists(st.booleans(), min_size=h * w, max_size=h * w).map(
            lambda v: np.array(v, bool).reshape(h, w)
        )
    )
)


@settings(max_examples=60, deadline=None)
@given(masks)
def test_seg2bmap_matches_its_definition(m):
    assert np.array_equal(seg2bmap(m), bmap_loop(m))


@settings(max_examples=60, deadline=None)
@given(masks, st.integers(0, 5))
def test_dilation_matches_a_naive_disk_dilation(m, r):
    h, w = m.shape
    fp = disk(r)
    padded = np.pad(m, r)
    naive = np.zeros_like(m)
    for dy, dx in np.argwhere(fp) - r:
        naive |= padded[r - dy : r - dy + h, r - dx : r - dx + w]
    assert np.array_equal(dilate_disk(m, r), naive)


@settings(max_examples=40, deadline=None)
@given(masks, masks)
def test_f_matches_brute_force(a, b):
    b = np.resize(b, a.shape)
    assert db_eval_boundary(a, b) == pytest.approx(f_brute(a, b, boundary_radius(a.shape)))


def test_scored_frames_rule():
    frames = [0, 1, 2, 3, 4, 5]
    assert scored_frames(frames, 0) == [1, 2, 3, 4]  # DAVIS: drop first and last
    assert scored_frames(frames, 2) == [3, 4]  # late object: from after its prompt
    assert scored_frames(frames, 5) == []
    assert scored_frames(frames, 0, skip_first_and_last=False) == frames
    assert scored_frames(frames, 2, skip_first_and_last=False) == [2, 3, 4, 5]
    assert scored_frames([0, 4, 8, 12], 0) == [4, 8]  # SA-V: annotated frames only


def test_summary_means_over_objects():
    a = ObjectScores("v1", 1, ["1", "2"], [1.0, 0.5], [1.0, 0.0])
    b = ObjectScores("v1", 2, ["1"], [0.0], [0.5])
    c = ObjectScores("v2", 1, ["1"], [1.0], [1.0])
    none = ObjectScores("v2", 2)  # never scored: listed, left out of the means
    s = summarize([a, b, c, none])
    assert s["videos"]["v1"]["J"] == pytest.approx((0.75 + 0.0) / 2)
    assert s["videos"]["v2"]["objects"]["2"] == {"J": None, "F": None, "J&F": None, "frames": 0}
    assert s["mean"]["objects"] == 3
    assert s["mean"]["J"] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    assert s["mean"]["F"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s["mean"]["J&F"] == pytest.approx((s["mean"]["J"] + s["mean"]["F"]) / 2)


def test_compose_labels_lowest_id_on_top():
    a, b = rect(H, W, 0, 0, 10, 10), rect(H, W, 5, 5, 10, 10)
    labels = compose_labels({2: b, 1: a}, H, W)
    assert labels[7, 7] == 1 and labels[12, 12] == 2 and labels[30, 30] == 0


# -- synthetic DAVIS-format dataset -----------------------------------------------------
def _background(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    base = np.stack([xx * 2, yy * 3, (xx + yy)], axis=-1) + rng.integers(0, 30, (H, W, 3))
    return np.clip(base + 40, 0, 255).astype(np.uint8)


def scene_shapes(t: int) -> np.ndarray:
    """Object 1, a 12 px square, moves right; object 2, a 16 px square, moves left in
    front of it and hides it completely on frame 3. Rows 46-47 are void (255)."""
    labels = np.zeros((H, W), np.uint8)
    labels[rect(H, W, 18, 6 + 6 * t, 12, 12)] = 1
    labels[rect(H, W, 16, 46 - 8 * t, 16, 16)] = 2
    labels[46:] = 255
    return labels


def scene_late(t: int) -> np.ndarray:
    """Object 1, a disc, drifts down-right; object 2 enters on frame 2."""
    labels = np.zeros((H, W), np.uint8)
    labels[ellipse(H, W, 12 + 3 * t, 14 + 4 * t, 8, 8)] = 1
    if t >= 2:
        labels[rect(H, W, 4 + 2 * t, 44, 10, 14)] = 2
    return labels


SCENES = {"shapes": scene_shapes, "late": scene_late}
PROMPT_FRAMES = {"shapes": {1: 0, 2: 0}, "late": {1: 0, 2: 2}}
NUM_FRAMES = 6
COLORS = {1: (230, 200, 40), 2: (20, 60, 220), 255: (0, 0, 0)}


def write_davis(root: Path, with_480p: bool = True) -> Path:
    sub = "480p" if with_480p else ""
    for seed, (name, scene) in enumerate(SCENES.items()):
        (root / "JPEGImages" / sub / name).mkdir(parents=True)
        (root / "Annotations" / sub / name).mkdir(parents=True)
        for t in range(NUM_FRAMES):
            labels = scene(t)
            img = _background(seed)
            for o, c in COLORS.items():
                img[labels == o] = c
            Image.fromarray(img).save(root / "JPEGImages" / sub / name / f"{t:05d}.jpg")
            ann = Image.fromarray(labels)
            ann.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255] * (3 * 253))
            ann.save(root / "Annotations" / sub / name / f"{t:05d}.png")
    return root


@pytest.fixture
def davis(tmp_path: Path) -> Path:
    return write_davis(tmp_path / "DAVIS")


class Oracle:
    """Returns each prompted object's ground truth, optionally shifted; with `lag` it
    holds every result back to flush(), as the offline tracker does."""

    def __init__(self, frames: list[dict[int, np.ndarray]], dy=0, dx=0, lag=False):
        self.frames, self.dy, self.dx, self.lag = frames, dy, dx, lag
        self.t, self.active, self.held = 0, set(), []

    def step(self, frame, prompts=None):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        for o, p in (prompts or {}).items():
            assert np.array_equal(p.mask, self.frames[self.t][o])  # prompted with the GT
            self.active.add(o)
        gt = self.frames[self.t]
        masks = {o: shift(gt[o], self.dy, self.dx) for o in self.active if o in gt}
        result = SimpleNamespace(frame_index=self.t, masks=masks)
        self.t += 1
        if self.lag:
            self.held.append(result)
            return None
        return result

    def flush(self):
        held, self.held = self.held, []
        return held


def davis_oracle(dy=0, dx=0, lag=False):
    def make(num_pathways, video):
        scene = SCENES[video.name]
        frames = [{o: scene(t) == o for o in (1, 2)} for t in range(len(video.frames))]
        return Oracle(frames, dy, dx, lag)

    return make


def test_davis_loader(davis):
    assert list_videos(davis, "davis") == ["late", "shapes"]
    v = load_video(davis, "late", "davis")
    assert (v.height, v.width, len(v.frames)) == (H, W, NUM_FRAMES)
    assert v.prompt_frames == PROMPT_FRAMES["late"]
    s = load_video(davis, "shapes", "davis", max_frames=4)
    assert s.object_ids == [1, 2] and len(s.frames) == 4  # 255 is no object
    gt, void = s.read_gt(3)
    assert not gt[1].any() and void is None  # fully occluded on frame 3
    assert s.read_gt(3, ignore_void=True)[1][46:].all()


def test_davis_without_480p_folder(tmp_path):
    root = write_davis(tmp_path / "flat", with_480p=False)
    assert list_videos(root, "davis") == ["late", "shapes"]


@pytest.mark.parametrize("lag", [False, True])
def test_oracle_scores_exactly_one(tool, davis, tmp_path, lag):
    out = tmp_path / "out"
    report = tool.run_eval(
        davis, out=out, pathways=[1, 3], predictor=davis_oracle(lag=lag), log=None
    )
    for p in ("1", "3"):
        r = report["results"][p]
        assert r["mean"] == {"J": 1.0, "F": 1.0, "J&F": 1.0, "objects": 4}
        assert r["videos"]["shapes"]["objects"]["1"]["frames"] == 4  # frames 1-4
        assert r["videos"]["late"]["objects"]["2"]["frames"] == 2  # frames 3, 4
    png = Image.open(out / "P3" / "shapes" / "00002.png")
    assert png.mode == "P" and png.size == (W, H)
    assert np.array_equal(np.asarray(png), np.where(scene_shapes(2) == 255, 0, scene_shapes(2)))
    assert len(list((out / "P1" / "late").glob("*.png"))) == NUM_FRAMES


def test_shifted_oracle_scores_the_independent_value(tool, davis):
    dy, dx = 1, 2
    report = tool.run_eval(
        davis, out=None, pathways=[1], predictor=davis_oracle(dy, dx, lag=True), log=None
    )
    per_object = []
    for name, scene in SCENES.items():
        for o, t0 in PROMPT_FRAMES[name].items():
            frames = range(t0 + 1, NUM_FRAMES - 1)  # after the prompt, before the last
            gts = [scene(t) == o for t in frames]
            j = np.mean([j_ref(g, shift(g, dy, dx)) for g in gts])
            f = np.mean([f_brute(g, shift(g, dy, dx), 1) for g in gts])
            per_object.append((j, f))
            got = report["results"]["1"]["videos"][name]["objects"][str(o)]
            assert got["J"] == pytest.approx(j, abs=1e-12)
            assert got["F"] == pytest.approx(f, abs=1e-12)
    j = np.mean([x[0] for x in per_object])
    f = np.mean([x[1] for x in per_object])
    mean = report["results"]["1"]["mean"]
    assert mean["J"] == pytest.approx(j, abs=1e-12)
    assert mean["F"] == pytest.approx(f, abs=1e-12)
    assert mean["J&F"] == pytest.approx((j + f) / 2, abs=1e-12)
    assert 0.2 < mean["J&F"] < 0.95  # the shift is felt, and the empty frame 3 counts 1


def test_all_frames_and_max_frames(tool, davis):
    report = tool.run_eval(
        davis,
        out=None,
        pathways=[1],
        videos=["late"],
        max_frames=3,
        skip_first_and_last=True,
        predictor=davis_oracle(),
        log=None,
    )
    late = report["results"]["1"]["videos"]["late"]["objects"]
    assert late["1"]["frames"] == 1  # frames 0-2: only 1 is scored
    assert late["2"] == {"J": None, "F": None, "J&F": None, "frames": 0}  # seen on the last
    assert report["results"]["1"]["mean"]["objects"] == 1
    report = tool.run_eval(
        davis,
        out=None,
        pathways=[1],
        videos=["late"],
        max_frames=3,
        skip_first_and_last=False,
        predictor=davis_oracle(),
        log=None,
    )
    late = report["results"]["1"]["videos"]["late"]["objects"]
    assert late["1"]["frames"] == 3 and late["2"]["frames"] == 1


# -- synthetic SA-V-format dataset ------------------------------------------------------
SAV_FRAMES = 16  # 24 fps frames; annotated every 4th (6 fps): 0, 4, 8, 12


def sav_masks(t: int) -> dict[int, np.ndarray]:
    """Object 0: a person-like box; object 1: its "hand", overlapping it, seen from 4."""
    person = rect(H, W, 8 + t // 2, 10 + t, 30, 20)
    hand = rect(H, W, 12 + t // 2, 20 + t, 6, 6) if t >= 4 else np.zeros((H, W), bool)
    return {0: person, 1: hand}


@pytest.fixture
def sav(tmp_path: Path) -> Path:
    root = tmp_path / "sav_val"
    frames = root / "JPEGImages_24fps" / "sav_000001"
    frames.mkdir(parents=True)
    for t in range(SAV_FRAMES):
        img = _background(7)
        img[sav_masks(t)[0]] = (200, 90, 60)
        img[sav_masks(t)[1]] = (250, 220, 190)
        Image.fromarray(img).save(frames / f"{t:05d}.jpg")
        if t % 4 == 0:
            for o, m in sav_masks(t).items():
                d = root / "Annotations_6fps" / "sav_000001" / f"{o:03d}"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(m.astype(np.uint8) * 255).save(d / f"{t:05d}.png")
    return root


def test_sav_oracle(tool, sav, tmp_path):
    def make(num_pathways, video):
        assert video.prompt_frames == {0: 0, 1: 4} and video.object_names[1] == "001"
        return Oracle([sav_masks(t) for t in range(len(video.frames))], lag=True)

    out = tmp_path / "out"
    report = tool.run_eval(sav, fmt="sav", out=out, pathways=[3], predictor=make, log=None)
    r = report["results"]["3"]
    assert r["mean"] == {"J": 1.0, "F": 1.0, "J&F": 1.0, "objects": 2}  # overlap is kept
    objects = r["videos"]["sav_000001"]["objects"]
    assert objects["0"]["frames"] == 2 and objects["1"]["frames"] == 1  # 4, 8 and 8
    hand = np.asarray(Image.open(out / "P3" / "sav_000001" / "001" / "00009.png")) > 0
    assert np.array_equal(hand, sav_masks(9)[1])


def test_sav_shifted_oracle(tool, sav):
    def make(num_pathways, video):
        return Oracle([sav_masks(t) for t in range(len(video.frames))], dy=0, dx=3)

    report = tool.run_eval(sav, fmt="sav", out=None, pathways=[1], predictor=make, log=None)
    expect = []
    for o, frames in ((0, (4, 8)), (1, (8,))):
        gts = [sav_masks(t)[o] for t in frames]
        j = np.mean([j_ref(g, shift(g, 0, 3)) for g in gts])
        f = np.mean([f_brute(g, shift(g, 0, 3), 1) for g in gts])
        expect.append((j + f) / 2)
    assert report["results"]["1"]["mean"]["J&F"] == pytest.approx(np.mean(expect), abs=1e-12)


# -- the command line -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{tmp}/nowhere"], "data folder not found"),
        (["--data", "{tmp}"], "no JPEGImages"),
        (["--data", "{davis}", "--format", "youtube"], "invalid choice"),
        (["--data", "{davis}", "--videos", "nope"], "unknown video(s) nope"),
        (["--data", "{davis}", "--pathways", "a"], "--pathways"),
        (["--data", "{davis}", "--pathways", "0"], "num_pathways"),
        (["--data", "{davis}", "--image-size", "100"], "image_size"),
        (["--data", "{davis}", "--max-frames", "0"], "--max-frames"),
        (["--data", "{davis}", "--format", "sav"], "no JPEGImages_24fps"),
        (["--data", "{davis}", "--checkpoint", "{tmp}/no.pt"], "checkpoint not found"),
        (["--videos", "a"], "--data"),
    ],
)
def test_user_errors_exit_2_with_one_line(tool, davis, tmp_path, capsys, args, message):
    argv = [a.format(tmp=tmp_path, davis=davis) for a in args]
    assert tool.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_empty_dataset_is_a_user_error(tool, tmp_path, capsys):
    (tmp_path / "JPEGImages" / "480p").mkdir(parents=True)
    (tmp_path / "Annotations" / "480p").mkdir(parents=True)
    assert tool.main(["--data", str(tmp_path)]) == 2
    assert "no video" in capsys.readouterr().err


def test_real_tracker_end_to_end(tool, davis, tmp_path, capsys):
    """Random weights (asked for: a sam2 model without a checkpoint) at 256 px, P=1 and
    P=3 side by side, 3 frames of one video."""
    out, js = tmp_path / "out", tmp_path / "r.json"
    argv = ["--data", str(davis), "--videos", "shapes", "--max-frames", "3", "--image-size"]
    argv += ["256", "--out", str(out), "--json", str(js), "--mode", "offline"]
    argv += ["--model", "sam2.1_hiera_t"]
    assert tool.main(argv) == 0
    text = capsys.readouterr().out
    assert "random weights" in text and "meaningless" in text
    assert "P=1 J&F" in text and "P=3 J&F" in text
    for p in (1, 3):
        pngs = sorted((out / f"P{p}" / "shapes").glob("*.png"))
        assert [x.name for x in pngs] == ["00000.png", "00001.png", "00002.png"]
        for x in pngs:
            im = Image.open(x)
            assert im.size == (W, H) and im.mode == "P"
            assert set(np.unique(np.asarray(im)).tolist()) <= {0, 1, 2}
    report = json.loads(js.read_text())
    assert report["config"]["mode"] == "offline" and report["weights"].startswith("random")
    for p in ("1", "3"):
        r = report["results"][p]
        assert r["mean"]["objects"] == 2
        values = [r["mean"][k] for k in ("J", "F", "J&F")]
        for obj in r["videos"]["shapes"]["objects"].values():
            assert obj["frames"] == 1
            values += [obj["J"], obj["F"], obj["J&F"]]
        assert all(isinstance(v, float) and math.isfinite(v) and 0 <= v <= 1 for v in values)


def test_real_tracker_online(tool, davis, tmp_path):
    """Online mode (lag 0): every frame's mask comes from step(), each exactly once."""
    report = tool.run_eval(
        davis,
        videos=["late"],
        max_frames=3,
        pathways=[1],
        mode="online",
        image_size=256,
        out=tmp_path / "out",
        log=None,
    )
    assert report["config"]["mode"] == "online"
    assert len(list((tmp_path / "out" / "P1" / "late").glob("*.png"))) == 3
    assert 0 <= report["results"]["1"]["mean"]["J&F"] <= 1


def test_sav_format_is_rejected_for_a_davis_folder(davis):
    with pytest.raises(EvalError, match="SA-V"):
        list_videos(davis, "sav")
